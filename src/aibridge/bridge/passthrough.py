"""Routes relayed as they are, with the central key (model lists, token counting, …)."""

from __future__ import annotations

from aiohttp import web

from aibridge.bridge.apis.base import Api
from aibridge.bridge.intercept import CLIENT_GONE, provider_error
from aibridge.bridge.providers.base import Provider, UpstreamError, UpstreamRequest
from aibridge.bridge.providers.http import forwardable_headers, relayable_headers


async def passthrough(request: web.Request, provider: Provider, api: Api, tail: str) -> web.StreamResponse:
    """``api`` only lends its error shape to failures of the bridge's own."""
    body = await request.read()
    upstream_request = UpstreamRequest(request.method, tail, request.query_string,
                                       forwardable_headers(request.headers), body)
    try:
        upstream = await provider.send(upstream_request)
    except UpstreamError as exc:
        return provider_error(api, exc.status, exc.message)
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
