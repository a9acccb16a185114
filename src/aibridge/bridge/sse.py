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
        undecoded. ``skip_all(raw)``, asked first when the chunk completes several events, sees
        their raw lines at once (blank lines between): True passes over all of them."""
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]          # the LF of a CRLF split across chunks
        self._pending_cr = chunk.endswith(b"\r")
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *blocks, self._buffer = buffer.split(b"\n\n")
        ask_all = skip_all if len(blocks) > 1 else None
        if ask_all is not None and ask_all(buffer[:len(buffer) - len(self._buffer) - 2]):
            return
        for index, block in enumerate(blocks):
            if not block or (skip is not None and skip(block)):
                continue
            if (event := self._block(block)) is not None:
                yield event
            if ask_all is not None and len(blocks) - index > 2:
                # Once more for the rest, after the first event read (a stream's first names its id).
                rest, ask_all = b"\n\n".join(blocks[index + 1:]), None
                if skip_all is not None and skip_all(rest):
                    return

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
