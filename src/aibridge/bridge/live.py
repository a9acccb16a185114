"""The providers this server serves now: the configured ones, and the ones created through the API.

Configured providers (environment, flags, YAML) are built once at start: ``source: config``,
read-only through the API. Providers created through the API (``store/providers.py``) are rows;
every change bumps the providers generation (``store/changes.py``), and each worker rebuilds
from the rows on its first request after the generation moved: at once on every worker of the
server that made the change, within 1 s on the other replicas. No restart.

A row becomes an ``Entry`` with a status: ``enabled`` (built and served), ``disabled`` (its
routes answer a non-retryable 403), or ``error`` (it cannot be built: a key that does not
decrypt, a setting its type refuses, a name a configured provider took; its routes answer 503
saying why). A row that did not change keeps its built provider (its key pool's cooldowns, its
connections); a replaced one is closed once requests still using it had time to finish.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.bridge import scrub
from aibridge.bridge.credentials import mask
from aibridge.bridge.diagnostics import Diagnosed
from aibridge.bridge.providers import PROVIDER_KINDS, build_provider
from aibridge.bridge.providers.base import Provider
from aibridge.bridge.providers.keypool import KeyCooldownCollector, split_keys
from aibridge.bridge.scrape import METRIC_PREFIX, Collector
from aibridge.config import ConfigError, ProviderConfig, Settings, provider_from_values
from aibridge.store import providers as store
from aibridge.store.changes import Generations
from aibridge.store.providers import SECRET_SETTINGS, StoredProvider
from aibridge.store.secrets import SecretBox, SecretError

log = logging.getLogger("aibridge.providers")
ENABLED, DISABLED, ERROR = "enabled", "disabled", "error"
CONFIG, API = "config", "api"
RETRY_AFTER_FAILURE = 1.0       # seconds between reloads while the database does not answer
RETIRED_CLOSE_AFTER = 3600.0    # a replaced provider's connections outlive any request still using them
_CONFIG_ID = uuid.UUID("5b0c0e57-6a1d-4f4e-9a53-0c0f1a7e0d11")   # namespace of the configured providers' ids


@dataclass(frozen=True)
class Entry:
    """One provider as this server sees it."""

    id: uuid.UUID
    name: str
    type: str
    source: str                          # config | api
    status: str                          # enabled | disabled | error
    error: str = ""                      # why the status is error
    config: ProviderConfig | None = None
    stored: StoredProvider | None = None

    @property
    def base_url(self) -> str:
        if self.stored is not None:
            return self.stored.base_url or (self.config.base_url if self.config else "")
        return self.config.base_url if self.config else ""


def config_id(name: str) -> uuid.UUID:
    return uuid.uuid5(_CONFIG_ID, name)


def config_settings(config: ProviderConfig) -> dict[str, object]:
    """What a configured provider shows as ``settings``: its type's own fields, never a credential."""
    skipped = {"kind", "type", "name", "base_url", "key", "byok_only"}
    shown: dict[str, object] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name in skipped or "key" in f.name or "secret" in f.name or not isinstance(value, (str, int, bool)):
            continue
        shown[f.name] = value
    return shown


def config_of(settings: Settings, name: str, type_: str, base_url: str, values: Mapping[str, str],
              keys: list[str]) -> ProviderConfig:
    """A stored provider's configuration (raises ConfigError naming the API field at fault)."""
    # KEY and BASE_URL only when given: a type that has neither (Bedrock) must not see them as unknown fields.
    given = {"KEY": ",".join(keys), "BASE_URL": base_url}
    fields_ = {"TYPE": type_, "NAME": name, **{k: v for k, v in given.items() if v},
               **{k.upper(): v for k, v in values.items()}}
    names = _ApiFieldNames({"TYPE": "type", "NAME": "name", "KEY": "api_keys", "BASE_URL": "base_url"})
    return provider_from_values(fields_, names, settings, PROVIDER_KINDS, strict=True)


class _ApiFieldNames(dict[str, str]):
    def __missing__(self, field_name: str) -> str:
        return f"settings.{field_name.lower()}"


