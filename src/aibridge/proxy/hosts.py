"""Which hosts the proxy decrypts, and which provider route a decrypted request is.

The decrypted hosts come from the enabled providers: each provider's own base URL, and the
public API host of its type (``api.openai.com``, ``api.anthropic.com``) for the tools that
always call it; for the BYOK-only providers, the hosts their tools call whatever the base URL:
Copilot's three plan hosts, ChatGPT's backend. A request maps back to
``/api/v2/aibridge/<provider>/<tail>`` by undoing what the provider does to a tail: strip the base
URL's path, put back the part of the tail that the base URL already holds (OpenAI's ``v1/``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aibridge.bridge.providers import PROVIDER_KINDS
from aibridge.bridge.providers.copilot import PLAN_BASE_URLS, CopilotProvider
from aibridge.bridge.providers.http import HTTPType
from aibridge.bridge.providers.openai import CHATGPT, CHATGPT_BASE_URL
from aibridge.config import OPTIONS_BY_KEY, ProviderConfig

# The public API host of each type, for the tools that always call it.
PUBLIC_BASE_URLS = {ptype: OPTIONS_BY_KEY[f"aibridge_{ptype}_base_url"].default for ptype in ("openai", "anthropic")}


def relaying_kinds() -> dict[str, str]:
    """Provider kinds whose upstream speaks the client's own API (plain HTTP kinds, not Bedrock),
    each with what it strips from a tail before joining it to its base URL (OpenAI's ``v1/``)."""
    return {k.kind: str(getattr(k.provider, "base_strip", "")) for k in PROVIDER_KINDS if isinstance(k, HTTPType)}


@dataclass(frozen=True)
class Mount:
    provider: str       # provider name (its route segment)
    prefix: str         # path of the base URL, ending in "/"
    strip: str          # what the provider strips from a tail

    def tail(self, path: str) -> str | None:
        if not (path + "/").startswith(self.prefix):
            return None
        return self.strip + path[len(self.prefix):]


def _host_port(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return (parts.hostname or "").lower(), port, path


class DecryptedHosts:
    def __init__(self, providers: Iterable[ProviderConfig]) -> None:
        self._mounts: dict[tuple[str, int], list[Mount]] = {}
        providers = list(providers)
        strips = relaying_kinds()
        for config in providers:
            # A plain-HTTP base URL is not reached through CONNECT + TLS; Bedrock's endpoint speaks AWS's API.
            if config.base_url.startswith("https://") and config.kind in strips:
                host, port, path = _host_port(config.base_url)
                self._add(host, port, Mount(config.name, path, strips[config.kind]))
        for ptype, base_url in PUBLIC_BASE_URLS.items():
            primary = _primary(providers, ptype)
            host, port, path = _host_port(base_url)
            if primary is not None and (host, port) not in self._mounts:     # a provider on that host wins
                self._add(host, port, Mount(primary.name, path, strips.get(ptype, "")))
        for base_url, config in _subscription_hosts(providers):
            host, port, path = _host_port(base_url)
            if (host, port) not in self._mounts:
                self._add(host, port, Mount(config.name, path, strips.get(config.kind, "")))
        for mounts in self._mounts.values():
            mounts.sort(key=lambda m: len(m.prefix), reverse=True)   # longest prefix first

    def _add(self, host: str, port: int, mount: Mount) -> None:
        self._mounts.setdefault((host, port), []).append(mount)

    @property
    def hosts(self) -> list[str]:
        return sorted(f"{h}:{p}" for h, p in self._mounts)

    def decrypts(self, host: str, port: int) -> bool:
        return (host.lower(), port) in self._mounts

    def route(self, host: str, port: int, path: str,
              supports: Callable[[str, str], bool] = lambda _p, _t: True) -> tuple[str, str | None]:
        """(provider name, tail) of a decrypted request; tail None when no provider path matches.

        Several providers on one host: the longest base path whose provider ``supports`` the tail.
        """
        candidates = [(m.provider, tail) for m in self._mounts[(host.lower(), port)]
                      if (tail := m.tail(path)) is not None]
        for provider, tail in candidates:
            if supports(provider, tail):
                return provider, tail
        return candidates[0] if candidates else (self._mounts[(host.lower(), port)][-1].provider, None)


def _primary(providers: list[ProviderConfig], ptype: str) -> ProviderConfig | None:
    """The provider a type's public host maps to: the one named after the type, else the first.
    Never a BYOK-only provider (``chatgpt``): its upstream is ChatGPT's backend, not the public API."""
    of_type = [p for p in providers if p.type == ptype and not getattr(p, "byok_only", False)]
    return next((p for p in of_type if p.name == ptype), of_type[0] if of_type else None)


def _subscription_hosts(providers: list[ProviderConfig]) -> list[tuple[str, ProviderConfig]]:
    """(base URL, provider) of the hosts that subscription tools call, which cannot be changed: each
    Copilot plan's host (the copilot provider of that ``PLAN``, else the first copilot provider)
    and ChatGPT's backend (Codex logged in with ChatGPT) for a provider named ``chatgpt``."""
    found: list[tuple[str, ProviderConfig]] = []
    copilots = [p for p in providers if p.type == CopilotProvider.type]
    for plan, base_url in PLAN_BASE_URLS.items():
        chosen = next((p for p in copilots if getattr(p, "plan", "") == plan), copilots[0] if copilots else None)
        if chosen is not None:
            found.append((base_url, chosen))
    chatgpt = next((p for p in providers if p.name == CHATGPT and getattr(p, "byok_only", False)), None)
    if chatgpt is not None:
        found.append((CHATGPT_BASE_URL, chatgpt))
    return found
