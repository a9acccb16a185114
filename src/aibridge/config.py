"""One typed settings object, resolved as flag > environment > YAML file > default.

Every option lives in the ``OPTIONS`` table below; the CLI builds its flags from it, the docs
page is generated from it, and ``load_settings`` resolves it. A value that cannot work raises
``ConfigError`` with one line that names the option. ``Settings`` has one typed field per row
(checked when this module is imported: add both together).

Layering: this module is the lowest layer and imports nothing else from ``aibridge`` (but the
pure ``yamlkeys``). Provider
types live in ``bridge/providers`` and read their own settings through the small interface
defined here: a ``ProviderKind`` (what a type is called and how it reads its settings) is given
to ``load_settings``, which hands it a ``ProviderFields`` per configured provider (its
``CODER_AIBRIDGE_PROVIDER_<N>_*`` fields, or the single-provider options mapped onto the same field
names) and gets back a ``ProviderConfig``. This module keeps only what every type shares: the
indexed-provider syntax (env and YAML), provider names, duplicates, and "none configured".
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, get_type_hints
from urllib.parse import urlsplit

import yaml

from aibridge.yamlkeys import ANY, FreeKeys, ListOf, Schema, unknown_key

log = logging.getLogger("aibridge.config")

# Coder renamed the product AI Gateway: every ``aibridge`` flag and variable is also accepted
# under the new name. The ``aibridge`` names stay primary: given under both, the ``aibridge``
# value wins, with a warning.
ENV_PREFIX, ENV_ALIAS_PREFIX = "CODER_AIBRIDGE_", "CODER_AI_GATEWAY_"
FLAG_PREFIX, FLAG_ALIAS_PREFIX = "--aibridge-", "--ai-gateway-"


class ConfigError(Exception):
    """A configuration that cannot work. The message is one line naming the option."""


# ---------------------------------------------------------------- value parsers

_DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
    "d": 86400.0, "w": 604800.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d|w)")


def parse_duration(text: str) -> float:
    """Go-style duration plus ``d`` and ``w`` ("90d", "1h30m", "0") → seconds."""
    value = text.strip()
    if value in ("0", "0s"):
        return 0.0
    if not value or _DURATION_PART.sub("", value) != "":
        raise ValueError(f"invalid duration {text!r} (use e.g. 90d, 2w, 1440h, 30m, 10s)")
    return sum(float(num) * _DURATION_UNITS[unit] for num, unit in _DURATION_PART.findall(value))


def format_duration(seconds: float) -> str:
    if seconds == 0:
        return "0"
    for unit in ("w", "d", "h", "m", "s"):
        size = _DURATION_UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds}s"


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"invalid boolean {text!r} (use true or false)")


def parse_int(text: str) -> int:
    try:
        number = int(text.strip())
    except ValueError:
        raise ValueError(f"invalid integer {text!r}") from None
    if number < 0:
        raise ValueError(f"must not be negative, got {number}")
    return number


def parse_float(text: str) -> float:
    try:
        number = float(text.strip())
    except ValueError:
        raise ValueError(f"invalid number {text!r}") from None
    if number < 0:
        raise ValueError(f"must not be negative, got {number}")
    return number


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask (a cpuset), capped by a cgroup CPU quota (a
    container's CPU limit, which the mask does not show), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:          # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cpus, quota) if quota else cpus)


def _cgroup_cpu_quota() -> int | None:
    """cgroup v2 ``cpu.max`` ("200000 100000" → 2) or v1 ``cpu.cfs_quota_us``; None when unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text().strip()
            period = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1") or not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return None
    return -(-int(quota) // int(period))        # rounded up: 1.5 CPUs → 2 workers


def parse_workers(text: str) -> int:
    """``auto`` (or 0): one worker per usable CPU; else a positive count."""
    value = text.strip().lower()
    if value in ("auto", "0"):
        return usable_cpus()
    try:
        return max(1, parse_int(value))
    except ValueError:
        raise ValueError(f"invalid worker count {text!r} (use a number, or auto for one per CPU)") from None


def parse_address(text: str) -> str:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid address {text!r} (use HOST:PORT, e.g. 127.0.0.1:3000)")
    return f"{host or '0.0.0.0'}:{port}"


def parse_url(text: str) -> str:
    value = text.strip()
    if value and not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"invalid URL {text!r} (must start with http:// or https://)")
    return value


def parse_path(text: str) -> Path:
    return Path(os.path.expanduser(text.strip()))


def parse_cidrs(text: str) -> tuple[str, ...]:
    """Comma-separated CIDRs ("10.0.0.0/8, fd00::/8") in canonical form."""
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ValueError(f"invalid CIDR {part!r} (use e.g. 10.0.0.0/8,192.168.1.0/24)") from None
    return tuple(networks)


