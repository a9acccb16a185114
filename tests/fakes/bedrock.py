"""A fake Amazon Bedrock runtime endpoint (InvokeModel and InvokeModelWithResponseStream).

It behaves like ``bedrock-runtime`` where the bridge can tell:

- every request's SigV4 signature is checked for real: recomputed with botocore from the fake's
  own credentials over the received method, raw path, query, signed headers and body. A mismatch
  answers 403 ``InvalidSignatureException`` with Bedrock's error shape (``{"message": …}`` plus
  ``x-amzn-ErrorType``); an unknown access key or session token 403
  ``UnrecognizedClientException``; a missing signature 403 ``MissingAuthenticationTokenException``;
- bodies are validated the way Bedrock rejects Anthropic-only input: ``anthropic_version`` must be
  ``bedrock-2023-05-31``; ``model``, ``stream``, ``metadata``, ``service_tier``, ``container``,
  ``inference_geo`` are "extraneous keys"; a ``role`` other than user/assistant, a beta flag
  Bedrock does not know, adaptive thinking on a model without it, or a thinking budget outside
  [1024, max_tokens) is a 400 ``ValidationException``;
- ``/model/{id}/invoke`` answers an Anthropic Message JSON; ``/model/{id}/invoke-with-response-stream``
  answers real AWS event-stream frames (``application/vnd.amazon.eventstream``: prelude, typed
  headers, CRC32s), one ``chunk`` per Anthropic stream event (``{"bytes": <base64 event JSON>,
  "p": <padding>}``), the final ``message_stop`` carrying ``amazon-bedrock-invocationMetrics``;
  failures mid-stream are ``exception`` frames.

Scenario selection: the first ``scenario:NAME`` found in the text of the request's user messages
(default ``simple``); see ``SCENARIOS``. Each scenario's expected token usage is
``SCENARIOS[name].usage`` and its stream events ``SCENARIOS[name].events(model)``, so tests assert
against the fake's own data instead of repeating numbers.

In-process: ``fake = FakeBedrock(access_key, secret_key); await fake.start(); fake.url; …;
await fake.stop()``; ``fake.requests`` logs what arrived. As a process:
``python -m tests.fakes.bedrock --port 0 --access-key AK --secret-key SK [--region R]`` prints
``READY <port>`` once listening and runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import hmac
import re
import signal
import struct
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict

DEFAULT_ACCESS_KEY = "AKIDEXAMPLE"
DEFAULT_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
DEFAULT_REGION = "us-east-1"
SERVICE = "bedrock"
ANTHROPIC_VERSION = "bedrock-2023-05-31"
MAX_CLOCK_SKEW = datetime.timedelta(minutes=5)

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details.")
UNRECOGNIZED_CLIENT = "The security token included in the request is invalid."
_CORAL = "http://internal.amazon.com/coral/com.amazon.coral.service/"
_BEDROCK = "http://internal.amazon.com/coral/com.amazon.bedrock/"

# Fields of the Anthropic API that Bedrock's request schema does not have.
EXTRANEOUS_KEYS = ("model", "stream", "metadata", "service_tier", "container", "inference_geo")
# Beta flags this fake Bedrock knows (its own list: what AWS documents for Claude on Bedrock).
KNOWN_BETAS = frozenset({
    "computer-use-2024-10-22", "computer-use-2025-01-24", "computer-use-2025-11-24",
    "token-efficient-tools-2025-02-19", "interleaved-thinking-2025-05-14", "output-128k-2025-02-19",
    "dev-full-thinking-2025-05-14", "context-1m-2025-08-07", "context-management-2025-06-27",
    "effort-2025-11-24", "tool-search-tool-2025-10-19", "tool-examples-2025-10-29",
})
_ADAPTIVE_MODELS = re.compile(r"claude-(opus|sonnet)-4-[6-9]|claude-[a-z]+-[5-9]|mythos|fable")
_PATH = re.compile(r"^/model/([^/]+)/(invoke|invoke-with-response-stream)$")
_SCENARIO = re.compile(r"scenario:([A-Za-z0-9_-]+)")
_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/,]+)/(\d{8})/([^/,]+)/([^/,]+)/aws4_request,\s*"
                   r"SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})")


# ---------------------------------------------------------------- event-stream frames

def encode_headers(headers: Mapping[str, str]) -> bytes:
    """Event-stream headers, all of type 7 (string): name length, name, type, value length, value."""
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += struct.pack("!B", len(raw_name)) + raw_name
        out += b"\x07" + struct.pack("!H", len(raw_value)) + raw_value
    return bytes(out)


def encode_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total length, headers length, CRC32 of both), headers,
    payload, CRC32 of everything before it."""
    raw_headers = encode_headers(headers)
    prelude = struct.pack("!II", 12 + len(raw_headers) + len(payload) + 4, len(raw_headers))
    message = prelude + struct.pack("!I", zlib.crc32(prelude)) + raw_headers + payload
    return message + struct.pack("!I", zlib.crc32(message))


