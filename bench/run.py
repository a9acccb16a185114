"""The bridge next to a bare aiohttp pass-through: CPU per request, latency, time to first byte.

    python -m bench.run [--requests N] [--rounds R] [--quick] [--json PATH] [--py-spy]

Starts, all on 127.0.0.1 free ports: the fake upstream (``tests.fakes.upstream``, scenario
``bench``), the bridge (``python -m aibridge server``: auth, recording on SQLite in a temp data
dir, default logging) and the bare pass-through (``bench.passthrough``). A load generator written
with aiohttp runs in this process. For each workload (a ~1 KB blocking chat completion, a
50-event chat stream) and concurrency (1, 64) the targets run in interleaved batches, rounds
alternating the order (bridge, bare, direct / direct, bare, bridge …): the proxy process's CPU
(utime + stime from /proc/<pid>/stat, all threads, including the SQLite writer's) over a batch
divided by its requests, p50/p99 latency, and for streams the p50 time to the first body byte.
Figures are medians over rounds; the ratio is the median of the per-round bridge/bare ratios.
"direct" is the client talking to the fake upstream itself (latency reference only).

At the end, the bridge's records are counted through the export API: every request the bridge
answered must be there, or the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
OPENAI_KEY = "sk-openai-central"
ANTHROPIC_KEY = "sk-ant-central"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
REQUEST_TIMEOUT = 30.0
SETTLE = 0.15            # after a batch, before reading CPU: lets the process finish what it does
# A bridge's recorder writes a batch's last records up to 0.2 s (its linger) after the answers: the
# batch waits for them (its /healthz shows nothing pending), up to this long, so that the writer
# neither escapes the bridge's CPU figure nor runs on the proxies' CPU during the next target's batch.
RECORDER_SETTLE_TIMEOUT = 10.0
CONCURRENCIES = (1, 64)

PROMPT = "Write one short paragraph for the benchmark; nothing else."
CHAT_MESSAGES = [{"role": "system", "content": "You are a concise assistant."},
                 {"role": "user", "content": PROMPT}]


@dataclass(frozen=True)
class Workload:
    name: str
    provider: str        # "openai" | "anthropic"
    path: str            # upstream path, e.g. /v1/chat/completions
    body: bytes
    stream: bool
    # The workload whose upstream answer the bridge relays, when it changes the request: without
    # include_usage the bridge asks for usage, and relays the stream with its usage chunk.
    bridge_relays: str = ""


def _chat(stream: bool, include_usage: bool = False) -> bytes:
    body: dict[str, Any] = {"model": "gpt-4.1-scenario-bench", "messages": CHAT_MESSAGES}
    if stream:
        body["stream"] = True
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


def _messages(stream: bool) -> bytes:
    return orjson.dumps({"model": "claude-sonnet-4-5-scenario-bench", "max_tokens": 1024, "stream": stream,
                         "messages": [{"role": "user", "content": PROMPT}]})


def _responses(stream: bool) -> bytes:
    return orjson.dumps({"model": "gpt-4.1-scenario-bench", "input": PROMPT, "stream": stream})


WORKLOADS = {w.name: w for w in (
    Workload("chat blocking", "openai", "/v1/chat/completions", _chat(False), False),
    # The client asks for include_usage: the bridge forwards the body as received and the
    # upstream sends the same bytes to both proxies.
    Workload("chat stream", "openai", "/v1/chat/completions", _chat(True, include_usage=True), True),
    # The client does not: the bridge adds stream_options.include_usage (re-encoding the body).
    Workload("chat stream -usage", "openai", "/v1/chat/completions", _chat(True), True,
             bridge_relays="chat stream"),
    Workload("messages blocking", "anthropic", "/v1/messages", _messages(False), False),
    Workload("messages stream", "anthropic", "/v1/messages", _messages(True), True),
    Workload("responses blocking", "openai", "/v1/responses", _responses(False), False),
    Workload("responses stream", "openai", "/v1/responses", _responses(True), True),
)}
ALL_WORKLOADS = tuple(WORKLOADS)
QUICK_WORKLOADS = ("chat blocking", "chat stream", "chat stream -usage")
LITELLM_WORKLOADS = ("chat blocking", "chat stream", "chat stream -usage")


# ---------------------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CODER_", "OTEL_", "AWS_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class CPU:
    user: float       # seconds
    sys: float
    switches: int     # context switches of the live threads (voluntary + involuntary)

    def __sub__(self, other: CPU) -> CPU:
        return CPU(self.user - other.user, self.sys - other.sys, self.switches - other.switches)


def descendants(pid: int) -> list[int]:
    """The live processes under ``pid`` (workers, helpers), depth first."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as fh:
                for child in fh.read().split():
                    found += [int(child), *descendants(int(child))]
    return found


