"""The recorder's SQLite writer writes exactly the rows SQLAlchemy would, and ids sort by time."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from aibridge.store import records as rec
from aibridge.store import users as user_store
from aibridge.store.db import create_engine, migrate
from aibridge.store.schema import interceptions, model_thoughts, token_usages, tool_usages, user_prompts
from aibridge.store.writer import SQLiteWriter, write_batch

TABLES = (interceptions, token_usages, user_prompts, tool_usages, model_thoughts)


def batches(user: uuid.UUID) -> list[list[rec.Record]]:
    """Two batches: interceptions started and ended in one, and ends that arrive in the next."""
    one, two, three = rec.new_id(), rec.new_id(), rec.new_id()
    paris = dt.timezone(dt.timedelta(hours=1))
    first: list[rec.Record] = [
        rec.InterceptionStart(one, user, "openai", "openai", "chat_completions", "gpt-4.1", "Codex", "s-1", "ua",
                              {"streaming": True}, dt.datetime(2026, 12, 2, 10, 0, 0, 0, dt.UTC)),
        rec.PromptRecord(one, "", "héllo", {"redactions": {"aws": 1}}),
        rec.TokenUsageRecord(one, "r-1", 10, 20, 3, 4, {"completion_reasoning": 5}),
        rec.ToolUsageRecord(one, "r-1", "call-1", "Bash", '{"cmd":"ls"}', True, "http://mcp", None, {}),
        rec.ThoughtRecord(one, "thinking…", {"source": "thinking"}),
        rec.InterceptionEnd(one, dt.datetime(2026, 12, 2, 11, 0, 1, 500, paris), cost_usd=0.25),
        rec.InterceptionStart(two, user, "anthropic", "anthropic", "messages", "claude", "Unknown", None, "ua",
                              {}, requested_model="alias"),
        rec.InterceptionStart(three, user, "anthropic", "anthropic", "messages", "claude", "Unknown", None, "ua", {}),
    ]
    second: list[rec.Record] = [
        rec.InterceptionEnd(two, cost_usd=None),
        rec.InterceptionEnd(three, metadata={"outcome": "error", "error": "boom"}, cost_usd=0.0),
    ]
    return [first, second]


def dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(path) as conn:
        return {t.name: conn.execute(f"SELECT * FROM {t.name} ORDER BY id").fetchall() for t in TABLES}


async def test_the_sqlite_writer_writes_what_sqlalchemy_writes(tmp_path: Path) -> None:
    paths = {name: tmp_path / f"{name}.db" for name in ("sqlalchemy", "writer")}
    user = uuid.uuid4()
    engines = {}
    for name, path in paths.items():
        engine = engines[name] = create_engine(f"sqlite+aiosqlite:///{path}")
        await migrate(engine)
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO users (id, username, email, name, role, suspended, created_at, "
                                       "updated_at) VALUES (:id, 'u', '', '', 'member', 0, '2026-01-01', "
                                       "'2026-01-01')"), {"id": user.hex})
    writer = SQLiteWriter(str(paths["writer"]))
    for batch in batches(user):
        await write_batch(engines["sqlalchemy"], batch)
        writer.write(batch)
    writer.close()
    for engine in engines.values():
        await engine.dispose()
    expected, written = dump(paths["sqlalchemy"]), dump(paths["writer"])
    assert all(expected[t.name] for t in TABLES)
    assert written == expected


async def test_a_batch_written_in_steps_is_written_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of several of the writer's steps, pausing all along, is all written."""
    from aibridge.store import writer as writer_module
    path = tmp_path / "a.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await migrate(engine)
    user = await user_store.create_user(engine, "u", "member")
    await engine.dispose()
    monkeypatch.setattr(writer_module, "YIELD_AFTER", 0.0)      # a pause at every chance
    pauses = 0
    real_sleep = time.sleep

    def counted(seconds: float) -> None:
        nonlocal pauses
        pauses += 1
        real_sleep(seconds)
    monkeypatch.setattr(time, "sleep", counted)
    step = writer_module.STEP_ROWS
    batch: list[rec.Record] = []
    for _ in range(step * 3):
        iid = rec.new_id()
        batch += [rec.InterceptionStart(iid, user.id, "openai", "openai", "chat_completions", "m", "Unknown", None,
                                        "ua", {}), rec.PromptRecord(iid, "", "p", {}), rec.InterceptionEnd(iid)]
    writer = SQLiteWriter(str(path))
    writer.write(batch)
    writer.close()
    assert pauses >= len(batch)                      # between records, and between the statements' steps
    tables = dump(path)
    assert len(tables["aibridge_interceptions"]) == len(tables["aibridge_user_prompts"]) == step * 3
    assert all(row[interceptions.columns.keys().index("ended_at")] for row in tables["aibridge_interceptions"])


def test_ids_are_version_7_unique_and_ordered_by_time() -> None:
    first = [rec.new_id() for _ in range(1000)]
    time.sleep(0.002)
    later = rec.new_id()
    assert {i.version for i in first} == {7} and len(set(first)) == 1000
    assert all(i.variant == uuid.RFC_4122 for i in first)
    assert max(first) < later                        # a later millisecond sorts after
    assert abs((later.int >> 80) - time.time_ns() // 1_000_000) < 1000


def test_a_forked_process_draws_its_own_ids() -> None:
    rec.new_id()                                     # the parent has a pool of random bits
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                     # the child: its next id, through the pipe
        os.write(write, rec.new_id().bytes)
        os._exit(0)
    os.waitpid(pid, 0)
    child = uuid.UUID(bytes=os.read(read, 16))
    os.close(read)
    os.close(write)
    parent = rec.new_id()
    assert (child.int & ((1 << 74) - 1)) != (parent.int & ((1 << 74) - 1))
