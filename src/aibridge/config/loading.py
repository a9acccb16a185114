"""Resolving the settings: flag > environment > YAML file > default, each value parsed by its kind."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from aibridge.config.governance import GOVERNANCE_YAML_KEYS
from aibridge.config.mcp import MCP_FIELDS
from aibridge.config.oidc import check_oidc
from aibridge.config.option import Option, yaml_lookup
from aibridge.config.providers import ProviderKind
from aibridge.config.proxy import check_proxy
from aibridge.config.resolve import resolve_mcp_servers, resolve_providers
from aibridge.config.settings import OPTIONS, Settings, postgres_async_url
from aibridge.config.values import PARSERS, ConfigError
from aibridge.yamlkeys import ANY, FreeKeys, ListOf, Schema, unknown_key

# The indexed providers' fields (DESIGN §2.2), as CODER_AIBRIDGE_PROVIDER_<N>_<FIELD> or lowercase in YAML.
PROVIDER_FIELDS = ("TYPE", "NAME", "KEY", "BASE_URL", "BEDROCK_REGION", "BEDROCK_BASE_URL", "BEDROCK_ACCESS_KEY",
                   "BEDROCK_ACCESS_KEY_SECRET", "BEDROCK_MODEL", "BEDROCK_SMALL_FAST_MODEL", "PLAN")

log = logging.getLogger("aibridge.config")

CONFIG_PATH_ENV = "CODER_CONFIG_PATH"


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
    subject = {"user": ANY, "group": ANY, "role": ANY}
    schema.setdefault("aibridge", {}).update({
        "providers": ListOf(dict.fromkeys((f.lower() for f in PROVIDER_FIELDS), ANY)),
        "mcp_servers": ListOf(dict.fromkeys((f.lower() for f in MCP_FIELDS), ANY)),
        "prices": FreeKeys(dict.fromkeys(("input", "output", "cache_read", "cache_write"), ANY)),
        "budgets": ListOf({**subject, "period": ANY, "limit_usd": ANY}),
        "model_rules": {"allow": ListOf({**subject, "models": ANY}),
                        "aliases": ListOf({"from": ANY, "to": ANY, "provider": ANY})},
    })
    return schema


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
    yaml_value = yaml_lookup(doc, opt.yaml_path)
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
            values[opt.key] = PARSERS[opt.kind](raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    values["governance"] = {key: found for key in GOVERNANCE_YAML_KEYS
                            if (found := yaml_lookup(doc, ("aibridge", key))) is not None}
    settings = Settings(**values)
    if values["postgres_url"]:
        postgres_async_url(values["postgres_url"])
    if storage_only:
        return settings
    check_proxy(settings)
    check_oidc(settings)
    if not settings.aibridge_enabled:
        return settings
    providers = resolve_providers(settings, env, doc, provider_kinds)
    mcp_servers = resolve_mcp_servers(env, doc, flags.get("mcp_servers"))
    return Settings(**{**values, "providers": providers, "mcp_servers": mcp_servers})
