"""``aibridge prices|budgets|models|spend``: REST clients of the governance API (owners write)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import click
import orjson

from aibridge.cli.interceptions import response_message
from aibridge.cli.options import fail
from aibridge.cli.session import server_options

F = TypeVar("F", bound=Callable[..., Any])


def call(url: str, token: str, method: str, path: str, body: Any = None,
         params: dict[str, str] | None = None) -> bytes:
    """One REST call; exits with the server's message on an error status."""
    endpoint = url.rstrip("/") + path

    async def run() -> bytes:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60),
                                         headers={"Coder-Session-Token": token}) as session, \
                session.request(method, endpoint, params=params,
                                data=None if body is None else orjson.dumps(body)) as resp:
            payload = await resp.read()
            if resp.status >= 400:
                fail(f"{resp.status} from {method} {endpoint}: {response_message(payload)}")
            return payload

    try:
        return asyncio.run(run())
    except aiohttp.ClientError as exc:
        fail(f"cannot reach {url}: {exc}")


def call_json(url: str, token: str, method: str, path: str, body: Any = None) -> Any:
    payload = call(url, token, method, path, body)
    return orjson.loads(payload) if payload else None


def _named(user: str | None, role: str | None, group: str | None) -> tuple[str, str]:
    named = [(scope, value) for scope, value in (("user", user), ("group", group), ("role", role)) if value]
    if len(named) != 1:
        fail("name exactly one of --user, --group or --role")
    return named[0]


def _target(user: str | None, role: str | None, group: str | None = None) -> str:
    """The budget path's ``scope:subject``."""
    scope, value = _named(user, role, group)
    return f"{scope}:{quote(value, safe='')}"


# ---------------------------------------------------------------- prices

@click.group()
def prices() -> None:
    """Model prices in USD per million tokens (shipped defaults, overridable by owners)."""


@prices.command("list")
@server_options
def prices_list(url: str, token: str) -> None:
    """List the prices in force (and where each comes from)."""
    found = call_json(url, token, "GET", "/api/v2/aibridge/prices")["prices"]
    click.echo(f"{'MODEL':<40} {'INPUT':>9} {'OUTPUT':>9} {'CACHE-READ':>11} {'CACHE-WRITE':>12} SOURCE")
    for p in found:
        click.echo(f"{p['model']:<40} {p['input']:>9g} {p['output']:>9g} {p['cache_read']:>11g} "
                   f"{p['cache_write']:>12g} {p['source']}")


@prices.command("set")
@click.argument("model")
@click.option("--input", "input_", type=float, required=True, help="USD per million input tokens.")
@click.option("--output", type=float, required=True, help="USD per million output tokens.")
@click.option("--cache-read", type=float, help="USD per million cache-read tokens (default: the input price).")
@click.option("--cache-write", type=float, help="USD per million cache-write tokens (default: the input price).")
@server_options
def prices_set(model: str, input_: float, output: float, cache_read: float | None, cache_write: float | None,
               url: str, token: str) -> None:
    """Set the price of MODEL (a model name or a glob such as 'claude-sonnet-4-5*')."""
    body = {"input": input_, "output": output, "cache_read": cache_read, "cache_write": cache_write}
    found = call_json(url, token, "PUT", f"/api/v2/aibridge/prices/{quote(model, safe='')}",
                      {k: v for k, v in body.items() if v is not None})
    click.echo(f"price of {found['model']}: input {found['input']:g}, output {found['output']:g}, "
               f"cache read {found['cache_read']:g}, cache write {found['cache_write']:g} USD per million tokens")


# ---------------------------------------------------------------- budgets

@click.group()
def budgets() -> None:
    """Spend limits per user, group or role over a UTC day, week or month."""


@budgets.command("set")
@click.option("--user", help="A user's own budget (beats its groups' and role's).")
@click.option("--group", help="The budget of each member of a group (beats its role's; the highest of "
                              "a user's groups applies).")
