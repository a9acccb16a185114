"""What the door checks of a parsed request body, beyond its being a JSON object.

orjson reads up to 1024 nested levels but writes at most ``MAX_DEPTH``: a body nested deeper
parses, then fails wherever the bridge re-encodes it (stream options added, MCP tools added, a
model alias, upstream redaction, Bedrock), which used to be a 500. Such a body is refused at the
door with a 400 in the provider's shape instead.

The check is encoding the body once more, and only for bodies long enough to nest that deep
(every level takes two bytes): the benchmark's small bodies pay one length comparison; a large
agent request pays about a fifth of what parsing it cost (orjson writes faster than it reads),
less than searching it for a substring would.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_DEPTH = 254         # orjson's limit when encoding: nested objects and arrays, the body included


def body_problem(raw: bytes, body: dict[str, Any]) -> str | None:
    """Why ``body`` (parsed from ``raw``) cannot be served, or None."""
    if len(raw) <= 2 * MAX_DEPTH:
        return None
    try:
        orjson.dumps(body)
    except orjson.JSONEncodeError:
        return f"request body nests deeper than {MAX_DEPTH} levels of objects and arrays"
    return None
