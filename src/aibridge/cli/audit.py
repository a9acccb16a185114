"""``aibridge audit``: a REST client of the audit log; and the audit rows of the commands that
write the database directly (``users``, ``tokens``)."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import click
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge import __version__
from aibridge.cli.interceptions import response_message
from aibridge.cli.options import fail
from aibridge.cli.session import server_options
from aibridge.store import audit as store
from aibridge.store import users
from aibridge.store.audit import Change

PAGE = 1000


def _status(exc: BaseException) -> int:
    """What a refused CLI change would have answered over REST."""
    if isinstance(exc, users.NotFound):
        return 404
    if isinstance(exc, users.Conflict):
        return 409
    return store.http_status(exc)


def cli_actor() -> store.Actor:
    """The CLI acts as no bridge user: the row says which OS user on which host ran it."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = ""
    return store.Actor(ip="", user_agent=f"aibridge-cli/{__version__} ({who}@{socket.gethostname()})",
                       request_id=str(uuid.uuid4()))


@contextlib.asynccontextmanager
async def cli_change(engine: AsyncEngine, action: str, resource_type: str, *, resource_id: str = "",
                     resource_target: str = "") -> AsyncIterator[Change]:
    """``store.audit.change`` for a CLI command: the change and its row in one transaction; a
    refused one (user not found: 404, conflict: 409) leaves only its row."""
    async with store.change(engine, cli_actor(), action, resource_type, resource_id=resource_id,
                            resource_target=resource_target, status_of=_status) as change:
        change.additional_fields = {"via": "cli"}
        yield change


def build_query(**terms: str | None) -> str:
    return " ".join(f'{key}:"{value}"' if " " in value else f"{key}:{value}"
                    for key, value in terms.items() if value)


async def fetch(url: str, token: str, q: str, fmt: str, limit: int) -> Any:
    """Every page up to ``limit`` rows: a list (json) or the CSV text (its header once)."""
    endpoint = url.rstrip("/") + "/api/v2/audit"
    rows: list[Any] = []
    csv_lines: list[str] = []
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout, headers={"Coder-Session-Token": token}) as session:
        while len(rows) < limit:
            params = {"q": q, "limit": str(min(PAGE, limit - len(rows))), "offset": str(len(rows)), "format": fmt}
            async with session.get(endpoint, params=params) as resp:
                body = await resp.read()
                if resp.status != 200:
                    fail(f"{resp.status} from {endpoint}: {response_message(body)}")
            if fmt == "csv":
                lines = body.decode().splitlines()
                csv_lines.extend(lines if not csv_lines else lines[1:])
                page: list[Any] = lines[1:]
            else:
                page = orjson.loads(body)["audit_logs"]
            rows.extend(page)
            if len(page) < int(params["limit"]):
                break
    return "\n".join(csv_lines) if fmt == "csv" else rows


@click.command("audit")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option("--action", type=click.Choice(store.ACTIONS), help="create, write, delete, login, logout or register.")
@click.option("--resource-type", help="user, api_key, group, budget, price, model_rule, provider, …")
@click.option("--username", help="The user who made the change.")
@click.option("--resource-target", help="The name of what was changed.")
@click.option("--since", help="Rows from this date (YYYY-MM-DD) or RFC3339 time.")
@click.option("--until", help="Rows up to this date (included) or time.")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@server_options
def audit(fmt: str, action: str | None, resource_type: str | None, username: str | None,
          resource_target: str | None, since: str | None, until: str | None, limit: int, url: str,
          token: str) -> None:
    """Print the audit log (newest first; owners and auditors): who changed what, when, from where."""
    q = build_query(action=action, resource_type=resource_type, username=username,
                    resource_target=resource_target, date_from=since, date_to=until)
    try:
        found = asyncio.run(fetch(url, token, q, fmt, limit))
    except aiohttp.ClientError as exc:
        fail(f"cannot reach {url}: {exc}")
    click.echo(found if fmt == "csv" else orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
