"""Routes relayed as they are, with the central key (model lists, token counting, …).

Whatever is relayed carries the central key, so the path a client sends is checked before any
provider sees it: ``..`` segments, encoded separators and methods a route does not document are
refused (a passthrough route must not become a door to every upstream path).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from aibridge.bridge.apis.base import Api
from aibridge.bridge.intercept import CLIENT_GONE, provider_error
from aibridge.bridge.providers.base import Provider, UpstreamError, UpstreamRequest, UpstreamResponse
from aibridge.bridge.providers.http import forwardable_headers, relayable_headers

ModelFilter = Callable[[list[str]], Awaitable[set[str] | None]]
# Percent-encoded '/', '\', '.', '%', '?' and '#': decoded, they would change which upstream path is meant.
_ENCODED_SEPARATOR = re.compile(r"%(2f|5c|2e|25|3f|23)", re.IGNORECASE)
# A decoded segment: the characters model ids and resource ids use, never a separator or escape.
_SEGMENT = re.compile(r"^[A-Za-z0-9._~:@!$&'()*+,;=-]+$")

# The documented methods of each passthrough route (OpenAI's and Anthropic's API references).
_METHODS: tuple[tuple[re.Pattern[str], frozenset[str]], ...] = tuple(
    (re.compile(pattern), frozenset(methods.split())) for pattern, methods in (
        (r"v1/models", "GET"),
        (r"v1/models/.+", "GET"),
        (r"v1/conversations", "POST"),
        (r"v1/conversations/[^/]+", "GET POST DELETE"),
        (r"v1/conversations/[^/]+/items", "GET POST"),
        (r"v1/conversations/[^/]+/items/[^/]+", "GET DELETE"),
        (r"v1/responses/input_tokens", "POST"),
        (r"v1/responses/[^/]+", "GET DELETE"),
        (r"v1/responses/[^/]+/cancel", "POST"),
        (r"v1/responses/[^/]+/input_items", "GET"),
        (r"v1/messages/count_tokens", "POST"),
        (r"api/event_logging/[^/]+", "POST"),
    ))


def path_problem(raw_path: str, tail: str) -> str | None:
    """Why a bridge path is refused, or None. ``raw_path`` as sent, ``tail`` decoded."""
    if _ENCODED_SEPARATOR.search(raw_path):
        return "encoded separators (%2F, %5C, %2E, %25, %3F, %23) are not allowed in the path"
    for segment in tail.split("/"):
        if segment in (".", ".."):
            return "'.' and '..' segments are not allowed in the path"
        if not _SEGMENT.match(segment):
            return "the path has an empty segment or a character that is not allowed"
    return None


def method_allowed(method: str, tail: str) -> bool:
    """Only the methods a passthrough route documents (``DELETE v1/models/x`` is not one)."""
    return any(pattern.fullmatch(tail) and method in methods for pattern, methods in _METHODS)




async def passthrough(request: web.Request, provider: Provider, api: Api, tail: str,
                      visible_models: ModelFilter | None = None) -> web.StreamResponse:
    """``api`` only lends its error shape to failures of the bridge's own. ``visible_models``: the
    answer is a model list to filter to the ids it returns (read whole: model lists are small)."""
    body = await request.read()
    upstream_request = UpstreamRequest(request.method, tail, request.query_string,
                                       forwardable_headers(request.headers), body)
    try:
        upstream = await provider.send(upstream_request)
    except UpstreamError as exc:
        return provider_error(api, exc.status, exc.message)
    if visible_models is not None and upstream.status == 200:
        try:
            return await _filtered_model_list(upstream, visible_models)
        except UpstreamError as exc:
            return provider_error(api, exc.status, exc.message)
        finally:
            upstream.close()
    try:
        response = web.StreamResponse(status=upstream.status, headers=relayable_headers(upstream.headers))
        await response.prepare(request)
        try:
            async for chunk in upstream.iter_chunks():
                await response.write(chunk)
            await response.write_eof()
        except (UpstreamError, *CLIENT_GONE):
            pass     # headers are gone already; the truncated body tells the client
        return response
    finally:
        upstream.close()


async def _filtered_model_list(upstream: UpstreamResponse, visible_models: ModelFilter) -> web.Response:
    """The upstream's model list (OpenAI ``data`` or Anthropic ``data`` with first/last ids) without
    the models the user may not use; anything else, or a list nobody restricts, byte for byte."""
    payload = await upstream.read()
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        doc = None
    items = doc.get("data") if isinstance(doc, dict) else None
    if isinstance(doc, dict) and isinstance(items, list):
        ids = [i["id"] for i in items if isinstance(i, dict) and isinstance(i.get("id"), str)]
        keep = await visible_models(ids)
        if keep is not None and not keep.issuperset(ids):
            doc["data"] = [i for i in items if not isinstance(i, dict) or i.get("id") in keep]
            kept = [i["id"] for i in doc["data"] if isinstance(i, dict) and "id" in i]
            for name, value in (("first_id", kept[0] if kept else None), ("last_id", kept[-1] if kept else None)):
                if name in doc:
                    doc[name] = value
            payload = orjson.dumps(doc)
    return web.Response(status=upstream.status, body=payload, headers=relayable_headers(upstream.headers))
