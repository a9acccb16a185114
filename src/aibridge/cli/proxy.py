"""``aibridge proxy``: the AI Bridge Proxy's CA certificate, for clients to trust."""

from __future__ import annotations

from typing import Any

import click

from aibridge.cli.options import config_options, fail, settings_from
from aibridge.config import OPTIONS_BY_KEY, STORAGE_OPTIONS, ConfigError
from aibridge.proxy.ca import read_certificate


@click.group()
def proxy() -> None:
    """The AI Bridge Proxy (HTTPS_PROXY for tools that cannot change their base URL)."""


@proxy.command("ca-cert")
@config_options((*STORAGE_OPTIONS, OPTIONS_BY_KEY["aibridge_proxy_cert_file"]))
def ca_cert(**kwargs: Any) -> None:
    """Print the proxy CA certificate (PEM; never its key). Clients trust it to use the proxy."""
    settings = settings_from(kwargs, storage_only=True)
    path = settings.aibridge_proxy_cert_file or str(settings.data_dir / "proxy" / "ca.pem")
    option = "--aibridge-proxy-cert-file" if settings.aibridge_proxy_cert_file else "--data-dir"
    if not settings.aibridge_proxy_cert_file and not (settings.data_dir / "proxy" / "ca.pem").exists():
        fail(f"no proxy CA in {settings.data_dir / 'proxy'} yet: the server generates it on its first start "
             "with --aibridge-proxy-enabled (or set --aibridge-proxy-cert-file)")
    try:
        from cryptography.hazmat.primitives.serialization import Encoding
        click.echo(read_certificate(path, option).public_bytes(Encoding.PEM).decode(), nl=False)
    except ConfigError as exc:
        fail(str(exc))
