"""The real client CLIs (Claude Code, Codex) and aimock, installed once from npm into a cache folder.

``npm_clients()`` installs the pinned packages into ``<repo>/.cache/npm-clients`` (or
``$AIBRIDGE_NPM_CLIENTS_DIR``) the first time, checks that each binary runs and reports the pinned
version, and returns their paths. Later calls (and later runs) reuse the folder while its stamp
matches the pins. Anything missing or broken FAILS the test with a message saying what to do: CI has
node and npm, so these tests are never skipped.

Codex and Claude Code ship their native binaries as per-platform optional dependencies (and Claude
Code copies its binary into place in a postinstall script), so the install insists on optional
dependencies and install scripts whatever the user's npm config says.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("AIBRIDGE_NPM_CLIENTS_DIR") or REPO / ".cache" / "npm-clients")
# Exact versions (npm view <pkg> version, 2026-11-26). Bump deliberately: the tests read these clients' traffic.
PINNED = {
    "@anthropic-ai/claude-code": "2.1.332",
    "@openai/codex": "0.171.0",
    "@copilotkit/aimock": "1.43.0",
}
MIN_NODE = (20, 15)                   # @copilotkit/aimock's engines field; Codex and Claude Code run native binaries
INSTALL_TIMEOUT = 300.0               # seconds for the whole `npm install` from a cold npm cache
CHECK_TIMEOUT = 60.0
LOCK_TIMEOUT = INSTALL_TIMEOUT + 60.0


@dataclass(frozen=True)
class NpmClients:
    claude: Path                     # the `claude` binary (native, copied into place by the postinstall)
    codex: Path                      # the `codex` launcher (node script that execs the platform binary)
    llmock: Path                     # aimock's `llmock` CLI (node script)
    node: str
    folder: Path


def _fail(message: str) -> None:
    pytest.fail(message, pytrace=False)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        _fail(f"`{name}` is not on PATH. The real-client and aimock end-to-end tests install "
              f"{', '.join(PINNED)} with npm; install Node.js >= {MIN_NODE[0]}.{MIN_NODE[1]} with npm.")
    return str(found)


def _run(argv: list[str], timeout: float, env: dict[str, str] | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in its own process group; on timeout kill the whole group (npm spawns scripts)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, env=env, cwd=cwd, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
        raise TimeoutError(f"`{' '.join(argv)}` did not finish within {timeout:.0f}s; output so far:\n"
                           f"{(out or '')[-4000:]}") from None
    return subprocess.CompletedProcess(argv, proc.returncode, out, "")


def _node_version(node: str) -> tuple[int, int]:
    result = _run([node, "--version"], CHECK_TIMEOUT)
    match = re.match(r"v(\d+)\.(\d+)", result.stdout.strip())
    if result.returncode != 0 or match is None:
        _fail(f"`node --version` failed ({result.returncode}): {result.stdout.strip()}")
    assert match is not None
    return int(match.group(1)), int(match.group(2))


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One installer at a time (parallel test processes share the folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as handle:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    _fail(f"another process held {folder / '.lock'} for over {LOCK_TIMEOUT:.0f}s")
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stamp() -> dict[str, str]:
    return {**PINNED, "platform": f"{platform.system()}-{platform.machine()}"}


def _paths(folder: Path, node: str) -> NpmClients:
    modules = folder / "node_modules"
    return NpmClients(
        claude=modules / "@anthropic-ai" / "claude-code" / "bin" / "claude.exe",
        codex=modules / "@openai" / "codex" / "bin" / "codex.js",
        llmock=modules / "@copilotkit" / "aimock" / "dist" / "cli.js",
        node=node,
        folder=folder,
    )


def client_env(home: Path, node: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment for a client CLI: no developer credentials or base URLs leak in."""
    path = os.pathsep.join(dict.fromkeys([str(Path(node).parent), "/usr/local/bin", "/usr/bin", "/bin"]))
    env = {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8", "TERM": "dumb", "NO_COLOR": "1"}
    env.update(extra or {})
    return env


def _checks(clients: NpmClients) -> list[tuple[str, Path, list[str], str]]:
    """(package, file that must exist, command, text its output must contain) for each package."""
    return [
        ("@anthropic-ai/claude-code", clients.claude, [str(clients.claude), "--version"],
         f"{PINNED['@anthropic-ai/claude-code']} (Claude Code)"),
        ("@openai/codex", clients.codex, [clients.node, str(clients.codex), "--version"],
         f"codex-cli {PINNED['@openai/codex']}"),
        ("@copilotkit/aimock", clients.llmock, [clients.node, str(clients.llmock), "--help"], "--fixtures"),
    ]


def _check(clients: NpmClients) -> dict[str, str]:
    """``{package: what is wrong}``; empty when every binary runs and reports its pinned version."""
    problems: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="aibridge-npm-check-") as home:
        env = client_env(Path(home), clients.node, {"CODEX_HOME": home})
        for package, path, argv, expected in _checks(clients):
            if not path.exists():
                problems[package] = f"{path} is missing"
                continue
            try:
                result = _run(argv, CHECK_TIMEOUT, env=env, cwd=Path(home))
            except (OSError, TimeoutError) as exc:
                problems[package] = f"`{' '.join(argv)}` failed: {exc}"
                continue
            if result.returncode != 0 or expected not in result.stdout:
                problems[package] = (f"`{' '.join(argv)}` exited {result.returncode}; expected {expected!r} in:\n"
                                     f"{result.stdout[-2000:]}")
    return problems


