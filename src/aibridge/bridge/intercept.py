"""The one flow every intercepted API shares: parse → turns (upstream → relay) → end.

Every upstream call is a turn of ONE loop (``_turns``), sent by ONE function (``_send``); the
interception ends in ONE place (``intercept``), and the last bytes of every answer (a joined
stream's closing event, an error event, the end of the body) go out only after it ended.

Without inner tools the loop runs exactly one turn, relayed as it comes (``_Relay``): streams
chunk by chunk, byte for byte, while the SSE decoder and the API's observer read the same bytes
beside the relay, a few KiB at a time, to find usage, tool calls and thoughts. Whatever happens
(upstream error, client gone, shutdown), the interception is ended exactly once.

When an addon runs tools inside the interception (``flow.inner_tools``, set in ``prepare``),
after each turn ``after_turn`` may ask for another call, and the turns are joined into one
answer (``_JoinedBlocking``, ``_JoinedStream``): streamed events go through the API's joiner
(``bridge/loop/``) instead of being relayed byte for byte. See ``flow.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from aibridge.bridge.apis.base import Api, Finding, ToolCall
from aibridge.bridge.apis.common import loads_object
from aibridge.bridge.bodies import body_problem
from aibridge.bridge.clients import detect_client
from aibridge.bridge.credentials import CENTRALIZED, Credential
from aibridge.bridge.flow import Addons, Flow, Reject, Turn, TurnError
from aibridge.bridge.loop import TURN_APIS, TurnApi
from aibridge.bridge.providers.base import Provider, UpstreamError, UpstreamRequest, UpstreamResponse
from aibridge.bridge.providers.http import forwardable_headers, relayable_headers
from aibridge.bridge.routes import model_problem
from aibridge.bridge.sse import SSEDecoder
from aibridge.identity.roles import Actor
from aibridge.store.records import new_id

# The client going away shows up as one of these when we write to it.
CLIENT_GONE = (ConnectionResetError, BrokenPipeError, ConnectionError)
# A stream's relayed bytes are read (decoded, observed) once this much is held, and at its end.
READ_AFTER_BYTES = 4096


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
    if (problem := body_problem(raw, body)) is not None:
        return provider_error(api, 400, problem)
    return body


async def intercept(request: web.Request, actor: Actor, provider: Provider, api: Api, tail: str,
                    addons: Addons, *, door: str = "bridge", arrived_ns: int = 0,
                    credential: Credential = CENTRALIZED) -> web.StreamResponse:
    body = await parse_body(request, api)
    if isinstance(body, web.Response):
        return body
    info = api.request_info(body)
    if (problem := model_problem(info.model)) is not None:
        return provider_error(api, 400, problem)
    info.size = len(await request.read())       # already read: aiohttp keeps the bytes
    client, session_id = detect_client(request.headers)
    flow = Flow(id=new_id(), actor=actor, provider=provider, api=api, route="/" + tail,
                method=request.method, info=info, model=provider.upstream_model(info.model),
                client=client, session_id=session_id, user_agent=request.headers.get("User-Agent", ""),
                headers=request.headers, door=door, arrived_ns=arrived_ns or time.time_ns(), credential=credential)
    try:
        await addons.admit(flow)
    except Reject as exc:
        return provider_error(api, exc.status, exc.message, exc.headers)
    addons.request_parsed(flow)
    try:
        relay = await _turns(request, flow, body, tail, addons)
    except asyncio.CancelledError:
        flow.fail("canceled", "request canceled")
        raise
    finally:
        addons.interception_ended(flow)     # the one place an interception ends
    # The last bytes (a joined stream's closing event, an error event, the end of the body) go
    # out only once the interception has ended: what the recorder journals at the end is on
    # disk before the client has the whole answer (docs/monitoring.md).
    response = relay.response
    assert response is not None
    if response.prepared and flow.outcome != "canceled":
        with contextlib.suppress(*CLIENT_GONE):
            if relay.tail:
                await response.write(relay.tail)
            await response.write_eof()
    return response


async def _turns(request: web.Request, flow: Flow, body: dict[str, Any], tail: str, addons: Addons) -> _Relay:
    """The turn loop: each upstream call is a turn. Without inner tools there is exactly one,
    relayed byte for byte; with them, ``after_turn`` may ask for another after each turn."""
    api = flow.api
    changed = api.prepare_upstream(body)
    changed = await addons.prepare(flow, body) or changed
    raw = orjson.dumps(body) if changed else await request.read()
    turns = TURN_APIS.get(api.name) if flow.inner_tools is not None else None
    relay = _Relay(request, flow, addons) if turns is None else (
        _JoinedStream if flow.streaming else _JoinedBlocking)(request, flow, addons, turns)
    for number in itertools.count():
        try:
            upstream = await _send(request, flow, raw, body, tail, addons)
        except UpstreamError as exc:
            relay.failed(exc.status, exc.message)
            return relay
        try:
            answer = await relay.turn(upstream)
        finally:
            upstream.close()
        if answer is None:          # relayed whole (one turn), failed, or the client left
            return relay
        try:
            following = await _next_turn(request, flow, addons, Turn(body, answer, number))
        except TurnError as exc:
            relay.failed(500, exc.message, retry=False)
            return relay
        except _ClientGone:
            flow.fail("canceled", "client disconnected")
            return relay
        if following is None:
            relay.finish(answer)
            return relay
        relay.next_turn()
        body, raw = following, orjson.dumps(following)
    raise AssertionError("unreachable")


async def _send(request: web.Request, flow: Flow, raw: bytes, body: dict[str, Any], tail: str,
                addons: Addons) -> UpstreamResponse:
    """Every upstream call of every interception goes through here."""
    upstream_request = UpstreamRequest(request.method, tail, request.query_string,
                                       forwardable_headers(request.headers), raw, body, flow.streaming,
                                       flow.credential)
    addons.upstream_request(flow, upstream_request)
    waited = time.perf_counter()
    try:
        upstream = await flow.provider.send(upstream_request)
    except UpstreamError as exc:
        flow.fail("error", exc.message)
        addons.upstream_response(flow)
        raise
    finally:
        flow.upstream_seconds += time.perf_counter() - waited
    flow.upstream_status = upstream.status
    addons.upstream_response(flow)
    return upstream


class _Relay:
    """How a turn's answer reaches the client. This one: the only turn, relayed as it comes."""

    def __init__(self, request: web.Request, flow: Flow, addons: Addons) -> None:
        self.request, self.flow, self.addons = request, flow, addons
        self.response: web.StreamResponse | None = None     # set by every path through the loop
        self.tail = b""             # written after the interception ended, before the end of the body

    async def turn(self, upstream: UpstreamResponse) -> dict[str, Any] | None:
        """Relay one turn; its answer (blocking shape) when another turn may follow, else None."""
        if upstream.status < 400 and upstream.headers.get("Content-Type", "").startswith("text/event-stream"):
            self.response, self.tail = await _relay_stream(self.request, self.flow, upstream, self.addons)
        else:
            self.response = await _relay_blocking(self.flow, upstream, self.addons)
        return None

    def failed(self, status: int, message: str, *, retry: bool = True) -> None:
        """The answer ends with an error (upstream unreachable, an addon's ``TurnError``)."""
        self.flow.fail("error", message)
        # not worth retrying: the same conversation would end the same way
        self.response = provider_error(self.flow.api, status, message, None if retry else {"x-should-retry": "false"})

    def finish(self, answer: dict[str, Any]) -> None:
        """The last of several turns ended well."""

    def next_turn(self) -> None:
        """Another turn follows."""


