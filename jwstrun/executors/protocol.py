"""What every executor offers the runner, and what it reports back.

The interface is deliberately small so that the local pool
(:class:`~jwstrun.executors.LocalExecutor`) and a Dask cluster
(:class:`~jwstrun.executors.DaskExecutor`) offer the same: ``submit(task)``,
``as_completed()`` yielding results, ``shutdown()``.  A task is any picklable
object with a ``task_id``; the task function is called as
``task_function(task, progress)`` where ``progress(task_id, step_name)``
reports the pipeline step the task is in.  When a task's worker dies, or the
task function itself raises, the executor asks ``lost_result(task, reason)``
for the task's result, so every submitted task yields exactly one result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Executor", "WorkerEvent", "TaskFunction", "LostResult"]

#: ``task_function(task, progress) -> result``, a module-level function (picklable by reference)
TaskFunction = Callable[[Any, Callable[[str, str], None]], Any]
#: ``lost_result(task, reason) -> result``: the result of a task whose worker died
LostResult = Callable[[Any, str], Any]


@dataclass
class WorkerEvent:
    """Something a worker reported: ``kind`` is 'ready', 'start', 'step', 'retire' or 'lost'."""

    kind: str
    worker: int
    pid: int | None = None
    task_id: str | None = None
    step: str | None = None
    time: float = field(default_factory=time.time)


@runtime_checkable
class Executor(Protocol):
    """Runs tasks and yields one result per submitted task."""

    #: number of tasks run at once
    jobs: int
    #: called in the parent with each :class:`WorkerEvent` (or None)
    on_event: Callable[[WorkerEvent], None] | None

    def start(self) -> "Executor":
        """Start the workers (or connect to them); returns the executor."""

    def submit(self, task) -> None:
        """Queue one task (anything picklable with a ``task_id``)."""

    def as_completed(self) -> Iterator:
        """Yield one result per submitted task, in completion order."""

    def shutdown(self, cancel: bool = False) -> None:
        """Stop; ``cancel=True`` abandons running and queued tasks (used on Ctrl-C)."""


@dataclass
class _UnhandledError:
    """Returned when the task function itself raised (it should catch its own errors)."""

    task_id: str | None
    error: str
