"""Decrypted requests: served by an aiohttp application whose one handler calls the bridge.

Each CONNECT to a provider host becomes a ``Session`` (who, which host); the TLS connection is
handed to this application's HTTP/1.1 protocol, and every request on it goes through
``Bridge.dispatch`` — the same flow as ``/api/v2/aibridge/<provider>/…`` — as that user, with
``door="proxy"``. The user's token is checked again (through the cache) on every request, so a
revoked token or a suspended user stops working within the cache TTL even on a kept-alive
connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass

from aiohttp import web

from aibridge.bridge.intercept import provider_error
from aibridge.bridge.routing import Bridge, json_error
from aibridge.identity.auth import AuthError
from aibridge.proxy.hosts import DecryptedHosts
from aibridge.proxy.metrics import ProxyMetrics

log = logging.getLogger("aibridge.proxy")
DOOR = "proxy"


@dataclass(eq=False)
class Session:
    """One decrypted CONNECT (keyed by its TLS transport): the target and the credentials it was opened with."""

    host: str
    port: int
    token: str
    keep: object = None      # the stream writer of the CONNECT phase, kept alive with the connection


class Decrypted:
    def __init__(self, bridge: Bridge, hosts: DecryptedHosts, metrics: ProxyMetrics | None) -> None:
        self.bridge = bridge
        self.hosts = hosts
        self.metrics = metrics
        self.sessions: weakref.WeakKeyDictionary[object, Session] = weakref.WeakKeyDictionary()
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{path:.*}", self.handle)

    def supports(self, provider: str, tail: str) -> bool:
        found = self.bridge.providers.get(provider)
        return found is not None and found.routes.knows(tail)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        arrived_ns = time.time_ns()
        session = self.sessions.get(request.transport) if request.transport is not None else None
        if session is None:         # the connection is gone (or was never registered)
            raise web.HTTPMisdirectedRequest()
        if self.bridge.live.stale:
            await self.bridge.live.refresh()
        if not self.hosts.decrypts(session.host, session.port):    # its provider was removed since the CONNECT
            return json_error(404, f"no provider of this AI Bridge serves {session.host} any more")
        name, tail = self.hosts.route(session.host, session.port, request.path, self.supports)
        if self.metrics is not None:
            self.metrics.mitm_requests.labels(name).inc()
            self.metrics.inflight.labels(name).inc()
        status, user = 500, ""
        try:
            response, user = await self._answer(request, session, name, tail, arrived_ns)
            status = response.status
            return response
        except asyncio.CancelledError:
            status = 499            # the client went away
            raise
        finally:
            if self.metrics is not None:
                self.metrics.inflight.labels(name).dec()
                self.metrics.mitm_responses.labels(str(status), name).inc()
            log.info("proxy request", extra={"provider": name, "method": request.method, "host": session.host,
                                             "path": request.path, "status": status, "user": user})

    async def _answer(self, request: web.Request, session: Session, name: str, tail: str | None,
                      arrived_ns: int) -> tuple[web.StreamResponse, str]:
        """The bridge's answer, as the CONNECT's user (checked again: it may have been revoked since)."""
        provider = self.bridge.providers.get(name)
        if provider is None:     # removed or disabled since the CONNECT
            return await self.bridge.not_served(request, name), ""
        default_api = next(iter(provider.apis.values()))
        try:
            actor = await self.bridge.authenticator.authenticate({"Authorization": f"Bearer {session.token}"})
        except AuthError as exc:
            return provider_error(default_api, exc.status, exc.message), ""
        if tail is None:
            return provider_error(default_api, 404, f"route not supported: {request.method} {request.path}"), \
                actor.username
        return await self.bridge.dispatch(request, provider, tail, actor, DOOR, arrived_ns), actor.username