async def _relay_blocking(flow: Flow, upstream: UpstreamResponse, addons: Addons,
                          report: Callable[[list[Finding]], None] | None = None) -> web.Response:
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
            findings = flow.api.blocking_findings(answer)
            if report is not None:
                report(findings)
            else:
                for finding in findings:
                    addons.finding(flow, finding)
    return web.Response(status=upstream.status, body=payload, headers=relayable_headers(upstream.headers))


async def _relay_stream(request: web.Request, flow: Flow, upstream: UpstreamResponse,
                        addons: Addons) -> tuple[web.StreamResponse, bytes]:
    """A stream relayed byte for byte; the response and what to write once the interception ended."""
    response = web.StreamResponse(status=upstream.status, headers=relayable_headers(upstream.headers))
    await response.prepare(request)
    reader = _StreamReader(flow, addons)
    chunks = upstream.iter_chunks()
    tail = b""
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
            reader.hold(chunk)
        reader.end()
    except UpstreamError as exc:
        # The upstream broke mid-stream: tell the client in the provider's own words.
        flow.fail("error", exc.message)
        tail = flow.api.stream_error_event(exc.message)
    except CLIENT_GONE:
        flow.fail("canceled", "client disconnected")
    finally:
        try:
            reader.finish()         # first: a cancelled task may not get past the await below
        finally:
            await chunks.aclose()   # releases the upstream connection at once
    return response, tail


