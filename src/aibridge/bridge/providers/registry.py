"""Provider kinds register themselves here; configuration and the server find them here.

A provider kind is one class, in its own module or package under ``bridge/providers/``, that
reads its settings and builds its provider::

    @register
    class OpenAIType(ProviderType[HTTPProviderConfig]):
        kind = type = "openai"
        def from_fields(self, fields): ...     # CODER_AIBRIDGE_PROVIDER_<N>_* (TYPE=openai)
        def from_legacy(self, settings): ...   # --aibridge-openai-* (optional)
        def build(self, config): ...           # the Provider serving the routes

``aibridge.config`` (the lowest layer) knows only the ``ProviderKind`` interface: the CLI passes
``PROVIDER_KINDS`` to ``load_settings``, which asks each kind to read its own fields. ``kind``
names the class that serves a configuration; ``type`` is the ``TYPE`` users write and the API
family recorded as ``provider``. A *variant* serves a type that another kind also serves, and is
asked first: Bedrock serves ``anthropic`` when a Bedrock field is set.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from aibridge.bridge.providers.base import Provider
from aibridge.config import ProviderConfig, ProviderFields, Settings

C = TypeVar("C", bound=ProviderConfig)
T = TypeVar("T", bound="type[ProviderType[Any]]")


class ProviderType(Generic[C]):
    """One provider kind: how it reads its settings and builds its provider."""

    kind: str = ""
    type: str = ""
    variant: bool = False

    def from_fields(self, fields: ProviderFields) -> C | None:
        """The configuration these fields describe; None only for a variant whose fields are absent.
        Raise ConfigError (``fields.error(FIELD, …)``) for a value that cannot work."""
        raise NotImplementedError

    def from_legacy(self, settings: Settings) -> tuple[str, C] | None:
        """The provider the single-provider options make, labelled by those options; None when unset."""
        return None

    def build(self, config: C) -> Provider:
        raise NotImplementedError


# In registration order: the order of TYPE in messages and of the single-provider options' providers.
PROVIDER_KINDS: list[ProviderType[Any]] = []


def register(cls: T) -> T:
    """Class decorator: make a provider kind known to configuration and the server."""
    if any(k.kind == cls.kind for k in PROVIDER_KINDS):
        raise ValueError(f"provider kind {cls.kind!r} is registered twice")
    PROVIDER_KINDS.append(cls())
    return cls


def build_provider(config: ProviderConfig) -> Provider:
    for kind in PROVIDER_KINDS:
        if kind.kind == config.kind:
            return kind.build(config)
    raise ValueError(f"no provider kind {config.kind!r} is registered")
