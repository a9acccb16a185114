"""Builds the application (middlewares, routes, start-up and shutdown) and runs it."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.bridge.actor_headers import ActorHeadersAddon
from aibridge.bridge.flow import Addon, Addons
from aibridge.bridge.live import LiveProviders
from aibridge.bridge.providers import build_provider
from aibridge.bridge.routing import ROUTE_PREFIX, Bridge, json_error
from aibridge.config import ConfigError, Settings, redact_url
from aibridge.governance.addons import BudgetAddon, CostAddon, ModelRulesAddon
from aibridge.governance.ownership import OwnershipAddon
from aibridge.governance.rules import Governance, parse_configured
from aibridge.httpserver import AppRunner, connection_options
from aibridge.identity.auth import Authenticator, AuthError
from aibridge.listening import effective_backlog, refuse_taken_ports
from aibridge.mcp.addon import McpAddon
from aibridge.mcp.servers import McpServer, mcp_secrets
from aibridge.mcp.tools import Toolbox
from aibridge.observability.metrics import Metrics, MetricsAddon
from aibridge.observability.structured import StructuredLogAddon
from aibridge.observability.tracing import TracingAddon
from aibridge.proxy import service as proxy_service
from aibridge.recording.addon import RecordingAddon
from aibridge.recording.recorder import Recorder, describe
from aibridge.recording.replica import Replica
from aibridge.recording.retention import RetentionTask
from aibridge.redaction.addon import RedactionAddon
from aibridge.resilience.breaker import CircuitBreakerAddon
from aibridge.resilience.limits import LimitsAddon, RedisCounter
from aibridge.rest import audit as audit_api
from aibridge.rest import governance as governance_api
from aibridge.rest import groups as groups_api
from aibridge.rest import interceptions as interceptions_api
from aibridge.rest import oidc as oidc_api
from aibridge.rest import openapi as openapi_api
from aibridge.rest import providers as providers_api
from aibridge.rest import session as browser_session
from aibridge.rest import users as users_api
from aibridge.rest.common import APIError, json_response, request_id_middleware
from aibridge.server_keys import AUTHENTICATOR, CHANGES, ENGINE, GOVERNANCE, SECRETS, SETTINGS
from aibridge.store import users as user_store
from aibridge.store.changes import Changes
from aibridge.store.db import DatabaseUnavailable, create_engine, migrate, unavailable_message
from aibridge.store.private import secure_data_dir
from aibridge.store.secrets import SecretBox
from aibridge.web import ui as web_ui
from aibridge.workers import Supervisor, Worker, event_loop_factory, listen_sockets, metrics_directory

log = logging.getLogger("aibridge.server")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BRIDGE: web.AppKey[Bridge] = web.AppKey("bridge")
API_PREFIX, API_ALIAS_PREFIX = "/api/v2/aibridge/", "/api/v2/ai-gateway/"
FIRST_OWNER = "admin"
READY_TIMEOUT = 2.0


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


PUBLIC_PATHS = frozenset({openapi_api.PATH, proxy_service.CA_ROUTE, *oidc_api.PUBLIC_PATHS,
                          API_ALIAS_PREFIX + proxy_service.CA_ROUTE.removeprefix(API_PREFIX)})


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every /api/v2 route needs a token, except the bridge routes (they answer in the provider's shape)
    and the public ones (the OpenAPI document; the proxy CA, which clients fetch before they are set up;
    the sign-in routes). The UI's session cookie counts here, never on the bridge routes (rest/session.py)."""
    if request.path.startswith("/api/v2/") and "provider" not in request.match_info \
            and request.match_info.http_exception is None and request.path not in PUBLIC_PATHS:
        try:
            request["actor"] = await browser_session.authenticate(request)
        except AuthError as exc:
            raise APIError(exc.status, exc.message) from None
        response = await handler(request)
        await browser_session.renew(request, response)
        return response
    return await handler(request)


RECORDING: web.AppKey[RecordingAddon] = web.AppKey("recording")


async def healthz(request: web.Request) -> web.Response:
    """The process is up (always 200); the body says how recording is doing."""
    recording = request.app.get(RECORDING)
    details = recording.recorder.health() if recording is not None else None
    return json_response({"status": "ok", "recording": details})


