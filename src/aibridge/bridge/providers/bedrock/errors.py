"""Bedrock errors in Anthropic's error shape.

HTTP errors (``{"message": …}`` + ``x-amzn-ErrorType``) become Anthropic error bodies and
exception frames mid-stream become ``event: error`` events, both typed by one table
(``ERROR_TYPES``). HTTP errors keep Bedrock's status code (what the SDKs' retry logic keys on);
only the body changes shape. The shape itself is the Messages API's (``apis.messages``).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from aibridge.bridge.apis.messages import anthropic_error, error_type

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
    return "api_error" if status is None else error_type(status)


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


