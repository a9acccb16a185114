"""The database schema, shared by SQLite and PostgreSQL (SQLAlchemy Core).

Alembic migrations in ``migrations/`` create exactly these tables; a test checks that the
migrated database and this module agree.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

UTC = dt.UTC


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """Always UTC-aware in Python; ``timestamptz`` on PostgreSQL, naive UTC text on SQLite."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        stamp: dt.datetime = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
        return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
metadata = sa.MetaData()


def _id() -> sa.Column[Any]:
    return sa.Column("id", sa.Uuid(as_uuid=True), primary_key=True)


def _interception_fk() -> sa.Column[Any]:
    return sa.Column("interception_id", sa.Uuid(as_uuid=True),
                     sa.ForeignKey("aibridge_interceptions.id", ondelete="CASCADE"), nullable=False)


def _created_at() -> sa.Column[Any]:
    return sa.Column("created_at", UTCDateTime(), nullable=False)


def _metadata() -> sa.Column[Any]:
    return sa.Column("metadata", JSONType, nullable=False, server_default=sa.text("'{}'"))


users = sa.Table(
    "users", metadata,
    _id(),
    sa.Column("username", sa.String(64), nullable=False),
    sa.Column("email", sa.String(320), nullable=False, server_default=""),
    sa.Column("name", sa.String(128), nullable=False, server_default=""),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("suspended", sa.Boolean(), nullable=False, server_default=sa.false()),
    _created_at(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # Deleted as Coder does: the row stays (its records name it), the username is free again.
    sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("deleted_at", UTCDateTime(), nullable=True),
    # One living user per username (create_user also refuses one that differs only in case; the
    # index stays exact, as the constraint it replaces was, so older databases migrate as they are).
    sa.Index("idx_users_username_active", "username", unique=True,
             sqlite_where=sa.text("deleted = 0"), postgresql_where=sa.text("deleted = false")),
)

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("user_id", sa.Uuid(as_uuid=True), sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("hashed_secret", sa.LargeBinary(32), nullable=False),
    _created_at(),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    # Self-service (issue 21, migration 0011): when the token last authenticated a
    # request, to the minute at best (identity/usage.py writes it in batches, off the hot path).
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
)

interceptions = sa.Table(
    "aibridge_interceptions", metadata,
    _id(),
    sa.Column("initiator_id", sa.Uuid(as_uuid=True), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("provider_name", sa.String(64), nullable=False),
    sa.Column("api", sa.String(32), nullable=False, server_default=""),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("client", sa.String(64), nullable=False, server_default=""),
    sa.Column("client_session_id", sa.String(256), nullable=True),
    sa.Column("user_agent", sa.Text(), nullable=False, server_default=""),
    _metadata(),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime(), nullable=True),
    sa.Column("replica_id", sa.Uuid(as_uuid=True), nullable=True),    # the server process that ran it
    sa.Column("requested_model", sa.String(256), nullable=True),    # what the client asked for
    sa.Column("cost_usd", sa.Float(), nullable=True),                # null: the model has no price
    # BYOK (migration 0010): whose key went upstream, and a masked hint of it (never the key).
    sa.Column("credential_kind", sa.String(16), nullable=False, server_default="centralized"),
    sa.Column("credential_hint", sa.String(64), nullable=False, server_default=""),
    sa.Index("idx_aibridge_interceptions_started_id", sa.text("started_at DESC"), sa.text("id DESC")),
    sa.Index("idx_aibridge_interceptions_initiator", "initiator_id", "started_at"),
    sa.Index("idx_aibridge_interceptions_provider", "provider"),
    sa.Index("idx_aibridge_interceptions_model", "model"),
    sa.Index("idx_aibridge_interceptions_client", "client"),
    sa.Index("idx_aibridge_interceptions_session", "client_session_id"),
    # The few open interceptions, for the sweep that closes those of dead replicas.
    sa.Index("idx_aibridge_interceptions_open", "replica_id", sqlite_where=sa.text("ended_at IS NULL"),
             postgresql_where=sa.text("ended_at IS NULL")),
)

# Server processes writing to this database, for telling a live interception from an orphan.
replicas = sa.Table(
    "aibridge_replicas", metadata,
    _id(),
    sa.Column("hostname", sa.String(256), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
)

token_usages = sa.Table(
    "aibridge_token_usages", metadata,
    _id(), _interception_fk(),
    sa.Column("provider_response_id", sa.String(256), nullable=False, server_default=""),
    sa.Column("input_tokens", sa.BigInteger(), nullable=False),
    sa.Column("output_tokens", sa.BigInteger(), nullable=False),
    sa.Column("cache_read_input_tokens", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("cache_write_input_tokens", sa.BigInteger(), nullable=False, server_default="0"),
    _metadata(), _created_at(),
    sa.Index("idx_aibridge_token_usages_interception", "interception_id"),
)

user_prompts = sa.Table(
    "aibridge_user_prompts", metadata,
    _id(), _interception_fk(),
    sa.Column("provider_response_id", sa.String(256), nullable=False, server_default=""),
    sa.Column("prompt", sa.Text(), nullable=False),
    _metadata(), _created_at(),
    sa.Index("idx_aibridge_user_prompts_interception", "interception_id"),
)

tool_usages = sa.Table(
    "aibridge_tool_usages", metadata,
    _id(), _interception_fk(),
    sa.Column("provider_response_id", sa.String(256), nullable=False, server_default=""),
    sa.Column("provider_tool_call_id", sa.String(256), nullable=False, server_default=""),
    sa.Column("server_url", sa.Text(), nullable=True),
    sa.Column("tool", sa.String(256), nullable=False),
    sa.Column("input", sa.Text(), nullable=False),
    sa.Column("injected", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("invocation_error", sa.Text(), nullable=True),
    _metadata(), _created_at(),
    sa.Index("idx_aibridge_tool_usages_interception", "interception_id"),
)

model_thoughts = sa.Table(
    "aibridge_model_thoughts", metadata,
    _id(), _interception_fk(),
    sa.Column("content", sa.Text(), nullable=False),
    _metadata(), _created_at(),
    sa.Index("idx_aibridge_model_thoughts_interception", "interception_id"),
)

CHILD_TABLES = (token_usages, user_prompts, tool_usages, model_thoughts)


# ---------------------------------------------------------------- governance (prices, budgets, model rules)

prices = sa.Table(
    "aibridge_prices", metadata,
    sa.Column("model", sa.String(256), primary_key=True),          # a model name or a glob
    sa.Column("input", sa.Float(), nullable=False),                 # USD per million tokens
    sa.Column("output", sa.Float(), nullable=False),
    sa.Column("cache_read", sa.Float(), nullable=False),
    sa.Column("cache_write", sa.Float(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

budgets = sa.Table(
    "aibridge_budgets", metadata,
    sa.Column("scope", sa.String(8), primary_key=True),             # "user" | "group" | "role"
    sa.Column("subject", sa.String(64), primary_key=True),          # user id or role name
    sa.Column("period", sa.String(8), nullable=False),              # day | week | month (UTC)
    sa.Column("limit_usd", sa.Float(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# What each user spent (settled) and holds (reserved by requests in flight) in one budget period,
# in micro-dollars so concurrent additions are exact integer arithmetic in one UPDATE.
budget_usage = sa.Table(
    "aibridge_budget_usage", metadata,
    sa.Column("user_id", sa.Uuid(as_uuid=True), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("period", sa.String(8), primary_key=True),
    sa.Column("period_start", UTCDateTime(), primary_key=True),
    sa.Column("spent_micros", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("reserved_micros", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("notified", sa.Integer(), nullable=False, server_default="0"),  # highest threshold logged (85, 100)
)

model_allow = sa.Table(
    "aibridge_model_allow", metadata,
    sa.Column("scope", sa.String(8), primary_key=True),             # "user" | "group" | "role"
    sa.Column("subject", sa.String(64), primary_key=True),
    sa.Column("patterns", JSONType, nullable=False),                # list of globs
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

model_aliases = sa.Table(
    "aibridge_model_aliases", metadata,
    sa.Column("from_model", sa.String(256), primary_key=True),
    sa.Column("provider", sa.String(64), primary_key=True),         # "" = every provider
    sa.Column("to_model", sa.String(256), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# One row per kind of state the servers cache ("auth": tokens and users; "governance": rules),
# its generation bumped in the transaction of every change (store/changes.py).
generations = sa.Table(
    "aibridge_generations", metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("generation", sa.BigInteger(), nullable=False, server_default="0"),
)

# ---------------------------------------------------------------- stored-object ownership (issue 20, 1.2)

# Who made each response and conversation that went through the bridge: only that user may read,
# continue, cancel or delete it (governance/ownership.py). Written by the recorder; purged with
# the interceptions. Keyed by the id alone: two provider names may reach one upstream account.
owned_objects = sa.Table(
    "aibridge_owned_objects", metadata,
    sa.Column("id", sa.String(256), primary_key=True),              # resp_… / conv_…
    sa.Column("kind", sa.String(16), nullable=False),               # "response" | "conversation"
    sa.Column("provider_name", sa.String(64), nullable=False),
    sa.Column("user_id", sa.Uuid(as_uuid=True), nullable=False),
    _created_at(),
    sa.Index("idx_aibridge_owned_objects_created", "created_at"),
)

# A Responses answer joined from several upstream calls (MCP's inner turns) shows the client the
# FIRST upstream response's id, but only the LAST upstream response holds the whole conversation:
# a later request naming the first continues from the last. Shared by every worker and replica.
response_continuations = sa.Table(
    "aibridge_response_continuations", metadata,
    sa.Column("shown_id", sa.String(256), primary_key=True),
    sa.Column("upstream_id", sa.String(256), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("idx_aibridge_response_continuations_created", "created_at"),
)

# ---------------------------------------------------------------- groups (issue 22; synced from OIDC in issue 21)

# A group is a subject of budgets and model rules beside users and roles (DESIGN §2.6). ``source``
# says who manages its members: "manual" (REST, CLI, UI) or "oidc" (synced from the identity
# provider's group claim at every sign-in).
groups = sa.Table(
    "aibridge_groups", metadata,
    _id(),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("display_name", sa.String(128), nullable=False, server_default=""),
    sa.Column("source", sa.String(16), nullable=False, server_default="manual"),
    _created_at(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

group_members = sa.Table(
    "aibridge_group_members", metadata,
    sa.Column("group_id", sa.Uuid(as_uuid=True), sa.ForeignKey("aibridge_groups.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("user_id", sa.Uuid(as_uuid=True), sa.ForeignKey("users.id", ondelete="CASCADE"),
              primary_key=True, index=True),
    _created_at(),
)

# ---------------------------------------------------------------- the audit log (issue 22)

# Every change made through the REST API, the CLI or the UI, successful or refused, and every
# sign-in and sign-out (DESIGN §2.6, Coder's shape). Written in the transaction of the change it
# records (store/audit.py); no route writes or deletes it; retention purges it in batches.
audit_logs = sa.Table(
    "aibridge_audit_logs", metadata,
    _id(),
    sa.Column("time", UTCDateTime(), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("ip", sa.String(64), nullable=False, server_default=""),
    sa.Column("user_agent", sa.String(512), nullable=False, server_default=""),
    sa.Column("user_id", sa.Uuid(as_uuid=True), nullable=True),       # the actor; NULL: unknown (failed sign-in)
    sa.Column("username", sa.String(64), nullable=False, server_default=""),
    sa.Column("action", sa.String(16), nullable=False),               # create|write|delete|login|logout|register
    sa.Column("resource_type", sa.String(32), nullable=False),
    sa.Column("resource_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("resource_target", sa.String(256), nullable=False, server_default=""),
    sa.Column("diff", JSONType, nullable=False, server_default=sa.text("'{}'")),
    sa.Column("status_code", sa.Integer(), nullable=False),
    sa.Column("additional_fields", JSONType, nullable=False, server_default=sa.text("'{}'")),
    sa.Column("description", sa.String(512), nullable=False, server_default=""),
    sa.Index("idx_aibridge_audit_logs_time", "time"),
)

# ---------------------------------------------------------------- single sign-on (issue 21)

# How a user signs in ("token": tokens made by an owner or itself; "oidc": the identity provider,
# which created it at its first sign-in) and the provider's subject (``sub``) that links them.
users.append_column(sa.Column("login_type", sa.String(16), nullable=False, server_default="token"))
users.append_column(sa.Column("oidc_subject", sa.String(255), nullable=True))
sa.Index("idx_users_oidc_subject", users.c.oidc_subject, unique=True)

# ---------------------------------------------------------------- providers managed at runtime (issue 23 §3)

# Providers created through the API (``source: api``; the configured ones live in the settings,
# never here). Their keys are stored encrypted (store/secrets.py) with a masked form for display.
providers = sa.Table(
    "aibridge_providers", metadata,
    _id(),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("display_name", sa.String(128), nullable=False, server_default=""),
    sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column("base_url", sa.String(2048), nullable=False, server_default=""),
    sa.Column("settings", JSONType, nullable=False, server_default=sa.text("'{}'")),
    _created_at(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

provider_keys = sa.Table(
    "aibridge_provider_keys", metadata,
    _id(),
    sa.Column("provider_id", sa.Uuid(as_uuid=True), sa.ForeignKey("aibridge_providers.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("position", sa.Integer(), nullable=False),        # the key pool's order
    sa.Column("ciphertext", sa.Text(), nullable=False),
    sa.Column("masked", sa.String(64), nullable=False),
    _created_at(),
)
