"""The REST API's OpenAPI 3.1 document, served at ``GET /api/v2/openapi.json`` (no token needed).

The paths are read from the application's route table when the document is first asked for, each
described by its entry in ``OPERATIONS`` (the ``/api/v2/ai-gateway/…`` aliases share their
``aibridge`` route's entry), so what is served is exactly what answers; a test checks that every
REST route has an entry. The bridge routes follow the providers' own APIs and the web UI serves
pages: neither is in it. A test runs schemathesis against a running server with this document: no
server errors, every answer matches it.
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
NUMBER: dict[str, Any] = {"type": "number"}
PERIOD: dict[str, Any] = {"enum": ["day", "week", "month"]}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": {**required, **(optional or {})}}


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


CHILD = {"id": UUID, "interception_id": UUID}
GROUP_NAME: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?$"}
MICROS: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 1_000_000_000_000}
GROUP_SCHEMAS: dict[str, Any] = {
    "Group": obj({"id": UUID, "name": STR, "display_name": STR, "source": {"enum": ["manual", "oidc"]},
                  "created_at": TIME, "updated_at": TIME, "total_member_count": INT},
                 {"members": array(obj({"id": UUID, "username": STR, "name": STR, "email": STR}))}),
    "Groups": obj({"groups": array({"$ref": "#/components/schemas/Group"}), "count": INT}),
    "NewGroup": obj({"name": GROUP_NAME}, {"display_name": STR}),
    "GroupPatch": {"type": "object", "properties": {
        "add_users": array(STR), "remove_users": array(STR), "name": GROUP_NAME, "display_name": STR}},
    "GroupBudget": obj({"group_id": UUID, "spend_limit_micros": INT, "period": STR, "source": STR}),
    "UserBudget": obj({"user_id": UUID, "spend_limit_micros": INT, "period": STR, "source": STR},
                      {"group_id": {"type": ["string", "null"]}}),
    "SetGroupBudget": obj({"spend_limit_micros": MICROS}),
    "SetUserBudget": obj({"spend_limit_micros": MICROS}, {"group_id": UUID}),
}
NULLABLE_TIME: dict[str, Any] = {"type": ["string", "null"], "format": "date-time"}
USAGE: dict[str, Any] = obj({"input_tokens": INT, "output_tokens": INT, "cache_read_input_tokens": INT,
                             "cache_write_input_tokens": INT})
_SESSION_COMMON: dict[str, Any] = {
    "id": STR, "initiator": {"$ref": "#/components/schemas/Initiator"}, "providers": array(STR),
    "models": array(STR), "client": STR, "metadata": OBJECT, "started_at": TIME, "ended_at": NULLABLE_TIME,
    "token_usage_summary": USAGE}
SESSION_SCHEMAS: dict[str, Any] = {      # Coder's shape (DESIGN §2.6); the extras are optional
    "Session": obj({**_SESSION_COMMON, "threads": {**INT, "description": "how many threads"},
                    "last_prompt": NULLABLE_STR, "last_active_at": NULLABLE_TIME},
                   {"interception_count": INT}),
    "Sessions": obj({"count": INT, "sessions": array({"$ref": "#/components/schemas/Session"})}),
    "SessionToolCall": obj({"id": UUID, "interception_id": UUID, "provider_response_id": STR,
                            "server_url": NULLABLE_STR, "tool": STR, "injected": {"type": "boolean"},
                            "input": STR, "metadata": OBJECT, "created_at": TIME},
                           {"provider_tool_call_id": STR, "invocation_error": NULLABLE_STR}),
    "AgenticAction": obj({"model": STR, "token_usage": USAGE, "thinking": array(obj({"text": STR})),
                          "tool_calls": array({"$ref": "#/components/schemas/SessionToolCall"})},
                         {"interception_id": UUID}),
    "Thread": obj({"id": UUID, "prompt": NULLABLE_STR, "model": STR, "provider": STR,
                   "credential_kind": {"type": "string", "enum": ["centralized", "byok"]},
                   "credential_hint": STR, "started_at": TIME, "ended_at": NULLABLE_TIME,
                   "token_usage": USAGE,
                   "agentic_actions": array({"$ref": "#/components/schemas/AgenticAction"})}),
    "SessionDetail": obj({**_SESSION_COMMON, "page_started_at": NULLABLE_TIME, "page_ended_at": NULLABLE_TIME,
                          "threads": array({"$ref": "#/components/schemas/Thread"})},
                         {"thread_count": INT, "interception_count": INT}),
}
PROVIDER_NAME: dict[str, Any] = {"type": "string", "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$", "maxLength": 64}
SETTINGS: dict[str, Any] = {"type": "object", "additionalProperties": {"type": ["string", "null"]}}
PROVIDER_SCHEMAS: dict[str, Any] = {
    "Provider": obj({"id": UUID, "type": STR, "name": STR, "display_name": STR, "enabled": {"type": "boolean"},
                     "base_url": STR, "settings": OBJECT, "status": {"enum": ["enabled", "disabled", "error"]},
                     "error": STR, "source": {"enum": ["config", "api"]},
                     "api_keys": array(obj({"id": UUID, "masked": STR, "created_at": {"type": ["string", "null"]}})),
                     "created_at": {"type": ["string", "null"]}, "updated_at": {"type": ["string", "null"]}}),
    "Providers": obj({"providers": array({"$ref": "#/components/schemas/Provider"}), "count": INT}),
    "NewProvider": obj({"type": STR, "name": PROVIDER_NAME},
                       {"display_name": STR, "enabled": {"type": "boolean"}, "base_url": STR,
                        "api_keys": array(STR), "settings": SETTINGS}),
    "ProviderPatch": {"type": "object", "properties": {
        "display_name": STR, "enabled": {"type": "boolean"}, "base_url": STR, "settings": SETTINGS,
        "api_keys": array({"oneOf": [obj({"id": UUID}), obj({"api_key": STR})]})}},
}
SCHEMAS: dict[str, Any] = {
    "Error": obj({"message": STR, "detail": STR}),
    "User": obj({"id": UUID, "username": STR, "email": STR, "name": STR,
                 "role": {"enum": ["owner", "auditor", "member"]},
                 "status": {"enum": ["active", "suspended", "deleted"]},
                 "created_at": TIME, "updated_at": TIME}, {"deleted_at": TIME, "groups": array(STR)}),
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
    "Initiator": obj({"id": UUID, "username": STR, "name": STR, "deleted": {"type": "boolean"}}),
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
        {"user_agent": STR, "credential_kind": {"type": "string", "enum": ["centralized", "byok"]},
         "credential_hint": STR}),
    "Interceptions": obj({"count": INT, "results": array(ref("Interception"))}),
    **SESSION_SCHEMAS,
    "BuildInfo": obj({"version": STR}),
    "Health": obj({"status": STR}, {"recording": {"type": ["object", "null"]}, "database": STR}),
    "Price": obj({"model": STR, "input": NUMBER, "output": NUMBER, "cache_read": NUMBER, "cache_write": NUMBER,
                  "source": STR}),
    "Prices": obj({"prices": array(ref("Price")), "count": INT}),
    "NewPrice": obj({"input": NUMBER, "output": NUMBER}, {"cache_read": NUMBER, "cache_write": NUMBER}),
    "Budget": obj({"scope": STR, "subject": STR, "period": PERIOD, "limit_usd": NUMBER, "source": STR}),
    "Budgets": obj({"budgets": array(ref("Budget")), "count": INT}),
    "NewBudget": obj({"period": PERIOD, "limit_usd": NUMBER}),
    "ModelRules": obj({"allow": array(obj({"scope": STR, "subject": STR, "models": array(STR)})),
                       "aliases": array(obj({"from": STR, "to": STR, "provider": STR}))}),
    "NewModelRules": {"type": "object", "properties": {
        "allow": array({"type": "object", "properties": {"user": STR, "role": STR,
                                                         "models": {"type": ["array", "null"], "items": STR}}}),
        "aliases": array({"type": "object", "properties": {"from": STR, "to": NULLABLE_STR, "provider": STR}})}},
    "SpendRow": obj({"cost_usd": NUMBER, "requests": INT, "unpriced_requests": INT, "input_tokens": INT,
                     "output_tokens": INT, "cache_read_input_tokens": INT, "cache_write_input_tokens": INT},
                    {"user": STR, "model": STR, "day": STR, "provider": STR, "client": STR}),
    "Spend": obj({"group_by": array(STR), "total_usd": NUMBER, "count": INT, "results": array(ref("SpendRow"))}),
    "AuditLog": obj({"id": UUID, "request_id": STR, "time": TIME, "ip": STR, "user_agent": STR,
                     "user": {"oneOf": [{"type": "null"}, obj({"id": NULLABLE_STR, "username": STR})]},
                     "action": {"enum": ["create", "write", "delete", "login", "logout", "register"]},
                     "resource_type": STR, "resource_id": STR, "resource_target": STR,
                     "diff": {"type": "object", "additionalProperties": obj(
                         {"old": {}, "new": {}, "secret": {"type": "boolean"}})},
                     "status_code": INT, "additional_fields": OBJECT, "description": STR}),
    "AuditLogs": obj({"audit_logs": array(ref("AuditLog")), "count": INT}),
    **GROUP_SCHEMAS,
    **PROVIDER_SCHEMAS,
}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


ERRORS = {str(code): {"description": text, **json_content(ref("Error"))} for code, text in (
    (400, "bad input"), (401, "no token"), (403, "token refused or role too low"), (404, "not found"),
    (408, "the body did not arrive in time"), (409, "conflict"), (413, "body too large"),
    (503, "the database is unavailable"))}


def operation(summary: str, ok: int, schema: dict[str, Any] | None, *, body: dict[str, Any] | None = None,
              params: list[dict[str, Any]] | None = None, content: dict[str, Any] | None = None,
              public: bool = False, more: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": summary}
    if schema is not None:
        answer.update(json_content(schema))
    if content is not None:
        answer["content"] = {**answer.get("content", {}), **content}
    op: dict[str, Any] = {"summary": summary, "responses": {str(ok): answer, **ERRORS, **(more or {})}}
    if public:
        op["security"] = []
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
GROUP = path_param("group", "a group name or id")
PROVIDER = path_param("ref", "a provider's name or id")
PROVIDERS = "/api/v2/ai/providers"
Q = query_param("q", "space-separated key:value terms: initiator, provider, provider_name, model, client, "
                     "started_after, started_before (RFC3339), session", STR)
SESSION_Q = query_param("q", "space-separated key:value terms: initiator, provider, provider_name, model, "
                             "client, session_id, started_after, started_before (RFC3339)", STR)
LIMIT = query_param("limit", "1-1000 (default 100)", {"type": "integer", "minimum": 1, "maximum": 1000})
MODEL = path_param("model", "a model name or glob")
TARGET = path_param("target", "user:USERNAME or role:ROLE")
TEXT = {"text/plain": {"schema": STR}}
UNAVAILABLE = {"503": {"description": "the database does not answer", **json_content(ref("Health"))}}
API = "/api/v2/aibridge"

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("get", "/healthz"): operation("the process is up; how recording is doing", 200, ref("Health"), public=True),
    ("get", "/readyz"): operation("the database answers (503 when not)", 200, ref("Health"), public=True,
                                  more=UNAVAILABLE),
    ("get", "/metrics"): operation("Prometheus metrics (owner, auditor; open on --prometheus-address)", 200,
                                   None, content=TEXT),
    ("get", PATH): operation("this document", 200, OBJECT, public=True),
    ("get", "/api/v2/buildinfo"): operation("the server's version", 200, ref("BuildInfo")),
    ("get", "/api/v2/users"): operation("list users (owner, auditor); deleted ones with include_deleted=true",
                                        200, ref("Users"), params=[
                                            query_param("include_deleted", "true or false",
                                                        {"enum": ["true", "false"]}),
                                            query_param("q", "keep users whose username, e-mail or name "
                                                             "contains this", STR)]),
    ("post", "/api/v2/users"): operation("create a user (owner)", 201, ref("User"), body=ref("NewUser")),
    ("get", "/api/v2/users/me"): operation("the current user, with its budget", 200, ref("User")),
    ("get", "/api/v2/users/authmethods"): operation("what the sign-in page offers (no token needed)", 200,
                                                    obj({"password": OBJECT, "oidc": OBJECT}), public=True),
    ("get", "/api/v2/users/oidc/login"): operation(
        "start single sign-on: a redirect to the identity provider (302)", 302, None, public=True,
        params=[query_param("redirect", "where to go after signing in (a path of this server)", STR)]),
    ("get", "/api/v2/users/oidc/callback"): operation(
        "the identity provider's redirect back: signs in and sets the session cookie (302)", 302, None,
        public=True, params=[query_param("code", "the authorization code", STR),
                             query_param("state", "the state sent with the sign-in", STR)]),
    ("post", "/api/v2/users/logout"): operation(
        "sign out: revokes the token that authenticated this request and clears the session cookie", 200,
        OBJECT),
    ("get", "/api/v2/users/{user}"): operation("a user (owner, auditor; anyone for themselves)", 200,
                                               ref("User"), params=[USER]),
    ("delete", "/api/v2/users/{user}"): operation(
        "delete a user (owner): marked deleted, tokens revoked, records kept", 204, None, params=[USER]),
    ("post", "/api/v2/users/{user}/status/{action}"): operation(
        "suspend or activate a user (owner); a suspended user's tokens stop working", 200, ref("User"),
        params=[USER, path_param("action", "suspend or activate", {"enum": ["suspend", "activate"]})]),
    ("put", "/api/v2/users/{user}/roles"): operation(
        "set a user's role (owner; not one's own): one role, [] for member", 200, ref("User"), body=ref("Roles"),
        params=[USER]),
    ("get", f"{API}/env/{{client}}"): operation(
        "a client's set-up lines (as `aibridge env CLIENT`), with a placeholder token", 200, ref("ClientSetup"),
        params=[path_param("client", "claude-code, codex, openai, anthropic, zed, cline, roo, opencode or copilot"),
                query_param("proxy", "1: through the AI Bridge Proxy", STR)]),
    ("get", "/api/v2/users/{user}/keys/tokens"): operation("a user's tokens", 200, array(ref("Token")),
                                                           params=[USER]),
    ("post", "/api/v2/users/{user}/keys/tokens"): operation(
        "create a token; the response holds it, shown once (409: the user already holds "
        "--max-tokens-per-user live tokens)", 201, ref("CreatedToken"), body=ref("NewToken"),
        params=[USER]),
    ("delete", "/api/v2/users/{user}/keys/{id}"): operation(
        "revoke a token", 204, None, params=[USER, path_param("id", "the token's id")]),
    ("get", f"{API}/interceptions"): operation(
        "finished interceptions, newest first", 200, ref("Interceptions"),
        params=[Q, LIMIT, query_param("after_id", "cursor: the last id of the previous page", UUID)]),
    ("get", f"{API}/sessions"): operation(
        "sessions (interceptions sharing a client session id), most recently active first", 200,
        ref("Sessions"),
        params=[SESSION_Q, LIMIT, query_param("offset", "0-1000000000 (not with after_session_id)",
                                              {"type": "integer", "minimum": 0, "maximum": 1_000_000_000}),
                query_param("after_session_id", "cursor: the last session id of the previous page", STR)]),
    ("get", f"{API}/sessions/{{session_id}}"): operation(
        "one session and a page of its threads (a human prompt and the agent loop after it), oldest first",
        200, ref("SessionDetail"),
        params=[path_param("session_id", "the client's session id"), LIMIT,
                query_param("after_id", "cursor: threads after this thread id", UUID),
                query_param("before_id", "cursor: threads before this thread id", UUID)]),
    ("get", f"{API}/clients"): operation("distinct clients seen", 200, array(STR)),
    ("get", f"{API}/models"): operation("distinct models seen", 200, array(STR)),
    ("get", f"{API}/prices"): operation("prices in force (owner, auditor)", 200, ref("Prices")),
    ("put", f"{API}/prices/{{model}}"): operation("set a price, USD per million tokens (owner)", 200,
                                                  ref("Price"), body=ref("NewPrice"), params=[MODEL]),
    ("delete", f"{API}/prices/{{model}}"): operation("remove an owner's price (owner)", 204, None,
                                                     params=[MODEL]),
    ("get", f"{API}/budgets"): operation("budgets in force (owner, auditor)", 200, ref("Budgets")),
    ("put", f"{API}/budgets/{{target}}"): operation("set a budget (owner)", 200, ref("Budget"),
                                                    body=ref("NewBudget"), params=[TARGET]),
    ("delete", f"{API}/budgets/{{target}}"): operation("remove a budget (owner)", 204, None, params=[TARGET]),
    ("get", f"{API}/model-rules"): operation("allowed models and aliases (owner, auditor)", 200,
                                             ref("ModelRules")),
    ("put", f"{API}/model-rules"): operation("upsert allowed models and aliases (owner)", 200, ref("ModelRules"),
                                             body=ref("NewModelRules")),
    ("get", f"{API}/spend"): operation(
        "cost and tokens of finished interceptions, grouped (members: their own)", 200, ref("Spend"),
        content={"text/csv": {"schema": STR}}, params=[
            query_param("group_by", "comma-separated: user, group, model, provider, client, day", STR),
            query_param("format", "json or csv", {"enum": ["json", "csv"]}),
            query_param("since", "RFC3339: interceptions started at or after", TIME),
            query_param("until", "RFC3339: interceptions started before", TIME)]),
    ("get", "/api/v2/groups"): operation("groups with member counts (owner, auditor; a member: its own)", 200,
                                         ref("Groups")),
    ("post", "/api/v2/groups"): operation("create a group (owner)", 201, ref("Group"), body=ref("NewGroup")),
    ("get", "/api/v2/groups/{group}"): operation("a group and its members", 200, ref("Group"), params=[GROUP]),
    ("patch", "/api/v2/groups/{group}"): operation(
        "add and remove members (by id or username), rename (owner)", 200, ref("Group"), body=ref("GroupPatch"),
        params=[GROUP]),
    ("delete", "/api/v2/groups/{group}"): operation(
        "delete a group, its memberships, budget and model rule (owner)", 204, None, params=[GROUP]),
    ("get", "/api/v2/groups/{group}/ai/budget"): operation(
        "the group's budget: a limit for each member (owner, auditor)", 200, ref("GroupBudget"), params=[GROUP]),
    ("put", "/api/v2/groups/{group}/ai/budget"): operation(
        "set the group's monthly budget per member (owner)", 200, ref("GroupBudget"), body=ref("SetGroupBudget"),
        params=[GROUP]),
    ("delete", "/api/v2/groups/{group}/ai/budget"): operation("delete the group's budget (owner)", 204, None,
                                                               params=[GROUP]),
    ("get", "/api/v2/users/{user}/ai/budget"): operation(
        "the user's own budget (owner, auditor; anyone for themselves)", 200, ref("UserBudget"), params=[USER]),
    ("put", "/api/v2/users/{user}/ai/budget"): operation(
        "set the user's own monthly budget, which beats its groups' (owner)", 200, ref("UserBudget"),
        body=ref("SetUserBudget"), params=[USER]),
    ("delete", "/api/v2/users/{user}/ai/budget"): operation(
        "delete the user's own budget (owner)", 204, None, params=[USER]),
    ("get", "/api/v2/users/{user}/ai/budget/override"): operation(
        "the user's own budget (owner, auditor; anyone for themselves)", 200, ref("UserBudget"), params=[USER]),
    ("put", "/api/v2/users/{user}/ai/budget/override"): operation(
        "set the user's own monthly budget, which beats its groups' (owner)", 200, ref("UserBudget"),
        body=ref("SetUserBudget"), params=[USER]),
    ("delete", "/api/v2/users/{user}/ai/budget/override"): operation(
        "delete the user's own budget (owner)", 204, None, params=[USER]),
    ("get", "/api/v2/audit"): operation(
        "the audit log, newest first (owner, auditor): every change, allowed or refused, and every sign-in",
        200, ref("AuditLogs"), content={"text/csv": {"schema": STR}}, params=[
            query_param("q", "space-separated key:value terms: action, resource_type, username, "
                             "resource_target, date_from, date_to (YYYY-MM-DD or RFC3339)", STR),
            LIMIT, query_param("offset", "0-1000000000", {"type": "integer", "minimum": 0,
                                                          "maximum": 1_000_000_000}),
            query_param("format", "json (default) or csv", {"enum": ["json", "csv"]})]),
    ("get", PROVIDERS): operation("every provider: configured (read-only) and created through the API (owner, "
                                  "auditor)", 200, ref("Providers")),
    ("post", PROVIDERS): operation("create a provider; its keys are stored encrypted, never returned (owner)", 201,
                                   ref("Provider"), body=ref("NewProvider")),
    ("get", PROVIDERS + "/{ref}"): operation("a provider with its status (owner, auditor)", 200, ref("Provider"),
                                             params=[PROVIDER]),
    ("patch", PROVIDERS + "/{ref}"): operation(
        "change a provider created through the API (owner): settings merge (null removes one); api_keys lists "
        "the kept ({id}) and added ({api_key}) keys, the others are deleted", 200, ref("Provider"),
        body=ref("ProviderPatch"), params=[PROVIDER]),
    ("delete", PROVIDERS + "/{ref}"): operation("delete a provider created through the API (owner)", 204, None,
                                                params=[PROVIDER]),
    ("get", f"{API}/proxy/ca-cert.pem"): operation("the AI Bridge Proxy's CA certificate (PEM)", 200, None,
                                                   content={"application/x-pem-file": {"schema": STR}},
                                                   public=True),
}
ALIAS_PREFIX, PRIMARY_PREFIX = "/api/v2/ai-gateway/", "/api/v2/aibridge/"

BASE: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "AI Bridge REST API", "version": __version__,
             "description": "Users, tokens, governance, spend and the export of recorded interceptions "
                            "(docs/api.md, docs/governance.md)."},
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "sessionToken": {"type": "apiKey", "in": "header", "name": "Coder-Session-Token"},
            "bearer": {"type": "http", "scheme": "bearer"},
        },
    },
    "security": [{"sessionToken": []}, {"bearer": []}],
}


def document_for(app: web.Application) -> dict[str, Any]:
    """The document of the routes ``app`` registers that ``OPERATIONS`` describes."""
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        if route.resource is None or route.method == "HEAD":
            continue
        path = route.resource.canonical
        primary = PRIMARY_PREFIX + path.removeprefix(ALIAS_PREFIX) if path.startswith(ALIAS_PREFIX) else path
        described = OPERATIONS.get((route.method.lower(), primary))
        if described is not None:
            paths.setdefault(path, {})[route.method.lower()] = described
    return {**BASE, "paths": paths}


CACHE: web.AppKey[dict[str, bytes]] = web.AppKey("openapi_document")


async def openapi(request: web.Request) -> web.Response:
    cache = request.app[CACHE]
    if "body" not in cache:          # built once every route is registered (the aliases come last)
        cache["body"] = orjson.dumps(document_for(request.app))
    return web.Response(body=cache["body"], content_type="application/json")


def add_routes(app: web.Application) -> None:
    app[CACHE] = {}
    app.router.add_get(PATH, openapi)
