"""The bare baseline: the least an aiohttp reverse proxy can do.

One aiohttp server on uvloop (as the bridge runs), one pooled aiohttp ``ClientSession``; every request is forwarded to
``--upstream`` + the same path and query, with the client's headers minus hop-by-hop ones (the
client sends the upstream key itself: no auth, no parsing, no recording). A streamed answer is
relayed chunk by chunk as it arrives (``iter_any()``); any other answer is read and sent in one
piece, as the bridge does for blocking answers.

    python -m bench.passthrough --port 0 --upstream http://127.0.0.1:PORT

prints ``READY <port>`` once listening; SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

_HOP_REQUEST = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                          "upgrade", "host", "content-length"})
# Bodies are relayed as received (no decompression), so Content-Encoding is relayed too.
_HOP_RESPONSE = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "trailer",
                           "date", "server"})
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session")
UPSTREAM: web.AppKey[str] = web.AppKey("upstream")


async def forward(request: web.Request) -> web.StreamResponse:
    session = request.app[SESSION]
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP_REQUEST)
    body = await request.read()
    async with session.request(request.method, request.app[UPSTREAM] + request.path_qs, data=body or None,
                               headers=headers) as upstream:
        out = CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_RESPONSE)
        if not upstream.headers.get("Content-Type", "").startswith("text/event-stream"):
            return web.Response(status=upstream.status, body=await upstream.read(), headers=out)
        response = web.StreamResponse(status=upstream.status, headers=out)
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def serve(port: int, upstream: str, host: str) -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60)
    session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=900),
                                    skip_auto_headers=("User-Agent", "Accept-Encoding"))
    app[SESSION], app[UPSTREAM] = session, upstream.rstrip("/")
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write(f"READY {runner.addresses[0][1]}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await session.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.passthrough", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed as READY <port>)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--no-uvloop", action="store_true", help="asyncio's default event loop instead of uvloop")
    args = parser.parse_args()
    from bench import callcount, cpusampler
    cpusampler.install_from_env()
    callcount.install_from_env()
    if args.no_uvloop:
        asyncio.run(serve(args.port, args.upstream, args.host))
    else:
        import uvloop
        uvloop.run(serve(args.port, args.upstream, args.host))


if __name__ == "__main__":
    main()
