"""The OpenID Connect protocol: authorization code with PKCE, ``state`` and ``nonce``; the ID token
verified against the issuer's JWKS (signature, ``iss``, ``aud``, ``exp``, ``nonce``).

Authlib makes the PKCE pair and joserfc (Authlib's JOSE library) checks the JWT: no hand-written
JOSE. Nothing is kept in one process's memory between the two legs of a sign-in: ``state``,
``nonce``, the PKCE verifier and where to return travel in a short-lived cookie signed with a key
derived from the client secret, which every worker and replica shares. The issuer's discovery
document and keys are fetched lazily and retried on use, so a server whose identity provider is
down still starts (bearer tokens keep working) and SSO comes back once the provider answers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

log = logging.getLogger("aibridge.oidc")
STATE_LIFETIME = 600.0          # seconds a sign-in may take at the identity provider
RETRY_AFTER = 5.0               # seconds between discovery attempts while the provider is down
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]


class OidcError(Exception):
    """A refused sign-in: ``message`` is shown to the user (never a secret or a token)."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Unavailable(OidcError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 503)


@dataclass(frozen=True)
class Pending:
    """What the first leg of a sign-in hands the second (inside the signed cookie)."""

    state: str
    nonce: str
    verifier: str
    return_to: str
    expires: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Client:
    """One relying party: the issuer, the client's credentials and the scopes."""

    def __init__(self, issuer: str, client_id: str, client_secret: str, scopes: tuple[str, ...]) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self.scopes = scopes
        # The cookie's key: the client secret, which every replica is configured with, made specific.
        self._key = hashlib.sha256(b"aibridge-oidc-state\0" + client_secret.encode()).digest()
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._failed_at = 0.0
        self._last_error = ""

    @property
    def available(self) -> bool:
        return self._metadata is not None

    @property
    def last_error(self) -> str:
        return self._last_error

    async def metadata(self) -> dict[str, Any]:
        """The discovery document, fetched once it answers (a failure is retried after RETRY_AFTER)."""
        if self._metadata is not None:
            return self._metadata
        if time.monotonic() - self._failed_at < RETRY_AFTER:
            raise Unavailable(f"single sign-on is unavailable: {self._last_error}")
        url = self.issuer + "/.well-known/openid-configuration"
        try:
            doc = await self._get_json(url)
            if doc.get("issuer", "").rstrip("/") != self.issuer:
                raise ValueError(f"its issuer is {doc.get('issuer')!r}, not {self.issuer!r}")
            for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(doc.get(field), str):
                    raise ValueError(f"it has no {field}")
        except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
            self._failed_at = time.monotonic()
            was_down = bool(self._last_error)
            self._last_error = f"the identity provider {self.issuer} does not answer ({type(exc).__name__}: {exc})"
            if not was_down:
                log.error("single sign-on unavailable until the identity provider answers: %s", self._last_error)
            raise Unavailable(f"single sign-on is unavailable: {self._last_error}") from None
        if self._last_error:
            log.warning("single sign-on available again: %s answers", self.issuer)
        self._last_error = ""
        self._metadata = doc
        return doc

    async def _get_json(self, url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session, \
                session.get(url, headers=headers or {}) as response:
            if response.status != 200:
                raise ValueError(f"GET {url} answered {response.status}")
            doc = await response.json(content_type=None)
        if not isinstance(doc, dict):
            raise ValueError(f"GET {url} did not answer a JSON object")
        return doc

    # ------------------------------------------------------------ first leg

    async def begin(self, redirect_uri: str, return_to: str) -> tuple[str, str]:
        """The identity provider's authorization URL and the signed cookie to set."""
        doc = await self.metadata()
        pending = Pending(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48),
                          return_to, time.time() + STATE_LIFETIME)
        query = urlencode({
            "response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
            "scope": " ".join(self.scopes), "state": pending.state, "nonce": pending.nonce,
            "code_challenge": create_s256_code_challenge(pending.verifier), "code_challenge_method": "S256",
        })
        separator = "&" if "?" in doc["authorization_endpoint"] else "?"
        return doc["authorization_endpoint"] + separator + query, self._seal(pending)

    def _seal(self, pending: Pending) -> str:
        payload = _b64(json.dumps(pending.__dict__, separators=(",", ":")).encode())
        return payload + "." + _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def unseal(self, cookie: str) -> Pending:
        payload, _, signature = cookie.partition(".")
        expected = _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())
        if not payload or not hmac.compare_digest(signature, expected):
            raise OidcError("the sign-in state is not valid: start again", 400)
        try:
            pending = Pending(**json.loads(_unb64(payload)))
        except (ValueError, TypeError):
            raise OidcError("the sign-in state is not valid: start again", 400) from None
        if pending.expires < time.time():
            raise OidcError("the sign-in took too long: start again", 400)
        return pending

    # ------------------------------------------------------------ second leg

    async def finish(self, params: dict[str, str], cookie: str | None, redirect_uri: str) -> tuple[dict[str, Any], str]:
        """The verified claims (ID token, completed by the userinfo endpoint) and where to return."""
        if params.get("error"):
            raise OidcError(f"the identity provider refused the sign-in: {params['error']}"
                            + (f" ({params['error_description']})" if params.get("error_description") else ""))
        if not cookie:
            raise OidcError("the sign-in state is missing (cookies blocked, or the sign-in was not started "
                            "here): start again", 400)
        pending = self.unseal(cookie)
        if not hmac.compare_digest(params.get("state", ""), pending.state):
            raise OidcError("the sign-in state does not match: start again", 400)
        code = params.get("code", "")
        if not code:
            raise OidcError("the identity provider sent no authorization code", 400)
        doc = await self.metadata()
        tokens = await self._exchange(doc, code, pending.verifier, redirect_uri)
        claims = await self._verify(doc, tokens.get("id_token"), pending.nonce)
        if doc.get("userinfo_endpoint") and isinstance(tokens.get("access_token"), str):
            claims = {**await self._userinfo(doc, tokens["access_token"], claims["sub"]), **claims}
        return claims, pending.return_to

    async def _exchange(self, doc: dict[str, Any], code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": verifier}
        auth = aiohttp.BasicAuth(self.client_id, self._secret)
        try:
            async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session, \
                    session.post(doc["token_endpoint"], data=form, auth=auth,
                                 headers={"Accept": "application/json"}) as response:
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
            raise Unavailable("the identity provider's token endpoint does not answer "
                              f"({type(exc).__name__})") from None
        if response.status != 200 or not isinstance(body, dict):
            error = body.get("error", response.status) if isinstance(body, dict) else response.status
            raise OidcError(f"the identity provider refused the authorization code ({error}): "
                            "it may have been used already or expired; start again")
        return body

    async def _jwks(self, doc: dict[str, Any], refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            try:
                self._keys = KeySet.import_key_set(await self._get_json(doc["jwks_uri"]))  # type: ignore[arg-type]
            except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
                raise Unavailable(f"cannot read the identity provider's keys ({type(exc).__name__})") from None
        return self._keys

    async def _verify(self, doc: dict[str, Any], id_token: Any, nonce: str) -> dict[str, Any]:
        if not isinstance(id_token, str):
            raise OidcError("the identity provider sent no ID token (is the 'openid' scope allowed?)")
        try:
            token = jwt.decode(id_token, await self._jwks(doc), algorithms=ALGORITHMS)
        except (JoseError, ValueError):
            try:        # the provider may have rotated its keys since they were read: read them again once
                token = jwt.decode(id_token, await self._jwks(doc, refresh=True), algorithms=ALGORITHMS)
            except (JoseError, ValueError):
                raise OidcError("the ID token's signature does not verify with the identity provider's keys") from None
        registry = jwt.JWTClaimsRegistry(
            leeway=60, iss={"essential": True, "value": doc["issuer"]}, sub={"essential": True},
            aud={"essential": True, "value": self.client_id}, exp={"essential": True},
            nonce={"essential": True, "value": nonce})
        try:
            registry.validate(token.claims)
        except JoseError as exc:
            raise OidcError(f"the ID token is not valid: {exc.description or exc.error}") from None
        claims = dict(token.claims)
        audience = claims.get("aud")
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != self.client_id:
            raise OidcError("the ID token was issued to another client (azp)")
        return claims

    async def _userinfo(self, doc: dict[str, Any], access_token: str, subject: str) -> dict[str, Any]:
        try:
            info = await self._get_json(doc["userinfo_endpoint"], {"Authorization": f"Bearer {access_token}"})
        except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
            raise Unavailable("the identity provider's userinfo endpoint does not answer "
                              f"({type(exc).__name__})") from None
        if info.get("sub") != subject:
            raise OidcError("the identity provider's userinfo is about another subject")
        return info
