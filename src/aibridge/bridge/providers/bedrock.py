"""Amazon Bedrock as the upstream of the Anthropic Messages API.

Clients keep talking to ``…/anthropic/v1/messages`` exactly as they would to Anthropic; this
provider turns each call into a Bedrock ``InvokeModel`` (``POST /model/{id}/invoke``) or
``InvokeModelWithResponseStream`` (``POST /model/{id}/invoke-with-response-stream``) call, signed
with SigV4 (botocore's signer, service ``bedrock``), and turns the answer back into Anthropic's
wire format so nothing downstream (recording, metrics, the client) can tell the difference:

- blocking: Bedrock's body already *is* an Anthropic Message JSON; it is relayed unchanged;
- streaming: the AWS event stream (``application/vnd.amazon.eventstream``, decoded with botocore's
  ``EventStreamBuffer``) carries one Anthropic stream event per ``chunk`` frame (base64 in
  ``bytes``); each is re-emitted as ``event: <type>\\ndata: <the event JSON, byte for byte>``;
- errors: HTTP errors (``{"message": …}`` + ``x-amzn-ErrorType``) and exception frames
  mid-stream become Anthropic error bodies / ``event: error`` events (one table: ``ERROR_TYPES``).
  HTTP errors keep Bedrock's status code (what the SDKs' retry logic keys on); only the body
  changes shape.

Model mapping: a requested model containing ``haiku`` runs on the configured small fast model,
every other model on the main model; the interception records the Bedrock model.

Routes: Bedrock has no ``v1/models`` or ``v1/messages/count_tokens`` (nor Anthropic's event
logging), so ``is_passthrough`` is False for everything and the gateway answers those paths with
404 "route not supported"; only ``v1/messages`` is served.

Body translation (``bedrock_body``; the client's body is never mutated):

- ``model`` and ``stream`` go into the URL and are removed; ``anthropic_version:
  "bedrock-2023-05-31"`` is added;
- the ``anthropic-beta`` header (comma-separated, possibly repeated) becomes the ``anthropic_beta``
  body field, keeping only flags Bedrock accepts (``BEDROCK_BETAS``, each gated on the Claude
  family/version it exists for, as public gateways do: coder/aibridge, LiteLLM); the header itself
  is never sent to Bedrock (no client header is: the request carries only what is signed);
- ``metadata``, ``service_tier``, ``container``, ``inference_geo`` are removed (Bedrock answers
  "extraneous key … is not permitted");
- ``context_management`` is kept only when its beta survived the filter;
- ``output_config.effort`` is kept only for models where effort is generally available (those with
  adaptive thinking) or when the effort beta survived; ``output_config.format`` (structured
  outputs, which Bedrock's InvokeModel supports) is always kept; an emptied ``output_config`` is
  removed;
- ``thinking: {"type": "adaptive"}`` on a model without adaptive thinking (everything before
  Claude 4.6, and any model id we cannot parse, e.g. an application-inference-profile ARN) becomes
  ``{"type": "enabled", "budget_tokens": B}`` with B from ``max_tokens`` and
  ``output_config.effort`` (``thinking_budget``); when ``max_tokens`` cannot hold a 1024-token
  budget, thinking is dropped. The reverse also holds: adaptive-only models (Opus 4.7+, Mythos,
  Fable) reject ``enabled``/``disabled``, so ``enabled`` becomes ``adaptive`` and ``disabled`` is
  removed;
- ``role: "system"`` items inside ``messages`` (Claude Code sends them under the
  ``mid-conversation-system`` beta, which Bedrock does not have) are folded into user turns as
  ``<system-reminder>`` text — the form Claude Code itself uses for such context — appended to the
  preceding user turn (or the following one, or a new user turn), so roles still alternate and
  ``tool_result`` blocks stay first in their turn.

Credentials: access key + secret from the configuration, or (neither set) the standard AWS chain
(``botocore.session.get_session().get_credentials()``: environment, shared config/credentials
files, SSO, container/instance roles), resolved once when the provider is built. Refreshable
credentials are refreshed by botocore when near expiry; that refresh may do network I/O, so it
runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote, urlsplit

import aiohttp
import botocore.session
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, RefreshableCredentials
from botocore.eventstream import EventStreamBuffer, ParserError
from botocore.exceptions import BotoCoreError
from multidict import CIMultiDict
from yarl import URL

from aibridge.bridge.apis.base import Api
from aibridge.bridge.apis.messages import MESSAGES
from aibridge.bridge.providers.base import UpstreamError, UpstreamRequest, UpstreamResponse
from aibridge.bridge.providers.http import (
    HTTPUpstreamResponse,
    describe,
    new_session,
    relayable_headers,
)
from aibridge.bridge.sse import encode_event
from aibridge.config import BedrockConfig, ConfigError

ANTHROPIC_VERSION = "bedrock-2023-05-31"
SIGNING_SERVICE = "bedrock"
DEFAULT_REGION = "us-east-1"
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
EVENTSTREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"

# Top-level Messages API fields absent from Bedrock's request schema (400 "extraneous key").
UNSUPPORTED_FIELDS = ("metadata", "service_tier", "container", "inference_geo")
# Body fields that exist on Bedrock only behind a beta flag.
CONTEXT_MANAGEMENT_BETA = "context-management-2025-06-27"
EFFORT_BETA = "effort-2025-11-24"

MIN_THINKING_BUDGET = 1024
# Share of max_tokens given to thinking when adaptive thinking must become a fixed budget. No
# effort means "high", Anthropic's default.
EFFORT_BUDGET_RATIO = {"low": 0.25, "medium": 0.5, "high": 0.8, "xhigh": 0.9, "max": 0.95}
DEFAULT_EFFORT = "high"


# ---------------------------------------------------------------- models

@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a Bedrock model id says about the Claude model behind it."""

    family: str | None                 # "opus" | "sonnet" | "haiku" | "mythos" | "fable" | …
    version: tuple[int, int] | None    # (4, 5) for claude-sonnet-4-5-…; None when unknown


