"""Several worker processes on one port (``--workers N``), and the event loop each one runs.

The supervisor (the process ``aibridge server`` started) does what must happen once per server
before any worker exists: migrations, the configuration check, the first owner and its token
(printed once), the replay of journals that stopped workers left behind. It then binds the
listening sockets and forks the workers. Each worker runs its own event loop (uvloop unless
``--uvloop=false``) and serves the sockets it inherited.

- One port: on Linux every worker gets its own ``SO_REUSEPORT`` socket on the same address, and
  the kernel spreads new connections over them evenly (a single shared socket would hand most
  connections to whichever worker wakes first). The supervisor keeps its copy of each socket, so
  connections waiting in a dead worker's queue are served by the worker that replaces it.
  Without ``SO_REUSEPORT`` all workers share one inherited socket.
- Once per server, in worker 0 only: the retention purge, the ``--prometheus-address``
  listener and the listener for changes made by other replicas or the CLI (``Worker.leader``).
- Shared between the workers (``resilience/shared.py``): the concurrency limit, the circuit
  breaker's circuits and, without Redis, the rate-limit counts; the generations of tokens, users
  and rules, which tell every worker to drop its caches (``store/changes.py``). Metrics:
  prometheus_client's multiprocess mode (``observability/metrics.py``), so any worker's
  ``/metrics`` shows the whole server.
- SIGTERM or SIGINT: the supervisor closes its sockets and sends SIGTERM to every worker; each
  stops accepting, finishes its in-flight requests (``--shutdown-grace``) and flushes its records.
  A worker that dies otherwise is logged and replaced (after a growing pause if it keeps dying
  at once); a worker that exits with status 2 (a configuration error) stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path

from aibridge.config import Settings
from aibridge.listening import effective_backlog
from aibridge.observability.metrics import enable_multiprocess, worker_exited
from aibridge.resilience.shared import CircuitTable, SharedSlots, SharedWindowCounter
from aibridge.store.changes import Generations

log = logging.getLogger("aibridge.workers")
_CTX = multiprocessing.get_context("fork")
EXIT_CONFIG = 2          # a worker that exits with this stops the server (it would fail again)
FAST_DEATH = 10.0        # a worker that dies sooner than this after starting is restarted after a pause
MAX_PAUSE = 30.0
STOP_MARGIN = 10.0       # beyond the shutdown grace, before a worker still running is killed


@dataclass
class Worker:
    """What one worker process knows about its place in the server."""

    slot: int
    count: int
    slots: SharedSlots
    rate: SharedWindowCounter
    generations: Generations       # what changed (tokens, users, rules): store/changes.py
    circuits: CircuitTable

    @property
    def leader(self) -> bool:
        """Worker 0 runs what must run once per server (retention purge, metrics listener)."""
        return self.slot == 0

    def journal_dir(self, data_dir: Path) -> Path:
        """Each worker appends to a journal of its own (the leader's is the single-process one)."""
        return data_dir / "journal" if self.leader else data_dir / "journal" / f"worker-{self.slot}"


def event_loop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when wanted and installed; None: asyncio's default.

    The AI Bridge Proxy needs asyncio's own loop: it hands TLS transports made by ``start_tls`` to
    aiohttp, which keeps weak references to them, and uvloop's TLS transports cannot be weakly
    referenced. With the proxy enabled the server runs on asyncio's loop.
    """
    if not settings.uvloop:
        return None
    if settings.aibridge_proxy_enabled:
        log.info("the AI Bridge Proxy is enabled: running on asyncio's event loop instead of uvloop")
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def listen_sockets(address: str, count: int, backlog: int) -> list[socket.socket]:
    """One listening socket per worker on ``address`` (SO_REUSEPORT), or one shared by all."""
    host, port = address.rsplit(":", 1)
    reuse_port = hasattr(socket, "SO_REUSEPORT")
    sockets: list[socket.socket] = []
    try:
        for _ in range(count if reuse_port else 1):
            info = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM,
                                      flags=socket.AI_PASSIVE)[0]
            sock = socket.socket(info[0], socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sockets.append(sock)
            sock.bind(info[4])
            sock.listen(effective_backlog(backlog))
            port = str(sock.getsockname()[1])      # port 0: the others join the one the first got
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise SystemExit(f"error: --http-address: cannot listen on {address}: {exc.strerror}") from None
    return sockets


@dataclass
class _Slot:
    worker: Worker
    sock: socket.socket
    process: BaseProcess | None = None
    started: float = 0.0
    fast_deaths: int = 0
    restart_at: float | None = None


@dataclass
class Supervisor:
    """Starts ``count`` workers running ``target(worker, sock)``, replaces dead ones, stops them all."""

    settings: Settings
    target: Callable[[Worker, socket.socket], None]
    sockets: list[socket.socket]
    metrics_dir: str | None = None
    slots: list[_Slot] = field(default_factory=list)
    stopping: bool = False

    def run(self) -> int:
        count = self.settings.workers
        shared_slots, shared_rate = SharedSlots(count), SharedWindowCounter()
        generations, circuits = Generations(), CircuitTable()
        self.slots = [_Slot(Worker(i, count, shared_slots, shared_rate, generations, circuits),
                            self.sockets[i % len(self.sockets)]) for i in range(count)]
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        old_wakeup = signal.set_wakeup_fd(wake_w)
        old_handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        status = 0
        try:
            for slot in self.slots:
                self._start(slot)
            status = self._watch(wake_r)
        finally:
            stopped = self._stop_all()
            status = status or stopped
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            os.close(wake_r)
            os.close(wake_w)
        return status

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self.stopping:
            log.info("%s: stopping %d workers (finishing in-flight requests, grace %gs)",
                     signal.Signals(signum).name, len(self.slots), self.settings.shutdown_grace)
        self.stopping = True

    def _start(self, slot: _Slot) -> None:
        slot.worker.slots.forget(slot.worker.slot)
        others = [sock for sock in self.sockets if sock is not slot.sock]
        process = _CTX.Process(target=_worker_entry, args=(self.target, slot.worker, slot.sock, others),
                               name=f"aibridge-worker-{slot.worker.slot}")
        process.start()
        slot.process, slot.started, slot.restart_at = process, time.monotonic(), None
        log.info("worker %d started (pid %d)", slot.worker.slot, process.pid)

    def _watch(self, wake_r: int) -> int:
        while not self.stopping:
            pending = [s.restart_at for s in self.slots if s.restart_at is not None]
            timeout = max(0.0, min(pending) - time.monotonic()) if pending else 5.0
            sentinels = [s.process.sentinel for s in self.slots if s.process is not None]
            multiprocessing.connection.wait([*sentinels, wake_r], timeout)
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 512)
            if self.stopping:
                break
            for slot in self.slots:
                status = self._check(slot)
                if status is not None:
                    return status
        return 0

    def _check(self, slot: _Slot) -> int | None:
        """Notice a dead worker and schedule or do its restart; a status when the server must stop."""
        process = slot.process
        if process is not None and not process.is_alive():
            process.join()
            slot.process = None
            self._forget(slot, process)
            if process.exitcode == EXIT_CONFIG:
                log.error("worker %d (pid %s) could not start (exit status 2); stopping the server",
                          slot.worker.slot, process.pid)
                return EXIT_CONFIG
            lived = time.monotonic() - slot.started
            slot.fast_deaths = slot.fast_deaths + 1 if lived < FAST_DEATH else 0
            pause = min(MAX_PAUSE, 0.5 * 2 ** (slot.fast_deaths - 1)) if slot.fast_deaths else 0.0
            log.warning("worker %d (pid %s) died (%s) after %.0fs; restarting it%s", slot.worker.slot, process.pid,
                        _describe_exit(process.exitcode), lived, f" in {pause:g}s" if pause else "")
            slot.restart_at = time.monotonic() + pause
        if slot.process is None and slot.restart_at is not None and time.monotonic() >= slot.restart_at:
            self._start(slot)
        return None

    def _forget(self, slot: _Slot, process: BaseProcess) -> None:
        slot.worker.slots.forget(slot.worker.slot)
        if process.pid is not None:
            worker_exited(process.pid)

    def _stop_all(self) -> int:
        for sock in self.sockets:         # new connections now go to the workers' own copies only
            sock.close()
        running = [s for s in self.slots if s.process is not None and s.process.is_alive()]
        for slot in running:
            assert slot.process is not None and slot.process.pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace + STOP_MARGIN
        status = 0
        for slot in running:
            assert slot.process is not None
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                log.error("worker %d (pid %s) did not stop in time; killing it", slot.worker.slot, slot.process.pid)
                slot.process.kill()
                slot.process.join(5)
                status = 1
            self._forget(slot, slot.process)
        if self.metrics_dir:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        log.info("stopped")
        return status


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit status {code}"


def _worker_entry(target: Callable[[Worker, socket.socket], None], worker: Worker, sock: socket.socket,
                  others: list[socket.socket]) -> None:
    """First thing in a forked worker: the supervisor's signal handling is not ours, nor are the
    other workers' sockets (a copy kept open here would keep a stopped worker's queue listening)."""
    for other in others:
        other.close()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    worker.slots.slot = worker.slot
    try:
        target(worker, sock)
    except SystemExit as exc:
        if isinstance(exc.code, str):       # a clean one-line error (e.g. the metrics address is taken)
            print(exc.code, file=sys.stderr, flush=True)
            sys.exit(EXIT_CONFIG)
        raise


def metrics_directory(settings: Settings) -> str | None:
    """Multiprocess metrics: a fresh directory, set before any worker builds its metrics."""
    if not settings.prometheus_enable:
        return None
    directory = tempfile.mkdtemp(prefix="aibridge-metrics-")
    enable_multiprocess(directory)
    return directory
