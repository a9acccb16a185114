"""``--aibridge-redact``: secrets in prompts, tool arguments and thoughts become ``[REDACTED:<kind>]``.

An addon on the flow, listed before the recording addon: it rewrites ``flow.info.prompt`` in
``request_parsed`` and each tool call's input and thought's content in ``finding``, in place, so
every addon after it (recording, structured logs, tracing) sees only the redacted text and the
redaction happens once. Addons before it (MCP injection runs the model's tool calls) still see
the real arguments.

Modes: ``store`` (default) redacts what is recorded; ``upstream`` also redacts every string of
the request body sent upstream (opaque fields such as thinking signatures, encrypted reasoning
and inline data are left alone: changing them would break the request); ``off`` builds no addon.

Counts: each redacted record carries ``metadata.redactions`` (kind → number), and ``counts``
(since start, by kind) feeds ``coder_aibridged_redactions_total{kind}`` when scraped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
from prometheus_client.core import CounterMetricFamily, Metric

from aibridge.bridge import scrub
from aibridge.bridge.apis.base import Finding, Thought, ToolCall
from aibridge.bridge.flow import Addon, Flow
from aibridge.bridge.providers.base import UpstreamRequest
from aibridge.bridge.scrape import METRIC_PREFIX, Collector
from aibridge.redaction.secrets import Redactor

MODES = ("store", "upstream", "off")
# Fields whose value is opaque to the model's reading and checked by the upstream.
OPAQUE_FIELDS = frozenset({"signature", "encrypted_content", "data", "image_url", "file_data"})


class RedactionAddon(Addon):
    def __init__(self, mode: str = "store", redactor: Redactor | None = None) -> None:
        if mode not in MODES or mode == "off":
            raise ValueError(f"redaction mode must be 'store' or 'upstream', got {mode!r}")
        self.upstream = mode == "upstream"
        self.redactor = redactor or Redactor()
        self.counts: Counter[str] = Counter()

    def collectors(self) -> list[Collector]:
        return [RedactionCollector(self.counts)]

    def _redact(self, text: str, metadata: dict[str, Any]) -> str:
        counts: Counter[str] = Counter()
        redacted = self.redactor.redact(text, counts)
        if counts:
            metadata["redactions"] = dict(counts)
            self.counts.update(counts)
        return redacted

    def _redact_in(self, flow: Flow, text: str, metadata: dict[str, Any]) -> str:
        text = self._redact(text, metadata)
        # A BYOK user's own key is a secret too, whatever its shape: the request's scrubber
        # (scrub.request_secrets, set by routing.py) knows it.
        return scrub.current().text(text) if flow.credential.byok else text

    def request_parsed(self, flow: Flow) -> None:
        if flow.info.prompt:
            flow.info.prompt = self._redact_in(flow, flow.info.prompt, flow.info.prompt_metadata)

    def finding(self, flow: Flow, finding: Finding) -> None:
        if isinstance(finding, ToolCall):
            finding.input = self._redact_in(flow, finding.input, finding.metadata)
        elif isinstance(finding, Thought):
            finding.content = self._redact_in(flow, finding.content, finding.metadata)

    def upstream_request(self, flow: Flow, request: UpstreamRequest) -> None:
        if self.upstream and request.json is not None and redact_tree(request.json, self.redactor):
            request.body = orjson.dumps(request.json)


def redact_tree(node: dict[str, Any] | list[Any], redactor: Redactor) -> bool:
    """Redact every string in a parsed JSON body, in place; True when anything changed."""
    changed = False
    items: Any = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in list(items):
        if isinstance(value, str):
            if key in OPAQUE_FIELDS or value.startswith("data:"):
                continue
            redacted = redactor.redact(value)
            if redacted is not value:
                node[key] = redacted
                changed = True
        elif isinstance(value, dict | list) and key not in OPAQUE_FIELDS:
            changed = redact_tree(value, redactor) or changed
    return changed


class RedactionCollector:
    """``redactions_total{kind}``: secrets replaced in recorded items, read from the addon's counts."""

    def __init__(self, counts: Mapping[str, int]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(METRIC_PREFIX + "redactions",
                                     "Secrets replaced by [REDACTED:<kind>] in recorded prompts, tool arguments "
                                     "and thoughts.", labels=["kind"])
        for kind, count in sorted(self.counts.items()):
            family.add_metric([kind], count)
        yield family
