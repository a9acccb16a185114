"""The one flow every intercepted API shares: parse → upstream → relay → end.

Streams are relayed chunk by chunk as they arrive; the SSE decoder and the API's observer
read the same bytes beside the relay to find usage, tool calls and thoughts. Whatever
happens (upstream error, client gone, shutdown), the interception is ended exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from aibridge.bridge.apis.base import Api
from aibridge.bridge.clients import detect_client
from aibridge.bridge.flow import Addons, Flow, Reject
from aibridge.bridge.providers.base import Provider, UpstreamError, UpstreamRequest, UpstreamResponse
from aibridge.bridge.providers.http import forwardable_headers, relayable_headers
from aibridge.bridge.sse import SSEDecoder
from aibridge.identity.roles import Actor

# The client going away shows up as one of these when we write to it.
CLIENT_GONE = (ConnectionResetError, BrokenPipeError, ConnectionError)


def provider_error(api: Api, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(api.error_body(status, message)),
                        content_type="application/json", headers=headers)


async def parse_body(request: web.Request, api: Api) -> dict[str, Any] | web.Response:
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return provider_error(api, 400, f"request body is not valid JSON: {exc.msg} at position {exc.pos}")
    if not isinstance(body, dict):
        return provider_error(api, 400, "request body must be a JSON object")
    return body


async def intercept(request: web.Request, actor: Actor, provider: Provider, api: Api, tail: str,
                    addons: Addons, *, door: str = "bridge", arrived_ns: int = 0) -> web.StreamResponse:
    body = await parse_body(request, api)
    if isinstance(body, web.Response):
        return body
    info = api.request_info(body)
    client, session_id = detect_client(request.headers)
    flow = Flow(id=uuid.uuid4(), actor=actor, provider=provider, api=api, route="/" + tail,
                method=request.method, info=info, model=provider.upstream_model(info.model),
                client=client, session_id=session_id, user_agent=request.headers.get("User-Agent", ""),
                headers=request.headers, door=door, arrived_ns=arrived_ns or time.time_ns())
    try:
        await addons.admit(flow)
    except Reject as exc:
        return provider_error(api, exc.status, exc.message, exc.headers)
    addons.request_parsed(flow)
    try:
        return await _call_and_relay(request, flow, body, tail, addons)
    except asyncio.CancelledError:
        flow.fail("canceled", "request canceled")
        raise
    finally:
        addons.interception_ended(flow)


async def _call_and_relay(request: web.Request, flow: Flow, body: dict[str, Any], tail: str,
                          addons: Addons) -> web.StreamResponse:
    api = flow.api
    raw = orjson.dumps(body) if api.prepare_upstream(body) else await request.read()
    upstream_request = UpstreamRequest(request.method, tail, request.query_string,
                                       forwardable_headers(request.headers), raw, body, flow.streaming)
    addons.upstream_request(flow, upstream_request)
    waited = time.perf_counter()
    try:
        upstream = await flow.provider.send(upstream_request)
    except UpstreamError as exc:
        flow.fail("error", exc.message)
        addons.upstream_response(flow)
        return provider_error(api, exc.status, exc.message)
    finally:
        flow.upstream_seconds += time.perf_counter() - waited
    flow.upstream_status = upstream.status
    addons.upstream_response(flow)
    try:
        if upstream.status < 400 and upstream.headers.get("Content-Type", "").startswith("text/event-stream"):
            return await _relay_stream(request, flow, upstream, addons)
        return await _relay_blocking(flow, upstream, addons)
    finally:
        upstream.close()


async def _relay_blocking(flow: Flow, upstream: UpstreamResponse, addons: Addons) -> web.Response:
    waited = time.perf_counter()
    try:
        payload = await upstream.read()
    except UpstreamError as exc:
        flow.fail("error", exc.message)
        return provider_error(flow.api, exc.status, exc.message)
    finally:
        flow.upstream_seconds += time.perf_counter() - waited
    if upstream.status >= 400:
        flow.fail("error", f"upstream answered {upstream.status}")
    else:
        try:
            answer = orjson.loads(payload)
        except orjson.JSONDecodeError:
            answer = None
        if isinstance(answer, dict):
            for finding in flow.api.blocking_findings(answer):
                addons.finding(flow, finding)
    return web.Response(status=upstream.status, body=payload, headers=relayable_headers(upstream.headers))


async def _relay_stream(request: web.Request, flow: Flow, upstream: UpstreamResponse,
                        addons: Addons) -> web.StreamResponse:
    response = web.StreamResponse(status=upstream.status, headers=relayable_headers(upstream.headers))
    await response.prepare(request)
    decoder = SSEDecoder()
    observer = flow.api.new_stream_observer()
    chunks = upstream.iter_chunks()
    try:
        while True:
            waited = time.perf_counter()
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            finally:
                flow.upstream_seconds += time.perf_counter() - waited
            await response.write(chunk)
            for event in decoder.feed(chunk):
                for finding in observer.feed(event):
                    addons.finding(flow, finding)
        for event in decoder.flush():
            for finding in observer.feed(event):
                addons.finding(flow, finding)
        if observer.error:
            flow.fail("error", observer.error)
    except UpstreamError as exc:
        # The upstream broke mid-stream: tell the client in the provider's own words.
        flow.fail("error", exc.message)
        with contextlib.suppress(*CLIENT_GONE):
            await response.write(flow.api.stream_error_event(exc.message))
    except CLIENT_GONE:
        flow.fail("canceled", "client disconnected")
    finally:
        await chunks.aclose()       # releases the upstream connection at once
        for finding in observer.finish():
            addons.finding(flow, finding)
    if flow.outcome != "canceled":
        try:
            await response.write_eof()
        except CLIENT_GONE:
            flow.fail("canceled", "client disconnected")
    return response
