"""The fake Copilot API speaks Copilot's wire format: its data agree with their usage, the official
OpenAI SDK parses its streams and lists, and it refuses what Copilot refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import openai
import orjson
import pytest

from tests.fakes.copilot import FakeCopilot
from tests.unit.test_fake_upstream import blocking_text, blocking_usage, sse_events, stream_text, stream_usage

TOKEN = "gho_FakeCopilotUnitTestToken000000000ab12"
EDITOR = {"Editor-Version": "vscode/1.108.0", "Copilot-Integration-Id": "vscode-chat"}


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeCopilot]:
    copilot = FakeCopilot({TOKEN})
    await copilot.start()
    yield copilot
    await copilot.stop()


@pytest.fixture
async def oai(fake: FakeCopilot) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=fake.url, api_key=TOKEN, default_headers=EDITOR, max_retries=0)
    yield client
    await client.close()


def test_chat_data_is_copilots_and_agrees_with_its_usage() -> None:
    sc = FakeCopilot({TOKEN}).scenarios[("chat", "simple")]
    body, blocking = b"".join(c for c, _ in sc.replies["streaming"].chunks), sc.replies["blocking"].body
    assert stream_usage("chat", body) == blocking_usage("chat", blocking) == sc.usages["usage"]
    assert stream_text("chat", body) == blocking_text("chat", blocking)
    chunks = [orjson.loads(data) for _, data in sse_events(body) if data != "[DONE]"]
    assert chunks[0]["choices"] == [] and chunks[0]["prompt_filter_results"] and chunks[0]["id"] == ""
    assert all("content_filter_results" in c["choices"][0] and "object" not in c for c in chunks[1:])
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["prompt_tokens_details"]
    # usage is sent unasked: the stream without include_usage is the same
    assert sc.replies["streaming"].chunks_no_usage == sc.replies["streaming"].chunks
    assert "prompt_filter_results" in orjson.loads(blocking)


async def test_the_openai_sdk_reads_copilots_streams_and_lists(fake: FakeCopilot, oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(model="gpt-4.1", stream=True,
                                               messages=[{"role": "user", "content": "hi"}])
    chunks = [c async for c in stream]
    assert chunks[0].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 2306
    done = await oai.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
    assert done.choices[0].message.content == "".join(c.choices[0].delta.content or "" for c in chunks[1:])
    models = await oai.models.list()
    assert "claude-sonnet-4.5" in [m.id for m in models.data]
    assert (await oai.models.retrieve("gpt-4.1")).id == "gpt-4.1"
    embedded = await oai.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(embedded.data) == 2
    assert [r.path for r in fake.requests[-5:]] == ["/chat/completions", "/chat/completions", "/models",
                                                    "/models/gpt-4.1", "/embeddings"]


async def test_it_refuses_what_copilot_refuses(fake: FakeCopilot) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{fake.url}/models", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 400
            assert await resp.text() == "bad request: missing Editor-Version header for IDE auth\n"
            assert resp.headers["Content-Type"].startswith("text/plain") and resp.headers["x-github-request-id"]
        for auth in ("Bearer sk-not-a-copilot-token", f"token {TOKEN}", ""):
            async with http.get(f"{fake.url}/models", headers={**EDITOR, "Authorization": auth}) as resp:
                assert (resp.status, await resp.text()) == (401, "unauthorized: token expired\n")
        async with http.get(f"{fake.url}/agents", headers={**EDITOR, "Authorization": f"Bearer {TOKEN}"}) as resp:
            assert (resp.status, await resp.json()) == (200, {"agents": []})
