"""Which AI tool sent a request, and its session, guessed from the request headers.

Best effort: not every tool names itself. Signals come from the tools' own sources and
captures: their User-Agent, Codex's ``originator``, and the OpenRouter-style attribution
headers (``X-Title``, ``HTTP-Referer``) that Cline and its forks send to every provider.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from multidict import CIMultiDict, CIMultiDictProxy

CLAUDE_CODE = "Claude Code"
CODEX = "Codex"
ZED = "Zed"
COPILOT = "GitHub Copilot"
CURSOR = "Cursor"
ROO_CODE = "Roo Code"
KILO_CODE = "Kilo Code"
CLINE = "Cline"
OPENCODE = "OpenCode"
MUX = "Mux"
CRUSH = "Charm Crush"
JUNIE = "Junie"
GOOSE = "Goose"
UNKNOWN = "Unknown"

_Headers = dict[str, str]        # lower-cased names


def _lower(headers: Mapping[str, str]) -> _Headers:
    """Lower-cased names; the first value wins when a name repeats (as in a multidict)."""
    lowered: _Headers = {}
    try:
        for name, value in headers.items():
            if isinstance(name, str) and isinstance(value, str):
                lowered.setdefault(name.lower(), value)
    except (AttributeError, TypeError):
        pass
    return lowered


def _ua_starts(h: _Headers, *prefixes: str) -> bool:
    return h.get("user-agent", "").lower().startswith(prefixes)


def _title(h: _Headers) -> str:
    return h.get("x-title", "").strip().lower()


def _referer(h: _Headers) -> str:
    return h.get("http-referer", "").lower()


def _has_prefixed(h: _Headers, prefix: str) -> bool:
    return any(name.startswith(prefix) for name in h)


def _claude_code(h: _Headers) -> bool:
    return _ua_starts(h, "claude-cli/", "claude-code/") or "x-claude-code-session-id" in h


def _codex(h: _Headers) -> bool:
    # originator: codex_exec, codex_cli_rs, codex_vscode, …; User-Agent: codex_exec/0.171.0 …
    return h.get("originator", "").lower().startswith("codex") or _ua_starts(h, "codex")


def _kilo(h: _Headers) -> bool:
    # Kilo Code forked Roo Code (itself a Cline fork): test it before the other two.
    return (
        _ua_starts(h, "kilo-code/", "kilocode/", "kilo/")         # kilo/latest/7.8.3/cli (its CLI)
        or h.get("originator", "").lower() == "kilo-code"
        or _title(h) == "kilo code"
        or _has_prefixed(h, "x-kilocode-")
        or "kilocode" in _referer(h)
    )


def _roo(h: _Headers) -> bool:
    return (
        _ua_starts(h, "roo-code/", "roocode/")
        or h.get("originator", "").lower() == "roo-code"
        or _title(h) == "roo code"
        or "roovetgit" in _referer(h)             # github.com/RooVetGit/Roo-Cline: not Cline
    )


def _cline(h: _Headers) -> bool:
    return (
        _ua_starts(h, "cline/")
        or _title(h) == "cline"
        or "x-cline-version" in h
        or "://cline.bot" in _referer(h)
    )


def _opencode(h: _Headers) -> bool:
    return (
        _ua_starts(h, "opencode/")
        or _title(h) == "opencode"
        or _has_prefixed(h, "x-opencode-")
        or "opencode.ai" in _referer(h)
    )


def _zed(h: _Headers) -> bool:
    return _ua_starts(h, "zed/")


def _copilot(h: _Headers) -> bool:
    # GitHubCopilotChat/… (VS Code), copilot/… (CLI); every Copilot client sends Editor-Version
    # (Copilot's API refuses a request without it) and the editor integrations Copilot-Integration-Id;
    # Copilot's bring-your-own-key requests (sent with the plain OpenAI/Anthropic SDKs) carry
    # X-Interaction-Type.
    return (
        _ua_starts(h, "githubcopilotchat/", "copilot/")
        or "copilot-integration-id" in h
        or "editor-version" in h
        or h.get("editor-plugin-version", "").lower().startswith("copilot")
        or bool(h.get("x-interaction-type", "").strip())
    )


def _cursor(h: _Headers) -> bool:
    return _has_prefixed(h, "x-cursor-") or _ua_starts(h, "cursor/")


def _mux(h: _Headers) -> bool:
    return _ua_starts(h, "mux/")


def _crush(h: _Headers) -> bool:
    # Charm-Crush/v0.97.1 (https://charm.land/crush)
    return _ua_starts(h, "charm-crush/", "charm crush/")


def _junie(h: _Headers) -> bool:
    # JetBrains Junie: "junie:<ide>:<version>…"
    return _ua_starts(h, "junie:", "junie/")


def _goose(h: _Headers) -> bool:
    # Block's Goose sends OpenRouter-style attribution to the OpenAI-compatible providers.
    return _title(h) == "goose" or "block.github.io/goose" in _referer(h)


# Order matters where tools share ancestry (Kilo → Roo → Cline).
_RULES: tuple[tuple[str, Callable[[_Headers], bool]], ...] = (
    (CLAUDE_CODE, _claude_code),
    (CODEX, _codex),
    (KILO_CODE, _kilo),
    (ROO_CODE, _roo),
    (CLINE, _cline),
    (OPENCODE, _opencode),
    (ZED, _zed),
    (COPILOT, _copilot),
    (CURSOR, _cursor),
    (MUX, _mux),
    (CRUSH, _crush),
    (JUNIE, _junie),
    (GOOSE, _goose),
)

# Where each tool puts the id of its conversation.
_SESSION_HEADERS: dict[str, tuple[str, ...]] = {
    CLAUDE_CODE: ("x-claude-code-session-id",),
    CODEX: ("session-id", "session_id"),           # older Codex releases used the underscore
    OPENCODE: ("x-opencode-session", "x-session-id"),
    CLINE: ("x-task-id",),
}


# The headers whose values the rules read; the others count by name only.
_VALUE_HEADERS = ("user-agent", "originator", "x-title", "http-referer", "editor-plugin-version",
                  "x-interaction-type")
_CACHE_SIZE = 4096
_cache: dict[tuple[object, ...], str] = {}


def _client(key: tuple[object, ...], headers: Mapping[str, str]) -> str:
    # A tool sends the same headers on every request: the rules run once per distinct set of
    # header names and rule-relevant values (about 8 µs), a lookup after that.
    client = _cache.get(key)
    if client is None:
        h = _lower(headers)
        client = next((name for name, matches in _RULES if matches(h)), UNKNOWN)
        if len(_cache) >= _CACHE_SIZE:
            _cache.clear()
        _cache[key] = client
    return client


def detect_client(headers: Mapping[str, str]) -> tuple[str, str | None]:
    """(client name, session id or None) for the request headers, case-insensitively."""
    # aiohttp's headers already look names up case-insensitively: the names as sent make the key
    # (a tool writes them the same way each time), with no lower-cased copy unless the rules run.
    h: Mapping[str, str] = headers if isinstance(headers, CIMultiDictProxy | CIMultiDict) else _lower(headers)
    client = _client((*h.keys(), *map(h.get, _VALUE_HEADERS)), h)
    session = next((v for name in _SESSION_HEADERS.get(client, ()) if (v := h.get(name, "").strip())), None)
    return client, session
