"""Hints ("did you mean ...?") for profile and ``--set`` error messages."""

from __future__ import annotations

import difflib
from typing import Iterable, Mapping

from ..stages import STAGES


def stage_aliases() -> dict[str, str]:
    """Other names people type for a profile section (``calwebb_image2``, ``stage3``,
    ...) -> the stage name, from the stage table."""
    return {alias: stage.name for stage in STAGES.values() for alias in stage.aliases}


def _suggest(
    word: str,
    choices: Iterable[str],
    aliases: Mapping[str, str] | None = None,
    *,
    show_valid: bool = True,
) -> str:
    """``; did you mean 'x'?`` plus the valid names, for error messages."""
    choices = list(choices)
    if aliases and word.lower() in aliases:
        return f"; did you mean {aliases[word.lower()]!r}?"
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    valid = ", ".join(choices) if show_valid and len(choices) <= 12 else ""
    if close:
        hint = "; did you mean " + " or ".join(repr(c) for c in close) + "?"
        return hint + (f" Valid: {valid}." if valid else "")
    return f"; valid: {valid}." if valid else ""