# claude-opus-4-5-20251101-v1:0, claude-sonnet-4-6, claude-opus-4-20250514-v1:0 (minor is at most
# two digits, so a date is never read as one), claude-opus-5
_MODEL_NEW = re.compile(r"claude-([a-z]+)-(\d{1,2})(?:-(\d{1,2}))?(?!\d)")
# claude-3-7-sonnet-20250219-v1:0, claude-3-haiku-20240307-v1:0
_MODEL_LEGACY = re.compile(r"claude-(\d{1,2})(?:-(\d{1,2}))?-([a-z]+)")
_MODEL_NAMED = re.compile(r"claude-([a-z]+)")


def parse_model(model: str) -> ModelInfo:
    lowered = model.lower()
    match = _MODEL_NEW.search(lowered)
    if match:
        return ModelInfo(match.group(1), (int(match.group(2)), int(match.group(3) or 0)))
    match = _MODEL_LEGACY.search(lowered)
    if match:
        return ModelInfo(match.group(3), (int(match.group(1)), int(match.group(2) or 0)))
    match = _MODEL_NAMED.search(lowered)
    return ModelInfo(match.group(1) if match else None, None)


_ADAPTIVE_ONLY_FAMILIES = frozenset({"mythos", "fable"})


def supports_adaptive_thinking(model: str) -> bool:
    """Claude 4.6 and later, Mythos and Fable (AWS: "Adaptive thinking", supported models)."""
    info = parse_model(model)
    if info.family in _ADAPTIVE_ONLY_FAMILIES:
        return True
    return info.version is not None and info.version >= (4, 6)


def adaptive_thinking_only(model: str) -> bool:
    """Models that answer 400 to ``thinking.type`` "enabled" (and "disabled"): Opus 4.7+, Mythos, Fable."""
    info = parse_model(model)
    if info.family in _ADAPTIVE_ONLY_FAMILIES:
        return True
    return info.family == "opus" and info.version is not None and info.version >= (4, 7)


# ---------------------------------------------------------------- betas

def _any_model(info: ModelInfo) -> bool:
    return True


def _since(version: tuple[int, int], *families: str) -> Callable[[ModelInfo], bool]:
    def check(info: ModelInfo) -> bool:
        if info.version is None or info.version < version:
            return False
        return not families or info.family in families
    return check


def _context_1m(info: ModelInfo) -> bool:
    # 1M context: Sonnet 4 and later, Opus 4.6 and later.
    return _since((4, 0), "sonnet")(info) or _since((4, 6), "opus")(info)


