"""Click options generated from the configuration table, and settings resolution for commands."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn, TypeVar

import click

from aibridge.config import (
    CONFIG_PATH_ENV,
    MCP_SERVER_FLAG,
    OPTIONS,
    STORAGE_OPTIONS,
    ConfigError,
    Option,
    ProviderKind,
    Settings,
    load_settings,
)

F = TypeVar("F", bound=Callable[..., Any])


def _option(flag: str, dest: str, opt: Option, text: str, hidden: bool = False) -> Callable[[F], F]:
    if opt.kind == "bool":
        return click.option(flag, dest, default=None, is_flag=False, flag_value="true",
                            metavar="[true|false]", help=text, hidden=hidden)
    return click.option(flag, dest, default=None, metavar=opt.kind.upper(), help=text, hidden=hidden)


def _decorator(opt: Option) -> Callable[[F], F]:
    default = opt.default or "(empty)"
    text = f"{opt.help} [env: {opt.env}; default: {default}]"
    primary = _option(opt.flag, opt.key, opt, text)
    if not opt.alias_flag:
        return primary
    # --ai-gateway-*: accepted, kept out of --help (documented in docs/configuration.md)
    alias = _option(opt.alias_flag, opt.alias_key, opt, f"Alias of {opt.flag}.", hidden=True)
    return lambda func: primary(alias(func))


def config_options(options: Iterable[Option]) -> Callable[[F], F]:
    def apply(func: F) -> F:
        for opt in reversed(tuple(options)):
            func = _decorator(opt)(func)
        return click.option("--config", "config_path", default=None, metavar="PATH",
                            help=f"YAML configuration file [env: {CONFIG_PATH_ENV}]")(func)
    return apply


MCP_SERVER_HELP = ("An MCP server whose tools are injected, as a YAML/JSON mapping: '{id: ID, url: URL, "
                   "authorization: ..., tool_allow_regex: ..., tool_deny_regex: ...}'. Repeatable; given, it "
                   "replaces CODER_AIBRIDGE_MCP_SERVER_<N>_* and aibridge.mcp_servers.")


def server_options(func: F) -> F:
    func = click.option(MCP_SERVER_FLAG, "aibridge_mcp_server", multiple=True, metavar="SPEC",
                        help=MCP_SERVER_HELP)(func)
    return config_options(OPTIONS)(func)


storage_options = config_options(STORAGE_OPTIONS)


def fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def settings_from(kwargs: dict[str, Any], *, storage_only: bool = False) -> Settings:
    """Pop the configuration options from a command's kwargs and resolve them (exit 2 on error)."""
    config_path = kwargs.pop("config_path", None)
    flags: dict[str, Any] = {key: kwargs.pop(key) for opt in OPTIONS for key in (opt.key, opt.alias_key)
                             if key and key in kwargs}
    if specs := kwargs.pop("aibridge_mcp_server", None):
        flags["mcp_servers"] = list(specs)
    kinds: Sequence[ProviderKind] = ()
    if not storage_only:
        # Imported here: commands that only touch the database need no provider code (botocore, …).
        from aibridge.bridge.providers import PROVIDER_KINDS
        kinds = PROVIDER_KINDS
    try:
        return load_settings(flags, config_path=config_path, storage_only=storage_only, provider_kinds=kinds)
    except ConfigError as exc:
        fail(str(exc))
