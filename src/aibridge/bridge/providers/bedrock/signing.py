"""SigV4 signing (botocore's signer, service ``bedrock``) and AWS credentials.

Credentials: access key + secret from the configuration, or (neither set) the standard AWS chain
(``botocore.session.get_session().get_credentials()``: environment, shared config/credentials
files, SSO, container/instance roles), resolved once when the provider is built. Refreshable
credentials are refreshed by botocore when near expiry; that refresh may do network I/O, so it
runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, RefreshableCredentials
from botocore.exceptions import BotoCoreError

from aibridge.bridge.providers.base import UpstreamError
from aibridge.config import ConfigError

SIGNING_SERVICE = "bedrock"
DEFAULT_REGION = "us-east-1"

_REGION_IN_HOST = re.compile(r"(?:^|\.)bedrock-runtime(?:-fips)?\.([a-z]{2}(?:-[a-z]+)+-\d+)\.")


def region_from_url(url: str) -> str | None:
    """``https://bedrock-runtime.eu-west-1.amazonaws.com`` (also FIPS and VPC endpoints) → eu-west-1."""
    host = urlsplit(url).hostname or ""
    match = _REGION_IN_HOST.search(host)
    return match.group(1) if match else None


def signing_region(region: str, base_url: str) -> str:
    """The configured region, else the one in the base URL's host, else us-east-1."""
    return region or region_from_url(base_url) or DEFAULT_REGION


def host_header(url: str) -> str:
    """The Host value for ``url`` as SigV4 signs it: lower-case host, port only if not default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def sign(credentials: Any, region: str, method: str, url: str, headers: Mapping[str, str],
         body: bytes) -> dict[str, str]:
    """``headers`` plus X-Amz-Date, Authorization (and X-Amz-Security-Token) for this request."""
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    SigV4Auth(credentials, SIGNING_SERVICE, region).add_auth(request)
    return {str(k): str(v) for k, v in request.headers.items()}


def resolve_credentials(name: str, access_key: str, secret: str, options: tuple[str, str]) -> Any:
    """Static credentials from the configuration (both set: checked when it was read), or the
    standard AWS credential chain. ``options`` name the access key and secret options."""
    if access_key:
        return Credentials(access_key, secret, method="aibridge-config")
    # Messages start with the option to set, as every configuration error does.
    key_option, secret_option = options
    try:
        credentials = botocore.session.get_session().get_credentials()
    except BotoCoreError as exc:
        raise ConfigError(f"{key_option}: Bedrock provider {name!r}: cannot load AWS credentials: {exc}") from None
    if credentials is None:
        raise ConfigError(
            f"{key_option}: Bedrock provider {name!r}: no AWS credentials found (set {key_option} and "
            f"{secret_option}, or configure the AWS credential chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "~/.aws/credentials, AWS_PROFILE, or an instance/container role)")
    return credentials


async def frozen_credentials(credentials: Any, name: str) -> Any:
    """The credentials to sign one request with, refreshed first if they are about to expire."""
    try:
        if isinstance(credentials, RefreshableCredentials) and credentials.refresh_needed():
            # A refresh may call STS, SSO or the instance metadata service: not on the loop.
            return await asyncio.to_thread(credentials.get_frozen_credentials)
        return credentials.get_frozen_credentials()
    except Exception as exc:
        raise UpstreamError(502, f"AWS credentials for {name} could not be refreshed: {exc}") from exc
