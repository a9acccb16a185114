"""The proxy as part of the server: built from the settings, started and drained with it."""

from __future__ import annotations

import logging
import ssl

from aiohttp import web
from prometheus_client import CollectorRegistry

from aibridge.bridge.routing import Bridge, json_error
from aibridge.config import ConfigError, Settings
from aibridge.listening import effective_backlog
from aibridge.proxy.addresses import networks
from aibridge.proxy.ca import CertificateAuthority
from aibridge.proxy.hosts import DecryptedHosts
from aibridge.proxy.listener import ProxyServer
from aibridge.proxy.metrics import ProxyMetrics
from aibridge.proxy.mitm import Decrypted
from aibridge.proxy.tunnel import UpstreamProxy

log = logging.getLogger("aibridge.proxy")
CA_ROUTE = "/api/v2/aibridge/proxy/ca-cert.pem"
PROXY: web.AppKey[ProxyServer | None] = web.AppKey("proxy")


def load_ca(settings: Settings) -> CertificateAuthority:
    """The configured CA, else the one in the data directory (generated on first start)."""
    if settings.aibridge_proxy_cert_file:
        return CertificateAuthority.load(settings.aibridge_proxy_cert_file, settings.aibridge_proxy_key_file)
    try:
        ca, created = CertificateAuthority.load_or_generate(settings.data_dir / "proxy")
    except OSError as exc:
        raise ConfigError(f"--data-dir: cannot create the proxy CA in {settings.data_dir}: {exc.strerror}") from None
    if created:
        log.info("generated the AI Bridge Proxy CA: %s (clients must trust it; its key stays beside it, "
                 "readable by this user only)", ca.cert_path)
    return ca


def listener_tls(settings: Settings) -> ssl.SSLContext | None:
    if not settings.aibridge_proxy_tls_cert_file:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.aibridge_proxy_tls_cert_file, settings.aibridge_proxy_tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--aibridge-proxy-tls-cert-file: cannot load {settings.aibridge_proxy_tls_cert_file} "
                          f"with {settings.aibridge_proxy_tls_key_file}: {exc}") from None
    return context


def build_proxy(settings: Settings, bridge: Bridge, registry: CollectorRegistry | None) -> ProxyServer:
    if settings.aibridge_proxy_domain_allowlist:
        log.warning("--aibridge-proxy-domain-allowlist is ignored: the proxy decrypts the enabled providers' "
                    "hosts")
    upstream = (UpstreamProxy.parse(settings.aibridge_proxy_upstream, settings.aibridge_proxy_upstream_ca)
                if settings.aibridge_proxy_upstream else None)
    metrics = ProxyMetrics(registry) if registry is not None else None
    decrypted = Decrypted(bridge, DecryptedHosts(bridge.live.configs()), metrics)
    # Providers created, changed or removed through the API: their hosts follow (bridge/live.py).
    bridge.live.listeners.append(lambda: setattr(decrypted, "hosts", DecryptedHosts(bridge.live.configs())))
    return ProxyServer(settings.aibridge_proxy_listen_addr, load_ca(settings), decrypted, bridge.authenticator,
                       listener_tls(settings), upstream, networks(settings.aibridge_proxy_allowed_private_cidrs),
                       settings.shutdown_grace, reuse_port=settings.workers > 1,
                       backlog=effective_backlog(settings.aibridge_listen_backlog))


async def ca_cert(request: web.Request) -> web.Response:
    """The proxy CA's certificate (never its key), without a token: clients fetch it before they are set up."""
    proxy = request.app[PROXY]
    if proxy is None:
        return json_error(404, "the AI Bridge Proxy is not enabled",
                          "Start the server with --aibridge-proxy-enabled (CODER_AIBRIDGE_PROXY_ENABLED=true).")
    return web.Response(body=proxy.ca.cert_pem, content_type="application/x-pem-file")


def add_routes(app: web.Application) -> None:
    """Register before the provider routes: the CA route would match them as provider "proxy"."""
    app.router.add_get(CA_ROUTE, ca_cert)


def attach(app: web.Application, settings: Settings, bridge: Bridge, registry: CollectorRegistry | None,
           announce: bool = True) -> None:
    """The listener's life: started after the server's own start-up hooks, drained on shutdown
    before the bridge and the recorder close. Every worker listens; only ``announce`` says so."""
    proxy = build_proxy(settings, bridge, registry) if settings.aibridge_proxy_enabled else None
    app[PROXY] = proxy
    if proxy is None:
        return

    async def start(_app: web.Application) -> None:
        await proxy.start(announce)

    async def stop(_app: web.Application) -> None:
        await proxy.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
