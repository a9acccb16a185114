"""Incremental Server-Sent Events decoding (bytes in, events out) and encoding.

Follows the WHATWG rules: lines end in LF, CRLF or CR; ``data`` lines join with LF; an event is
dispatched at a blank line; comment lines (":") are ignored; one optional space after the colon
is stripped. Chunk boundaries may fall anywhere, including inside a CRLF pair.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str
    id: str | None = None


class SSEDecoder:
    """Works on whole event blocks (up to a blank line) rather than line by line: it runs for
    every relayed chunk, and most events are one ``data:`` line, or ``event:`` + ``data:``."""

    __slots__ = ("_buffer", "_pending_cr")

    def __init__(self) -> None:
        self._buffer = b""
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]          # the LF of a CRLF split across chunks
        self._pending_cr = chunk.endswith(b"\r")
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events: list[SSEEvent] = []
        start = 0
        while (end := buffer.find(b"\n\n", start)) >= 0:
            if end > start and (event := _parse_block(buffer[start:end])) is not None:
                events.append(event)
            start = end + 2
        self._buffer = buffer[start:]
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: a final event without its blank line still counts."""
        block, self._buffer = self._buffer.strip(b"\n"), b""
        event = _parse_block(block) if block else None
        return [event] if event is not None else []


def _parse_block(block: bytes) -> SSEEvent | None:
    if block.startswith(b"data: ") and len(block) > 6 and b"\n" not in block:   # most chat chunks
        return SSEEvent(None, block[6:].decode("utf-8", "replace"))
    event: str | None = None
    event_id: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
        elif name == b"id":
            event_id = value.decode("utf-8", "replace")
    text = b"\n".join(data).decode("utf-8", "replace")
    return SSEEvent(event, text, event_id) if text or event else None


def encode_event(data: str | bytes, event: str | None = None) -> bytes:
    payload = data.encode() if isinstance(data, str) else data
    head = b"event: " + event.encode() + b"\n" if event else b""
    body = b"".join(b"data: " + line + b"\n" for line in payload.split(b"\n"))
    return head + body + b"\n"
