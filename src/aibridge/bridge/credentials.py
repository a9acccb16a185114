"""Whose credential a request goes upstream with: the operator's keys (centralized) or the user's own (BYOK).

A request that carries ``X-Coder-AI-Governance-Token: <bridge token>`` is BYOK ("bring your own
key"): the bridge authenticates that header, and the client's own ``Authorization`` /
``X-Api-Key`` go upstream unchanged instead of a configured key (``routing.py`` decides,
``providers/http.py`` sends). The credential itself is only ever held in memory for the one
request: what is recorded, logged and shown is ``kind`` and a masked ``hint``.

Pure: no I/O, so the providers, the flow and the recorder can all share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

GOVERNANCE_HEADER = "X-Coder-AI-Governance-Token"
# The client's own credential headers that a BYOK request forwards as sent.
CREDENTIAL_HEADERS = ("Authorization", "X-Api-Key")
CENTRALIZED_KIND, BYOK_KIND = "centralized", "byok"

# Vendor prefixes shown in a hint (longest first); anything else shows only its last characters.
# Only the vendor's part ("sk-ant-" of "sk-ant-api03-…"): no character of the key's own.
KNOWN_PREFIXES = ("sk-svcacct-", "sk-admin-", "sk-proj-", "sk-ant-", "sk-or-", "github_pat_", "sk-",
                  "gho_", "ghu_", "ghp_")
SHOWN_TAIL = 4
MIN_TAIL_LENGTH = 16       # a shorter credential shows no characters of its own


@dataclass(frozen=True, slots=True)
class Credential:
    kind: str
    hint: str = ""
    # The user's own headers (BYOK only): never recorded, logged or shown (not in repr either).
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def byok(self) -> bool:
        return self.kind == BYOK_KIND

    @property
    def secrets(self) -> tuple[str, ...]:
        """The credential values (a bearer without its scheme), for the scrubber."""
        return tuple(_value(name, value) for name, value in self.headers)


CENTRALIZED = Credential(CENTRALIZED_KIND)


def _value(name: str, value: str) -> str:
    if name.lower() == "authorization":
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() in ("bearer", "basic"):
            return rest.strip()
    return value.strip()


def mask(secret: str) -> str:
    """``sk-ant-…a1b2``: a known vendor prefix and the last 4 characters, never the key itself."""
    prefix = next((p for p in KNOWN_PREFIXES if secret.startswith(p)), "")
    tail = secret[-SHOWN_TAIL:] if len(secret) >= MIN_TAIL_LENGTH else ""
    return f"{prefix}…{tail}"


def own_credential(headers: Mapping[str, str]) -> Credential | None:
    """The BYOK credential of a request's headers (``X-Api-Key`` shown in the hint when both
    are sent), or None when it carries none of its own."""
    found = tuple((name, headers[name]) for name in CREDENTIAL_HEADERS
                  if name in headers and _value(name, headers[name]))
    if not found:
        return None
    shown = found[-1]
    return Credential(BYOK_KIND, mask(_value(*shown)), found)
