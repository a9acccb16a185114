"""Every ``/api/v2/aibridge/…`` route of the built application also answers at ``/api/v2/ai-gateway/…``."""

from __future__ import annotations

from pathlib import Path

from aibridge.bridge.providers import PROVIDER_KINDS
from aibridge.config import load_settings
from aibridge.server import build_app
from aibridge.store.db import create_engine


def test_every_aibridge_route_has_an_ai_gateway_alias(tmp_path: Path) -> None:
    settings = load_settings(env={"CODER_AIBRIDGE_DATA_DIR": str(tmp_path), "CODER_AIBRIDGE_ENABLED": "true",
                                  "CODER_AIBRIDGE_OPENAI_KEY": "sk-test"}, provider_kinds=PROVIDER_KINDS)
    app = build_app(settings, create_engine(settings.database_url))
    routes = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}
    primary = {(method, path) for method, path in routes if path.startswith("/api/v2/aibridge/")}
    assert len(primary) >= 6
    for method, path in primary:
        assert (method, "/api/v2/ai-gateway/" + path.removeprefix("/api/v2/aibridge/")) in routes, path
