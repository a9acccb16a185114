"""BYOK credentials (``bridge/credentials.py``): which headers are the user's own, and the masked hint."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from aibridge.bridge import scrub
from aibridge.bridge.credentials import BYOK_KIND, mask, own_credential


@pytest.mark.parametrize(("secret", "hint"), [
    ("sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz-a1b2", "sk-ant-…a1b2"),
    ("sk-ant-oat01-SubscriptionTokenOfTheUser00e5f6", "sk-ant-…e5f6"),
    ("sk-proj-AbCdEfGhIjKlMnOpQrStUv_a1b2", "sk-proj-…a1b2"),
    ("sk-AbCdEfGhIjKlMnOpQrStUvWx9z8y", "sk-…9z8y"),
    ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.sig-XYZ1", "…XYZ1"),      # a JWT: no known prefix
    ("short-key-1", "…"),                                                 # too short to show any of it
])
def test_the_hint_never_shows_the_key(secret: str, hint: str) -> None:
    assert mask(secret) == hint
    assert secret not in hint and len(hint) < len(secret) // 2 + 9


def test_the_users_own_headers_are_taken_as_sent() -> None:
    headers = CIMultiDict({"authorization": "Bearer sk-proj-AbCdEfGhIjKlMnOpQrStUv_a1b2", "x-other": "1"})
    found = own_credential(headers)
    assert found is not None and found.kind == BYOK_KIND and found.hint == "sk-proj-…a1b2"
    assert found.headers == (("Authorization", "Bearer sk-proj-AbCdEfGhIjKlMnOpQrStUv_a1b2"),)
    assert found.secrets == ("sk-proj-AbCdEfGhIjKlMnOpQrStUv_a1b2",)
    assert "sk-proj-AbCd" not in repr(found)                    # not even in a repr
    assert own_credential(CIMultiDict({"Authorization": "Bearer  "})) is None
    both = own_credential(CIMultiDict({"Authorization": "Bearer tok-1234567890abcdef", "X-Api-Key": "sk-ant-k"}))
    assert both is not None and len(both.headers) == 2 and both.hint == "sk-ant-…"


def test_the_users_key_is_scrubbed_only_inside_its_request() -> None:
    key = "sk-ant-api03-UsersOwnKeyEchoedBack-c3d4"
    with scrub.request_secrets([key]):
        assert scrub.current().text(f"bad key {key}") == f"bad key {scrub.CREDENTIAL}"
    assert scrub.current().text(f"bad key {key}") == f"bad key {key}"