def _one_process(pid: int) -> CPU:
    """utime + stime of one process (every thread, live or exited), the CPU of its children that
    ended and were waited for, and the context switches of its live threads."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rpartition(b")")[2].split()
    switches = 0
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/status") as fh:
                for line in fh:
                    if "ctxt_switches:" in line:        # voluntary_… and nonvoluntary_…
                        switches += int(line.split()[1])
    user, system = int(fields[11]) + int(fields[13]), int(fields[12]) + int(fields[14])
    return CPU(user / CLK_TCK, system / CLK_TCK, switches)


def cpu_sample(pid: int) -> CPU:
    """The CPU of the whole process tree under ``pid``: any worker or helper process counts."""
    total = _one_process(pid)
    for child in descendants(pid):
        with contextlib.suppress(OSError):
            part = _one_process(child)
            total = CPU(total.user + part.user, total.sys + part.sys, total.switches + part.switches)
    return total


def pin(pid: int, cpus: set[int]) -> None:
    """Pin ``pid`` and its threads (and so the processes it forks later) to ``cpus``."""
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task), cpus)


def cpu_split() -> tuple[set[int], set[int]]:
    """(the proxies' core, everything else's): the proxies get the last usable CPU to themselves."""
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return set(usable), set(usable)
    return {usable[-1]}, set(usable[:-1])


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Proc:
    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str], log_dir: Path,
                 ready_line: bool = False) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(args, env=dict(env), cwd=ROOT, stderr=self._log,
                                     stdout=subprocess.PIPE if ready_line else self._log)
        self.pid = self.proc.pid

    def read_ready_port(self, timeout: float = START_TIMEOUT) -> int:
        """Wait for ``READY <port>`` on stdout."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                data = os.read(self.proc.stdout.fileno(), 4096)
                buf += data
                if m := re.search(rb"READY (\d+)", buf):
                    return int(m.group(1))
        raise RuntimeError(f"{self.name} did not print READY within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def cpu(self) -> CPU:
        return cpu_sample(self.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


@dataclass
class Target:
    name: str
    base: str                 # URL prefix the workload path is appended to
    headers: dict[str, dict[str, str]]  # per provider
    proc: Proc | None         # whose CPU is measured (None: not measured)
    is_bridge: bool = False
    exact: bool = True        # answers are the upstream's bytes (LiteLLM re-encodes: only the status is checked)

    def url(self, w: Workload) -> str:
        if self.is_bridge:
            return f"{self.base}/api/v2/aibridge/{w.provider}{w.path}"
        return self.base + w.path


def central_headers() -> dict[str, dict[str, str]]:
    return {"openai": {"Authorization": f"Bearer {OPENAI_KEY}"},
            "anthropic": {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}}


class Bridge:
    """One ``aibridge server`` with its own data dir (SQLite), user and token."""

    def __init__(self, name: str, ablate: str, work_dir: Path, upstream_url: str, workers: str = "1",
                 src: Path | None = None) -> None:
        self.name = name
        self.src = src                # another checkout's src/ (--baseline); None: this one
        self.workers = workers        # CODER_AIBRIDGE_WORKERS (bench.scaling varies it)
        self.ablate = ablate          # bench.ablate_server's AIBRIDGE_BENCH_ABLATE; "" = the real thing
        self.data_dir = work_dir / f"data-{name}"
        self.log_dir = work_dir
        self.url = f"http://127.0.0.1:{free_port()}"
        self.upstream_url = upstream_url
        self.proc: Proc | None = None
        self.token = ""

    @property
    def records(self) -> bool:
        """Whether every answered request must show up in the export."""
        return not {"record", "dbwrite"} & set(self.ablate.split(","))

    def env(self) -> dict[str, str]:
        up = self.upstream_url
        env = {"CODER_AIBRIDGE_DATA_DIR": str(self.data_dir),
               "CODER_HTTP_ADDRESS": self.url.removeprefix("http://"),
               "CODER_AIBRIDGE_ENABLED": "true", "CODER_AIBRIDGE_WORKERS": self.workers,
               "CODER_AIBRIDGE_OPENAI_KEY": OPENAI_KEY, "CODER_AIBRIDGE_OPENAI_BASE_URL": f"{up}/v1/",
               "CODER_AIBRIDGE_ANTHROPIC_KEY": ANTHROPIC_KEY, "CODER_AIBRIDGE_ANTHROPIC_BASE_URL": f"{up}/"}
        if self.ablate:
            env["AIBRIDGE_BENCH_ABLATE"] = self.ablate
        if self.src is not None:        # ahead of the installed (editable) aibridge
            env["PYTHONPATH"] = os.pathsep.join([str(self.src), str(ROOT)])
        return child_env(env)

    def start(self) -> Proc:
        module = "bench.ablate_server" if self.ablate else "aibridge"
        self.proc = Proc(self.name, [sys.executable, "-m", module, "server"], self.env(), self.log_dir)
        return self.proc

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "aibridge", *args], env=self.env(), cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"aibridge {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    async def wait_healthy(self, session: aiohttp.ClientSession) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.proc.returncode}:\n{self.proc.output()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(self.url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become healthy:\n{self.proc.output()}")

    def create_user(self) -> None:
        self.cli("users", "create", "bench", "--role", "member")
        self.token = self.cli("tokens", "create", "bench")

    def target(self) -> Target:
        own = {"openai": {"Authorization": f"Bearer {self.token}"},
               "anthropic": {"x-api-key": self.token, "anthropic-version": "2023-06-01"}}
        return Target(self.name, self.url, own, self.proc, is_bridge=True)


