from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anthropic
import pytest

from tests.fakes.upstream import FakeUpstream
from tests.harness import Client, Database, ServerProcess


def bridge_env(fake: FakeUpstream) -> dict[str, str]:
    return {
        "CODER_AIBRIDGE_ENABLED": "true",
        "CODER_AIBRIDGE_OPENAI_KEY": "sk-openai-central",
        "CODER_AIBRIDGE_OPENAI_BASE_URL": f"{fake.url}/v1/",
        "CODER_AIBRIDGE_ANTHROPIC_KEY": "sk-ant-central",
        "CODER_AIBRIDGE_ANTHROPIC_BASE_URL": f"{fake.url}/",
        "CODER_AIBRIDGE_SHUTDOWN_GRACE": "5s",
    }


async def ask(client: anthropic.AsyncAnthropic, stream: bool, **kwargs: Any) -> anthropic.types.Message:
    """One Messages call through the SDK, streamed or not, as the final message."""
    if stream:
        async with client.messages.stream(**kwargs) as events:
            return await events.get_final_message()
    message: anthropic.types.Message = await client.messages.create(**kwargs)
    return message


@dataclass
class Bridge:
    server: ServerProcess
    fake: FakeUpstream
    token: str                 # a member's token ("alice")
    other_token: str           # another member ("bob")

    @property
    def openai_url(self) -> str:
        return f"{self.server.url}/api/v2/aibridge/openai/v1"

    @property
    def anthropic_url(self) -> str:
        return f"{self.server.url}/api/v2/aibridge/anthropic"

    def owner(self) -> Client:
        return Client(self.server.url, self.server.admin_token)


@pytest.fixture(scope="module")
async def bridge(module_database: Database) -> AsyncIterator[Bridge]:
    fake = FakeUpstream()
    await fake.start()
    server = await ServerProcess(module_database, env=bridge_env(fake)).start()
    try:
        yield Bridge(server, fake, server.create_user("alice"), server.create_user("bob"))
    finally:
        server.stop()
        await fake.stop()