def chunk_frame(event: Mapping[str, Any], padding: int = 0) -> bytes:
    """A ``chunk`` event carrying one Anthropic stream event (``padding``: length of Bedrock's "p")."""
    payload = {"bytes": base64.b64encode(orjson.dumps(event)).decode(),
               "p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[:padding]}
    return encode_frame({":event-type": "chunk", ":content-type": "application/json",
                         ":message-type": "event"}, orjson.dumps(payload))


def exception_frame(exception_type: str, message: str) -> bytes:
    return encode_frame({":exception-type": exception_type, ":content-type": "application/json",
                         ":message-type": "exception"}, orjson.dumps({"message": message}))


# ---------------------------------------------------------------- scenarios

@dataclass(frozen=True)
class ExpectedUsage:
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0


@dataclass(frozen=True)
class StreamFailure:
    """An exception frame after ``after`` events; a blocking call answers the HTTP error instead."""

    exception_type: str         # :exception-type, e.g. "throttlingException"
    message: str
    after: int
    http_status: int
    http_error: str             # x-amzn-ErrorType of the blocking answer, e.g. "ThrottlingException"


@dataclass(frozen=True)
class HTTPFailure:
    status: int
    error: str                  # x-amzn-ErrorType, e.g. "ValidationException"
    message: str


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


@dataclass(frozen=True)
class Scenario:
    name: str
    content: tuple[dict[str, Any], ...]      # the answer's content blocks, as a blocking Message has them
    stop_reason: str
    usage: ExpectedUsage
    failure: StreamFailure | None = None
    http_failure: HTTPFailure | None = None

    @property
    def message_id(self) -> str:
        return f"msg_bdrk_01{self.name.replace('_', '').ljust(22, 'X')[:22]}"

    def _usage(self, output_tokens: int) -> dict[str, int]:
        u = self.usage
        return {"input_tokens": u.input_tokens, "cache_creation_input_tokens": u.cache_write_input_tokens,
                "cache_read_input_tokens": u.cache_read_input_tokens, "output_tokens": output_tokens}

    def message(self, model: str) -> dict[str, Any]:
        """The blocking InvokeModel answer (an Anthropic Message)."""
        return {"id": self.message_id, "type": "message", "role": "assistant",
                "model": anthropic_model(model), "content": [dict(block) for block in self.content],
                "stop_reason": self.stop_reason, "stop_sequence": None,
                "usage": self._usage(self.usage.output_tokens)}

    def events(self, model: str) -> list[dict[str, Any]]:
        """The Anthropic stream events of a complete answer (before any failure cuts it short)."""
        u = self.usage
        events: list[dict[str, Any]] = [{"type": "message_start", "message": {
            "id": self.message_id, "type": "message", "role": "assistant", "model": anthropic_model(model),
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": self._usage(1)}}]
        for index, block in enumerate(self.content):
            events.extend(_block_events(index, block))
        events.append({"type": "message_delta",
                       "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                       "usage": {"output_tokens": u.output_tokens}})
        metrics: dict[str, int] = {"inputTokenCount": u.input_tokens, "outputTokenCount": u.output_tokens,
                                   "invocationLatency": 1873, "firstByteLatency": 412}
        if u.cache_read_input_tokens:
            metrics["cacheReadInputTokenCount"] = u.cache_read_input_tokens
        if u.cache_write_input_tokens:
            metrics["cacheWriteInputTokenCount"] = u.cache_write_input_tokens
        events.append({"type": "message_stop", "amazon-bedrock-invocationMetrics": metrics})
        return events

    def sent_events(self, model: str) -> list[dict[str, Any]]:
        """The events actually streamed: all of them, or those before the exception frame."""
        events = self.events(model)
        return events[:self.failure.after] if self.failure else events


def _block_events(index: int, block: Mapping[str, Any]) -> list[dict[str, Any]]:
    kind = block["type"]
    deltas: list[dict[str, Any]] = []
    if kind == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in _pieces(block["text"], 24)]
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": piece} for piece in _pieces(block["thinking"], 32)]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif kind == "tool_use":
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        arguments = orjson.dumps(block["input"]).decode()
        deltas = [{"type": "input_json_delta", "partial_json": ""}]
        deltas += [{"type": "input_json_delta", "partial_json": piece} for piece in _pieces(arguments, 10)]
    else:                                   # redacted_thinking and others arrive whole
        start, deltas = dict(block), []
    return [{"type": "content_block_start", "index": index, "content_block": start},
            *({"type": "content_block_delta", "index": index, "delta": d} for d in deltas),
            {"type": "content_block_stop", "index": index}]


_SIGNATURE = "EqQBCkYIBxgCKkD3kqjF0ZZy1Jx1Vb8sYk9cbAXtLQW0Fz3GmOsbA1a5r2x0bdrkFAKEsignatureAAAA=="

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("simple", (
        {"type": "thinking", "thinking": "The user says hi. A short friendly greeting is enough.",
         "signature": _SIGNATURE},
        {"type": "text", "text": "Hello! How can I help you with your code today?"},
    ), "end_turn", ExpectedUsage(input_tokens=21, output_tokens=57)),
    Scenario("tool_use", (
        {"type": "text", "text": "I'll read the file."},
        {"type": "tool_use", "id": "toolu_bdrk_01Vq7sWm2c8Hn4RzKp3YtLbE", "name": "Read",
         "input": {"file_path": "/tmp/blah/foo"}},
    ), "tool_use", ExpectedUsage(input_tokens=312, output_tokens=64, cache_read_input_tokens=14012,
                                 cache_write_input_tokens=22)),
    Scenario("thinking", (
        {"type": "thinking", "signature": _SIGNATURE,
         "thinking": "Counting angels on a pin is a scholastic caricature; the honest answer is that it "
                     "depends on whether angels occupy space at all. I'll say so briefly."},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rA"},
        {"type": "text", "text": "None, or infinitely many: it depends on whether angels take up space."},
    ), "end_turn", ExpectedUsage(input_tokens=40, output_tokens=420, cache_write_input_tokens=1200)),
    Scenario("throttled", (
        {"type": "text", "text": "Let me start on that and"},
    ), "end_turn", ExpectedUsage(input_tokens=25, output_tokens=3),
        failure=StreamFailure("throttlingException", "Too many tokens, please wait before trying again.",
                              after=3, http_status=429, http_error="ThrottlingException")),
    Scenario("stream_error", (
        {"type": "text", "text": "Here is the first part of the answer, and then"},
    ), "end_turn", ExpectedUsage(input_tokens=25, output_tokens=9),
        failure=StreamFailure("modelStreamErrorException",
                              "The model stream failed: received an unexpected response from the model.",
                              after=4, http_status=424, http_error="ModelErrorException")),
    Scenario("validation", (), "end_turn", ExpectedUsage(0, 0),
             http_failure=HTTPFailure(400, "ValidationException",
                                      "The model returned the following errors: prompt is too long: "
                                      "205429 tokens > 200000 maximum")),
    Scenario("http_throttled", (), "end_turn", ExpectedUsage(0, 0),
             http_failure=HTTPFailure(429, "ThrottlingException",
                                      "Too many requests, please wait before trying again.")),
    Scenario("unavailable", (), "end_turn", ExpectedUsage(0, 0),
             http_failure=HTTPFailure(503, "ServiceUnavailableException",
                                      "Bedrock is unable to process your request.")),
)}


def anthropic_model(model_id: str) -> str:
    """``global.anthropic.claude-sonnet-4-5-20250929-v1:0`` → ``claude-sonnet-4-5-20250929`` (what
    Bedrock reports in the answer's ``model``)."""
    match = re.search(r"anthropic\.(claude-[a-z0-9-]+?)(?:-v\d+(?::\d+)?)?$", model_id)
    return match.group(1) if match else model_id


def scenario_name(body: Mapping[str, Any]) -> str:
    for message in body.get("messages") or []:
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        texts = [content] if isinstance(content, str) else [
            b.get("text") for b in content or [] if isinstance(b, dict) and b.get("type") == "text"]
        for text in texts:
            match = _SCENARIO.search(text) if isinstance(text, str) else None
            if match:
                return match.group(1)
    return "simple"


# ---------------------------------------------------------------- the server

@dataclass
class RecordedRequest:
    method: str
    raw_path: str
    model: str                    # decoded model id ("" when the path is not a Bedrock operation)
    operation: str                # "invoke" | "invoke-with-response-stream" | ""
    headers: dict[str, str]       # lower-cased names
    body: bytes
    json: Any = None
    auth_error: str | None = None  # why the signature was refused, None when it verified
    scenario: str = ""


def _aws_error(status: int, error: str, message: str, namespace: str = _BEDROCK) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"message": message}),
                        content_type="application/json",
                        headers={"x-amzn-ErrorType": f"{error}:{namespace}",
                                 "x-amzn-RequestId": str(uuid.uuid4())})


