"""Run by test_proxy.py in a process of its own: an official SDK that knows nothing of AI Bridge.

Configured only through the environment the way a developer would (HTTPS_PROXY, SSL_CERT_FILE,
the SDK's own API key), it calls the SDK's default base URL, blocking then streaming, and
prints what it got as one JSON line.

    python -m tests.e2e.proxy_sdk openai|anthropic MODEL PROMPT
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import anthropic
import openai
import orjson


async def run_openai(model: str, prompt: str) -> dict[str, Any]:
    client = openai.AsyncOpenAI(max_retries=0, timeout=30)
    assert str(client.base_url) == "https://api.openai.com/v1/"
    messages: Any = [{"role": "user", "content": prompt + " blocking"}]
    done = await client.chat.completions.create(model=model, messages=messages)
    streamed = [c async for c in await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt + " streaming"}], stream=True)]
    models = await client.models.list()
    return {"blocking": done.choices[0].message.content, "chunks": len(streamed),
            "models": [m.id for m in models.data][:3]}


async def run_anthropic(model: str, prompt: str) -> dict[str, Any]:
    client = anthropic.AsyncAnthropic(max_retries=0, timeout=30)
    assert str(client.base_url) == "https://api.anthropic.com"
    done = await client.messages.create(model=model, max_tokens=64,
                                        messages=[{"role": "user", "content": prompt + " blocking"}])
    async with client.messages.stream(model=model, max_tokens=64,
                                      messages=[{"role": "user", "content": prompt + " streaming"}]) as events:
        final = await events.get_final_message()
    return {"blocking": done.stop_reason, "streamed": final.stop_reason}


def main() -> None:
    sdk, model, prompt = sys.argv[1:4]
    result = asyncio.run((run_openai if sdk == "openai" else run_anthropic)(model, prompt))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
