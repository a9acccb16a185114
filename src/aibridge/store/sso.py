"""Users who sign in through the identity provider: found by subject (or verified email), created at
their first sign-in, their role and groups synced at every sign-in; the browser sessions' tokens."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aibridge.store.changes import AUTH, bump
from aibridge.store.groups import sync_user_groups, user_group_names
from aibridge.store.schema import api_keys, users
from aibridge.store.users import LIVING, User, _user, now

RESERVED = frozenset({"me"})
MAX_SUFFIX = 1000


class Refused(Exception):
    """The user exists but may not sign in (suspended or deleted)."""


class NoSignups(Exception):
    """No user matches and ``CODER_OIDC_ALLOW_SIGNUPS`` is false."""


@dataclass(frozen=True)
class SignIn:
    subject: str
    email: str
    email_verified: bool
    username: str
    name: str
    groups: Sequence[str] | None
    role: str | None
    default_role: str
    allow_signups: bool
    auto_create_groups: bool


async def _find(conn: AsyncConnection, s: SignIn) -> User | None:
    row = (await conn.execute(users.select().where(users.c.oidc_subject == s.subject))).first()
    if row is None and s.email and s.email_verified:
        # An existing user (made by an owner) with the same verified address is linked, as Coder does.
        row = (await conn.execute(users.select().where(
            sa.func.lower(users.c.email) == s.email.lower(), users.c.oidc_subject.is_(None), LIVING))).first()
    return _user(row) if row is not None else None


async def _free_username(conn: AsyncConnection, base: str) -> str:
    taken = {name.lower() for name in (await conn.execute(
        sa.select(users.c.username).where(users.c.username.like(f"{base[:24]}%"), LIVING))).scalars()}
    for n in range(1, MAX_SUFFIX):
        candidate = base if n == 1 else f"{base[:24]}-{n}"
        if candidate.lower() not in taken and candidate not in RESERVED:
            return candidate
    return f"{base[:20]}-{uuid.uuid4().hex[:8]}"


async def sign_in(engine: AsyncEngine, s: SignIn) -> tuple[User, list[str], bool]:
    """The signed-in user, its group names, and whether it was created now."""
    async with engine.begin() as conn:
        user = await _find(conn, s)
        created = user is None
        stamp = now()
        if user is None:
            if not s.allow_signups:
                raise NoSignups()
            user_id = uuid.uuid4()
            await conn.execute(users.insert().values(
                id=user_id, username=await _free_username(conn, s.username), email=s.email, name=s.name,
                role=s.role or s.default_role, suspended=False, created_at=stamp, updated_at=stamp,
                login_type="oidc", oidc_subject=s.subject))
        else:
            if user.deleted_at is not None:     # its name may be a new user's now: it stays deleted
                raise Refused(f"the account {user.username!r} was deleted: ask an owner for a new one")
            if user.suspended:
                raise Refused(f"the account {user.username!r} is suspended: ask an owner to activate it")
            user_id = user.id
            values: dict[str, object] = {"login_type": "oidc", "oidc_subject": s.subject, "updated_at": stamp}
            if s.email:
                values["email"] = s.email
            if s.name:
                values["name"] = s.name
            if s.role is not None:
                values["role"] = s.role
            await conn.execute(users.update().where(users.c.id == user_id).values(**values))
            if s.role is not None and s.role != user.role:
                await bump(conn, AUTH)      # cached actors carry the old role
        if s.groups is not None:
            await sync_user_groups(conn, user_id, s.groups, auto_create=s.auto_create_groups)
        row = (await conn.execute(users.select().where(users.c.id == user_id))).one()
        names = await user_group_names(conn, user_id)
    return _user(row), names, created


async def login_type(engine: AsyncEngine, user_id: uuid.UUID) -> str:
    async with engine.connect() as conn:
        found = (await conn.execute(sa.select(users.c.login_type).where(users.c.id == user_id))).scalar()
    return str(found or "token")


async def retire_key(engine: AsyncEngine, token_id: str, grace: dt.timedelta) -> None:
    """A renewed session's old token stops working after ``grace`` (requests already sent finish)."""
    async with engine.begin() as conn:
        await conn.execute(api_keys.update().where(api_keys.c.id == token_id, api_keys.c.expires_at > now() + grace)
                           .values(expires_at=now() + grace))
