"""Client and session detection from request headers."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from multidict import CIMultiDict

from aibridge.bridge.clients import detect_client

CASES: list[tuple[str, dict[str, str], tuple[str, str | None]]] = [
    ("claude code", {
        "User-Agent": "claude-cli/2.1.197 (external, sdk-cli)",
        "X-Claude-Code-Session-Id": "ef5105bc-0000-4000-8000-acb322bac2aa",
        "anthropic-version": "2023-06-01", "x-app": "cli",
    }, ("Claude Code", "ef5105bc-0000-4000-8000-acb322bac2aa")),
    ("claude code without session", {"User-Agent": "claude-cli/2.0.67 (external, cli)"},
     ("Claude Code", None)),
    ("codex exec", {
        "originator": "codex_exec",
        "User-Agent": "codex_exec/0.171.0 (Debian 12.0.0; x86_64) xterm (codex_exec; 0.171.0)",
        "session-id": "01a2188e-4116-77f2-88b9-5f10e927d83e",
        "thread-id": "01a2188e-4116-77f2-88b9-5f10e927d83e",
    }, ("Codex", "01a2188e-4116-77f2-88b9-5f10e927d83e")),
    ("codex by originator only", {"originator": "codex_cli_rs", "User-Agent": "reqwest"}, ("Codex", None)),
    ("codex by user agent only", {"User-Agent": "codex_cli_rs/0.87.0 (Mac OS 26.2.0; arm64) ghostty"},
     ("Codex", None)),
    ("older codex session header", {"originator": "codex_cli_rs", "session_id": "s-1"}, ("Codex", "s-1")),
    ("zed", {"User-Agent": "Zed/0.219.4+stable.119.abc123 (macos; aarch64)"}, ("Zed", None)),
    ("copilot in vs code", {
        "User-Agent": "GitHubCopilotChat/0.37.2026011603",
        "Copilot-Integration-Id": "vscode-chat", "Editor-Version": "vscode/1.108.0",
        "Editor-Plugin-Version": "copilot-chat/0.37.2026011603",
    }, ("GitHub Copilot", None)),
    ("copilot cli", {"User-Agent": "copilot/0.0.403 (client/cli linux v24.11.1)"}, ("GitHub Copilot", None)),
    ("copilot by integration header", {"User-Agent": "node-fetch", "Copilot-Integration-Id": "vscode-chat"},
     ("GitHub Copilot", None)),
    ("copilot by editor version", {"User-Agent": "node-fetch/1.0", "Editor-Version": "Neovim/0.11.2"},
     ("GitHub Copilot", None)),
    ("copilot cli headers", {"User-Agent": "copilot/0.0.403 (client/cli linux v24.11.1)",
                             "Copilot-Integration-Id": "copilot-developer-cli", "X-Initiator": "user"},
     ("GitHub Copilot", None)),
    ("cursor", {"User-Agent": "connect-es/1.6.1", "X-Cursor-Client-Version": "0.50.0"}, ("Cursor", None)),
    ("roo code", {
        "User-Agent": "RooCode/3.53.0", "HTTP-Referer": "https://github.com/RooVetGit/Roo-Cline",
        "X-Title": "Roo Code",
    }, ("Roo Code", None)),
    ("roo code originator", {"originator": "roo-code"}, ("Roo Code", None)),
    ("roo code referer only is not cline", {"HTTP-Referer": "https://github.com/RooVetGit/Roo-Cline"},
     ("Roo Code", None)),
    ("kilo code", {
        "User-Agent": "Kilo-Code/4.84.0", "HTTP-Referer": "https://kilocode.ai", "X-Title": "Kilo Code",
        "X-KiloCode-Version": "4.84.0",
    }, ("Kilo Code", None)),
    ("kilo code with roo's headers", {
        "User-Agent": "RooCode/1.0.0", "X-Title": "Kilo Code", "X-KiloCode-Version": "4.84.0",
    }, ("Kilo Code", None)),
    ("kilo code originator", {"Originator": "kilo-code"}, ("Kilo Code", None)),
    ("cline", {
        "User-Agent": "Cline/3.0.47", "HTTP-Referer": "https://cline.bot", "X-Title": "Cline",
        "X-Task-ID": "task-42",
    }, ("Cline", "task-42")),
    ("cline by attribution headers", {"HTTP-Referer": "https://cline.bot", "X-Title": "Cline"},
     ("Cline", None)),
    ("opencode", {"User-Agent": "opencode/1.18.31", "x-opencode-session": "ses_abc"},
     ("OpenCode", "ses_abc")),
    ("opencode via openrouter headers", {
        "User-Agent": "ai-sdk/openai-compatible", "HTTP-Referer": "https://opencode.ai/",
        "X-Title": "opencode", "X-Session-Id": "ses_def",
    }, ("OpenCode", "ses_def")),
    ("mux", {"User-Agent": "mux/0.9.0"}, ("Mux", None)),
    ("charm crush", {"User-Agent": "Charm-Crush/v0.97.1 (https://charm.land/crush)"}, ("Charm Crush", None)),
    ("junie", {"User-Agent": "junie:IU:252.26830.84"}, ("Junie", None)),
    ("goose", {"User-Agent": "reqwest", "HTTP-Referer": "https://block.github.io/goose", "X-Title": "Goose"},
     ("Goose", None)),
    ("goose by title only", {"X-Title": "goose"}, ("Goose", None)),
    ("kilo code cli", {"User-Agent": "kilo/latest/7.8.3/cli"}, ("Kilo Code", None)),
    ("copilot bring-your-own-key", {"User-Agent": "OpenAI/JS 5.20.1", "X-Interaction-Type": "conversation-user"},
     ("GitHub Copilot", None)),
    ("copilot header left blank", {"User-Agent": "OpenAI/JS 5.20.1", "X-Interaction-Type": " "},
     ("Unknown", None)),
    ("cursor by user agent", {"User-Agent": "Cursor/1.7.0"}, ("Cursor", None)),
    ("openai sdk", {"User-Agent": "OpenAI/Python 3.57.0", "x-stainless-lang": "python"}, ("Unknown", None)),
    ("anthropic sdk", {"User-Agent": "Anthropic/Python 2.14.0", "anthropic-version": "2026-10-21"},
     ("Unknown", None)),
    ("look-alike prefix", {"User-Agent": "ccclaude-cli/calude-with-wrong-prefix"}, ("Unknown", None)),
    ("no headers", {}, ("Unknown", None)),
    ("session header of another client is ignored", {"User-Agent": "OpenAI/Python", "session-id": "x"},
     ("Unknown", None)),
    ("blank session", {"User-Agent": "claude-cli/2.1.0", "X-Claude-Code-Session-Id": "  "},
     ("Claude Code", None)),
]


@pytest.mark.parametrize(("headers", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_detect_client(headers: dict[str, str], expected: tuple[str, str | None]) -> None:
    assert detect_client(headers) == expected
    assert detect_client(CIMultiDict(headers)) == expected


@pytest.mark.parametrize(("headers", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_header_names_are_case_insensitive(headers: dict[str, str], expected: tuple[str, str | None]) -> None:
    assert detect_client({name.upper(): value for name, value in headers.items()}) == expected
    assert detect_client(CIMultiDict({name.upper(): value for name, value in headers.items()})) == expected
    lowered = MappingProxyType({name.lower(): value for name, value in headers.items()})
    assert detect_client(lowered) == expected


def test_first_value_of_a_repeated_header_wins() -> None:
    headers = CIMultiDict([("user-agent", "claude-cli/2.1.0"), ("User-Agent", "Zed/1.0"),
                           ("x-claude-code-session-id", "first"), ("X-Claude-Code-Session-Id", "second")])
    assert detect_client(headers) == ("Claude Code", "first")


def test_odd_values_are_ignored() -> None:
    headers: dict[object, object] = {"User-Agent": b"claude-cli/2.1.0", "X-Title": None, 3: "x"}
    assert detect_client(headers) == ("Unknown", None)  # type: ignore[arg-type]


def test_the_detection_cache_tells_apart_what_the_rules_read() -> None:
    """Detection is cached per header set: names and the values the rules read are the key."""
    base = {"Host": "h", "Content-Type": "application/json", "Content-Length": "10"}
    for _ in range(2):                                   # the second pass answers from the cache
        assert detect_client(CIMultiDict({**base, "User-Agent": "claude-cli/2.1.0"}))[0] == "Claude Code"
        assert detect_client(CIMultiDict({**base, "User-Agent": "zed/0.200"}))[0] == "Zed"
        assert detect_client(CIMultiDict({**base, "User-Agent": "python-httpx/0.28"}))[0] == "Unknown"
        assert detect_client(CIMultiDict({**base, "User-Agent": "python-httpx/0.28", "X-Cline-Version": "3"}))[0] \
            == "Cline"
        assert detect_client(CIMultiDict({**base, "User-Agent": "python-httpx/0.28", "X-Title": "Roo Code"}))[0] \
            == "Roo Code"
    # The session id is read per request, not cached with the client.
    assert detect_client(CIMultiDict({**base, "User-Agent": "claude-cli/2.1.0", "X-Claude-Code-Session-Id": "a"})) \
        == ("Claude Code", "a")
    assert detect_client(CIMultiDict({**base, "User-Agent": "claude-cli/2.1.0", "X-Claude-Code-Session-Id": "b"})) \
        == ("Claude Code", "b")
