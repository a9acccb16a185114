"""The recording fault suite, long version (the short one is tests/e2e/test_recording_faults.py).

    python -m bench.faults outage --postgres postgresql://postgres@127.0.0.1:5432/test [--seconds 60]
    python -m bench.faults kill [--postgres URL] [--kills 10] [--every 3]

``outage``: a real server on a throw-away PostgreSQL database reached through a TCP relay; under
a steady load the relay is cut for ``--seconds`` (the shared PostgreSQL itself is never
touched), then restored. ``kill``: the server is killed with SIGKILL every ``--every`` seconds
under load and restarted, ``--kills`` times. Both then check that every answered request is in
the export and print what they saw (answered, lost, interrupted, time to catch up, the most the
recorder held).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import time
from typing import Any

import aiohttp
from tests import harness
from tests.e2e.conftest import bridge_env
from tests.e2e.faults import CuttableLink, ask, exported, health, wait_exported
from tests.fakes.upstream import FakeUpstream
from tests.harness import Client, Database, ServerProcess


class Load:
    """``workers`` clients asking one after another, each prompt unique; the answered ones kept."""

    def __init__(self, server: ServerProcess, token: str, workers: int) -> None:
        self.server = server
        self.token = token
        self.workers = workers
        self.answered: set[str] = set()
        self.failed = 0
        self._count = itertools.count()
        self._stop = asyncio.Event()
        self.peak: dict[str, int] = {"pending": 0, "journal_bytes": 0}

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(self._worker(session) for _ in range(self.workers)), self._watch())

    async def _worker(self, session: aiohttp.ClientSession) -> None:
        while not self._stop.is_set():
            n = next(self._count)
            prompt = f"fault load {n}"
            if await ask(session, self.server, self.token, prompt, stream=n % 2 == 0):
                self.answered.add(prompt)
            else:
                self.failed += 1
                await asyncio.sleep(0.05)

    async def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                _, body = await health(self.server)
                for key in self.peak:
                    self.peak[key] = max(self.peak[key], int(body["recording"][key]))
            except Exception:
                pass
            await asyncio.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()


async def outage(args: argparse.Namespace) -> dict[str, Any]:
    harness.POSTGRES_URL = args.postgres
    async with FakeUpstream(record=False) as fake, Database("postgres") as db:
        assert db.postgres is not None
        link = await CuttableLink("127.0.0.1", 5432).start()
        url = db.postgres.url.replace("127.0.0.1:5432", f"127.0.0.1:{link.port}")
        server = await ServerProcess(db, env={**bridge_env(fake), "CODER_PG_CONNECTION_URL": url}).start()
        token = await asyncio.to_thread(server.create_user, "load")
        load = Load(server, token, args.workers)
        running = asyncio.create_task(load.run())
        try:
            await asyncio.sleep(5)
            link.cut()
            cut_at = time.monotonic()
            await asyncio.sleep(args.seconds)
            link.restore()
            restored = time.monotonic()
            await asyncio.sleep(5)
            load.stop()
            await running
            owner = Client(server.url, server.admin_token)
            found = await wait_exported(owner, load.answered, timeout=120)
            caught_up = time.monotonic() - restored
            return {"scenario": f"PostgreSQL unreachable {args.seconds:.0f} s under load",
                    "answered": len(load.answered), "failed": load.failed,
                    "lost": len(load.answered - set(found)), "outage_s": round(restored - cut_at, 1),
                    "caught_up_after_restore_s": round(caught_up, 1), **load.peak,
                    "error_logs": server.output().count("recording: database write failed")}
        finally:
            load.stop()
            await asyncio.to_thread(server.stop)
            await link.stop()


async def kill(args: argparse.Namespace) -> dict[str, Any]:
    harness.POSTGRES_URL = args.postgres
    async with FakeUpstream(record=False) as fake, Database("postgres" if args.postgres else "sqlite") as db:
        server = await ServerProcess(db, env=bridge_env(fake)).start()
        owner_token = server.admin_token
        token = await asyncio.to_thread(server.create_user, "load")
        answered: set[str] = set()
        failed = 0
        for _ in range(args.kills):
            load = Load(server, token, args.workers)
            load._count = itertools.count(len(answered) + failed + 10**6 * _)
            running = asyncio.create_task(load.run())
            await asyncio.sleep(args.every)
            assert server.proc is not None
            server.proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(server.proc.wait, 10)
            load.stop()
            await running
            answered |= load.answered
            failed += load.failed
            server = await ServerProcess(db, env=bridge_env(fake)).start()
        try:
            started = time.monotonic()
            found = await wait_exported(Client(server.url, owner_token), answered, timeout=120)
            everything = await exported(Client(server.url, owner_token))
            interrupted = sum(1 for r in everything.values() if r["metadata"].get("outcome") == "interrupted")
            wrong = sum(1 for p in answered if p in found and found[p]["metadata"].get("outcome"))
            return {"scenario": f"kill -9 every {args.every:.0f} s under load, {args.kills} times",
                    "answered": len(answered), "failed_or_cut": failed, "lost": len(answered - set(found)),
                    "answered_but_marked_failed": wrong, "interrupted": interrupted,
                    "caught_up_after_last_start_s": round(time.monotonic() - started, 1)}
        finally:
            await asyncio.to_thread(server.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["outage", "kill"])
    parser.add_argument("--postgres", default=os.environ.get("AIBRIDGE_TEST_POSTGRES_URL", ""))
    parser.add_argument("--seconds", type=float, default=60.0, help="outage: how long the database is cut")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--every", type=float, default=3.0, help="kill: seconds of load before each kill")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    if args.scenario == "outage" and not args.postgres:
        parser.error("outage needs --postgres (a server where throw-away databases can be created)")
    result = asyncio.run(outage(args) if args.scenario == "outage" else kill(args))
    for key, value in result.items():
        print(f"{key:>30}: {value}")
    if result["lost"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
