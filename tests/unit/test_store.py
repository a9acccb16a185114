"""Migrations and the recorder on real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from asyncpg.pgproto.pgproto import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.config import postgres_async_url
from aibridge.recording.journal import Journal, decode_record, encode_record
from aibridge.recording.recorder import Recorder
from aibridge.store import records as rec
from aibridge.store import users as user_store
from aibridge.store.db import create_engine, migrate
from aibridge.store.sanitize import MAX_TEXT, clean_record
from aibridge.store.schema import interceptions, metadata, token_usages, users
from tests.harness import Database, wait_for


@pytest.fixture
async def engine(database: Database) -> AsyncIterator[AsyncEngine]:
    url = (postgres_async_url(database.postgres.url) if database.postgres
           else f"sqlite+aiosqlite:///{database.data_dir / 'aibridge.db'}")
    eng = create_engine(url)
    await migrate(eng)
    yield eng
    await eng.dispose()


async def test_migrations_from_empty_match_the_schema(engine: AsyncEngine) -> None:
    await migrate(engine)        # a second run is a no-op
    async with engine.connect() as conn:
        diff = await conn.run_sync(lambda sync: compare_metadata(
            MigrationContext.configure(sync, opts={"compare_type": False}), metadata))
        tables = await conn.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
    assert {"users", "api_keys", "aibridge_interceptions", "aibridge_token_usages", "aibridge_user_prompts",
            "aibridge_tool_usages", "aibridge_model_thoughts"} <= tables
    # Expression indexes cannot be reflected on SQLite; everything else must agree.
    assert [d for d in diff if "started_id" not in str(d)] == []


async def _interception(engine: AsyncEngine) -> tuple[uuid.UUID, list[rec.Record]]:
    user = await user_store.create_user(engine, f"u{uuid.uuid4().hex[:8]}", "member")
    iid = uuid.uuid4()
    records: list[rec.Record] = [
        rec.InterceptionStart(iid, user.id, "openai", "openai", "chat_completions", "gpt-x", "Codex", "s1", "ua", {}),
        rec.PromptRecord(iid, "", "hello", {}),
        rec.TokenUsageRecord(iid, "resp_1", 10, 5, 3, 0, {"reasoning_tokens": 2}),
        rec.ToolUsageRecord(iid, "resp_1", "call_1", "bash", '{"cmd":"ls"}', False, None, None, {}),
        rec.ThoughtRecord(iid, "thinking...", {}),
        rec.InterceptionEnd(iid),
    ]
    return iid, records


async def test_recorder_batches_and_writes_everything(engine: AsyncEngine, tmp_path: Path) -> None:
    recorder = Recorder(engine, tmp_path / "journal")
    await recorder.start()
    iid, records = await _interception(engine)
    for record in records:
        recorder.submit(record)
    await recorder.close()
    async with engine.connect() as conn:
        row = (await conn.execute(interceptions.select().where(interceptions.c.id == iid))).one()
        usage = (await conn.execute(token_usages.select().where(token_usages.c.interception_id == iid))).one()
    assert row.ended_at is not None and row.ended_at >= row.started_at
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (10, 5, 3)
    assert usage.metadata == {"reasoning_tokens": 2}
    assert recorder.journal.bytes_on_disk() == 0


def _journaled(journal_dir: Path) -> list[rec.Record]:
    journal = Journal(journal_dir)
    return [r for path in journal.segments() for chunk in journal.read(path, 1000) for r in chunk]


async def test_database_outage_keeps_records_in_the_journal_and_replays(engine: AsyncEngine, tmp_path: Path) -> None:
    """Nothing accepted is lost: a failing database leaves every record in the journal, in order."""
    journal_dir = tmp_path / "journal"
    broken = create_engine("sqlite+aiosqlite:///" + str(tmp_path / "missing" / "x.db"))  # no tables: writes fail
    recorder = Recorder(broken, journal_dir, linger=0)
    await recorder.start()
    iid, records = await _interception(engine)
    for record in records:
        recorder.submit(record)
        await asyncio.sleep(0.01)     # several batches, so order across batches matters
    assert recorder.health()["database"]["ok"] is False
    await recorder.close()
    await broken.dispose()
    assert [type(r) for r in _journaled(journal_dir)] == [type(r) for r in records]

    # The next start (healthy database) replays the journal before anything else.
    recorder = Recorder(engine, journal_dir)
    await recorder.start()
    await recorder.close()
    assert _journaled(journal_dir) == []
    async with engine.connect() as conn:
        row = (await conn.execute(interceptions.select().where(interceptions.c.id == iid))).one()
        count = (await conn.execute(sa.select(sa.func.count()).select_from(token_usages)
                                    .where(token_usages.c.interception_id == iid))).scalar_one()
    assert row.ended_at is not None and count == 1

    # Replaying the same records again (e.g. a crash after commit) duplicates nothing.
    Journal(journal_dir).append(b"".join(encode_record(r) + b"\n" for r in records))
    recorder = Recorder(engine, journal_dir)
    await recorder.start()
    await recorder.close()
    async with engine.connect() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(token_usages)
                                    .where(token_usages.c.interception_id == iid))).scalar_one()
    assert count == 1


def test_journal_encoding_round_trips() -> None:
    start = rec.InterceptionStart(uuid.uuid4(), uuid.uuid4(), "anthropic", "anthropic", "messages", "m", "Claude Code",
                                  None, "ua", {"k": [1, 2]}, dt.datetime(2026, 1, 2, 3, 4, 5, 6, dt.UTC))
    assert decode_record(encode_record(start)) == start
    tool = rec.ToolUsageRecord(uuid.uuid4(), "r", "c", "t", "{}", True, "http://mcp", "boom", {})
    assert decode_record(encode_record(tool)) == tool
    made = rec.OwnedObjectRecord("resp_0a1f", "response", "openai", uuid.uuid4())    # its id is no UUID
    assert decode_record(encode_record(made)) == made


def test_values_the_database_cannot_hold_are_cleaned() -> None:
    iid = uuid.uuid4()
    start = rec.InterceptionStart(iid, uuid.uuid4(), "anthropic", "anthropic", "messages", "m" * 300, "Unknown",
                                  "s\x00", "ua \udcff", {"k\x00": ["v\x00", 2**70, {"deep": "\ud800"}]})
    clean = clean_record(start)
    assert isinstance(clean, rec.InterceptionStart)
    assert len(clean.model) == 256 and clean.model.endswith("characters]")
    assert (clean.client_session_id, clean.user_agent) == ("s\ufffd", "ua \ufffd")
    assert clean.metadata == {"k\ufffd": ["v\ufffd", 2**63 - 1, {"deep": "\ufffd"}]}
    prompt = clean_record(rec.PromptRecord(iid, "", "x" * (MAX_TEXT + 5), {}))
    assert isinstance(prompt, rec.PromptRecord) and len(prompt.prompt) == MAX_TEXT
    usage = clean_record(rec.TokenUsageRecord(iid, "r", 2**64, 1, 0, 0, {}))
    assert isinstance(usage, rec.TokenUsageRecord) and usage.input_tokens == 2**63 - 1
    fine = rec.PromptRecord(iid, "", "héllo", {"a": 1})
    assert clean_record(fine) is fine            # clean values cost no copy


def test_the_journal_takes_asyncpg_uuids() -> None:
    """PostgreSQL hands back its own UUID type (a uuid.UUID subclass orjson refuses)."""
    initiator = PgUUID(str(uuid.uuid4()))
    start = rec.InterceptionStart(uuid.uuid4(), initiator, "openai", "openai", "chat_completions", "m", "c", None,
                                  "ua", {})
    back = decode_record(encode_record(start))
    assert isinstance(back, rec.InterceptionStart) and back.initiator_id == uuid.UUID(str(initiator))


def test_journal_reading_skips_only_torn_lines(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    good = [rec.PromptRecord(uuid.uuid4(), "", f"p{i}", {}) for i in range(3)]
    lines = [encode_record(r) for r in good]
    (tmp_path / "records.0000000001.jsonl").write_bytes(lines[0] + b"\n" + lines[1][:20] + b"\n" + lines[2] + b"\n")
    read = [r for path in journal.segments() for chunk in journal.read(path, 10) for r in chunk]
    assert read == [good[0], good[2]]
    assert lines[1][:20] in journal.corrupt_path.read_bytes()


async def test_a_long_outage_spills_memory_to_the_journal_and_recovers(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """Past max_pending records in memory, the journal alone holds them; they are replayed from
    disk, in order, once the database answers (here: once its tables exist) — and that is said once."""
    caplog.set_level(logging.INFO, logger="aibridge.recorder")
    late = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'late.db'}")       # no tables yet: writes fail
    recorder = Recorder(late, tmp_path / "journal", linger=0, max_pending=10)
    await recorder.start()
    user = uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(30)]
    for iid in ids:
        for record in (rec.InterceptionStart(iid, user, "openai", "openai", "chat_completions", "m", "c", None,
                                             "ua", {}),
                       rec.PromptRecord(iid, "", f"prompt {iid}", {}), rec.InterceptionEnd(iid)):
            recorder.submit(record)
        await asyncio.sleep(0.005)
    state = recorder.health()
    assert state["replaying_journal"] and state["pending"] <= 10 and state["journal_bytes"] > 0
    assert state["database"]["ok"] is False and state["dropped"] == 0

    await migrate(late)
    stamp = dt.datetime.now(dt.UTC)
    async with late.begin() as conn:
        await conn.execute(users.insert().values(id=user, username="late", role="member", created_at=stamp,
                                                 updated_at=stamp))

    async def caught_up() -> bool:
        return bool(recorder.health()["ok"])
    assert await wait_for(caught_up, 20, interval=0.1)
    await recorder.close()
    async with late.connect() as conn:
        ended = (await conn.execute(sa.select(sa.func.count()).select_from(interceptions)
                                    .where(interceptions.c.ended_at.is_not(None)))).scalar_one()
    await late.dispose()
    assert ended == 30
    assert recorder.journal.bytes_on_disk() == 0
    replayed = [r.getMessage() for r in caplog.records if "replayed the journal" in r.getMessage()]
    assert len(replayed) == 1, replayed
