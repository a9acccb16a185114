"""Providers managed at runtime (DESIGN §2.6): ``/api/v2/ai/providers``. Owners write, auditors read.

The configured providers (environment, flags, YAML) are listed with ``source: config`` and are
read-only here: they change where they are defined. Providers created here (``source: api``) are
rows (``store/providers.py``) whose keys are encrypted at rest (``store/secrets.py``) and only
ever shown masked. Every change is audited, bumps the providers generation in its transaction and
is published before the answer: every worker serves it at once, other replicas within 1 s
(``bridge/live.py``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from aibridge.bridge.credentials import mask
from aibridge.bridge.live import API, DISABLED, ENABLED, Entry, LiveProviders, config_of, config_settings
from aibridge.config import ConfigError
from aibridge.rest.common import APIError, audited, json_body, json_response, require
from aibridge.server_keys import CHANGES, SECRETS, SETTINGS
from aibridge.store import providers as store
from aibridge.store.audit import diff
from aibridge.store.providers import SECRET_SETTINGS, NewKey, StoredProvider
from aibridge.store.secrets import SecretError
from aibridge.store.users import Conflict, iso

PATH = "/api/v2/ai/providers"
READERS = ("owner", "auditor")
NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
MAX_KEYS = 64
LIVE: web.AppKey[LiveProviders] = web.AppKey("live_providers")


def _shown(live: LiveProviders, entry: Entry) -> dict[str, Any]:
    row = entry.stored
    if row is None:      # configured
        keys = [{"id": str(uuid.uuid5(entry.id, str(i))), "masked": hint, "created_at": None}
                for i, hint in enumerate(live.key_hints(entry))]
        settings: dict[str, Any] = {}
        if entry.config is not None:
            settings = config_settings(entry.config)
        stamps: dict[str, Any] = {"created_at": None, "updated_at": None}
        display_name, enabled = "", True
    else:
        keys = [{"id": str(k.id), "masked": k.masked, "created_at": iso(k.created_at)} for k in row.keys]
        settings = {k: "********" if k in SECRET_SETTINGS else v for k, v in row.settings.items()}
        stamps = {"created_at": iso(row.created_at), "updated_at": iso(row.updated_at)}
        display_name, enabled = row.display_name, row.enabled
    return {"id": str(entry.id), "type": entry.type, "name": entry.name, "display_name": display_name,
            "enabled": enabled, "base_url": entry.base_url, "api_keys": keys, "settings": settings,
            "status": entry.status, "error": entry.error, "source": entry.source, **stamps}


async def _live(request: web.Request) -> LiveProviders:
    live = request.app[LIVE]
    if live.stale:
        await live.refresh()
    return live


async def _entry(request: web.Request) -> Entry:
    ref = request.match_info["ref"]
    live = await _live(request)
    for entry in live.entries.values():
        if ref in (entry.name, str(entry.id)):
            return entry
    raise APIError(404, f"provider {ref!r} not found")


async def list_providers(request: web.Request) -> web.Response:
    require(request, *READERS)
    live = await _live(request)
    shown = [_shown(live, e) for e in sorted(live.entries.values(), key=lambda e: (e.source != "config", e.name))]
    return json_response({"providers": shown, "count": len(shown)})


async def get_provider(request: web.Request) -> web.Response:
    require(request, *READERS)
    return json_response(_shown(request.app[LIVE], await _entry(request)))


# ---------------------------------------------------------------- reading a body

def _string(body: Mapping[str, Any], name: str, limit: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or "\x00" in value:
        raise APIError(400, f"field {name!r} must be a string")
    if len(value) > limit:
        raise APIError(400, f"field {name!r} is longer than {limit} characters")
    return value.strip()


def _settings(body: Mapping[str, Any]) -> dict[str, str | None]:
    value = body.get("settings") or {}
    if not isinstance(value, dict) or not all(isinstance(v, (str, type(None))) and "\x00" not in (v or "")
                                              for v in value.values()):
        raise APIError(400, "field 'settings' must be an object of strings (null removes a setting)")
    return {str(k).lower(): v for k, v in value.items()}


def _new_key(request: web.Request, plain: Any) -> tuple[str, NewKey]:
    if not isinstance(plain, str) or not plain.strip() or "\x00" in plain or len(plain) > 4096:
        raise APIError(400, "each API key must be a non-empty string")
    key = plain.strip()
    return key, NewKey(request.app[SECRETS].encrypt(key), mask(key))


def _check(request: web.Request, name: str, type_: str, base_url: str, settings: Mapping[str, str],
           keys: list[str]) -> None:
    """The provider these values make must be buildable: its type's own checks, as a 400."""
    try:
        config_of(request.app[SETTINGS], name, type_, base_url, settings, keys)
    except ConfigError as exc:
        raise APIError(400, f"invalid provider: {exc}") from None


