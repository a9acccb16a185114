"""``--aibridge-send-actor-headers``: tell the upstream who is asking.

Useful when another proxy sits between AI Bridge and the provider and wants to attribute or
limit per user. Headers as Coder's AI Bridge sends them. A client can never set them itself:
``forwardable_headers`` drops every ``X-AI-Bridge-Actor-*`` header the client sent.
"""

from __future__ import annotations

from aibridge.bridge.flow import Addon, Flow
from aibridge.bridge.providers.base import UpstreamRequest

ACTOR_HEADER_PREFIX = "X-AI-Bridge-Actor"
ID_HEADER = f"{ACTOR_HEADER_PREFIX}-ID"
USERNAME_HEADER = f"{ACTOR_HEADER_PREFIX}-Metadata-Username"


class ActorHeadersAddon(Addon):
    def upstream_request(self, flow: Flow, request: UpstreamRequest) -> None:
        request.headers[ID_HEADER] = str(flow.actor.id)
        request.headers[USERNAME_HEADER] = flow.actor.username
