"""An Anthropic Messages request as a Bedrock ``InvokeModel`` body (the client's body is never mutated).

- ``model`` and ``stream`` go into the URL and are removed; ``anthropic_version:
  "bedrock-2023-05-31"`` is added;
- the ``anthropic-beta`` header (comma-separated, possibly repeated) becomes the ``anthropic_beta``
  body field, keeping only flags Bedrock accepts for the model (``models.bedrock_betas``); the
  header itself is never sent to Bedrock (no client header is: the request carries only what is
  signed);
- ``metadata``, ``service_tier``, ``container``, ``inference_geo`` are removed (Bedrock answers
  "extraneous key … is not permitted");
- ``context_management`` is kept only when its beta survived the filter;
- ``output_config.effort`` is kept only for models where effort is generally available (those with
  adaptive thinking) or when the effort beta survived; ``output_config.format`` (structured
  outputs, which Bedrock's InvokeModel supports) is always kept; an emptied ``output_config`` is
  removed;
- ``thinking: {"type": "adaptive"}`` on a model without adaptive thinking (everything before
  Claude 4.6, and any model id we cannot parse, e.g. an application-inference-profile ARN) becomes
  ``{"type": "enabled", "budget_tokens": B}`` with B from ``max_tokens`` and
  ``output_config.effort`` (``thinking_budget``); when ``max_tokens`` cannot hold a 1024-token
  budget, thinking is dropped. The reverse also holds: adaptive-only models (Opus 4.7+, Mythos,
  Fable) reject ``enabled``/``disabled``, so ``enabled`` becomes ``adaptive`` and ``disabled`` is
  removed;
- ``role: "system"`` items inside ``messages`` (Claude Code sends them under the
  ``mid-conversation-system`` beta, which Bedrock does not have) are folded into user turns as
  ``<system-reminder>`` text — the form Claude Code itself uses for such context — appended to the
  preceding user turn (or the following one, or a new user turn), so roles still alternate and
  ``tool_result`` blocks stay first in their turn.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aibridge.bridge.providers.bedrock.models import (
    CONTEXT_MANAGEMENT_BETA,
    EFFORT_BETA,
    adaptive_thinking_only,
    bedrock_betas,
    split_betas,
    supports_adaptive_thinking,
)

ANTHROPIC_VERSION = "bedrock-2023-05-31"
# Top-level Messages API fields absent from Bedrock's request schema (400 "extraneous key").
UNSUPPORTED_FIELDS = ("metadata", "service_tier", "container", "inference_geo")

MIN_THINKING_BUDGET = 1024
# Share of max_tokens given to thinking when adaptive thinking must become a fixed budget. No
# effort means "high", Anthropic's default.
EFFORT_BUDGET_RATIO = {"low": 0.25, "medium": 0.5, "high": 0.8, "xhigh": 0.9, "max": 0.95}
DEFAULT_EFFORT = "high"


def thinking_budget(max_tokens: int, effort: str | None) -> int | None:
    """A fixed thinking budget standing in for adaptive thinking, or None when none fits.

    The budget is a share of ``max_tokens`` by effort (low 25 %, medium 50 %, high 80 %, xhigh 90 %,
    max 95 %; unknown or absent effort counts as high), raised to Anthropic's minimum of 1024 and
    kept below ``max_tokens`` (thinking counts against it). With ``max_tokens`` ≤ 1024 no valid
    budget exists.
    """
    if max_tokens <= MIN_THINKING_BUDGET:
        return None
    ratio = EFFORT_BUDGET_RATIO.get(effort or DEFAULT_EFFORT, EFFORT_BUDGET_RATIO[DEFAULT_EFFORT])
    budget = min(int(max_tokens * ratio), max_tokens - 1)
    return max(budget, MIN_THINKING_BUDGET)


def _text_blocks(content: Any) -> list[Any]:
    """A system message's content as user-turn blocks wrapped as a system reminder."""
    def wrap(text: str) -> str:
        return f"<system-reminder>\n{text}\n</system-reminder>"

    if isinstance(content, str):
        return [{"type": "text", "text": wrap(content)}]
    blocks: list[Any] = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
                blocks.append({**block, "text": wrap(block["text"])})
            else:
                blocks.append(block)
    return blocks


