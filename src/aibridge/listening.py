"""Listening sockets: refuse a port another process already listens on, and the listen backlog.

The workers of one server share their ports through ``SO_REUSEPORT``; a second server started on
the same port would join that group too and the kernel would split connections between two
servers (two databases, two admin tokens). So before any of our sockets exists, each address is
bound once *without* ``SO_REUSEPORT``: the kernel refuses that bind while any socket listens
there, whatever options it has. The check and our own bind are two steps, so two servers
started in the same instant could both pass it; a server started after another never does.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from aibridge.config import Settings

SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def split_address(address: str) -> tuple[str | None, int]:
    """``host:port`` (``[v6]:port``; an empty host: every interface) as (host or None, port)."""
    host, port = address.rsplit(":", 1)
    return host.strip("[]") or None, int(port)


def refuse_if_taken(address: str, option: str) -> None:
    """SystemExit with one line naming ``option`` when some process already listens on ``address``."""
    host, port = split_address(address)
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise SystemExit(f"error: {option}: cannot listen on {address}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)     # a TIME_WAIT leftover is no owner
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SystemExit(f"error: {option}: cannot listen on {address}: another process already "
                                 "listens there") from None
            raise SystemExit(f"error: {option}: cannot listen on {address}: {exc.strerror}") from None


def refuse_taken_ports(settings: Settings) -> None:
    """First thing at start: every address this server will listen on is free (else one line)."""
    refuse_if_taken(settings.http_address, "--http-address")
    if settings.aibridge_proxy_enabled:
        refuse_if_taken(settings.aibridge_proxy_listen_addr, "--aibridge-proxy-listen-addr")
    if settings.prometheus_enable:
        refuse_if_taken(settings.prometheus_address, "--prometheus-address")


def max_backlog() -> int:
    """The kernel's cap on a listen queue (``net.core.somaxconn``); larger requests are cut to it."""
    try:
        return int(SOMAXCONN.read_text())
    except (OSError, ValueError):
        return socket.SOMAXCONN


def effective_backlog(requested: int) -> int:
    return max(1, min(requested, max_backlog()))
