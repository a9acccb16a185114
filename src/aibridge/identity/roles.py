"""Roles: owner (everything), auditor (reads every record), member (own records only)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

ROLES = ("owner", "auditor", "member")


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated user behind a request."""

    id: UUID
    username: str
    name: str
    email: str
    role: str
    token_id: str

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"

    @property
    def reads_all_records(self) -> bool:
        return self.role in ("owner", "auditor")
