"""Recording as an addon on the flow: every moment becomes a record for the writer.

The functions that turn a flow's moments into records are shared with the structured-log addon,
so a log line and a stored record always say the same thing.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from aibridge.bridge.apis.base import Finding, Stored, Thought, ToolCall, Usage
from aibridge.bridge.clients import UNKNOWN
from aibridge.bridge.flow import Addon, Flow
from aibridge.bridge.scrape import METRIC_PREFIX, Collector
from aibridge.recording.recorder import Recorder
from aibridge.recording.replica import Replica
from aibridge.store.records import (
    InterceptionEnd,
    InterceptionStart,
    OwnedObjectRecord,
    PromptRecord,
    Record,
    ThoughtRecord,
    TokenUsageRecord,
    ToolUsageRecord,
)


class RecordingAddon(Addon):
    def __init__(self, recorder: Recorder, replica: Replica | None = None) -> None:
        self.recorder = recorder
        self.replica = replica

    async def start(self) -> None:
        await self.recorder.start()         # first: the journal's replay may end open interceptions
        if self.replica is not None:
            await self.replica.start()

    def collectors(self) -> list[Collector]:
        return [RecordingCollector(self.recorder, self.replica)]

    async def close(self) -> None:
        await self.recorder.close()
        if self.replica is not None:
            await self.replica.close()

    def request_parsed(self, flow: Flow) -> None:
        records = start_records(flow)
        if self.replica is not None:
            assert isinstance(records[0], InterceptionStart)
            records[0].replica_id = self.replica.me.id
        for record in records:
            self.recorder.submit(record)

    def finding(self, flow: Flow, finding: Finding) -> None:
        self.recorder.submit(to_record(flow, finding))

    def interception_ended(self, flow: Flow) -> None:
        self.recorder.submit(end_record(flow))

    def stored(self, flow: Flow, obj: Stored) -> None:
        """Who made a response or conversation (``governance/ownership.py`` checks it)."""
        self.recorder.submit(OwnedObjectRecord(obj.id, obj.kind, flow.provider.name, flow.actor.id))


def _request_metadata(flow: Flow) -> dict[str, object]:
    metadata: dict[str, object] = {"streaming": flow.streaming, "route": flow.route}
    if flow.model != flow.info.model:
        metadata["requested_model"] = flow.info.model
    if flow.door != "bridge":
        metadata["door"] = flow.door
    if flow.client == UNKNOWN and flow.user_agent:
        metadata["user_agent"] = flow.user_agent[:256]     # who it was, when no known tool
    return metadata


def start_records(flow: Flow) -> list[Record]:
    """The interception and its prompt, as the request is understood."""
    records: list[Record] = [InterceptionStart(
        id=flow.id, initiator_id=flow.actor.id, provider=flow.provider.type,
        provider_name=flow.provider.name, api=flow.api.name, model=flow.model, client=flow.client,
        client_session_id=flow.session_id, user_agent=flow.user_agent, metadata=_request_metadata(flow),
        requested_model=flow.info.model, credential_kind=flow.credential.kind,
        credential_hint=flow.credential.hint)]
    if flow.info.prompt:
        records.append(PromptRecord(flow.id, "", flow.info.prompt, dict(flow.info.prompt_metadata)))
    return records


def end_record(flow: Flow) -> InterceptionEnd:
    """The end; a failure repeats the request's metadata with what went wrong."""
    if flow.outcome == "success":
        return InterceptionEnd(flow.id, cost_usd=flow.cost_usd)
    return InterceptionEnd(flow.id, cost_usd=flow.cost_usd, metadata={
        **_request_metadata(flow), "outcome": flow.outcome, "error": flow.error,
        "upstream_status": flow.upstream_status})


def to_record(flow: Flow, finding: Finding) -> Record:
    if isinstance(finding, Usage):
        return TokenUsageRecord(flow.id, finding.response_id, finding.input_tokens, finding.output_tokens,
                                finding.cache_read_input_tokens, finding.cache_write_input_tokens,
                                finding.metadata)
    if isinstance(finding, ToolCall):
        return ToolUsageRecord(flow.id, finding.response_id, finding.call_id, finding.name, finding.input,
                               injected=finding.injected, server_url=finding.server_url,
                               invocation_error=finding.invocation_error, metadata=finding.metadata)
    assert isinstance(finding, Thought)
    return ThoughtRecord(flow.id, finding.content, finding.metadata)


class RecordingCollector:
    """The recorder's health, read when scraped: failures, what waits, what was lost or refused."""

    def __init__(self, recorder: Recorder, replica: Replica | None) -> None:
        self.recorder = recorder
        self.replica = replica

    def collect(self) -> Iterator[Metric]:
        r = self.recorder
        failures = CounterMetricFamily(METRIC_PREFIX + "recording_failures",
                                       "Failed attempts to write records, by stage (database, journal).",
                                       labels=["stage"])
        failures.add_metric(["database"], r.database.failures)
        failures.add_metric(["journal"], r.journal_trouble.failures)
        yield failures
        yield GaugeMetricFamily(METRIC_PREFIX + "records_pending",
                                "Records accepted but not yet in the database (in memory).", value=r.pending)
        yield GaugeMetricFamily(METRIC_PREFIX + "journal_bytes",
                                "Bytes of the recording journal on disk (records not yet known to be in the "
                                "database).", value=r.journal.bytes_on_disk())
        yield CounterMetricFamily(METRIC_PREFIX + "records_dropped",
                                  "Records lost: the database and the journal failed and memory was full.",
                                  value=r.dropped)
        yield CounterMetricFamily(METRIC_PREFIX + "records_rejected",
                                  "Records the database refused even cleaned (kept in records.rejected).",
                                  value=r.rejected)
        if self.replica is not None:
            yield CounterMetricFamily(METRIC_PREFIX + "interrupted_interceptions",
                                      "Interceptions left open by a stopped server, closed as interrupted.",
                                      value=self.replica.interrupted)
