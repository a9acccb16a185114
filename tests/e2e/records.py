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


async def settled(client: Client, timeout: float = 10) -> None:
    """Wait until the recorder has written everything it holds (``/healthz``): an earlier test's
    last record, still lingering in a batch, must not pass for this test's."""
    async def idle() -> bool:
        status, body = await client.get("/healthz")
        return status == 200 and body.get("recording") is not None and body["recording"]["pending"] == 0
    assert await wait_for(idle, timeout), "the recorder did not write what it holds"


async def ids(client: Client) -> set[str]:
    """The interceptions recorded so far (once the recorder has written what it holds)."""
    await settled(client)
    status, body = await client.get("/api/v2/aibridge/interceptions?limit=1000")
    assert status == 200
    return {r["id"] for r in body["results"]}


def totals(interception: dict[str, Any]) -> dict[str, int]:
    return {k: sum(u[k] for u in interception["token_usages"]) for k in TOKEN_KEYS}


def expected_totals(usage: dict[str, int]) -> dict[str, int]:
    return {k: usage.get(k, 0) for k in TOKEN_KEYS}