async def readyz(request: web.Request) -> web.Response:
    """The database answers (503 when it does not): for load balancers and orchestrators."""
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            async with request.app[ENGINE].connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        return json_response({"status": "unavailable", "database": describe(exc)}, status=503)
    return json_response({"status": "ok", "database": "ok"})


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


async def buildinfo(_request: web.Request) -> web.Response:
    from aibridge import __version__
    return json_response({"version": __version__})


def mcp_injection(settings: Settings, metrics: Metrics | None, engine: AsyncEngine) -> McpAddon:
    """MCP tools injection: the configured servers' tools, run by the bridge in an inner loop."""
    on_error = (lambda server, operation: metrics.mcp_errors.labels(server, operation).inc()) if metrics else None
    servers = [McpServer(cfg, settings.aibridge_mcp_timeout, settings.aibridge_mcp_refresh_interval, on_error)
               for cfg in settings.mcp_servers]
    return McpAddon(Toolbox(servers), settings.aibridge_mcp_max_iterations, settings.aibridge_send_actor_headers,
                    engine)


def build_addons(settings: Settings, engine: AsyncEngine, metrics: Metrics | None,
                 governance: Governance, worker: Worker | None = None) -> list[Addon]:
    """Every feature of the bridge, in the order its hooks run. Reading this list tells them all.

    Guards come first (a refused request is neither recorded nor sent), then what changes the
    upstream request, then redaction (what follows it sees only redacted text), then what
    records and observes. ``worker``: this process is one of several (``workers.py``): limits are
    shared with the others, and once-per-server tasks run in the leader. Model rules come before
    every guard: an alias changes ``flow.model``, which the breaker keys its circuits by. The
    budget reserves after the other guards admitted; the cost is priced before the budget settles
    it and the recorder stores it.
    """
    leader = worker is None or worker.leader
    addons: list[Addon] = [ModelRulesAddon(governance)]
    if settings.aibridge_circuit_breaker_enabled:
        addons.append(CircuitBreakerAddon(
            settings.aibridge_circuit_breaker_failure_threshold, settings.aibridge_circuit_breaker_interval,
            settings.aibridge_circuit_breaker_timeout, settings.aibridge_circuit_breaker_max_requests,
            worker.circuits if worker else None))
    if settings.aibridge_rate_limit > 0 or settings.aibridge_max_concurrency > 0:
        counter = RedisCounter(settings.aibridge_redis_url) if settings.aibridge_redis_url else (
            worker.rate if worker else None)
        addons.append(LimitsAddon(settings.aibridge_max_concurrency, settings.aibridge_rate_limit, counter,
                                  worker.slots if worker else None))
    addons.append(OwnershipAddon(engine))     # a stored response or conversation is its maker's
    addons.append(CostAddon(governance))
    addons.append(BudgetAddon(governance, engine, settings.aibridge_budget_max_reservation,
                              settings.aibridge_budget_output_estimate, settings.aibridge_budget_include_byok))
    if settings.aibridge_send_actor_headers:
        addons.append(ActorHeadersAddon())
    if settings.mcp_servers:
        addons.append(mcp_injection(settings, metrics, engine))
    if settings.aibridge_redact != "off":
        addons.append(RedactionAddon(settings.aibridge_redact))
    journal = worker.journal_dir(settings.data_dir) if worker else settings.data_dir / "journal"
    addons.append(RecordingAddon(Recorder(engine, journal), Replica(engine)))
    if leader:
        addons.append(RetentionTask(engine, settings.aibridge_retention, settings.audit_logs_retention))
        if worker is not None:
            log.info("worker %d runs the retention purge", worker.slot)
    if metrics is not None:
        addons.append(MetricsAddon(metrics, settings.prometheus_address if leader else None))
    if settings.trace:
        addons.append(TracingAddon.from_env())
    if settings.aibridge_structured_logging:
        addons.append(StructuredLogAddon())
    return addons


