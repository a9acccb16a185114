"""Model prices (USD per million tokens) and what a request costs, or may cost.

Shipped list prices live in ``prices.yaml`` beside this module; YAML configuration and the
owners' overrides in the database are laid over them. A model matches its exact name first,
then the longest matching glob (``gpt-5-mini*`` beats ``gpt-5*``).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from aibridge.bridge.apis.base import Finding, Usage

PRICE_FIELDS = ("input", "output", "cache_read", "cache_write")
DEFAULTS_FILE = Path(__file__).with_name("prices.yaml")


@dataclass(frozen=True, slots=True)
class Price:
    input: float
    output: float
    cache_read: float
    cache_write: float

    def as_tuple(self) -> tuple[float, float, float, float]:
        return self.input, self.output, self.cache_read, self.cache_write

    def to_json(self) -> dict[str, float]:
        return dict(zip(PRICE_FIELDS, self.as_tuple(), strict=True))


def parse_price(value: object, where: str) -> Price:
    """A price from ``{input, output[, cache_read, cache_write]}``; ValueError names what is wrong.

    Cache reads default to the input price and cache writes to it too (a safe over-estimate)."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: a price is a mapping with input and output (USD per million tokens)")
    unknown = sorted(set(map(str, value)) - set(PRICE_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r} (use {', '.join(PRICE_FIELDS)})")
    numbers: dict[str, float] = {}
    for name in PRICE_FIELDS:
        raw = value.get(name)
        if raw is None:
            if name in ("input", "output"):
                raise ValueError(f"{where}: {name} is required")
            raw = numbers["input"]
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw < 0:
            raise ValueError(f"{where}: {name} must be a non-negative number, got {raw!r}")
        numbers[name] = float(raw)
    return Price(**numbers)


@cache
def shipped_prices() -> dict[str, Price]:
    doc: dict[str, Any] = yaml.safe_load(DEFAULTS_FILE.read_text(encoding="utf-8"))
    return {str(model): parse_price(value, f"{DEFAULTS_FILE.name} {model}") for model, value in doc.items()}


def is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


class PriceTable:
    def __init__(self, entries: Mapping[str, Price]) -> None:
        self.entries = dict(entries)
        # Longest (most specific) globs first.
        self._globs = sorted((p for p in self.entries if is_glob(p)), key=lambda p: (-len(p), p))
        self._found: dict[str, Price | None] = {}

    def lookup(self, model: str) -> Price | None:
        if model in self._found:
            return self._found[model]
        found = self.entries.get(model)
        if found is None:
            pattern = next((p for p in self._globs if fnmatch.fnmatchcase(model, p)), None)
            found = self.entries[pattern] if pattern else None
        if len(self._found) < 10_000:
            self._found[model] = found
        return found


def usage_cost(price: Price, usages: Iterable[Finding]) -> float:
    """USD for the token usages among ``findings`` (``input_tokens`` excludes cached tokens)."""
    total = 0.0
    for usage in usages:
        if isinstance(usage, Usage):
            total += (usage.input_tokens * price.input + usage.output_tokens * price.output
                      + usage.cache_read_input_tokens * price.cache_read
                      + usage.cache_write_input_tokens * price.cache_write)
    return total / 1_000_000


# A token is about four bytes of English or code in JSON; counting three over-estimates on purpose.
BYTES_PER_TOKEN = 3


def estimate_cost(price: Price, body_bytes: int, max_output_tokens: int) -> float:
    """An upper bound of one upstream call's cost: every request byte a third of an input token at
    the dearer of the input and cache-write prices, and the whole output cap."""
    input_tokens = math.ceil(body_bytes / BYTES_PER_TOKEN)
    return (input_tokens * max(price.input, price.cache_write) + max_output_tokens * price.output) / 1_000_000