class LiteLLM:
    """The LiteLLM proxy (``litellm[proxy]`` in its own venv, not a project dependency): one worker, no
    database, the bench models routed to the fake upstream. Serves the chat workloads only."""

    MASTER_KEY = "sk-litellm-bench"

    def __init__(self, venv: str, work_dir: Path, upstream_url: str) -> None:
        self.exe = str(Path(venv) / "bin" / "litellm")
        self.work_dir = work_dir
        self.url = f"http://127.0.0.1:{free_port()}"
        self.upstream_url = upstream_url
        self.proc: Proc | None = None

    def start(self) -> Proc:
        config = self.work_dir / "litellm.yaml"
        config.write_text(orjson.dumps({
            "model_list": [{"model_name": "gpt-4.1-scenario-bench",
                            "litellm_params": {"model": "openai/gpt-4.1-scenario-bench",
                                               "api_base": f"{self.upstream_url}/v1", "api_key": OPENAI_KEY}}],
            "general_settings": {"master_key": self.MASTER_KEY},
            "litellm_settings": {"drop_params": True, "telemetry": False}}).decode())   # JSON is YAML
        port = self.url.rsplit(":", 1)[1]
        env = child_env({"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "DISABLE_SCHEMA_UPDATE": "true",
                         "LITELLM_LOCAL_MODEL_COST_MAP": "True"})   # offline: no cost-map download
        env.pop("DATABASE_URL", None)
        self.proc = Proc("litellm", [self.exe, "--config", str(config), "--host", "127.0.0.1", "--port", port,
                                     "--num_workers", "1"], env, self.work_dir)
        return self.proc

    async def wait_healthy(self, session: aiohttp.ClientSession, timeout: float = 180.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.proc.poll() is not None:
                raise RuntimeError(f"litellm exited with {self.proc.proc.returncode}:\n{self.proc.output()[-3000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(self.url + "/health/liveliness") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.5)
        raise RuntimeError(f"litellm did not become healthy:\n{self.proc.output()[-3000:]}")

    def target(self) -> Target:
        headers = {"openai": {"Authorization": f"Bearer {self.MASTER_KEY}"}}
        return Target("litellm", self.url, headers, self.proc, exact=False)


class Stack:
    """The fake upstream, the bridge(s) and the bare pass-through; stop() ends them all."""

    def __init__(self, keep: bool, pinned: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="aibridge-bench-"))
        self.keep = keep
        # pinned: each proxy gets the last CPU, the fake upstream and the load generator the others.
        self.proxy_cpus, self.other_cpus = cpu_split() if pinned else (set(), set())
        self.procs: list[Proc] = []
        self.bridges: dict[str, Bridge] = {}
        self.upstream_url = self.bare_url = ""
        self.bare: Proc | None = None
        self.litellm: LiteLLM | None = None
        self.worktree: Path | None = None

    async def start(self, variants: Mapping[str, str], litellm_venv: str = "", baseline: str = "") -> None:
        py = sys.executable
        upstream = Proc("upstream", [py, "-m", "tests.fakes.upstream", "--port", "0"], child_env(),
                        self.dir, ready_line=True)
        self.procs.append(upstream)
        self._pin(upstream, self.other_cpus)
        self._pin(None, self.other_cpus)
        self.upstream_url = f"http://127.0.0.1:{upstream.read_ready_port()}"
        self.bare = Proc("bare", [py, "-m", "bench.passthrough", "--port", "0", "--upstream", self.upstream_url],
                         child_env(), self.dir, ready_line=True)
        self.procs.append(self.bare)
        self._pin(self.bare, self.proxy_cpus)
        self.bare_url = f"http://127.0.0.1:{self.bare.read_ready_port()}"
        for name, ablate in {"bridge": "", **variants}.items():
            self.bridges[name] = Bridge(name, ablate, self.dir, self.upstream_url)
        if baseline:
            self.bridges["base"] = Bridge("base", "", self.dir, self.upstream_url, src=self._worktree(baseline) / "src")
        for bridge in self.bridges.values():
            self.procs.append(bridge.start())
            self._pin(bridge.proc, self.proxy_cpus)
        if litellm_venv:
            self.litellm = LiteLLM(litellm_venv, self.dir, self.upstream_url)
            self.procs.append(self.litellm.start())
            self._pin(self.litellm.proc, self.proxy_cpus)
        async with aiohttp.ClientSession() as session:
            for bridge in self.bridges.values():
                await bridge.wait_healthy(session)
            if self.litellm is not None:
                await self.litellm.wait_healthy(session)
        for bridge in self.bridges.values():
            bridge.create_user()

    def _worktree(self, ref: str) -> Path:
        """A detached checkout of ``ref`` in the work dir (removed by ``stop``)."""
        path = self.dir / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), ref],
                       check=True, capture_output=True, timeout=120)
        self.worktree = path
        return path

    @staticmethod
    def _pin(proc: Proc | None, cpus: set[int]) -> None:
        """Right after the start, before the process forks workers or starts threads."""
        if cpus:
            pin(proc.pid if proc else os.getpid(), cpus)

    def pinning(self) -> str:
        if not self.proxy_cpus:
            return "not pinned"
        return (f"each proxy pinned to CPU {','.join(map(str, sorted(self.proxy_cpus)))}; the fake upstream and "
                f"the load generator to CPU {','.join(map(str, sorted(self.other_cpus)))}")

    @property
    def bridge(self) -> Bridge:
        return self.bridges["bridge"]

    def targets(self) -> dict[str, Target]:
        targets = {name: bridge.target() for name, bridge in self.bridges.items()}
        targets["bare"] = Target("bare", self.bare_url, central_headers(), self.bare)
        targets["direct"] = Target("direct", self.upstream_url, central_headers(), None)
        if self.litellm is not None:
            targets["litellm"] = self.litellm.target()
        return targets

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()
        if self.worktree is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(self.worktree)],
                           check=False, capture_output=True, timeout=120)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------
