"""``aibridge interceptions list``: a REST client of the export API."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import click
import orjson

from aibridge.cli.options import fail
from aibridge.cli.session import server_options

PAGE = 1000


def build_query(initiator: str | None, provider: str | None, model: str | None, client: str | None,
                started_after: str | None, started_before: str | None) -> str:
    terms = []
    for key, value in (("initiator", initiator), ("provider", provider), ("model", model),
                       ("client", client), ("started_after", started_after),
                       ("started_before", started_before)):
        if value:
            quoted = f'"{value}"' if " " in value else value
            terms.append(f"{key}:{quoted}")
    return " ".join(terms)


async def fetch(url: str, token: str, q: str, after_id: str | None, limit: int) -> list[dict[str, Any]]:
    """Page through the export until ``limit`` results (the API caps a page at 1000)."""
    results: list[dict[str, Any]] = []
    endpoint = url.rstrip("/") + "/api/v2/aibridge/interceptions"
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout, headers={"Coder-Session-Token": token}) as session:
        while len(results) < limit:
            params = {"q": q, "limit": str(min(PAGE, limit - len(results)))}
            if after_id:
                params["after_id"] = after_id
            async with session.get(endpoint, params=params) as resp:
                body = await resp.read()
                if resp.status != 200:
                    fail(f"{resp.status} from {endpoint}: {response_message(body)}")
                page = orjson.loads(body)["results"]
            results.extend(page)
            if len(page) < int(params["limit"]):
                break
            after_id = page[-1]["id"]
    return results


def response_message(body: bytes) -> str:
    try:
        doc = orjson.loads(body)
        return f"{doc.get('message', '')} {doc.get('detail', '')}".strip()
    except orjson.JSONDecodeError:
        return body.decode(errors="replace")[:200]


@click.group()
def interceptions() -> None:
    """Export recorded interceptions."""


@interceptions.command("list")
@click.option("--initiator", help="me, a username or a user id.")
@click.option("--provider", help="Provider type, e.g. openai or anthropic.")
@click.option("--model", help="Model name.")
@click.option("--client", help="Client, e.g. 'Claude Code' or Codex.")
@click.option("--started-after", help="RFC3339 timestamp.")
@click.option("--started-before", help="RFC3339 timestamp.")
@click.option("--after-id", help="Cursor: list what comes after this interception id.")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@server_options
def list_command(initiator: str | None, provider: str | None, model: str | None, client: str | None,
                 started_after: str | None, started_before: str | None, after_id: str | None, limit: int,
                 url: str, token: str) -> None:
    """Print matching interceptions (newest first) as an indented JSON array."""
    q = build_query(initiator, provider, model, client, started_after, started_before)
    try:
        results = asyncio.run(fetch(url, token, q, after_id, limit))
    except aiohttp.ClientError as exc:
        fail(f"cannot reach {url}: {exc}")
    click.echo(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
