"""The Anthropic Messages API served by Amazon Bedrock: settings, and the provider itself.

Clients keep talking to ``…/anthropic/v1/messages`` exactly as they would to Anthropic; each call
becomes a Bedrock ``InvokeModel`` (``POST /model/{id}/invoke``) or
``InvokeModelWithResponseStream`` (``POST /model/{id}/invoke-with-response-stream``) call with the
body translated (``body``), signed with SigV4 (``signing``), and the answer turned back into
Anthropic's wire format (``eventstream``, ``errors``) so nothing downstream (recording, metrics, the
client) can tell the difference. A blocking answer's body already *is* an Anthropic Message JSON
and is relayed unchanged.

Model mapping: a requested model containing ``haiku`` runs on the configured small fast model,
every other model on the main model; the interception records the Bedrock model.

Routes: Bedrock has no ``v1/models`` or ``v1/messages/count_tokens`` (nor Anthropic's event
logging), so its route table (``ROUTES``) lists only ``v1/messages`` and the gateway answers those
paths with 404 "route not supported" before calling ``send``.

Settings: Bedrock is a variant of type ``anthropic``: an ``anthropic`` provider with any of
``BEDROCK_REGION``, ``BEDROCK_BASE_URL``, ``BEDROCK_ACCESS_KEY``, ``BEDROCK_ACCESS_KEY_SECRET`` set
(indexed fields, or the ``--aibridge-bedrock-*`` options) is served by Bedrock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from aibridge.bridge.apis.base import Api
from aibridge.bridge.apis.messages import MESSAGES
from aibridge.bridge.providers.base import Provider, UpstreamRequest, UpstreamResponse
from aibridge.bridge.providers.bedrock.body import bedrock_body
from aibridge.bridge.providers.bedrock.errors import translate_error
from aibridge.bridge.providers.bedrock.eventstream import BedrockStreamResponse
from aibridge.bridge.providers.bedrock.signing import (
    frozen_credentials,
    host_header,
    resolve_credentials,
    sign,
    signing_region,
)
from aibridge.bridge.providers.http import BufferedResponse, HTTPUpstreamResponse, UpstreamClient
from aibridge.bridge.providers.registry import ProviderType, register
from aibridge.bridge.routes import RouteTable, route
from aibridge.config import ProviderConfig, ProviderFields, Settings, legacy_fields, legacy_label

ROUTES = RouteTable([route("v1/messages", "POST", MESSAGES)])     # nothing passed through (see above)

EVENTSTREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"


@dataclass(frozen=True)
class BedrockConfig:
    region: str
    base_url: str
    access_key: str
    access_key_secret: str
    model: str
    small_fast_model: str
    # How the user names the access key and its secret (flag or variable), for error messages.
    credential_options: tuple[str, str] = ("--aibridge-bedrock-access-key", "--aibridge-bedrock-access-key-secret")

    @property
    def endpoint(self) -> str:
        return self.base_url or f"https://bedrock-runtime.{self.region}.amazonaws.com"


class BedrockProvider:
    """The Anthropic Messages API served by Amazon Bedrock."""

    type = "anthropic"
    accepts_byok = False        # SigV4 signs with the configured AWS credentials: no user key fits
    routes = ROUTES
    apis: Mapping[str, Api] = ROUTES.apis

    def __init__(self, name: str, config: BedrockConfig, credentials: Any = None) -> None:
        """``credentials``: a botocore ``Credentials`` to use instead of resolving them (tests)."""
        self.name = name
        self._config = config
        self._endpoint = config.endpoint.rstrip("/")
        self._region = signing_region(config.region, config.base_url)
        if credentials is None:
            credentials = resolve_credentials(name, config.access_key, config.access_key_secret,
                                              config.credential_options)
        self._credentials = credentials
        self._client = UpstreamClient(name)

    @property
    def region(self) -> str:
        return self._region

    def secrets(self) -> list[str]:
        """The AWS credentials as resolved at start (refreshed ones are not known here): kept out
        of relayed errors and logs."""
        try:
            frozen = self._credentials.get_frozen_credentials()
        except Exception:           # a credential chain that cannot refresh now: signing will say so
            return []
        return [value for value in (frozen.access_key, frozen.secret_key, frozen.token) if value]

    def upstream_model(self, model: str) -> str:
        if "haiku" in model.lower():
            return self._config.small_fast_model
        return self._config.model

    def url(self, model: str, stream: bool) -> str:
        operation = "invoke-with-response-stream" if stream else "invoke"
        return f"{self._endpoint}/model/{quote(model, safe='')}/{operation}"

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        # Only intercepted v1/messages calls reach here, with the body the flow parsed (or re-encoded).
        body = request.json
        assert body is not None, "Bedrock is called only for intercepted requests"
        stream = bool(body.get("stream", request.stream))
        model = self.upstream_model(str(body.get("model") or ""))
        payload = orjson.dumps(bedrock_body(body, model, request.headers.getall("anthropic-beta", [])))
        url = self.url(model, stream)
        headers = {
            "Host": host_header(url),
            "Content-Type": "application/json",
            "Accept": EVENTSTREAM_CONTENT_TYPE if stream else "application/json",
        }
        if stream:
            headers["X-Amzn-Bedrock-Accept"] = "application/json"
        credentials = await frozen_credentials(self._credentials, self.name)
        signed = sign(credentials, self._region, "POST", url, headers, payload)
        # encoded=True: the path must go out exactly as it was signed
        resp = await self._client.request("POST", URL(url, encoded=True), data=payload, headers=signed)
        if resp.status >= 400:
            return await _error_response(resp)
        if stream:
            return BedrockStreamResponse(resp)
        return HTTPUpstreamResponse(resp)

    async def close(self) -> None:
        await self._client.close()


async def _error_response(resp: aiohttp.ClientResponse) -> BufferedResponse:
    """Bedrock's error, read in full, in Anthropic's error shape with Bedrock's status."""
    try:
        error_body = await HTTPUpstreamResponse(resp).read()
    finally:
        resp.release()
    headers_out = {"Content-Type": "application/json"}
    request_id = resp.headers.get("x-amzn-RequestId")
    if request_id:
        headers_out["x-amzn-RequestId"] = request_id
    return BufferedResponse(resp.status, translate_error(resp.status, resp.headers, error_body), headers_out)


