"""Recording as an addon on the flow: every moment becomes a record for the writer."""

from __future__ import annotations

from aibridge.bridge.apis.base import Finding, Thought, ToolCall, Usage
from aibridge.bridge.flow import Addon, Flow
from aibridge.recording.recorder import Recorder
from aibridge.recording.records import (
    InterceptionEnd,
    InterceptionStart,
    PromptRecord,
    Record,
    ThoughtRecord,
    TokenUsageRecord,
    ToolUsageRecord,
)


class RecordingAddon(Addon):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def request_parsed(self, flow: Flow) -> None:
        metadata: dict[str, object] = {"streaming": flow.streaming, "route": flow.route}
        if flow.model != flow.info.model:
            metadata["requested_model"] = flow.info.model
        self.recorder.submit(InterceptionStart(
            id=flow.id, initiator_id=flow.actor.id, provider=flow.provider.type,
            provider_name=flow.provider.name, api=flow.api.name, model=flow.model, client=flow.client,
            client_session_id=flow.session_id, user_agent=flow.user_agent, metadata=metadata))
        if flow.info.prompt:
            self.recorder.submit(PromptRecord(flow.id, "", flow.info.prompt, {}))

    def finding(self, flow: Flow, finding: Finding) -> None:
        self.recorder.submit(to_record(flow, finding))

    def interception_ended(self, flow: Flow) -> None:
        metadata: dict[str, object] | None = None
        if flow.outcome != "success":
            metadata = {"streaming": flow.streaming, "route": flow.route, "outcome": flow.outcome,
                        "error": flow.error, "upstream_status": flow.upstream_status}
            if flow.model != flow.info.model:
                metadata["requested_model"] = flow.info.model
        self.recorder.submit(InterceptionEnd(flow.id, metadata=metadata))


def to_record(flow: Flow, finding: Finding) -> Record:
    if isinstance(finding, Usage):
        return TokenUsageRecord(flow.id, finding.response_id, finding.input_tokens, finding.output_tokens,
                                finding.cache_read_input_tokens, finding.cache_write_input_tokens,
                                finding.metadata)
    if isinstance(finding, ToolCall):
        return ToolUsageRecord(flow.id, finding.response_id, finding.call_id, finding.name, finding.input,
                               injected=False, server_url=None, invocation_error=None,
                               metadata=finding.metadata)
    assert isinstance(finding, Thought)
    return ThoughtRecord(flow.id, finding.content, finding.metadata)
