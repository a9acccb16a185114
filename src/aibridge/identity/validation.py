"""Validation of what users name and choose (usernames, token lifetimes), shared by the REST API and the CLI."""

from __future__ import annotations

import datetime as dt
import re

from aibridge.config import parse_duration

USERNAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$")
MAX_LIFETIME = dt.timedelta(days=3650)


def validate_username(username: str) -> str:
    if not USERNAME.match(username):
        raise ValueError(f"invalid username {username!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return username


def parse_lifetime(text: str) -> dt.timedelta:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError("lifetime must be positive")
    lifetime = dt.timedelta(seconds=seconds)
    if lifetime > MAX_LIFETIME:
        raise ValueError("lifetime must be at most 3650d")
    return lifetime
