"""Providers and MCP servers configured by index (``CODER_AIBRIDGE_PROVIDER_<N>_*``,
``CODER_AIBRIDGE_MCP_SERVER_<N>_*`` or their YAML lists), and the single-provider options.

This package keeps only what every provider type shares: the indexed-provider syntax (env and
YAML), provider names, duplicates, and "none configured"; each type reads its own fields.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import yaml

from aibridge.config.mcp import MCP_ENV_PREFIX, MCP_FIELDS, MCP_SERVER_FLAG, McpServerConfig
from aibridge.config.option import ENV_ALIAS_PREFIX, ENV_PREFIX, yaml_lookup
from aibridge.config.providers import ProviderConfig, ProviderFields, ProviderKind
from aibridge.config.settings import OPTIONS_BY_KEY, Settings
from aibridge.config.values import ConfigError

log = logging.getLogger("aibridge.config")

# Names a provider may not take: they would shadow the API's own routes.
RESERVED_PROVIDER_NAMES = frozenset({"interceptions", "sessions", "clients", "models", "proxy", "prices", "budgets",
                                     "model-rules", "spend"})
_PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def legacy_fields(settings: Settings, name: str, keys: Mapping[str, str]) -> ProviderFields:
    """The single-provider options ``keys`` (field → Settings attribute) seen as a provider's fields."""
    values = {field_name: str(getattr(settings, key)) for field_name, key in keys.items()}
    options = {field_name: OPTIONS_BY_KEY[key].flag for field_name, key in keys.items()}
    return ProviderFields(name, values, options, settings, legacy=True)


def legacy_label(*keys: str) -> str:
    """How a duplicate-name error names the single-provider options that made a provider."""
    return "legacy options (" + ", ".join(f"{OPTIONS_BY_KEY[k].flag}, {OPTIONS_BY_KEY[k].env}" for k in keys) + ")"


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
    listed = yaml_lookup(doc, ("aibridge", yaml_key)) or []
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
    return names["NAME"], provider_from_values(values, names, s, kinds)


def provider_from_values(values: Mapping[str, str], names: Mapping[str, str], s: Settings,
                         kinds: Sequence[ProviderKind], *, strict: bool = False) -> ProviderConfig:
    """The provider that one set of fields (``TYPE``, ``NAME``, ``KEY``, …) describes; ``names`` says
    how the user wrote each field (a variable, a YAML key, an API field), for messages. Also used for
    the providers created through the API (``bridge/live.py``), ``strict``: a field its type does not
    read is an error there (the configuration's fields are checked by ``loading.py``)."""
    types = _provider_types(kinds)
    ptype = values.get("TYPE", "").strip().lower()
    if ptype not in types:
        raise ConfigError(f"{names['TYPE']}: must be one of {', '.join(types)}, got {ptype!r}")
    name = values.get("NAME", "").strip() or ptype
    check_provider_name(name, names["NAME"])
    fields_ = ProviderFields(name, values, names, s)
    for kind in _kinds_of(kinds, ptype):
        config = kind.from_fields(fields_)
        if config is not None:
            unread = sorted(set(values) - fields_.read - {"TYPE", "NAME"})
            if strict and unread:
                raise ConfigError(f"{names[unread[0]]}: not a setting of a provider of type {ptype!r}")
            return config
    raise ConfigError(f"{names['TYPE']}: no provider kind of type {ptype!r} accepts these fields")


def check_provider_name(name: str, option: str) -> None:
    if not _PROVIDER_NAME.match(name) or name in RESERVED_PROVIDER_NAMES:
        raise ConfigError(f"{option}: {name!r} cannot be a provider name (lowercase letters, digits, "
                          f"'-' and '_'; not one of {', '.join(sorted(RESERVED_PROVIDER_NAMES))})")


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
    return tuple(p for _, p in legacy + indexed)


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