def build_app(settings: Settings, engine: AsyncEngine, worker: Worker | None = None) -> web.Application:
    app = web.Application(middlewares=[request_id_middleware, errors_middleware, auth_middleware],
                          client_max_size=64 * 1024 * 1024)
    # One listener per server (the leader worker); every worker shares the generations (DESIGN §2.6).
    changes = Changes(engine, worker.generations if worker else None, listen=worker is None or worker.leader)
    authenticator = Authenticator(engine, changes.generations)
    metrics = Metrics() if settings.prometheus_enable else None
    governance = Governance(engine, parse_configured(settings.governance), changes.generations,
                            settings.aibridge_governance_refresh)
    addon_list = build_addons(settings, engine, metrics, governance, worker)
    addons = Addons(addon_list)
    box = SecretBox.from_settings(settings.aibridge_secrets_key, settings.data_dir)
    live = LiveProviders(settings, engine, changes.generations, box, mcp_secrets(settings.mcp_servers))
    if metrics is not None:       # what the addons and the providers own, read when scraped
        metrics.watch(*addons.collectors(), *live.collectors())
    bridge = Bridge(live, authenticator, addons, enabled=settings.aibridge_enabled,
                    read_timeout=settings.request_read_timeout, allow_byok=settings.aibridge_allow_byok)
    app[SETTINGS], app[ENGINE], app[AUTHENTICATOR], app[BRIDGE] = settings, engine, authenticator, bridge
    app[GOVERNANCE], app[CHANGES], app[SECRETS] = governance, changes, box

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    for addon in addon_list:
        if isinstance(addon, RecordingAddon):
            app[RECORDING] = addon
    app.router.add_get("/api/v2/buildinfo", buildinfo)
    oidc_api.add_routes(app)         # before the users' routes: /users/logout is not a user
    users_api.add_routes(app)
    interceptions_api.add_routes(app)
    governance_api.add_routes(app)
    providers_api.add_routes(app, live)
    audit_api.add_routes(app)
    groups_api.add_routes(app)
    openapi_api.add_routes(app)
    web_ui.add_routes(app)
    proxy_service.add_routes(app)
    add_gateway_aliases(app)
    for prefix in (ROUTE_PREFIX, API_ALIAS_PREFIX):
        app.router.add_route("*", prefix + "{provider}/{tail:.*}", bridge.handle)
    if metrics is not None:
        app.router.add_get("/metrics", owner_or_auditor(metrics.handle))

    async def on_startup(app: web.Application) -> None:
        await live.refresh()          # the providers created through the API, before the first request
        await changes.start()
        await addons.start()
        authenticator.last_used.start()

    async def on_cleanup(app: web.Application) -> None:
        await app[BRIDGE].close()
        await authenticator.last_used.close()
        await addons.close()
        await changes.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    proxy_service.attach(app, settings, bridge, metrics.registry if metrics else None,
                         announce=worker is None or worker.leader)
    return app


def add_gateway_aliases(app: web.Application) -> None:
    """Every ``/api/v2/aibridge/…`` route also answers at ``/api/v2/ai-gateway/…`` (Coder's new name).

    Routes with their own patterns (the provider catch-all) are registered under both prefixes
    where they are added.
    """
    for resource in list(app.router.resources()):
        path = resource.canonical
        if not path.startswith(API_PREFIX):
            continue
        alias = API_ALIAS_PREFIX + path.removeprefix(API_PREFIX)
        for route in resource:
            app.router.add_route(route.method, alias, route.handler)


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


async def announce_first_owner(engine: AsyncEngine, settings: Settings) -> None:
    token = await ensure_first_owner(engine, settings)
    if token:
        print(first_start_banner(settings, token), flush=True)


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


