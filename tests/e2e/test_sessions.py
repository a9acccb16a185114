"""Sessions and threads in Coder's shape: a Claude Code-like session through the real server and
the fake upstream, read back from ``/api/v2/aibridge/sessions`` (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import anthropic

from tests.e2e.conftest import Bridge
from tests.e2e.records import TOKEN_KEYS, ids, latest, totals
from tests.harness import Client

SUMMARY_KEYS = {"id", "initiator", "providers", "models", "client", "metadata", "started_at", "ended_at",
                "threads", "token_usage_summary", "last_prompt", "last_active_at"}
DETAIL_KEYS = {"id", "initiator", "providers", "models", "client", "metadata", "started_at", "ended_at",
               "page_started_at", "page_ended_at", "token_usage_summary", "threads"}
THREAD_KEYS = {"id", "prompt", "model", "provider", "credential_kind", "credential_hint", "started_at",
               "ended_at", "token_usage", "agentic_actions"}
TOOL_CALL_KEYS = {"id", "interception_id", "provider_response_id", "server_url", "tool", "injected", "input",
                  "metadata", "created_at"}
CLAUDE = {"User-Agent": "claude-cli/2.1.197 (external, cli)"}


async def claude_session(bridge: Bridge, session: str, token: str, prompts: tuple[str, str]) -> None:
    """Two human prompts; the first runs one client tool round trip (tool_use → tool_result)."""
    client = anthropic.AsyncAnthropic(base_url=bridge.anthropic_url, api_key=token, max_retries=0, timeout=30,
                                      default_headers={**CLAUDE, "X-Claude-Code-Session-Id": session})
    history: list[Any] = [{"role": "user", "content": prompts[0]}]
    first = await client.messages.create(model="claude-sonnet-scenario-tool", max_tokens=512, messages=history)
    [use] = [block for block in first.content if block.type == "tool_use"]
    history += [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "21C"}]}]
    answer = await client.messages.create(model="claude-sonnet-scenario-tool", max_tokens=512, messages=history)
    history += [{"role": "assistant", "content": [b.model_dump() for b in answer.content if b.type == "text"]},
                {"role": "user", "content": prompts[1]}]
    await client.messages.create(model="claude-opus-scenario-simple", max_tokens=512, messages=history)


async def by_prompt(owner: Client, session: str) -> dict[str, dict[str, Any]]:
    await ids(owner)
    status, body = await owner.get(f"/api/v2/aibridge/interceptions?limit=1000&q=session:{session}")
    assert status == 200
    return {r["user_prompts"][0]["prompt"] if r["user_prompts"] else r["id"]: r for r in body["results"]}


async def test_a_claude_code_session_has_two_threads(bridge: Bridge) -> None:
    owner = bridge.owner()
    sid = "sess-threads-1"
    await claude_session(bridge, sid, bridge.token, ("weather in Lisbon?", "and tea?"))
    await ids(owner)
    status, body = await owner.get(f"/api/v2/aibridge/sessions?q=session_id:{sid}")
    assert status == 200 and body["count"] == 1, body
    [summary] = body["sessions"]
    assert set(summary) >= SUMMARY_KEYS
    assert summary["threads"] == 2 and summary["interception_count"] == 3
    assert summary["client"] == "Claude Code" and summary["providers"] == ["anthropic"]
    assert summary["models"] == sorted({"claude-sonnet-scenario-tool", "claude-opus-scenario-simple"})
    assert summary["last_prompt"] == "and tea?" and summary["initiator"]["username"] == "alice"

    status, detail = await owner.get(f"/api/v2/aibridge/sessions/{sid}")
    assert status == 200 and set(detail) >= DETAIL_KEYS, detail
    assert summary["token_usage_summary"] == detail["token_usage_summary"]
    first, second = detail["threads"]
    assert set(first) >= THREAD_KEYS
    assert first["prompt"] == "weather in Lisbon?" and second["prompt"] == "and tea?"
    assert first["credential_kind"] == "centralized" and first["provider"] == "anthropic"
    assert [len(t["agentic_actions"]) for t in detail["threads"]] == [2, 1]
    [call] = first["agentic_actions"][0]["tool_calls"]
    assert set(call) >= TOOL_CALL_KEYS and call["tool"] == "get_weather" and not call["injected"]
    assert "Lisbon" in call["input"] and first["agentic_actions"][1]["tool_calls"] == []
    [thought] = second["agentic_actions"][0]["thinking"]
    assert thought["text"].startswith("The user asks how long to steep green tea.")

    # Tokens: each action its interception's, each thread the sum of its actions, the session all.
    recorded = sorted((await by_prompt(owner, sid)).values(), key=lambda r: (r["started_at"], r["id"]))
    actions = [a for t in detail["threads"] for a in t["agentic_actions"]]
    assert [a["token_usage"] for a in actions] == [totals(r) for r in recorded]
    for thread in detail["threads"]:
        assert thread["token_usage"] == {k: sum(a["token_usage"][k] for a in thread["agentic_actions"])
                                         for k in TOKEN_KEYS}
    assert detail["token_usage_summary"] == {k: sum(totals(r)[k] for r in recorded) for k in TOKEN_KEYS}
    assert detail["token_usage_summary"]["input_tokens"] > 0


async def test_threads_page_by_after_and_before(bridge: Bridge) -> None:
    owner = bridge.owner()
    sid = "sess-threads-paging"
    await claude_session(bridge, sid, bridge.token, ("p1", "p2"))
    await claude_session(bridge, sid, bridge.token, ("p3", "p4"))
    await ids(owner)
    status, full = await owner.get(f"/api/v2/aibridge/sessions/{sid}")
    assert status == 200 and [t["prompt"] for t in full["threads"]] == ["p1", "p2", "p3", "p4"]
    thread_ids = [t["id"] for t in full["threads"]]
    status, page = await owner.get(f"/api/v2/aibridge/sessions/{sid}?limit=2")
    assert [t["prompt"] for t in page["threads"]] == ["p1", "p2"]
    assert page["page_started_at"] == page["threads"][0]["started_at"]
    assert page["page_ended_at"] == page["threads"][-1]["ended_at"]
    assert page["token_usage_summary"] == full["token_usage_summary"]       # the whole session's
    status, page = await owner.get(f"/api/v2/aibridge/sessions/{sid}?limit=2&after_id={thread_ids[1]}")
    assert [t["prompt"] for t in page["threads"]] == ["p3", "p4"]
    status, page = await owner.get(f"/api/v2/aibridge/sessions/{sid}?limit=1&before_id={thread_ids[2]}")
    assert [t["prompt"] for t in page["threads"]] == ["p2"]
    status, error = await owner.get(f"/api/v2/aibridge/sessions/{sid}?after_id=00000000-0000-7000-8000-000000000000")
    assert status == 400 and "message" in error
    assert (await owner.get(f"/api/v2/aibridge/sessions/{sid}?after_id=nope"))[0] == 400


async def test_session_list_filters_paging_and_members(bridge: Bridge) -> None:
    owner = bridge.owner()
    await claude_session(bridge, "sess-bob-1", bridge.other_token, ("bob one", "bob two"))
    await claude_session(bridge, "sess-alice-2", bridge.token, ("alice one", "alice two"))
    await latest(owner, "session:sess-alice-2")
    await ids(owner)
    status, everything = await owner.get("/api/v2/aibridge/sessions?limit=1000")
    assert status == 200 and everything["count"] == len(everything["sessions"]) >= 2
    listed = [s["id"] for s in everything["sessions"]]
    assert {"sess-bob-1", "sess-alice-2"} <= set(listed)

    walked: list[str] = []
    after = ""
    for _ in range(100):
        status, page = await owner.get(f"/api/v2/aibridge/sessions?limit=1&after_session_id={after}")
        assert status == 200 and page["count"] == len(listed)
        walked += [s["id"] for s in page["sessions"]]
        if not page["sessions"]:
            break
        after = page["sessions"][-1]["id"]
    assert walked == listed
    status, offset_page = await owner.get("/api/v2/aibridge/sessions?limit=1&offset=1")
    assert [s["id"] for s in offset_page["sessions"]] == listed[1:2]

    for q, expected in (("initiator:bob", {"sess-bob-1"}), ("model:claude-opus-scenario-simple", None),
                        ("provider:anthropic", None), ("provider_name:anthropic", None),
                        ('client:"Claude Code"', None), ("session_id:sess-bob-1", {"sess-bob-1"})):
        status, found = await owner.get("/api/v2/aibridge/sessions?limit=1000&q=" + q)
        assert status == 200 and found["sessions"], q
        if expected is not None:
            assert {s["id"] for s in found["sessions"]} == expected, q
    # A session matches when one of its interceptions does; its fields still cover all of it.
    status, by_model = await owner.get("/api/v2/aibridge/sessions?limit=1000&q=model:claude-opus-scenario-simple")
    bobs = [s for s in by_model["sessions"] if s["id"] == "sess-bob-1"]
    assert bobs and bobs[0]["threads"] == 2 and bobs[0]["interception_count"] == 3
    status, nothing = await owner.get("/api/v2/aibridge/sessions?q=model:no-such-model")
    assert status == 200 and nothing == {"count": 0, "sessions": []}
    newest = everything["sessions"][0]["started_at"]
    status, none_later = await owner.get("/api/v2/aibridge/sessions?q=started_after:2999-01-01T00:00:00Z")
    assert status == 200 and none_later == {"count": 0, "sessions": []}
    status, earlier = await owner.get(f"/api/v2/aibridge/sessions?limit=1000&q=started_before:{newest}")
    assert status == 200 and everything["sessions"][0]["id"] not in {s["id"] for s in earlier["sessions"]}
    status, error = await owner.get("/api/v2/aibridge/sessions?q=colour:blue")
    assert status == 400 and "colour" in error["message"]

    bob = Client(bridge.server.url, bridge.other_token)
    status, mine = await bob.get("/api/v2/aibridge/sessions?limit=1000")
    assert status == 200 and {s["initiator"]["username"] for s in mine["sessions"]} == {"bob"}
    status, spying = await bob.get("/api/v2/aibridge/sessions?q=initiator:alice")
    assert status == 200 and spying["sessions"] == []
    assert (await bob.get("/api/v2/aibridge/sessions/sess-alice-2"))[0] == 404
    status, own = await bob.get("/api/v2/aibridge/sessions/sess-bob-1")
    assert status == 200 and len(own["threads"]) == 2
