"""The SSE decoder against a plain line-by-line reading of the WHATWG rules, on random input."""

from __future__ import annotations

import random

from aibridge.bridge.sse import SSEDecoder, SSEEvent, encode_event


def reference(stream: bytes) -> list[SSEEvent]:
    """Line by line, as the spec reads: dispatch at a blank line, ignore comments; the last
    event id persists. At the end of the stream a pending event counts if it has data lines
    (the spec would drop it; the bridge keeps what a cut-off upstream sent)."""
    text = stream.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    *lines, rest = text.split("\n")          # ``rest``: a last line with no line end
    events: list[SSEEvent] = []
    event: str | None = None
    event_id: str | None = None
    data: list[str] = []

    def dispatch() -> None:
        joined = "\n".join(data)
        if joined or event:
            events.append(SSEEvent(event, joined, event_id))

    for at, line in enumerate([*lines, rest]):
        if not line:
            if at < len(lines):                 # a real blank line, not the empty remainder
                dispatch()
                event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            event_id = value
    if data:
        dispatch()
    return events


def decode(stream: bytes, rng: random.Random) -> list[SSEEvent]:
    decoder, events, at = SSEDecoder(), [], 0
    while at < len(stream):
        size = rng.randint(1, 40)
        events += decoder.feed(stream[at:at + size])
        at += size
    return events + decoder.flush()


def random_stream(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randint(0, 12)):
        lines = []
        if rng.random() < 0.5:
            lines.append(f"event: {rng.choice(['message_start', 'ping', 'response.completed'])}")
        for _ in range(rng.randint(0, 3)):
            value = rng.choice(['{"a":1}', "", "é ü", " two  spaces", "KEEP"])
            lines.append(rng.choice(["data: ", "data:", "data"]) + value)
        if rng.random() < 0.2:
            lines.append(": keep-alive comment")
        if rng.random() < 0.1:
            lines.append("id: 42")
        newline = rng.choice(["\n", "\r\n", "\r"])
        parts.append(newline.join(lines) + newline * rng.choice([1, 2, 2, 3]))
    return "".join(parts).encode()


def test_matches_the_spec_reading_on_random_streams_and_chunkings() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        stream = random_stream(rng)
        assert decode(stream, rng) == reference(stream), stream


def test_events_passed_over_leave_the_rest_as_the_spec_reads_them() -> None:
    """``skip`` and ``skip_all`` pass over the events without the marker, whole chunks at a time
    where they can: the spec's events with it in their data are read as the spec reads them, at
    any chunking."""
    rng = random.Random(11)

    def unmarked(raw: bytes) -> bool:
        return b"KEEP" not in raw

    for _ in range(3000):
        stream = random_stream(rng)
        decoder, at = SSEDecoder(), 0
        events: list[SSEEvent] = []
        while at < len(stream):
            size = rng.randint(1, 120)
            events += decoder.events(stream[at:at + size], unmarked, unmarked)
            at += size
        got = [(e.event, e.data) for e in events + decoder.flush() if "KEEP" in e.data]
        assert got == [(e.event, e.data) for e in reference(stream) if "KEEP" in e.data], stream


def test_real_shapes() -> None:
    chat = b'data: {"id":"c1","choices":[]}\n\ndata: [DONE]\n\n'
    assert [e.data for e in SSEDecoder().feed(chat)] == ['{"id":"c1","choices":[]}', "[DONE]"]
    anthropic = b'event: message_stop\ndata: {"type":"message_stop"}\n\nevent: ping\ndata: {"type": "ping"}\n\n'
    assert [(e.event, e.data) for e in SSEDecoder().feed(anthropic)] == [
        ("message_stop", '{"type":"message_stop"}'), ("ping", '{"type": "ping"}')]


def test_a_crlf_split_across_chunks_is_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"\n\r") == [SSEEvent(None, "x")]
    assert decoder.feed(b"\ndata: y\r\n\r\n") == [SSEEvent(None, "y")]


def test_a_last_event_without_its_blank_line_counts_at_the_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b") == [SSEEvent(None, "a")]
    assert decoder.flush() == [SSEEvent(None, "b")]
    assert decoder.flush() == []


def test_encode_round_trips() -> None:
    raw = encode_event('{"x": "line one\\nline two"}', "message_delta") + encode_event("a\nb")
    assert SSEDecoder().feed(raw) == [SSEEvent("message_delta", '{"x": "line one\\nline two"}'),
                                      SSEEvent(None, "a\nb")]
