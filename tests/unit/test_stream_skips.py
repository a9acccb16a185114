"""The observers' ``skips``: passing over events undecoded never changes what a stream records.

Every streamed reply of the fake upstream's scenarios (tool calls, thinking, parallel calls,
errors, cache usage, for the three APIs) is observed twice, with and without the skip, cut into
chunks at random places; the findings and the error must be the same. The skip must also pass
over most of a long text stream, or it is not worth having (Messages and Responses: their event
names tell; a chat chunk is plain only by its content, which costs as much to check as to read).
"""

from __future__ import annotations

import random

import pytest

from aibridge.bridge.apis.base import Api, Finding
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
        for event in decoder.events(stream[start:end], observer.skips if use_skip else None):
            decoded += 1
            findings += observer.feed(event)
    for event in decoder.flush():
        decoded += 1
        findings += observer.feed(event)
    return findings + observer.finish(), observer.error, decoded


@pytest.mark.parametrize(("api", "name", "key", "stream"), STREAMS, ids=[f"{a}-{n}-{k}" for a, n, k, _ in STREAMS])
def test_skipping_changes_no_finding(api: str, name: str, key: str, stream: bytes) -> None:
    rng = random.Random(f"{api}{name}{key}")
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(0, 12))))
        plain = observe(APIS[api], stream, cuts, use_skip=False)
        skipped = observe(APIS[api], stream, cuts, use_skip=True)
        assert skipped[:2] == plain[:2]


@pytest.mark.parametrize("api", ["messages", "responses"])
def test_text_deltas_are_not_decoded(api: str) -> None:
    stream = b"".join(c for c, _ in load_scenarios()[(api, "bench")].replies["streaming"].chunks)
    findings, _, decoded = observe(APIS[api], stream, [], use_skip=True)
    _, _, all_events = observe(APIS[api], stream, [], use_skip=False)
    assert findings                        # the usage is still found
    assert all_events >= 50 and decoded <= 8, (decoded, all_events)
