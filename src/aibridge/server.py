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

from aibridge.bridge.actor_headers import ActorHeadersAddon
from aibridge.bridge.diagnostics import Diagnosed
from aibridge.bridge.flow import Addon, Addons
from aibridge.bridge.providers import build_provider
from aibridge.bridge.providers.base import Provider
from aibridge.bridge.routing import ROUTE_PREFIX, Bridge, json_error
from aibridge.config import ConfigError, Settings, redact_url
from aibridge.httpserver import AppRunner
from aibridge.identity.auth import Authenticator, AuthError
from aibridge.observability.metrics import CircuitCollector, Metrics, MetricsAddon, PurgeCollector
from aibridge.observability.structured import StructuredLogAddon
from aibridge.observability.tracing import TracingAddon
from aibridge.proxy import service as proxy_service
from aibridge.recording.addon import RecordingAddon
from aibridge.recording.recorder import Recorder
from aibridge.recording.retention import RetentionTask
from aibridge.resilience.breaker import CircuitBreakerAddon
from aibridge.resilience.limits import LimitsAddon, RedisCounter
from aibridge.rest import interceptions as interceptions_api
from aibridge.rest import openapi as openapi_api
from aibridge.rest import users as users_api
from aibridge.rest.common import APIError, json_response
from aibridge.server_keys import AUTHENTICATOR, ENGINE, SETTINGS
from aibridge.store import users as user_store
from aibridge.store.db import DatabaseUnavailable, create_engine, migrate, unavailable_message
from aibridge.web import ui as web_ui

log = logging.getLogger("aibridge.server")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BRIDGE: web.AppKey[Bridge] = web.AppKey("bridge")
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
            and request.match_info.http_exception is None and request.path != openapi_api.PATH:
        try:
            request["actor"] = await request.app[AUTHENTICATOR].authenticate(request.headers)
        except AuthError as exc:
            raise APIError(exc.status, exc.message) from None
    return await handler(request)


def owner_or_auditor(handler: Handler) -> Handler:
    """``/metrics`` on the main port shows user ids: only owners and auditors read it there
    (the separate ``--prometheus-address`` listener stays open for Prometheus)."""
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            actor = await request.app[AUTHENTICATOR].authenticate(request.headers)
        except AuthError as exc:
            raise APIError(exc.status, exc.message, "scrape --prometheus-address instead, or send an "
                                                    "owner's or auditor's token") from None
        if not actor.reads_all_records:
            raise APIError(403, "forbidden", "/metrics on the main port needs an owner's or auditor's token")
        return await handler(request)
    return guarded


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def buildinfo(_request: web.Request) -> web.Response:
    from aibridge import __version__
    return json_response({"version": __version__})


def build_addons(settings: Settings, engine: AsyncEngine, metrics: Metrics | None) -> list[Addon]:
    """Every feature of the bridge, in the order its hooks run. Reading this list tells them all.

    Guards come first (a refused request is neither recorded nor sent), then what changes the
    upstream request, then what records and observes.
    """
    addons: list[Addon] = []
    if settings.aibridge_circuit_breaker_enabled:
        addons.append(CircuitBreakerAddon(
            settings.aibridge_circuit_breaker_failure_threshold, settings.aibridge_circuit_breaker_interval,
            settings.aibridge_circuit_breaker_timeout, settings.aibridge_circuit_breaker_max_requests))
    if settings.aibridge_rate_limit > 0 or settings.aibridge_max_concurrency > 0:
        counter = RedisCounter(settings.aibridge_redis_url) if settings.aibridge_redis_url else None
        addons.append(LimitsAddon(settings.aibridge_max_concurrency, settings.aibridge_rate_limit, counter))
    if settings.aibridge_send_actor_headers:
        addons.append(ActorHeadersAddon())
    addons.append(RecordingAddon(Recorder(engine, settings.data_dir / "journal" / "records.jsonl")))
    addons.append(RetentionTask(engine, settings.aibridge_retention))
    if metrics is not None:
        addons.append(MetricsAddon(metrics, settings.prometheus_address))
    if settings.trace:
        addons.append(TracingAddon.from_env())
    if settings.aibridge_structured_logging:
        addons.append(StructuredLogAddon())
    return addons


