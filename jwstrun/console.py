"""The one rich Console, the logging handler and progress factory (CLI side only).

Library modules log with ``logging.getLogger(__name__)`` and report progress
through callbacks; only the CLI layer imports this module.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["get_console", "get_err_console", "setup_logging", "is_terminal"]

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
