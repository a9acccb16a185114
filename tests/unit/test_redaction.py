"""Secret redaction: the pattern set on real-looking secrets of each kind, and the addon on a flow."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict

from aibridge.bridge.apis.base import RequestInfo, Thought, ToolCall, Usage
from aibridge.bridge.apis.messages import MESSAGES
from aibridge.bridge.flow import Addons, Flow
from aibridge.bridge.providers.base import UpstreamRequest
from aibridge.identity.roles import Actor
from aibridge.observability.metrics import Metrics
from aibridge.recording.addon import start_records, to_record
from aibridge.redaction.addon import RedactionAddon, redact_tree
from aibridge.redaction.secrets import RULES, Redactor
from aibridge.store import records as rec

# Real-looking secrets (made up for these tests, never valid), each with the text around it.
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8Tb3kLmW"
SECRETS: dict[str, tuple[str, str]] = {
    # kind: (text, the secret part that must vanish)
    "private_key": ("key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB\n"
                    "AAAAMwAAAAtzc2gtZWQyNTUxOQAAACDx4ZRqV8bTmB3q\n-----END OPENSSH PRIVATE KEY-----\ndone",
                    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB"),
    "aws_access_key_id": ("the key id is AKIAZ7QX4MNB2VKL3PDR, region us-east-1", "AKIAZ7QX4MNB2VKL3PDR"),
    "aws_secret_access_key": (f"[default]\naws_secret_access_key = {AWS_SECRET}\n", AWS_SECRET),
    "anthropic_api_key": ("ANTHROPIC key sk-ant-api03-Zx8vQm2LpR7tW4nY6bK1cD9fG3hJ5sA0eU-qP_iO2lM8nB4vC7xZ1aS6dF3gH9jK "
                          "in env", "sk-ant-api03-Zx8vQm2LpR7tW4nY6bK1cD9fG3hJ5sA0eU"),
    "openai_api_key": ("client = OpenAI(api_key=sk-proj-4fGh8JkL2mNp6QrS0tUv3WxY7zAb1CdE5fGh9IjK2lMn)",
                       "sk-proj-4fGh8JkL2mNp6QrS0tUv3WxY7zAb1CdE5fGh9IjK2lMn"),
    "github_token": ("git clone https://github.com/acme/x; token ghp_R4nd0mT0k3nV4lu3F0rT3st1ngAbCdEf1234 ok",
                     "ghp_R4nd0mT0k3nV4lu3F0rT3st1ngAbCdEf1234"),
    "gitlab_token": ("GL token glpat-x7Yz2AbC9dEf4GhJ1kLm here", "glpat-x7Yz2AbC9dEf4GhJ1kLm"),
    "slack_token": ("bot: xoxb-2048163745-4096327581-Qw3rTy8UiOpAsDfGhJkL", "xoxb-2048163745-4096327581"),
    "slack_webhook": ("post to https://hooks.slack.com/services/T024BE7LD/B08TJ3N7L/9xQmP2rT5vW8yZ1bC4dF",
                      "T024BE7LD/B08TJ3N7L/9xQmP2rT5vW8yZ1bC4dF"),
    "stripe_key": ("stripe.api_key = sk_live_51HcQ8wKz7yP3xR9tL2mN6vB4", "sk_live_51HcQ8wKz7yP3xR9tL2mN6vB4"),
    "google_api_key": ("maps key AIzaSyB7x9Qm2LpR7tW4nY6bK1cD9fG3hJ5sA0e end",
                       "AIzaSyB7x9Qm2LpR7tW4nY6bK1cD9fG3hJ5sA0e"),
    "huggingface_token": ("HF hf_QmXw2Lp9Rt7Vn4Yb6Kc1Df3Gh5Js8Az0EuPq", "hf_QmXw2Lp9Rt7Vn4Yb6Kc1Df3Gh5Js8Az0EuPq"),
    "npm_token": ("//registry.npmjs.org/:_authToken=npm_Qw3rTy8UiOpAsDfGhJkLzXcVbNm1234567Ab",
                  "npm_Qw3rTy8UiOpAsDfGhJkLzXcVbNm1234567Ab"),
    "jwt": ("cookie: session=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImlhdCI6MTcwMDAwMDAwMH0."
            "Qm2LpR7tW4nY6bK1cD9fG3hJ5sA0eUqP; path=/", "Qm2LpR7tW4nY6bK1cD9fG3hJ5sA0eUqP"),
    "url_password": ("DATABASE_URL: postgres://app:Tr0ub4dor-and-3@db.internal:5432/app", "Tr0ub4dor-and-3"),
    "bearer_token": ("curl -H 'Authorization: Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0' https://api.example.com",
                     "9f8e7d6c5b4a39281706f5e4d3c2b1a0"),
    "password": ('config = {"db_password": "c0rrect-h0rse-battery"}', "c0rrect-h0rse-battery"),
    "env_secret": ("# .env\nDJANGO_SECRET_KEY=q8w7e6r5t4y3u2i1o0p9\nDEBUG=1", "q8w7e6r5t4y3u2i1o0p9"),
}
# Ordinary text and code that looks a little like secrets and must be left as it is.
HARMLESS = [
    'api_key = os.environ["OPENAI_API_KEY"]',
    "password = getpass.getpass()",
    "GITHUB_TOKEN=${{ secrets.GITHUB_TOKEN }}",
    "Use sk-... keys from the dashboard; a token is a short string.",
    "see https://example.com/path?q=1 and git@github.com:acme/repo.git",
    "The AWS secret access key goes in ~/.aws/credentials.",
    "def check(password: str) -> bool:\n    return len(password) >= 12",
    "[REDACTED:openai_api_key] was already replaced",
]


def test_every_kind_has_a_case() -> None:
    assert set(SECRETS) == set(RULES)


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_each_kind_is_redacted(kind: str) -> None:
    text, secret = SECRETS[kind]
    counts: Counter[str] = Counter()
    redacted = Redactor().redact(text, counts)
    assert secret not in redacted
    assert f"[REDACTED:{kind}]" in redacted
    assert counts == {kind: 1}


def test_only_the_secret_part_goes() -> None:
    redactor = Redactor()
    assert redactor.redact(SECRETS["url_password"][0]) == \
        "DATABASE_URL: postgres://app:[REDACTED:url_password]@db.internal:5432/app"
    assert redactor.redact(SECRETS["password"][0]) == 'config = {"db_password": "[REDACTED:password]"}'
    assert redactor.redact("AKIAZ7QX4MNB2VKL3PDR and AKIAZ7QX4MNB2VKL3PDQ.") == \
        "[REDACTED:aws_access_key_id] and [REDACTED:aws_access_key_id]."


@pytest.mark.parametrize("text", HARMLESS)
def test_ordinary_text_is_left_alone(text: str) -> None:
    counts: Counter[str] = Counter()
    assert Redactor().redact(text, counts) is text
    assert not counts


def test_overlapping_rules_count_once() -> None:
    # An Anthropic key is also an "sk-" key; a key inside a private key block is part of the block.
    counts: Counter[str] = Counter()
    text = (SECRETS["anthropic_api_key"][0]
            + "\n-----BEGIN PRIVATE KEY-----\nAKIAZ7QX4MNB2VKL3PDR\n-----END PRIVATE KEY-----")
    redacted = Redactor().redact(text, counts)
    assert counts == {"anthropic_api_key": 1, "private_key": 1}
    assert "AKIA" not in redacted and "sk-ant" not in redacted


def test_all_kinds_in_one_text_and_deterministic() -> None:
    text = "\n".join(t for t, _ in SECRETS.values())
    counts: Counter[str] = Counter()
    once = Redactor().redact(text, counts)
    assert counts == dict.fromkeys(SECRETS, 1)
    assert all(secret not in once for _, secret in SECRETS.values())
    assert Redactor().redact(text) == once           # same bytes every time: prompt caching holds
    assert Redactor().redact(once) == once           # redacting twice changes nothing


def test_unterminated_private_key_is_redacted_to_the_end() -> None:
    text = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"
    assert Redactor().redact(text) == "[REDACTED:private_key]"


def test_non_ascii_text_whose_lower_case_changes_length() -> None:
    # "İ" lower-cases to two code points: spans must still be taken from the original text.
    text = 'İİİ password: "sup3r-s3cret-value" İ'
    assert Redactor().redact(text) == 'İİİ password: "[REDACTED:password]" İ'


# ---------------------------------------------------------------- the addon


class FakeProvider:
    type = "anthropic"
    name = "anthropic"
    apis: dict[str, Any] = {"v1/messages": MESSAGES}


ACTOR = Actor(uuid.uuid4(), "alice", "Alice", "a@example.com", "member", "tokid")


def make_flow(prompt: str | None) -> Flow:
    return Flow(id=uuid.uuid4(), actor=ACTOR, provider=FakeProvider(), api=MESSAGES,  # type: ignore[arg-type]
                route="/v1/messages", method="POST", info=RequestInfo("claude-sonnet-4-5", True, prompt),
                model="claude-sonnet-4-5", client="Claude Code", session_id=None, user_agent="claude-cli/2.0")


def run_flow(addon: RedactionAddon, prompt: str, findings: list[Any]) -> list[rec.Record]:
    from aibridge.bridge.flow import Addon

    records: list[rec.Record] = []

    class Recorder(Addon):
        def request_parsed(self, flow: Flow) -> None:
            records.extend(start_records(flow))

        def finding(self, flow: Flow, finding: Any) -> None:
            records.append(to_record(flow, finding))

    addons = Addons([addon, Recorder()])
    flow = make_flow(prompt)
    addons.request_parsed(flow)
    for finding in findings:
        addons.finding(flow, finding)
    return records


def test_addon_redacts_prompt_tool_input_and_thought_before_records() -> None:
    aws_id, aws_secret = SECRETS["aws_access_key_id"][1], AWS_SECRET
    addon = RedactionAddon("store")
    records = run_flow(addon, f"deploy with {aws_id} and aws_secret_access_key={aws_secret}", [
        ToolCall("msg_1", "toolu_1", "bash", orjson.dumps({"command": f"export GH={SECRETS['github_token'][1]}"})
                 .decode()),
        Thought(f"The user pasted {SECRETS['openai_api_key'][1]}; I should not repeat it."),
        Usage("msg_1", 10, 20),
    ])
    text = orjson.dumps([r.__dict__ if hasattr(r, "__dict__") else repr(r) for r in records],
                        default=repr).decode()
    for secret in (aws_id, aws_secret, SECRETS["github_token"][1], SECRETS["openai_api_key"][1]):
        assert secret not in text
    prompt = next(r for r in records if isinstance(r, rec.PromptRecord))
    assert prompt.prompt == ("deploy with [REDACTED:aws_access_key_id] and "
                             "aws_secret_access_key=[REDACTED:aws_secret_access_key]")
    assert prompt.metadata == {"redactions": {"aws_access_key_id": 1, "aws_secret_access_key": 1}}
    tool = next(r for r in records if isinstance(r, rec.ToolUsageRecord))
    assert tool.metadata == {"redactions": {"github_token": 1}}
    assert orjson.loads(tool.input) == {"command": "export GH=[REDACTED:github_token]"}   # still valid JSON
    thought = next(r for r in records if isinstance(r, rec.ThoughtRecord))
    assert thought.metadata == {"redactions": {"openai_api_key": 1}}
    assert addon.counts == {"aws_access_key_id": 1, "aws_secret_access_key": 1, "github_token": 1,
                            "openai_api_key": 1}


def test_redactions_metric_reads_the_addon_counts() -> None:
    metrics = Metrics()
    addon = RedactionAddon("store")
    metrics.watch(*addon.collectors())
    run_flow(addon, f"two keys {SECRETS['aws_access_key_id'][1]} {SECRETS['aws_access_key_id'][1]}", [])
    value = metrics.registry.get_sample_value("coder_aibridged_redactions_total", {"kind": "aws_access_key_id"})
    assert value == 2


def upstream_request(body: dict[str, Any]) -> UpstreamRequest:
    return UpstreamRequest("POST", "v1/messages", "", CIMultiDict(), orjson.dumps(body), body, True)


def test_store_mode_leaves_the_upstream_request_alone() -> None:
    body = {"messages": [{"role": "user", "content": SECRETS["github_token"][0]}]}
    request = upstream_request(body)
    raw = request.body
    RedactionAddon("store").upstream_request(make_flow(None), request)
    assert request.body == raw


def test_upstream_mode_redacts_every_string_but_opaque_fields() -> None:
    signature = "EqQBCkYIARgCIkA" + SECRETS["aws_access_key_id"][1] + "zq=="
    body = {
        "model": "claude-sonnet-4-5",
        "system": [{"type": "text", "text": "You are helpful."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": SECRETS["url_password"][0]}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hm", "signature": signature},
                {"type": "tool_use", "id": "toolu_1", "name": "bash",
                 "input": {"command": f"curl -u x {SECRETS['bearer_token'][0]}"}}]},
            {"role": "user", "content": [{"type": "image", "source": {
                "type": "base64", "media_type": "image/png", "data": "iVBOR" + SECRETS["google_api_key"][1]}}]},
        ],
    }
    request = upstream_request(body)
    RedactionAddon("upstream").upstream_request(make_flow(None), request)
    sent = orjson.loads(request.body)
    assert sent == request.json
    text = request.body.decode()
    assert SECRETS["url_password"][1] not in text and SECRETS["bearer_token"][1] not in text
    assert "[REDACTED:url_password]" in text and "[REDACTED:bearer_token]" in text
    assert sent["messages"][1]["content"][0]["signature"] == signature          # opaque: untouched
    assert sent["messages"][2]["content"][0]["source"]["data"].endswith(SECRETS["google_api_key"][1])


def test_redact_tree_reports_no_change_on_clean_bodies() -> None:
    body = {"messages": [{"role": "user", "content": "hello"}], "n": 1, "stream": True}
    assert redact_tree(body, Redactor()) is False


def test_off_is_not_an_addon_mode() -> None:
    with pytest.raises(ValueError):
        RedactionAddon("off")
