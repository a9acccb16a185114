"""Incremental Server-Sent Events decoding (bytes in, events out) and encoding.

Follows the WHATWG rules: lines end in LF, CRLF or CR; ``data`` lines join with LF; an event is
dispatched at a blank line; comment lines (":") are ignored; one optional space after the colon
is stripped. Chunk boundaries may fall anywhere, including inside a CRLF pair.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str
    id: str | None = None


_FEW = 3      # blocks asked about one by one rather than halved


class SSEDecoder:
    """Bytes in, events out. Works an event (a block up to its blank line) at a time, so that
    ``skip`` can pass over the events a reader has no use for before anything is decoded."""

    __slots__ = ("_buffer", "_data", "_event", "_id", "_pending_cr")

    def __init__(self) -> None:
        self._buffer = b""
        self._event: str | None = None
        self._data: list[str] = []
        self._id: str | None = None
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events ``chunk`` completes."""
        return list(self.events(chunk))

    def events(self, chunk: bytes, skip: Callable[[bytes], bool] | None = None,
               skip_all: Callable[[bytes], bool] | None = None) -> Iterator[SSEEvent]:
        """The events ``chunk`` completes, one at a time. ``skip(block)`` sees an event's raw lines
        (no blank line) once the events before it were handled; an event it picks is passed over
        undecoded. ``skip_all(raw)`` sees the raw lines of several events at once (blank lines
        between), also once the events before them were handled: True passes over all of them.
        It is asked first about all the events the chunk completes, before they are split."""
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]          # the LF of a CRLF split across chunks
        self._pending_cr = chunk.endswith(b"\r")
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if skip_all is not None and (end := buffer.rfind(b"\n\n")) > 0 and skip_all(buffer[:end]):
            self._buffer = buffer[end + 2:]
            return iter(())
        *blocks, self._buffer = buffer.split(b"\n\n")
        if skip_all is not None and len(blocks) > _FEW:
            return self._halves(blocks, skip, skip_all)
        return self._each(blocks, skip)

    def _halves(self, blocks: list[bytes], skip: Callable[[bytes], bool] | None,
                skip_all: Callable[[bytes], bool]) -> Iterator[SSEEvent]:
        """Blocks that ``skip_all`` refused as a whole, asked about half by half: the few events
        worth reading among many (a stream's first, its usage at the end) cost a few questions,
        not one per event."""
        half = len(blocks) // 2
        for part in (blocks[:half], blocks[half:]):
            if skip_all(b"\n\n".join(part)):
                continue
            yield from self._each(part, skip) if len(part) <= _FEW else self._halves(part, skip, skip_all)

    def _each(self, blocks: list[bytes], skip: Callable[[bytes], bool] | None) -> Iterator[SSEEvent]:
        for block in blocks:
            if block and not (skip is not None and skip(block)) and (event := self._block(block)) is not None:
                yield event

    def flush(self) -> list[SSEEvent]:
        """End of stream: a final event without its blank line still counts."""
        block, self._buffer = self._buffer, b""
        event = self._block(block, at_end=True)
        return [event] if event is not None else []

    def _block(self, block: bytes, at_end: bool = False) -> SSEEvent | None:
        # The shapes providers send, without the line-by-line walk: "data: …" and "event: …\ndata: …".
        if block.startswith(b"data: ") and b"\n" not in block:
            return SSEEvent(None, block[6:].decode("utf-8", "replace"), self._id) if len(block) > 6 else None
        first, _, rest = block.partition(b"\n")
        if first.startswith(b"event: ") and rest.startswith(b"data: ") and b"\n" not in rest:
            return SSEEvent(first[7:].decode("utf-8", "replace"), rest[6:].decode("utf-8", "replace"), self._id)
        for raw in block.split(b"\n"):
            self._line(raw.decode("utf-8", "replace"))
        if not self._data and (self._event is None or at_end):
            self._event = None
            return None
        event = SSEEvent(self._event, "\n".join(self._data), self._id)
        self._event, self._data = None, []
        return event if event.data or event.event else None

    def _line(self, line: str) -> None:
        if not line or line.startswith(":"):
            return
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value


def encode_event(data: str | bytes, event: str | None = None) -> bytes:
    payload = data.encode() if isinstance(data, str) else data
    head = b"event: " + event.encode() + b"\n" if event else b""
    body = b"".join(b"data: " + line + b"\n" for line in payload.split(b"\n"))
    return head + body + b"\n"