class _StreamReader:
    """Reads what was relayed, beside the relay: the SSE decoder and the API's observer, fed the
    chunks a few KiB at a time. One look at several chunks costs much less than a look at each
    (an event per chunk is the rule when the upstream writes as it generates), and nothing reads
    the findings before the interception ends."""

    __slots__ = ("_addons", "_decoder", "_flow", "_held", "_held_size", "_observer")

    def __init__(self, flow: Flow, addons: Addons) -> None:
        self._flow, self._addons = flow, addons
        self._decoder = SSEDecoder()
        self._observer = flow.api.new_stream_observer()
        self._held: list[bytes] = []
        self._held_size = 0

    def hold(self, chunk: bytes) -> None:
        self._held.append(chunk)
        self._held_size += len(chunk)
        if self._held_size >= READ_AFTER_BYTES:
            self._read()

    def end(self) -> None:
        """The whole stream came: the last event may lack its blank line; an error event fails the flow."""
        self._read()
        for event in self._decoder.flush():
            self._report(self._observer.feed(event))
        if self._observer.error:
            self._flow.fail("error", self._observer.error)

    def finish(self) -> None:
        """Whatever happened: what was relayed is read, and the observer tells what it holds."""
        self._read()
        self._report(self._observer.finish())

    def _read(self) -> None:
        if not self._held:
            return
        raw = b"".join(self._held)        # one chunk: the chunk itself, no copy
        self._held.clear()
        self._held_size = 0
        observer = self._observer
        for event in self._decoder.events(raw, observer.skips, observer.skips_all):
            self._report(observer.feed(event))

    def _report(self, findings: list[Finding]) -> None:
        for finding in findings:
            self._addons.finding(self._flow, finding)


# ---------------------------------------------------------------- several turns in one answer

class _ClientGone(Exception):
    pass


def _report(flow: Flow, addons: Addons, findings: list[Finding]) -> None:
    """Findings of a turn; the model's calls to inner tools are the addon's to report."""
    hidden = flow.inner_tools
    for finding in findings:
        if not (isinstance(finding, ToolCall) and not finding.injected and hidden and hidden(finding.name)):
            addons.finding(flow, finding)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _while_connected(request: web.Request, work: Any) -> Any:
    """Await ``work``, cancelling it as soon as the client goes away (checked every 50 ms)."""
    task = asyncio.ensure_future(work)
    while not task.done():
        await asyncio.wait({task}, timeout=0.05)
        if not task.done() and _client_gone(request):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise _ClientGone
    return task.result()


async def _next_turn(request: web.Request, flow: Flow, addons: Addons, turn: Turn) -> dict[str, Any] | None:
    """Ask the addons for another upstream call; their tool runs count as time spent waiting."""
    waited = time.perf_counter()
    try:
        following: dict[str, Any] | None = await _while_connected(request, addons.after_turn(flow, turn))
        return following
    finally:
        flow.upstream_seconds += time.perf_counter() - waited
        _report(flow, addons, turn.findings)


