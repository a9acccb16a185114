"""Finding secrets in text and replacing them with ``[REDACTED:<kind>]``.

A pattern set of our own, in the spirit of gitleaks' and detect-secrets' rules: well-known token
formats (their fixed prefixes make false positives rare), PEM private keys, passwords in URLs,
bearer tokens, and values assigned to names that say "password", "secret", "token" or "key".
detect-secrets itself was measured first: about 70 ms per 2 KB prompt with its regex plugins
alone (1 s with its entropy plugins), far too slow for a request's path; this set costs
microseconds (``python -m bench.micro``).

Where only part of a match is secret (``postgres://user:PASSWORD@host``, ``Bearer TOKEN``,
``password = "VALUE"``) only that part (the group named ``v``) is replaced, so the text keeps
its meaning. Replacement is deterministic: the same input always gives the same output, which
keeps upstream prompt caching working when requests are redacted.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import NamedTuple


class Rule(NamedTuple):
    pattern: str
    # The rule runs only when one of these occurs in the text: a few substring tests instead of
    # a regex scan per rule.
    anchors: tuple[str, ...]
    # Case-insensitive: pattern and anchors are written in lower case and run on the lower-cased
    # text (much faster than re.IGNORECASE; spans agree since lower() kept the length).
    folded: bool = False


# kind → rule. Where two rules match at one place the first listed wins (Anthropic keys also
# start "sk-"). A group named ``v`` marks the only part to replace.
RULES: dict[str, Rule] = {
    "private_key": Rule(r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"
                        r"[\s\S]*?(?:-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)", ("PRIVATE KEY",)),
    "aws_access_key_id": Rule(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b", ("AKIA", "ASIA", "ABIA", "ACCA")),
    "aws_secret_access_key": Rule(r"(?:aws[\w.-]{0,24}secret[\w.-]{0,24}|secret_?access_?key)[\"']?\s*[:=]\s*"
                                  r"[\"']?(?P<v>[a-z0-9/+]{40})(?![a-z0-9/+=])", ("secret",), folded=True),
    "anthropic_api_key": Rule(r"\bsk-ant-[A-Za-z0-9_-]{20,}", ("sk-ant-",)),
    "openai_api_key": Rule(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}", ("sk-",)),
    "github_token": Rule(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
                         ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")),
    "gitlab_token": Rule(r"\bglpat-[A-Za-z0-9_-]{20,}", ("glpat-",)),
    "slack_token": Rule(r"\bxox[abposr]-[A-Za-z0-9-]{10,}", ("xox",)),
    "slack_webhook": Rule(r"https://hooks\.slack\.com/services/[A-Za-z0-9_/-]{20,}", ("hooks.slack.com",)),
    "stripe_key": Rule(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}", ("_live_", "_test_")),
    "google_api_key": Rule(r"\bAIza[0-9A-Za-z_-]{35}", ("AIza",)),
    "huggingface_token": Rule(r"\bhf_[A-Za-z0-9]{34,}", ("hf_",)),
    "npm_token": Rule(r"\bnpm_[A-Za-z0-9]{36}\b", ("npm_",)),
    "jwt": Rule(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", ("eyJ",)),
    # scheme://user:PASSWORD@host: only the password goes.
    "url_password": Rule(r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,20}://[^\s:/@\"'<>]{1,256}:(?P<v>[^\s@/\"'<>]{1,256})@",
                         ("://",)),
    "bearer_token": Rule(r"\bbearer\s+(?P<v>[a-z0-9._~+/-]{20,}=*)", ("bearer",), folded=True),
    # password = "VALUE", "apiKey": "VALUE": a quoted literal only, so that code such as
    # ``api_key = os.environ["X"]`` is left alone.
    "password": Rule(r"(?:pass(?:word|wd)?|secret|api_?key|access_?key|auth_?token|access_?token|token)"
                     r"[\"']?\s*[:=]\s*(?P<q>[\"'])(?P<v>[^\"'\s]{8,256})(?P=q)",
                     ("pass", "secret", "key", "token"), folded=True),
    # PASSWORD=value in .env files and shell exports (a capitalised name at the start of a line).
    "env_secret": Rule(r"(?m)^[ \t]*(?:export[ \t]+)?[A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|APIKEY)"
                       r"[A-Z0-9_]*=(?P<v>(?![$\"'])[^\s\"']{8,256})",
                       ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY", "APIKEY")),
}


class _Compiled(NamedTuple):
    kind: str
    regex: re.Pattern[str]
    ignorecase: re.Pattern[str]       # for a text whose lower-cased form changed length
    anchors: tuple[str, ...]
    folded: bool
    partial: bool


class Redactor:
    """Replaces every secret in a text; counts what it replaced by kind."""

    def __init__(self, rules: dict[str, Rule] | None = None) -> None:
        rules = rules or RULES
        self.kinds = tuple(rules)
        self._rules = tuple(_Compiled(kind, re.compile(rule.pattern), re.compile(rule.pattern, re.IGNORECASE),
                                      rule.anchors, rule.folded, "(?P<v>" in rule.pattern)
                            for kind, rule in rules.items())
        # Every anchor at once, first: most texts hold none, and then no rule needs a look.
        self._anchors = tuple({a for r in self._rules if not r.folded for a in r.anchors})
        self._folded_anchors = tuple({a for r in self._rules if r.folded for a in r.anchors})

    def _spans(self, text: str) -> list[tuple[int, int, int, str]]:
        """(start, end, priority, kind) of every match of every rule whose anchor occurs."""
        folded: str | None = None
        if not any(map(text.__contains__, self._anchors)):
            folded = text.lower()
            if not any(map(folded.__contains__, self._folded_anchors)):
                return []
        spans = []
        for priority, rule in enumerate(self._rules):
            haystack, regex = text, rule.regex
            if rule.folded:
                folded = text.lower() if folded is None else folded
                haystack = folded
                regex = rule.regex if len(folded) == len(text) else rule.ignorecase
            if not any(map(haystack.__contains__, rule.anchors)):      # no generator frame per rule
                continue
            for match in regex.finditer(haystack if regex is rule.regex else text):
                start, end = match.span("v") if rule.partial else match.span()
                spans.append((start, end, priority, rule.kind))
        return spans

    def redact(self, text: str, counts: Counter[str] | None = None) -> str:
        """``text`` with each secret replaced by ``[REDACTED:<kind>]``; the same object when none."""
        if not text:
            return text
        spans = self._spans(text)
        if not spans:
            return text
        spans.sort()
        pieces: list[str] = []
        last = 0
        for start, end, _, kind in spans:
            if start < last:        # inside (or overlapping) a secret already replaced
                continue
            pieces += (text[last:start], f"[REDACTED:{kind}]")
            last = end
            if counts is not None:
                counts[kind] += 1
        pieces.append(text[last:])
        return "".join(pieces)
