"""Amazon Bedrock as the upstream of the Anthropic Messages API (a variant of type ``anthropic``).

- ``models``: what a Bedrock model id says about the Claude model, and the beta flags it accepts;
- ``body``: an Anthropic Messages request as an ``InvokeModel`` body;
- ``signing``: SigV4 and AWS credentials;
- ``eventstream``: the AWS event stream as Anthropic SSE;
- ``errors``: Bedrock errors in Anthropic's error shape;
- ``provider``: the settings (registered as provider kind ``bedrock``) and the provider.
"""

from __future__ import annotations

from aibridge.bridge.providers.bedrock.provider import BedrockConfig, BedrockProvider

__all__ = ["BedrockConfig", "BedrockProvider"]
