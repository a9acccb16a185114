"""``aibridge`` with parts of the bridge switched off, to measure what each part costs (bench only).

    AIBRIDGE_BENCH_ABLATE=record,auth python -m bench.ablate_server server

Nothing here is a supported mode of the product: these patches exist so that ``bench.run
--variant`` can put a number of µs on each part of the bridge path by taking it away.

- ``record``:  no records at all (``Recorder.submit`` does nothing)
- ``dbwrite``: records are built and queued, the writer drops them instead of writing SQLite
- ``auth``:    the token → actor result is reused forever after the first request of a token
               (no expiry check, no hash, no cache bookkeeping, no periodic database read)
- ``client``:  no client/session detection from the headers
- ``session``: the upstream aiohttp session is made like the bare pass-through's (no
               auto-decompression; the bridge still sends its own Accept-Encoding)
- ``gcfreeze``: ``gc.freeze()`` once the server is listening (the start-up heap leaves the
               collector's view)
- ``gcdefault``: the collector's default thresholds (700, 10, 10) instead of the server's
- ``noyield``: the SQLite writer thread never pauses (``YIELD_AFTER`` infinite)
- ``cprofile``: (changes nothing but adds cProfile's overhead) profiles the event loop's thread
               and writes the stats to ``$AIBRIDGE_BENCH_CPROFILE`` (default ``cprofile.out`` in the
               data dir) when the server stops; read with ``python -m pstats``
- ``calls``:   (changes nothing) a bridge for ``bench.calls`` to count calls in (``bench/callcount.py``)
- ``gcstats``: (changes nothing) counts the cyclic garbage collector's passes and time once the
               server has frozen its start-up heap, written to stderr as ``bench-gc: …`` when
               the server stops
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

ABLATIONS = ("record", "dbwrite", "auth", "client", "session", "gcfreeze", "gcstats", "cprofile", "gcdefault",
             "noyield", "calls")


def apply(names: set[str]) -> None:
    unknown = names - set(ABLATIONS)
    if unknown:
        raise SystemExit(f"AIBRIDGE_BENCH_ABLATE: unknown {sorted(unknown)}; known: {', '.join(ABLATIONS)}")
    if "record" in names:
        from aibridge.recording.recorder import Recorder
        Recorder.submit = lambda self, record: None  # type: ignore[method-assign]
    if "dbwrite" in names:
        from aibridge.store.writer import BatchWriter

        async def drop(self: BatchWriter, batch: Any) -> None:
            return None
        BatchWriter.write = drop  # type: ignore[method-assign]
    if "auth" in names:
        from aibridge.identity.auth import Authenticator
        real = Authenticator.authenticate
        actors: dict[str, Any] = {}

        async def authenticate(self: Authenticator, headers: Mapping[str, str]) -> Any:
            key = headers.get("Authorization") or headers.get("X-Api-Key") or ""
            actor = actors.get(key)
            if actor is None:
                actor = actors[key] = await real(self, headers)
            return actor
        Authenticator.authenticate = authenticate  # type: ignore[method-assign]
    if "client" in names:
        from aibridge.bridge import intercept
        intercept.detect_client = lambda headers: ("Unknown", None)  # type: ignore[attr-defined]
    if "session" in names:
        import aiohttp

        from aibridge.bridge.providers import http

        def new_session() -> aiohttp.ClientSession:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60)
            return aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                         timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=900),
                                         skip_auto_headers=("User-Agent", "Accept-Encoding"))
        http.new_session = new_session
    if "gcfreeze" in names:
        import gc

        from aibridge import server
        real_serve = server.serve

        async def serve(settings: Any, worker: Any = None, sock: Any = None) -> None:
            import asyncio
            asyncio.get_running_loop().call_later(3.0, gc.freeze)   # after migrations and start-up
            await real_serve(settings, worker, sock)
        server.serve = serve
    if "gcstats" in names:
        _gc_stats()
    if "gcdefault" in names:
        import gc
        gc.set_threshold = lambda *args: None     # the server's own call changes nothing
    if "cprofile" in names:
        _cprofile()
    if "noyield" in names:
        from aibridge.store import writer
        writer.YIELD_AFTER = float("inf")


def _cprofile() -> None:
    import atexit
    import cProfile
    import time

    # The thread's CPU time, not the wall clock: time the loop spends preempted or waiting for the
    # GIL would otherwise land on whatever function was running.
    profile = cProfile.Profile(time.thread_time)
    out = os.environ.get("AIBRIDGE_BENCH_CPROFILE") or os.path.join(
        os.environ.get("CODER_AIBRIDGE_DATA_DIR", "."), "cprofile.out")
    profile.enable()

    def dump() -> None:
        profile.disable()
        profile.dump_stats(out)
    atexit.register(dump)


def _gc_stats() -> None:
    import atexit
    import gc
    import sys
    import time

    spent = [0.0, 0.0, 0.0]
    passes = [0, 0, 0]
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if not gc.get_freeze_count():       # start-up, until the server froze its heap: not per request
            return
        if phase == "start":
            started[0] = time.process_time()
        else:
            gen = info["generation"]
            spent[gen] += time.process_time() - started[0]
            passes[gen] += 1
    gc.callbacks.append(callback)

    def report() -> None:
        parts = ", ".join(f"gen{g}: {passes[g]} passes {spent[g] * 1e3:.0f} ms" for g in range(3))
        print(f"bench-gc: {parts}; objects tracked at exit {len(gc.get_objects())}", file=sys.stderr, flush=True)
    atexit.register(report)


def main() -> None:
    from bench import callcount, cpusampler
    cpusampler.install_from_env()
    callcount.install_from_env()
    apply({n.strip() for n in os.environ.get("AIBRIDGE_BENCH_ABLATE", "").split(",") if n.strip()})
    from aibridge.cli.main import main as aibridge_main
    aibridge_main()


if __name__ == "__main__":
    main()