async def serve(settings: Settings, worker: Worker | None = None, sock: socket.socket | None = None) -> None:
    """One process serving requests: the whole server, or one worker of several (on ``sock``)."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if worker is None:
        check_providers(settings)
        engine = await open_database(settings)
        # One process now; the workers of an earlier `--workers N` run may have left journals.
        await replay_journals(engine, sorted((settings.data_dir / "journal").glob("worker-*")))
    else:
        engine = create_engine(settings.database_url)     # the supervisor migrated it
    app = build_app(settings, engine, worker=worker)       # first: it may still refuse the configuration
    runner = AppRunner(app, shutdown_timeout=settings.shutdown_grace, access_log=None,
                           handle_signals=False, **connection_options(settings))
    await runner.setup()
    host, port = settings.http_address.rsplit(":", 1)
    backlog = effective_backlog(settings.aibridge_listen_backlog)
    site = web.SockSite(runner, sock, backlog=backlog) if sock else web.TCPSite(
        runner, host, int(port), backlog=backlog, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        await engine.dispose()
        raise SystemExit(f"error: --http-address: cannot listen on {settings.http_address}: {exc.strerror}") from None
    if worker is None:      # only once the port is ours: a failed bind must not eat the owner's token
        await announce_first_owner(engine, settings)
    # What start-up built lives as long as the process: keep the collector from re-scanning it.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    if worker is None:
        log_listening(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if worker is None:
        log.info("shutting down: finishing in-flight requests (grace %ss)", settings.shutdown_grace)
    await runner.cleanup()
    await engine.dispose()
    if worker is None:
        log.info("stopped")


def log_listening(settings: Settings) -> None:
    log.info("listening on http://%s (database: %s, AI Bridge %s, providers: %s, %s)", settings.http_address,
             redact_url(settings.postgres_url) if settings.postgres_url else "sqlite",
             "enabled" if settings.aibridge_enabled else "disabled",
             ", ".join(p.name for p in settings.providers) or "none",
             f"{settings.workers} workers" if settings.workers > 1 else "1 process")


async def prepare(settings: Settings) -> None:
    """Once per server, before the workers start: migrations, the configuration check, the first
    owner (its token printed once), and the journals stopped workers left behind."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    check_providers(settings)
    engine = await open_database(settings)
    try:
        if settings.aibridge_proxy_enabled:
            proxy_service.load_ca(settings)      # generated here once, so every worker loads the same CA
            proxy_service.listener_tls(settings)   # its files are checked once, before any worker starts
        journals = settings.data_dir / "journal"
        await replay_journals(engine, [journals, *sorted(journals.glob("worker-*"))])
    finally:
        await engine.dispose()


async def replay_journals(engine: AsyncEngine, folders: list[Path]) -> None:
    """Write what stopped processes left in these journals into the database."""
    for journal in folders:
        recorder = Recorder(engine, journal)
        await recorder.start()
        await recorder.close()


async def first_owner_once_listening(settings: Settings) -> None:
    """The supervisor's part of the first start, once the workers' port is bound."""
    engine = create_engine(settings.database_url)
    try:
        await announce_first_owner(engine, settings)
    finally:
        await engine.dispose()


def check_providers(settings: Settings) -> None:
    """Before anything else: a provider may refuse the configuration (e.g. no AWS credentials),
    and its one line must be all the user sees. Building one opens nothing (sessions are lazy)."""
    for cfg in settings.providers:
        build_provider(cfg)


async def open_database(settings: Settings) -> AsyncEngine:
    """The migrated database, or one clear line and exit 2 when it cannot be reached."""
    try:
        engine = create_engine(settings.database_url)
        log.info(await migrate(engine))
    except OSError as exc:                    # the SQLite directory cannot be made
        raise ConfigError(unavailable_message(settings, DatabaseUnavailable(str(exc)))) from None
    except DatabaseUnavailable as exc:
        await engine.dispose()
        raise ConfigError(unavailable_message(settings, exc)) from None
    return engine


def run(settings: Settings) -> None:
    refuse_taken_ports(settings)        # before the database, the first owner or any worker
    factory = event_loop_factory(settings)
    try:
        secure_data_dir(settings.data_dir)
        if settings.workers > 1:
            sys.exit(run_workers(settings, factory))
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve(settings))
    except ConfigError as exc:      # found while building providers or opening the database
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


# A request makes a few hundred container objects that reference counting frees; with the
# default first threshold (700) the collector ran every couple of requests and promoted the
# objects of requests in flight to the older generations, to be scanned again there. One young
# collection per ~50,000 allocations costs a fraction of that (bench/README.md, "GC").
GC_THRESHOLDS = (50_000, 20, 20)


def run_workers(settings: Settings, factory: Callable[[], asyncio.AbstractEventLoop] | None) -> int:
    """``--workers N``: the supervisor prepares once, then forks the workers (``workers.py``)."""
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(prepare(settings))
        sockets = listen_sockets(settings.http_address, settings.workers, settings.aibridge_listen_backlog)
        runner.run(first_owner_once_listening(settings))
    log_listening(settings)
    gc.collect()
    gc.freeze()           # shared with the workers copy-on-write

    def work(worker: Worker, sock: socket.socket) -> None:
        try:
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.run(serve(settings, worker, sock))
        except ConfigError as exc:
            raise SystemExit(f"error: {exc}") from None

    return Supervisor(settings, work, sockets, metrics_directory(settings)).run()