# The anthropic-beta flags Bedrock accepts (anything else is a 400 "invalid beta flag"), each with
# the models it applies to. Sources: AWS "Anthropic Claude Messages API" request parameters, and
# the lists kept by coder/aibridge and LiteLLM (bedrock/beta_headers_config.py). Flags Claude Code
# also sends — claude-code-*, prompt-caching-scope-*, mid-conversation-system-*,
# thinking-token-count-*, fine-grained-tool-streaming-*, … — are Anthropic-only and dropped.
BEDROCK_BETAS: dict[str, Callable[[ModelInfo], bool]] = {
    "computer-use-2024-10-22": _any_model,
    "computer-use-2025-01-24": _any_model,
    "computer-use-2025-11-24": _any_model,
    "token-efficient-tools-2025-02-19": _any_model,
    "output-128k-2025-02-19": _any_model,
    "interleaved-thinking-2025-05-14": _since((4, 0)),
    "dev-full-thinking-2025-05-14": _since((4, 0)),
    "context-1m-2025-08-07": _context_1m,
    CONTEXT_MANAGEMENT_BETA: _since((4, 5)),
    EFFORT_BETA: _since((4, 5), "opus"),
    "tool-search-tool-2025-10-19": _since((4, 5), "opus", "sonnet"),
    "tool-examples-2025-10-29": _since((4, 5), "opus", "sonnet"),
}


def split_betas(values: Iterable[str]) -> list[str]:
    """Flags from one or more ``anthropic-beta`` header values (comma-separated), in order, once."""
    flags: list[str] = []
    for value in values:
        for flag in value.split(","):
            flag = flag.strip()
            if flag and flag not in flags:
                flags.append(flag)
    return flags


def bedrock_betas(flags: Iterable[str], model: str) -> list[str]:
    info = parse_model(model)
    return [flag for flag in flags if (rule := BEDROCK_BETAS.get(flag)) is not None and rule(info)]


# ---------------------------------------------------------------- body translation

def thinking_budget(max_tokens: int, effort: str | None) -> int | None:
    """A fixed thinking budget standing in for adaptive thinking, or None when none fits.

    The budget is a share of ``max_tokens`` by effort (low 25 %, medium 50 %, high 80 %, xhigh 90 %,
    max 95 %; unknown or absent effort counts as high), raised to Anthropic's minimum of 1024 and
    kept below ``max_tokens`` (thinking counts against it). With ``max_tokens`` ≤ 1024 no valid
    budget exists.
    """
    if max_tokens <= MIN_THINKING_BUDGET:
        return None
    ratio = EFFORT_BUDGET_RATIO.get(effort or DEFAULT_EFFORT, EFFORT_BUDGET_RATIO[DEFAULT_EFFORT])
    budget = min(int(max_tokens * ratio), max_tokens - 1)
    return max(budget, MIN_THINKING_BUDGET)


def _text_blocks(content: Any) -> list[Any]:
    """A system message's content as user-turn blocks wrapped as a system reminder."""
    def wrap(text: str) -> str:
        return f"<system-reminder>\n{text}\n</system-reminder>"

    if isinstance(content, str):
        return [{"type": "text", "text": wrap(content)}]
    blocks: list[Any] = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
                blocks.append({**block, "text": wrap(block["text"])})
            else:
                blocks.append(block)
    return blocks


def _as_blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return list(content) if isinstance(content, list) else []


def fold_system_messages(messages: list[Any]) -> list[Any]:
    """``messages`` without ``role: "system"`` items: their text joins the neighbouring user turn.

    Appended to the preceding user turn when there is one; otherwise held and appended to the next
    user turn (after its blocks, so ``tool_result`` blocks stay first); otherwise (before an
    assistant turn or at the end) sent as a user turn of its own. Returns the list itself when
    there is nothing to fold.
    """
    if not any(isinstance(m, dict) and m.get("role") == "system" for m in messages):
        return messages
    out: list[Any] = []
    pending: list[Any] = []
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "system":
            blocks = _text_blocks(message.get("content"))
            if out and not pending and isinstance(out[-1], dict) and out[-1].get("role") == "user":
                out[-1] = {**out[-1], "content": _as_blocks(out[-1].get("content")) + blocks}
            else:
                pending.extend(blocks)
            continue
        if pending:
            if isinstance(message, dict) and message.get("role") == "user":
                message = {**message, "content": _as_blocks(message.get("content")) + pending}
            else:
                out.append({"role": "user", "content": pending})
            pending = []
        out.append(message)
    if pending:
        out.append({"role": "user", "content": pending})
    return out


