"""Blind tunnels: bytes copied both ways, untouched, directly or through a corporate proxy."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from aibridge.config import ConfigError
from aibridge.proxy.addresses import Refused

CONNECT_TIMEOUT = 10.0
CHUNK = 64 * 1024
MAX_HEAD = 16 * 1024
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True)
class UpstreamProxy:
    """--aibridge-proxy-upstream: where tunnels go when direct connections are not allowed."""

    host: str
    port: int
    authorization: str | None       # the Proxy-Authorization value, from the URL's user:pass
    tls: ssl.SSLContext | None      # for an https:// upstream

    @classmethod
    def parse(cls, url: str, ca_file: str) -> UpstreamProxy:
        parts = urlsplit(url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ConfigError("--aibridge-proxy-upstream: invalid port") from None
        if not parts.hostname:
            raise ConfigError("--aibridge-proxy-upstream: the URL needs a host")
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(pair.encode()).decode()
        tls = None
        if parts.scheme == "https":
            try:
                tls = ssl.create_default_context(cafile=ca_file or None)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"--aibridge-proxy-upstream-ca: cannot load {ca_file}: {exc}") from None
        return cls(parts.hostname, port, authorization, tls)

    async def connect(self, host: str, port: int) -> Stream:
        """A stream to host:port through this proxy (its CONNECT answered 200)."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=self.tls,
                                        server_hostname=self.host if self.tls else None), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise Refused(502, f"upstream proxy {self.host}:{self.port} unreachable: {exc}") from None
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        if self.authorization:
            head += f"Proxy-Authorization: {self.authorization}\r\n"
        writer.write((head + "\r\n").encode())
        try:
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_TIMEOUT)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            writer.close()
            raise Refused(502, f"upstream proxy {self.host}:{self.port} did not answer: {exc}") from None
        status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
        fields = status_line.split(" ", 2)
        if len(fields) < 2 or fields[1] != "200":
            writer.close()
            raise Refused(502, f"upstream proxy refused {target}: {status_line}")
        return reader, writer


async def connect_direct(address: str, port: int) -> Stream:
    """A stream to the already checked ``address`` (never a name: see addresses.resolve)."""
    try:
        return await asyncio.wait_for(asyncio.open_connection(address, port), CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise Refused(502, f"cannot connect to {address}:{port}: {exc or 'timed out'}") from None


async def pipe(client: Stream, server: Stream) -> int:
    """Copy both ways until both sides are done; returns the bytes carried. Both ends are closed
    however it ends (also when the server stops and cancels the tunnel)."""
    try:
        results = await asyncio.gather(_copy(client[0], server[1]), _copy(server[0], client[1]))
    finally:
        for _, writer in (client, server):
            writer.close()
    for _, writer in (client, server):
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    return sum(results)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    carried = 0
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            carried += len(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        else:
            writer.close()          # a TLS listener cannot half-close
    except (OSError, ssl.SSLError):
        writer.close()
    return carried
