"""From verified claims to who signs in: the checks (verified email, domain, allowed groups) and
the username, groups and role the ``CODER_OIDC_*`` options make of them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aibridge.config import Settings
from aibridge.config.oidc import group_mapping, role_mapping, split_list
from aibridge.identity.oidc import OidcError

ROLE_RANK = {"member": 0, "auditor": 1, "owner": 2}
_USERNAME_BAD = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Profile:
    subject: str
    email: str
    email_verified: bool
    username: str               # a valid username to start from (a suffix may be added on collision)
    name: str
    groups: tuple[str, ...] | None     # None: groups are not synced
    role: str | None                   # None: the role is not synced


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part for part in (p.strip() for p in value.split(",")) if part] if "," in value else [value]
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str | int)]
    return []


def sanitize_username(raw: str) -> str:
    """Lowercase letters and digits with single hyphens, at most 32 characters (Coder's rule)."""
    local = raw.split("@", 1)[0].lower()
    name = _USERNAME_BAD.sub("-", local).strip("-")[:32].strip("-")
    return name or "user"


def profile(claims: dict[str, Any], s: Settings) -> Profile:
    email = claims.get(s.oidc_email_field)
    email = email.strip() if isinstance(email, str) else ""
    verified = claims.get("email_verified", True)
    verified = verified is True or (isinstance(verified, str) and verified.lower() == "true")
    _check_email(email, verified, s)
    raw_groups = _strings(claims.get(s.oidc_group_field)) if s.oidc_group_field else []
    allowed = split_list(s.oidc_allowed_groups)
    if allowed and not set(allowed) & set(raw_groups):
        raise OidcError(f"you are not in a group allowed to sign in here (allowed: {', '.join(allowed)})")
    username_claim = claims.get(s.oidc_username_field)
    has_name = isinstance(username_claim, str) and bool(username_claim.strip())
    source = str(username_claim) if has_name else email or str(claims["sub"])
    name = claims.get("name")
    return Profile(str(claims["sub"]), email, verified, sanitize_username(source),
                   name.strip()[:128] if isinstance(name, str) else "",
                   _groups(raw_groups, s) if s.oidc_group_field else None,
                   _role(claims, s))


def _check_email(email: str, verified: bool, s: Settings) -> None:
    if not verified and not s.oidc_ignore_email_verified:
        raise OidcError("your email address is not verified at the identity provider")
    domains = [d.lower().lstrip("@") for d in split_list(s.oidc_email_domain)]
    if domains:
        domain = email.rpartition("@")[2].lower() if "@" in email else ""
        if domain not in domains:
            raise OidcError(f"your email address {email or '(none)'} is not in an allowed domain "
                            f"({', '.join(domains)})")


def _groups(raw: list[str], s: Settings) -> tuple[str, ...]:
    """The regular-expression filter first, then the mapping (DESIGN §2.6)."""
    pattern = re.compile(s.oidc_group_regex_filter) if s.oidc_group_regex_filter else None
    mapping = group_mapping(s.oidc_group_mapping)
    kept = [g for g in raw if pattern is None or pattern.search(g)]
    return tuple(dict.fromkeys(mapping.get(g, g) for g in kept))


def _role(claims: dict[str, Any], s: Settings) -> str | None:
    """The highest role the claim's values give; the default when none does; None when not synced."""
    if not s.oidc_user_role_field:
        return None
    mapping = role_mapping(s.oidc_user_role_mapping)
    roles: list[str] = []
    for value in _strings(claims.get(s.oidc_user_role_field)):
        if value in mapping:
            roles.extend(mapping[value])
        elif value in ROLE_RANK:
            roles.append(value)
    return max(roles, key=ROLE_RANK.__getitem__) if roles else s.oidc_user_role_default