def watch_addons(metrics: Metrics, addons: list[Addon]) -> None:
    """Metrics that read other addons' state when scraped (circuit states, purge counts)."""
    for addon in addons:
        if isinstance(addon, CircuitBreakerAddon):
            metrics.watch(CircuitCollector(metrics, addon.snapshot))
        elif isinstance(addon, RetentionTask):
            metrics.watch(PurgeCollector(addon))


def build_app(settings: Settings, engine: AsyncEngine) -> web.Application:
    app = web.Application(middlewares=[errors_middleware, auth_middleware], client_max_size=64 * 1024 * 1024)
    authenticator = Authenticator(engine)
    metrics = Metrics() if settings.prometheus_enable else None
    addon_list = build_addons(settings, engine, metrics)
    if metrics is not None:
        watch_addons(metrics, addon_list)
    addons = Addons(addon_list)
    providers: dict[str, Provider] = {
        cfg.name: Diagnosed(build_provider(cfg), cfg.base_url)
        for cfg in settings.providers}
    bridge = Bridge(providers, authenticator, addons, enabled=settings.aibridge_enabled,
                    read_timeout=settings.request_read_timeout)
    app[SETTINGS], app[ENGINE], app[AUTHENTICATOR], app[BRIDGE] = settings, engine, authenticator, bridge

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/v2/buildinfo", buildinfo)
    users_api.add_routes(app)
    interceptions_api.add_routes(app)
    openapi_api.add_routes(app)
    web_ui.add_routes(app)
    proxy_service.add_routes(app)
    app.router.add_route("*", ROUTE_PREFIX + "{provider}/{tail:.*}", bridge.handle)
    if metrics is not None:
        app.router.add_get("/metrics", owner_or_auditor(metrics.handle))

    async def on_startup(app: web.Application) -> None:
        await addons.start()

    async def on_cleanup(app: web.Application) -> None:
        await app[BRIDGE].close()
        await addons.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    proxy_service.attach(app, settings, bridge, metrics.registry if metrics else None)
    return app


HOW_TO_MAKE_AN_OWNER = ("no active owner exists: create one with `aibridge users create NAME --role owner` "
                        "and `aibridge tokens create NAME` (same database settings as the server)")


async def ensure_first_owner(engine: AsyncEngine, settings: Settings) -> str | None:
    """With no active owner, create the owner 'admin' and return its token (printed once).

    Called once the server listens: a start that fails (port in use) must not create an owner
    whose token nobody saw. Users created with the CLI before the first start don't prevent it.
    """
    if await user_store.count_users(engine, role="owner") > 0:
        return None
    try:
        user = await user_store.create_user(engine, FIRST_OWNER, "owner", name="Administrator")
    except user_store.Conflict:
        # Another replica won the race, or a user is already called 'admin': say what to do.
        if await user_store.count_users(engine, role="owner") == 0:
            log.warning(HOW_TO_MAKE_AN_OWNER)
        return None
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
    engine = await open_database(settings)
    app = build_app(settings, engine)       # first: it may still refuse the configuration
    runner = AppRunner(app, shutdown_timeout=settings.shutdown_grace, access_log=None,
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
    token = await ensure_first_owner(engine, settings)
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


async def open_database(settings: Settings) -> AsyncEngine:
    """The migrated database, or one clear line and exit 2 when it cannot be reached."""
    try:
        engine = create_engine(settings.database_url)
        await migrate(engine)
    except OSError as exc:                    # the SQLite directory cannot be made
        raise ConfigError(unavailable_message(settings, DatabaseUnavailable(str(exc)))) from None
    except DatabaseUnavailable as exc:
        await engine.dispose()
        raise ConfigError(unavailable_message(settings, exc)) from None
    return engine


def run(settings: Settings) -> None:
    try:
        asyncio.run(serve(settings))
    except ConfigError as exc:      # found while building providers or opening the database
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
