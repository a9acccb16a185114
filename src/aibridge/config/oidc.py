"""Options of single sign-on (OIDC) and of the UI's sign-in, under Coder's names (DESIGN §2.6).

``check_oidc`` refuses a configuration that cannot work (one line naming the option, exit 2):
malformed mapping JSON, an issuer that is not https (loopback excepted), a client without its
secret, an invalid regular expression or role.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aibridge.config.option import Option
from aibridge.config.values import ConfigError

if TYPE_CHECKING:
    from aibridge.config.settings import Settings

ROLE_NAMES = ("owner", "auditor", "member")


def _oidc(key: str, default: str, kind: str, text: str, secret: bool = False) -> Option:
    return Option(f"oidc_{key}", f"CODER_OIDC_{key.upper()}", default, kind, text, secret=secret,
                  yaml=f"oidc.{key}")


OIDC_OPTIONS: tuple[Option, ...] = (
    _oidc("issuer_url", "", "url", "The identity provider's issuer URL (https, or http on loopback); "
          "setting it turns single sign-on on. Its /.well-known/openid-configuration is read lazily."),
    _oidc("client_id", "", "str", "The client ID registered with the identity provider."),
    _oidc("client_secret", "", "str", "The client secret registered with the identity provider.", secret=True),
    _oidc("scopes", "openid,profile,email", "str", "Comma-separated scopes asked for at sign-in."),
    _oidc("email_domain", "", "str", "Comma-separated email domains allowed to sign in (empty: any)."),
    _oidc("allow_signups", "true", "bool", "Create a user at its first sign-in (false: only existing users)."),
    _oidc("ignore_email_verified", "false", "bool", "Accept an ID token whose email_verified is false."),
    _oidc("username_field", "preferred_username", "str", "The claim the username is made from."),
    _oidc("email_field", "email", "str", "The claim holding the email address."),
    _oidc("group_field", "", "str", "The claim holding the user's groups (empty: groups are not synced)."),
    _oidc("group_mapping", "{}", "str", 'JSON {"idp-group": "group"}: renames identity provider groups.'),
    _oidc("group_regex_filter", "", "str", "Only identity provider groups matching this regular expression "
          "are synced (applied before the mapping)."),
    _oidc("group_auto_create", "false", "bool", "Create the groups a sign-in names that do not exist yet."),
    _oidc("allowed_groups", "", "str", "Comma-separated identity provider groups; a user in none of them is "
          "refused (empty: no restriction)."),
    _oidc("user_role_field", "", "str", "The claim holding the user's roles (empty: roles are not synced)."),
    _oidc("user_role_mapping", "{}", "str", 'JSON {"idp-value": ["owner"|"auditor"|"member"]}: the roles a '
          "claim value gives (a value that is itself a role name gives that role)."),
    _oidc("user_role_default", "member", "str", "The role of a user whose role claim maps to no role."),
    _oidc("sign_in_text", "", "str", "The text of the UI's sign-in button (default 'Sign in with SSO')."),
    _oidc("icon_url", "", "str", "An icon shown on the UI's sign-in button."),
    Option("disable_password_auth", "CODER_DISABLE_PASSWORD_AUTH", "false", "bool",
           "Hide the UI's token-paste sign-in (API clients still send tokens)."),
)


@dataclass(frozen=True)
class OidcSettings:
    """Single sign-on's fields of ``Settings``."""

    oidc_issuer_url: str
    oidc_client_id: str
    oidc_client_secret: str
    oidc_scopes: str
    oidc_email_domain: str
    oidc_allow_signups: bool
    oidc_ignore_email_verified: bool
    oidc_username_field: str
    oidc_email_field: str
    oidc_group_field: str
    oidc_group_mapping: str
    oidc_group_regex_filter: str
    oidc_group_auto_create: bool
    oidc_allowed_groups: str
    oidc_user_role_field: str
    oidc_user_role_mapping: str
    oidc_user_role_default: str
    oidc_sign_in_text: str
    oidc_icon_url: str
    disable_password_auth: bool

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer_url)


def split_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def group_mapping(text: str) -> dict[str, str]:
    """``CODER_OIDC_GROUP_MAPPING`` parsed (ValueError saying what is wrong)."""
    value = _json_object(text)
    if not all(isinstance(v, str) for v in value.values()):
        raise ValueError('each value must be a group name string, e.g. {"okta-devs": "developers"}')
    return {str(k): str(v) for k, v in value.items()}


def role_mapping(text: str) -> dict[str, tuple[str, ...]]:
    """``CODER_OIDC_USER_ROLE_MAPPING`` parsed (ValueError saying what is wrong)."""
    value = _json_object(text)
    mapping: dict[str, tuple[str, ...]] = {}
    for key, roles in value.items():
        if isinstance(roles, str):
            roles = [roles]
        if not isinstance(roles, list) or not all(r in ROLE_NAMES for r in roles):
            raise ValueError(f"the value of {key!r} must be a list of roles among {', '.join(ROLE_NAMES)}")
        mapping[str(key)] = tuple(roles)
    return mapping


def _json_object(text: str) -> dict[str, object]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    return value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_oidc(s: Settings) -> None:
    """The single sign-on options that cannot work, as one line naming the option."""
    if not s.oidc_enabled:
        return
    parts = urlsplit(s.oidc_issuer_url)
    if parts.scheme != "https" and not is_loopback(parts.hostname or ""):
        raise ConfigError(f"--oidc-issuer-url (CODER_OIDC_ISSUER_URL): {s.oidc_issuer_url!r} must use https "
                          "(plain http is accepted on loopback only)")
    for key in ("client_id", "client_secret"):
        if not getattr(s, f"oidc_{key}"):
            raise ConfigError(f"--oidc-{key.replace('_', '-')} (CODER_OIDC_{key.upper()}) is required "
                              "when --oidc-issuer-url is set")
    for key, parse in (("group_mapping", group_mapping), ("user_role_mapping", role_mapping)):
        try:
            parse(getattr(s, f"oidc_{key}"))
        except ValueError as exc:
            raise ConfigError(f"--oidc-{key.replace('_', '-')} (CODER_OIDC_{key.upper()}): {exc}") from None
    try:
        re.compile(s.oidc_group_regex_filter)
    except re.error as exc:
        raise ConfigError(f"--oidc-group-regex-filter (CODER_OIDC_GROUP_REGEX_FILTER): invalid regular "
                          f"expression ({exc})") from None
    if s.oidc_user_role_default not in ROLE_NAMES:
        raise ConfigError(f"--oidc-user-role-default (CODER_OIDC_USER_ROLE_DEFAULT): {s.oidc_user_role_default!r} "
                          f"is not a role (use {', '.join(ROLE_NAMES)})")
    if "openid" not in split_list(s.oidc_scopes):
        raise ConfigError("--oidc-scopes (CODER_OIDC_SCOPES): must include 'openid'")
