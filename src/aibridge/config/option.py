"""One row of the option table: its flag, variable and YAML path, and the aliases under Coder's new name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Coder renamed the product AI Gateway: every ``aibridge`` flag and variable is also accepted
# under the new name. The ``aibridge`` names stay primary: given under both, the ``aibridge``
# value wins, with a warning.
ENV_PREFIX, ENV_ALIAS_PREFIX = "CODER_AIBRIDGE_", "CODER_AI_GATEWAY_"
FLAG_PREFIX, FLAG_ALIAS_PREFIX = "--aibridge-", "--ai-gateway-"


@dataclass(frozen=True)
class Option:
    key: str            # attribute of Settings
    env: str
    default: str        # as a user would write it; parsed like any other value
    kind: str           # a key of PARSERS (values.py)
    help: str
    secret: bool = False
    yaml: str = ""      # dotted path in the YAML file; derived from key when empty
    storage: bool = False  # also needed by commands that only touch the database

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def alias_env(self) -> str:
        """``CODER_AI_GATEWAY_…`` for a ``CODER_AIBRIDGE_…`` variable, else empty."""
        return ENV_ALIAS_PREFIX + self.env.removeprefix(ENV_PREFIX) if self.env.startswith(ENV_PREFIX) else ""

    @property
    def alias_flag(self) -> str:
        """``--ai-gateway-…`` for an ``--aibridge-…`` flag, else empty."""
        flag = self.flag
        return FLAG_ALIAS_PREFIX + flag.removeprefix(FLAG_PREFIX) if flag.startswith(FLAG_PREFIX) else ""

    @property
    def alias_key(self) -> str:
        """Where the CLI puts the alias flag's value (beside ``key``), else empty."""
        return "ai_gateway_" + self.key.removeprefix("aibridge_") if self.alias_flag else ""

    @property
    def yaml_path(self) -> tuple[str, ...]:
        if self.yaml:
            return tuple(self.yaml.split("."))
        if self.key.startswith("aibridge_"):
            return ("aibridge", self.key.removeprefix("aibridge_"))
        return (self.key,)


def yaml_lookup(doc: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = doc
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part, node.get(part.replace("_", "-")))
    return node