def _audited_fields(row: StoredProvider | None) -> dict[str, Any] | None:
    if row is None:
        return None
    shown = {"name": row.name, "type": row.type, "display_name": row.display_name, "enabled": row.enabled,
             "base_url": row.base_url, "api_keys": sorted(str(k.id) for k in row.keys)}
    return {**shown, **{f"settings.{k}": v for k, v in row.settings.items()}}


def _secrets(*rows: StoredProvider | None) -> list[str]:
    return ["api_keys", *(f"settings.{k}" for row in rows if row for k in row.settings if k in SECRET_SETTINGS)]


async def _published(request: web.Request) -> LiveProviders:
    await request.app[CHANGES].publish()
    return await _live(request)


async def _saved(request: web.Request, row: StoredProvider) -> dict[str, Any]:
    """A change's answer: the provider as this server now serves it (as saved, with the status its
    row implies, if the rebuild could not read the database right after the commit)."""
    live = await _published(request)
    entry = live.entries.get(row.name)
    if entry is None or entry.stored != row:
        entry = Entry(row.id, row.name, row.type, API, ENABLED if row.enabled else DISABLED, stored=row)
    return _shown(live, entry)


# ---------------------------------------------------------------- changes

async def create_provider(request: web.Request) -> web.Response:
    async with audited(request, "create", "provider") as change:
        require(request, "owner")
        body = await json_body(request)
        name, type_ = _string(body, "name", 64) or "", (_string(body, "type", 32) or "").lower()
        change.resource_target = name
        if not NAME.match(name):
            raise APIError(400, f"invalid provider name {name!r}: lowercase letters and digits, words joined by "
                                "single hyphens (e.g. openai-eu)")
        if name in request.app[LIVE].entries and request.app[LIVE].entries[name].source != API:
            raise APIError(409, f"provider {name!r} is configured (environment or YAML); choose another name")
        raw_keys = body.get("api_keys") or []
        if not isinstance(raw_keys, list) or len(raw_keys) > MAX_KEYS:
            raise APIError(400, f"field 'api_keys' must be a list of at most {MAX_KEYS} keys")
        keys = [_new_key(request, k) for k in raw_keys]
        settings = {k: v for k, v in _settings(body).items() if v}
        base_url = _string(body, "base_url", 2048) or ""
        _check(request, name, type_, base_url, settings, [plain for plain, _ in keys])
        enabled = body.get("enabled", True)
        if not isinstance(enabled, bool):
            raise APIError(400, "field 'enabled' must be true or false")
        stored = {k: request.app[SECRETS].encrypt(v) if k in SECRET_SETTINGS else v for k, v in settings.items()}
        try:
            provider_id = await store.create_provider(
                change.conn, name=name, type_=type_, display_name=_string(body, "display_name", 128) or "",
                enabled=enabled, base_url=base_url, settings=stored, keys=[k for _, k in keys])
        except Conflict as exc:
            raise APIError(409, str(exc)) from None
        change.resource_id = str(provider_id)
        row = await store.get_provider(change.conn, str(provider_id))
        change.diff = diff(None, _audited_fields(row), _secrets(row))
    assert row is not None
    return json_response(await _saved(request, row), 201)


async def _stored(request: web.Request, change: Any) -> StoredProvider:
    """The provider the path names, which must be one created through the API."""
    entry = await _entry(request)
    change.resource_id, change.resource_target = str(entry.id), entry.name
    if entry.stored is None:
        raise APIError(409, f"provider {entry.name!r} is configured (environment or YAML) and read-only here: "
                            "change it where it is defined")
    row = await store.get_provider(change.conn, str(entry.id))
    if row is None:
        raise APIError(404, f"provider {entry.name!r} not found")
    return row


