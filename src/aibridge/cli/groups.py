"""``aibridge groups``: a REST client of the groups API (owners write; members see their own groups)."""

from __future__ import annotations

from urllib.parse import quote

import click

from aibridge.cli.governance import call, call_json
from aibridge.cli.session import server_options


@click.group()
def groups() -> None:
    """Groups of users: subjects of budgets and model rules (`budgets set --group`, `models allow --group`)."""


def _path(group: str) -> str:
    return f"/api/v2/groups/{quote(group, safe='')}"


@groups.command("list")
@server_options
def groups_list(url: str, token: str) -> None:
    """List the groups (members: their own) with their member counts."""
    found = call_json(url, token, "GET", "/api/v2/groups")["groups"]
    click.echo(f"{'NAME':<32} {'MEMBERS':>7} {'SOURCE':<7} DISPLAY-NAME")
    for g in found:
        click.echo(f"{g['name']:<32} {g['total_member_count']:>7} {g['source']:<7} {g['display_name']}")


@groups.command("create")
@click.argument("name")
@click.option("--display-name", default="", help="A longer name shown in the UI.")
@server_options
def groups_create(name: str, display_name: str, url: str, token: str) -> None:
    """Create a group."""
    made = call_json(url, token, "POST", "/api/v2/groups", {"name": name, "display_name": display_name})
    click.echo(f"created group {made['name']} id={made['id']}")


@groups.command("delete")
@click.argument("group")
@server_options
def groups_delete(group: str, url: str, token: str) -> None:
    """Delete a group (by name or id), its memberships, budget and model rule."""
    call(url, token, "DELETE", _path(group))
    click.echo(f"deleted group {group}")


def _members(group: str, key: str, users: tuple[str, ...], url: str, token: str) -> list[str]:
    found = call_json(url, token, "PATCH", _path(group), {key: list(users)})
    return [m["username"] for m in found["members"]]


@groups.command("add")
@click.argument("group")
@click.argument("users", nargs=-1, required=True)
@server_options
def groups_add(group: str, users: tuple[str, ...], url: str, token: str) -> None:
    """Add USERS (usernames or ids) to GROUP."""
    members = _members(group, "add_users", users, url, token)
    click.echo(f"group {group}: {', '.join(members) or 'no members'}")


@groups.command("remove")
@click.argument("group")
@click.argument("users", nargs=-1, required=True)
@server_options
def groups_remove(group: str, users: tuple[str, ...], url: str, token: str) -> None:
    """Remove USERS (usernames or ids) from GROUP."""
    members = _members(group, "remove_users", users, url, token)
    click.echo(f"group {group}: {', '.join(members) or 'no members'}")