def _as_blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return list(content) if isinstance(content, list) else []


def fold_system_messages(messages: list[Any]) -> list[Any]:
    """``messages`` without ``role: "system"`` items: their text joins the neighbouring user turn.

    Appended to the preceding user turn when there is one; otherwise held and appended to the next
    user turn (after its blocks, so ``tool_result`` blocks stay first); otherwise (before an
    assistant turn or at the end) sent as a user turn of its own. Returns the list itself when
    there is nothing to fold.
    """
    if not any(isinstance(m, dict) and m.get("role") == "system" for m in messages):
        return messages
    out: list[Any] = []
    pending: list[Any] = []
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "system":
            blocks = _text_blocks(message.get("content"))
            if out and not pending and isinstance(out[-1], dict) and out[-1].get("role") == "user":
                out[-1] = {**out[-1], "content": _as_blocks(out[-1].get("content")) + blocks}
            else:
                pending.extend(blocks)
            continue
        if pending:
            if isinstance(message, dict) and message.get("role") == "user":
                message = {**message, "content": _as_blocks(message.get("content")) + pending}
            else:
                out.append({"role": "user", "content": pending})
            pending = []
        out.append(message)
    if pending:
        out.append({"role": "user", "content": pending})
    return out


def _convert_thinking(body: dict[str, Any], model: str) -> None:
    thinking = body.get("thinking")
    if not isinstance(thinking, dict):
        return
    kind = thinking.get("type")
    if adaptive_thinking_only(model):
        if kind == "enabled":
            kept = {k: v for k, v in thinking.items() if k != "budget_tokens"}
            body["thinking"] = kept | {"type": "adaptive"}
        elif kind == "disabled":
            del body["thinking"]
        return
    if kind != "adaptive" or supports_adaptive_thinking(model):
        return
    output_config = body.get("output_config")
    effort = output_config.get("effort") if isinstance(output_config, dict) else None
    max_tokens = body.get("max_tokens")
    budget = None
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        budget = thinking_budget(max_tokens, effort if isinstance(effort, str) else None)
    if budget is None:
        del body["thinking"]
    else:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}


def bedrock_body(body: Mapping[str, Any], model: str, beta_headers: Iterable[str] = ()) -> dict[str, Any]:
    """The InvokeModel body for an Anthropic Messages request sent to Bedrock model ``model``.

    ``beta_headers`` are the client's ``anthropic-beta`` header values. ``body`` is not changed.
    """
    out = {k: v for k, v in body.items() if k not in ("model", "stream", *UNSUPPORTED_FIELDS)}
    out["anthropic_version"] = ANTHROPIC_VERSION

    existing = body.get("anthropic_beta")
    listed = [flag for flag in existing if isinstance(flag, str)] if isinstance(existing, list) else []
    flags = split_betas([*beta_headers, *listed])
    betas = bedrock_betas(flags, model)
    if betas:
        out["anthropic_beta"] = betas
    else:
        out.pop("anthropic_beta", None)

    if CONTEXT_MANAGEMENT_BETA not in betas:
        out.pop("context_management", None)

    _convert_thinking(out, model)   # reads output_config.effort, so before it may be removed

    output_config = out.get("output_config")
    if isinstance(output_config, dict) and "effort" in output_config \
            and not (supports_adaptive_thinking(model) or EFFORT_BETA in betas):
        output_config = {k: v for k, v in output_config.items() if k != "effort"}
        if output_config:
            out["output_config"] = output_config
        else:
            del out["output_config"]

    messages = out.get("messages")
    if isinstance(messages, list):
        out["messages"] = fold_system_messages(messages)
    return out


