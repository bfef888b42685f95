"""Every figure in docs/benchmarks.md says which script printed it, with what command, when.

Each ``## `` section must hold a ``Command: `python scripts/NAME.py ...` `` line naming a
script that exists in scripts/, and a date (YYYY-MM-DD) in that paragraph: the format
``scripts/_benchlib.record`` writes ("Command: `...` (2026-11-29 05:14 UTC, x86_64,
2 CPUs, load average 1.0).").
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
COMMAND = re.compile(r"^Command: `python scripts/(?P<script>[\w.-]+\.py)\b[^`]*`", re.M)
DATE = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")


def sections() -> list[tuple[str, str]]:
    """(title, body) of each ``## `` section, outside code fences."""
    found: list[tuple[str, list[str]]] = []
    fenced = False
    for line in DOC.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            found.append((line[3:].strip(), []))
        elif found:
            found[-1][1].append(line)
    return [(title, "\n".join(body)) for title, body in found]


def command_paragraph(body: str) -> str:
    """The paragraph that starts with the section's first ``Command:`` line."""
    match = COMMAND.search(body)
    return body[match.start():].split("\n\n", 1)[0] if match else ""


def test_sections_found():
    assert len(sections()) >= 5


@pytest.mark.parametrize("title, body", sections(), ids=[t for t, _ in sections()])
def test_section_has_command_script_and_date(title, body):
    match = COMMAND.search(body)
    assert match, f"section {title!r} has no 'Command: `python scripts/...`' line"
    script = ROOT / "scripts" / match["script"]
    assert script.is_file(), f"section {title!r} names {script.name}, not in scripts/"
    assert DATE.search(command_paragraph(body)), (
        f"section {title!r}: no date (YYYY-MM-DD) with its command"
    )


def test_checks_catch_a_section_without_command_or_date():
    """The checks above refuse what the audit found: a command without a date, no command."""
    undated = "\nCommand: `python scripts/bench_asn.py --n 1000` (2 cores, shared).\n\nx 2026-01-01\n"
    assert COMMAND.search(undated) and not DATE.search(command_paragraph(undated))
    assert not COMMAND.search("\nA quieter run with `-n 100` gave 14.2 s (51x).\n")
    recorded = ("\nCommand: `python scripts/bench_refs.py --record` (2026-11-29 05:14 UTC, "
                "x86_64, 2 CPUs, load average 4.2).\n")
    assert COMMAND.search(recorded)["script"] == "bench_refs.py"
    assert DATE.search(command_paragraph(recorded))
