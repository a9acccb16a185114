"""Queries for groups and their members.

A group is a subject of budgets and model rules (DESIGN §2.6), so every change to a group or its
members bumps the governance generation in its transaction: every worker and replica recomputes
which budget and rules apply to whom. Groups are named by id or by name wherever a path names one.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aibridge.store.changes import GOVERNANCE, bump
from aibridge.store.schema import budgets, group_members, groups, model_allow, users
from aibridge.store.users import Conflict, NotFound, iso, now

# Coder's group names: letters, digits and single hyphens or underscores between them.
GROUP_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?$")
SOURCES = ("manual", "oidc")


@dataclass(frozen=True)
class Group:
    id: uuid.UUID
    name: str
    display_name: str
    source: str
    created_at: dt.datetime
    updated_at: dt.datetime

    def to_json(self, members: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": str(self.id), "name": self.name, "display_name": self.display_name,
                               "source": self.source, "created_at": iso(self.created_at),
                               "updated_at": iso(self.updated_at)}
        if members is not None:
            doc["members"] = list(members)
            doc["total_member_count"] = len(members)
        return doc


def validate_group_name(name: str) -> str:
    if not GROUP_NAME.match(name):
        raise ValueError(f"invalid group name {name!r}: use 1-64 letters, digits, '-' or '_' "
                         "(starting and ending with a letter or digit)")
    return name


def _group(row: Any) -> Group:
    return Group(row.id, row.name, row.display_name, row.source, row.created_at, row.updated_at)


def _where(ref: str) -> Any:
    """A group named by id or by name."""
    try:
        return groups.c.id == uuid.UUID(ref)
    except ValueError:
        return groups.c.name == ref


async def create_group(conn: AsyncConnection, name: str, display_name: str = "", source: str = "manual") -> Group:
    validate_group_name(name)
    stamp = now()
    group = Group(uuid.uuid4(), name, display_name, source, stamp, stamp)
    try:
        async with conn.begin_nested():
            await conn.execute(groups.insert().values(id=group.id, name=name, display_name=display_name,
                                                      source=source, created_at=stamp, updated_at=stamp))
    except IntegrityError:
        raise Conflict(f"group {name!r} already exists") from None
    await bump(conn, GOVERNANCE)
    return group


async def get_group(conn: AsyncConnection | AsyncEngine, ref: str) -> Group | None:
    query = sa.select(groups).where(_where(ref))
    if isinstance(conn, AsyncEngine):
        async with conn.connect() as c:
            row = (await c.execute(query)).first()
    else:
        row = (await conn.execute(query)).first()
    return _group(row) if row is not None else None


async def require_group(conn: AsyncConnection, ref: str) -> Group:
    group = await get_group(conn, ref)
    if group is None:
        raise NotFound(f"group {ref!r} not found")
    return group


async def list_groups(engine: AsyncEngine) -> list[tuple[Group, int]]:
    """Every group with its member count, by name."""
    count = (sa.select(sa.func.count()).select_from(group_members)
             .where(group_members.c.group_id == groups.c.id).scalar_subquery())
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(groups, count.label("members")).order_by(groups.c.name))).all()
    return [(_group(row), int(row.members)) for row in rows]


async def update_group(conn: AsyncConnection, ref: str, *, name: str | None = None,
                       display_name: str | None = None) -> Group:
    group = await require_group(conn, ref)
    values: dict[str, Any] = {"updated_at": now()}
    if name is not None:
        values["name"] = validate_group_name(name)
    if display_name is not None:
        values["display_name"] = display_name
    try:
        async with conn.begin_nested():
            await conn.execute(groups.update().where(groups.c.id == group.id).values(**values))
    except IntegrityError:
        raise Conflict(f"group {name!r} already exists") from None
    if name is not None and name != group.name:     # its budget and model rule follow it (keyed by name)
        for table in (budgets, model_allow):
            await conn.execute(table.update().where(table.c.scope == "group", table.c.subject == group.name)
                               .values(subject=name))
    await bump(conn, GOVERNANCE)
    return await require_group(conn, str(group.id))


async def delete_group(conn: AsyncConnection, ref: str) -> Group:
    group = await require_group(conn, ref)
    await conn.execute(group_members.delete().where(group_members.c.group_id == group.id))
    await conn.execute(groups.delete().where(groups.c.id == group.id))
    for table in (budgets, model_allow):        # a later group of that name starts without them
        await conn.execute(table.delete().where(table.c.scope == "group", table.c.subject == group.name))
    await bump(conn, GOVERNANCE)
    return group


async def add_members(conn: AsyncConnection, group: Group, user_ids: Iterable[uuid.UUID]) -> int:
    """Adds the users not yet members; returns how many were added."""
    present = set((await conn.execute(sa.select(group_members.c.user_id)
                                      .where(group_members.c.group_id == group.id))).scalars())
    new = [uid for uid in dict.fromkeys(user_ids) if uid not in present]
    if new:
        stamp = now()
        await conn.execute(group_members.insert(),
                           [{"group_id": group.id, "user_id": uid, "created_at": stamp} for uid in new])
        await bump(conn, GOVERNANCE)
    return len(new)


async def remove_members(conn: AsyncConnection, group: Group, user_ids: Iterable[uuid.UUID]) -> int:
    ids = list(user_ids)
    if not ids:
        return 0
    done = await conn.execute(group_members.delete().where(group_members.c.group_id == group.id,
                                                           group_members.c.user_id.in_(ids)))
    if done.rowcount:
        await bump(conn, GOVERNANCE)
    return int(done.rowcount or 0)


async def members(conn: AsyncConnection | AsyncEngine, group: Group) -> list[dict[str, Any]]:
    """The group's members as {id, username, name, email}, by username."""
    query = (sa.select(users.c.id, users.c.username, users.c.name, users.c.email)
             .join(group_members, group_members.c.user_id == users.c.id)
             .where(group_members.c.group_id == group.id).order_by(users.c.username))
    if isinstance(conn, AsyncEngine):
        async with conn.connect() as c:
            rows = (await c.execute(query)).all()
    else:
        rows = (await conn.execute(query)).all()
    return [{"id": str(r.id), "username": r.username, "name": r.name, "email": r.email} for r in rows]


