"""The option table (every area's rows, in the order of ``--help`` and docs/configuration.md) and
the ``Settings`` it fills: one typed field per row, declared beside the row in its area's module
(checked when this module is imported: add both together)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, get_type_hints

from aibridge.config.audit import AUDIT_OPTIONS, AuditSettings
from aibridge.config.bridge import REQUEST_OPTIONS, BridgeSettings
from aibridge.config.byok import BYOK_OPTIONS, ByokSettings
from aibridge.config.governance import (
    BUDGET_POLICY_OPTIONS,
    GOVERNANCE_OPTIONS,
    RETENTION_OPTIONS,
    BudgetPolicySettings,
    GovernanceSettings,
)
from aibridge.config.mcp import MCP_OPTIONS, McpServerConfig, McpSettings
from aibridge.config.observability import OBSERVABILITY_OPTIONS, STRUCTURED_LOG_OPTIONS, ObservabilitySettings
from aibridge.config.oidc import OIDC_OPTIONS, OidcSettings
from aibridge.config.option import Option
from aibridge.config.providers import PROVIDER_OPTIONS, ProviderConfig, ProviderSettings
from aibridge.config.proxy import PROXY_OPTIONS, ProxySettings
from aibridge.config.resilience import CIRCUIT_BREAKER_OPTIONS, LIMIT_OPTIONS, ResilienceSettings
from aibridge.config.selfservice import SELF_SERVICE_OPTIONS, SelfServiceSettings
from aibridge.config.server import (
    CONNECTION_OPTIONS,
    PROCESS_OPTIONS,
    SERVER_OPTIONS,
    SHUTDOWN_OPTIONS,
    TOKEN_OPTIONS,
    ServerSettings,
)
from aibridge.config.values import PARSERS, ConfigError

OPTIONS: tuple[Option, ...] = (
    *SERVER_OPTIONS,
    *PROVIDER_OPTIONS,
    *RETENTION_OPTIONS,
    *AUDIT_OPTIONS,
    *LIMIT_OPTIONS,
    *GOVERNANCE_OPTIONS,
    *BUDGET_POLICY_OPTIONS,
    *STRUCTURED_LOG_OPTIONS,
    *REQUEST_OPTIONS,
    *BYOK_OPTIONS,
    *CIRCUIT_BREAKER_OPTIONS,
    *MCP_OPTIONS,
    *OBSERVABILITY_OPTIONS,
    *SHUTDOWN_OPTIONS,
    *PROXY_OPTIONS,
    *PROCESS_OPTIONS,
    *TOKEN_OPTIONS,
    *SELF_SERVICE_OPTIONS,
    *CONNECTION_OPTIONS,
    *OIDC_OPTIONS,
)

OPTIONS_BY_KEY = {opt.key: opt for opt in OPTIONS}
STORAGE_OPTIONS = tuple(opt for opt in OPTIONS if opt.storage)


@dataclass(frozen=True)
class Settings(ServerSettings, ProviderSettings, GovernanceSettings, ResilienceSettings, BridgeSettings,
               ObservabilitySettings, McpSettings, ProxySettings, AuditSettings, BudgetPolicySettings,
               OidcSettings, ByokSettings, SelfServiceSettings):
    """Every option's typed value (the fields come from each area's class), and what is derived from them."""

    providers: tuple[ProviderConfig, ...] = field(default=())
    mcp_servers: tuple[McpServerConfig, ...] = field(default=())
    governance: dict[str, Any] = field(default_factory=dict)    # aibridge.{prices,budgets,model_rules} of the YAML

    @property
    def database_url(self) -> str:
        if self.postgres_url:
            return postgres_async_url(self.postgres_url)
        return f"sqlite+aiosqlite:///{self.data_dir / 'aibridge.db'}"

    @property
    def public_url(self) -> str:
        return (self.access_url or f"http://{self.http_address}").rstrip("/")


def _parsed_type(kind: str) -> Any:
    """What an option kind's parser returns (its return annotation; ``str`` for ``str`` itself)."""
    parser = PARSERS[kind]
    return str if parser is str else get_type_hints(parser)["return"]


def check_settings_fields(options: Sequence[Option], settings_type: type = Settings) -> None:
    """``Settings`` holds one field per option, typed as its parser returns. The table and the
    dataclass are written side by side, so a row added without its field (or the reverse) fails
    here, at import, instead of at the first ``settings.<key>``. Fields with a default (``providers``)
    are derived from the options, not options themselves."""
    hints = get_type_hints(settings_type)
    declared = {f.name for f in fields(settings_type)
                if f.default is MISSING and f.default_factory is MISSING}
    keys = {opt.key for opt in options}
    if declared != keys:
        missing, extra = sorted(keys - declared), sorted(declared - keys)
        raise TypeError(f"Settings and OPTIONS disagree: options without a Settings field {missing}, "
                        f"Settings fields without an option {extra}")
    for opt in options:
        parsed = _parsed_type(opt.kind)
        if hints[opt.key] != parsed:
            raise TypeError(f"Settings.{opt.key} is {hints[opt.key]!r} but option kind {opt.kind!r} gives {parsed!r}")


check_settings_fields(OPTIONS)


def postgres_async_url(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    raise ConfigError(f"--postgres-url: unsupported URL {redact_url(url)!r} (use postgresql://...)")


def redact_url(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