REDACT_MODES = ("store", "upstream", "off")


def parse_redact(text: str) -> str:
    value = text.strip().lower()
    if value not in REDACT_MODES:
        raise ValueError(f"invalid redaction mode {text!r} (use {', '.join(REDACT_MODES)})")
    return value


_PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str, "bool": parse_bool, "int": parse_int, "float": parse_float,
    "duration": parse_duration, "address": parse_address, "url": parse_url, "path": parse_path,
    "cidrs": parse_cidrs,
    "workers": parse_workers,
    "redact": parse_redact,
}


# ---------------------------------------------------------------- the option table

@dataclass(frozen=True)
class Option:
    key: str            # attribute of Settings
    env: str
    default: str        # as a user would write it; parsed like any other value
    kind: str           # a key of _PARSERS
    help: str
    secret: bool = False
    yaml: str = ""      # dotted path in the YAML file; derived from key when empty
    storage: bool = False  # also needed by commands that only touch the database

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def alias_env(self) -> str:
        """``CODER_AI_GATEWAY_…`` for a ``CODER_AIBRIDGE_…`` variable, else empty."""
        return ENV_ALIAS_PREFIX + self.env.removeprefix(ENV_PREFIX) if self.env.startswith(ENV_PREFIX) else ""

    @property
    def alias_flag(self) -> str:
        """``--ai-gateway-…`` for an ``--aibridge-…`` flag, else empty."""
        flag = self.flag
        return FLAG_ALIAS_PREFIX + flag.removeprefix(FLAG_PREFIX) if flag.startswith(FLAG_PREFIX) else ""

    @property
    def alias_key(self) -> str:
        """Where the CLI puts the alias flag's value (beside ``key``), else empty."""
        return "ai_gateway_" + self.key.removeprefix("aibridge_") if self.alias_flag else ""

    @property
    def yaml_path(self) -> tuple[str, ...]:
        if self.yaml:
            return tuple(self.yaml.split("."))
        if self.key.startswith("aibridge_"):
            return ("aibridge", self.key.removeprefix("aibridge_"))
        return (self.key,)


def _cb(suffix: str, default: str, kind: str, help_: str) -> Option:
    return Option(f"aibridge_circuit_breaker_{suffix}", f"CODER_AIBRIDGE_CIRCUIT_BREAKER_{suffix.upper()}",
                  default, kind, help_)


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

