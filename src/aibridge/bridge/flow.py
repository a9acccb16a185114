"""The interception flow object and the hooks features attach to.

Like mitmproxy's addons, features (recording, metrics, tracing, structured logs, limits) are
objects with any of these methods; the flow in ``intercept.py`` calls them at its moments:

- ``admit(flow)`` (async)        may refuse the request with ``Reject`` (limits, circuit breaker)
- ``request_parsed(flow)``       the client's request is understood (model, prompt, client)
- ``upstream_request(flow, req)`` just before the upstream call; may adjust headers
- ``upstream_response(flow)``    the upstream answered (status and headers) or could not be reached
- ``finding(flow, finding)``     a token usage, tool call or thought was read from the answer
- ``interception_ended(flow)``   the answer is finished, failed or abandoned
- ``passthrough(provider, route, method, status)``  a passed-through request was answered

A refused request is not recorded: ``admit`` runs before ``request_parsed``. An addon that
admitted a request learns of a later refusal through ``interception_ended`` with the outcome
``rejected``, so it can release what it holds.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aibridge.bridge.apis.base import Api, Finding, RequestInfo
from aibridge.bridge.providers.base import Provider, UpstreamRequest
from aibridge.identity.roles import Actor


class Reject(Exception):
    """Refuse a request before it goes upstream, with a status and message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(slots=True, eq=False)
class Flow:
    id: uuid.UUID
    actor: Actor
    provider: Provider
    api: Api
    route: str                      # e.g. "/v1/messages"
    method: str
    info: RequestInfo
    model: str                      # the model the upstream runs (Bedrock maps it)
    client: str
    session_id: str | None
    user_agent: str
    started: float = field(default_factory=time.perf_counter)
    upstream_seconds: float = 0.0   # time spent waiting on the upstream
    upstream_status: int | None = None
    outcome: str = "success"        # success | error | canceled | rejected
    error: str | None = None
    findings: list[Finding] = field(default_factory=list)
    trace: Any = None               # the tracing addon's span state, when tracing is on

    @property
    def streaming(self) -> bool:
        return self.info.stream

    def fail(self, outcome: str, message: str) -> None:
        if self.outcome == "success":
            self.outcome, self.error = outcome, message


class Addon:
    """Base class with no-op hooks; subclasses override what they need."""

    async def admit(self, flow: Flow) -> None:
        pass

    def request_parsed(self, flow: Flow) -> None:
        pass

    def upstream_request(self, flow: Flow, request: UpstreamRequest) -> None:
        pass

    def upstream_response(self, flow: Flow) -> None:
        pass

    def finding(self, flow: Flow, finding: Finding) -> None:
        pass

    def interception_ended(self, flow: Flow) -> None:
        pass

    def passthrough(self, provider: Provider, route: str, method: str, status: int) -> None:
        pass


HOOKS = ("admit", "request_parsed", "upstream_request", "upstream_response", "finding", "interception_ended",
         "passthrough")


class Addons:
    """Calls every addon that overrides a hook, in order (no cost for the ones that don't)."""

    def __init__(self, addons: list[Addon]) -> None:
        self.addons = addons
        self._by_hook: dict[str, list[Any]] = {
            hook: [getattr(a, hook) for a in addons if getattr(type(a), hook) is not getattr(Addon, hook)]
            for hook in HOOKS}
        self._admitters = [a for a in addons if type(a).admit is not Addon.admit]

    async def admit(self, flow: Flow) -> None:
        for at, addon in enumerate(self._admitters):
            try:
                await addon.admit(flow)
            except Reject:
                flow.outcome = "rejected"
                for earlier in self._admitters[:at]:     # let them release what they hold
                    earlier.interception_ended(flow)
                raise

    def request_parsed(self, flow: Flow) -> None:
        for hook in self._by_hook["request_parsed"]:
            hook(flow)

    def upstream_request(self, flow: Flow, request: UpstreamRequest) -> None:
        for hook in self._by_hook["upstream_request"]:
            hook(flow, request)

    def upstream_response(self, flow: Flow) -> None:
        for hook in self._by_hook["upstream_response"]:
            hook(flow)

    def finding(self, flow: Flow, finding: Finding) -> None:
        flow.findings.append(finding)
        for hook in self._by_hook["finding"]:
            hook(flow, finding)

    def interception_ended(self, flow: Flow) -> None:
        for hook in self._by_hook["interception_ended"]:
            hook(flow)

    def passthrough(self, provider: Provider, route: str, method: str, status: int) -> None:
        for hook in self._by_hook["passthrough"]:
            hook(provider, route, method, status)