@click.option("--role", type=click.Choice(["owner", "auditor", "member"]), help="The budget of each user of a role.")
@click.option("--period", type=click.Choice(["day", "week", "month"]), required=True)
@click.option("--limit-usd", type=click.FloatRange(min=0), required=True)
@server_options
def budgets_set(user: str | None, group: str | None, role: str | None, period: str, limit_usd: float, url: str,
                token: str) -> None:
    """Set a budget."""
    target = _target(user, role, group)
    call_json(url, token, "PUT", f"/api/v2/aibridge/budgets/{target}", {"period": period, "limit_usd": limit_usd})
    click.echo(f"budget of {target}: ${limit_usd:g} per {period}")


@budgets.command("list")
@server_options
def budgets_list(url: str, token: str) -> None:
    """List the budgets in force."""
    found = call_json(url, token, "GET", "/api/v2/aibridge/budgets")["budgets"]
    click.echo(f"{'TARGET':<32} {'PERIOD':<7} {'LIMIT-USD':>10} SOURCE")
    for b in found:
        click.echo(f"{b['scope'] + ':' + b['subject']:<32} {b['period']:<7} {b['limit_usd']:>10g} {b['source']}")


@budgets.command("delete")
@click.option("--user")
@click.option("--group")
@click.option("--role", type=click.Choice(["owner", "auditor", "member"]))
@server_options
def budgets_delete(user: str | None, group: str | None, role: str | None, url: str, token: str) -> None:
    """Delete a budget set by an owner."""
    target = _target(user, role, group)
    call(url, token, "DELETE", f"/api/v2/aibridge/budgets/{target}")
    click.echo(f"deleted the budget of {target}")


# ---------------------------------------------------------------- model rules

@click.group()
def models() -> None:
    """Allowed models and aliases."""


@models.command("allow")
@click.argument("patterns", nargs=-1)
@click.option("--user")
@click.option("--group", help="Its members may use these models (besides what their own rule allows).")
@click.option("--role", type=click.Choice(["owner", "auditor", "member"]))
@server_options
def models_allow(patterns: tuple[str, ...], user: str | None, group: str | None, role: str | None, url: str,
                 token: str) -> None:
    """Allow only the models matching PATTERNS (globs) to a user, group or role; no pattern: every model."""
    scope, subject = _named(user, role, group)
    target = f"{scope}:{subject}"
    call_json(url, token, "PUT", "/api/v2/aibridge/model-rules",
              {"allow": [{scope: subject, "models": list(patterns) or None}]})
    click.echo(f"{target} may use {', '.join(patterns) if patterns else 'every model'}")


@models.command("alias")
@click.argument("from_model")
@click.argument("to_model")
@click.option("--provider", default="", help="Only for this provider (default: every provider).")
@server_options
def models_alias(from_model: str, to_model: str, provider: str, url: str, token: str) -> None:
    """Serve FROM_MODEL as TO_MODEL (both are recorded)."""
    call_json(url, token, "PUT", "/api/v2/aibridge/model-rules",
              {"aliases": [{"from": from_model, "to": to_model, "provider": provider}]})
    click.echo(f"{from_model} -> {to_model}" + (f" (provider {provider})" if provider else ""))


@models.command("rules")
@server_options
def models_rules(url: str, token: str) -> None:
    """Print the model rules in force as JSON."""
    found = call_json(url, token, "GET", "/api/v2/aibridge/model-rules")
    click.echo(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())


# ---------------------------------------------------------------- spend

@click.command()
@click.option("--group-by", default="user,model,day", show_default=True,
              help="Comma-separated: user, group, model, day, provider, client (empty: one total; a user "
                   "in several groups counts under each).")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option("--since", help="RFC3339 timestamp.")
@click.option("--until", help="RFC3339 timestamp.")
@server_options
def spend(group_by: str, fmt: str, since: str | None, until: str | None, url: str, token: str) -> None:
    """Print spend (cost in USD, requests) grouped by user, model and day."""
    params = {"group_by": group_by, "format": fmt}
    params.update({k: v for k, v in (("since", since), ("until", until)) if v})
    payload = call(url, token, "GET", "/api/v2/aibridge/spend", params=params)
    if fmt == "csv":
        click.echo(payload.decode(), nl=False)
    else:
        click.echo(orjson.dumps(orjson.loads(payload), option=orjson.OPT_INDENT_2).decode())
