"""Routes relayed as they are, with the central key (model lists, token counting, stored objects).

A passed-through request is a flow like an intercepted one, without an API reading
(``flow.passed_through``): the guards admit it (limits, model rules when it names a model, the
owner of a stored object it names), ``upstream_request`` adjusts what goes upstream (actor
headers), and ``passthrough(flow)`` ends it. It is never recorded as an interception.

Whatever is relayed carries the central key, so the path a client sends is checked before any
provider sees it: ``..`` segments and encoded separators are refused here (400), and only the
paths and methods of the provider's route table (``routes.py``) are relayed (a passthrough route
must not become a door to every upstream path).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from aibridge.bridge.apis.base import RequestInfo, Stored
from aibridge.bridge.credentials import CENTRALIZED, Credential
from aibridge.bridge.flow import Addons, Flow, Reject
from aibridge.bridge.intercept import CLIENT_GONE, provider_error
from aibridge.bridge.providers.base import Provider, UpstreamError, UpstreamRequest, UpstreamResponse
from aibridge.bridge.providers.http import forwardable_headers, relayable_headers
from aibridge.bridge.routes import Match, model_problem
from aibridge.identity.roles import Actor
from aibridge.store.records import new_id

ModelFilter = Callable[[list[str]], Awaitable[set[str] | None]]
# Percent-encoded '/', '\', '.', '%', '?' and '#': decoded, they would change which upstream path is meant.
_ENCODED_SEPARATOR = re.compile(r"%(2f|5c|2e|25|3f|23)", re.IGNORECASE)
# A decoded segment: the characters model ids and resource ids use, never a separator or escape.
_SEGMENT = re.compile(r"^[A-Za-z0-9._~:@!$&'()*+,;=-]+$")
MODEL_LISTS = frozenset({"v1/models", "models"})      # the routes of a model list (Copilot's has no v1/)


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


def body_model(body: bytes) -> str:
    """The ``model`` a passed-through JSON body names ("" when it names none)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    model = doc.get("model") if isinstance(doc, dict) else None
    return model if isinstance(model, str) else ""


async def passthrough(request: web.Request, actor: Actor, provider: Provider, found: Match, tail: str,
                      addons: Addons, door: str = "bridge", arrived_ns: int = 0,
                      credential: Credential = CENTRALIZED) -> web.StreamResponse:
    """Admit, relay and end one passed-through request (its body is already read)."""
    api = next(iter(provider.apis.values()))       # lends its error shape to the bridge's own errors
    body = await request.read()
    model = body_model(body) if found.route.model_in_body else found.model
    if (problem := model_problem(model)) is not None:
        return provider_error(api, 400, problem)
    flow = Flow(id=new_id(), actor=actor, provider=provider, api=api, route="/" + tail, method=request.method,
                info=RequestInfo(model, False, None, size=len(body), references=found.owned), model=model,
                client="", session_id=None, user_agent=request.headers.get("User-Agent", ""),
                headers=request.headers, door=door, passed_through=True, arrived_ns=arrived_ns or time.time_ns(),
                credential=credential)
    try:
        await addons.admit(flow)
    except Reject as exc:
        return provider_error(api, exc.status, exc.message, exc.headers)
    lists_models = request.method == "GET" and found.route.path in MODEL_LISTS and addons.filter_models
    visible = (lambda ids: addons.visible_models(actor, provider, ids)) if lists_models else None
    try:
        return await _relay(request, flow, body, addons, visible, found.route.creates)
    except asyncio.CancelledError:
        flow.fail("canceled", "request canceled")
        raise
    finally:
        addons.passthrough(flow)


async def _relay(request: web.Request, flow: Flow, body: bytes, addons: Addons, visible_models: ModelFilter | None,
                 creates: str | None) -> web.StreamResponse:
    """``visible_models``: the answer is a model list to filter to the ids it returns; ``creates``: its
    ``id`` is a new object of that kind (both read whole: such answers are small)."""
    upstream_request = UpstreamRequest(request.method, flow.route[1:], request.query_string,
                                       forwardable_headers(request.headers), body, credential=flow.credential)
    addons.upstream_request(flow, upstream_request)
    waited = time.perf_counter()
    try:
        upstream = await flow.provider.send(upstream_request)
    except UpstreamError as exc:
        flow.fail("error", exc.message)
        addons.upstream_response(flow)
        return provider_error(flow.api, exc.status, exc.message)
    finally:
        flow.upstream_seconds += time.perf_counter() - waited
    flow.upstream_status = upstream.status
    addons.upstream_response(flow)
    if upstream.status >= 400:
        flow.fail("error", f"upstream answered {upstream.status}")
    try:
        if upstream.status == 200 and (visible_models is not None or creates is not None):
            try:
                if visible_models is not None:
                    return await _filtered_model_list(upstream, visible_models)
                return await _created(flow, upstream, addons, creates or "")
            except UpstreamError as exc:
                flow.fail("error", exc.message)
                return provider_error(flow.api, exc.status, exc.message)
        response = web.StreamResponse(status=upstream.status, headers=relayable_headers(upstream.headers))
        await response.prepare(request)
        try:
            async for chunk in upstream.iter_chunks():
                await response.write(chunk)
            await response.write_eof()
        except UpstreamError as exc:
            flow.fail("error", exc.message)     # headers are gone already; the truncated body tells the client
        except CLIENT_GONE:
            flow.fail("canceled", "client disconnected")
        return response
    finally:
        upstream.close()


async def _created(flow: Flow, upstream: UpstreamResponse, addons: Addons, kind: str) -> web.Response:
    """An answer that made an object (``POST v1/conversations``): reported as ``Stored`` before it is relayed."""
    payload = await upstream.read()
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and isinstance(made := doc.get("id"), str) and made:
        addons.finding(flow, Stored(kind, made))
    return web.Response(status=upstream.status, body=payload, headers=relayable_headers(upstream.headers))


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