# Load generator
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Batch:
    workload: str
    target: str
    concurrency: int
    requests: int
    cpu_us: float | None       # proxy CPU per request (user + sys)
    sys_us: float | None       # of which in the kernel
    switches: float | None     # context switches per request
    latencies: list[float]     # seconds
    ttfbs: list[float]
    wall: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.wall if self.wall else 0.0


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


class LoadGen:
    def __init__(self, session: aiohttp.ClientSession, expected: dict[str, int]) -> None:
        self.session = session
        self.expected = expected       # workload → body length, learned from the upstream itself
        self.first_error = ""
        self.sent: dict[str, int] = {}  # target → requests sent

    async def one(self, url: str, headers: Mapping[str, str], w: Workload) -> tuple[float, float, int, int]:
        t0 = time.perf_counter()
        async with self.session.post(url, data=w.body, headers=headers) as resp:
            if w.stream:
                first = await resp.content.readany()
                t1 = time.perf_counter()
                size = len(first)
                async for chunk in resp.content.iter_any():
                    size += len(chunk)
            else:
                size = len(await resp.read())
                t1 = time.perf_counter()
            status = resp.status
        return time.perf_counter() - t0, t1 - t0, size, status

    async def batch(self, target: Target, w: Workload, n: int, concurrency: int) -> Batch:
        url, headers = target.url(w), {"Content-Type": "application/json", **target.headers[w.provider]}
        latencies: list[float] = []
        ttfbs: list[float] = []
        errors = 0
        left = n

        async def worker() -> None:
            nonlocal left, errors
            while left > 0:
                left -= 1
                try:
                    latency, ttfb, size, status = await self.one(url, headers, w)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors += 1
                    self.first_error = self.first_error or f"{target.name} {w.name}: {exc!r}"
                    continue
                expected = self.expected.get(w.bridge_relays if target.is_bridge and w.bridge_relays
                                             else w.name) if target.exact else None
                if status != 200 or (expected is not None and size != expected):
                    errors += 1
                    self.first_error = self.first_error or (
                        f"{target.name} {w.name}: status {status}, {size} bytes (expected {expected})")
                    continue
                latencies.append(latency)
                ttfbs.append(ttfb)

        proc = target.proc
        cpu0 = proc.cpu() if proc else None
        t0 = time.perf_counter()
        async with asyncio.timeout(max(60.0, n * 0.1)):
            await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))
        wall = time.perf_counter() - t0
        self.sent[target.name] = self.sent.get(target.name, 0) + n
        cpu_us = sys_us = switches = None
        if proc and cpu0:
            await asyncio.sleep(SETTLE)
            if target.is_bridge:
                await self.recorder_settled(target)
            used = proc.cpu() - cpu0
            cpu_us, sys_us = (used.user + used.sys) / n * 1e6, used.sys / n * 1e6
            # Threads that ended during the batch take their counts with them: then it is unknown.
            switches = used.switches / n if used.switches >= 0 else None
        return Batch(w.name, target.name, concurrency, n, cpu_us, sys_us, switches, latencies,
                     ttfbs if w.stream else [], wall, errors)


    async def recorder_settled(self, target: Target) -> None:
        deadline = time.monotonic() + RECORDER_SETTLE_TIMEOUT
        while time.monotonic() < deadline:
            async with self.session.get(f"{target.base}/healthz") as resp:
                recording = (await resp.json()).get("recording") or {}
            if not recording.get("pending"):
                return
            await asyncio.sleep(0.02)


