"""One way for a store function to run in its own transaction or in its caller's.

A change recorded in the audit log runs in the transaction that writes its audit row
(``store/audit.py``): the REST handler or CLI command opens it and passes the connection; a
store function given an engine opens (and commits) its own, as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

Db = AsyncEngine | AsyncConnection


@contextlib.asynccontextmanager
async def begin(db: Db) -> AsyncIterator[AsyncConnection]:
    """The caller's connection (its owner commits) or a new transaction on the engine."""
    if isinstance(db, AsyncConnection):
        yield db
        return
    async with db.begin() as conn:
        yield conn


@contextlib.asynccontextmanager
async def connect(db: Db) -> AsyncIterator[AsyncConnection]:
    """For reads: the caller's connection (it sees the transaction's own writes) or a new one."""
    if isinstance(db, AsyncConnection):
        yield db
        return
    async with db.connect() as conn:
        yield conn
