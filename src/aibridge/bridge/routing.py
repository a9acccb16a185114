"""``/api/v2/aibridge/<provider>/<tail>``: authenticate, then intercept, pass through or 404, as the
provider's route table (``routes.py``) says; the proxy's requests take the same path."""

from __future__ import annotations

import time
from collections.abc import Mapping

import orjson
from aiohttp import web

from aibridge.bridge import scrub
from aibridge.bridge.apis.base import Api
from aibridge.bridge.apis.chat_completions import CHAT_COMPLETIONS
from aibridge.bridge.apis.messages import MESSAGES
from aibridge.bridge.apis.responses import RESPONSES
from aibridge.bridge.credentials import CENTRALIZED, GOVERNANCE_HEADER, Credential, own_credential
from aibridge.bridge.flow import Addons
from aibridge.bridge.intercept import intercept, provider_error
from aibridge.bridge.live import DISABLED, LiveProviders
from aibridge.bridge.passthrough import passthrough, path_problem
from aibridge.bridge.providers.base import Provider
from aibridge.bridge.providers.openai import CHATGPT
from aibridge.bridge.routes import Match
from aibridge.httpserver import BodyError, read_body
from aibridge.identity.auth import Authenticator, AuthError
from aibridge.identity.roles import Actor

ROUTE_PREFIX = "/api/v2/aibridge/"


def json_error(status: int, message: str, detail: str = "") -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        body=orjson.dumps({"message": message, "detail": detail}))


def byok_only_help(provider: Provider) -> str:
    """Why a BYOK-only provider refuses a request without the user's AI Bridge token, and how to set it up
    (each provider says it for its own clients: ``byok_only_help``)."""
    found = getattr(provider, "byok_only_help", None)
    return str(found()) if found is not None else f"provider {provider.name!r} is BYOK only"


def refuse_websocket(api: Api) -> web.Response:
    """Codex asks for Responses over a WebSocket first (``OpenAI-Beta: responses_websockets=…``).

    426 Upgrade Required makes it fall back to HTTP POST at once; a 404 makes it retry the
    upgrade with backoff (seven tries, about 7 s, before every first turn). Recorded nowhere:
    it is not a request for the model.
    """
    return provider_error(api, 426, "WebSocket transport is not supported by AI Bridge; use HTTP",
                          {"Upgrade": "HTTP/1.1", "Connection": "Upgrade"})


