"""Authentication: token from the request headers → Actor, cached in memory.

The bridge's hot path must not read the database per request: a validated token is cached for
``ttl`` seconds. A revocation, suspension or deletion does not wait for that: it bumps the auth
generation (``store/changes.py``), and the cache is dropped on the first request that sees the
generation move (at once on every worker of the server that made the change, within 1 s on the
others). The TTL only bounds how stale an entry can get if those signals stop arriving.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Mapping

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.identity.roles import Actor
from aibridge.identity.usage import LastUsed
from aibridge.store.changes import Generations
from aibridge.store.tokens import secret_matches, split_token
from aibridge.store.users import ApiKey, User, get_api_key

log = logging.getLogger("aibridge.auth")
CACHE_TTL = 10.0
_MAX_CACHE = 100_000


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def token_from_headers(headers: Mapping[str, str]) -> str | None:
    """Coder-Session-Token, Authorization: Bearer, or X-Api-Key (what the SDKs send)."""
    token = headers.get("Coder-Session-Token")
    if token:
        return token.strip()
    authorization = headers.get("Authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    token = headers.get("X-Api-Key")
    return token.strip() if token else None


class Authenticator:
    def __init__(self, engine: AsyncEngine, generations: Generations, ttl: float = CACHE_TTL) -> None:
        self._engine = engine
        self._changed = generations.auth            # the shared cell (store/changes.py)
        self._generation = self._changed.value      # what the cache holds is as of this generation
        self._ttl = ttl
        self._cache: dict[str, tuple[float, ApiKey, User]] = {}
        # One database read per token at a time: when a cached entry expires under load, every
        # request for that token waits on the same read instead of each opening a connection.
        self._loading: dict[str, asyncio.Future[tuple[ApiKey, User] | None]] = {}
        self._down = False
        self.last_used = LastUsed(engine)      # started by the server; notes use without a database write

    async def authenticate(self, headers: Mapping[str, str]) -> Actor:
        token = token_from_headers(headers)
        if not token:
            raise AuthError(401, "missing API token: send it as 'Authorization: Bearer <token>', "
                                 "'X-Api-Key: <token>' or 'Coder-Session-Token: <token>'")
        actor, _ = await self.verify(token)
        return actor

    async def verify(self, token: str) -> tuple[Actor, dt.datetime]:
        """The token's actor and when the token expires (a browser session renews it: rest/session.py)."""
        parts = split_token(token)
        if parts is None:
            raise AuthError(403, "invalid API token")
        token_id, secret = parts
        try:
            key, user = await self._lookup(token_id)
        except (SQLAlchemyError, OSError) as exc:
            self._database_down(exc)
            raise AuthError(503, "cannot check the API token right now: the bridge's database is unavailable; "
                                 "try again shortly") from None
        if self._down:
            self._down = False
            log.warning("database reachable again: tokens are checked again")
        if key is None or user is None or not secret_matches(secret, key.hashed_secret):
            raise AuthError(403, "invalid API token")
        if key.revoked_at is not None:
            raise AuthError(403, "API token has been revoked")
        if key.expires_at <= dt.datetime.now(dt.UTC):
            raise AuthError(403, "API token has expired")
        if user.suspended:
            raise AuthError(403, f"user {user.username!r} is suspended")
        self.last_used.seen(key.id)
        return Actor(user.id, user.username, user.name, user.email, user.role, key.id), key.expires_at

    def _database_down(self, exc: BaseException) -> None:
        """Logged once per outage, with its cause; every refused request says it in its answer."""
        if not self._down:
            self._down = True
            log.error("cannot check API tokens: the database is unavailable (%s: %s)",
                      type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")

    async def _lookup(self, token_id: str) -> tuple[ApiKey | None, User | None]:
        generation = self._changed.value
        if generation != self._generation:          # a token or user changed somewhere: start afresh
            self._cache.clear()
            self._loading = {}
            self._generation = generation
        now = time.monotonic()
        cached = self._cache.get(token_id)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        found = await self._load(token_id)
        if found is None:
            return None, None
        if self._changed.value != generation:    # read while a change landed: use it once, keep nothing
            return found
        if len(self._cache) >= _MAX_CACHE:
            self._cache.clear()
        self._cache[token_id] = (now + self._ttl, *found)
        return found

    async def _load(self, token_id: str) -> tuple[ApiKey, User] | None:
        loading = self._loading.get(token_id)
        if loading is not None:
            return await asyncio.shield(loading)
        future: asyncio.Future[tuple[ApiKey, User] | None] = asyncio.get_running_loop().create_future()
        waiting = self._loading           # replaced (not emptied) when the generation moves
        waiting[token_id] = future
        try:
            found = await get_api_key(self._engine, token_id)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()          # the waiters re-raise it; don't warn that nobody read it
            raise
        finally:
            del waiting[token_id]
        future.set_result(found)
        return found
