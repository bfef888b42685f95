"""The fenced code blocks of the README and the workflow pages, with their run markers.

A shell block in those pages is preceded by one HTML comment (invisible on the
rendered page) that says whether tests/test_docs_run.py runs it:

* ``<!-- run -->``: in the page's prepared directory, where ``sim/`` is a small
  simulated NIRCam program (``jwstrun simulate sim/ --dithers 2 --subarray SUB320``),
  ``data/`` is the same files, ``out/`` holds their ``image2`` and ``image3``
  products, ``crds.env`` is ``sim/crds.env`` (as ``refs prefetch --write-env``
  writes it) and those CRDS variables are exported, as on a machine where CRDS is
  set up;
* ``<!-- run: fresh -->``: in an empty directory of its own with no CRDS variable
  set: the block makes everything it needs itself (the ``run`` blocks after it
  continue in that directory);
* ``<!-- not run: REASON -->``: never run (it needs the CRDS server, a cluster,
  a viewer, ...); the reason is said on the page's source.

An unmarked shell block fails the test: whoever adds a command to the docs
decides whether it is run. The README's ``<!-- test-command -->`` and
``<!-- demo-command -->`` anchors sit between the marker and the fence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs" / "workflows").glob("*.md"))]
SHELL_LANGUAGES = ("bash", "sh", "shell", "console", "")
_MARKER = re.compile(r"<!--\s*(run(?::\s*fresh)?|not run:\s*(?P<reason>.+?))\s*-->")
# The README's anchors for .ci/run, which takes the second line after
# ``<!-- test-command -->`` verbatim: they sit between a marker and its fence.
_ANCHOR = re.compile(r"<!--\s*(demo|test)-command\s*-->")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int          # 1-based line of the opening fence
    language: str
    text: str          # the block's body
    marker: str | None  # "run", "run: fresh", "not run" or None
    reason: str = ""

    @property
    def shell(self) -> bool:
        return self.language in SHELL_LANGUAGES

    @property
    def id(self) -> str:
        return f"{self.page.name}:{self.line}"


def code_blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page`` with the marker comment right above it (if any)."""
    blocks: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    language, start, body, marker, reason = None, 0, [], None, ""
    last_text = ""  # the last non-blank line outside a block
    for number, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if stripped.startswith("```"):
            if language is None:
                language, start, body = stripped[3:].strip(), number, []
                found = _MARKER.fullmatch(last_text)
                reason = (found.group("reason") or "").strip() if found else ""
                if found is None:
                    marker = None
                elif reason:
                    marker = "not run"
                else:
                    marker = "run: fresh" if "fresh" in found.group(1) else "run"
            else:
                blocks.append(Block(page, start, language, "\n".join(body) + "\n",
                                    marker, reason or ""))
                language = None
            last_text = ""
            continue
        if language is not None:
            body.append(raw)
        elif stripped and not _ANCHOR.fullmatch(stripped):
            last_text = stripped
    return blocks


def shell_blocks() -> list[Block]:
    return [b for page in PAGES for b in code_blocks(page) if b.shell]