async def user_group_names(conn: AsyncConnection | AsyncEngine, user_id: uuid.UUID) -> list[str]:
    """The names of a user's groups, sorted."""
    query = (sa.select(groups.c.name).join(group_members, group_members.c.group_id == groups.c.id)
             .where(group_members.c.user_id == user_id).order_by(groups.c.name))
    if isinstance(conn, AsyncEngine):
        async with conn.connect() as c:
            return list((await c.execute(query)).scalars())
    return list((await conn.execute(query)).scalars())


async def memberships(conn: AsyncConnection) -> dict[uuid.UUID, list[str]]:
    """Every user's group names (for the caches that decide budgets and rules)."""
    rows = await conn.execute(sa.select(group_members.c.user_id, groups.c.name)
                              .join(groups, groups.c.id == group_members.c.group_id))
    found: dict[uuid.UUID, list[str]] = {}
    for user_id, name in rows:
        found.setdefault(user_id, []).append(name)
    return found


async def sync_user_groups(conn: AsyncConnection, user_id: uuid.UUID, names: Iterable[str], *,
                           auto_create: bool) -> list[str]:
    """Make the user a member of exactly ``names`` among the groups the identity provider manages
    (source ``oidc``) and of any existing manual group named there; other manual memberships stay.
    Unknown names become ``oidc`` groups when ``auto_create``, else are skipped. Returns the names
    the user is now a member of through the sync."""
    wanted = [n for n in dict.fromkeys(names) if GROUP_NAME.match(n)]
    existing = {g.name: g for g in (_group(r) for r in (await conn.execute(
        sa.select(groups).where(groups.c.name.in_(wanted)))).all())} if wanted else {}
    for name in wanted:
        if name not in existing and auto_create:
            existing[name] = await create_group(conn, name, source="oidc")
    target = {existing[n].id for n in wanted if n in existing}
    current = {r.group_id: r.source for r in (await conn.execute(
        sa.select(group_members.c.group_id, groups.c.source)
        .join(groups, groups.c.id == group_members.c.group_id)
        .where(group_members.c.user_id == user_id))).all()}
    stale = [gid for gid, source in current.items() if source == "oidc" and gid not in target]
    added = [gid for gid in target if gid not in current]
    if stale:
        await conn.execute(group_members.delete().where(group_members.c.user_id == user_id,
                                                        group_members.c.group_id.in_(stale)))
    if added:
        stamp = now()
        await conn.execute(group_members.insert(),
                           [{"group_id": gid, "user_id": user_id, "created_at": stamp} for gid in added])
    if stale or added:
        await bump(conn, GOVERNANCE)
    return sorted(n for n in wanted if n in existing)