class Bridge:
    def __init__(self, live: LiveProviders, authenticator: Authenticator, addons: Addons,
                 enabled: bool = True, read_timeout: float = 60.0, allow_byok: bool = True) -> None:
        self.live = live
        self.allow_byok = allow_byok
        self.read_timeout = read_timeout
        self.authenticator = authenticator
        self.addons = addons
        self.enabled = enabled

    @property
    def providers(self) -> Mapping[str, Provider]:
        """The providers served now (``live.py``; refresh first where a request may follow a change)."""
        return self.live.served

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The direct routes: ``/api/v2/aibridge/<provider>/<tail>``."""
        arrived_ns = time.time_ns()
        name = request.match_info["provider"]
        if not self.enabled:
            return json_error(404, "AI Bridge is not enabled",
                              "Start the server with --aibridge-enabled (CODER_AIBRIDGE_ENABLED=true) "
                              "and configure a provider key.")
        if self.live.stale:
            await self.live.refresh()
        provider = self.live.served.get(name)
        if provider is None:
            return await self.not_served(request, name)
        return await self.dispatch(request, provider, request.match_info["tail"], None, "bridge", arrived_ns)

    async def not_served(self, request: web.Request, name: str) -> web.Response:
        """A provider that is disabled or broken (in its type's error shape), or none of that name."""
        entry = self.live.entries.get(name)
        if entry is not None:
            api = MESSAGES if entry.type == "anthropic" else CHAT_COMPLETIONS
            if entry.status == DISABLED:         # 403: the SDKs do not retry it
                return provider_error(api, 403, f"provider {name!r} is disabled on this AI Bridge; an owner "
                                                f"can enable it (aibridge providers update {name} --enable)")
            return provider_error(api, 503, f"provider {name!r} cannot be used: {entry.error}")
        if name == CHATGPT:     # a client's route, answered in that client's shape
            return provider_error(RESPONSES, 404, f"route not supported: {request.method} {request.path} "
                                                  "(no 'chatgpt' provider is configured on this server)")
        return json_error(404, f"provider {name!r} is not configured", await self._known_providers(request))

    async def _known_providers(self, request: web.Request) -> str:
        """The configured providers, told only to a caller with a valid token."""
        try:
            await self.authenticator.authenticate(request.headers)
        except AuthError:
            return "Send a valid AI Bridge token to see which providers are configured."
        return f"Configured providers: {', '.join(sorted(self.live.served)) or 'none'}."

    async def dispatch(self, request: web.Request, provider: Provider, tail: str, actor: Actor | None,
                       door: str, arrived_ns: int) -> web.StreamResponse:
        """Route one request to a provider's intercepted API or passthrough; any door ends here.

        ``actor`` is None when this request's own headers carry the token (the direct routes);
        the proxy authenticates its CONNECT and passes the actor in. A request with the
        governance header is BYOK (``_byok``) through either door; so is one to a BYOK-only
        provider through the proxy (``_byok_only``).
        """
        default_api = next(iter(provider.apis.values()))
        problem = path_problem(request.raw_path.split("?", 1)[0], tail)
        if problem is not None:
            return provider_error(default_api, 400, f"invalid path {request.path!r}: {problem}")
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return refuse_websocket(default_api)
        found = provider.routes.find(request.method, tail)
        if found is None:
            return provider_error(default_api, 404, f"route not supported: {request.method} {request.path}")
        credential = CENTRALIZED
        try:
            if GOVERNANCE_HEADER in request.headers:
                actor, credential = await self._byok(request, provider, actor)
            elif getattr(provider, "byok_only", False):
                actor, credential = self._byok_only(request, provider, actor)
            elif actor is None:
                actor = await self.authenticator.authenticate(request.headers)
        except AuthError as exc:
            return provider_error(default_api, exc.status, exc.message)
        refused = await self._read_body(request, default_api)
        if refused is not None:
            return refused
        if not credential.byok:
            return await self._route(request, actor, provider, found, tail, door, arrived_ns, credential)
        with scrub.request_secrets(credential.secrets):    # the user's key: kept out of errors and logs
            return await self._route(request, actor, provider, found, tail, door, arrived_ns, credential)

    async def _route(self, request: web.Request, actor: Actor, provider: Provider, found: Match, tail: str,
                     door: str, arrived_ns: int, credential: Credential) -> web.StreamResponse:
        if found.route.api is not None:
            return await intercept(request, actor, provider, found.route.api, tail, self.addons, door=door,
                                   arrived_ns=arrived_ns, credential=credential)
        return await passthrough(request, actor, provider, found, tail, self.addons, door, arrived_ns,
                                 credential)

    async def _byok(self, request: web.Request, provider: Provider, actor: Actor | None) -> tuple[Actor, Credential]:
        """A BYOK request: the bridge token is the governance header's, the upstream credential the
        client's own. Through the proxy, the header must name the user whose CONNECT it came in."""
        self._check_byok(provider)
        token = request.headers[GOVERNANCE_HEADER].strip()
        if not token:
            raise AuthError(401, f"{GOVERNANCE_HEADER} is empty: send your AI Bridge token in it")
        byok_actor = await self.authenticator.authenticate({"Coder-Session-Token": token})
        if actor is not None and actor.id != byok_actor.id:
            raise AuthError(403, f"the {GOVERNANCE_HEADER} token belongs to another user than the proxy's credentials")
        return byok_actor, self._own_credential(request)

    def _byok_only(self, request: web.Request, provider: Provider, actor: Actor | None) -> tuple[Actor, Credential]:
        """A BYOK-only provider (Copilot, ChatGPT) without the governance header. Through the proxy
        it is BYOK as the CONNECT's user: the proxy sets the header, with the token of its
        credentials, for the tools that cannot (Copilot). A direct route has no user yet: refused."""
        if actor is None:
            raise AuthError(403, byok_only_help(provider))
        self._check_byok(provider)
        return actor, self._own_credential(request)

    def _check_byok(self, provider: Provider) -> None:
        if not self.allow_byok:
            instead = (f"provider {provider.name!r} is BYOK only, so it cannot be used" if getattr(
                provider, "byok_only", False) else "send your AI Bridge token as the credential instead")
            raise AuthError(403, f"bring-your-own-key requests ({GOVERNANCE_HEADER}) are disabled on this "
                                 f"server (--aibridge-allow-byok=false); {instead}")
        if not getattr(provider, "accepts_byok", True):     # Bedrock signs with its own AWS credentials
            raise AuthError(400, f"provider {provider.name!r} (Amazon Bedrock) cannot use your own key: "
                                 f"requests are signed with the configured AWS credentials; send your AI "
                                 f"Bridge token as the credential, without {GOVERNANCE_HEADER}")

    @staticmethod
    def _own_credential(request: web.Request) -> Credential:
        credential = own_credential(request.headers)
        if credential is None:
            raise AuthError(401, f"a bring-your-own-key request ({GOVERNANCE_HEADER}) needs your own provider "
                                 "credential: send it in 'X-Api-Key' or 'Authorization: Bearer <key>'")
        return credential

    async def _read_body(self, request: web.Request, api: Api) -> web.Response | None:
        """Read the body up front (kept for the handlers), answering its failures in the provider's shape."""
        try:
            await read_body(request, self.read_timeout)
        except BodyError as exc:
            response = provider_error(api, exc.status, exc.message)
            response.force_close()
            return response
        except web.HTTPRequestEntityTooLarge:
            return provider_error(api, 413, f"request body too large: at most {request.client_max_size} bytes")
        return None

    async def close(self) -> None:
        await self.live.close()
