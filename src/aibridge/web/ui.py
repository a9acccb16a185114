"""The built-in dashboard: one static page (HTML, vanilla JS, CSS) that reads the REST API with the user's token.

The files in ``static/`` ship inside the package and are read into memory once, when the routes are
added. A request names an asset by its bare file name and is answered only when that name is one of
the files found then: no part of a request path ever reaches the file system, so there is nothing to
traverse. The page and its assets need no token (the data calls the page makes do), and every answer
carries a strict Content-Security-Policy: scripts and styles only from this server, no inline code,
and Trusted Types so that any HTML-string sink in the page throws instead of rendering markup.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
UI_PATH: Final = "/aibridge/"
INDEX: Final = "index.html"
CLI_AUTH_PATH: Final = "/cli-auth"

CONTENT_TYPES: Final[Mapping[str, str]] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

CONTENT_SECURITY_POLICY: Final = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' https:",         # the SSO button's icon (CODER_OIDC_ICON_URL) may live elsewhere
    "connect-src 'self'",
    "font-src 'none'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    # The page builds its DOM with text nodes only; with Trusted Types an innerHTML assignment throws.
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
])

SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets(folder: Path = STATIC_DIR) -> dict[str, Asset]:
    """The servable files directly in ``folder`` (known types only), keyed by file name."""
    assets: dict[str, Asset] = {}
    for path in sorted(folder.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix.lower())
        if content_type is None or not path.is_file() or path.name.startswith("."):
            continue
        body = path.read_bytes()
        assets[path.name] = Asset(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    if INDEX not in assets:
        raise RuntimeError(f"the web UI is incomplete: {folder / INDEX} is missing from the installation")
    return assets


class WebUI:
    """Serves the dashboard's files from memory."""

    def __init__(self, assets: Mapping[str, Asset]) -> None:
        self.assets = dict(assets)

    def serve(self, request: web.Request, name: str) -> web.StreamResponse:
        asset = self.assets.get(name)
        if asset is None:
            raise web.HTTPNotFound(headers=SECURITY_HEADERS)
        # Revalidate every time (an upgrade must show at once); the ETag keeps that to a 304.
        headers = {**SECURITY_HEADERS, "ETag": asset.etag, "Cache-Control": "no-cache"}
        if asset.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=asset.body, headers={**headers, "Content-Type": asset.content_type})

    async def index(self, request: web.Request) -> web.StreamResponse:
        return self.serve(request, INDEX)

    async def asset(self, request: web.Request) -> web.StreamResponse:
        return self.serve(request, request.match_info["name"])


async def to_ui(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(UI_PATH, headers=SECURITY_HEADERS)


async def to_cli_auth(_request: web.Request) -> web.StreamResponse:
    """Where ``aibridge login URL`` sends the browser: the page that hands the CLI a token."""
    raise web.HTTPFound(UI_PATH + "#cli-auth", headers=SECURITY_HEADERS)


def add_routes(app: web.Application, folder: Path = STATIC_DIR) -> None:
    ui = WebUI(load_assets(folder))
    app.router.add_get("/", to_ui)
    app.router.add_get(UI_PATH.rstrip("/"), to_ui)
    app.router.add_get(CLI_AUTH_PATH, to_cli_auth)
    app.router.add_get(UI_PATH, ui.index)
    # {name} matches one path segment (no "/"); only the names loaded above are answered.
    app.router.add_get(UI_PATH + "{name}", ui.asset)