# ---------------------------------------------------------------- settings

@dataclass(frozen=True)
class BedrockProviderConfig(ProviderConfig):
    bedrock: BedrockConfig


_FIELDS = ("BEDROCK_REGION", "BEDROCK_BASE_URL", "BEDROCK_ACCESS_KEY", "BEDROCK_ACCESS_KEY_SECRET",
           "BEDROCK_MODEL", "BEDROCK_SMALL_FAST_MODEL")
# The single-provider options: --aibridge-bedrock-region, … (Settings.aibridge_bedrock_region, …)
_LEGACY_KEYS = {name: "aibridge_" + name.lower() for name in _FIELDS}


@register
class BedrockType(ProviderType[BedrockProviderConfig]):
    kind = "bedrock"
    type = "anthropic"
    variant = True

    def from_fields(self, fields: ProviderFields) -> BedrockProviderConfig | None:
        region, base_url, key, secret = (fields.get(name) for name in _FIELDS[:4])
        if not (region or base_url or key or secret):
            return None
        if not (region or base_url):
            raise fields.error("BEDROCK_REGION", f"Bedrock needs a region or {fields.option('BEDROCK_BASE_URL')}")
        key_option, secret_option = fields.option("BEDROCK_ACCESS_KEY"), fields.option("BEDROCK_ACCESS_KEY_SECRET")
        if bool(key) != bool(secret):
            raise fields.error("BEDROCK_ACCESS_KEY", f"set both {key_option} and {secret_option}, or neither "
                               "(to use the standard AWS credential chain)")
        settings = fields.settings
        config = BedrockConfig(
            region, fields.url("BEDROCK_BASE_URL").rstrip("/"), key, secret,
            fields.get("BEDROCK_MODEL") or settings.aibridge_bedrock_model,
            fields.get("BEDROCK_SMALL_FAST_MODEL") or settings.aibridge_bedrock_small_fast_model,
            (key_option, secret_option))
        return BedrockProviderConfig(self.kind, self.type, fields.name, config.endpoint, config)

    def from_legacy(self, settings: Settings) -> tuple[str, BedrockProviderConfig] | None:
        made = self.from_fields(legacy_fields(settings, self.type, _LEGACY_KEYS))
        if made is None:
            return None
        # With --aibridge-anthropic-key also set, that is the option users think of as the provider.
        label = (legacy_label("aibridge_anthropic_key") if settings.aibridge_anthropic_key
                 else "legacy options (--aibridge-bedrock-*, CODER_AIBRIDGE_BEDROCK_*)")
        return label, made

    def build(self, config: BedrockProviderConfig) -> Provider:
        return BedrockProvider(config.name, config.bedrock)
