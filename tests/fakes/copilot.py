"""A fake GitHub Copilot API (``api.<plan>.githubcopilot.com``), faithful to its wire format.

Built on the fake upstream (``upstream.py``: its request log, its Responses and Messages replies,
which Copilot relays in OpenAI's and Anthropic's own formats), with what is Copilot's own:

- paths without ``/v1`` (``/chat/completions``, ``/responses``, ``/models``, ``/embeddings``,
  ``/agents``) beside ``/v1/messages``;
- authentication by the user's own bearer (a Copilot token from VS Code, a ``gho_`` token from the
  Copilot CLI): anything else is ``401 unauthorized: token expired`` in plain text, and a request
  without ``Editor-Version`` is ``400 bad request: missing Editor-Version header for IDE auth``;
- Chat Completions as Copilot streams it (``tests/data/copilot/chat/*.txtar``): a first chunk
  without choices holding ``prompt_filter_results``, ``content_filter_results`` in every chunk,
  usage (with ``cached_tokens``) in the finish chunk whether or not the request asked for it;
- its response headers (``x-github-request-id``) and its ``/models`` list.

    fake = FakeCopilot({"tid=…", "gho_…"})
    await fake.start()          # base URL: fake.url (no path)
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.upstream import (
    DATA_DIR,
    JSON_CONTENT_TYPE,
    FakeUpstream,
    Provider,
    ReceivedRequest,
    load_models,
    load_scenarios,
)

COPILOT_DATA_DIR: Final = DATA_DIR.parent / "copilot"
TEXT_CONTENT_TYPE: Final = "text/plain; charset=utf-8"


def copilot_scenarios(data_dir: Path = COPILOT_DATA_DIR) -> dict[tuple[str, str], Any]:
    """The upstream's Responses and Messages scenarios, and Copilot's own Chat Completions ones
    (their usage chunk never stripped: Copilot sends usage unasked)."""
    scenarios = {key: sc for key, sc in load_scenarios().items() if key[0] != "chat"}
    for key, sc in load_scenarios(data_dir).items():
        replies = {name: dataclasses.replace(reply, chunks_no_usage=reply.chunks)
                   for name, reply in sc.replies.items()}
        scenarios[key] = dataclasses.replace(sc, replies=replies)
    return scenarios


class FakeCopilot(FakeUpstream):
    def __init__(self, tokens: Iterable[str], *, data_dir: Path = COPILOT_DATA_DIR) -> None:
        self.tokens = set(tokens)
        super().__init__()
        self.scenarios = copilot_scenarios(data_dir)
        self.copilot_models: dict[str, Any] = load_models(data_dir)["copilot"]
        self._github_ids = itertools.count(0x1A2B)

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_post("/chat/completions", self._chat)
        r.add_post("/responses", self._responses)
        r.add_post("/v1/messages", self._messages)
        r.add_get("/models", self._models)
        r.add_get("/models/{id}", self._model)
        r.add_post("/embeddings", self._embeddings)
        r.add_get("/agents", self._agents)
        return app

    # -- what makes it Copilot ------------------------------------------------------------------------------

    def _headers(self, provider: Provider, content_type: str | None) -> CIMultiDict[str]:
        n = next(self._github_ids)
        h: CIMultiDict[str] = CIMultiDict()
        if content_type:
            h["Content-Type"] = content_type
        h["x-github-request-id"] = f"{n:04X}:2F61A0:5C3E9B1:6D4FAC2:69B2{n:04X}"
        h["x-request-id"] = str(uuid.UUID(int=n))
        return h

    def _auth_error(self, rec: ReceivedRequest, provider: Provider) -> web.Response | None:
        if "Editor-Version" not in rec.headers:
            return self._text(rec, 400, "bad request: missing Editor-Version header for IDE auth")
        scheme, _, token = rec.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.strip() not in self.tokens:
            return self._text(rec, 401, "unauthorized: token expired")
        return None

    def _text(self, rec: ReceivedRequest, status: int, message: str) -> web.Response:
        rec.status = status
        return web.Response(status=status, body=(message + "\n").encode(),
                            headers=self._headers("openai", TEXT_CONTENT_TYPE))

    def _json(self, rec: ReceivedRequest, body: Any, status: int = 200) -> web.Response:
        rec.status = status
        return web.Response(status=status, body=orjson.dumps(body), headers=self._headers("openai", JSON_CONTENT_TYPE))

    # -- the passed-through routes --------------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.StreamResponse:
        rec = await self._receive(request, "models")
        return self._auth_error(rec, "openai") or self._json(rec, self.copilot_models)

    async def _model(self, request: web.Request) -> web.StreamResponse:
        rec = await self._receive(request, "models")
        denied = self._auth_error(rec, "openai")
        if denied is not None:
            return denied
        found = next((m for m in self.copilot_models["data"] if m["id"] == request.match_info["id"]), None)
        if found is None:
            return self._json(rec, {"error": {"message": "Model not found", "code": "model_not_found"}}, 404)
        return self._json(rec, found)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        rec = await self._receive(request, "embeddings")
        denied = self._auth_error(rec, "openai")
        if denied is not None:
            return denied
        inputs = rec.json.get("input") if isinstance(rec.json, dict) else None
        texts = inputs if isinstance(inputs, list) else [inputs]
        data = [{"embedding": [0.0125, -0.0311, 0.0042], "index": i, "object": "embedding"} for i in range(len(texts))]
        return self._json(rec, {"data": data, "model": rec.model or "", "object": "list",
                                "usage": {"prompt_tokens": 7 * len(texts), "total_tokens": 7 * len(texts)}})

    async def _agents(self, request: web.Request) -> web.StreamResponse:
        rec = await self._receive(request, "agents")
        return self._auth_error(rec, "openai") or self._json(rec, {"agents": []})
