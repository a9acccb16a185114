"""The docs name only flags that exist (a renamed flag must not linger in a how-to)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from aibridge.cli.main import cli
from aibridge.config import OPTIONS

ROOT = Path(__file__).resolve().parents[2]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


def known_flags() -> set[str]:
    found = {opt.flag for opt in OPTIONS} | {"--help"}
    found |= {"--ai-gateway-" + f.removeprefix("--aibridge-") for f in found if f.startswith("--aibridge-")}
    pending: list[click.Command] = [cli]
    while pending:
        command = pending.pop()
        for param in command.params:
            found.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
        if isinstance(command, click.Group):
            pending.extend(command.commands.values())
    return found


def test_every_flag_the_docs_name_exists() -> None:
    known = known_flags()
    unknown: dict[str, str] = {}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for code in re.findall(r"`([^`]+)`", path.read_text()):      # flags are written as code
            if not code.lstrip().startswith(("aibridge ", "--")):
                continue
            for found in FLAG.finditer(code):
                flag = found.group()
                if flag not in known and not code.startswith("-*", found.end()):    # `--aibridge-*`: a family
                    unknown.setdefault(flag, path.name)
    assert unknown == {}
