"""Test harness: real server processes on free loopback ports, real databases.

PostgreSQL: when AIBRIDGE_TEST_POSTGRES_URL is set, every database-backed test also runs on
PostgreSQL, each server on a database of its own created for it (and dropped afterwards). An
unreachable PostgreSQL fails the tests; it never skips them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

POSTGRES_URL = os.environ.get("AIBRIDGE_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite", "postgres"] if POSTGRES_URL else ["sqlite"]
START_TIMEOUT = 90.0     # several servers starting at once on a busy 2-core CI machine import slowly
STOP_TIMEOUT = 20.0


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, never one this process handed out before: two ports asked for one
    server (its HTTP and metrics addresses) were the same once, since neither was bound yet."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free loopback port that was not handed out already")


class PostgresDatabase:
    """A throw-away database on the test PostgreSQL server."""

    def __init__(self) -> None:
        self.name = f"aibridge_t_{uuid.uuid4().hex[:12]}"
        base = POSTGRES_URL.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}"

    async def create(self) -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await conn.close()

    async def drop(self) -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await conn.close()


class Database:
    """Where a server keeps its data: a temp dir (SQLite) plus, optionally, a PostgreSQL database."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.data_dir = Path(tempfile.mkdtemp(prefix="aibridge-test-"))
        self.postgres = PostgresDatabase() if backend == "postgres" else None

    async def __aenter__(self) -> Database:
        if self.postgres:
            await self.postgres.create()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.postgres:
            await self.postgres.drop()

    def env(self) -> dict[str, str]:
        env = {"CODER_AIBRIDGE_DATA_DIR": str(self.data_dir)}
        if self.postgres:
            env["CODER_PG_CONNECTION_URL"] = self.postgres.url
        return env


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CODER_", "OTEL_", "AWS_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_cli(args: list[str], env: Mapping[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aibridge", *args], env=base_env(env), capture_output=True,
                          text=True, timeout=timeout, check=False)


class ServerProcess:
    """``aibridge server`` in a subprocess on a free port."""

    def __init__(self, db: Database, env: Mapping[str, str] | None = None, args: list[str] | None = None) -> None:
        self.port = free_port()
        self.db = db
        # One process unless a test asks for more (the server's default is one worker per CPU).
        self.env = {**db.env(), "CODER_HTTP_ADDRESS": f"127.0.0.1:{self.port}", "CODER_AIBRIDGE_WORKERS": "1",
                    **(env or {})}
        self.args = args or []
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = db.data_dir / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.admin_token = ""

    async def start(self) -> ServerProcess:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "aibridge", "server", *self.args],
                                     env=base_env(self.env), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.url + "/healthz") as resp:
                        # The first owner's banner comes once it listens, before this log line.
                        if resp.status == 200 and f"listening on {self.url}" in self.output():
                            break
                await asyncio.sleep(0.1)
            else:
                self.kill()
                raise RuntimeError(f"server did not become healthy:\n{self.output()}")
        match = re.search(r"shown this once:\s+(\S+)", self.output())
        self.admin_token = match.group(1) if match else ""
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(self.url + path, data=orjson.dumps(body), method="POST",
                                         headers={"Coder-Session-Token": self.admin_token,
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            return orjson.loads(resp.read())

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(list(args), self.env)

    def create_user(self, username: str, role: str = "member") -> str:
        """Create a user and return a fresh token for it: through the REST API with the first
        owner's token when this server printed one (fast), else with the CLI."""
        if self.admin_token:
            self._post("/api/v2/users", {"username": username, "role": role})
            key: str = self._post(f"/api/v2/users/{username}/keys/tokens", {})["key"]
            return key
        made = self.cli("users", "create", username, "--role", role)
        assert made.returncode == 0, made.stderr
        token = self.cli("tokens", "create", username)
        assert token.returncode == 0, token.stderr
        return token.stdout.strip()


class Client:
    """A small JSON client for the REST API."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    async def request(self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None,
                      raw: bytes | None = None) -> tuple[int, Any]:
        hdrs = {"Coder-Session-Token": self.token} if self.token else {}
        hdrs.update(headers or {})
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session, \
                session.request(method, self.url + path, data=data, headers=hdrs) as resp:
            payload = await resp.read()
            try:
                return resp.status, orjson.loads(payload) if payload else None
            except orjson.JSONDecodeError:
                return resp.status, payload.decode(errors="replace")

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.request("POST", path, body, **kw)


async def wait_for(check: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll an async ``check`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval)