OPTIONS: tuple[Option, ...] = (
    Option("http_address", "CODER_HTTP_ADDRESS", "127.0.0.1:3000", "address",
           "Address the HTTP server listens on."),
    Option("access_url", "CODER_ACCESS_URL", "", "url",
           "External URL developers use to reach this server (default: http://<http-address>)."),
    Option("postgres_url", "CODER_PG_CONNECTION_URL", "", "str",
           "PostgreSQL connection URL. Empty: embedded SQLite in the data directory.",
           secret=True, storage=True),
    Option("data_dir", "CODER_AIBRIDGE_DATA_DIR", "~/.local/share/aibridge", "path",
           "Directory for the SQLite database and the recording journal.", storage=True),
    Option("aibridge_enabled", "CODER_AIBRIDGE_ENABLED", "false", "bool",
           "Serve the AI Bridge provider routes."),
    Option("aibridge_openai_key", "CODER_AIBRIDGE_OPENAI_KEY", "", "str",
           "OpenAI API key used for all upstream OpenAI calls (several: separated by commas, a key pool).",
           secret=True),
    Option("aibridge_openai_base_url", "CODER_AIBRIDGE_OPENAI_BASE_URL", "https://api.openai.com/v1/", "url",
           "Base URL of the OpenAI API (or any OpenAI-compatible gateway)."),
    Option("aibridge_anthropic_key", "CODER_AIBRIDGE_ANTHROPIC_KEY", "", "str",
           "Anthropic API key used for all upstream Anthropic calls (several: separated by commas, a key pool).",
           secret=True),
    Option("aibridge_anthropic_base_url", "CODER_AIBRIDGE_ANTHROPIC_BASE_URL", "https://api.anthropic.com/", "url",
           "Base URL of the Anthropic API (or any Anthropic-compatible gateway)."),
    Option("aibridge_bedrock_region", "CODER_AIBRIDGE_BEDROCK_REGION", "", "str",
           "AWS region of Amazon Bedrock; setting it sends Anthropic traffic to Bedrock."),
    Option("aibridge_bedrock_base_url", "CODER_AIBRIDGE_BEDROCK_BASE_URL", "", "url",
           "Bedrock runtime base URL (wins over the region)."),
    Option("aibridge_bedrock_access_key", "CODER_AIBRIDGE_BEDROCK_ACCESS_KEY", "", "str",
           "AWS access key id for Bedrock (empty: the standard AWS credential chain).", secret=True),
    Option("aibridge_bedrock_access_key_secret", "CODER_AIBRIDGE_BEDROCK_ACCESS_KEY_SECRET", "", "str",
           "AWS secret access key for Bedrock.", secret=True),
    Option("aibridge_bedrock_model", "CODER_AIBRIDGE_BEDROCK_MODEL",
           "global.anthropic.claude-sonnet-4-5-20250929-v1:0", "str",
           "Bedrock model for every request whose model is not a haiku model."),
    Option("aibridge_bedrock_small_fast_model", "CODER_AIBRIDGE_BEDROCK_SMALL_FAST_MODEL",
           "global.anthropic.claude-haiku-4-5-20251001-v1:0", "str",
           "Bedrock model for requests whose model contains 'haiku'."),
    Option("aibridge_retention", "CODER_AIBRIDGE_RETENTION", "60d", "duration",
           "How long interception records are kept (0 keeps them forever)."),
    Option("aibridge_max_concurrency", "CODER_AIBRIDGE_MAX_CONCURRENCY", "0", "int",
           "Maximum concurrent intercepted requests (0: unlimited)."),
    Option("aibridge_rate_limit", "CODER_AIBRIDGE_RATE_LIMIT", "0", "float",
           "Requests per second allowed per user, all its tokens together (0: unlimited)."),
    Option("aibridge_redis_url", "CODER_AIBRIDGE_REDIS_URL", "", "str",
           "Redis URL for rate limits shared by several replicas (empty: counted in this process).",
           secret=True),
    Option("aibridge_budget_max_reservation", "CODER_AIBRIDGE_BUDGET_MAX_RESERVATION", "1", "float",
           "Most a request reserves from its user's budget before the upstream call, in USD: caps the cost "
           "estimate so agents with large contexts are not refused, and bounds the overshoot."),
    Option("aibridge_budget_output_estimate", "CODER_AIBRIDGE_BUDGET_OUTPUT_ESTIMATE", "4096", "int",
           "Output tokens a budget reservation assumes for a request that sets no max_tokens."),
    Option("aibridge_governance_refresh", "CODER_AIBRIDGE_GOVERNANCE_REFRESH", "10s", "duration",
           "How often prices, budgets and model rules are re-read even without a change signal (changes "
           "apply at once on this server and within 1 s on other replicas; this bounds staleness if "
           "those signals stop)."),
    Option("aibridge_structured_logging", "CODER_AIBRIDGE_STRUCTURED_LOGGING", "false", "bool",
           "Log one structured line per recorded item."),
    Option("aibridge_send_actor_headers", "CODER_AIBRIDGE_SEND_ACTOR_HEADERS", "false", "bool",
           "Send the acting user's id and name upstream in X-Ai-Bridge-Actor-* headers."),
    Option("aibridge_redact", "CODER_AIBRIDGE_REDACT", "store", "redact",
           "Secret redaction: store (secrets become [REDACTED:<kind>] before the database, logs and traces), "
           "upstream (also in the request sent upstream) or off."),
    Option("aibridge_circuit_breaker_enabled", "CODER_AIBRIDGE_CIRCUIT_BREAKER_ENABLED", "false", "bool",
           "Stop calling an upstream that keeps failing."),
    _cb("failure_threshold", "5", "int", "Failures within the interval that open the circuit."),
    _cb("interval", "10s", "duration", "Window in which failures are counted."),
    _cb("timeout", "30s", "duration", "How long an open circuit rejects before trying again."),
    _cb("max_requests", "3", "int", "Trial requests allowed while half-open."),
    Option("aibridge_mcp_max_iterations", "CODER_AIBRIDGE_MCP_MAX_ITERATIONS", "10", "int",
           "Most rounds of injected MCP tool calls the bridge runs for one request (then it ends the answer "
           "with an error)."),
    Option("aibridge_mcp_timeout", "CODER_AIBRIDGE_MCP_TIMEOUT", "30s", "duration",
           "Time limit of one MCP tool call or tool listing."),
    Option("aibridge_mcp_refresh_interval", "CODER_AIBRIDGE_MCP_REFRESH_INTERVAL", "5m", "duration",
           "How often the tool lists of the MCP servers are refreshed (a failed listing is retried sooner)."),
    Option("prometheus_enable", "CODER_PROMETHEUS_ENABLE", "false", "bool",
           "Serve Prometheus metrics on /metrics and on the Prometheus address."),
    Option("prometheus_address", "CODER_PROMETHEUS_ADDRESS", "127.0.0.1:2112", "address",
           "Address of the separate Prometheus metrics listener."),
    Option("trace", "CODER_TRACE_ENABLE", "false", "bool",
           "Export OpenTelemetry traces over OTLP (configured with the standard OTEL_* variables)."),
    Option("log_json", "CODER_LOGGING_JSON", "false", "bool",
           "Write logs as JSON lines instead of human-readable text."),
    Option("shutdown_grace", "CODER_AIBRIDGE_SHUTDOWN_GRACE", "30s", "duration",
           "How long shutdown waits for in-flight requests to finish."),
    *PROXY_OPTIONS,
    Option("workers", "CODER_AIBRIDGE_WORKERS", "auto", "workers",
           "Worker processes sharing the HTTP port, one event loop each (auto: one per usable CPU; "
           "1: a single process).", yaml="aibridge.workers"),
    Option("uvloop", "CODER_AIBRIDGE_UVLOOP", "true", "bool",
           "Run the event loop on uvloop when it is installed (false: asyncio's own loop; the AI Bridge "
           "Proxy always runs on asyncio's loop).",
           yaml="aibridge.uvloop"),
    Option("request_read_timeout", "CODER_AIBRIDGE_REQUEST_READ_TIMEOUT", "60s", "duration",
           "How long a client may take to send a request body; a slower one gets 408."),
    # propagate (issue 20, 2.2): live tokens per user (the rate limit counts per user)
    Option("max_tokens_per_user", "CODER_MAX_TOKENS_PER_USER", "100", "int",
           "Most live (not revoked, not expired) API tokens a user may hold; creating another is refused "
           "(0: unlimited).", yaml="aibridge.max_tokens_per_user", storage=True),
    # -- netserve (issue 20): how the listeners hold connections (httpserver.py, listening.py)
    Option("aibridge_header_timeout", "CODER_AIBRIDGE_HEADER_TIMEOUT", "10s", "duration",
           "How long a client may take to send a request's line and headers, counted from the connection "
           "or from the first byte of a next request on it (0: no limit); a slower one is disconnected."),
    Option("aibridge_idle_timeout", "CODER_AIBRIDGE_IDLE_TIMEOUT", "75s", "duration",
           "How long an idle keep-alive connection stays open between requests (0: no limit). Above the "
           "60 s idle timeout of common load balancers, so they close first. Never cuts a running answer."),
    Option("aibridge_max_connections", "CODER_AIBRIDGE_MAX_CONNECTIONS", "10000", "int",
           "Most client connections open at once on the main port, per worker process (0: unlimited); "
           "one more is answered 503 'too many connections' and closed."),
    Option("aibridge_listen_backlog", "CODER_AIBRIDGE_LISTEN_BACKLOG", "65535", "int",
           "Listen queue of the main and proxy ports, per worker (capped by the kernel's "
           "net.core.somaxconn): connections a burst may open before the server accepts them."),
)

