"""What the shared flow needs from an upstream provider.

A provider turns a client request into an upstream call and hands back a response whose body
is in the API's own wire format (JSON, or SSE for streams). The HTTP providers (OpenAI,
Anthropic) relay bytes as they are; Bedrock translates its transport into Anthropic's format so
that nothing downstream can tell the difference.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from multidict import CIMultiDict

from aibridge.bridge.apis.base import Api
from aibridge.bridge.credentials import CENTRALIZED, Credential
from aibridge.bridge.routes import RouteTable


class UpstreamError(Exception):
    """The upstream could not be reached or did not answer in time (→ 502 / 504)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    tail: str                         # path after /api/v2/aibridge/<provider>/, e.g. "v1/messages"
    query: str                        # raw query string, kept as sent ("beta=true")
    headers: CIMultiDict[str]         # client headers minus hop-by-hop, Host, length and credentials
    body: bytes
    json: dict[str, Any] | None = None   # the parsed body of an intercepted request
    stream: bool = False
    credential: Credential = CENTRALIZED   # BYOK: the user's own headers go upstream, no configured key


class UpstreamResponse(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        """Body chunks as they arrive (already decoded from any content encoding)."""

    async def read(self) -> bytes: ...

    def close(self) -> None:
        """Release the connection (aborting the upstream call if the body is unread)."""


class Provider(Protocol):
    @property
    def type(self) -> str:
        """The provider type ("openai", "anthropic", "azure", …), recorded as ``provider``."""

    @property
    def name(self) -> str:
        """Route segment and recorded ``provider_name``."""

    @property
    def routes(self) -> RouteTable:
        """What each path is: intercepted (with which API), passed through, or (unlisted) refused."""

    @property
    def apis(self) -> Mapping[str, Api]:
        """The intercepted tails of ``routes`` → API, e.g. {"v1/messages": MESSAGES}."""

    def upstream_model(self, model: str) -> str:
        """The model the upstream will actually run (Bedrock maps; others keep it)."""

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Call the upstream; raises UpstreamError when it cannot be reached."""

    async def close(self) -> None: ...
