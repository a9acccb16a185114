"""The observers' ``skips`` and ``skips_all``: passing over events undecoded never changes what a
stream records.

Every streamed reply of the fake upstream's scenarios (tool calls, thinking, parallel calls,
errors, cache usage, for the three APIs) is observed twice, with and without the skips, cut into
chunks at random places; the findings and the error must be the same. The skips must also pass
over most of a long text stream, or they are not worth having; a chunk of several chat text
deltas is passed over whole (``skips_all``), with one check for the chunk.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest

from aibridge.bridge.apis.base import Api, Finding, Usage
from aibridge.bridge.apis.chat_completions import CHAT_COMPLETIONS
from aibridge.bridge.apis.messages import MESSAGES
from aibridge.bridge.apis.responses import RESPONSES
from aibridge.bridge.sse import SSEDecoder
from tests.fakes.upstream import load_scenarios

APIS: dict[str, Api] = {"chat": CHAT_COMPLETIONS, "messages": MESSAGES, "responses": RESPONSES}
STREAMS = [(api, name, key, b"".join(c for c, _ in reply.chunks))
           for (api, name), scenario in sorted(load_scenarios().items())
           for key, reply in sorted(scenario.replies.items()) if reply.kind == "sse" and reply.chunks]


def observe(api: Api, stream: bytes, cuts: list[int], use_skip: bool) -> tuple[list[Finding], str | None, int]:
    decoder, observer = SSEDecoder(), api.new_stream_observer()
    findings: list[Finding] = []
    decoded = 0
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        skips = (observer.skips, observer.skips_all) if use_skip else (None, None)
        for event in decoder.events(stream[start:end], *skips):
            decoded += 1
            findings += observer.feed(event)
    for event in decoder.flush():
        decoded += 1
        findings += observer.feed(event)
    return findings + observer.finish(), observer.error, decoded


def noting(check: Callable[[bytes], bool], asked: list[bytes]) -> Callable[[bytes], bool]:
    """``check``, noting each question in ``asked``."""
    def ask(raw: bytes) -> bool:
        asked.append(raw)
        return check(raw)
    return ask


@pytest.mark.parametrize(("api", "name", "key", "stream"), STREAMS, ids=[f"{a}-{n}-{k}" for a, n, k, _ in STREAMS])
def test_skipping_changes_no_finding(api: str, name: str, key: str, stream: bytes) -> None:
    rng = random.Random(f"{api}{name}{key}")
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(0, 12))))
        plain = observe(APIS[api], stream, cuts, use_skip=False)
        skipped = observe(APIS[api], stream, cuts, use_skip=True)
        assert skipped[:2] == plain[:2]


@pytest.mark.parametrize("api", ["chat", "messages", "responses"])
def test_text_deltas_are_not_decoded(api: str) -> None:
    chunks = [c for c, _ in load_scenarios()[(api, "bench")].replies["streaming"].chunks]
    stream = b"".join(chunks)
    cuts = list(itertools.accumulate(len(c) for c in chunks[:-1]))     # as the upstream writes it
    findings, _, decoded = observe(APIS[api], stream, cuts, use_skip=True)
    plain_findings, _, all_events = observe(APIS[api], stream, cuts, use_skip=False)
    assert findings == plain_findings and any(isinstance(f, Usage) for f in findings)
    assert all_events >= 50 and decoded <= 8, (decoded, all_events)


def test_a_chunk_of_chat_text_deltas_is_passed_over_whole() -> None:
    chunks = [c for c, _ in load_scenarios()[("chat", "bench")].replies["streaming"].chunks]
    middle = chunks[len(chunks) // 2]
    assert middle.count(b"\n\n") >= 5          # the fake writes several events at a time
    decoder, observer = SSEDecoder(), CHAT_COMPLETIONS.new_stream_observer()
    check_all = observer.skips_all
    assert check_all is not None
    for chunk in chunks[:len(chunks) // 2]:
        for event in decoder.events(chunk, observer.skips, observer.skips_all):
            observer.feed(event)
    per_event: list[bytes] = []
    per_chunk: list[bytes] = []
    assert list(decoder.events(middle, noting(observer.skips, per_event), noting(check_all, per_chunk))) == []
    assert len(per_chunk) == 1 and per_event == []     # one question for the chunk, none per event


def test_a_whole_chat_stream_in_one_chunk_costs_a_few_questions() -> None:
    """Its first event (the id) and its last ones (usage) need reading: the events between are
    passed over by halves, not asked about one by one."""
    stream = b"".join(c for c, _ in load_scenarios()[("chat", "bench")].replies["streaming"].chunks)
    decoder, observer = SSEDecoder(), CHAT_COMPLETIONS.new_stream_observer()
    check_all = observer.skips_all
    assert check_all is not None
    asked: list[bytes] = []
    events = decoder.events(stream, noting(observer.skips, asked), noting(check_all, asked))
    findings = [f for event in events for f in observer.feed(event)] + observer.finish()
    assert any(isinstance(f, Usage) for f in findings)
    assert stream.count(b"\n\n") >= 50 and len(asked) <= 25, len(asked)