OPTIONS_BY_KEY = {opt.key: opt for opt in OPTIONS}
STORAGE_OPTIONS = tuple(opt for opt in OPTIONS if opt.storage)
CONFIG_PATH_ENV = "CODER_CONFIG_PATH"

# Names a provider may not take: they would shadow the API's own routes.
RESERVED_PROVIDER_NAMES = frozenset({"interceptions", "sessions", "clients", "models", "proxy", "prices", "budgets",
                                     "model-rules", "spend"})
# Governance rules in the YAML file (under ``aibridge:``), parsed by ``aibridge.governance.rules``.
GOVERNANCE_YAML_KEYS = ("prices", "budgets", "model_rules")
_PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


# ---------------------------------------------------------------- the settings object

@dataclass(frozen=True)
class ProviderConfig:
    """One configured provider. Each provider kind subclasses it with its own settings."""

    kind: str                # the registered provider kind that serves it (bridge/providers)
    type: str                # the TYPE it was configured as ("openai", "anthropic", …)
    name: str                # route segment: /api/v2/aibridge/<name>/...
    base_url: str            # where its requests go


@dataclass(frozen=True)
class McpServerConfig:
    id: str
    url: str
    authorization: str = ""
    allow: re.Pattern[str] | None = None
    deny: re.Pattern[str] | None = None

    def offers(self, tool: str) -> bool:
        """Deny beats allow; with neither, every tool."""
        if self.deny is not None and self.deny.search(tool):
            return False
        return self.allow is None or self.allow.search(tool) is not None


