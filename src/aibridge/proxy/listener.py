"""The proxy's listener: read a CONNECT, authenticate it, then decrypt or tunnel.

``CONNECT host:port`` with ``Proxy-Authorization: Basic base64(<anything>:<token>)``:
- a provider host (see hosts.py) is answered ``200``, its TLS is terminated with a certificate
  for that host minted by the proxy CA, and the connection is handed to the decrypted-request
  application (mitm.py);
- any other host gets a blind tunnel (tunnel.py) to a checked address (addresses.py), or
  through the corporate proxy when one is configured.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from http import HTTPStatus

from aiohttp import web

from aibridge.identity.auth import Authenticator, AuthError
from aibridge.identity.roles import Actor
from aibridge.proxy.addresses import IPNetwork, Refused, check_port, literal, permitted, resolve
from aibridge.proxy.ca import CertificateAuthority
from aibridge.proxy.hosts import DecryptedHosts
from aibridge.proxy.mitm import Decrypted, Session
from aibridge.proxy.tunnel import MAX_HEAD, UpstreamProxy, connect_direct, pipe

TUNNELS_CLOSE_TIMEOUT = 5.0      # seconds the cancelled tunnels get to close at shutdown
log = logging.getLogger("aibridge.proxy")
REALM = 'Basic realm="AI Bridge Proxy"'
HEAD_TIMEOUT = 30.0
HANDSHAKE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Connect:
    host: str
    port: int
    headers: dict[str, str]       # names in lower case


def parse_head(head: bytes) -> Connect:
    lines = head.decode("latin-1").split("\r\n")
    method, _, rest = lines[0].partition(" ")
    target = rest.rpartition(" ")[0] or rest
    if method != "CONNECT":
        raise Refused(405, "this proxy only tunnels HTTPS: send CONNECT host:port (set HTTPS_PROXY, not HTTP_PROXY)")
    host, sep, port = target.rpartition(":")
    host = host.strip("[]").lower()
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise Refused(400, f"bad CONNECT target {target!r} (use host:port)")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return Connect(host, int(port), headers)


def proxy_token(headers: dict[str, str]) -> str | None:
    """The token in ``Proxy-Authorization: Basic base64(<anything>:<token>)`` (or ``Bearer <token>``)."""
    scheme, _, value = headers.get("proxy-authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2] or None


def answer(status: int, message: str = "", headers: dict[str, str] | None = None) -> bytes:
    body = (message + "\n").encode() if message else b""
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Content-Type: text/plain; charset=utf-8",
             f"Content-Length: {len(body)}", "Connection: close",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Buffered(asyncio.Protocol):
    """Holds what arrives between the end of the TLS handshake and the HTTP protocol taking over."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.eof = False

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> None:
        self.eof = True