async def learn_sizes(session: aiohttp.ClientSession, direct: Target) -> dict[str, int]:
    sizes = {}
    for name, w in WORKLOADS.items():
        async with session.post(direct.url(w), data=w.body,
                                headers={"Content-Type": "application/json", **direct.headers[w.provider]}) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"fake upstream answered {resp.status} for {name}: {body[:300]!r}")
            sizes[name] = len(body)
            if w.stream:
                events = body.count(b"\n\n")
                print(f"  {name}: {len(body)} bytes, {events} SSE events")
            else:
                print(f"  {name}: {len(body)} bytes")
    return sizes


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Cell:
    batches: list[Batch] = field(default_factory=list)

    def med(self, fn: Any) -> float:
        values = [v for b in self.batches if (v := fn(b)) is not None and v == v]
        return statistics.median(values) if values else float("nan")

    @property
    def cpu(self) -> float:
        return self.med(lambda b: b.cpu_us)

    @property
    def sys(self) -> float:
        return self.med(lambda b: b.sys_us)

    @property
    def switches(self) -> float:
        return self.med(lambda b: b.switches)

    @property
    def p50(self) -> float:
        return self.med(lambda b: pct(b.latencies, 50) * 1e3)

    @property
    def p99(self) -> float:
        return self.med(lambda b: pct(b.latencies, 99) * 1e3)

    @property
    def ttfb(self) -> float:
        return self.med(lambda b: pct(b.ttfbs, 50) * 1e3 if b.ttfbs else None)

    @property
    def rps(self) -> float:
        return self.med(lambda b: b.rps)

    @property
    def errors(self) -> int:
        return sum(b.errors for b in self.batches)


def fmt(value: float | None, spec: str = ".0f") -> str:
    if value is None or value != value:
        return "-"
    return format(value, spec)


def ratio_of_rounds(a: Cell, b: Cell, fn: Any) -> float:
    ratios = [fn(x) / fn(y) for x, y in zip(a.batches, b.batches, strict=False) if fn(y)]
    return statistics.median(ratios) if ratios else float("nan")


def delta_of_rounds(a: Cell, b: Cell, fn: Any) -> float:
    deltas = [fn(x) - fn(y) for x, y in zip(a.batches, b.batches, strict=False)]
    return statistics.median(deltas) if deltas else float("nan")


