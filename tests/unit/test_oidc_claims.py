"""From verified claims to who signs in: usernames, the group filter and mapping, roles, refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aibridge.config import load_settings
from aibridge.identity.oidc import OidcError
from aibridge.identity.oidc_claims import profile, sanitize_username


def settings(**env: str) -> Any:
    base = {"CODER_OIDC_ISSUER_URL": "https://idp.example.com", "CODER_OIDC_CLIENT_ID": "c",
            "CODER_OIDC_CLIENT_SECRET": "s"}
    return load_settings({}, {**base, **{f"CODER_OIDC_{k.upper()}": v for k, v in env.items()}}, storage_only=True)


CLAIMS = {"sub": "1", "email": "Ann@Example.com", "email_verified": True, "preferred_username": "Ann.Lee",
          "groups": ["staff", "okta-eng", "ignored-lab"], "roles": ["sec-team"]}


@pytest.mark.parametrize(("raw", "name"), [
    ("Ann.Lee", "ann-lee"), ("ann@example.com", "ann"), ("__", "user"), ("Zoë O'Neil", "zo-o-neil"),
    ("x" * 80, "x" * 32),
])
def test_usernames_are_sanitised(raw: str, name: str) -> None:
    assert sanitize_username(raw) == name


def test_groups_are_filtered_then_mapped() -> None:
    s = settings(group_field="groups", group_regex_filter="^(?!ignored-)",
                 group_mapping=json.dumps({"okta-eng": "engineering"}))
    assert profile(CLAIMS, s).groups == ("staff", "engineering")
    assert profile(CLAIMS, settings()).groups is None          # no group field: not synced


@pytest.mark.parametrize(("roles", "expected"), [
    (["sec-team"], "auditor"), (["owner", "sec-team"], "owner"), ([], "member"), ("owner", "owner"),
    (["unknown"], "member"),
])
def test_the_highest_mapped_role_wins(roles: Any, expected: str) -> None:
    s = settings(user_role_field="roles", user_role_mapping=json.dumps({"sec-team": ["auditor"]}))
    assert profile({**CLAIMS, "roles": roles}, s).role == expected
    assert profile(CLAIMS, settings()).role is None            # no role field: not synced


@pytest.mark.parametrize(("claims", "env", "reason"), [
    ({"email_verified": False}, {}, "not verified"),
    ({"email": "ann@elsewhere.test"}, {"email_domain": "example.com"}, "not in an allowed domain"),
    ({"groups": ["contractors"]}, {"group_field": "groups", "allowed_groups": "staff"}, "not in a group allowed"),
])
def test_refusals_say_why(claims: dict[str, Any], env: dict[str, str], reason: str) -> None:
    with pytest.raises(OidcError, match=reason):
        profile({**CLAIMS, **claims}, settings(**env))


def test_unverified_email_can_be_accepted() -> None:
    assert profile({**CLAIMS, "email_verified": False}, settings(ignore_email_verified="true")).username == "ann-lee"
