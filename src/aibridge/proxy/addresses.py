"""Where a blind tunnel may go: ports 80 and 443 of public addresses (plus allowed private ranges).

The name is resolved once here and the tunnel connects to exactly the address that was
checked, so a DNS answer that changes between check and connect (DNS rebinding) cannot slip
a private address through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
TUNNEL_PORTS = frozenset({80, 443})
RESOLVE_TIMEOUT = 10.0


class Refused(Exception):
    """The proxy will not open this tunnel (→ the status, usually 403, and the message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def is_special(address: IPAddress) -> bool:
    """Private, loopback, link-local, reserved, multicast or unspecified (not the public internet)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (address.is_private or address.is_loopback or address.is_link_local or address.is_reserved
            or address.is_multicast or address.is_unspecified or not address.is_global)


def permitted(address: IPAddress, allowed: tuple[IPNetwork, ...]) -> bool:
    return not is_special(address) or any(address in network for network in allowed)


def check_port(port: int) -> None:
    if port not in TUNNEL_PORTS:
        raise Refused(403, f"port {port} is not allowed (tunnels go to ports 80 and 443 only)")


def literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve(host: str, port: int, allowed: tuple[IPNetwork, ...]) -> str:
    """The one address the tunnel to ``host:port`` will connect to; Refused when none is permitted."""
    check_port(port)
    address = literal(host)
    candidates = [address] if address is not None else await _lookup(host, port)
    for candidate in candidates:
        if permitted(candidate, allowed):
            return str(candidate)
    shown = ", ".join(str(c) for c in candidates[:3])
    raise Refused(403, f"{host} resolves to a private or reserved address ({shown}); "
                       "allow its range with --aibridge-proxy-allowed-private-cidrs")


async def _lookup(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP), RESOLVE_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise Refused(502, f"cannot resolve {host}: {exc.strerror if isinstance(exc, OSError) else 'timed out'}") \
            from None
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found
