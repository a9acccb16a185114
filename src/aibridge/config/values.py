"""Value parsers of the option kinds (``PARSERS``), and the error every bad value becomes."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A configuration that cannot work. The message is one line naming the option."""


_DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
    "d": 86400.0, "w": 604800.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d|w)")


def parse_duration(text: str) -> float:
    """Go-style duration plus ``d`` and ``w`` ("90d", "1h30m", "0") → seconds."""
    value = text.strip()
    if value in ("0", "0s"):
        return 0.0
    if not value or _DURATION_PART.sub("", value) != "":
        raise ValueError(f"invalid duration {text!r} (use e.g. 90d, 2w, 1440h, 30m, 10s)")
    return sum(float(num) * _DURATION_UNITS[unit] for num, unit in _DURATION_PART.findall(value))


def format_duration(seconds: float) -> str:
    if seconds == 0:
        return "0"
    for unit in ("w", "d", "h", "m", "s"):
        size = _DURATION_UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds}s"


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"invalid boolean {text!r} (use true or false)")


def parse_int(text: str) -> int:
    try:
        number = int(text.strip())
    except ValueError:
        raise ValueError(f"invalid integer {text!r}") from None
    if number < 0:
        raise ValueError(f"must not be negative, got {number}")
    return number


def parse_float(text: str) -> float:
    try:
        number = float(text.strip())
    except ValueError:
        raise ValueError(f"invalid number {text!r}") from None
    if number < 0:
        raise ValueError(f"must not be negative, got {number}")
    return number


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask (a cpuset), capped by a cgroup CPU quota (a
    container's CPU limit, which the mask does not show), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:          # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cpus, quota) if quota else cpus)


def _cgroup_cpu_quota() -> int | None:
    """cgroup v2 ``cpu.max`` ("200000 100000" → 2) or v1 ``cpu.cfs_quota_us``; None when unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text().strip()
            period = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1") or not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return None
    return -(-int(quota) // int(period))        # rounded up: 1.5 CPUs → 2 workers


def parse_workers(text: str) -> int:
    """``auto`` (or 0): one worker per usable CPU; else a positive count."""
    value = text.strip().lower()
    if value in ("auto", "0"):
        return usable_cpus()
    try:
        return max(1, parse_int(value))
    except ValueError:
        raise ValueError(f"invalid worker count {text!r} (use a number, or auto for one per CPU)") from None


def parse_address(text: str) -> str:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid address {text!r} (use HOST:PORT, e.g. 127.0.0.1:3000)")
    return f"{host or '0.0.0.0'}:{port}"


def parse_url(text: str) -> str:
    value = text.strip()
    if value and not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"invalid URL {text!r} (must start with http:// or https://)")
    return value


def parse_path(text: str) -> Path:
    return Path(os.path.expanduser(text.strip()))


def parse_cidrs(text: str) -> tuple[str, ...]:
    """Comma-separated CIDRs ("10.0.0.0/8, fd00::/8") in canonical form."""
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ValueError(f"invalid CIDR {part!r} (use e.g. 10.0.0.0/8,192.168.1.0/24)") from None
    return tuple(networks)


REDACT_MODES = ("store", "upstream", "off")


def parse_redact(text: str) -> str:
    value = text.strip().lower()
    if value not in REDACT_MODES:
        raise ValueError(f"invalid redaction mode {text!r} (use {', '.join(REDACT_MODES)})")
    return value


BUDGET_POLICIES = ("highest",)


def parse_budget_policy(text: str) -> str:
    value = text.strip().lower()
    if value not in BUDGET_POLICIES:
        raise ValueError(f"invalid budget policy {text!r} (only {', '.join(BUDGET_POLICIES)} is supported)")
    return value


PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str, "bool": parse_bool, "int": parse_int, "float": parse_float,
    "duration": parse_duration, "address": parse_address, "url": parse_url, "path": parse_path,
    "cidrs": parse_cidrs,
    "workers": parse_workers,
    "redact": parse_redact,
    "budget_policy": parse_budget_policy,
}
