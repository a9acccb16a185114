"""Which headers go upstream and which come back: credentials and hop-by-hop headers never pass,
however they are spelled, and the per-name memory of the filters stays bounded."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

from aibridge.bridge.providers import http
from aibridge.bridge.providers.http import forwardable_headers, relayable_headers

CLIENT_HEADERS = [
    ("Content-Type", "application/json"), ("User-Agent", "claude-cli/2.0"), ("anthropic-version", "2023-06-01"),
    ("Authorization", "Bearer user-token"), ("AUTHORIZATION", "Bearer user-token"), ("x-api-key", "user-token"),
    ("X-Api-Key", "user-token"), ("Coder-Session-Token", "user-token"), ("Cookie", "a=b"), ("Host", "bridge"),
    ("Content-Length", "12"), ("Connection", "keep-alive"), ("Accept-Encoding", "br"),
    ("OpenAI-Organization", "org-x"), ("X-AI-Bridge-Actor-ID", "spoofed"), ("x-ai-bridge-actor-metadata-x", "y"),
    ("X-Stainless-Lang", "js"), ("X-Stainless-Lang", "js-twice"),
]


def test_credentials_and_hop_by_hop_headers_never_go_upstream() -> None:
    for _ in range(3):          # the first pass learns the names, the next ones use what was learnt
        passed = forwardable_headers(CIMultiDictProxy(CIMultiDict(CLIENT_HEADERS)))
        assert list(passed.items()) == [
            ("Content-Type", "application/json"), ("User-Agent", "claude-cli/2.0"),
            ("anthropic-version", "2023-06-01"), ("X-Stainless-Lang", "js"), ("X-Stainless-Lang", "js-twice")]


def test_answer_headers_relayed() -> None:
    upstream = [("Content-Type", "text/event-stream"), ("Content-Encoding", "gzip"), ("Set-Cookie", "x=y"),
                ("transfer-encoding", "chunked"), ("request-id", "req_1"), ("Server", "cloudflare"),
                ("anthropic-ratelimit-requests-remaining", "99")]
    for _ in range(2):
        assert list(relayable_headers(CIMultiDict(upstream)).items()) == [
            ("Content-Type", "text/event-stream"), ("request-id", "req_1"),
            ("anthropic-ratelimit-requests-remaining", "99")]


def test_the_filter_memory_is_bounded() -> None:
    filter_ = http._HeaderFilter(lambda name: name != "secret")
    for n in range(10_000):
        assert list(filter_(CIMultiDict([(f"X-Made-Up-{n}", "1"), ("Secret", "s")])).keys()) == [f"X-Made-Up-{n}"]
    assert len(filter_._passes) <= 4098
