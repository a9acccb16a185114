"""The ``aibridge`` command."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge import __version__
from aibridge.cli import env, governance, groups, interceptions, login, providers, proxy
from aibridge.cli.audit import audit, cli_change
from aibridge.cli.options import fail, server_options, settings_from, storage_options
from aibridge.config import ConfigError
from aibridge.identity.roles import ROLES
from aibridge.store import providers as provider_store
from aibridge.store import users as store
from aibridge.store.audit import diff, token_diff, user_fields
from aibridge.store.db import DatabaseUnavailable, create_engine, database_label, migrate, unavailable_message
from aibridge.store.secrets import SecretBox, SecretError

T = TypeVar("T")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="aibridge")
def cli() -> None:
    """AI Bridge: give every developer Claude Code, Codex and friends without handing out provider keys."""


@cli.command()
@server_options
def server(**kwargs: Any) -> None:
    """Run the control plane and the bridge."""
    from aibridge.observability.logging import setup_logging
    from aibridge.server import run

    settings = settings_from(kwargs)
    setup_logging(settings.log_json)
    run(settings)


def with_database(kwargs: dict[str, Any], work: Callable[[AsyncEngine], Awaitable[T]],
                  say_migrated: bool = False) -> T:
    """Run ``work`` against the configured database (migrated first), with clean errors."""
    settings = settings_from(kwargs, storage_only=True)

    async def main() -> T:
        engine = create_engine(settings.database_url)
        try:
            migrated = await migrate(engine)
            if say_migrated:
                click.echo(migrated)
            return await work(engine)
        finally:
            await engine.dispose()

    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        result = asyncio.run(main())
    except (store.Conflict, store.NotFound) as exc:
        fail(str(exc))
    except DatabaseUnavailable as exc:
        fail(unavailable_message(settings, exc))
    except OSError as exc:
        fail(unavailable_message(settings, DatabaseUnavailable(str(exc))))
    # On stderr: stdout stays what scripts read (``tokens create`` prints only the token).
    click.echo(f"database: {database_label(settings)}", err=True)
    return result


@cli.command("migrate")
@storage_options
def migrate_command(**kwargs: Any) -> None:
    """Apply database migrations (the server also does at start)."""
    with_database(kwargs, lambda engine: asyncio.sleep(0), say_migrated=True)


@cli.group()
def users() -> None:
    """Manage users (directly on the configured database)."""


@users.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default="member", show_default=True)
@click.option("--email", default="", help="E-mail address.")
@click.option("--name", "full_name", default="", help="Display name.")
@storage_options
def users_create(username: str, role: str, email: str, full_name: str, **kwargs: Any) -> None:
    """Create a user."""
    from aibridge.identity.validation import validate_email, validate_username

    try:
        validate_username(username)
        validate_email(email)
    except ValueError as exc:
        fail(str(exc))

    async def work(engine: AsyncEngine) -> tuple[store.User, int]:
        async with cli_change(engine, "create", "user", resource_target=username) as change:
            user = await store.create_user(change.conn, username, role, email, full_name)
            change.resource_id, change.diff = str(user.id), diff(None, user_fields(user))
        return user, await store.count_users(engine, role="owner")

    user, owners = with_database(kwargs, work)
    click.echo(f"created user {user.username} ({user.role}) id={user.id}")
    if owners == 0:
        click.echo("note: no active owner exists yet; the server creates the owner 'admin' and prints its "
                   "token when it starts, or make one: aibridge users create NAME --role owner", err=True)


@users.command("list")
@click.option("--deleted", is_flag=True, help="Also list deleted users.")
@storage_options
def users_list(deleted: bool, **kwargs: Any) -> None:
    """List users (deleted ones only with --deleted)."""
    found = with_database(kwargs, lambda engine: store.list_users(engine, include_deleted=deleted))
    click.echo(f"{'USERNAME':<24} {'ROLE':<8} {'STATUS':<10} {'EMAIL':<32} ID")
    for user in found:
        click.echo(f"{user.username:<24} {user.role:<8} {user.status:<10} {user.email:<32} {user.id}")


def _set_suspended(username: str, suspended: bool, kwargs: dict[str, Any]) -> None:
    async def work(engine: AsyncEngine) -> None:
        async with cli_change(engine, "write", "user", resource_target=username) as change:
            user = await store.get_user(change.conn, username)
            change.resource_id, change.description = str(user.id), f"{'suspend' if suspended else 'activate'} user"
            await store.set_suspended(change.conn, user.id, suspended)
            change.diff = diff({"status": user_fields(user)["status"]},
                               {"status": "suspended" if suspended else "active"})

    with_database(kwargs, work)
    click.echo(f"{'suspended' if suspended else 'activated'} user {username}"
               + (" (its tokens stop working within a second on running servers)" if suspended else ""))


@users.command("suspend")
@click.argument("username")
@storage_options
def users_suspend(username: str, **kwargs: Any) -> None:
    """Suspend a user: its tokens stop working within a second on running servers; its records stay."""
    _set_suspended(username, True, kwargs)


@users.command("activate")
@click.argument("username")
@storage_options
def users_activate(username: str, **kwargs: Any) -> None:
    """Activate a suspended user again."""
    _set_suspended(username, False, kwargs)


@users.command("delete")
@click.argument("username")
@storage_options
def users_delete(username: str, **kwargs: Any) -> None:
    """Delete a user: its tokens are revoked, it cannot sign in, its username is free again; its
    records stay attributed to it (shown as a deleted user's)."""

    async def work(engine: AsyncEngine) -> None:
        async with cli_change(engine, "delete", "user", resource_target=username) as change:
            user = await store.get_user(change.conn, username)
            change.resource_id = str(user.id)
            await store.delete_user(change.conn, user.id)
            change.diff = diff(user_fields(user), None)

    with_database(kwargs, work)
    click.echo(f"deleted user {username}")


@cli.group()
def tokens() -> None:
    """Manage API tokens (directly on the configured database)."""


@tokens.command("create")
@click.argument("username")
@click.option("--lifetime", default="720h", show_default=True, help="How long the token is valid (e.g. 720h, 90d).")
@click.option("--name", "token_name", default="", help="A name for the token.")
@storage_options
def tokens_create(username: str, lifetime: str, token_name: str, **kwargs: Any) -> None:
    """Print a new API token for USERNAME on stdout (nothing else)."""
    from aibridge.identity.validation import parse_lifetime

    try:
        duration = parse_lifetime(lifetime)
    except ValueError as exc:
        fail(f"--lifetime: {exc}")

    cap = settings_from(dict(kwargs), storage_only=True).max_tokens_per_user

    async def work(engine: AsyncEngine) -> str:
        try:
            async with cli_change(engine, "create", "api_key") as change:
                user = await store.get_user(change.conn, username)
                change.additional_fields["user"] = user.username
                key, token = await store.create_api_key(change.conn, user.id, duration, token_name, cap)
                change.resource_id, change.resource_target = key.id, key.name
                change.diff = token_diff(key, token)
        except store.TooManyTokens as exc:
            fail(f"cannot create a token for {username!r}: {exc}; revoke one first "
                 f"(`aibridge tokens list {username}`, then `aibridge tokens revoke ID`)")
        return token

    click.echo(with_database(kwargs, work))


@tokens.command("list")
@click.argument("username")
@storage_options
def tokens_list(username: str, **kwargs: Any) -> None:
    """List a user's tokens (ids and expiry; secrets are never stored)."""

    async def work(engine: AsyncEngine) -> list[store.ApiKey]:
        return await store.list_api_keys(engine, (await store.get_user(engine, username)).id)

    click.echo(f"{'ID':<12} {'NAME':<24} {'EXPIRES':<22} STATUS")
    for key in with_database(kwargs, work):
        expires = key.to_json()["expires_at"][:19] + "Z"
        click.echo(f"{key.id:<12} {key.name:<24} {expires:<22} {'revoked' if key.revoked_at else 'active'}")


@tokens.command("revoke")
@click.argument("token_id")
@storage_options
def tokens_revoke(token_id: str, **kwargs: Any) -> None:
    """Revoke a token by its id (the part before the dash). Running servers refuse it within a second."""
    key_id = token_id.split("-", 1)[0]      # never the secret, even when given the whole token

    async def work(engine: AsyncEngine) -> None:
        async with cli_change(engine, "delete", "api_key", resource_id=key_id, resource_target=key_id) as change:
            await store.revoke_api_key(change.conn, key_id)
            change.diff = diff({"revoked": False}, {"revoked": True})

    with_database(kwargs, work)
    click.echo(f"revoked token {key_id}")


@cli.group()
def secrets() -> None:
    """The key that encrypts the provider keys stored through the API (docs/providers.md)."""


@secrets.command("rotate")
@storage_options
def secrets_rotate(**kwargs: Any) -> None:
    """Re-encrypt every stored secret with the first key of --aibridge-secrets-key (list the old key after
    it while this runs; then it can go)."""
    settings = settings_from(dict(kwargs), storage_only=True)
    try:
        box = SecretBox.from_settings(settings.aibridge_secrets_key, settings.data_dir)
    except ConfigError as exc:
        fail(str(exc))

    async def work(engine: AsyncEngine) -> int:
        async with cli_change(engine, "write", "provider", resource_target="secrets key") as change:
            count = await provider_store.rotate_secrets(change.conn, box)
            change.description = f"re-encrypted {count} stored secrets with the first secrets key"
            return count

    try:
        count = with_database(kwargs, work)
    except SecretError as exc:
        fail(str(exc))
    click.echo(f"re-encrypted {count} stored secret{'s' if count != 1 else ''} with the first secrets key")


cli.add_command(interceptions.interceptions)
for command in (governance.prices, governance.budgets, governance.models, governance.spend, groups.groups,
                providers.providers):
    cli.add_command(command)
cli.add_command(env.env)
cli.add_command(audit)
cli.add_command(proxy.proxy)
cli.add_command(login.login)
cli.add_command(login.logout)


def main() -> None:
    cli(prog_name="aibridge")
