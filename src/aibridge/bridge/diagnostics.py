"""Upstream misconfiguration made visible: logged once per provider, explained to the client.

A base URL missing ``/v1`` makes the upstream answer a bare (non-JSON) 404; a wrong host makes
it unreachable. Both used to reach the client as an unexplained 404 or 502 with nothing in the
server's log. ``Diagnosed`` wraps a provider (for every door and route, intercepted or passed
through) and turns them into a 502 in the provider's error shape whose message says what to
check, and one log line per provider naming it and its base URL, until it answers again.

It is also where every upstream error answer has the configured keys taken out (``scrub.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aibridge.bridge.apis.base import Api
from aibridge.bridge.providers.base import Provider, UpstreamError, UpstreamRequest, UpstreamResponse
from aibridge.bridge.routes import RouteTable
from aibridge.bridge.scrub import scrubbed

log = logging.getLogger("aibridge.upstream")


class Diagnosed:
    """A provider seen through the Provider protocol, with its misconfiguration diagnosed."""

    def __init__(self, inner: Provider, base_url: str) -> None:
        self.inner = inner
        self.base_url = base_url
        self._reported: str | None = None     # the problem last logged, until the upstream answers again

    @property
    def type(self) -> str:
        return self.inner.type

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def accepts_byok(self) -> bool:
        return bool(getattr(self.inner, "accepts_byok", True))

    @property
    def byok_only(self) -> bool:
        return bool(getattr(self.inner, "byok_only", False))

    @property
    def apis(self) -> Mapping[str, Api]:
        return self.inner.apis

    @property
    def routes(self) -> RouteTable:
        return self.inner.routes

    def upstream_model(self, model: str) -> str:
        return self.inner.upstream_model(model)

    @property
    def byok_only_help(self) -> object:
        return getattr(self.inner, "byok_only_help", None)

    def secrets(self) -> list[str]:
        """The inner provider's credentials (``scrub.provider_secrets``)."""
        found = getattr(self.inner, "secrets", None)
        return list(found()) if found is not None else []

    async def close(self) -> None:
        await self.inner.close()

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        where = self.base_url or "its default URL"
        try:
            response = await self.inner.send(request)
        except UpstreamError as exc:
            self._report("unreachable", f"upstream {self.name} ({where}) cannot be reached: {exc.message}")
            raise UpstreamError(exc.status, f"{exc.message}; check the base URL configured for provider "
                                            f"{self.name!r} ({where}) and that the bridge can reach it") from exc
        if response.status == 404 and "json" not in response.headers.get("Content-Type", "") \
                and not self._passed_wholesale(request):
            response.close()
            hint = (f"upstream {self.name} answered a bare 404 for {request.method} /{request.tail}: "
                    f"its base URL {where} is probably wrong")
            if "v1/chat/completions" in self.inner.apis:      # OpenAI's format, whatever the type
                hint += " (an OpenAI-compatible base URL usually ends in /v1)"
            self._report("bare-404", hint)
            raise UpstreamError(502, f"{hint}; check the base URL configured for provider {self.name!r}")
        if self._reported is not None:
            log.info("upstream %s answers again (%s)", self.name, where)
            self._reported = None
        return scrubbed(response)       # an error body may echo the key it was sent

    def _passed_wholesale(self, request: UpstreamRequest) -> bool:
        """A path of a ``{path+}`` route (the rest of Copilot's API) may not exist upstream: its
        404 is the upstream's own answer, not the sign of a wrong base URL."""
        found = self.inner.routes.find(request.method, request.tail)
        return found is not None and found.route.path.endswith("+}")

    def _report(self, problem: str, message: str) -> None:
        if self._reported != problem:
            self._reported = problem
            log.error("%s", message)