def report(cells: dict[tuple[str, int, str], Cell], workloads: Sequence[str],
           targets: Sequence[str]) -> tuple[str, list[dict[str, Any]]]:
    width = max(7, *(len(t) for t in targets)) + 1
    lines = []
    rows: list[dict[str, Any]] = []
    head = (f"{'workload':<17}{'conc':>5}  {'target':<{width}}{'CPU µs/req':>11}{'(sys)':>7}{'ctxsw/req':>10}"
            f"{'p50 ms':>9}{'p99 ms':>9}{'TTFB p50 ms':>13}{'req/s':>8}{'rounds':>8}")
    lines += [head, "-" * len(head)]
    for name in workloads:
        for conc in CONCURRENCIES:
            present = [t for t in targets if (name, conc, t) in cells]
            if not present:
                continue
            for t in present:
                c = cells[(name, conc, t)]
                lines.append(f"{name:<17}{conc:>5}  {t:<{width}}{fmt(c.cpu):>11}{fmt(c.sys):>7}"
                             f"{fmt(c.switches, '.1f'):>10}{fmt(c.p50, '.2f'):>9}"
                             f"{fmt(c.p99, '.2f'):>9}{fmt(c.ttfb, '.2f'):>13}{fmt(c.rps):>8}{len(c.batches):>8}"
                             + (f"  ERRORS {c.errors}" if c.errors else ""))
                rows.append({"workload": name, "concurrency": conc, "target": t, "cpu_us_per_req": c.cpu,
                             "sys_us_per_req": c.sys, "context_switches_per_req": c.switches,
                             "p50_ms": c.p50, "p99_ms": c.p99, "ttfb_p50_ms": c.ttfb, "req_per_s": c.rps,
                             "rounds": len(c.batches), "errors": c.errors})
            if "bare" not in present:
                continue
            ba = cells[(name, conc, "bare")]
            for t in present:
                if t in ("bare", "direct"):
                    continue
                br = cells[(name, conc, t)]
                cpu_ratio = ratio_of_rounds(br, ba, lambda b: b.cpu_us)
                p50_ratio = ratio_of_rounds(br, ba, lambda b: pct(b.latencies, 50))
                added = {q: delta_of_rounds(br, ba, lambda b, q=q: pct(b.latencies, q) * 1e3) for q in (50, 99)}
                extra = f", added p50 {added[50]:+.2f} ms, p99 {added[99]:+.2f} ms"
                if WORKLOADS[name].stream:
                    extra += f", TTFB {br.ttfb - ba.ttfb:+.2f} ms vs bare"
                    if (name, conc, "direct") in cells:
                        extra += f", {br.ttfb - cells[(name, conc, 'direct')].ttfb:+.2f} ms vs direct"
                if t == "bridge":
                    verdict = " (ok)" if cpu_ratio <= 1.3 else " (ABOVE the 1.3x target)"
                elif (name, conc, "bridge") in cells:
                    saved = ratio_of_rounds(cells[(name, conc, "bridge")], br, lambda b: b.cpu_us)
                    delta = cells[(name, conc, "bridge")].cpu - br.cpu
                    verdict = f"; bridge/{t}: {fmt(saved, '.2f')}x, ≈{delta:.0f} µs"
                else:
                    verdict = ""
                lines.append(f"{'':<24}{t}/bare: CPU {fmt(cpu_ratio, '.2f')}x{verdict}, p50 {fmt(p50_ratio, '.2f')}x"
                             f"{extra}")
                rows.append({"workload": name, "concurrency": conc, "target": t, "ratio_cpu_vs_bare": cpu_ratio,
                             "ratio_p50_vs_bare": p50_ratio, "added_p50_ms": added[50], "added_p99_ms": added[99],
                             "ttfb_delta_ms_vs_bare": br.ttfb - ba.ttfb if WORKLOADS[name].stream else None})
        lines.append("")
    return "\n".join(lines), rows


# ---------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------


async def export_count(session: aiohttp.ClientSession, bridge: Bridge) -> tuple[int, dict[str, Any] | None]:
    async with session.get(f"{bridge.url}/api/v2/aibridge/interceptions", params={"limit": "1"},
                           headers={"Authorization": f"Bearer {bridge.token}"}) as resp:
        doc = await resp.json(loads=orjson.loads)
        if resp.status != 200:
            raise RuntimeError(f"export answered {resp.status}: {doc}")
        return int(doc["count"]), (doc["results"][0] if doc["results"] else None)


