"""Queries for the providers created through the API (``source: api``) and their encrypted keys.

Rows hold what an owner wrote; whether a row makes a working provider is decided when it is
built (``bridge/live.py``). Every change bumps the providers generation in its transaction
(``store/changes.py``): every worker and replica rebuilds its providers from these rows.
Keys arrive here already encrypted (``store/secrets.py``), each with its masked form.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from aibridge.store.changes import PROVIDERS, bump
from aibridge.store.schema import provider_keys, providers
from aibridge.store.secrets import SecretBox
from aibridge.store.tx import Db, connect
from aibridge.store.users import Conflict, now

# Settings of a stored provider that are secrets: stored encrypted like the keys, shown masked, rotated.
SECRET_SETTINGS = frozenset({"bedrock_access_key", "bedrock_access_key_secret"})


@dataclass(frozen=True)
class StoredKey:
    id: uuid.UUID
    ciphertext: str = field(repr=False)
    masked: str
    created_at: dt.datetime


@dataclass(frozen=True)
class StoredProvider:
    id: uuid.UUID
    name: str
    type: str
    display_name: str
    enabled: bool
    base_url: str
    settings: Mapping[str, str]
    keys: tuple[StoredKey, ...]
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class NewKey:
    ciphertext: str = field(repr=False)
    masked: str


def _where(ref: str) -> Any:
    try:
        return providers.c.id == uuid.UUID(ref)
    except ValueError:
        return providers.c.name == ref


async def list_providers(db: Db, ref: str | None = None) -> list[StoredProvider]:
    """Every stored provider (by name), or the one ``ref`` (id or name) names."""
    query = providers.select().order_by(providers.c.name)
    if ref is not None:
        query = query.where(_where(ref))
    async with connect(db) as conn:
        rows = (await conn.execute(query)).all()
        ids = [row.id for row in rows]
        keys: dict[uuid.UUID, list[StoredKey]] = {}
        if ids:
            found = await conn.execute(provider_keys.select().where(provider_keys.c.provider_id.in_(ids))
                                       .order_by(provider_keys.c.position))
            for k in found:
                keys.setdefault(k.provider_id, []).append(StoredKey(k.id, k.ciphertext, k.masked, k.created_at))
    return [StoredProvider(r.id, r.name, r.type, r.display_name, bool(r.enabled), r.base_url, dict(r.settings or {}),
                           tuple(keys.get(r.id, ())), r.created_at, r.updated_at) for r in rows]


async def get_provider(db: Db, ref: str) -> StoredProvider | None:
    found = await list_providers(db, ref)
    return found[0] if found else None


async def create_provider(conn: AsyncConnection, *, name: str, type_: str, display_name: str, enabled: bool,
                          base_url: str, settings: Mapping[str, str], keys: Sequence[NewKey]) -> uuid.UUID:
    provider_id, stamp = uuid.uuid4(), now()
    try:
        async with conn.begin_nested():
            await conn.execute(providers.insert().values(
                id=provider_id, name=name, type=type_, display_name=display_name, enabled=enabled,
                base_url=base_url, settings=dict(settings), created_at=stamp, updated_at=stamp))
    except IntegrityError:
        raise Conflict(f"provider {name!r} already exists") from None
    await _write_keys(conn, provider_id, [], keys, stamp)
    await bump(conn, PROVIDERS)
    return provider_id


async def update_provider(conn: AsyncConnection, provider: StoredProvider, changes: Mapping[str, Any],
                          kept: Sequence[uuid.UUID] | None, added: Sequence[NewKey]) -> None:
    """``changes``: new column values; ``kept``: the key ids that stay (None: every key stays)."""
    stamp = now()
    await conn.execute(providers.update().where(providers.c.id == provider.id).values(**changes, updated_at=stamp))
    if kept is not None or added:
        keep = [k.id for k in provider.keys] if kept is None else list(kept)
        await conn.execute(provider_keys.delete().where(provider_keys.c.provider_id == provider.id,
                                                        provider_keys.c.id.not_in(keep)))
        await _write_keys(conn, provider.id, keep, added, stamp)
    await bump(conn, PROVIDERS)


async def _write_keys(conn: AsyncConnection, provider_id: uuid.UUID, kept: Sequence[uuid.UUID],
                      added: Sequence[NewKey], stamp: dt.datetime) -> None:
    """The pool's order: the kept keys in the order given, then the added ones."""
    for position, key_id in enumerate(kept):
        await conn.execute(provider_keys.update().where(provider_keys.c.id == key_id).values(position=position))
    if added:
        await conn.execute(provider_keys.insert(), [
            {"id": uuid.uuid4(), "provider_id": provider_id, "position": len(kept) + i, "ciphertext": k.ciphertext,
             "masked": k.masked, "created_at": stamp} for i, k in enumerate(added)])


async def delete_provider(conn: AsyncConnection, provider_id: uuid.UUID) -> None:
    await conn.execute(provider_keys.delete().where(provider_keys.c.provider_id == provider_id))
    await conn.execute(providers.delete().where(providers.c.id == provider_id))
    await bump(conn, PROVIDERS)


async def rotate_secrets(conn: AsyncConnection, box: SecretBox) -> int:
    """Re-encrypt every stored secret (the keys and the secret settings) with the first secrets key;
    how many were rewritten."""
    rows = (await conn.execute(sa.select(provider_keys.c.id, provider_keys.c.ciphertext))).all()
    for row in rows:
        await conn.execute(provider_keys.update().where(provider_keys.c.id == row.id)
                           .values(ciphertext=box.rotate(row.ciphertext)))
    count = len(rows)
    for provider in (await conn.execute(sa.select(providers.c.id, providers.c.settings))).all():
        settings = dict(provider.settings or {})
        secret = [k for k in settings if k in SECRET_SETTINGS]
        if secret:
            settings.update({k: box.rotate(settings[k]) for k in secret})
            await conn.execute(providers.update().where(providers.c.id == provider.id).values(settings=settings))
            count += len(secret)
    if count:
        await bump(conn, PROVIDERS)
    return count