class ProxyServer:
    def __init__(self, listen: str, ca: CertificateAuthority, decrypted: Decrypted, authenticator: Authenticator,
                 tls: ssl.SSLContext | None, upstream: UpstreamProxy | None, allowed: tuple[IPNetwork, ...],
                 grace: float, reuse_port: bool = False, backlog: int = 100) -> None:
        self.listen = listen
        self.reuse_port = reuse_port      # --workers N: every worker listens on the port
        self.backlog = backlog
        self.ca = ca
        self.decrypted = decrypted
        self.authenticator = authenticator
        self.tls = tls
        self.upstream = upstream
        self.allowed = allowed
        self._runner = web.AppRunner(decrypted.app, access_log=None, handle_signals=False, shutdown_timeout=grace)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def hosts(self) -> DecryptedHosts:
        return self.decrypted.hosts

    async def start(self, announce: bool = True) -> None:
        await self._runner.setup()
        host, port = self.listen.rsplit(":", 1)
        try:
            self._server = await asyncio.start_server(
                self._accept, host.strip("[]") or None, int(port), ssl=self.tls, limit=MAX_HEAD,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT if self.tls else None, reuse_address=True,
                reuse_port=self.reuse_port and hasattr(socket, "SO_REUSEPORT"), backlog=self.backlog)
        except OSError as exc:
            await self._runner.cleanup()
            raise SystemExit(f"error: --aibridge-proxy-listen-addr: cannot listen on {self.listen}: "
                             f"{exc.strerror}") from None
        say = log.info if announce else log.debug       # every worker listens; one of them says so
        say("AI Bridge Proxy listening on %s://%s (decrypting %s; CA %s)", "https" if self.tls else "http",
            self.listen, ", ".join(self.hosts.hosts), self.ca.cert_path)

    async def stop(self) -> None:
        """Stop accepting, let decrypted requests finish (within the grace), then end the tunnels
        (and CONNECTs still being read)."""
        if self._server is not None:
            self._server.close()
        await self._runner.cleanup()
        tunnels = list(self._connections)
        for task in tunnels:
            task.cancel()
        if tunnels:     # bounded: a peer that never answers the close must not hold the shutdown
            await asyncio.wait(tunnels, timeout=TUNNELS_CLOSE_TIMEOUT)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except Refused as exc:
            with contextlib.suppress(OSError):
                writer.write(answer(exc.status, exc.message))
                await writer.drain()
            writer.close()
        except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
        except Exception:
            log.exception("proxy: unexpected error on a CONNECT")
            writer.close()
        finally:
            self._connections.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        connect = parse_head(head)
        token = proxy_token(connect.headers)
        actor = await self._authenticate(token, writer)
        if actor is None or token is None:
            return
        live = self.decrypted.bridge.live
        if live.stale:          # a provider created through the API since: its host is decrypted too
            await live.refresh()
        if self.hosts.decrypts(connect.host, connect.port):
            await self._decrypt(connect, token, actor, writer)
        else:
            await self._tunnel(connect, actor, reader, writer)

    async def _authenticate(self, token: str | None, writer: asyncio.StreamWriter) -> Actor | None:
        try:
            if token is None:
                raise AuthError(407, "send your AI Bridge token as the proxy password: "
                                     "HTTPS_PROXY=http://coder:<token>@host:port")
            return await self.authenticator.authenticate({"Authorization": f"Bearer {token}"})
        except AuthError as exc:
            writer.write(answer(407, exc.message, {"Proxy-Authenticate": REALM}))
            await writer.drain()
            writer.close()
            return None

    async def _decrypt(self, connect: Connect, token: str, actor: Actor, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        loop = asyncio.get_running_loop()
        pending = _Buffered()
        try:
            tls = await loop.start_tls(writer.transport, pending, self.ca.server_context(connect.host),
                                       server_side=True, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            log.warning("proxy: TLS handshake with the client failed for %s (does it trust the proxy CA?): %s",
                        connect.host, exc, extra={"user": actor.username})
            return
        assert tls is not None
        assert self._runner.server is not None
        protocol = self._runner.server()
        self.decrypted.sessions[tls] = Session(connect.host, connect.port, token, keep=writer)
        tls.set_protocol(protocol)
        protocol.connection_made(tls)
        if pending.data:
            protocol.data_received(bytes(pending.data))
        if pending.eof:
            protocol.eof_received()
        if self.decrypted.metrics is not None:
            self.decrypted.metrics.connect_sessions.labels("mitm").inc()
        log.info("proxy connect", extra={"type": "mitm", "host": connect.host, "port": connect.port,
                                         "user": actor.username})

    async def _tunnel(self, connect: Connect, actor: Actor, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        if self.upstream is not None:
            check_port(connect.port)
            address = literal(connect.host)
            if address is not None and not permitted(address, self.allowed):
                raise Refused(403, f"{connect.host} is a private or reserved address; allow its range with "
                                   "--aibridge-proxy-allowed-private-cidrs")
            server = await self.upstream.connect(connect.host, connect.port)
        else:
            server = await connect_direct(await resolve(connect.host, connect.port, self.allowed), connect.port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        if self.decrypted.metrics is not None:
            self.decrypted.metrics.connect_sessions.labels("tunneled").inc()
        started = time.monotonic()
        carried = await pipe((reader, writer), server)
        log.info("proxy connect", extra={"type": "tunneled", "host": connect.host, "port": connect.port,
                                         "user": actor.username, "bytes": carried,
                                         "seconds": round(time.monotonic() - started, 3)})
