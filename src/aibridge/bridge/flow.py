"""The interception flow object and the hooks features attach to.

Like mitmproxy's addons, every feature (limits, the circuit breaker, recording, actor headers,
metrics, tracing, structured logs, …) is an object in ONE list, built in ``server.py``; the flow
in ``intercept.py`` calls its hooks at these moments, in list order:

- ``start()`` / ``close()`` (async)   the server starts / stops (open and release resources)
- ``admit(flow)`` (async)             may refuse the request by raising ``Reject`` (limits, breaker)
- ``refused(flow)``                   a refusal happened (``flow.refusal`` says why); every addon
                                      hears it, so guards release what they hold and metrics count it
- ``request_parsed(flow)``            once: the client's request is understood (model, prompt, client)
- ``upstream_request(flow, req)``     before EVERY upstream call; may adjust ``req.headers``. An addon
                                      that changes ``req.json`` must re-encode ``req.body`` too
- ``upstream_response(flow)``         after every upstream call: answered (``flow.upstream_status``)
                                      or could not be reached (``flow.error``)
- ``finding(flow, finding)``          a token usage, tool call or thought, from any upstream call
- ``interception_ended(flow)``        once, at the very end: finished, failed or abandoned (the answer's
                                      last bytes follow it on every path, so what is journaled here is
                                      durable before the client has the whole answer)
- ``passthrough(flow)``               once, at the very end of a passed-through flow (see below)
- ``stored(flow, obj)``               the upstream made an object the user may name later (a response,
                                      a conversation): ``obj.kind``, ``obj.id``
- ``prepare(flow, body)`` (async)     once, before the first upstream call: may change the request
                                      body and then returns True (MCP adds its tools here)
- ``after_turn(flow, turn)`` (async)  after each upstream answer: may return the body of another
                                      upstream call, or raise ``TurnError`` to end the answer
- ``visible_models(actor, provider, ids)`` (async)  a model list is relayed: which ids the user may see
- ``collectors()``                    once, when the server is built: Prometheus collectors for state
                                      the addon owns (circuits, purge counts), read when scraped

Re-entry. One interception may make several upstream calls (MCP's inner loop calls the model
again after running its tools): ``upstream_request``, ``upstream_response`` and ``finding`` then
run once per call, ``flow.upstream_calls`` counts them, and ``request_parsed`` and
``interception_ended`` still run once. A request may also arrive through another door than the
``/api/v2/aibridge/<provider>/`` routes (the AI Bridge Proxy hands its decrypted requests to the
same flow): ``flow.door`` says which, and nothing else changes for the addons.

Turns. Every upstream call is a turn of the flow's one loop, sent by one function; a plain
request is the loop with exactly one turn, relayed byte for byte. An addon that runs tools inside
the interception (MCP injection) sets ``flow.inner_tools`` (which tool names the bridge runs
itself) in ``prepare``. The loop then makes one upstream call per turn and joins the turns into
one answer with the API's joiner
(``bridge/loop/``): calls to those tools are hidden from the client, the text and thinking of
every turn stream live, there is one message start and one stop, indices stay consecutive, and
the final event carries the usage of all turns (blocking: the last turn's answer with the summed
usage). After each turn the flow asks ``after_turn`` for another call, and reports the findings
the addon put on the ``Turn`` (the tool calls it ran, ``injected=True``). The model's own calls to
inner tools are not reported as client tool calls; each turn's usage and thoughts are. A client
that goes away stops the loop at once, even while a tool runs. Time spent in ``after_turn``
counts as waiting (``upstream_seconds``), like the upstream calls.

Passthrough. A passed-through request (model lists, token counting, stored responses and
conversations: the provider's route table says which) is a flow too, with
``flow.passed_through`` set and no API reading: ``flow.info`` holds only the model it names (the
``{model}`` of its path or the ``model`` of its JSON body, else "") and the stored objects it
names (``info.references``). Its hooks: ``admit`` (and ``refused``), ``upstream_request``,
``upstream_response``, then ``passthrough(flow)`` once at the end instead of ``request_parsed`` …
``interception_ended``: it is not an interception, so it is never recorded. Guards that only make
sense for interceptions (the breaker, budgets) return at once for such a flow.

State. Addons keep per-flow state on the flow, under a ``FlowKey`` of their own
(``flow.put(KEY, value)`` / ``flow.get(KEY)``), never in dicts keyed by flow ids; they learn
everything from these hooks and never hold one another. State that outlives a flow belongs to the
addon that owns it, in the database when every worker and replica must see it (MCP's Responses
continuations); ``bridge/loop/`` holds none (pure: no I/O).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from aibridge.bridge import scrub
from aibridge.bridge.apis.base import Api, Finding, RequestInfo, Stored
from aibridge.bridge.credentials import CENTRALIZED, Credential
from aibridge.bridge.providers.base import Provider, UpstreamRequest
from aibridge.bridge.scrape import Collector
from aibridge.identity.roles import Actor

T = TypeVar("T")


class FlowKey(Generic[T]):
    """A typed key for one addon's state on a flow (like aiohttp's ``AppKey``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"FlowKey({self.name!r})"


