"""Summarise a py-spy ``--format raw`` (collapsed stacks) profile: where the samples go.

    python -m bench.profile_report PROFILE.txt [--top 30] [--under FUNC] [--prefix aibridge/]

Prints, as a share of all samples: the functions with the most inclusive time (on the stack at
all), those with the most self time (top of the stack), and the project's own functions
(frames whose file starts with ``--prefix``) by inclusive time. ``--under FUNC`` keeps only the
samples that pass through a frame containing FUNC (e.g. ``intercept`` or ``Recorder._run``).

Samples of aiosqlite's worker thread waiting on its queue are idle time that py-spy cannot tell
from work (the wait is in C): they are dropped. The "where the time goes" view puts each sample in
the first bucket (in the order listed) that one of its frames matches.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*)(?::(?P<line>\d+))?\)$")


# (bucket, frame text that puts a sample in it); the first match wins.
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("recorder: background writer (SQLAlchemy + aiosqlite thread)",
     ("Recorder._run", "_connection_worker_thread")),
    ("auth (token → actor)", ("Authenticator.authenticate",)),
    ("recording addon (records built on the request path)", ("RecordingAddon.", "Recorder.submit")),
    ("metrics / tracing / logging addons", ("MetricsAddon.", "TracingAddon", "StructuredLogAddon")),
    ("client detection", ("detect_client",)),
    ("SSE decoding", ("SSEDecoder.",)),
    ("stream observer (API parsing of events)", ("Observer.feed", "Observer.finish", "_Observer")),
    ("reading the client's request body (aiohttp server)", ("BaseRequest.read",)),
    ("request body parse / request info", ("parse_body", "Api.request_info", "Api.prepare_upstream")),
    ("blocking answer parse / findings", ("blocking_findings",)),
    ("header filtering (forwardable/relayable)", ("forwardable_headers", "relayable_headers")),
    ("flow bookkeeping (uuid, Flow, addons)", ("uuid4", "Flow.__init__", "Addons.")),
    ("upstream client (aiohttp ClientSession)", ("HTTPProvider.send", "HTTPUpstreamResponse.", "aiohttp/client")),
    ("relay writes to the client (aiohttp server)", ("StreamResponse.write", "StreamResponse.prepare",
                                                     "StreamResponse.write_eof")),
    ("rest of the bridge handler", ("Bridge.handle", "intercept (aibridge")),
    ("aiohttp server + middlewares + event loop", ("",)),
)


def idle_frame() -> str:
    """aiosqlite's worker waiting on its queue: ``_connection_worker_thread (aiosqlite/core.py:LINE)``."""
    try:
        import inspect

        import aiosqlite.core as core
        lines, first = inspect.getsourcelines(core._connection_worker_thread)
        line = next(first + i for i, text in enumerate(lines) if "tx.get()" in text)
        return f"_connection_worker_thread (aiosqlite/core.py:{line})"
    except Exception:
        return "_connection_worker_thread (aiosqlite/core.py:59)"


def parse(path: Path) -> list[tuple[list[str], int]]:
    idle = idle_frame()
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames[-1] == idle:
            continue
        stacks.append((frames, int(count)))
    return stacks


def bucket_of(stack: list[str]) -> str:
    for label, needles in BUCKETS:
        if any(needle in frame for needle in needles for frame in stack):
            return label
    return BUCKETS[-1][0]


def name(frame: str, with_line: bool = False) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    where = m["file"] + (f":{m['line']}" if with_line and m["line"] else "")
    return f"{m['func']} ({where})"


def file_of(frame: str) -> str:
    m = _FRAME.match(frame)
    return m["file"] if m else ""


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_report")
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--under", help="only samples with a frame containing this text")
    parser.add_argument("--prefix", default="aibridge/", help="the project's frames (default aibridge/)")
    parser.add_argument("--cpu-us", type=float,
                        help="measured CPU µs per request: also show each bucket's share in µs")
    args = parser.parse_args()
    stacks = parse(args.profile)
    total_all = sum(c for _, c in stacks)
    if args.under:
        stacks = [(s, c) for s, c in stacks if any(args.under in f for f in s)]
    total = sum(c for _, c in stacks)
    if not total:
        raise SystemExit("no samples")
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    self_lines: collections.Counter[str] = collections.Counter()
    for stack, count in stacks:
        seen = {name(f) for f in stack}
        for n in seen:
            inclusive[n] += count
        for n in {name(f) for f in stack if file_of(f).startswith(args.prefix)}:
            own[n] += count
        self_time[name(stack[-1])] += count
        self_lines[name(stack[-1], with_line=True)] += count
    print(f"{total} samples" + (f" of {total_all} ({100 * total / total_all:.1f}%) under {args.under!r}"
                                if args.under else ""))

    def show(title: str, counter: collections.Counter[str]) -> None:
        print(f"\n{title}")
        for n, c in counter.most_common(args.top):
            print(f"  {100 * c / total:5.1f}%  {n}")

    buckets: collections.Counter[str] = collections.Counter()
    for stack, count in stacks:
        buckets[bucket_of(stack)] += count
    print("\nwhere the time goes (first matching bucket)")
    for label, _ in BUCKETS:
        if buckets[label]:
            share = buckets[label] / total
            extra = f"  ≈ {share * args.cpu_us:5.0f} µs/req" if args.cpu_us else ""
            print(f"  {100 * share:5.1f}%{extra}  {label}")

    show("inclusive (on the stack)", inclusive)
    show(f"project frames ({args.prefix}) inclusive", own)
    show("self (top of the stack)", self_time)
    show("self, by line", self_lines)


if __name__ == "__main__":
    main()