async def wait_records(session: aiohttp.ClientSession, bridge: Bridge, expected: int,
                       timeout: float = 30.0) -> tuple[int, dict[str, Any] | None]:
    deadline = time.monotonic() + timeout
    count, sample = await export_count(session, bridge)
    while count < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        count, sample = await export_count(session, bridge)
    return count, sample


async def py_spy(gen: LoadGen, target: Target, w: Workload, n: int, out: Path) -> None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        print("py-spy not found (pip install py-spy); skipping the profile")
        return
    assert target.proc is not None
    # Not --nonblocking: py-spy pauses the process per sample (slower, but consistent stacks).
    spy = subprocess.Popen([exe, "record", "--pid", str(target.proc.pid), "--rate", "1000", "--format", "raw",
                            "--threads", "--output", str(out), "--duration", "600"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        await asyncio.sleep(1.5)       # py-spy attaching
        await gen.batch(target, w, n, 64)
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)
    print(f"py-spy profile of {target.name} ({w.name}, {n} requests at c=64): {out}")
    print(f"  summary: {sys.executable} -m bench.profile_report {out}")


def parse_variants(specs: Sequence[str]) -> dict[str, str]:
    from bench.ablate_server import ABLATIONS
    variants: dict[str, str] = {}
    for spec in specs:
        name, sep, ablate = spec.partition("=")
        if not sep:
            name, ablate = "no-" + spec.replace(",", "-"), spec
        parts = [a.strip() for a in ablate.split(",") if a.strip()]
        if not parts or set(parts) - set(ABLATIONS) or name in ("bridge", "bare", "direct"):
            raise SystemExit(f"--variant {spec!r}: NAME=ABLATION[,ABLATION…], ablations: {', '.join(ABLATIONS)}")
        variants[name] = ",".join(parts)
    return variants


async def run(args: argparse.Namespace) -> int:
    variants = parse_variants(args.variant)
    stack = Stack(keep=args.keep, pinned=not args.no_pin)
    main_task = asyncio.current_task()
    assert main_task is not None
    # Ctrl-C cancels this task (asyncio.run does that); SIGTERM too, so the finally below always runs.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    try:
        several = "s" if variants or args.baseline else ""
        print(f"starting the fake upstream, the bridge{several} and the bare pass-through (work dir {stack.dir}) …")
        await stack.start(variants, args.litellm, args.baseline)
        targets = stack.targets()
        order_names = [*stack.bridges, "bare", "direct", *(["litellm"] if args.litellm else [])]
        print(f"  upstream {stack.upstream_url}, bare {stack.bare_url} (pid {stack.bare.pid}), "  # type: ignore[union-attr]
              + ", ".join(f"{b.name} {b.url} (pid {b.proc.pid}{', ablated: ' + b.ablate if b.ablate else ''})"  # type: ignore[union-attr]
                          for b in stack.bridges.values()))
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)) as session:
            print("answers of the fake upstream (scenario bench):")
            gen = LoadGen(session, await learn_sizes(session, targets["direct"]))

            workloads = args.workload or (QUICK_WORKLOADS if args.quick and not args.all else ALL_WORKLOADS)

            def runs(t: str, name: str) -> bool:
                return t != "litellm" or name in LITELLM_WORKLOADS

            print(f"warming up ({args.warmup} requests per target and workload) …")
            for name in workloads:
                for t in order_names:
                    if runs(t, name):
                        await gen.batch(targets[t], WORKLOADS[name], args.warmup, 16)
            if gen.first_error:
                raise RuntimeError(f"warm-up failed: {gen.first_error}")

            cells: dict[tuple[str, int, str], Cell] = {}
            n_for = {1: max(20, args.requests // 2), 64: args.requests}
            started = time.monotonic()
            for rnd in range(0 if args.profile_only else args.rounds):
                order = order_names if rnd % 2 == 0 else order_names[::-1]
                for name in workloads:
                    for conc in args.concurrency or CONCURRENCIES:
                        for t in order:
                            if runs(t, name):
                                b = await gen.batch(targets[t], WORKLOADS[name], n_for[conc], conc)
                                cells.setdefault((name, conc, t), Cell()).batches.append(b)
                print(f"  round {rnd + 1}/{args.rounds} done ({time.monotonic() - started:.0f} s)")

            if args.py_spy or args.profile_only:
                for name in ("chat blocking", "chat stream"):
                    for t in (*stack.bridges, "bare"):
                        out = Path(args.py_spy_dir) / f"py-spy-{t}-{name.replace(' ', '-')}.txt"
                        await py_spy(gen, targets[t], WORKLOADS[name], args.requests * 2, out)

            recorded = {}
            for bridge in stack.bridges.values():
                expected = gen.sent.get(bridge.name, 0)
                count, sample = await wait_records(session, bridge, expected if bridge.records else 0)
                recorded[bridge.name] = (count, expected, sample)

        if not args.profile_only:
            table, rows = report(cells, workloads, order_names)
            print()
            print(f"CPU = utime+stime of the proxy's whole process tree (all threads and processes) per request, "
                  f"median of {args.rounds} rounds of {n_for[1]} requests at c=1 and {n_for[64]} at c=64; the ratio "
                  "is the median of the per-round ratios; latency and TTFB (first body byte) measured by the "
                  f"aiohttp client; {stack.pinning()}.")
            print()
            print(table)
        else:
            rows = []
        ok = not gen.first_error
        for name, (count, expected, sample) in recorded.items():
            bridge = stack.bridges[name]
            if bridge.records:
                usage = sample["token_usages"] if sample else []
                prompts = sample["user_prompts"] if sample else []
                print(f"{name} records: export API count {count} of {expected} requests it answered "
                      f"(newest: {len(usage)} token usage row(s), {len(prompts)} prompt(s))")
                ok = ok and count == expected and bool(usage) and bool(prompts)
            else:
                print(f"{name} records: {count} (recording ablated: {bridge.ablate})")
            warnings = [line for line in bridge.proc.output().splitlines()  # type: ignore[union-attr]
                        if " WARN" in line or " ERROR" in line]
            if warnings:
                print(f"{name} log: {len(warnings)} warning/error line(s), first: {warnings[0]}")
        print("RSS at the end: " + ", ".join(f"{b.name} {rss_mb(b.proc.pid):.0f} MB"  # type: ignore[union-attr]
                                             for b in stack.bridges.values())
              + f", bare {rss_mb(stack.bare.pid):.0f} MB")  # type: ignore[union-attr]
        if gen.first_error:
            print(f"first error: {gen.first_error}")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "args": vars(args), "variants": variants, "rows": rows,
                "recorded": {k: {"count": v[0], "expected": v[1]} for k, v in recorded.items()}}, indent=2))
        if not ok:
            print("FAILED: records missing or requests failed")
        return 0 if ok else 1
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000,
                        help="requests per batch at concurrency 64 (half that at concurrency 1); default 2000")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up requests per target and workload")
    parser.add_argument("--quick", action="store_true", help="a short run while developing (400 requests, 2 rounds)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=ABLATIONS",
                        help="also run a bridge with parts switched off (bench/ablate_server.py), e.g. "
                             "--variant no-rec=record --variant bare-ish=record,auth,client; repeatable")
    parser.add_argument("--py-spy", action="store_true",
                        help="after the measurements, record py-spy profiles of the bridge (and its variants) and of "
                             "the bare pass-through under load (c=64)")
    parser.add_argument("--profile-only", action="store_true",
                        help="skip the measurements: warm up, then only record the py-spy profiles")
    parser.add_argument("--py-spy-dir", default=".", help="where the py-spy profiles go (default: here)")
    parser.add_argument("--baseline", metavar="GIT_REF", default="",
                        help="also run the bridge as of this commit (e.g. HEAD~3), from a temporary git worktree, "
                             "as target 'base': what a change bought, measured side by side")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, SQLite databases)")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the proxies to one CPU (and the fake and load generator to the others)")
    parser.add_argument("--all", action="store_true", help="with --quick: every workload, not only the chat ones")
    parser.add_argument("--workload", action="append", choices=ALL_WORKLOADS, metavar="NAME",
                        help=f"only this workload (repeatable): {', '.join(ALL_WORKLOADS)}")
    parser.add_argument("--concurrency", action="append", type=int, choices=CONCURRENCIES,
                        help="only this concurrency (repeatable)")
    parser.add_argument("--litellm", default="", metavar="VENV",
                        help="also run the LiteLLM proxy from this virtualenv (pip install 'litellm[proxy]' there; "
                             "e.g. bench/.litellm-venv), on the chat workloads")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds, args.warmup = min(args.requests, 400), min(args.rounds, 2), min(args.warmup, 50)
    if args.requests < 1 or args.rounds < 1 or args.warmup < 1:
        parser.error("--requests, --rounds and --warmup must be at least 1")
    try:
        sys.exit(asyncio.run(run(args)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; processes stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
