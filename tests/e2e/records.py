"""Reading an interception back from the export, for assertions."""

from __future__ import annotations

from typing import Any

from tests.harness import Client, wait_for

TOKEN_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens")


async def latest(client: Client, q: str = "", after: set[str] | None = None, timeout: float = 10) -> dict[str, Any]:
    """The newest finished interception matching ``q`` that is not in ``after`` (waits for the writer)."""
    seen = after or set()

    async def check() -> dict[str, Any] | None:
        status, body = await client.get("/api/v2/aibridge/interceptions?limit=20&q=" + q)
        assert status == 200, body
        fresh = [r for r in body["results"] if r["id"] not in seen]
        return fresh[0] if fresh else None

    found = await wait_for(check, timeout)
    assert found, f"no new interception for q={q!r}"
    result: dict[str, Any] = found
    return result


async def ids(client: Client) -> set[str]:
    status, body = await client.get("/api/v2/aibridge/interceptions?limit=1000")
    assert status == 200
    return {r["id"] for r in body["results"]}


def totals(interception: dict[str, Any]) -> dict[str, int]:
    return {k: sum(u[k] for u in interception["token_usages"]) for k in TOKEN_KEYS}


def expected_totals(usage: dict[str, int]) -> dict[str, int]:
    return {k: usage.get(k, 0) for k in TOKEN_KEYS}
