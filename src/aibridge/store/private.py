"""The data directory is this user's alone: 0700, and the SQLite files in it 0600.

The database holds every user's prompts and token hashes; the journal and the proxy CA key beside
it are already 0600. SQLite creates its ``-wal`` and ``-shm`` files with the mode of the database
file, so creating that file 0600 before SQLite opens it is enough for all three. A directory or
file left looser by an earlier version is tightened at start, and the change is logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from aibridge.config import ConfigError

log = logging.getLogger("aibridge.store")
DIR_MODE, FILE_MODE = 0o700, 0o600
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def secure_data_dir(directory: Path, database: str = "aibridge.db") -> None:
    """Create ``directory`` (0700) or tighten it, and the SQLite files ``database*`` in it."""
    try:
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--data-dir (CODER_AIBRIDGE_DATA_DIR): cannot create {directory}: "
                          f"{exc.strerror}") from None
    tighten(directory, DIR_MODE)
    for suffix in SQLITE_SUFFIXES:
        tighten(directory / f"{database}{suffix}", FILE_MODE)


def secure_sqlite_file(path: Path) -> None:
    """Before SQLite opens ``path``: its directory private, the file there and 0600."""
    secure_data_dir(path.parent, path.name)
    with contextlib.suppress(OSError):      # SQLite says why when it opens it (one line naming the option)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))


def tighten(path: Path, allowed: int) -> None:
    """Remove every permission bit outside ``allowed``; log what changed (a failure is a warning)."""
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    wanted = current & allowed
    if wanted == current:
        return
    try:
        os.chmod(path, wanted)
    except OSError as exc:
        log.warning("cannot restrict %s to %04o (it is %04o): %s", path, wanted, current, exc.strerror)
        return
    log.warning("restricted %s from %04o to %04o (readable by this user only)", path, current, wanted)
