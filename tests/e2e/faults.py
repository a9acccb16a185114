"""Tools for the recording fault tests: a database link the test can cut, a disk that fills up,
requests with unique prompts, and the export read back by prompt."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import aiohttp

from tests.harness import Client, ServerProcess, wait_for

MESSAGES = "/api/v2/aibridge/anthropic/v1/messages"


class CuttableLink:
    """A TCP relay to PostgreSQL that the test can cut and restore.

    The server under test is pointed at the relay instead of the shared PostgreSQL, so an
    "outage" never touches the PostgreSQL that other developers' tests use. The relay runs its
    own event loop in a thread, so the test's blocking calls never stall it.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.up = True
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> CuttableLink:
        self._thread.start()
        self._server = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, "127.0.0.1", 0), self._loop))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _cut(self) -> None:
        self.up = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def cut(self) -> None:
        """Every open connection dies now and new ones are refused, until ``restore``."""
        self._loop.call_soon_threadsafe(self._cut)

    def restore(self) -> None:
        self.up = True

    async def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._cut)
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


class FullDisk:
    """A small tmpfs of its own that the test fills to the last byte and frees again.

    A real ``ENOSPC`` for everything the server writes there (the SQLite database, its WAL and
    the journal), without filling the machine's disk. Needs root (mounting a tmpfs), which the
    test machine has; the mount is removed afterwards.
    """

    def __init__(self, size: str = "8m") -> None:
        self.path = Path(tempfile.mkdtemp(prefix="aibridge-fulldisk-"))
        self.size = size
        self.filler = self.path / "filler"

    def __enter__(self) -> FullDisk:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.path)],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"this test mounts a small tmpfs and needs root: {done.stderr}"
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)
        with contextlib.suppress(OSError):
            self.path.rmdir()

    def fill(self) -> None:
        """Write until the file system says ENOSPC. Unbuffered: a buffered file would try its last
        partial block again when closed, and raise ENOSPC there, outside the ``try``."""
        with self.filler.open("ab", buffering=0) as fh:
            block = b"\0" * 65536
            try:
                while True:
                    fh.write(block)
                    fh.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        with contextlib.suppress(OSError), self.filler.open("ab", buffering=0) as fh:     # the last few bytes too
            while True:
                fh.write(b"\0")
                fh.flush()

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)
        os.sync()


def messages_body(prompt: str, stream: bool, model: str = "claude-sonnet-4-5") -> dict[str, Any]:
    return {"model": model, "max_tokens": 50, "stream": stream,
            "messages": [{"role": "user", "content": prompt}]}


async def ask(session: aiohttp.ClientSession, server: ServerProcess, token: str, prompt: str,
              stream: bool = False, model: str = "claude-sonnet-4-5") -> bool:
    """One Messages request; True when the whole answer arrived with a 200."""
    try:
        async with session.post(server.url + MESSAGES, headers={"x-api-key": token},
                                json=messages_body(prompt, stream, model),
                                timeout=aiohttp.ClientTimeout(total=30)) as resp:
            body = await resp.read()
            if resp.status != 200:
                return False
            return (b"message_stop" in body) if stream else b'"usage"' in body
    except (aiohttp.ClientError, TimeoutError):
        return False


async def exported(client: Client) -> dict[str, dict[str, Any]]:
    """Every finished interception in the export, by its (first) prompt."""
    found: dict[str, dict[str, Any]] = {}
    after = ""
    for _ in range(100):
        status, body = await client.get("/api/v2/aibridge/interceptions?limit=1000" + after)
        assert status == 200, body
        for item in body["results"]:
            if item["user_prompts"]:
                found[item["user_prompts"][0]["prompt"]] = item
        if len(body["results"]) < 1000:
            return found
        after = "&after_id=" + body["results"][-1]["id"]
    return found


async def wait_exported(client: Client, prompts: set[str], timeout: float = 30) -> dict[str, dict[str, Any]]:
    """The export once every prompt is in it (or what is there when time is up)."""
    latest: dict[str, dict[str, Any]] = {}

    async def check() -> bool:
        nonlocal latest
        latest = await exported(client)
        return prompts <= set(latest)

    await wait_for(check, timeout, interval=0.25)
    return latest


async def health(server: ServerProcess, path: str = "/healthz") -> tuple[int, Any]:
    return await Client(server.url, "").get(path)
