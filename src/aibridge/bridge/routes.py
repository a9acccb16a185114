"""One route table per provider: which paths are intercepted, passed through or refused.

Each provider declares its table (``OpenAIProvider.routes``, …); the direct routes
(``routing.py``) and the proxy (``proxy/mitm.py``) read the same table, so a path means the same
thing through every door. A route is a path pattern with its methods and what the bridge does:

- ``api``: intercepted with that API reader (``intercept.py``);
- otherwise passed through as it is, with the central key (``passthrough.py``), still as a flow
  that every guard sees (limits, model rules, ownership, actor headers);
- anything the table does not list (a path, or a method of a listed path) is refused: 404
  ``route not supported``, in the provider's error shape.

Path parameters are one segment each: ``{model}`` names a model (model rules apply to it),
``{response}`` / ``{conversation}`` a stored object (its owner is checked), ``{id}`` anything
else. A parameter holds only the characters of ``NAME`` (letters, digits, ``_ - : @ +`` and
single dots between them): ``..``, ``;``, ``%`` or whitespace never match, so such a path is
404 before anything else reads it. ``{path+}`` (last only) is one or more such segments: a
provider that passes the rest of its API through (Copilot) ends its table with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from aibridge.bridge.apis.base import Api

# A model name or a path parameter: no separator, no '..', no whitespace or control character.
NAME = r"[A-Za-z0-9_:@+-]+(?:\.[A-Za-z0-9_:@+-]+)*"
_NAME = re.compile(NAME)
MAX_NAME = 256
_PARAM = re.compile(r"\{(\w+)\}")
_REST = re.compile(r"\{(\w+)\+\}")
OWNED_KINDS = ("response", "conversation")     # parameters that name a stored object


def model_problem(model: str) -> str | None:
    """Why a model name is refused (400, before any rule), or None. Empty: the upstream says."""
    if not model or (len(model) <= MAX_NAME and _NAME.fullmatch(model)):
        return None
    return (f"invalid model name {model[:80]!r}: a model name has at most {MAX_NAME} characters among "
            "letters, digits, '_', '-', ':', '@', '+' and single dots between them")


@dataclass(frozen=True, slots=True)
class Route:
    path: str                              # e.g. "v1/models/{model}"
    methods: frozenset[str]
    api: Api | None = None                 # intercepted with this reader; None: passed through
    model_in_body: bool = False            # a passed-through JSON body whose "model" field names a model
    creates: str | None = None             # a passed-through answer whose "id" is a new object of this kind
    pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        segments = ((f"(?P<{p.group(1)}>{NAME})" if (p := _PARAM.fullmatch(s)) else
                     f"(?P<{r.group(1)}>{NAME}(?:/{NAME})*)" if (r := _REST.fullmatch(s)) else re.escape(s))
                    for s in self.path.split("/"))
        object.__setattr__(self, "pattern", re.compile("/".join(segments)))


def route(path: str, methods: str, api: Api | None = None, *, model_in_body: bool = False,
          creates: str | None = None) -> Route:
    return Route(path, frozenset(methods.split()), api, model_in_body, creates)


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    params: Mapping[str, str]

    @property
    def model(self) -> str:
        return self.params.get("model", "")

    @property
    def owned(self) -> tuple[tuple[str, str], ...]:
        """The stored objects the path names, as (kind, id)."""
        return tuple((kind, self.params[kind]) for kind in OWNED_KINDS if kind in self.params)


class RouteTable:
    """A provider's routes. Exact paths (the intercepted APIs) are found by one dict lookup."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        self.apis: Mapping[str, Api] = {r.path: r.api for r in self.routes if r.api is not None}
        self._exact = {(r.path, m): Match(r, {}) for r in self.routes if "{" not in r.path for m in r.methods}
        self._patterns = tuple(r for r in self.routes if "{" in r.path)

    def find(self, method: str, tail: str) -> Match | None:
        """The route ``method tail`` takes, or None (404 route not supported)."""
        exact = self._exact.get((tail, method))
        if exact is not None:
            return exact
        for candidate in self._patterns:
            if method in candidate.methods and (found := candidate.pattern.fullmatch(tail)):
                return Match(candidate, found.groupdict())
        return None

    def knows(self, tail: str) -> bool:
        """Some route (any method) has this path: the proxy's test of which provider a path is for."""
        return any(r.pattern.fullmatch(tail) for r in self.routes)