def _convert_thinking(body: dict[str, Any], model: str) -> None:
    thinking = body.get("thinking")
    if not isinstance(thinking, dict):
        return
    kind = thinking.get("type")
    if adaptive_thinking_only(model):
        if kind == "enabled":
            kept = {k: v for k, v in thinking.items() if k != "budget_tokens"}
            body["thinking"] = kept | {"type": "adaptive"}
        elif kind == "disabled":
            del body["thinking"]
        return
    if kind != "adaptive" or supports_adaptive_thinking(model):
        return
    output_config = body.get("output_config")
    effort = output_config.get("effort") if isinstance(output_config, dict) else None
    max_tokens = body.get("max_tokens")
    budget = None
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        budget = thinking_budget(max_tokens, effort if isinstance(effort, str) else None)
    if budget is None:
        del body["thinking"]
    else:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}


def bedrock_body(body: Mapping[str, Any], model: str, beta_headers: Iterable[str] = ()) -> dict[str, Any]:
    """The InvokeModel body for an Anthropic Messages request sent to Bedrock model ``model``.

    ``beta_headers`` are the client's ``anthropic-beta`` header values. ``body`` is not changed.
    """
    out = {k: v for k, v in body.items() if k not in ("model", "stream", *UNSUPPORTED_FIELDS)}
    out["anthropic_version"] = ANTHROPIC_VERSION

    existing = body.get("anthropic_beta")
    flags = split_betas([*beta_headers, *(existing if isinstance(existing, list) else [])])
    betas = bedrock_betas(flags, model)
    if betas:
        out["anthropic_beta"] = betas
    else:
        out.pop("anthropic_beta", None)

    if CONTEXT_MANAGEMENT_BETA not in betas:
        out.pop("context_management", None)

    _convert_thinking(out, model)   # reads output_config.effort, so before it may be removed

    output_config = out.get("output_config")
    if isinstance(output_config, dict) and "effort" in output_config \
            and not (supports_adaptive_thinking(model) or EFFORT_BETA in betas):
        output_config = {k: v for k, v in output_config.items() if k != "effort"}
        if output_config:
            out["output_config"] = output_config
        else:
            del out["output_config"]

    messages = out.get("messages")
    if isinstance(messages, list):
        out["messages"] = fold_system_messages(messages)
    return out


# ---------------------------------------------------------------- errors

# AWS error code (lower-cased, as in x-amzn-ErrorType or an exception frame's :exception-type)
# → Anthropic error type. Throttling and quotas are rate limits (Bedrock's 429); a service or
# model that cannot take the request now is "overloaded" (what Anthropic reports, and what
# clients retry on, mid-stream); a bad signature or unknown key is an authentication failure of
# the bridge's AWS credentials, an IAM denial a permission failure.
ERROR_TYPES: dict[str, str] = {
    "validationexception": "invalid_request_error",
    "conflictexception": "invalid_request_error",
    "invalidsignatureexception": "authentication_error",
    "incompletesignatureexception": "authentication_error",
    "unrecognizedclientexception": "authentication_error",
    "missingauthenticationtokenexception": "authentication_error",
    "expiredtokenexception": "authentication_error",
    "accessdeniedexception": "permission_error",
    "resourcenotfoundexception": "not_found_error",
    "throttlingexception": "rate_limit_error",
    "servicequotaexceededexception": "rate_limit_error",
    "serviceunavailableexception": "overloaded_error",
    "modelnotreadyexception": "overloaded_error",
    "modelstreamerrorexception": "overloaded_error",
    "modeltimeoutexception": "api_error",
    "modelerrorexception": "api_error",
    "internalserverexception": "api_error",
}
_STATUS_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    503: "overloaded_error", 529: "overloaded_error",
}


def aws_error_code(value: str | None) -> str:
    """``ValidationException:http://internal.amazon.com/…`` or ``com.amazon…#ValidationException``
    → ``validationexception``."""
    if not value:
        return ""
    return value.split(":", 1)[0].rsplit("#", 1)[-1].strip().lower()


