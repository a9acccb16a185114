"""One typed settings object, resolved as flag > environment > YAML file > default.

Every option is a row of the ``OPTIONS`` table; the CLI builds its flags from it, the docs page
is generated from it, and ``load_settings`` resolves it. A value that cannot work raises
``ConfigError`` with one line that names the option. ``Settings`` has one typed field per row
(checked when the package is imported: add both together).

The rows live by area, each beside the ``Settings`` fields it fills:

- ``server.py``         where the server listens and stores, shutdown, worker processes, reading requests
- ``providers.py``      the bridge switch and the single-provider options; ``ProviderConfig``,
                        ``ProviderFields`` and ``ProviderKind`` (how provider types read their settings)
- ``bridge.py``         what the bridge does to each request (actor headers, redaction)
- ``governance.py``     retention, budgets, the governance refresh (and the YAML governance keys)
- ``resilience.py``     the limits and the circuit breaker
- ``observability.py``  logs, metrics, traces
- ``mcp.py``            MCP tools injection and ``McpServerConfig``
- ``proxy.py``          the AI Bridge Proxy (and ``check_proxy``)

``settings.py`` joins the rows into ``OPTIONS`` (in the order of ``--help`` and
docs/configuration.md) and the fields into ``Settings``; ``values.py`` parses values by kind;
``option.py`` is one row; ``loading.py`` resolves them; ``resolve.py`` reads the providers and
MCP servers configured by index.

Layering: this package is the lowest layer and imports nothing else from ``aibridge``. Provider
types live in ``bridge/providers`` and read their own settings through the small interface
defined in ``providers.py``: a ``ProviderKind`` (what a type is called and how it reads its
settings) is given to ``load_settings``, which hands it a ``ProviderFields`` per configured
provider (its ``CODER_AIBRIDGE_PROVIDER_<N>_*`` fields, or the single-provider options mapped onto
the same field names) and gets back a ``ProviderConfig``. This package keeps only what every type
shares: the indexed-provider syntax (env and YAML), provider names, duplicates, and "none configured".
"""

from aibridge.config.governance import GOVERNANCE_YAML_KEYS
from aibridge.config.loading import CONFIG_PATH_ENV, load_settings, read_yaml
from aibridge.config.mcp import MCP_ENV_PREFIX, MCP_FIELDS, MCP_SERVER_FLAG, McpServerConfig
from aibridge.config.option import ENV_ALIAS_PREFIX, ENV_PREFIX, FLAG_ALIAS_PREFIX, FLAG_PREFIX, Option
from aibridge.config.providers import ProviderConfig, ProviderFields, ProviderKind
from aibridge.config.proxy import PROXY_OPTIONS, check_proxy
from aibridge.config.resolve import (
    RESERVED_PROVIDER_NAMES,
    check_provider_name,
    indexed_entries,
    legacy_fields,
    legacy_label,
    provider_from_values,
    resolve_mcp_servers,
    resolve_providers,
)
from aibridge.config.settings import (
    OPTIONS,
    OPTIONS_BY_KEY,
    STORAGE_OPTIONS,
    Settings,
    check_settings_fields,
    postgres_async_url,
    redact_url,
)
from aibridge.config.values import (
    REDACT_MODES,
    ConfigError,
    format_duration,
    parse_address,
    parse_bool,
    parse_cidrs,
    parse_duration,
    parse_float,
    parse_int,
    parse_path,
    parse_redact,
    parse_url,
    parse_workers,
    usable_cpus,
)

__all__ = [
    "CONFIG_PATH_ENV", "ENV_ALIAS_PREFIX", "ENV_PREFIX", "FLAG_ALIAS_PREFIX", "FLAG_PREFIX", "GOVERNANCE_YAML_KEYS",
    "MCP_ENV_PREFIX", "MCP_FIELDS", "MCP_SERVER_FLAG", "OPTIONS", "OPTIONS_BY_KEY", "PROXY_OPTIONS", "REDACT_MODES",
    "RESERVED_PROVIDER_NAMES", "STORAGE_OPTIONS", "ConfigError", "McpServerConfig", "Option", "ProviderConfig",
    "ProviderFields", "ProviderKind", "Settings", "check_provider_name", "check_proxy", "check_settings_fields",
    "format_duration", "indexed_entries", "legacy_fields", "legacy_label", "load_settings", "parse_address",
    "parse_bool", "parse_cidrs", "parse_duration", "parse_float", "parse_int", "parse_path", "parse_redact",
    "parse_url", "parse_workers", "postgres_async_url", "provider_from_values", "read_yaml", "redact_url",
    "resolve_mcp_servers", "resolve_providers", "usable_cpus",
]
