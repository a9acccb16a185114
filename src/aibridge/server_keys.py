"""Typed keys for what the aiohttp application holds (shared by server and handlers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from aibridge.config import Settings
    from aibridge.governance.rules import Governance
    from aibridge.identity.auth import Authenticator
    from aibridge.store.changes import Changes
    from aibridge.store.secrets import SecretBox

ENGINE = web.AppKey("engine", AsyncEngine)
SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("authenticator")
GOVERNANCE: web.AppKey[Governance] = web.AppKey("governance")
CHANGES: web.AppKey[Changes] = web.AppKey("changes")     # publish() after a change, before answering
SECRETS: web.AppKey[SecretBox] = web.AppKey("secrets")     # encrypts the keys of providers created through the API
