"""The task's log file and the step watcher: how a worker follows stpipe's log records.

:class:`_TaskLogging` sends the stpipe loggers of one task into its log file;
:class:`_StepWatcher` reads the records (``Step %s running`` / ``Step %s done`` /
``Step skipped.`` / ``Step %s parameters are``) for the live progress, the step
times, statuses and resolved parameters of the manifest (:mod:`.task`).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

_STPIPE_LOGGERS = ("jwst", "stcal", "stdatamodels", "stpipe", "tweakwcs", "py.warnings")
_LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


class _StepWatcher(logging.Handler):
    """Follows stpipe's step records: the current step, and each step's time and status.

    stpipe logs ``Step %s running with args %s.`` as a step starts, then
    ``Step %s done`` or ``Step skipped.``; the top-level step also logs
    ``Step %s parameters are:%s`` (its resolved parameters as YAML).  The records
    are matched by their format string, never by the formatted text.
    """

    def __init__(self, task_id: str, progress: Callable | None):
        super().__init__(logging.INFO)
        self.task_id = task_id
        self.progress = progress
        self.stack: list[tuple[str, float]] = []
        self.times: dict[str, float] = {}
        #: step -> "done", "skipped" (or "failed", set by the task when the pipeline raised)
        self.status: dict[str, str] = {}
        self.parameters_text: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("stpipe"):
            return
        msg = record.msg if isinstance(record.msg, str) else ""
        args = record.args if isinstance(record.args, tuple) else ()
        if msg.startswith("Step %s running") and args:
            self.stack.append((str(args[0]), time.monotonic()))
            self._report()
        elif (msg == "Step %s done" and args) or msg == "Step skipped.":
            if self.stack:
                name, started = self.stack.pop()
                self.times[name] = round(self.times.get(name, 0.0) + time.monotonic() - started, 3)
                self.status[name] = "skipped" if msg == "Step skipped." else "done"
            self._report()
        elif msg.startswith("Step %s parameters are") and len(args) > 1 and not self.parameters_text:
            self.parameters_text = str(args[1])

    @property
    def current(self) -> str | None:
        return self.stack[-1][0] if self.stack else None

    def _report(self) -> None:
        if self.progress is not None and self.current:
            try:
                self.progress(self.task_id, self.current)
            except Exception:  # noqa: BLE001 - progress is best effort
                pass


def _parse_logged_parameters(text: str | None) -> dict | None:
    """stpipe logs the resolved parameters as YAML with Python literals; read them back."""
    if not text:
        return None
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return {"_text": text}

    def fix(value):
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        return None if value == "None" else value

    return fix(data) if isinstance(data, dict) else {"_text": text}


class _TaskLogging:
    """Route the pipeline's own log lines (and stdout/stderr) into the task's log file."""

    def __init__(self, log_file: Path, watcher: _StepWatcher):
        self.log_file = log_file
        self.watcher = watcher
        self.handler: logging.StreamHandler | None = None
        self.saved_fds: list[tuple[int, int]] = []
        self.saved_levels: dict[str, int] = {}

    def __enter__(self):
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        # A re-run replaces the old log: removed, then created anew, never through
        # a symlink (one planted in logs/ would have its target overwritten).
        self.log_file.unlink(missing_ok=True)
        fd = os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL
                     | os.O_NOFOLLOW, 0o644)
        self.handler = logging.StreamHandler(os.fdopen(os.dup(fd), "a", encoding="utf-8"))
        self.handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        self.handler.setLevel(logging.INFO)
        for name in _STPIPE_LOGGERS:
            logger = logging.getLogger(name)
            self.saved_levels[name] = logger.level
            if logger.level == logging.NOTSET or logger.level > logging.INFO:
                logger.setLevel(logging.INFO)
            logger.addHandler(self.handler)
            logger.addHandler(self.watcher)
        logging.captureWarnings(True)
        # Anything written straight to stdout/stderr (the CRDS console handler,
        # C extensions) also lands in this task's log, never on the terminal.
        sys.stdout.flush()
        sys.stderr.flush()
        for std in (1, 2):
            self.saved_fds.append((std, os.dup(std)))
            os.dup2(fd, std)
        os.close(fd)
        return self

    def __exit__(self, *exc):
        sys.stdout.flush()
        sys.stderr.flush()
        for std, saved in self.saved_fds:
            os.dup2(saved, std)
            os.close(saved)
        self.saved_fds.clear()
        logging.captureWarnings(False)
        for name, level in self.saved_levels.items():
            logger = logging.getLogger(name)
            logger.removeHandler(self.handler)
            logger.removeHandler(self.watcher)
            logger.setLevel(level)
        if self.handler is not None:
            self.handler.close()
            self.handler.stream.close()