class LiveProviders:
    """The served providers by name (``served``) and every provider's entry (``entries``)."""

    def __init__(self, settings: Settings, engine: AsyncEngine, generations: Generations, box: SecretBox,
                 other_secrets: Mapping[str, str]) -> None:
        self._settings = settings
        self._engine = engine
        self._box = box
        self._other_secrets = dict(other_secrets)       # kept out of logs beside the keys (MCP URLs)
        self._changed = generations.providers
        self._generation = -1
        self._next_try = 0.0
        self._lock = asyncio.Lock()
        self._built: dict[str, tuple[StoredProvider, Provider]] = {}
        self._retired: list[tuple[float, Provider]] = []
        self._closing: set[asyncio.Task[None]] = set()
        self.listeners: list[Callable[[], None]] = []     # told after each reload (the proxy's hosts)
        self.last_reload = self.last_success = 0.0
        self.served: dict[str, Provider] = {}
        self.entries: dict[str, Entry] = {}
        for cfg in settings.providers:
            self.served[cfg.name] = Diagnosed(build_provider(cfg), cfg.base_url)
            self.entries[cfg.name] = Entry(config_id(cfg.name), cfg.name, cfg.type, CONFIG, ENABLED, config=cfg)
        self._configured = dict(self.served)
        self._register_secrets()

    @property
    def stale(self) -> bool:
        """The rows changed since the last build (a shared-memory read; the hot path's only cost)."""
        return self._changed.value != self._generation and time.monotonic() >= self._next_try

    async def refresh(self) -> None:
        """Rebuild from the rows if they changed (concurrent callers wait for one rebuild)."""
        async with self._lock:
            if self.stale:
                await self._reload()

    async def _reload(self) -> None:
        generation = self._changed.value          # before the read: a change during it reads again
        self.last_reload = time.time()
        try:
            rows = await store.list_providers(self._engine)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("cannot read the providers created through the API (%s); serving the ones known, "
                        "retrying", type(exc).__name__)
            self._next_try = time.monotonic() + RETRY_AFTER_FAILURE
            return
        self._apply(rows)
        self._generation = generation
        self.last_success = self.last_reload
        for listener in self.listeners:
            listener()

    def _apply(self, rows: list[StoredProvider]) -> None:
        served = dict(self._configured)
        entries = {name: e for name, e in self.entries.items() if e.source == CONFIG}
        built: dict[str, tuple[StoredProvider, Provider]] = {}
        for row in rows:
            entry, provider = self._entry(row)
            entries[row.name] = entry
            if provider is not None:
                served[row.name] = provider
                built[row.name] = (row, provider)
        now = time.monotonic()
        for name, (_row, old) in self._built.items():
            if built.get(name, (None, None))[1] is not old:
                self._retired.append((now, old))
        had_some = bool(self.served) or not self.last_success      # say it at start, and when the last goes
        self._built, self.served, self.entries = built, served, entries
        self._register_secrets()
        self._close_retired(now - RETIRED_CLOSE_AFTER)
        if self._settings.aibridge_enabled and not served and had_some:
            log.warning("AI Bridge is enabled but serves no provider: configure one (--aibridge-openai-key, "
                        "--aibridge-anthropic-key, CODER_AIBRIDGE_PROVIDER_0_TYPE, …) or create one with "
                        "`aibridge providers create`")

    def _entry(self, row: StoredProvider) -> tuple[Entry, Provider | None]:
        def entry(status: str, error: str = "", config: ProviderConfig | None = None) -> Entry:
            return Entry(row.id, row.name, row.type, API, status, error, config, row)

        if row.name in self._configured:
            return entry(ERROR, f"the name {row.name!r} is taken by a configured provider"), None
        previous = self._built.get(row.name)
        if previous is not None and previous[0] == row:
            return entry(ENABLED, config=self.entries[row.name].config), previous[1]
        try:
            config = config_of(self._settings, row.name, row.type, row.base_url, self._plain_settings(row),
                               [self._box.decrypt(k.ciphertext) for k in row.keys])
            if not row.enabled:
                return entry(DISABLED, config=config), None
            provider: Provider = Diagnosed(build_provider(config), config.base_url)
        except (ConfigError, SecretError, ValueError) as exc:
            log.error("provider %s (created through the API) cannot be built: %s", row.name, exc)
            return entry(ERROR if row.enabled else DISABLED, str(exc)), None
        return entry(ENABLED, config=config), provider

    def _plain_settings(self, row: StoredProvider) -> dict[str, str]:
        return {k: self._box.decrypt(v) if k in SECRET_SETTINGS else v for k, v in row.settings.items()}

    def _register_secrets(self) -> None:
        scrub.register({**self._other_secrets, **scrub.provider_secrets(self.served.values())})

    def _close_retired(self, before: float) -> None:
        keep = []
        for retired_at, provider in self._retired:
            if retired_at < before:
                task = asyncio.get_running_loop().create_task(provider.close())
                self._closing.add(task)             # held until done: a task nobody holds may be collected
                task.add_done_callback(self._closing.discard)
            else:
                keep.append((retired_at, provider))
        self._retired = keep

    def configs(self) -> list[ProviderConfig]:
        """The configurations of the served providers (the proxy decrypts their hosts)."""
        return [e.config for name, e in self.entries.items() if name in self.served and e.config is not None]

    def key_hints(self, entry: Entry) -> list[str]:
        """The masked keys of a configured provider (a stored one keeps its own)."""
        key = getattr(entry.config, "key", "")
        return [mask(k) for k in split_keys(key)] if isinstance(key, str) else []

    def collectors(self) -> list[Collector]:
        return [_ProvidersCollector(self), KeyCooldownCollector(lambda: self.served.values())]

    async def close(self) -> None:
        for provider in {id(p): p for p in [*self.served.values(), *(p for _, p in self._retired)]}.values():
            await provider.close()


class _ProvidersCollector:
    """``provider_info{name,type,status}`` and when the providers were last reloaded."""

    def __init__(self, live: LiveProviders) -> None:
        self.live = live

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(METRIC_PREFIX + "provider_info", "Each provider this server knows, with its "
                                 "status (enabled, disabled, error); always 1.", labels=["name", "type", "status"])
        for entry in self.live.entries.values():
            info.add_metric([entry.name, entry.type, entry.status], 1)
        yield info
        yield GaugeMetricFamily(METRIC_PREFIX + "providers_last_reload_timestamp_seconds",
                                "When the providers created through the API were last read (Unix time).",
                                value=self.live.last_reload)
        yield GaugeMetricFamily(METRIC_PREFIX + "providers_last_reload_success_timestamp_seconds",
                                "When the providers created through the API were last read successfully.",
                                value=self.live.last_success)
