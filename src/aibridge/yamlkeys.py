"""Unknown keys in the YAML configuration file are refused, naming the nearest known key.

A misspelt key (``aibridge: {retentoin: 90d}``) would otherwise be ignored and its default used
without a word. The known keys are given as a ``Schema``: a mapping from each key to the schema
of its value (``ANY``: any value), ``ListOf(schema)`` for a list of such items, or
``FreeKeys(schema)`` for a mapping whose keys are the user's own (price per model name). Keys are
compared with ``-`` read as ``_``, as the settings are read.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ListOf:
    item: Schema


@dataclass(frozen=True)
class FreeKeys:
    value: Schema


ANY = None
Schema = Mapping[str, "Schema"] | ListOf | FreeKeys | None


def unknown_key(doc: Any, schema: Schema, where: str = "") -> str | None:
    """The first unknown key in ``doc`` as one line (``config <path>: unknown key; …``), else None."""
    if schema is None:
        return None
    if isinstance(schema, ListOf):
        items = doc if isinstance(doc, list) else []
        return _first(unknown_key(item, schema.item, f"{where}[{i}]") for i, item in enumerate(items))
    if not isinstance(doc, Mapping):
        return None                  # a wrong type is the value parser's to report
    if isinstance(schema, FreeKeys):
        return _first(unknown_key(value, schema.value, _join(where, str(key))) for key, value in doc.items())
    for key, value in doc.items():
        name = str(key).replace("-", "_")
        if name not in schema:
            return f"config {_join(where, str(key))}: unknown key{_hint(name, list(schema))}"
        found = unknown_key(value, schema[name], _join(where, str(key)))
        if found:
            return found
    return None


def _first(found: Any) -> str | None:
    return next((f for f in found if f), None)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _hint(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f" (known: {', '.join(sorted(known))})"
