"""What chat completions and Responses share: OpenAI's error shape and cache accounting."""

from __future__ import annotations

from typing import Any

from aibridge.bridge.apis.common import as_int

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def split_cached(total: object, details: dict[str, Any]) -> tuple[int, int, int]:
    """(input without cache, cache read, cache write): OpenAI counts cached tokens inside the input."""
    cached = as_int(details.get("cached_tokens"))
    written = as_int(details.get("cache_write_tokens"))
    return max(0, as_int(total) - cached - written), cached, written


def error_type(status: int) -> str:
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def error_object(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"message": message, "type": type_, "param": None, "code": code}


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": error_object(message, error_type(status))}
