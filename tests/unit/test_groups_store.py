"""Groups and their members on real databases (SQLite and PostgreSQL): the store every group
feature builds on (REST, CLI, budgets and model rules by group, OIDC group sync)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.store import changes
from aibridge.store import groups as group_store
from aibridge.store import users as user_store
from aibridge.store.changes import GOVERNANCE
from aibridge.store.users import Conflict, NotFound
from tests.unit.test_store import engine as engine


async def _user(engine: AsyncEngine, name: str) -> uuid.UUID:
    user = await user_store.create_user(engine, name, "member")
    return user.id


async def test_create_rename_delete_and_members(engine: AsyncEngine) -> None:
    alice, bob = await _user(engine, "alice"), await _user(engine, "bob")
    async with engine.begin() as conn:
        team = await group_store.create_group(conn, "platform", "Platform team")
        assert await group_store.add_members(conn, team, [alice, bob, alice]) == 2
        assert await group_store.add_members(conn, team, [alice]) == 0
    async with engine.begin() as conn:
        with pytest.raises(Conflict):
            await group_store.create_group(conn, "platform")
    assert [m["username"] for m in await group_store.members(engine, team)] == ["alice", "bob"]
    assert await group_store.user_group_names(engine, alice) == ["platform"]
    async with engine.begin() as conn:
        renamed = await group_store.update_group(conn, str(team.id), name="infra")
        assert renamed.name == "infra" and renamed.display_name == "Platform team"
        assert await group_store.remove_members(conn, renamed, [bob]) == 1
    assert [(g.name, n) for g, n in await group_store.list_groups(engine)] == [("infra", 1)]
    async with engine.begin() as conn:
        await group_store.delete_group(conn, "infra")
        with pytest.raises(NotFound):
            await group_store.require_group(conn, "infra")
    assert await group_store.user_group_names(engine, alice) == []


@pytest.mark.parametrize("name", ["", "-lead", "trail-", "has space", "a/b", "x" * 65, "dots.in"])
def test_bad_group_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid group name"):
        group_store.validate_group_name(name)


async def test_sync_keeps_manual_groups_and_moves_oidc_ones(engine: AsyncEngine) -> None:
    alice = await _user(engine, "alice")
    async with engine.begin() as conn:
        manual = await group_store.create_group(conn, "oncall")
        await group_store.add_members(conn, manual, [alice])
        assert await group_store.sync_user_groups(conn, alice, ["eng", "sre", "bad name"],
                                                  auto_create=True) == ["eng", "sre"]
    assert await group_store.user_group_names(engine, alice) == ["eng", "oncall", "sre"]
    async with engine.begin() as conn:
        # The provider dropped "sre" and names "nope", which does not exist and is not created.
        assert await group_store.sync_user_groups(conn, alice, ["eng", "nope"], auto_create=False) == ["eng"]
    assert await group_store.user_group_names(engine, alice) == ["eng", "oncall"]


async def test_every_change_bumps_the_governance_generation(engine: AsyncEngine) -> None:
    alice = await _user(engine, "alice")

    async def generation() -> int:
        return (await changes.read(engine))[GOVERNANCE]

    seen = await generation()
    for change in ("create", "add", "rename", "remove", "delete"):
        async with engine.begin() as conn:
            if change == "create":
                await group_store.create_group(conn, "team")
            elif change == "add":
                await group_store.add_members(conn, await group_store.require_group(conn, "team"), [alice])
            elif change == "rename":
                await group_store.update_group(conn, "team", display_name="Team")
            elif change == "remove":
                await group_store.remove_members(conn, await group_store.require_group(conn, "team"), [alice])
            else:
                await group_store.delete_group(conn, "team")
        now = await generation()
        assert now > seen, change
        seen = now


async def test_audit_rows_keep_secrets_out(engine: AsyncEngine) -> None:
    from aibridge.store import audit

    changes_made = audit.diff({"name": "ci", "key": "sk-old"}, {"name": "ci-2", "key": "sk-new"}, secrets=["key"])
    assert changes_made == {"key": {"old": None, "new": None, "secret": True},
                            "name": {"old": "ci", "new": "ci-2", "secret": False}}
    async with engine.begin() as conn:
        await audit.record(conn, audit.Actor(uuid.uuid4(), "owner", "127.0.0.1", "curl/8"),
                           audit.Entry("write", "api_key", "k1", "ci", diff=changes_made))
    async with engine.connect() as conn:
        (row,) = await audit.latest(conn)
    assert row["action"] == "write" and row["user"]["username"] == "owner"
    assert "sk-old" not in str(row) and "sk-new" not in str(row)
    async with engine.begin() as conn:
        with pytest.raises(ValueError):
            await audit.record(conn, audit.Actor(), audit.Entry("explode", "user"))


async def test_a_groups_budget_and_model_rule_follow_a_rename_and_go_with_it(engine: AsyncEngine) -> None:
    from aibridge.store import governance as gov_store

    async with engine.begin() as conn:
        await group_store.create_group(conn, "old-name")
    await gov_store.set_budget(engine, "group", "old-name", "month", 5.0)
    await gov_store.set_allowed(engine, "group", "old-name", ["claude-*"])
    async with engine.begin() as conn:
        await group_store.update_group(conn, "old-name", name="new-name")
    rules = await gov_store.load_rules(engine)
    assert rules.budgets == {("group", "new-name"): ("month", 5.0)}
    assert rules.allow == {("group", "new-name"): ["claude-*"]}
    async with engine.begin() as conn:
        await group_store.delete_group(conn, "new-name")
    rules = await gov_store.load_rules(engine)
    assert rules.budgets == {} and rules.allow == {}
