"""Options of the server process: where it listens and stores, how it starts, stops and reads requests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aibridge.config.option import Option

# Where it listens and where it stores.
SERVER_OPTIONS: tuple[Option, ...] = (
    Option("http_address", "CODER_HTTP_ADDRESS", "127.0.0.1:3000", "address",
           "Address the HTTP server listens on."),
    Option("access_url", "CODER_ACCESS_URL", "", "url",
           "External URL developers use to reach this server (default: http://<http-address>)."),
    Option("postgres_url", "CODER_PG_CONNECTION_URL", "", "str",
           "PostgreSQL connection URL. Empty: embedded SQLite in the data directory.",
           secret=True, storage=True),
    Option("data_dir", "CODER_AIBRIDGE_DATA_DIR", "~/.local/share/aibridge", "path",
           "Directory for the SQLite database and the recording journal.", storage=True),
    Option("aibridge_secrets_key", "CODER_AIBRIDGE_SECRETS_KEY", "", "str",
           "Key(s) that encrypt the provider keys stored through the API: 32 bytes in base64, several "
           "separated by commas (the first encrypts, every one decrypts: rotation). Empty: a key kept in "
           "the data directory. Set the same value on every replica.", secret=True, storage=True),
)

SHUTDOWN_OPTIONS: tuple[Option, ...] = (
    Option("shutdown_grace", "CODER_AIBRIDGE_SHUTDOWN_GRACE", "30s", "duration",
           "How long shutdown waits for in-flight requests to finish."),
)

# Worker processes, their event loop, reading requests.
PROCESS_OPTIONS: tuple[Option, ...] = (
    Option("workers", "CODER_AIBRIDGE_WORKERS", "auto", "workers",
           "Worker processes sharing the HTTP port, one event loop each (auto: one per usable CPU; "
           "1: a single process).", yaml="aibridge.workers"),
    Option("uvloop", "CODER_AIBRIDGE_UVLOOP", "true", "bool",
           "Run the event loop on uvloop when it is installed (false: asyncio's own loop; the AI Bridge "
           "Proxy always runs on asyncio's loop).",
           yaml="aibridge.uvloop"),
    Option("request_read_timeout", "CODER_AIBRIDGE_REQUEST_READ_TIMEOUT", "60s", "duration",
           "How long a client may take to send a request body; a slower one gets 408."),
)

# How the listeners hold connections (httpserver.py, listening.py).
CONNECTION_OPTIONS: tuple[Option, ...] = (
    Option("aibridge_header_timeout", "CODER_AIBRIDGE_HEADER_TIMEOUT", "10s", "duration",
           "How long a client may take to send a request's line and headers, counted from the connection "
           "or from the first byte of a next request on it (0: no limit); a slower one is disconnected."),
    Option("aibridge_idle_timeout", "CODER_AIBRIDGE_IDLE_TIMEOUT", "75s", "duration",
           "How long an idle keep-alive connection stays open between requests (0: no limit). Above the "
           "60 s idle timeout of common load balancers, so they close first. Never cuts a running answer."),
    Option("aibridge_max_connections", "CODER_AIBRIDGE_MAX_CONNECTIONS", "10000", "int",
           "Most client connections open at once on the main port, per worker process (0: unlimited); "
           "one more is answered 503 'too many connections' and closed."),
    Option("aibridge_listen_backlog", "CODER_AIBRIDGE_LISTEN_BACKLOG", "65535", "int",
           "Listen queue of the main and proxy ports, per worker (capped by the kernel's "
           "net.core.somaxconn): connections a burst may open before the server accepts them."),
)

# Users' API tokens.
TOKEN_OPTIONS: tuple[Option, ...] = (
    Option("max_tokens_per_user", "CODER_MAX_TOKENS_PER_USER", "100", "int",
           "Most live (not revoked, not expired) API tokens a user may hold; creating another is refused "
           "(0: unlimited).", yaml="aibridge.max_tokens_per_user", storage=True),
)


@dataclass(frozen=True)
class ServerSettings:
    """The server's fields of ``Settings``."""

    http_address: str
    access_url: str
    postgres_url: str
    data_dir: Path
    aibridge_secrets_key: str
    shutdown_grace: float
    workers: int
    uvloop: bool
    request_read_timeout: float
    aibridge_header_timeout: float
    aibridge_idle_timeout: float
    aibridge_max_connections: int
    aibridge_listen_backlog: int
    max_tokens_per_user: int