@dataclass(frozen=True)
class Settings:
    http_address: str
    access_url: str
    postgres_url: str
    data_dir: Path
    aibridge_enabled: bool
    aibridge_openai_key: str
    aibridge_openai_base_url: str
    aibridge_anthropic_key: str
    aibridge_anthropic_base_url: str
    aibridge_bedrock_region: str
    aibridge_bedrock_base_url: str
    aibridge_bedrock_access_key: str
    aibridge_bedrock_access_key_secret: str
    aibridge_bedrock_model: str
    aibridge_bedrock_small_fast_model: str
    aibridge_retention: float
    aibridge_max_concurrency: int
    aibridge_rate_limit: float
    aibridge_redis_url: str
    aibridge_budget_max_reservation: float
    aibridge_budget_output_estimate: int
    aibridge_governance_refresh: float
    aibridge_structured_logging: bool
    aibridge_send_actor_headers: bool
    aibridge_redact: str
    aibridge_circuit_breaker_enabled: bool
    aibridge_circuit_breaker_failure_threshold: int
    aibridge_circuit_breaker_interval: float
    aibridge_circuit_breaker_timeout: float
    aibridge_circuit_breaker_max_requests: int
    aibridge_mcp_max_iterations: int
    aibridge_mcp_timeout: float
    aibridge_mcp_refresh_interval: float
    prometheus_enable: bool
    prometheus_address: str
    trace: bool
    log_json: bool
    shutdown_grace: float
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
    workers: int
    uvloop: bool
    request_read_timeout: float
    max_tokens_per_user: int        # propagate (issue 20, 2.2)
    # -- netserve (issue 20)
    aibridge_header_timeout: float
    aibridge_idle_timeout: float
    aibridge_max_connections: int
    aibridge_listen_backlog: int
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
    parser = _PARSERS[kind]
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


# ---------------------------------------------------------------- resolution