class TurnError(Exception):
    """An addon ends a multi-turn answer with this error (e.g. the iteration limit)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(slots=True)
class Turn:
    """One upstream call of an interception: what was sent and its answer (in the blocking shape)."""

    body: dict[str, Any]
    answer: dict[str, Any]
    number: int
    findings: list[Finding] = field(default_factory=list)   # an addon's own findings (the tools it ran)


class Reject(Exception):
    """Refuse a request before it goes upstream, with a status and message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 reason: str = "refused") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.reason = reason           # e.g. "rate_limit", "concurrency", "circuit_open"


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
    headers: Mapping[str, str] = field(default_factory=dict)   # the client's request headers
    door: str = "bridge"            # "bridge" (the provider routes) | "proxy" (the AI Bridge Proxy)
    passed_through: bool = False    # a passed-through request: no API reading, never an interception
    credential: Credential = CENTRALIZED    # centralized, or BYOK with the user's own key (credentials.py)
    arrived_ns: int = field(default_factory=time.time_ns)      # wall clock, when the request arrived
    started: float = field(default_factory=time.perf_counter)
    upstream_seconds: float = 0.0   # time spent waiting on the upstream, over all calls
    upstream_calls: int = 0
    upstream_status: int | None = None   # of the latest upstream call
    outcome: str = "success"        # success | error | canceled | rejected
    error: str | None = None
    refusal: str | None = None      # why a guard refused it (outcome "rejected")
    cost_usd: float | None = None   # priced from its usage by the cost addon, before the recorders end it
    findings: list[Finding] = field(default_factory=list)
    metadata: dict[FlowKey[Any], Any] = field(default_factory=dict)   # addons' per-flow state
    inner_tools: Callable[[str], bool] | None = None   # tools the bridge runs itself (hidden from the client)

    @property
    def streaming(self) -> bool:
        return self.info.stream

    def fail(self, outcome: str, message: str) -> None:
        if self.outcome == "success":      # the message may quote an upstream that echoed a key
            self.outcome, self.error = outcome, scrub.current().text(message)

    def get(self, key: FlowKey[T]) -> T | None:
        return cast("T | None", self.metadata.get(key))

    def put(self, key: FlowKey[T], value: T) -> None:
        self.metadata[key] = value

    def pop(self, key: FlowKey[T]) -> T | None:
        return cast("T | None", self.metadata.pop(key, None))


