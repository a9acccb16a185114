"""Builds the application (middlewares, routes, start-up and shutdown) and runs it."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.api import interceptions as interceptions_api
from aibridge.api import users as users_api
from aibridge.api.common import APIError, json_response
from aibridge.bridge.actor_headers import ActorHeadersAddon
from aibridge.bridge.flow import Addon, Addons
from aibridge.bridge.providers import build_provider
from aibridge.bridge.routing import PREFIX, Bridge, json_error
from aibridge.config import ConfigError, Settings, redact_url
from aibridge.identity.auth import Authenticator, AuthError
from aibridge.observability.metrics import Metrics, MetricsAddon, MetricsListener
from aibridge.observability.structured import StructuredLogger
from aibridge.observability.tracing import Tracing
from aibridge.recording.addon import RecordingAddon
from aibridge.recording.recorder import Recorder
from aibridge.recording.retention import RetentionTask
from aibridge.resilience.breaker import CircuitBreakerAddon
from aibridge.resilience.limits import LimitsAddon, RedisCounter
from aibridge.server_keys import AUTHENTICATOR, ENGINE, RECORDER, SETTINGS
from aibridge.store import users as user_store
from aibridge.store.db import create_engine, migrate
from aibridge.web import ui as web_ui

log = logging.getLogger("aibridge.server")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BRIDGE: web.AppKey[Bridge] = web.AppKey("bridge")
METRICS: web.AppKey[Metrics | None] = web.AppKey("metrics")
TRACING: web.AppKey[Tracing | None] = web.AppKey("tracing")
FIRST_OWNER = "admin"


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """JSON errors for the API; a client never sees a traceback."""
    try:
        return await handler(request)
    except APIError:
        raise
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise
        return json_error(exc.status, exc.reason)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unexpected error handling %s %s", request.method, request.path)
        return json_error(500, "internal server error", "the error was logged on the server")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every /api/v2 route needs a token, except the bridge routes (they answer in the provider's shape)."""
    if request.path.startswith("/api/v2/") and "provider" not in request.match_info \
            and request.match_info.http_exception is None:
        try:
            request["actor"] = await request.app[AUTHENTICATOR].authenticate(request.headers)
        except AuthError as exc:
            raise APIError(exc.status, exc.message) from None
    return await handler(request)


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def buildinfo(_request: web.Request) -> web.Response:
    from aibridge import __version__
    return json_response({"version": __version__})


def observers(settings: Settings, recorder: Recorder, metrics: Metrics | None,
              tracing: Tracing | None) -> list[Addon]:
    """Metrics, traces and structured logs; only what is enabled is attached (disabled costs nothing)."""
    addons: list[Addon] = []
    if metrics is not None:
        metrics_addon = MetricsAddon(metrics)
        recorder.listeners.append(metrics_addon.record_listener)
        addons.append(metrics_addon)
    if tracing is not None:
        addons.append(tracing.addon)
    if settings.aibridge_structured_logging:
        recorder.listeners.append(StructuredLogger())
    return addons


def guards(settings: Settings, metrics: Metrics | None) -> list[Addon]:
    """Limits and the circuit breaker: they may refuse a request before anything else sees it."""
    addons: list[Addon] = []
    if settings.aibridge_circuit_breaker_enabled:
        addons.append(CircuitBreakerAddon(
            settings.aibridge_circuit_breaker_failure_threshold, settings.aibridge_circuit_breaker_interval,
            settings.aibridge_circuit_breaker_timeout, settings.aibridge_circuit_breaker_max_requests, metrics))
    if settings.aibridge_rate_limit > 0 or settings.aibridge_max_concurrency > 0:
        counter = RedisCounter(settings.aibridge_redis_url) if settings.aibridge_redis_url else None
        addons.append(LimitsAddon(settings.aibridge_max_concurrency, settings.aibridge_rate_limit, counter,
                                  metrics))
    return addons


