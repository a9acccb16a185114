"""``aibridge providers``: a REST client of the providers API (owners write, auditors read).

Keys can be read from a file, or from stdin with ``-`` (``--api-key-file``, ``--add-key-file``: one
key a line), so that they need not appear on the command line, in the shell's history or in
``ps``. The server never returns a key: every answer shows them masked.
"""

from __future__ import annotations

from typing import IO, Any
from urllib.parse import quote

import click
import orjson

from aibridge.cli.governance import call, call_json
from aibridge.cli.options import fail
from aibridge.cli.session import server_options

PATH = "/api/v2/ai/providers"
KEY_FILE_HELP = "a file with one key a line ('-': stdin; blank lines and lines starting with # are skipped)"


@click.group()
def providers() -> None:
    """Providers managed at runtime: list them, and create, enable, disable, re-key or delete the ones made
    through the API (docs/providers.md). Changes apply on every worker and replica without a restart."""


def _path(ref: str) -> str:
    return f"{PATH}/{quote(ref, safe='')}"


def _keys(given: tuple[str, ...], file: IO[str] | None, option: str) -> list[str]:
    keys = list(given)
    if file is not None:
        found = [line.strip() for line in file if line.strip() and not line.lstrip().startswith("#")]
        if not found:
            fail(f"{option}: {file.name} holds no key (one key a line)")
        keys += found
    return keys


def _settings(pairs: tuple[str, ...]) -> dict[str, str | None]:
    settings: dict[str, str | None] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"--setting: {pair!r} is not KEY=VALUE (e.g. bedrock_region=us-east-1)")
        settings[key.strip()] = value
    return settings


def _masked(provider: dict[str, Any]) -> str:
    return ", ".join(k["masked"] for k in provider["api_keys"]) or "-"