def _report(problems: dict[str, str]) -> str:
    return "\n".join(f"{package}: {problem}" for package, problem in problems.items())


def npm_clients() -> NpmClients:
    """Install (once per process; later runs reuse the folder) and return the pinned CLIs and aimock.

    A failed install fails every test that asks, at once, with the same message (no second attempt).
    """
    outcome = _install_once()
    if isinstance(outcome, str):
        _fail(outcome)
    assert isinstance(outcome, NpmClients)
    return outcome


@cache
def _install_once() -> NpmClients | str:
    try:
        return _install()
    except pytest.fail.Exception as exc:
        return str(exc.msg)


def _install() -> NpmClients:
    node = _tool("node")
    npm = _tool("npm")
    if _node_version(node) < MIN_NODE:
        _fail(f"Node.js >= {MIN_NODE[0]}.{MIN_NODE[1]} is needed (found {_node_version(node)}).")
    folder = CACHE_DIR
    stamp_path = folder / "installed.json"
    with _locked(folder):
        clients = _paths(folder, node)
        with contextlib.suppress(OSError, ValueError):
            if json.loads(stamp_path.read_text()) == _stamp() and not _check(clients):
                return clients
        stamp_path.unlink(missing_ok=True)
        for stale in ("node_modules", "package.json", "package-lock.json"):
            target = folder / stale
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        argv = [npm, "install", "--no-audit", "--no-fund", "--no-update-notifier", "--include=optional",
                "--ignore-scripts=false", "--engine-strict=false", "--loglevel=warn", "--prefix", str(folder),
                *(f"{name}@{version}" for name, version in PINNED.items())]
        started = time.monotonic()
        try:
            result = _run(argv, INSTALL_TIMEOUT, cwd=folder)
        except (OSError, TimeoutError) as exc:
            _fail(f"npm install of the client CLIs failed: {exc}")
            raise
        if result.returncode != 0:
            _fail(f"`{' '.join(argv)}` exited {result.returncode} after {time.monotonic() - started:.0f}s:\n"
                  f"{result.stdout[-6000:]}")
        problems = _check(clients)
        if "@anthropic-ai/claude-code" in problems:
            # Claude Code copies its native binary over a stub in a postinstall script; some npm setups
            # skip install scripts whatever the command line says. Run it by hand, as its stub advises.
            script = clients.claude.parent.parent / "install.cjs"
            with contextlib.suppress(OSError, TimeoutError):
                _run([node, str(script)], CHECK_TIMEOUT, cwd=script.parent)
            problems = _check(clients)
        if problems:
            _fail(f"npm installed the client CLIs into {folder} but they do not run:\n{_report(problems)}\n"
                  f"npm output:\n{result.stdout[-3000:]}")
        stamp_path.write_text(json.dumps(_stamp(), indent=2) + "\n")
        return clients
