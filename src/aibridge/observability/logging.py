"""Human logs by default, JSON lines with --log-json. Secrets are never passed to a logger.

Two guards stand behind that rule, in both formats:

- every configured credential (provider keys, MCP server credentials: ``bridge/scrub.py``) is
  replaced in the written line, whoever logged it (a library naming a URL, an upstream's error);
- in text logs, newlines and other control characters inside a logged value (the message, an
  extra such as a prompt) are written escaped (``\\n``, ``\\x1b``), so a value can never start a
  line of its own or drive the terminal. A traceback keeps its lines. JSON lines escape them
  already.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sys
from typing import Any

import orjson

from aibridge.bridge import scrub

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Libraries whose INFO lines name whole URLs (the MCP SDK's HTTP client logs every request).
_QUIET = ("aiohttp.access", "httpx", "httpx2", "httpcore")


def _escape_char(match: re.Match[str]) -> str:
    char = match[0]
    return _ESCAPES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape(text: str) -> str:
    """``text`` on one line: control characters written as escapes."""
    if text.isprintable():          # nearly every value: no scan
        return text
    return _CONTROL.sub(_escape_char, text)


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage(),
        }
        doc.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return scrub.current().text(orjson.dumps(doc, default=str).decode())


class HumanFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if extra:
            text += " " + " ".join(f"{k}={escape(str(v))}" for k, v in extra.items())
        return scrub.current().text(text)


def setup_logging(json_logs: bool, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if json_logs else HumanFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
