"""Validation of what users name and choose (usernames, e-mail addresses, token lifetimes), shared
by the REST API and the CLI."""

from __future__ import annotations

import datetime as dt
import re
import uuid

from aibridge.config import parse_duration

USERNAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$")
# Deliberately simple: one '@' with something on both sides, no spaces (local domains are fine).
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+$")
MAX_LIFETIME = dt.timedelta(days=3650)
# Words that mean something else where a user is named in a path (/api/v2/users/{user}).
RESERVED_USERNAMES = frozenset({"me"})


def validate_username(username: str) -> str:
    """A name that cannot be mistaken for another reference to a user ('me', an id)."""
    if not USERNAME.match(username):
        raise ValueError(f"invalid username {username!r}: use 1-64 letters, digits, '.', '_' or '-'")
    if username.lower() in RESERVED_USERNAMES:
        raise ValueError(f"invalid username {username!r}: it is reserved (it means the current user)")
    try:
        uuid.UUID(username)
    except ValueError:
        return username
    raise ValueError(f"invalid username {username!r}: it looks like a user id")


def validate_email(email: str) -> str:
    """Empty (no address) or something shaped like an address."""
    if email and (len(email) > 254 or not EMAIL.match(email)):
        raise ValueError(f"invalid email {email!r}: use an address such as alice@example.com")
    return email


def parse_lifetime(text: str) -> dt.timedelta:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError("lifetime must be positive")
    # Compared before building a timedelta: a huge number would overflow it.
    if seconds > MAX_LIFETIME.total_seconds():
        raise ValueError("lifetime must be at most 3650d")
    return dt.timedelta(seconds=seconds)