@dataclass
class FakeBedrock:
    access_key: str = DEFAULT_ACCESS_KEY
    secret_key: str = DEFAULT_SECRET_KEY
    region: str = DEFAULT_REGION
    session_token: str | None = None          # when set, requests must carry it (X-Amz-Security-Token)
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    _runner: web.AppRunner | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------ signature

    def verify_signature(self, method: str, raw_path: str, received: Mapping[str, str],
                         body: bytes) -> tuple[str, str] | None:
        """None when the SigV4 signature is right, else (AWS error code, message)."""
        headers: CIMultiDict[str] = CIMultiDict(received)
        authorization = headers.get("Authorization")
        if not authorization:
            return "MissingAuthenticationTokenException", "Missing Authentication Token"
        match = _AUTH.fullmatch(authorization.strip())
        if not match:
            return ("IncompleteSignatureException",
                    "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.")
        access_key, day, region, service, signed_headers, signature = match.groups()
        if access_key != self.access_key:
            return "UnrecognizedClientException", UNRECOGNIZED_CLIENT
        if self.session_token is not None and headers.get("X-Amz-Security-Token") != self.session_token:
            return "UnrecognizedClientException", UNRECOGNIZED_CLIENT
        if region != self.region:
            return "InvalidSignatureException", \
                f"Credential should be scoped to a valid region, not '{region}'."
        if service != SERVICE:
            return "InvalidSignatureException", \
                f"Credential should be scoped to correct service: '{SERVICE}'."
        amz_date = headers.get("X-Amz-Date", "")
        try:
            when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
        except ValueError:
            return "IncompleteSignatureException", "Missing or invalid X-Amz-Date."
        now = datetime.datetime.now(datetime.UTC)
        if abs(now - when) > MAX_CLOCK_SKEW:
            return "InvalidSignatureException", f"Signature expired: {amz_date} is now earlier than allowed."
        names = signed_headers.split(";")
        if day != amz_date[:8] or "host" not in names or "x-amz-date" not in names:
            return "InvalidSignatureException", SIGNATURE_MISMATCH
        signed = {}
        for name in names:
            values = headers.getall(name, [])
            if not values:
                return "InvalidSignatureException", SIGNATURE_MISMATCH
            signed[name] = ",".join(values)
        # The URL's scheme does not enter the signature; the path and query are taken raw, as sent.
        url = f"http://{signed['host']}{raw_path}"
        request = AWSRequest(method=method, url=url, headers=signed, data=body)
        request.context["timestamp"] = amz_date
        credentials = Credentials(self.access_key, self.secret_key, self.session_token)
        signer = SigV4Auth(credentials, SERVICE, self.region)
        if signer.signed_headers(signer.headers_to_sign(request)) != signed_headers:
            return "InvalidSignatureException", SIGNATURE_MISMATCH
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, signature):
            return "InvalidSignatureException", SIGNATURE_MISMATCH
        return None

    # ------------------------------------------------------------ requests

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path = request.raw_path.partition("?")[0]
        match = _PATH.match(path)
        record = RecordedRequest(request.method, request.raw_path, unquote(match.group(1)) if match else "",
                                 match.group(2) if match else "",
                                 {k.lower(): v for k, v in request.headers.items()}, body)
        self.requests.append(record)
        refused = self.verify_signature(request.method, request.raw_path, request.headers, body)
        if refused is not None:
            record.auth_error = refused[0]
            return _aws_error(403, refused[0], refused[1], _CORAL)
        if match is None or request.method != "POST":
            return _aws_error(404, "UnknownOperationException", "Unknown operation", _CORAL)
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        record.json = parsed
        problem = self.validate(parsed, record.model)
        if problem:
            return _aws_error(400, "ValidationException", problem)
        name = scenario_name(parsed)
        record.scenario = name
        scenario = SCENARIOS.get(name)
        if scenario is None:
            return _aws_error(400, "ValidationException", f"unknown fake Bedrock scenario {name!r}")
        if scenario.http_failure:
            f = scenario.http_failure
            return _aws_error(f.status, f.error, f.message)
        if record.operation == "invoke":
            failure = scenario.failure
            if failure:
                return _aws_error(failure.http_status, failure.http_error, failure.message)
            u = scenario.usage
            return web.Response(body=orjson.dumps(scenario.message(record.model)),
                                content_type="application/json",
                                headers={"x-amzn-RequestId": str(uuid.uuid4()),
                                         "X-Amzn-Bedrock-Input-Token-Count": str(u.input_tokens),
                                         "X-Amzn-Bedrock-Output-Token-Count": str(u.output_tokens),
                                         "X-Amzn-Bedrock-Invocation-Latency": "1873"})
        return await self._stream(request, scenario, record.model)

    @staticmethod
    def validate(body: Any, model: str) -> str | None:
        """Bedrock's 400 message for a body it would refuse, or None."""
        if not isinstance(body, dict):
            return "Malformed input request, please reformat your input and try again."
        for key in EXTRANEOUS_KEYS:
            if key in body:
                return (f"Malformed input request: #: extraneous key [{key}] is not permitted, "
                        "please reformat your input and try again.")
        if "anthropic_version" not in body:
            return ("Malformed input request: #: required key [anthropic_version] not found, "
                    "please reformat your input and try again.")
        if body["anthropic_version"] != ANTHROPIC_VERSION:
            return "Invalid API version"
        betas = body.get("anthropic_beta", [])
        if not isinstance(betas, list) or not all(isinstance(b, str) for b in betas):
            return "Malformed input request: #/anthropic_beta: expected type: JSONArray"
        unknown = [b for b in betas if b not in KNOWN_BETAS]
        if unknown:
            return f"invalid beta flag: {unknown[0]}"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "Malformed input request: #: required key [messages] not found"
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ("user", "assistant"):
                return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        thinking = body.get("thinking")
        if isinstance(thinking, dict):
            kind = thinking.get("type")
            if kind == "adaptive" and not _ADAPTIVE_MODELS.search(model):
                return "thinking.type: adaptive thinking is not supported on this model"
            if kind == "enabled":
                budget, max_tokens = thinking.get("budget_tokens"), body.get("max_tokens")
                if not isinstance(budget, int) or budget < 1024:
                    return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
                if isinstance(max_tokens, int) and budget >= max_tokens and \
                        "interleaved-thinking-2025-05-14" not in betas:
                    return "`max_tokens` must be greater than `thinking.budget_tokens`"
        return None

    async def _stream(self, request: web.Request, scenario: Scenario, model: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "Content-Type": "application/vnd.amazon.eventstream", "x-amzn-RequestId": str(uuid.uuid4()),
            "X-Amzn-Bedrock-Content-Type": "application/json"})
        await response.prepare(request)
        for i, event in enumerate(scenario.sent_events(model)):
            frame = chunk_frame(event, padding=i % 7 * 5)
            # Two writes per frame (the first ends inside the prelude), as a network may split it.
            await response.write(frame[:5])
            await response.write(frame[5:])
        if scenario.failure:
            await response.write(exception_frame(scenario.failure.exception_type, scenario.failure.message))
        await response.write_eof()
        return response


# ---------------------------------------------------------------- as a process

def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.bedrock",
                                     description="A fake Amazon Bedrock runtime endpoint.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--access-key", default=DEFAULT_ACCESS_KEY)
    parser.add_argument("--secret-key", default=DEFAULT_SECRET_KEY)
    parser.add_argument("--session-token", default=None)
    parser.add_argument("--region", default=DEFAULT_REGION)
    args = parser.parse_args(argv)

    async def run() -> None:
        fake = FakeBedrock(args.access_key, args.secret_key, args.region, args.session_token,
                           args.host, args.port)
        await fake.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"READY {fake.port}", flush=True)
        await stop.wait()
        await fake.stop()

    asyncio.run(run())


if __name__ == "__main__":
    main()