class _JoinedBlocking(_Relay):
    """Blocking turns: each answer is read whole; the client gets the last, usage summed."""

    def __init__(self, request: web.Request, flow: Flow, addons: Addons, turns: TurnApi) -> None:
        super().__init__(request, flow, addons)
        self.turns = turns
        self.usages: list[dict[str, Any]] = []
        self.status, self.headers = 200, relayable_headers({})    # the latest turn's

    async def turn(self, upstream: UpstreamResponse) -> dict[str, Any] | None:
        answer, self.response = await _read_answer(self.flow, upstream, self.addons)
        self.status, self.headers = upstream.status, relayable_headers(upstream.headers)
        if answer is not None:
            self.usages.append(self.turns.usage(answer))
        return answer

    def finish(self, answer: dict[str, Any]) -> None:
        assert self.flow.inner_tools is not None
        final = self.turns.final_answer(answer, self.flow.inner_tools, self.usages)
        self.response = web.Response(status=self.status, body=orjson.dumps(final), headers=self.headers)


async def _read_answer(flow: Flow, upstream: UpstreamResponse,
                       addons: Addons) -> tuple[dict[str, Any] | None, web.Response]:
    """A blocking turn's answer, or None and the response that ends the interception."""
    response = await _relay_blocking(flow, upstream, addons, report=lambda fs: _report(flow, addons, fs))
    if upstream.status >= 400 or flow.outcome != "success":
        return None, response
    answer = loads_object(response.body) if isinstance(response.body, bytes) else None    # not JSON: relayed as it came
    return (answer, response) if isinstance(answer, dict) else (None, response)


class _JoinedStream(_Relay):
    """Streamed turns through the API's joiner: one continuous stream for the client, whose
    closing event (held by the joiner) is the tail, written once the interception ended."""

    def __init__(self, request: web.Request, flow: Flow, addons: Addons, turns: TurnApi) -> None:
        super().__init__(request, flow, addons)
        assert flow.inner_tools is not None
        self.joiner = turns.joiner(flow.inner_tools)

    async def turn(self, upstream: UpstreamResponse) -> dict[str, Any] | None:
        is_stream = upstream.status < 400 and upstream.headers.get("Content-Type", "").startswith("text/event-stream")
        if self.response is None and not is_stream:
            self.response = await _relay_blocking(self.flow, upstream, self.addons)
            return None
        if self.response is None:
            self.response = web.StreamResponse(status=upstream.status, headers=relayable_headers(upstream.headers))
            await self.response.prepare(self.request)
        if not is_stream:
            self._error(f"upstream answered {upstream.status}")
            return None
        return await self._relay_turn(self.response, upstream)

    def failed(self, status: int, message: str, *, retry: bool = True) -> None:
        if self.response is None:
            super().failed(status, message, retry=retry)
        else:
            self._error(message)

    def _error(self, message: str) -> None:
        self.flow.fail("error", message)
        self.tail = self.joiner.error(message)

    def finish(self, answer: dict[str, Any]) -> None:
        self.tail = self.joiner.finish()

    def next_turn(self) -> None:
        self.joiner.next_turn()

    async def _relay_turn(self, response: web.StreamResponse, upstream: UpstreamResponse) -> dict[str, Any] | None:
        """One turn's stream through the joiner; its answer, or None when it failed or the client left."""
        flow, addons, joiner = self.flow, self.addons, self.joiner
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
                events = decoder.feed(chunk)
                out = b"".join([joiner.feed(event) for event in events])
                if out:
                    await response.write(out)
                for event in events:
                    _report(flow, addons, observer.feed(event))
            for event in decoder.flush():
                if out := joiner.feed(event):
                    await response.write(out)
                _report(flow, addons, observer.feed(event))
            if observer.error:
                flow.fail("error", observer.error)
                self.tail = joiner.fail()
                return None
            return joiner.answer()
        except UpstreamError as exc:
            self._error(exc.message)
            return None
        except CLIENT_GONE:
            flow.fail("canceled", "client disconnected")
            return None
        finally:
            await chunks.aclose()
            _report(flow, addons, observer.finish())