def anthropic_error_type(code: str | None, status: int | None = None) -> str:
    """The Anthropic error type for an AWS error code, falling back to the HTTP status."""
    mapped = ERROR_TYPES.get(aws_error_code(code))
    if mapped:
        return mapped
    if status is None:
        return "api_error"
    if status in _STATUS_ERROR_TYPES:
        return _STATUS_ERROR_TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def anthropic_error(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def aws_error_message(body: bytes, fallback: str) -> tuple[str, str | None]:
    """(message, code found in the body) from a Bedrock error body (``{"message": …}``)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        message = parsed.get("message") or parsed.get("Message")
        code = parsed.get("__type") or parsed.get("code")
        if isinstance(message, str) and message:
            return message, code if isinstance(code, str) else None
    text = body.decode("utf-8", "replace").strip()
    return (text[:1000] if text else fallback), None


def translate_error(status: int, headers: Mapping[str, str], body: bytes) -> bytes:
    """A Bedrock HTTP error as an Anthropic error body."""
    message, body_code = aws_error_message(body, f"Amazon Bedrock answered HTTP {status}")
    code = headers.get("x-amzn-ErrorType") or body_code
    return orjson.dumps(anthropic_error(anthropic_error_type(code, status), message))


# ---------------------------------------------------------------- event stream → SSE

def error_event(error_type: str, message: str) -> bytes:
    return encode_event(orjson.dumps(anthropic_error(error_type, message)), "error")


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
            return error_event(anthropic_error_type(code), message)
        if kind == "error":
            self.done = True
            code = str(headers.get(":error-code") or "")
            message = str(headers.get(":error-message") or f"Amazon Bedrock stream failed: {code or 'error'}")
            return error_event(anthropic_error_type(code), message)
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


# ---------------------------------------------------------------- responses

class BufferedResponse:
    """An answer the provider already holds in full (translated errors)."""

    __slots__ = ("_body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self._body = body
        self.headers: Mapping[str, str] = CIMultiDict(headers or {"Content-Type": "application/json"})

    async def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        if self._body:
            yield self._body

    async def read(self) -> bytes:
        return self._body

    def close(self) -> None:
        pass


def _stream_headers(upstream: Mapping[str, str]) -> CIMultiDict[str]:
    headers = CIMultiDict((k, v) for k, v in relayable_headers(upstream).items()
                          if k.lower() not in ("content-type", "x-amzn-bedrock-content-type"))
    headers["Content-Type"] = SSE_CONTENT_TYPE
    return headers


class BedrockStreamResponse:
    """A Bedrock event stream seen as an Anthropic SSE stream."""

    __slots__ = ("_resp", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers: Mapping[str, str] = _stream_headers(resp.headers)

    async def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        translator = EventStreamTranslator()
        try:
            async for chunk in self._resp.content.iter_any():
                out = translator.feed(chunk)
                if out:
                    yield out
                if translator.done:
                    break
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(502, f"upstream connection lost: {describe(exc)}") from exc
        if translator.done:
            self._resp.close()                      # Bedrock ends the stream after an exception
        elif translator.pending:
            raise UpstreamError(502, "Amazon Bedrock stream ended inside an event-stream frame")

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_chunks()])

    def close(self) -> None:
        self._resp.close()


# ---------------------------------------------------------------- signing and credentials

_REGION_IN_HOST = re.compile(r"(?:^|\.)bedrock-runtime(?:-fips)?\.([a-z]{2}(?:-[a-z]+)+-\d+)\.")


def region_from_url(url: str) -> str | None:
    """``https://bedrock-runtime.eu-west-1.amazonaws.com`` (also FIPS and VPC endpoints) → eu-west-1."""
    host = urlsplit(url).hostname or ""
    match = _REGION_IN_HOST.search(host)
    return match.group(1) if match else None


def signing_region(config: BedrockConfig) -> str:
    return config.region or region_from_url(config.base_url) or DEFAULT_REGION


def host_header(url: str) -> str:
    """The Host value for ``url`` as SigV4 signs it: lower-case host, port only if not default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def sign(credentials: Any, region: str, method: str, url: str, headers: Mapping[str, str],
         body: bytes) -> dict[str, str]:
    """``headers`` plus X-Amz-Date, Authorization (and X-Amz-Security-Token) for this request."""
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    SigV4Auth(credentials, SIGNING_SERVICE, region).add_auth(request)
    return {str(k): str(v) for k, v in request.headers.items()}


def resolve_credentials(name: str, config: BedrockConfig) -> Any:
    """Static credentials from the configuration, or the standard AWS credential chain."""
    if config.access_key and config.access_key_secret:
        return Credentials(config.access_key, config.access_key_secret, method="aibridge-config")
    # Messages start with the option to set, as every configuration error does.
    key_option, secret_option = config.credential_options
    if config.access_key or config.access_key_secret:
        raise ConfigError(f"{key_option}: Bedrock provider {name!r}: set both {key_option} and {secret_option}, "
                          "or neither")
    try:
        credentials = botocore.session.get_session().get_credentials()
    except BotoCoreError as exc:
        raise ConfigError(f"{key_option}: Bedrock provider {name!r}: cannot load AWS credentials: {exc}") from None
    if credentials is None:
        raise ConfigError(
            f"{key_option}: Bedrock provider {name!r}: no AWS credentials found (set {key_option} and "
            f"{secret_option}, or configure the AWS credential chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "~/.aws/credentials, AWS_PROFILE, or an instance/container role)")
    return credentials


# ---------------------------------------------------------------- provider

class BedrockProvider:
    """The Anthropic Messages API served by Amazon Bedrock."""

    type = "anthropic"
    apis: Mapping[str, Api] = {"v1/messages": MESSAGES}

    def __init__(self, name: str, config: BedrockConfig, credentials: Any = None) -> None:
        """``credentials``: a botocore ``Credentials`` to use instead of resolving them (tests)."""
        self.name = name
        self._config = config
        self._endpoint = config.endpoint.rstrip("/")
        self._region = signing_region(config)
        self._credentials = credentials if credentials is not None else resolve_credentials(name, config)
        self._session: aiohttp.ClientSession | None = None

    @property
    def region(self) -> str:
        return self._region

    def is_passthrough(self, method: str, tail: str) -> bool:
        return False

    def upstream_model(self, model: str) -> str:
        if "haiku" in model.lower():
            return self._config.small_fast_model
        return self._config.model

    def url(self, model: str, stream: bool) -> str:
        operation = "invoke-with-response-stream" if stream else "invoke"
        return f"{self._endpoint}/model/{quote(model, safe='')}/{operation}"

    async def _frozen_credentials(self) -> Any:
        credentials = self._credentials
        try:
            if isinstance(credentials, RefreshableCredentials) and credentials.refresh_needed():
                # A refresh may call STS, SSO or the instance metadata service: not on the loop.
                return await asyncio.to_thread(credentials.get_frozen_credentials)
            return credentials.get_frozen_credentials()
        except Exception as exc:
            raise UpstreamError(502, f"AWS credentials for {self.name} could not be refreshed: {exc}") \
                from exc

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        if request.tail not in self.apis:
            return BufferedResponse(404, orjson.dumps(anthropic_error(
                "not_found_error", f"route not supported by Amazon Bedrock: {request.tail}")))
        # The flow hands over the parsed body it encoded (or left as sent); it is only read here.
        body: Any = request.json
        if body is None:
            try:
                body = orjson.loads(request.body)
            except orjson.JSONDecodeError:
                body = None
        if not isinstance(body, dict):
            return BufferedResponse(400, orjson.dumps(anthropic_error(
                "invalid_request_error", "request body must be a JSON object")))
        stream = bool(body.get("stream", request.stream))
        model = self.upstream_model(str(body.get("model") or ""))
        payload = orjson.dumps(bedrock_body(body, model, request.headers.getall("anthropic-beta", [])))
        url = self.url(model, stream)
        headers = {
            "Host": host_header(url),
            "Content-Type": "application/json",
            "Accept": EVENTSTREAM_CONTENT_TYPE if stream else "application/json",
        }
        if stream:
            headers["X-Amzn-Bedrock-Accept"] = "application/json"
        credentials = await self._frozen_credentials()
        signed = sign(credentials, self._region, "POST", url, headers, payload)

        if self._session is None:
            self._session = new_session()
        try:
            resp = await self._session.post(URL(url, encoded=True), data=payload, headers=signed)
        except TimeoutError as exc:
            raise UpstreamError(504, f"upstream {self.name} timed out") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(502, f"upstream {self.name} unreachable: {describe(exc)}") from exc

        if resp.status >= 400:
            try:
                error_body = await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise UpstreamError(502, f"upstream connection lost: {describe(exc)}") from exc
            finally:
                resp.release()
            headers_out = {"Content-Type": "application/json"}
            request_id = resp.headers.get("x-amzn-RequestId")
            if request_id:
                headers_out["x-amzn-RequestId"] = request_id
            return BufferedResponse(resp.status, translate_error(resp.status, resp.headers, error_body),
                                    headers_out)
        if stream:
            return BedrockStreamResponse(resp)
        # Bedrock's invoke body is already an Anthropic Message: relayed as is. (The cast only
        # bridges the declared type of its headers, a CIMultiDictProxy, to the protocol's Mapping.)
        return cast(UpstreamResponse, HTTPUpstreamResponse(resp))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
