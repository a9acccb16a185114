"""API tokens: ``<id>-<secret>``; only SHA-256 of the secret is stored.

The secret is 32 random URL-safe characters (≈190 bits), so a fast hash is the right one: there
is nothing to brute-force, and validation stays cheap on the hot path.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

_ID_ALPHABET = string.ascii_lowercase + string.digits
ID_LENGTH = 10
SECRET_LENGTH = 32


def new_token() -> tuple[str, str]:
    """Return (token_id, secret); the user's token is ``f"{token_id}-{secret}"``."""
    token_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH))
    secret = secrets.token_urlsafe(24)[:SECRET_LENGTH]
    return token_id, secret


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def split_token(token: str) -> tuple[str, str] | None:
    token_id, sep, secret = token.partition("-")
    if not sep or len(token_id) != ID_LENGTH or len(secret) < 22:
        return None
    return token_id, secret


def secret_matches(secret: str, hashed: bytes) -> bool:
    return hmac.compare_digest(hash_secret(secret), hashed)
