"""Secrets at rest: the provider keys stored through the API, encrypted with Fernet.

Fernet (``cryptography``) is AES-128-CBC with an HMAC-SHA256 over it: a key changed or a
ciphertext tampered with fails to decrypt instead of giving garbage. The key is
``CODER_AIBRIDGE_SECRETS_KEY`` (32 random bytes in base64; ``openssl rand -base64 32``), else a
key generated once into ``<data dir>/secrets.key`` (0600). Several replicas share one database,
so they need one key: set the variable to the same value everywhere.

Rotation (docs/providers.md): put the new key first, keep the old one after it
(``new,old``); the first key encrypts, every key decrypts. ``aibridge secrets rotate`` then
re-encrypts every stored secret with the first key, and the old key can go.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from aibridge.config import ConfigError

KEY_FILE = "secrets.key"
OPTION = "--aibridge-secrets-key (CODER_AIBRIDGE_SECRETS_KEY)"


class SecretError(Exception):
    """A stored secret cannot be decrypted with the configured keys."""


def _fernet_key(text: str, where: str) -> bytes:
    """32 bytes in base64 (standard or URL-safe alphabet) as Fernet's URL-safe form."""
    try:
        raw = base64.b64decode(text.strip().replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"{where}: a key is 32 random bytes in base64 (openssl rand -base64 32)")
    return base64.urlsafe_b64encode(raw)


class SecretBox:
    """Encrypts with the first key, decrypts with any."""

    def __init__(self, keys: list[bytes]) -> None:
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    @classmethod
    def from_settings(cls, configured: str, data_dir: Path) -> SecretBox:
        keys = [k for k in configured.split(",") if k.strip()]
        if keys:
            return cls([_fernet_key(k, OPTION) for k in keys])
        return cls([_fernet_key(_data_dir_key(data_dir), str(data_dir / KEY_FILE))])

    def encrypt(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except (InvalidToken, UnicodeDecodeError):
            raise SecretError("cannot decrypt a stored key with the configured secrets key: every replica "
                              f"needs the same {OPTION}, and a rotated-out key must stay listed until "
                              "`aibridge secrets rotate` ran") from None

    def rotate(self, ciphertext: str) -> str:
        """The same secret under the first key (raises SecretError like ``decrypt``)."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretError(f"cannot decrypt a stored key with {OPTION}") from None


def _data_dir_key(data_dir: Path) -> str:
    """The data directory's key, generated on first use (0600). Written whole to a temporary file,
    then linked into place: two processes racing both read the winner's key, never a partial one."""
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".secrets-", dir=data_dir)     # mkstemp: 0600
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(base64.b64encode(os.urandom(32)).decode() + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the secrets key: {exc.strerror}") from None
