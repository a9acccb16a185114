"""Upstream providers: one module or package per provider kind, each registering itself.

Importing this package imports every kind (below), so ``PROVIDER_KINDS`` is complete: adding a
provider type is a new module here plus its line in the import list (see docs/architecture.md).
"""

from __future__ import annotations

from aibridge.bridge.providers.registry import PROVIDER_KINDS, build_provider

# The kinds register themselves on import, in this order: the order users see ("openai, anthropic").
# isort: off
from aibridge.bridge.providers import openai  # noqa: F401
from aibridge.bridge.providers import anthropic  # noqa: F401
from aibridge.bridge.providers import bedrock  # noqa: F401
from aibridge.bridge.providers import compat  # noqa: F401
from aibridge.bridge.providers import copilot  # noqa: F401
# isort: on

__all__ = ["PROVIDER_KINDS", "build_provider"]