def _say(verb: str, provider: dict[str, Any]) -> None:
    click.echo(f"{verb} provider {provider['name']} ({provider['type']}, {provider['status']}) "
               f"id={provider['id']} keys: {_masked(provider)}")
    if provider.get("error"):
        click.echo(f"provider {provider['name']} cannot be used: {provider['error']}", err=True)


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo(" ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + " " + row[-1])


@providers.command("list")
@click.option("--format", "format_", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="json: the API's providers, as an indented JSON array.")
@server_options
def providers_list(format_: str, url: str, token: str) -> None:
    """List every provider: configured (source config, read-only here) and created through the API."""
    found = call_json(url, token, "GET", PATH)["providers"]
    if format_ == "json":
        click.echo(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
        return
    _table([["NAME", "TYPE", "SOURCE", "STATUS", "KEYS", "BASE-URL"]] +
           [[p["name"], p["type"], p["source"], p["status"], _masked(p), p["base_url"] or "-"] for p in found])
    for p in found:
        if p.get("error"):
            click.echo(f"provider {p['name']} cannot be used: {p['error']}")


@providers.command("show")
@click.argument("provider")
@server_options
def providers_show(provider: str, url: str, token: str) -> None:
    """Print PROVIDER (a name or an id) as JSON, with its key ids (for `update --remove-key`)."""
    click.echo(orjson.dumps(call_json(url, token, "GET", _path(provider)), option=orjson.OPT_INDENT_2).decode())


@providers.command("create")
@click.argument("name")
@click.option("--type", "type_", required=True,
              help="openai, anthropic, openai-compat, azure, google, openrouter, vercel, copilot (docs/providers.md).")
@click.option("--base-url", default="", help="The upstream's base URL (default: the type's, when it has one).")
@click.option("--api-key", "api_keys", multiple=True, help="A key (repeatable: a key pool). Prefer --api-key-file.")
@click.option("--api-key-file", type=click.File("r"), help=f"Keys from {KEY_FILE_HELP}.")
@click.option("--setting", "settings", multiple=True, metavar="KEY=VALUE",
              help="A setting of the type, e.g. bedrock_region=us-east-1 (repeatable).")
@click.option("--display-name", default="", help="A longer name shown in the UI.")
@click.option("--disabled", is_flag=True, help="Create it disabled (its routes answer 403 until enabled).")
@server_options
def providers_create(name: str, type_: str, base_url: str, api_keys: tuple[str, ...], api_key_file: IO[str] | None,
                     settings: tuple[str, ...], display_name: str, disabled: bool, url: str, token: str) -> None:
    """Create the provider NAME, served at /api/v2/aibridge/NAME/ at once."""
    body = {"name": name, "type": type_, "base_url": base_url, "display_name": display_name, "enabled": not disabled,
            "api_keys": _keys(api_keys, api_key_file, "--api-key-file"), "settings": _settings(settings)}
    _say("created", call_json(url, token, "POST", PATH, body))


def _patched_keys(current: dict[str, Any], removed: tuple[str, ...], added: list[str]) -> list[dict[str, str]]:
    """The PATCH's ``api_keys``: the ids of the keys that stay, then the new keys."""
    keys = current["api_keys"]
    gone: set[str] = set()
    for ref in removed:
        matches = [k["id"] for k in keys if ref in (k["id"], k["masked"])]
        if not matches:
            fail(f"--remove-key: provider {current['name']} has no key {ref!r} (its keys: {_masked(current)})")
        if len(matches) > 1:
            fail(f"--remove-key: {ref!r} matches {len(matches)} keys: give the key's id "
                 f"(aibridge providers show {current['name']})")
        gone.add(matches[0])
    return [{"id": k["id"]} for k in keys if k["id"] not in gone] + [{"api_key": k} for k in added]


@providers.command("update")
@click.argument("provider")
@click.option("--enable/--disable", "enabled", default=None, help="Serve it, or answer its routes with 403.")
@click.option("--base-url", help="A new base URL.")
@click.option("--display-name", help="A new display name.")
@click.option("--add-key", "added", multiple=True, help="Add a key (repeatable). Prefer --add-key-file.")
@click.option("--add-key-file", type=click.File("r"), help=f"Add the keys of {KEY_FILE_HELP}.")
@click.option("--remove-key", "removed", multiple=True, metavar="KEY-ID|MASKED",
              help="Remove a key, by its id or its masked form (repeatable).")
@click.option("--setting", "settings", multiple=True, metavar="KEY=VALUE", help="Set a setting (repeatable).")
@click.option("--unset-setting", "unset", multiple=True, metavar="KEY", help="Remove a setting (repeatable).")
@server_options
def providers_update(provider: str, enabled: bool | None, base_url: str | None, display_name: str | None,
                     added: tuple[str, ...], add_key_file: IO[str] | None, removed: tuple[str, ...],
                     settings: tuple[str, ...], unset: tuple[str, ...], url: str, token: str) -> None:
    """Change PROVIDER (a name or an id), one created through the API."""
    body: dict[str, Any] = {k: v for k, v in (("enabled", enabled), ("base_url", base_url),
                                              ("display_name", display_name)) if v is not None}
    changed = {**_settings(settings), **dict.fromkeys(unset)}
    if both := set(_settings(settings)) & set(unset):
        fail(f"--setting and --unset-setting both name {sorted(both)[0]!r}")
    if changed:
        body["settings"] = changed
    new_keys = _keys(added, add_key_file, "--add-key-file")
    if new_keys or removed:
        body["api_keys"] = _patched_keys(call_json(url, token, "GET", _path(provider)), removed, new_keys)
    if not body:
        fail("nothing to change: give --enable, --disable, --base-url, --display-name, --add-key, --add-key-file, "
             "--remove-key, --setting or --unset-setting")
    _say("updated", call_json(url, token, "PATCH", _path(provider), body))


@providers.command("delete")
@click.argument("provider")
@server_options
def providers_delete(provider: str, url: str, token: str) -> None:
    """Delete PROVIDER (a name or an id), one created through the API: its routes answer 404 at once."""
    call(url, token, "DELETE", _path(provider))
    click.echo(f"deleted provider {provider}")
