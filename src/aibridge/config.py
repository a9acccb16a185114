"""One typed settings object, resolved as flag > environment > YAML file > default.

Every option lives in the ``OPTIONS`` table below; the CLI builds its flags from it, the docs
page is generated from it, and ``load_settings`` resolves it. A value that cannot work raises
``ConfigError`` with one line that names the option.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


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


_PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str, "bool": parse_bool, "int": parse_int, "float": parse_float,
    "duration": parse_duration, "address": parse_address, "url": parse_url,
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
    def yaml_path(self) -> tuple[str, ...]:
        if self.yaml:
            return tuple(self.yaml.split("."))
        if self.key.startswith("aibridge_"):
            return ("aibridge", self.key.removeprefix("aibridge_"))
        return (self.key,)


def _cb(suffix: str, default: str, kind: str, help_: str) -> Option:
    return Option(f"aibridge_circuit_breaker_{suffix}", f"CODER_AIBRIDGE_CIRCUIT_BREAKER_{suffix.upper()}",
                  default, kind, help_)


OPTIONS: tuple[Option, ...] = (
    Option("http_address", "CODER_HTTP_ADDRESS", "127.0.0.1:3000", "address",
           "Address the HTTP server listens on."),
    Option("access_url", "CODER_ACCESS_URL", "", "url",
           "External URL developers use to reach this server (default: http://<http-address>)."),
    Option("postgres_url", "CODER_PG_CONNECTION_URL", "", "str",
           "PostgreSQL connection URL. Empty: embedded SQLite in the data directory.",
           secret=True, storage=True),
    Option("data_dir", "CODER_AIBRIDGE_DATA_DIR", "~/.local/share/aibridge", "str",
           "Directory for the SQLite database and the recording journal.", storage=True),
    Option("aibridge_enabled", "CODER_AIBRIDGE_ENABLED", "false", "bool",
           "Serve the AI Bridge provider routes."),
    Option("aibridge_openai_key", "CODER_AIBRIDGE_OPENAI_KEY", "", "str",
           "OpenAI API key used for all upstream OpenAI calls.", secret=True),
    Option("aibridge_openai_base_url", "CODER_AIBRIDGE_OPENAI_BASE_URL", "https://api.openai.com/v1/", "url",
           "Base URL of the OpenAI API (or any OpenAI-compatible gateway)."),
    Option("aibridge_anthropic_key", "CODER_AIBRIDGE_ANTHROPIC_KEY", "", "str",
           "Anthropic API key used for all upstream Anthropic calls.", secret=True),
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
           "Requests per second allowed per token (0: unlimited)."),
    Option("aibridge_redis_url", "CODER_AIBRIDGE_REDIS_URL", "", "str",
           "Redis URL for rate limits shared by several replicas (empty: counted in this process).",
           secret=True),
    Option("aibridge_structured_logging", "CODER_AIBRIDGE_STRUCTURED_LOGGING", "false", "bool",
           "Log one structured line per recorded item."),
    Option("aibridge_send_actor_headers", "CODER_AIBRIDGE_SEND_ACTOR_HEADERS", "false", "bool",
           "Send the acting user's id and name upstream in X-Ai-Bridge-Actor-* headers."),
    Option("aibridge_circuit_breaker_enabled", "CODER_AIBRIDGE_CIRCUIT_BREAKER_ENABLED", "false", "bool",
           "Stop calling an upstream that keeps failing."),
    _cb("failure_threshold", "5", "int", "Failures within the interval that open the circuit."),
    _cb("interval", "10s", "duration", "Window in which failures are counted."),
    _cb("timeout", "30s", "duration", "How long an open circuit rejects before trying again."),
    _cb("max_requests", "3", "int", "Trial requests allowed while half-open."),
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
)

OPTIONS_BY_KEY = {opt.key: opt for opt in OPTIONS}
STORAGE_OPTIONS = tuple(opt for opt in OPTIONS if opt.storage)
CONFIG_PATH_ENV = "CODER_CONFIG_PATH"

PROVIDER_TYPES = ("openai", "anthropic")
# Names a provider may not take: they would shadow the API's own routes.
RESERVED_PROVIDER_NAMES = frozenset({"interceptions", "sessions", "clients", "models", "proxy"})
_PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


# ---------------------------------------------------------------- the settings object

@dataclass(frozen=True)
class BedrockConfig:
    region: str
    base_url: str
    access_key: str
    access_key_secret: str
    model: str
    small_fast_model: str
    # How the user names the access key and its secret (flag or variable), for error messages.
    credential_options: tuple[str, str] = ("--aibridge-bedrock-access-key", "--aibridge-bedrock-access-key-secret")

    @property
    def endpoint(self) -> str:
        return self.base_url or f"https://bedrock-runtime.{self.region}.amazonaws.com"


@dataclass(frozen=True)
class ProviderConfig:
    type: str                # "openai" | "anthropic"
    name: str                # route segment: /api/v2/aibridge/<name>/...
    key: str
    base_url: str
    bedrock: BedrockConfig | None = None


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
    aibridge_structured_logging: bool
    aibridge_send_actor_headers: bool
    aibridge_circuit_breaker_enabled: bool
    aibridge_circuit_breaker_failure_threshold: int
    aibridge_circuit_breaker_interval: float
    aibridge_circuit_breaker_timeout: float
    aibridge_circuit_breaker_max_requests: int
    prometheus_enable: bool
    prometheus_address: str
    trace: bool
    log_json: bool
    shutdown_grace: float
    providers: tuple[ProviderConfig, ...] = field(default=())

    @property
    def database_url(self) -> str:
        if self.postgres_url:
            return postgres_async_url(self.postgres_url)
        return f"sqlite+aiosqlite:///{self.data_dir / 'aibridge.db'}"

    @property
    def public_url(self) -> str:
        return (self.access_url or f"http://{self.http_address}").rstrip("/")


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
    flag_value = flags.get(opt.key)
    if flag_value is not None:
        return str(flag_value), opt.flag
    if opt.env in env:
        return env[opt.env], opt.env
    yaml_value = _yaml_value(doc, opt.yaml_path)
    if yaml_value is not None:
        text = str(yaml_value).lower() if isinstance(yaml_value, bool) else str(yaml_value)
        return text, "config " + ".".join(opt.yaml_path)
    return opt.default, opt.flag


def load_settings(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
                  config_path: str | None = None, *, storage_only: bool = False) -> Settings:
    flags = flags or {}
    env = os.environ if env is None else env
    doc = read_yaml(config_path or env.get(CONFIG_PATH_ENV))
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        raw, source = _raw_value(opt, flags, env, doc)
        try:
            values[opt.key] = _PARSERS[opt.kind](raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    values["data_dir"] = Path(os.path.expanduser(values["data_dir"]))
    settings = Settings(**values)
    if values["postgres_url"]:
        postgres_async_url(values["postgres_url"])
    if storage_only or not settings.aibridge_enabled:
        return settings
    providers = resolve_providers(settings, env, doc)
    return Settings(**{**values, "providers": providers})


# ---------------------------------------------------------------- providers

def _bedrock(region: str, base_url: str, key: str, secret: str, model: str, small: str,
             names: tuple[str, str, str, str]) -> BedrockConfig | None:
    """names: the option names for region, base URL, access key and secret, for messages."""
    if not (region or base_url or key or secret):
        return None
    if not (region or base_url):
        raise ConfigError(f"{names[0]}: Bedrock needs a region or {names[1]}")
    if bool(key) != bool(secret):
        raise ConfigError(f"{names[2]}: set both {names[2]} and {names[3]}, or neither "
                          "(to use the standard AWS credential chain)")
    try:
        base_url = parse_url(base_url)
    except ValueError as exc:
        raise ConfigError(f"{names[1]}: {exc}") from None
    return BedrockConfig(region, base_url.rstrip("/"), key, secret, model, small, (names[2], names[3]))


def _legacy_providers(s: Settings) -> list[tuple[str, ProviderConfig]]:
    """The providers made by the single-provider options, each with the option that made it."""
    providers = []
    if s.aibridge_openai_key:
        providers.append(("legacy options (--aibridge-openai-key, CODER_AIBRIDGE_OPENAI_KEY)", ProviderConfig(
            "openai", "openai", s.aibridge_openai_key, s.aibridge_openai_base_url)))
    bedrock = _bedrock(
        s.aibridge_bedrock_region, s.aibridge_bedrock_base_url, s.aibridge_bedrock_access_key,
        s.aibridge_bedrock_access_key_secret, s.aibridge_bedrock_model, s.aibridge_bedrock_small_fast_model,
        ("--aibridge-bedrock-region", "--aibridge-bedrock-base-url", "--aibridge-bedrock-access-key",
         "--aibridge-bedrock-access-key-secret"))
    if s.aibridge_anthropic_key or bedrock:
        made_by = ("legacy options (--aibridge-anthropic-key, CODER_AIBRIDGE_ANTHROPIC_KEY)"
                   if s.aibridge_anthropic_key else "legacy options (--aibridge-bedrock-*, CODER_AIBRIDGE_BEDROCK_*)")
        providers.append((made_by, ProviderConfig("anthropic", "anthropic", s.aibridge_anthropic_key,
                                                  s.aibridge_anthropic_base_url, bedrock)))
    return providers


def _indexed_entries(env: Mapping[str, str], doc: Mapping[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """CODER_AIBRIDGE_PROVIDER_<N>_* variables (or YAML aibridge.providers) as (label, fields)."""
    pattern = re.compile(r"^CODER_AIBRIDGE_PROVIDER_(\d+)_([A-Z_]+)$")
    by_index: dict[int, dict[str, str]] = {}
    for name, value in env.items():
        match = pattern.match(name)
        if match:
            by_index.setdefault(int(match.group(1)), {})[match.group(2)] = value
    if by_index:
        missing = [i for i in range(max(by_index) + 1) if i not in by_index]
        if missing:
            raise ConfigError(f"CODER_AIBRIDGE_PROVIDER_{missing[0]}_TYPE: provider indices must be "
                              f"contiguous from 0; index {missing[0]} is missing")
        return [(f"CODER_AIBRIDGE_PROVIDER_{i}", by_index[i]) for i in sorted(by_index)]
    listed = _yaml_value(doc, ("aibridge", "providers")) or []
    if not isinstance(listed, list):
        raise ConfigError("config aibridge.providers: must be a list")
    return [(f"config aibridge.providers[{i}]", {str(k).upper(): str(v) for k, v in item.items()})
            for i, item in enumerate(listed) if isinstance(item, Mapping)]


def _field_name(label: str, field_name: str) -> str:
    """How the user wrote a provider's field: an environment variable or a YAML key."""
    if label.startswith("CODER_"):
        return f"{label}_{field_name}"
    return f"{label}.{field_name.lower()}"


