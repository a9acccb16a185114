"""Queries for users and API keys."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aibridge.store.changes import AUTH, bump
from aibridge.store.schema import api_keys, group_members, users
from aibridge.store.tokens import hash_secret, new_token
from aibridge.store.tx import Db, begin, connect


class Conflict(Exception):
    pass


class NotFound(Exception):
    pass


class TooManyTokens(Conflict):
    """The user holds ``--max-tokens-per-user`` live tokens already."""

    HINT = ("revoke one first: `aibridge tokens list USER` and `aibridge tokens revoke ID`, or "
            "GET /api/v2/users/{user}/keys/tokens and DELETE /api/v2/users/{user}/keys/{id}")

    def __init__(self, live: int, cap: int) -> None:
        super().__init__(f"the user already has {live} live API tokens, the most allowed "
                         f"(--max-tokens-per-user / CODER_MAX_TOKENS_PER_USER = {cap})")


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    username: str
    email: str
    name: str
    role: str
    suspended: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None = None

    @property
    def status(self) -> str:
        return "deleted" if self.deleted_at else "suspended" if self.suspended else "active"

    def to_json(self) -> dict[str, Any]:
        found = {"id": str(self.id), "username": self.username, "email": self.email, "name": self.name,
                 "role": self.role, "status": self.status,
                 "created_at": iso(self.created_at), "updated_at": iso(self.updated_at)}
        if self.deleted_at is not None:
            found["deleted_at"] = iso(self.deleted_at)
        return found


@dataclass(frozen=True)
class ApiKey:
    id: str
    user_id: uuid.UUID
    name: str
    hashed_secret: bytes
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "user_id": str(self.user_id), "token_name": self.name,
                "created_at": iso(self.created_at), "expires_at": iso(self.expires_at),
                "last_used_at": iso(self.last_used_at) if self.last_used_at else None,
                "revoked": self.revoked_at is not None}


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _user(row: Any) -> User:
    return User(row.id, row.username, row.email, row.name, row.role, row.suspended, row.created_at,
                row.updated_at, row.deleted_at if row.deleted else None)


LIVING = users.c.deleted == sa.false()


def _key(row: Any) -> ApiKey:
    return ApiKey(row.id, row.user_id, row.name, row.hashed_secret, row.created_at, row.expires_at,
                  row.revoked_at, row.last_used_at)


async def create_user(engine: Db, username: str, role: str, email: str = "", name: str = "") -> User:
    stamp = now()
    user = User(uuid.uuid4(), username, email, name, role, False, stamp, stamp)
    try:
        async with begin(engine) as conn:
            # 'Alice' next to 'alice' would make /users/{name} and the export's initiator ambiguous.
            taken = (await conn.execute(sa.select(users.c.username).where(
                sa.func.lower(users.c.username) == username.lower(), LIVING))).first()
            if taken is not None:
                spelled = "" if taken.username == username else f" (as {taken.username!r})"
                raise Conflict(f"user {username!r} already exists{spelled}")
            await conn.execute(users.insert().values(
                id=user.id, username=username, email=email, name=name, role=role, suspended=False,
                created_at=stamp, updated_at=stamp))
    except IntegrityError:
        raise Conflict(f"user {username!r} already exists") from None
    return user


async def list_users(engine: AsyncEngine, include_deleted: bool = False) -> list[User]:
    query = users.select().order_by(users.c.username, users.c.created_at)
    async with engine.connect() as conn:
        rows = await conn.execute(query if include_deleted else query.where(LIVING))
        return [_user(r) for r in rows]


async def count_users(engine: AsyncEngine, role: str | None = None) -> int:
    query = sa.select(sa.func.count()).select_from(users).where(LIVING)
    if role is not None:
        query = query.where(users.c.role == role, users.c.suspended == sa.false())
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def get_user(engine: Db, ref: str) -> User:
    """A living user by username or id (a deleted user is no longer found)."""
    condition = users.c.username == ref
    with contextlib.suppress(ValueError):
        condition = sa.or_(condition, users.c.id == uuid.UUID(ref))
    async with connect(engine) as conn:
        row = (await conn.execute(users.select().where(condition, LIVING))).first()
    if row is None:
        raise NotFound(f"user {ref!r} not found")
    return _user(row)


async def set_suspended(engine: Db, user_id: uuid.UUID, suspended: bool) -> None:
    async with begin(engine) as conn:
        await conn.execute(users.update().where(users.c.id == user_id)
                           .values(suspended=suspended, updated_at=now()))
        await bump(conn, AUTH)


async def set_role(engine: Db, user_id: uuid.UUID, role: str) -> None:
    """A new role; the auth generation moves so that cached tokens carry it at once."""
    async with begin(engine) as conn:
        await conn.execute(users.update().where(users.c.id == user_id).values(role=role, updated_at=now()))
        await bump(conn, AUTH)


async def delete_user(engine: Db, user_id: uuid.UUID) -> list[str]:
    """Mark a user deleted and revoke its tokens, in one transaction (as Coder does: its records stay
    attributed to it, it cannot sign in, its username is free again). The revoked token ids."""
    stamp = now()
    async with begin(engine) as conn:
        marked = await conn.execute(users.update().where(users.c.id == user_id, LIVING)
                                    .values(deleted=True, deleted_at=stamp, updated_at=stamp))
        if marked.rowcount == 0:
            raise NotFound(f"user {user_id} not found")
        # A deleted user is in no group: its name may be taken by a new user, who must not inherit them.
        await conn.execute(group_members.delete().where(group_members.c.user_id == user_id))
        revoked = await conn.execute(api_keys.update().where(api_keys.c.user_id == user_id,
                                                             api_keys.c.revoked_at.is_(None))
                                     .values(revoked_at=stamp).returning(api_keys.c.id))
        await bump(conn, AUTH)
        return [r.id for r in revoked]


async def create_api_key(engine: Db, user_id: uuid.UUID, lifetime: dt.timedelta,
                         name: str = "", max_live: int = 0) -> tuple[ApiKey, str]:
    """Create a key; returns it and the full token (shown once, never stored). ``max_live`` > 0:
    refused (TooManyTokens) when the user already holds that many live tokens."""
    token_id, secret = new_token()
    stamp = now()
    key = ApiKey(token_id, user_id, name or f"token-{token_id}", hash_secret(secret), stamp,
                 stamp + lifetime, None)
    try:
        async with begin(engine) as conn:
            if max_live > 0:
                await _check_live_tokens(conn, user_id, max_live, stamp)
            await conn.execute(api_keys.insert().values(
                id=key.id, user_id=user_id, name=key.name, hashed_secret=key.hashed_secret,
                created_at=stamp, expires_at=key.expires_at))
    except IntegrityError:
        raise NotFound("user not found") from None
    return key, f"{token_id}-{secret}"


async def _check_live_tokens(conn: AsyncConnection, user_id: uuid.UUID, max_live: int, stamp: dt.datetime) -> None:
    # A no-op write first: it locks the user's row (PostgreSQL) or the database (SQLite) until
    # commit, so two concurrent creations cannot both see room for one more.
    locked = await conn.execute(users.update().where(users.c.id == user_id).values(updated_at=users.c.updated_at))
    if locked.rowcount == 0:
        raise NotFound("user not found")
    live = (await conn.execute(sa.select(sa.func.count()).select_from(api_keys).where(
        api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None), api_keys.c.expires_at > stamp))).scalar_one()
    if live >= max_live:
        raise TooManyTokens(live, max_live)


async def list_api_keys(engine: AsyncEngine, user_id: uuid.UUID) -> list[ApiKey]:
    async with engine.connect() as conn:
        rows = await conn.execute(api_keys.select().where(api_keys.c.user_id == user_id)
                                  .order_by(api_keys.c.created_at))
        return [_key(r) for r in rows]


async def get_api_key(engine: AsyncEngine, token_id: str) -> tuple[ApiKey, User] | None:
    """The key and its user in one query (the authentication path's only read)."""
    query = sa.select(api_keys, users.c.username, users.c.email, users.c.name.label("user_name"),
                      users.c.role, users.c.suspended, users.c.created_at.label("user_created_at"),
                      users.c.updated_at).join(users, users.c.id == api_keys.c.user_id) \
        .where(api_keys.c.id == token_id)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    user = User(row.user_id, row.username, row.email, row.user_name, row.role, row.suspended,
                row.user_created_at, row.updated_at)
    return _key(row), user


async def revoke_api_key(engine: Db, token_id: str, user_id: uuid.UUID | None = None) -> None:
    condition = api_keys.c.id == token_id
    if user_id is not None:
        condition = sa.and_(condition, api_keys.c.user_id == user_id)
    async with begin(engine) as conn:
        result = await conn.execute(api_keys.update().where(condition).values(revoked_at=now()))
        if result.rowcount:
            await bump(conn, AUTH)
    if result.rowcount == 0:
        raise NotFound(f"token {token_id!r} not found")


async def touch_api_keys(engine: AsyncEngine, used: dict[str, dt.datetime]) -> None:
    """Record when tokens were last used: one batched statement (identity/usage.py calls it)."""
    if not used:
        return
    statement = api_keys.update().where(api_keys.c.id == sa.bindparam("key_id")) \
        .values(last_used_at=sa.bindparam("used_at"))
    async with engine.begin() as conn:
        await conn.execute(statement, [{"key_id": k, "used_at": t} for k, t in used.items()])