class Addon:
    """Base class with no-op hooks; subclasses override what they need."""

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def admit(self, flow: Flow) -> None:
        pass

    def refused(self, flow: Flow) -> None:
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

    def passthrough(self, flow: Flow) -> None:
        pass

    def stored(self, flow: Flow, obj: Stored) -> None:
        pass

    async def visible_models(self, actor: Actor, provider: Provider, ids: list[str]) -> set[str] | None:
        """A model list (``GET …/v1/models``) is about to be relayed: the ids ``actor`` may see (None: all)."""
        return None

    async def prepare(self, flow: Flow, body: dict[str, Any]) -> bool:
        return False

    async def after_turn(self, flow: Flow, turn: Turn) -> dict[str, Any] | None:
        return None

    def collectors(self) -> list[Collector]:
        return []


HOOKS = ("start", "close", "admit", "refused", "request_parsed", "upstream_request", "upstream_response",
         "finding", "interception_ended", "passthrough", "stored", "prepare", "after_turn",
         "visible_models", "collectors")


class Addons:
    """Calls every addon that overrides a hook, in list order (no cost for the ones that don't)."""

    def __init__(self, addons: list[Addon]) -> None:
        self.addons = addons
        self._by_hook: dict[str, list[Any]] = {
            hook: [getattr(a, hook) for a in addons if getattr(type(a), hook) is not getattr(Addon, hook)]
            for hook in HOOKS}

    def __iter__(self) -> Any:
        return iter(self.addons)

    async def start(self) -> None:
        for hook in self._by_hook["start"]:
            await hook()

    async def close(self) -> None:
        """In reverse order: what started last stops first."""
        for hook in reversed(self._by_hook["close"]):
            await hook()

    async def admit(self, flow: Flow) -> None:
        try:
            for hook in self._by_hook["admit"]:
                await hook(flow)
        except Reject as exc:
            flow.outcome, flow.error, flow.refusal = "rejected", exc.message, exc.reason
            for refused in self._by_hook["refused"]:
                refused(flow)
            raise

    def request_parsed(self, flow: Flow) -> None:
        for hook in self._by_hook["request_parsed"]:
            hook(flow)

    def upstream_request(self, flow: Flow, request: UpstreamRequest) -> None:
        flow.upstream_calls += 1
        for hook in self._by_hook["upstream_request"]:
            hook(flow, request)

    def upstream_response(self, flow: Flow) -> None:
        for hook in self._by_hook["upstream_response"]:
            hook(flow)

    def finding(self, flow: Flow, finding: Finding) -> None:
        if isinstance(finding, Stored):     # not a finding of the interception: only ``stored`` hears it
            for stored in self._by_hook["stored"]:
                stored(flow, finding)
            return
        flow.findings.append(finding)
        for hook in self._by_hook["finding"]:
            hook(flow, finding)

    def interception_ended(self, flow: Flow) -> None:
        for hook in self._by_hook["interception_ended"]:
            hook(flow)

    def passthrough(self, flow: Flow) -> None:
        for hook in self._by_hook["passthrough"]:
            hook(flow)

    async def prepare(self, flow: Flow, body: dict[str, Any]) -> bool:
        changed = False
        for hook in self._by_hook["prepare"]:
            changed = await hook(flow, body) or changed
        return changed

    async def after_turn(self, flow: Flow, turn: Turn) -> dict[str, Any] | None:
        """The first addon that asks for another upstream call gets it."""
        for hook in self._by_hook["after_turn"]:
            following: dict[str, Any] | None = await hook(flow, turn)
            if following is not None:
                return following
        return None

    def collectors(self) -> list[Collector]:
        """What every addon wants scraped (``scrape.py``)."""
        return [collector for hook in self._by_hook["collectors"] for collector in hook()]

    @property
    def filter_models(self) -> bool:
        return bool(self._by_hook["visible_models"])

    async def visible_models(self, actor: Actor, provider: Provider, ids: list[str]) -> set[str] | None:
        """The ids every addon lets ``actor`` see; None when no addon restricts them."""
        visible: set[str] | None = None
        for hook in self._by_hook["visible_models"]:
            found = await hook(actor, provider, ids)
            if found is not None:
                visible = found if visible is None else visible & found
        return visible