async def patch_provider(request: web.Request) -> web.Response:
    """``{display_name?, enabled?, base_url?, settings?, api_keys?}``: ``settings`` merges (null removes
    one); ``api_keys: [{id} | {api_key}]`` lists the keys that stay and the new ones (others are deleted)."""
    async with audited(request, "write", "provider", resource_target=request.match_info["ref"][:256]) as change:
        require(request, "owner")
        row = await _stored(request, change)
        body = await json_body(request)
        if body.get("name") not in (None, row.name) or body.get("type") not in (None, row.type):
            raise APIError(400, "a provider's name and type cannot change: create another provider")
        box = request.app[SECRETS]
        values: dict[str, Any] = {}
        for column, limit in (("display_name", 128), ("base_url", 2048)):
            if (given := _string(body, column, limit)) is not None:
                values[column] = given
        if "enabled" in body:
            if not isinstance(body["enabled"], bool):
                raise APIError(400, "field 'enabled' must be true or false")
            values["enabled"] = body["enabled"]
        settings = dict(row.settings)
        for key, value in _settings(body).items():
            if value:
                settings[key] = box.encrypt(value) if key in SECRET_SETTINGS else value
            else:
                settings.pop(key, None)
        values["settings"] = settings
        kept, added = _patched_keys(request, row, body)
        try:
            plain = [box.decrypt(k.ciphertext) for k in row.keys if kept is None or k.id in kept]
            plain_settings = {k: box.decrypt(v) if k in SECRET_SETTINGS else v for k, v in settings.items()}
        except SecretError as exc:      # a key from another secrets key: it can only be replaced
            raise APIError(409, str(exc), "or replace the keys (and secret settings) this server cannot "
                                          "decrypt, or delete the provider") from None
        _check(request, row.name, row.type, values.get("base_url", row.base_url), plain_settings,
               plain + [p for p, _ in added])
        await store.update_provider(change.conn, row, values, kept, [k for _, k in added])
        after = await store.get_provider(change.conn, str(row.id))
        change.diff = diff(_audited_fields(row), _audited_fields(after), _secrets(row))
    assert after is not None
    return json_response(await _saved(request, after))


def _patched_keys(request: web.Request, row: StoredProvider,
                  body: Mapping[str, Any]) -> tuple[list[uuid.UUID] | None, list[tuple[str, NewKey]]]:
    given = body.get("api_keys")
    if given is None:
        return None, []
    if not isinstance(given, list) or len(given) > MAX_KEYS:
        raise APIError(400, f"field 'api_keys' must be a list of at most {MAX_KEYS} items")
    known = {str(k.id): k.id for k in row.keys}
    kept: list[uuid.UUID] = []
    added: list[tuple[str, NewKey]] = []
    for item in given:
        if isinstance(item, dict) and set(item) == {"id"} and item["id"] in known:
            kept.append(known[item["id"]])
        elif isinstance(item, dict) and set(item) == {"api_key"}:
            added.append(_new_key(request, item["api_key"]))
        else:
            raise APIError(400, "each item of 'api_keys' is {\"id\": <a key id of this provider>} (kept) or "
                                "{\"api_key\": \"…\"} (added)")
    return kept, added


async def delete_provider(request: web.Request) -> web.Response:
    async with audited(request, "delete", "provider", resource_target=request.match_info["ref"][:256]) as change:
        require(request, "owner")
        row = await _stored(request, change)
        await store.delete_provider(change.conn, row.id)
        change.diff = diff(_audited_fields(row), None, _secrets(row))
    await _published(request)
    return web.Response(status=204)


def add_routes(app: web.Application, live: LiveProviders) -> None:
    app[LIVE] = live
    app.router.add_get(PATH, list_providers)
    app.router.add_post(PATH, create_provider)
    app.router.add_get(PATH + "/{ref}", get_provider)
    app.router.add_patch(PATH + "/{ref}", patch_provider)
    app.router.add_delete(PATH + "/{ref}", delete_provider)
