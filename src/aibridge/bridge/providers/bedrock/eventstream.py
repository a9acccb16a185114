"""Bedrock's streamed answer (an AWS event stream) as an Anthropic SSE stream.

The event stream (``application/vnd.amazon.eventstream``, decoded with botocore's
``EventStreamBuffer``) carries one Anthropic stream event per ``chunk`` frame (base64 in
``bytes``); each is re-emitted as ``event: <type>\\ndata: <the event JSON, byte for byte>``.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any

import aiohttp
import orjson
from botocore.eventstream import EventStreamBuffer, ParserError
from multidict import CIMultiDict

from aibridge.bridge.apis.messages import anthropic_error_event
from aibridge.bridge.providers.base import UpstreamError
from aibridge.bridge.providers.bedrock.errors import anthropic_error_type, aws_error_message
from aibridge.bridge.providers.http import HTTPUpstreamResponse, relayable_headers
from aibridge.bridge.sse import encode_event

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


def _event_name(event: bytes) -> str | None:
    if event.startswith(b'{"type":"'):            # what Bedrock sends: no parse needed
        end = event.find(b'"', 9)
        if end > 9:
            return event[9:end].decode("utf-8", "replace")
    try:
        parsed = orjson.loads(event)
    except orjson.JSONDecodeError:
        return None
    kind = parsed.get("type") if isinstance(parsed, dict) else None
    return kind if isinstance(kind, str) else None


class EventStreamTranslator:
    """AWS event-stream bytes in (split anywhere), Anthropic SSE bytes out.

    A ``chunk`` event's decoded bytes are relayed as the SSE ``data`` unchanged, including the
    ``amazon-bedrock-invocationMetrics`` Bedrock adds to ``message_stop``: Anthropic SDKs ignore
    unknown keys, the usage reader can fall back on it, and not re-encoding keeps the relay cheap
    and faithful. An exception (or error) frame becomes one ``event: error`` and ends the stream
    (``done``); anything after it is ignored.
    """

    __slots__ = ("_buffer", "_consumed", "_fed", "done")

    def __init__(self) -> None:
        self._buffer = EventStreamBuffer()
        self._fed = 0
        self._consumed = 0
        self.done = False

    @property
    def pending(self) -> bool:
        """Bytes of an unfinished frame are buffered (a stream ending now was cut short)."""
        return self._fed > self._consumed

    def feed(self, data: bytes) -> bytes:
        if self.done or not data:
            return b""
        self._buffer.add_data(data)
        self._fed += len(data)
        out: list[bytes] = []
        try:
            for message in self._buffer:
                self._consumed += message.prelude.total_length
                out.append(self._translate(message.headers, message.payload))
                if self.done:
                    break
        except ParserError as exc:
            raise UpstreamError(502, f"invalid event stream from Amazon Bedrock: {exc}") from exc
        return b"".join(out)

    def _translate(self, headers: Mapping[str, Any], payload: bytes) -> bytes:
        kind = headers.get(":message-type")
        if kind == "event":
            if headers.get(":event-type") != "chunk":
                return b""                          # e.g. initial-response: nothing to relay
            return self._chunk(payload)
        if kind == "exception":
            self.done = True
            code = str(headers.get(":exception-type") or "")
            message, _ = aws_error_message(payload, f"Amazon Bedrock stream failed: {code or 'exception'}")
            return anthropic_error_event(anthropic_error_type(code), message)
        if kind == "error":
            self.done = True
            code = str(headers.get(":error-code") or "")
            message = str(headers.get(":error-message") or f"Amazon Bedrock stream failed: {code or 'error'}")
            return anthropic_error_event(anthropic_error_type(code), message)
        return b""

    @staticmethod
    def _chunk(payload: bytes) -> bytes:
        try:
            parsed = orjson.loads(payload)
            encoded = parsed["bytes"] if isinstance(parsed, dict) else None
            if not isinstance(encoded, str):
                return b""
            event = base64.b64decode(encoded)
        except (orjson.JSONDecodeError, KeyError, ValueError) as exc:
            raise UpstreamError(502, f"invalid chunk in Amazon Bedrock stream: {exc}") from exc
        return encode_event(event, _event_name(event))



def _stream_headers(upstream: Mapping[str, str]) -> CIMultiDict[str]:
    headers = CIMultiDict((k, v) for k, v in relayable_headers(upstream).items()
                          if k.lower() not in ("content-type", "x-amzn-bedrock-content-type"))
    headers["Content-Type"] = SSE_CONTENT_TYPE
    return headers


class BedrockStreamResponse(HTTPUpstreamResponse):
    """A Bedrock event stream seen as an Anthropic SSE stream."""

    __slots__ = ()

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        super().__init__(resp)
        self.headers = _stream_headers(resp.headers)

    async def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        translator = EventStreamTranslator()
        async with aclosing(super().iter_chunks()) as chunks:
            async for chunk in chunks:
                out = translator.feed(chunk)
                if out:
                    yield out
                if translator.done:
                    break
        if translator.done:
            self.close()                            # Bedrock ends the stream after an exception
        elif translator.pending:
            raise UpstreamError(502, "Amazon Bedrock stream ended inside an event-stream frame")

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_chunks()])
