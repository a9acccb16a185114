"""What a Bedrock model id says about the Claude model behind it, and which ``anthropic-beta``
flags Bedrock accepts for it.

A model id may name no version at all: an application inference profile ARN
(``arn:aws:bedrock:…:application-inference-profile/…``) or a custom model id. Only what holds for
every Claude model is assumed then: no adaptive thinking, and only the beta flags Bedrock accepts
whatever the model (``ANY_MODEL_BETAS``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a Bedrock model id says about the Claude model behind it."""

    family: str | None                 # "opus" | "sonnet" | "haiku" | "mythos" | "fable" | …
    version: tuple[int, int] | None    # (4, 5) for claude-sonnet-4-5-…; None when unknown


# claude-opus-4-5-20251101-v1:0, claude-sonnet-4-6, claude-opus-4-20250514-v1:0 (minor is at most
# two digits, so a date is never read as one), claude-opus-5
_MODEL_NEW = re.compile(r"claude-([a-z]+)-(\d{1,2})(?:-(\d{1,2}))?(?!\d)")
# claude-3-7-sonnet-20250219-v1:0, claude-3-haiku-20240307-v1:0
_MODEL_LEGACY = re.compile(r"claude-(\d{1,2})(?:-(\d{1,2}))?-([a-z]+)")
_MODEL_NAMED = re.compile(r"claude-([a-z]+)")


def parse_model(model: str) -> ModelInfo:
    lowered = model.lower()
    match = _MODEL_NEW.search(lowered)
    if match:
        return ModelInfo(match.group(1), (int(match.group(2)), int(match.group(3) or 0)))
    match = _MODEL_LEGACY.search(lowered)
    if match:
        return ModelInfo(match.group(3), (int(match.group(1)), int(match.group(2) or 0)))
    match = _MODEL_NAMED.search(lowered)
    return ModelInfo(match.group(1) if match else None, None)


_ADAPTIVE_ONLY_FAMILIES = frozenset({"mythos", "fable"})


def supports_adaptive_thinking(model: str) -> bool:
    """Claude 4.6 and later, Mythos and Fable (AWS: "Adaptive thinking", supported models)."""
    info = parse_model(model)
    if info.family in _ADAPTIVE_ONLY_FAMILIES:
        return True
    return info.version is not None and info.version >= (4, 6)


def adaptive_thinking_only(model: str) -> bool:
    """Models that answer 400 to ``thinking.type`` "enabled" (and "disabled"): Opus 4.7+, Mythos, Fable."""
    info = parse_model(model)
    if info.family in _ADAPTIVE_ONLY_FAMILIES:
        return True
    return info.family == "opus" and info.version is not None and info.version >= (4, 7)


# ---------------------------------------------------------------- betas

CONTEXT_MANAGEMENT_BETA = "context-management-2025-06-27"
EFFORT_BETA = "effort-2025-11-24"


def _any_model(info: ModelInfo) -> bool:
    return True


def _since(version: tuple[int, int], *families: str) -> Callable[[ModelInfo], bool]:
    def check(info: ModelInfo) -> bool:
        if info.version is None or info.version < version:
            return False
        return not families or info.family in families
    return check


def _context_1m(info: ModelInfo) -> bool:
    # 1M context: Sonnet 4 and later, Opus 4.6 and later.
    return _since((4, 0), "sonnet")(info) or _since((4, 6), "opus")(info)


# The anthropic-beta flags Bedrock accepts (anything else is a 400 "invalid beta flag"), each with
# the models it applies to. Sources: AWS "Anthropic Claude Messages API" request parameters, and
# the lists kept by coder/aibridge and LiteLLM (bedrock/beta_headers_config.py). Flags Claude Code
# also sends — claude-code-*, prompt-caching-scope-*, mid-conversation-system-*,
# thinking-token-count-*, fine-grained-tool-streaming-*, … — are Anthropic-only and dropped.
BEDROCK_BETAS: dict[str, Callable[[ModelInfo], bool]] = {
    "computer-use-2024-10-22": _any_model,
    "computer-use-2025-01-24": _any_model,
    "computer-use-2025-11-24": _any_model,
    "token-efficient-tools-2025-02-19": _any_model,
    "output-128k-2025-02-19": _any_model,
    "interleaved-thinking-2025-05-14": _since((4, 0)),
    "dev-full-thinking-2025-05-14": _since((4, 0)),
    "context-1m-2025-08-07": _context_1m,
    CONTEXT_MANAGEMENT_BETA: _since((4, 5)),
    EFFORT_BETA: _since((4, 5), "opus"),
    "tool-search-tool-2025-10-19": _since((4, 5), "opus", "sonnet"),
    "tool-examples-2025-10-29": _since((4, 5), "opus", "sonnet"),
}
# Flags Bedrock accepts with every Claude model (it ignores them where they do not apply): kept
# when the model id names no version. The others answer 400 on models without the feature, so
# they need a model we can place.
ANY_MODEL_BETAS = frozenset({
    "computer-use-2024-10-22", "computer-use-2025-01-24", "computer-use-2025-11-24",
    "token-efficient-tools-2025-02-19", "output-128k-2025-02-19",
    "interleaved-thinking-2025-05-14", "dev-full-thinking-2025-05-14",
})


def split_betas(values: Iterable[str]) -> list[str]:
    """Flags from one or more ``anthropic-beta`` header values (comma-separated), in order, once."""
    flags: list[str] = []
    for value in values:
        for flag in value.split(","):
            flag = flag.strip()
            if flag and flag not in flags:
                flags.append(flag)
    return flags


def bedrock_betas(flags: Iterable[str], model: str) -> list[str]:
    """The flags Bedrock accepts for ``model``, in order."""
    info = parse_model(model)
    if info.version is None:
        return [flag for flag in flags if flag in ANY_MODEL_BETAS]
    return [flag for flag in flags if (rule := BEDROCK_BETAS.get(flag)) is not None and rule(info)]
