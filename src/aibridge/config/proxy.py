"""Options of the AI Bridge Proxy, and the ones that only work together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aibridge.config.option import Option
from aibridge.config.values import ConfigError

if TYPE_CHECKING:
    from aibridge.config.settings import Settings


def _proxy(suffix: str, default: str, kind: str, help_: str, secret: bool = False) -> Option:
    return Option(f"aibridge_proxy_{suffix}", f"CODER_AIBRIDGE_PROXY_{suffix.upper()}", default, kind, help_,
                  secret=secret)


PROXY_OPTIONS = (
    _proxy("enabled", "false", "bool",
           "Run the AI Bridge Proxy: an HTTP CONNECT proxy that decrypts only the providers' hosts."),
    _proxy("listen_addr", "127.0.0.1:8888", "address",
           "Address the proxy listens on (a bare :8888 listens on every interface; see docs/proxy.md)."),
    _proxy("cert_file", "", "str",
           "CA certificate (PEM) that signs the per-host certificates (empty: one generated in the data directory)."),
    _proxy("key_file", "", "str", "Private key (PEM) of the proxy CA."),
    _proxy("tls_cert_file", "", "str", "Certificate (PEM) for TLS on the proxy listener itself (empty: plain HTTP)."),
    _proxy("tls_key_file", "", "str", "Private key (PEM) for TLS on the proxy listener."),
    _proxy("upstream", "", "url",
           "Corporate proxy for tunnelled traffic: http(s)://[user:pass@]host:port (empty: connect directly).",
           secret=True),
    _proxy("upstream_ca", "", "str", "CA certificate (PEM) to trust for an https:// upstream proxy."),
    _proxy("allowed_private_cidrs", "", "cidrs",
           "Private/loopback/link-local ranges tunnels may reach (comma-separated CIDRs; empty: none)."),
    _proxy("domain_allowlist", "", "str",
           "Accepted for compatibility and ignored: the decrypted hosts are the enabled providers' hosts."),
)


@dataclass(frozen=True)
class ProxySettings:
    """The proxy's fields of ``Settings``."""

    aibridge_proxy_enabled: bool
    aibridge_proxy_listen_addr: str
    aibridge_proxy_cert_file: str
    aibridge_proxy_key_file: str
    aibridge_proxy_tls_cert_file: str
    aibridge_proxy_tls_key_file: str
    aibridge_proxy_upstream: str
    aibridge_proxy_upstream_ca: str
    aibridge_proxy_allowed_private_cidrs: tuple[str, ...]
    aibridge_proxy_domain_allowlist: str


def check_proxy(s: Settings) -> None:
    """Options of the proxy that only work together (the files themselves are read at start)."""
    if not s.aibridge_proxy_enabled:
        return
    if not s.aibridge_enabled:
        raise ConfigError("--aibridge-proxy-enabled: the proxy hands decrypted requests to AI Bridge; "
                          "enable it too (--aibridge-enabled) and configure a provider")
    for cert, key in (("cert_file", "key_file"), ("tls_cert_file", "tls_key_file")):
        if bool(getattr(s, f"aibridge_proxy_{cert}")) != bool(getattr(s, f"aibridge_proxy_{key}")):
            raise ConfigError(f"--aibridge-proxy-{cert.replace('_', '-')}: set both it and "
                              f"--aibridge-proxy-{key.replace('_', '-')}, or neither")