def build_app(settings: Settings, engine: AsyncEngine, extra_addons: list[Addon] | None = None) -> web.Application:
    metrics = Metrics() if settings.prometheus_enable else None
    tracing = Tracing.from_env() if settings.trace else None
    # The trace middleware goes first: it notes when a request arrived and the client's trace context.
    middlewares = [*([tracing.middleware] if tracing else []), errors_middleware, auth_middleware]
    app = web.Application(middlewares=middlewares, client_max_size=64 * 1024 * 1024)
    authenticator = Authenticator(engine)
    recorder = Recorder(engine, settings.data_dir / "journal" / "records.jsonl")
    senders = [ActorHeadersAddon()] if settings.aibridge_send_actor_headers else []
    addons = Addons([*guards(settings, metrics), RecordingAddon(recorder), *senders, *(extra_addons or []),
                     *observers(settings, recorder, metrics, tracing)])
    providers = {cfg.name: build_provider(cfg) for cfg in settings.providers}
    bridge = Bridge(providers, authenticator, addons, enabled=settings.aibridge_enabled)
    app[SETTINGS], app[ENGINE], app[AUTHENTICATOR], app[RECORDER], app[BRIDGE] = (
        settings, engine, authenticator, recorder, bridge)
    app[METRICS], app[TRACING] = metrics, tracing
    retention = RetentionTask(engine, settings.aibridge_retention,
                              on_purged=metrics.purged.inc if metrics else None)
    metrics_listener = MetricsListener(metrics, settings.prometheus_address) if metrics else None

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/v2/buildinfo", buildinfo)
    users_api.add_routes(app)
    interceptions_api.add_routes(app)
    web_ui.add_routes(app)
    app.router.add_route("*", PREFIX + "{provider}/{tail:.*}", bridge.handle)
    if metrics is not None:
        app.router.add_get("/metrics", metrics.handle)

    async def on_startup(app: web.Application) -> None:
        await app[RECORDER].start()
        retention.start()
        if metrics_listener is not None:
            await metrics_listener.start()

    async def on_cleanup(app: web.Application) -> None:
        await retention.stop()
        await app[BRIDGE].close()
        await app[RECORDER].close()
        if metrics_listener is not None:
            await metrics_listener.stop()
        if tracing is not None:
            await tracing.shutdown()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


async def ensure_first_owner(engine: AsyncEngine, settings: Settings) -> str | None:
    """On an empty database, create the owner 'admin' and return its token (printed once)."""
    if await user_store.count_users(engine) > 0:
        return None
    try:
        user = await user_store.create_user(engine, FIRST_OWNER, "owner", name="Administrator")
    except user_store.Conflict:
        return None       # another replica won the race
    _, token = await user_store.create_api_key(engine, user.id, dt.timedelta(days=30), "first-start")
    return token


def first_start_banner(settings: Settings, token: str) -> str:
    url = settings.public_url
    return f"""
AI Bridge created the first owner "{FIRST_OWNER}". Its API token is shown this once:

    {token}

It expires in 30 days. More users and tokens: `aibridge users create NAME`,
`aibridge tokens create NAME` (or the REST API with this token).

Claude Code:
    export ANTHROPIC_BASE_URL={url}/api/v2/aibridge/anthropic
    export ANTHROPIC_API_KEY={token}
Codex (~/.codex/config.toml):
    model_provider = "aibridge"
    [model_providers.aibridge]
    name = "AI Bridge"
    base_url = "{url}/api/v2/aibridge/openai/v1"
    env_key = "AIBRIDGE_TOKEN"
    wire_api = "responses"
  then: export AIBRIDGE_TOKEN={token}
{"" if settings.aibridge_enabled else NOT_ENABLED_NOTE}"""


NOT_ENABLED_NOTE = "\nNote: AI Bridge is not enabled; start with --aibridge-enabled and a provider key.\n"


async def serve(settings: Settings) -> None:
    logging.getLogger("alembic").setLevel(logging.WARNING)
    engine = create_engine(settings.database_url)
    await migrate(engine)
    app = build_app(settings, engine)       # first: it may still refuse the configuration
    token = await ensure_first_owner(engine, settings)
    runner = web.AppRunner(app, shutdown_timeout=settings.shutdown_grace, access_log=None,
                           handle_signals=False)
    await runner.setup()
    host, port = settings.http_address.rsplit(":", 1)
    site = web.TCPSite(runner, host, int(port), backlog=1024, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        await engine.dispose()
        raise SystemExit(f"error: --http-address: cannot listen on {settings.http_address}: {exc.strerror}") from None
    if token:
        print(first_start_banner(settings, token), flush=True)
    # What start-up built lives as long as the process: keep the collector from re-scanning it.
    gc.collect()
    gc.freeze()
    log.info("listening on http://%s (database: %s, AI Bridge %s, providers: %s)", settings.http_address,
             redact_url(settings.postgres_url) if settings.postgres_url else "sqlite",
             "enabled" if settings.aibridge_enabled else "disabled",
             ", ".join(p.name for p in settings.providers) or "none")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: finishing in-flight requests (grace %ss)", settings.shutdown_grace)
    await runner.cleanup()
    await engine.dispose()
    log.info("stopped")


def run(settings: Settings) -> None:
    try:
        asyncio.run(serve(settings))
    except ConfigError as exc:      # found while building providers (e.g. no AWS credentials)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