def read_yaml(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config: {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path} must hold a mapping at the top level")
    return data


def _yaml_value(doc: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = doc
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part, node.get(part.replace("_", "-")))
    return node


def _raw_value(opt: Option, flags: Mapping[str, Any], env: Mapping[str, str],
               doc: Mapping[str, Any]) -> tuple[str, str]:
    """The winning raw text for one option and where it came from (for error messages)."""
    flag_value, alias_flag_value = flags.get(opt.key), flags.get(opt.alias_key) if opt.alias_key else None
    if flag_value is not None:
        if alias_flag_value is not None:
            log.warning("both %s and %s are given; using %s", opt.flag, opt.alias_flag, opt.flag)
        return str(flag_value), opt.flag
    if alias_flag_value is not None:
        return str(alias_flag_value), opt.alias_flag
    if opt.env in env:
        if opt.alias_env in env:
            log.warning("both %s and %s are set; using %s", opt.env, opt.alias_env, opt.env)
        return env[opt.env], opt.env
    if opt.alias_env and opt.alias_env in env:
        return env[opt.alias_env], opt.alias_env
    yaml_value = _yaml_value(doc, opt.yaml_path)
    if yaml_value is not None:
        text = str(yaml_value).lower() if isinstance(yaml_value, bool) else str(yaml_value)
        return text, "config " + ".".join(opt.yaml_path)
    return opt.default, opt.flag


def load_settings(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
                  config_path: str | None = None, *, storage_only: bool = False,
                  provider_kinds: Sequence[ProviderKind] = ()) -> Settings:
    """The settings; with the bridge enabled, also its providers, read by ``provider_kinds``
    (``aibridge.bridge.providers.PROVIDER_KINDS``; needed unless ``storage_only``)."""
    flags = flags or {}
    env = os.environ if env is None else env
    doc = read_yaml(config_path or env.get(CONFIG_PATH_ENV))
    unknown = unknown_key(doc, yaml_schema())
    if unknown:
        raise ConfigError(unknown)
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        raw, source = _raw_value(opt, flags, env, doc)
        try:
            values[opt.key] = _PARSERS[opt.kind](raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    values["governance"] = {key: found for key in GOVERNANCE_YAML_KEYS
                            if (found := _yaml_value(doc, ("aibridge", key))) is not None}
    settings = Settings(**values)
    if values["postgres_url"]:
        postgres_async_url(values["postgres_url"])
    if storage_only:
        return settings
    check_proxy(settings)
    if not settings.aibridge_enabled:
        return settings
    providers = resolve_providers(settings, env, doc, provider_kinds)
    mcp_servers = resolve_mcp_servers(env, doc, flags.get("mcp_servers"))
    return Settings(**{**values, "providers": providers, "mcp_servers": mcp_servers})


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


# ---------------------------------------------------------------- providers

class ProviderFields:
    """One provider's settings as its type reads them, by field name (``KEY``, ``BASE_URL``,
    ``BEDROCK_REGION``, …): from ``CODER_AIBRIDGE_PROVIDER_<N>_*`` (or ``aibridge.providers[N]``), or
    from the single-provider options mapped onto the same names (``legacy``). ``option(field)`` is
    how the user wrote a field, so that messages name it."""

    __slots__ = ("_options", "_values", "legacy", "name", "settings")

    def __init__(self, name: str, values: Mapping[str, str], options: Mapping[str, str], settings: Settings,
                 *, legacy: bool = False) -> None:
        self.name = name              # the provider's name (route segment)
        self._values = values
        self._options = options
        self.settings = settings      # the whole settings, for defaults shared with the legacy options
        self.legacy = legacy

    def get(self, field_name: str) -> str:
        return self._values.get(field_name, "")

    def option(self, field_name: str) -> str:
        return self._options[field_name]

    def url(self, field_name: str, default: str = "") -> str:
        """The field as a URL (``default`` when empty); a bad one is a ConfigError naming the field."""
        try:
            url = parse_url(self.get(field_name)) or default
        except ValueError as exc:
            raise ConfigError(f"{self.option(field_name)}: {exc}") from None
        refuse_credentials(url, self.option(field_name))
        return url

    def error(self, field_name: str, message: str) -> ConfigError:
        return ConfigError(f"{self.option(field_name)}: {message}")


def legacy_fields(settings: Settings, name: str, keys: Mapping[str, str]) -> ProviderFields:
    """The single-provider options ``keys`` (field → Settings attribute) seen as a provider's fields."""
    values = {field_name: str(getattr(settings, key)) for field_name, key in keys.items()}
    options = {field_name: OPTIONS_BY_KEY[key].flag for field_name, key in keys.items()}
    return ProviderFields(name, values, options, settings, legacy=True)


def legacy_label(*keys: str) -> str:
    """How a duplicate-name error names the single-provider options that made a provider."""
    return "legacy options (" + ", ".join(f"{OPTIONS_BY_KEY[k].flag}, {OPTIONS_BY_KEY[k].env}" for k in keys) + ")"


class ProviderKind(Protocol):
    """How configuration reads one kind of provider (each registers itself in ``bridge/providers``).

    Several kinds may serve one ``type``: a *variant* (Bedrock serves type ``anthropic``) is asked
    first and answers None when its fields are absent, then the type's plain kind.
    """

    @property
    def type(self) -> str: ...

    @property
    def variant(self) -> bool: ...

    def from_fields(self, fields: ProviderFields) -> ProviderConfig | None:
        """The provider these indexed fields describe (None: a variant whose fields are absent)."""

    def from_legacy(self, settings: Settings) -> tuple[str, ProviderConfig] | None:
        """The provider the single-provider options make, with a label naming them (None: unset)."""


def _kinds_of(kinds: Sequence[ProviderKind], ptype: str) -> list[ProviderKind]:
    """The kinds serving ``ptype``, variants first."""
    return sorted((k for k in kinds if k.type == ptype), key=lambda k: not k.variant)


def _provider_types(kinds: Sequence[ProviderKind]) -> list[str]:
    return list(dict.fromkeys(k.type for k in kinds))


def _legacy_providers(s: Settings, kinds: Sequence[ProviderKind]) -> list[tuple[str, ProviderConfig]]:
    """The providers made by the single-provider options, each with the options that made it."""
    providers = []
    for ptype in _provider_types(kinds):
        for kind in _kinds_of(kinds, ptype):
            made = kind.from_legacy(s)
            if made is not None:
                providers.append(made)
                break
    return providers


def indexed_entries(env: Mapping[str, str], doc: Mapping[str, Any], prefix: str, yaml_key: str,
                    first_field: str, noun: str) -> list[tuple[str, dict[str, str]]]:
    """``<prefix>_<N>_<FIELD>`` variables (or the YAML list ``aibridge.<yaml_key>``) as (label, fields).

    Used by the indexed providers and MCP servers: indices contiguous from 0, variables win over YAML.
    ``CODER_AI_GATEWAY_…`` spellings of a ``CODER_AIBRIDGE_…`` prefix are accepted; the aibridge one wins."""
    alias = ENV_ALIAS_PREFIX + prefix.removeprefix(ENV_PREFIX) if prefix.startswith(ENV_PREFIX) else prefix
    pattern = re.compile(rf"^({re.escape(prefix)}|{re.escape(alias)})_(\d+)_([A-Z_]+)$")
    by_index: dict[int, dict[str, str]] = {}
    aliased: dict[tuple[int, str], str] = {}
    for name, value in env.items():
        match = pattern.match(name)
        if match and match.group(1) == prefix:
            by_index.setdefault(int(match.group(2)), {})[match.group(3)] = value
        elif match:
            aliased[int(match.group(2)), match.group(3)] = value
    for (index, field_name), value in aliased.items():
        fields = by_index.setdefault(index, {})
        if field_name in fields:
            log.warning("both %s_%d_%s and %s_%d_%s are set; using %s_%d_%s", prefix, index, field_name, alias,
                        index, field_name, prefix, index, field_name)
        else:
            fields[field_name] = value
    if by_index:
        missing = [i for i in range(max(by_index) + 1) if i not in by_index]
        if missing:
            raise ConfigError(f"{prefix}_{missing[0]}_{first_field}: {noun} indices must be "
                              f"contiguous from 0; index {missing[0]} is missing")
        return [(f"{prefix}_{i}", by_index[i]) for i in sorted(by_index)]
    listed = _yaml_value(doc, ("aibridge", yaml_key)) or []
    if not isinstance(listed, list):
        raise ConfigError(f"config aibridge.{yaml_key}: must be a list")
    return [(f"config aibridge.{yaml_key}[{i}]", {str(k).upper(): str(v) for k, v in item.items()})
            for i, item in enumerate(listed) if isinstance(item, Mapping)]


def _indexed_entries(env: Mapping[str, str], doc: Mapping[str, Any]) -> list[tuple[str, dict[str, str]]]:
    return indexed_entries(env, doc, "CODER_AIBRIDGE_PROVIDER", "providers", "TYPE", "provider")


class _FieldNames(dict[str, str]):
    """How the user wrote each field of one indexed provider: an environment variable or a YAML key."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self._label = label

    def __missing__(self, field_name: str) -> str:
        if self._label.startswith("CODER_"):
            return f"{self._label}_{field_name}"
        return f"{self._label}.{field_name.lower()}"


def _indexed_provider(label: str, values: dict[str, str], s: Settings,
                      kinds: Sequence[ProviderKind]) -> tuple[str, ProviderConfig]:
    names = _FieldNames(label)
    types = _provider_types(kinds)
    ptype = values.get("TYPE", "").strip().lower()
    if ptype not in types:
        raise ConfigError(f"{names['TYPE']}: must be one of {', '.join(types)}, got {ptype!r}")
    name = values.get("NAME", "").strip() or ptype
    if not _PROVIDER_NAME.match(name) or name in RESERVED_PROVIDER_NAMES:
        raise ConfigError(f"{names['NAME']}: {name!r} cannot be a provider name (lowercase letters, digits, "
                          f"'-' and '_'; not one of {', '.join(sorted(RESERVED_PROVIDER_NAMES))})")
    fields_ = ProviderFields(name, values, names, s)
    for kind in _kinds_of(kinds, ptype):
        config = kind.from_fields(fields_)
        if config is not None:
            return names["NAME"], config
    raise ConfigError(f"{names['TYPE']}: no provider kind of type {ptype!r} accepts these fields")


def resolve_providers(s: Settings, env: Mapping[str, str], doc: Mapping[str, Any],
                      kinds: Sequence[ProviderKind]) -> tuple[ProviderConfig, ...]:
    if not kinds:
        raise RuntimeError("load_settings needs provider_kinds (aibridge.bridge.providers.PROVIDER_KINDS)")
    legacy = _legacy_providers(s, kinds)
    indexed = [_indexed_provider(label, values, s, kinds) for label, values in _indexed_entries(env, doc)]
    seen: dict[str, str] = {}
    for label, provider in legacy + indexed:
        if provider.name in seen:
            raise ConfigError(f"{label}: provider name {provider.name!r} is already used by {seen[provider.name]}")
        seen[provider.name] = label
    providers = tuple(p for _, p in legacy + indexed)
    if not providers:
        raise ConfigError("--aibridge-enabled: AI Bridge is enabled but no provider is configured "
                          "(set --aibridge-openai-key, --aibridge-anthropic-key, --aibridge-bedrock-region "
                          "or CODER_AIBRIDGE_PROVIDER_0_TYPE)")
    return providers


# -- netserve (issue 20): what the YAML file may hold (yamlkeys.py), and credentials in base URLs

# The indexed providers' fields (DESIGN §2.2), as CODER_AIBRIDGE_PROVIDER_<N>_<FIELD> or lowercase in YAML.
PROVIDER_FIELDS = ("TYPE", "NAME", "KEY", "BASE_URL", "BEDROCK_REGION", "BEDROCK_BASE_URL", "BEDROCK_ACCESS_KEY",
                   "BEDROCK_ACCESS_KEY_SECRET", "BEDROCK_MODEL", "BEDROCK_SMALL_FAST_MODEL")


def yaml_schema() -> dict[str, Schema]:
    """Every key the YAML file may hold: the options' paths, the provider and MCP server lists, and
    the governance rules (their fields as ``governance/rules.py`` and ``governance/prices.py`` read them)."""
    schema: dict[str, Any] = {}
    for opt in OPTIONS:
        *parents, leaf = opt.yaml_path
        node = schema
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = ANY
    subject = {"user": ANY, "role": ANY}
    schema.setdefault("aibridge", {}).update({
        "providers": ListOf(dict.fromkeys((f.lower() for f in PROVIDER_FIELDS), ANY)),
        "mcp_servers": ListOf(dict.fromkeys((f.lower() for f in MCP_FIELDS), ANY)),
        "prices": FreeKeys(dict.fromkeys(("input", "output", "cache_read", "cache_write"), ANY)),
        "budgets": ListOf({**subject, "period": ANY, "limit_usd": ANY}),
        "model_rules": {"allow": ListOf({**subject, "models": ANY}),
                        "aliases": ListOf({"from": ANY, "to": ANY, "provider": ANY})},
    })
    return schema


def refuse_credentials(url: str, option: str) -> None:
    """A provider base URL with ``user:pass@``: the HTTP client would refuse every request (500s);
    the key belongs in the key option, and the URL would show the password in logs."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{option}: the URL holds credentials (user:password@); remove them and set the "
                          "provider's key option instead")


# ---------------------------------------------------------------- MCP servers whose tools are injected

MCP_ENV_PREFIX = "CODER_AIBRIDGE_MCP_SERVER"
MCP_SERVER_FLAG = "--aibridge-mcp-server"
MCP_FIELDS = ("ID", "URL", "AUTHORIZATION", "TOOL_ALLOW_REGEX", "TOOL_DENY_REGEX")
_MCP_ID = re.compile(r"^[a-z0-9_-]+$")


def _mcp_regex(text: str, setting: str) -> re.Pattern[str] | None:
    if not text:
        return None
    try:
        return re.compile(text)
    except re.error as exc:
        raise ConfigError(f"{setting}: invalid regular expression {text!r}: {exc}") from None


def _mcp_url(text: str, setting: str) -> str:
    value = text.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{setting}: invalid URL {value!r} (use http://HOST/PATH or https://HOST/PATH)")
    try:
        parts.port                            # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ConfigError(f"{setting}: invalid port in URL {value!r}") from None
    return value


def _mcp_server(label: str, values: dict[str, str]) -> McpServerConfig:
    unknown = sorted(set(values) - set(MCP_FIELDS))
    if unknown:
        raise ConfigError(f"{_FieldNames(label)[unknown[0]]}: unknown MCP server setting "
                          f"(known: {', '.join(MCP_FIELDS)})")
    server_id = values.get("ID", "").strip()
    if not _MCP_ID.match(server_id):
        raise ConfigError(f"{_FieldNames(label)['ID']}: {server_id!r} is not a valid MCP server ID "
                          "(lowercase letters, digits, '-' and '_')")
    return McpServerConfig(
        id=server_id,
        url=_mcp_url(values.get("URL", ""), _FieldNames(label)["URL"]),
        authorization=values.get("AUTHORIZATION", ""),
        allow=_mcp_regex(values.get("TOOL_ALLOW_REGEX", ""), _FieldNames(label)["TOOL_ALLOW_REGEX"]),
        deny=_mcp_regex(values.get("TOOL_DENY_REGEX", ""), _FieldNames(label)["TOOL_DENY_REGEX"]),
    )


def _mcp_flag_entries(specs: list[str]) -> list[tuple[str, dict[str, str]]]:
    """``--aibridge-mcp-server '{id: coder, url: https://…}'`` (repeatable) as (label, fields)."""
    entries = []
    for i, spec in enumerate(specs):
        label = f"{MCP_SERVER_FLAG}[{i}]"
        try:
            value = yaml.safe_load(spec)
        except yaml.YAMLError:
            value = None
        if not isinstance(value, Mapping):
            raise ConfigError(f"{label}: must be a mapping such as '{{id: coder, url: https://host/mcp}}', "
                              f"got {spec!r}")
        entries.append((label, {str(k).upper(): str(v) for k, v in value.items()}))
    return entries


def resolve_mcp_servers(env: Mapping[str, str], doc: Mapping[str, Any],
                        flag_specs: list[str] | None = None) -> tuple[McpServerConfig, ...]:
    servers: list[McpServerConfig] = []
    seen: dict[str, str] = {}
    entries = (_mcp_flag_entries(flag_specs) if flag_specs
               else indexed_entries(env, doc, MCP_ENV_PREFIX, "mcp_servers", "ID", "MCP server"))
    for label, values in entries:
        server = _mcp_server(label, values)
        if server.id in seen:
            raise ConfigError(f"{_FieldNames(label)['ID']}: MCP server ID {server.id!r} is already used "
                              f"by {seen[server.id]}")
        seen[server.id] = _FieldNames(label)["ID"]
        servers.append(server)
    return tuple(servers)
