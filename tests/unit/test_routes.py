"""The providers' route tables and the model-name rule (issue 20, 1.1 and 2.9)."""

from __future__ import annotations

import pytest

from aibridge.bridge.apis.chat_completions import CHAT_COMPLETIONS
from aibridge.bridge.apis.messages import MESSAGES
from aibridge.bridge.providers.anthropic import ROUTES as ANTHROPIC
from aibridge.bridge.providers.bedrock.provider import ROUTES as BEDROCK
from aibridge.bridge.providers.copilot import PASS_THE_REST
from aibridge.bridge.providers.copilot import ROUTES as COPILOT
from aibridge.bridge.providers.openai import ROUTES as OPENAI
from aibridge.bridge.routes import model_problem


def test_one_table_says_intercepted_passed_through_or_refused() -> None:
    chat = OPENAI.find("POST", "v1/chat/completions")
    assert chat is not None and chat.route.api is CHAT_COMPLETIONS
    assert OPENAI.find("GET", "v1/chat/completions") is None                 # refused: not a documented method
    model = OPENAI.find("GET", "v1/models/gpt-4.1")
    assert model is not None and model.route.api is None and model.model == "gpt-4.1"
    cancel = OPENAI.find("POST", "v1/responses/resp_1/cancel")
    assert cancel is not None and cancel.owned == (("response", "resp_1"),)
    items = OPENAI.find("DELETE", "v1/conversations/conv_1/items/msg_2")
    assert items is not None and items.owned == (("conversation", "conv_1"),)
    counting = ANTHROPIC.find("POST", "v1/messages/count_tokens")
    assert counting is not None and counting.route.model_in_body and counting.route.api is None
    created = OPENAI.find("POST", "v1/conversations")
    assert created is not None and created.route.creates == "conversation"
    assert OPENAI.apis == {"v1/chat/completions": CHAT_COMPLETIONS, "v1/responses": OPENAI.apis["v1/responses"]}
    assert BEDROCK.apis == {"v1/messages": MESSAGES} and BEDROCK.find("GET", "v1/models") is None


@pytest.mark.parametrize("tail", ["v1/models/..;", "v1/models/a..b", "v1/models/x;y", "v1/models/a/b",
                                  "v1/responses/..;/cancel", "v1/models/.hidden", "v1/models/"])
def test_path_parameters_hold_only_name_characters(tail: str) -> None:
    method = "POST" if tail.endswith("cancel") else "GET"
    assert OPENAI.find(method, tail) is None
    assert not OPENAI.knows(tail)


def test_copilot_intercepts_three_apis_and_passes_the_rest_through() -> None:
    assert set(COPILOT.apis) == {"chat/completions", "responses", "v1/messages"}
    assert next(iter(COPILOT.apis.values())) is CHAT_COMPLETIONS        # its errors are in OpenAI's shape
    model = COPILOT.find("GET", "models/claude-sonnet-4.5")
    assert model is not None and model.route is not PASS_THE_REST and model.model == "claude-sonnet-4.5"
    embeddings = COPILOT.find("POST", "embeddings")
    assert embeddings is not None and embeddings.route.model_in_body
    for method, tail in (("GET", "_ping"), ("GET", "agents"), ("POST", "models/session"),
                         ("GET", "agents/github/skills"), ("POST", "models/gpt-5/policy")):
        found = COPILOT.find(method, tail)
        assert found is not None and found.route is PASS_THE_REST and found.params == {"path": tail}, tail


@pytest.mark.parametrize("tail", ["v1/chat/completions", "chat/completions", "v1/responses", "agents/x/messages",
                                  "models/..", "a..b/c", "x;y", "models/", "/models", "a//b", "%2e%2e/x"])
def test_copilots_catch_all_holds_names_only_and_no_model_call(tail: str) -> None:
    """A model call the table does not intercept (or a GET of one) is refused, not relayed unrecorded;
    every segment of a passed-through path is a name (no dots-only segment, separator or escape)."""
    assert COPILOT.find("GET", tail) is None
    assert tail in ("chat/completions", "v1/chat/completions", "v1/responses", "agents/x/messages") or \
        not COPILOT.knows(tail)


@pytest.mark.parametrize("model", ["gpt-4.1", "claude-sonnet-4-5@20250929", "ft:gpt-4.1:acme:custom:abc123",
                                   "global.anthropic.claude-sonnet-4-5-20250929-v1:0", "", "a" * 256])
def test_real_model_names_are_accepted(model: str) -> None:
    assert model_problem(model) is None


@pytest.mark.parametrize("model", ["meta/llama-3", "../x", "a..b", "gpt 4", "gpt\t", "x\x00", "é", ".x", "x.",
                                   "a" * 257])
def test_other_model_names_are_refused(model: str) -> None:
    problem = model_problem(model)
    assert problem is not None and "model name" in problem
