"""The REST API's OpenAPI 3.1 document, served at ``GET /api/v2/openapi.json`` (no token needed).

It describes the routes of ``rest/`` (users, tokens, off-boarding, the export); the bridge routes
follow the providers' own APIs and are not in it. A test runs schemathesis against a running
server with this document: no server errors, every answer matches it.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from aibridge import __version__

PATH = "/api/v2/openapi.json"

STR: dict[str, Any] = {"type": "string"}
NULLABLE_STR: dict[str, Any] = {"type": ["string", "null"]}
INT: dict[str, Any] = {"type": "integer"}
TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
UUID: dict[str, Any] = {"type": "string", "format": "uuid"}
OBJECT: dict[str, Any] = {"type": "object"}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": {**required, **(optional or {})}}


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


CHILD = {"id": UUID, "interception_id": UUID}
SCHEMAS: dict[str, Any] = {
    "Error": obj({"message": STR, "detail": STR}),
    "User": obj({"id": UUID, "username": STR, "email": STR, "name": STR,
                 "role": {"enum": ["owner", "auditor", "member"]}, "status": {"enum": ["active", "suspended"]},
                 "created_at": TIME, "updated_at": TIME}),
    "Users": obj({"users": array({**ref("User"), "description": "each with its groups' names"}), "count": INT}),
    "NewUser": obj({"username": {"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$"}},
                   {"role": {"enum": ["owner", "auditor", "member"]}, "email": STR, "name": STR}),
    "NewToken": {"type": "object", "properties": {
        "lifetime": {"oneOf": [{"type": "string", "examples": ["720h", "90d"]}, {"type": "integer", "minimum": 1}],
                     "description": "A duration (720h, 90d) or seconds; at most CODER_MAX_TOKEN_LIFETIME "
                                    "(720h); default 30 days or that cap, if shorter"},
        "token_name": STR}},
    "CreatedToken": obj({"key": STR, "id": STR, "expires_at": TIME}, {"token_name": STR, "setup": array(obj(
        {"id": STR, "title": STR, "client": STR, "proxy": {"type": "boolean"}, "text": STR}))}),
    "Token": obj({"id": STR, "user_id": UUID, "token_name": STR, "created_at": TIME, "expires_at": TIME,
                  "revoked": {"type": "boolean"}},
                 {"last_used_at": {"type": ["string", "null"], "format": "date-time"}}),
    "Roles": obj({"roles": {"type": "array", "items": {"enum": ["owner", "auditor", "member"]}, "maxItems": 1}}),
    "ClientSetup": obj({"client": STR, "proxy": {"type": "boolean"}, "text": STR}),
    "Initiator": obj({"id": UUID, "username": STR, "name": STR}),
    "TokenUsage": obj({**CHILD, "provider_response_id": STR, "input_tokens": INT, "output_tokens": INT,
                       "cache_read_input_tokens": INT, "cache_write_input_tokens": INT, "metadata": OBJECT,
                       "created_at": TIME}),
    "UserPrompt": obj({**CHILD, "provider_response_id": STR, "prompt": STR, "metadata": OBJECT,
                       "created_at": TIME}),
    "ToolUsage": obj({**CHILD, "provider_response_id": STR, "provider_tool_call_id": STR,
                      "server_url": NULLABLE_STR, "tool": STR, "input": STR, "injected": {"type": "boolean"},
                      "invocation_error": NULLABLE_STR, "metadata": OBJECT, "created_at": TIME}),
    "ModelThought": obj({**CHILD, "content": STR, "metadata": OBJECT, "created_at": TIME}),
    "Interception": obj({
        "id": UUID, "initiator": ref("Initiator"), "provider": STR, "provider_name": STR, "model": STR,
        "client": STR, "client_session_id": NULLABLE_STR, "metadata": OBJECT, "started_at": TIME,
        "ended_at": {"type": ["string", "null"], "format": "date-time"},
        "token_usages": array(ref("TokenUsage")), "user_prompts": array(ref("UserPrompt")),
        "tool_usages": array(ref("ToolUsage")), "model_thoughts": array(ref("ModelThought"))},
        {"user_agent": STR}),
    "Interceptions": obj({"count": INT, "results": array(ref("Interception"))}),
    "Session": obj({"id": STR, "initiator": ref("Initiator"), "client": STR, "models": array(STR),
                    "started_at": TIME, "ended_at": {"type": ["string", "null"], "format": "date-time"},
                    "interception_count": INT, "input_tokens": INT, "output_tokens": INT,
                    "cache_read_input_tokens": INT, "cache_write_input_tokens": INT}),
    "Sessions": obj({"count": INT, "results": array(ref("Session"))}),
    "SessionDetail": obj({"sessions": array(ref("Session")), "interceptions": array(ref("Interception"))}),
    "BuildInfo": obj({"version": STR}),
}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


ERRORS = {str(code): {"description": text, **json_content(ref("Error"))} for code, text in (
    (400, "bad input"), (401, "no token"), (403, "token refused or role too low"), (404, "not found"),
    (408, "the body did not arrive in time"), (409, "conflict"), (413, "body too large"),
    (503, "the database is unavailable"))}


def operation(summary: str, ok: int, schema: dict[str, Any] | None, *, body: dict[str, Any] | None = None,
              params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": summary}
    if schema is not None:
        answer.update(json_content(schema))
    op: dict[str, Any] = {"summary": summary, "responses": {str(ok): answer, **ERRORS}}
    if body is not None:
        op["requestBody"] = {"required": False, **json_content(body)}
    if params:
        op["parameters"] = params
    return op


def path_param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema or STR}


def query_param(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


USER = path_param("user", "'me', a username or a user id")
Q = query_param("q", "space-separated key:value terms: initiator, provider, model, client, started_after, "
                     "started_before (RFC3339), session", STR)
LIMIT = query_param("limit", "1-1000 (default 100)", {"type": "integer", "minimum": 1, "maximum": 1000})

PATHS: dict[str, Any] = {
    "/api/v2/buildinfo": {"get": operation("the server's version", 200, ref("BuildInfo"))},
    "/api/v2/users": {
        "get": operation("list users (owner, auditor)", 200, ref("Users"), params=[
            query_param("q", "keep users whose username, e-mail or name contains this", STR)]),
        "post": operation("create a user (owner)", 201, ref("User"), body=ref("NewUser")),
    },
    "/api/v2/users/me": {"get": operation("the current user", 200, ref("User"))},
    "/api/v2/users/{user}": {
        "get": operation("a user (owner, auditor; anyone for themselves)", 200, ref("User"), params=[USER]),
        "delete": operation("delete a user without recorded interceptions, and its tokens (owner)", 204, None,
                            params=[USER]),
    },
    "/api/v2/users/{user}/status/{action}": {
        "post": operation("suspend or activate a user (owner); a suspended user's tokens stop working", 200,
                          ref("User"), params=[USER, path_param("action", "suspend or activate",
                                                                {"enum": ["suspend", "activate"]})]),
    },
    "/api/v2/users/{user}/roles": {
        "put": operation("set a user's role (owner; not one's own): one role, [] for member", 200, ref("User"),
                         body=ref("Roles"), params=[USER]),
    },
    "/api/v2/aibridge/env/{client}": {
        "get": operation("a client's set-up lines (as `aibridge env CLIENT`), with a placeholder token", 200,
                         ref("ClientSetup"), params=[path_param("client", "claude-code, codex, openai, anthropic, "
                                                                          "zed, cline, roo or opencode"),
                                                     query_param("proxy", "1: through the AI Bridge Proxy", STR)]),
    },
    "/api/v2/users/{user}/keys/tokens": {
        "get": operation("a user's tokens", 200, array(ref("Token")), params=[USER]),
        "post": operation("create a token; the response holds it, shown once (409: the user already "
                          "holds --max-tokens-per-user live tokens)", 201, ref("CreatedToken"),
                          body=ref("NewToken"), params=[USER]),
    },
    "/api/v2/users/{user}/keys/{id}": {
        "delete": operation("revoke a token", 204, None, params=[USER, path_param("id", "the token's id")]),
    },
    "/api/v2/aibridge/interceptions": {
        "get": operation("finished interceptions, newest first", 200, ref("Interceptions"), params=[
            Q, LIMIT, query_param("after_id", "cursor: the last id of the previous page", UUID)]),
    },
    "/api/v2/aibridge/sessions": {
        "get": operation("interceptions grouped by client session", 200, ref("Sessions"), params=[
            Q, LIMIT, query_param("offset", "0-1000000000", {"type": "integer", "minimum": 0,
                                                             "maximum": 1_000_000_000})]),
    },
    "/api/v2/aibridge/sessions/{id}": {
        "get": operation("one session and its interceptions, oldest first", 200, ref("SessionDetail"),
                         params=[path_param("id", "the client's session id"), Q]),
    },
    "/api/v2/aibridge/clients": {"get": operation("distinct clients seen", 200, array(STR))},
    "/api/v2/aibridge/models": {"get": operation("distinct models seen", 200, array(STR))},
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "AI Bridge REST API", "version": __version__,
             "description": "Users, tokens and the export of recorded interceptions (docs/api.md)."},
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "sessionToken": {"type": "apiKey", "in": "header", "name": "Coder-Session-Token"},
            "bearer": {"type": "http", "scheme": "bearer"},
        },
    },
    "security": [{"sessionToken": []}, {"bearer": []}],
    "paths": PATHS,
}
_BODY = orjson.dumps(DOCUMENT)


async def openapi(_request: web.Request) -> web.Response:
    return web.Response(body=_BODY, content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, openapi)
