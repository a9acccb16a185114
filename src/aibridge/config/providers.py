"""Options of the bridge and its single-provider shortcuts, and what provider kinds read them through.

Provider types live in ``bridge/providers`` and read their own settings through the small interface
defined here: a ``ProviderKind`` (what a type is called and how it reads its settings) is given to
``load_settings``, which hands it a ``ProviderFields`` per configured provider and gets back a
``ProviderConfig`` (``resolve.py`` does the resolving)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from aibridge.config.option import Option
from aibridge.config.values import ConfigError, parse_url

if TYPE_CHECKING:
    from aibridge.config.settings import Settings


# The bridge, and one provider per type without the indexed syntax.
PROVIDER_OPTIONS: tuple[Option, ...] = (
    Option("aibridge_enabled", "CODER_AIBRIDGE_ENABLED", "false", "bool",
           "Serve the AI Bridge provider routes."),
    Option("aibridge_openai_key", "CODER_AIBRIDGE_OPENAI_KEY", "", "str",
           "OpenAI API key used for all upstream OpenAI calls (several: separated by commas, a key pool).",
           secret=True),
    Option("aibridge_openai_base_url", "CODER_AIBRIDGE_OPENAI_BASE_URL", "https://api.openai.com/v1/", "url",
           "Base URL of the OpenAI API (or any OpenAI-compatible gateway)."),
    Option("aibridge_anthropic_key", "CODER_AIBRIDGE_ANTHROPIC_KEY", "", "str",
           "Anthropic API key used for all upstream Anthropic calls (several: separated by commas, a key pool).",
           secret=True),
    Option("aibridge_anthropic_base_url", "CODER_AIBRIDGE_ANTHROPIC_BASE_URL", "https://api.anthropic.com/", "url",
           "Base URL of the Anthropic API (or any Anthropic-compatible gateway)."),
    Option("aibridge_bedrock_region", "CODER_AIBRIDGE_BEDROCK_REGION", "", "str",
           "AWS region of Amazon Bedrock; setting it sends Anthropic traffic to Bedrock."),
    Option("aibridge_bedrock_base_url", "CODER_AIBRIDGE_BEDROCK_BASE_URL", "", "url",
           "Bedrock runtime base URL (wins over the region)."),
    Option("aibridge_bedrock_access_key", "CODER_AIBRIDGE_BEDROCK_ACCESS_KEY", "", "str",
           "AWS access key id for Bedrock (empty: the standard AWS credential chain).", secret=True),
    Option("aibridge_bedrock_access_key_secret", "CODER_AIBRIDGE_BEDROCK_ACCESS_KEY_SECRET", "", "str",
           "AWS secret access key for Bedrock.", secret=True),
    Option("aibridge_bedrock_model", "CODER_AIBRIDGE_BEDROCK_MODEL",
           "global.anthropic.claude-sonnet-4-5-20250929-v1:0", "str",
           "Bedrock model for every request whose model is not a haiku model."),
    Option("aibridge_bedrock_small_fast_model", "CODER_AIBRIDGE_BEDROCK_SMALL_FAST_MODEL",
           "global.anthropic.claude-haiku-4-5-20251001-v1:0", "str",
           "Bedrock model for requests whose model contains 'haiku'."),
)


@dataclass(frozen=True)
class ProviderSettings:
    """The bridge's and the single-provider options' fields of ``Settings``."""

    aibridge_enabled: bool
    aibridge_openai_key: str
    aibridge_openai_base_url: str
    aibridge_anthropic_key: str
    aibridge_anthropic_base_url: str
    aibridge_bedrock_region: str
    aibridge_bedrock_base_url: str
    aibridge_bedrock_access_key: str
    aibridge_bedrock_access_key_secret: str
    aibridge_bedrock_model: str
    aibridge_bedrock_small_fast_model: str


@dataclass(frozen=True)
class ProviderConfig:
    """One configured provider. Each provider kind subclasses it with its own settings."""

    kind: str                # the registered provider kind that serves it (bridge/providers)
    type: str                # the TYPE it was configured as ("openai", "anthropic", …)
    name: str                # route segment: /api/v2/aibridge/<name>/...
    base_url: str            # where its requests go


class ProviderFields:
    """One provider's settings as its type reads them, by field name (``KEY``, ``BASE_URL``,
    ``BEDROCK_REGION``, …): from ``CODER_AIBRIDGE_PROVIDER_<N>_*`` (or ``aibridge.providers[N]``), or
    from the single-provider options mapped onto the same names (``legacy``). ``option(field)`` is
    how the user wrote a field, so that messages name it."""

    __slots__ = ("_options", "_values", "legacy", "name", "read", "settings")

    def __init__(self, name: str, values: Mapping[str, str], options: Mapping[str, str], settings: Settings,
                 *, legacy: bool = False) -> None:
        self.name = name              # the provider's name (route segment)
        self._values = values
        self._options = options
        self.settings = settings      # the whole settings, for defaults shared with the legacy options
        self.legacy = legacy
        self.read: set[str] = set()   # the fields its type asked for: any other one is unknown to it

    def get(self, field_name: str) -> str:
        self.read.add(field_name)
        return self._values.get(field_name, "")

    def option(self, field_name: str) -> str:
        return self._options[field_name]

    def url(self, field_name: str, default: str = "") -> str:
        """The field as a URL (``default`` when empty); a bad one is a ConfigError naming the field."""
        try:
            url = parse_url(self.get(field_name)) or default
        except ValueError as exc:
            raise ConfigError(f"{self.option(field_name)}: {exc}") from None
        refuse_credentials(url, self.option(field_name))
        return url

    def error(self, field_name: str, message: str) -> ConfigError:
        return ConfigError(f"{self.option(field_name)}: {message}")


def refuse_credentials(url: str, option: str) -> None:
    """A provider base URL with ``user:pass@``: the HTTP client would refuse every request (500s);
    the key belongs in the key option, and the URL would show the password in logs."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{option}: the URL holds credentials (user:password@); remove them and set the "
                          "provider's key option instead")


class ProviderKind(Protocol):
    """How configuration reads one kind of provider (each registers itself in ``bridge/providers``).

    Several kinds may serve one ``type``: a *variant* (Bedrock serves type ``anthropic``) is asked
    first and answers None when its fields are absent, then the type's plain kind.
    """

    @property
    def type(self) -> str: ...

    @property
    def variant(self) -> bool: ...

    def from_fields(self, fields: ProviderFields) -> ProviderConfig | None:
        """The provider these indexed fields describe (None: a variant whose fields are absent)."""

    def from_legacy(self, settings: Settings) -> tuple[str, ProviderConfig] | None:
        """The provider the single-provider options make, with a label naming them (None: unset)."""
