"""The one rich Console, the one way to print results, the logging handler (CLI side only).

Library modules log with ``logging.getLogger(__name__)`` and report progress
through callbacks; only the CLI layer imports this module.

Every command prints its tables and lists through :func:`out`: rich renders them on
a terminal; when stdout is not a terminal (a pipe, a file, a batch job's log) they
become plain lines instead -- one line per row, columns aligned with spaces, no box
drawing, no colours, nothing wrapped, folded or shortened -- so a file name is never
cut in two and ``grep`` finds each row whole.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["get_console", "get_err_console", "setup_logging", "is_terminal", "out",
           "stdout_is_terminal", "plain_lines"]

_console = None
_err_console = None


def get_console():
    """The shared stdout Console (created on first use)."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(highlight=False)
    return _console


def get_err_console():
    """The shared stderr Console for logs and progress."""
    global _err_console
    if _err_console is None:
        from rich.console import Console

        _err_console = Console(stderr=True, highlight=False)
    return _err_console


def is_terminal() -> bool:
    """True when stderr is an interactive terminal (live progress makes sense)."""
    return sys.stderr.isatty()


def stdout_is_terminal() -> bool:
    """True when stdout (the one of this moment: Click's test runner swaps it) is a TTY."""
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty())


def out(renderable="", **print_options) -> None:
    """Print a result on stdout: a rich markup string, ``Text``, ``Padding`` or ``Table``.

    On a terminal through the shared rich Console (``print_options`` go to its
    ``print``); otherwise as :func:`plain_lines`, written as they are.
    """
    if stdout_is_terminal():
        get_console().print(renderable, **print_options)
        return
    import click

    for line in plain_lines(renderable):
        click.echo(line)


def plain_lines(renderable) -> list[str]:
    """``renderable`` as plain text lines: markup and styles dropped, a table one line
    per row (and one for its title and one for its header) with the columns aligned
    by padding, the lines of a multi-line cell joined with ", " into its row's line."""
    from rich.padding import Padding
    from rich.table import Table

    if isinstance(renderable, Table):
        return _table_lines(renderable)
    if isinstance(renderable, Padding):
        return [" " * renderable.left + line for line in plain_lines(renderable.renderable)]
    return _plain_text(renderable).split("\n")


def _plain_text(renderable) -> str:
    from rich.text import Text

    if renderable is None:
        return ""
    if isinstance(renderable, Text):
        return renderable.plain
    if isinstance(renderable, str):
        return Text.from_markup(renderable).plain
    raise TypeError(f"cannot print a {type(renderable).__name__} as plain text")


def _cell_text(cell) -> str:
    text = _plain_text(cell)
    if "\n" not in text:
        return text.rstrip()  # a leading indent stays (validate's findings, refs' reftypes)
    return ", ".join(line.strip() for line in text.splitlines() if line.strip())


def _table_lines(table) -> list[str]:
    columns = table.columns
    rows = [list(row) for row in zip(*([_cell_text(c) for c in col.cells] for col in columns))]
    header = [_cell_text(col.header) for col in columns]
    if table.show_header and any(h.strip() for h in header):
        rows.insert(0, header)
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(len(columns))]
    lines = [_plain_text(table.title)] if table.title else []
    for row in rows:
        cells = [text.rjust(width) if column.justify == "right" else text.ljust(width)
                 for text, width, column in zip(row, widths, columns)]
        lines.append("  ".join(cells).rstrip())
    return lines


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record, not the stream of
    the first command: Click's test runner and notebooks swap ``sys.stderr`` between
    commands run in one process (like logging's own last-resort handler)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(verbosity: int = 0) -> None:
    """Route jwstrun's library logs to stderr: -q warnings only, default info, -v debug."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    logger = logging.getLogger("jwstrun")
    logger.setLevel(level)
    if not any(getattr(h, "_jwstrun", False) for h in logger.handlers):
        if is_terminal():
            from rich.logging import RichHandler

            handler: logging.Handler = RichHandler(
                console=get_err_console(), show_path=False, show_time=False
            )
        else:
            handler = _CurrentStderrHandler()
            handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        handler._jwstrun = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False
