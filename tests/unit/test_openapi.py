"""The OpenAPI document lists every REST route the application registers, and nothing else
(issue 20, 2.8): governance, spend, the proxy CA, metrics, health and the ``ai-gateway`` aliases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer

from aibridge.bridge.providers import PROVIDER_KINDS
from aibridge.config import load_settings
from aibridge.server import build_app
from aibridge.store.db import create_engine

NOT_REST = ("/aibridge", "/{provider}/{tail}")      # the web UI's pages and files; the bridge's own routes
UI_PAGES = ("/", "/cli-auth")                        # redirects to the web UI, not REST


def _is_rest(path: str) -> bool:
    return path not in UI_PAGES and not path.startswith(NOT_REST[0]) and not path.endswith(NOT_REST[1])


async def test_the_document_lists_exactly_the_registered_routes(tmp_path: Path) -> None:
    settings = load_settings(env={
        "CODER_AIBRIDGE_DATA_DIR": str(tmp_path), "CODER_AIBRIDGE_ENABLED": "true",
        "CODER_AIBRIDGE_OPENAI_KEY": "sk-test", "CODER_PROMETHEUS_ENABLE": "true",
        "CODER_AIBRIDGE_PROXY_ENABLED": "true"}, provider_kinds=PROVIDER_KINDS)
    engine = create_engine(settings.database_url)
    app = build_app(settings, engine)
    routes = {(route.method.lower(), route.resource.canonical) for route in app.router.routes()
              if route.resource and route.method != "HEAD" and _is_rest(route.resource.canonical)}
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/api/v2/openapi.json")
        assert resp.status == 200
        document: dict[str, Any] = orjson.loads(await resp.read())
    await engine.dispose()
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert documented == routes
    for needed in ("/api/v2/aibridge/spend", "/api/v2/aibridge/budgets/{target}", "/metrics",
                   "/api/v2/aibridge/proxy/ca-cert.pem", "/api/v2/ai-gateway/interceptions", "/readyz"):
        assert needed in document["paths"], needed
    for path, item in document["paths"].items():
        for operation in item.values():
            assert operation["summary"] and operation["responses"], path
            named = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert named == {part[1:-1] for part in path.split("/") if part.startswith("{")}, path