def _indexed_provider(label: str, fields: dict[str, str], s: Settings) -> ProviderConfig:
    def var(field_name: str) -> str:
        return _field_name(label, field_name)

    ptype = fields.get("TYPE", "").strip().lower()
    if ptype not in PROVIDER_TYPES:
        raise ConfigError(f"{var('TYPE')}: must be one of {', '.join(PROVIDER_TYPES)}, got {ptype!r}")
    name = fields.get("NAME", "").strip() or ptype
    if not _PROVIDER_NAME.match(name) or name in RESERVED_PROVIDER_NAMES:
        raise ConfigError(f"{var('NAME')}: {name!r} cannot be a provider name (lowercase letters, digits, "
                          f"'-' and '_'; not one of {', '.join(sorted(RESERVED_PROVIDER_NAMES))})")
    try:
        base_url = parse_url(fields.get("BASE_URL", "")) or OPTIONS_BY_KEY[
            f"aibridge_{ptype}_base_url"].default
    except ValueError as exc:
        raise ConfigError(f"{var('BASE_URL')}: {exc}") from None
    bedrock = None
    if ptype == "anthropic":
        bedrock = _bedrock(
            fields.get("BEDROCK_REGION", ""), fields.get("BEDROCK_BASE_URL", ""),
            fields.get("BEDROCK_ACCESS_KEY", ""), fields.get("BEDROCK_ACCESS_KEY_SECRET", ""),
            fields.get("BEDROCK_MODEL") or s.aibridge_bedrock_model,
            fields.get("BEDROCK_SMALL_FAST_MODEL") or s.aibridge_bedrock_small_fast_model,
            (var("BEDROCK_REGION"), var("BEDROCK_BASE_URL"), var("BEDROCK_ACCESS_KEY"),
             var("BEDROCK_ACCESS_KEY_SECRET")))
    key = fields.get("KEY", "")
    if not key and bedrock is None:
        raise ConfigError(f"{var('KEY')}: provider {name!r} needs an API key")
    return ProviderConfig(ptype, name, key, base_url, bedrock)


def resolve_providers(s: Settings, env: Mapping[str, str], doc: Mapping[str, Any]) -> tuple[ProviderConfig, ...]:
    legacy = _legacy_providers(s)
    indexed = [(_field_name(label, "NAME"), _indexed_provider(label, fields, s))
               for label, fields in _indexed_entries(env, doc)]
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
