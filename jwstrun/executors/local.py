"""The local executor: a pool of spawned worker processes.

Why not ``concurrent.futures.ProcessPoolExecutor``: when one worker dies
(killed by the OOM killer, a segfault in a C extension) that pool marks every
pending task as failed.  Here each worker gets its task over its own pipe, so
the parent always knows which task a dead worker held: that task alone fails
(with the exit code as reason), a fresh worker takes its place and the others
carry on.

Workers are started with the ``spawn`` method (never ``fork``: a forked copy of
a parent that has touched jwst keeps growing, jwst issue 8404), import the
modules named in ``warm`` once at start-up -- while the parent is still busy,
e.g. prefetching references -- and then handle many tasks, so the cost of
``import jwst.pipeline`` (docs/benchmarks.md, "import") is paid once per
worker, not once per exposure.  A worker retires after ``max_tasks_per_child``
tasks and is replaced, which bounds memory growth.  What runs inside a worker
is in :mod:`jwstrun.executors._worker`; the interface is
:class:`jwstrun.executors.protocol.Executor`.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.connection import wait

from ._worker import _main_module_importable, _worker_main
from .protocol import WorkerEvent, _UnhandledError

__all__ = ["LocalExecutor"]

log = logging.getLogger(__name__)


class _Worker:
    def __init__(self, wid, process, conn):
        self.id = wid
        self.process = process
        self.conn = conn
        self.ready = False
        self.task = None
        self.retiring = False


class LocalExecutor:
    """A pool of spawned worker processes.

    Parameters
    ----------
    jobs : int
        Number of worker processes.
    task_function : callable
        Module-level function ``f(task, progress) -> result`` (picklable by reference).
    lost_result : callable
        ``f(task, reason) -> result`` builds the result of a task whose worker died.
    env : dict, optional
        Environment variables set in each worker before anything is imported.
    warm : sequence of str or callable
        Modules each worker imports at start-up, or picklable functions it calls.
    max_tasks_per_child : int
        Tasks a worker handles before it is replaced (0 = never).
    on_event : callable, optional
        Called in the parent with each :class:`WorkerEvent`.
    daemon : bool
        Daemonic workers (the default) are stopped with the parent; a worker whose
        task starts processes of its own (jump/ramp_fit's ``maximum_cores``) must not be.
    """

    def __init__(
        self,
        jobs: int,
        task_function: Callable,
        lost_result: Callable,
        *,
        env: dict | None = None,
        warm: tuple = (),
        max_tasks_per_child: int = 25,
        on_event: Callable[[WorkerEvent], None] | None = None,
        daemon: bool = True,
    ):
        if jobs < 1:
            raise ValueError("jobs must be at least 1")
        self.jobs = jobs
        self.task_function = task_function
        self.lost_result = lost_result
        self.env = dict(env or {})
        self.warm = tuple(warm)
        self.max_tasks_per_child = max_tasks_per_child
        self.on_event = on_event
        self.daemon = daemon
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: dict[int, _Worker] = {}
        self._next_id = 0
        self._pending: deque = deque()
        self._outstanding = 0
        self._closed = False
        self._startup_failures = 0

    # -- workers ---------------------------------------------------------
    def start(self) -> "LocalExecutor":
        """Start the workers now (they import ``warm`` while the caller goes on)."""
        while len(self._workers) < self.jobs:
            self._spawn()
        return self

    def resize(self, jobs: int, env: dict | None = None) -> "LocalExecutor":
        """Set the pool's size (and the environment of workers started from now on).

        For a pool started early, while the caller still plans: workers beyond
        ``jobs`` that hold no task are stopped, missing ones are started.
        """
        if jobs < 1:
            raise ValueError("jobs must be at least 1")
        self.jobs = jobs
        if env is not None:
            self.env = dict(env)
        idle = [w for w in self._workers.values() if w.task is None]
        for worker in idle[: max(0, len(self._workers) - jobs)]:
            worker.process.terminate()
            self._wait_for_exit(worker, 5)
            del self._workers[worker.id]
        return self.start()

    def _spawn(self) -> _Worker:
        wid = self._next_id
        self._next_id += 1
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_worker_main,
            args=(
                child_conn, wid, self.env, self.warm, self.task_function,
                self.max_tasks_per_child,
            ),
            name=f"jwstrun-worker-{wid}",
            daemon=self.daemon,
        )
        with _main_module_importable(), _sigint_blocked():
            process.start()
        child_conn.close()
        worker = _Worker(wid, process, parent_conn)
        self._workers[wid] = worker
        return worker

    def _emit(self, event: WorkerEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # noqa: BLE001 - a display problem must not stop a run
                log.debug("progress callback failed", exc_info=True)

    # -- public interface -----------------------------------------------
    def submit(self, task) -> None:
        """Queue one task (anything picklable with a ``task_id``)."""
        if self._closed:
            raise RuntimeError("executor is shut down")
        self._pending.append(task)
        self._outstanding += 1

    def as_completed(self) -> Iterator:
        """Yield one result per submitted task, in completion order."""
        self.start()
        while self._outstanding:
            self._dispatch()
            handles = []
            for worker in self._workers.values():
                handles.append(worker.conn)
                handles.append(worker.process.sentinel)
            for handle in wait(handles, timeout=1.0):
                worker = self._owner(handle)
                if worker is None:
                    continue
                yield from self._drain(worker)
            yield from self._reap()

    def shutdown(self, cancel: bool = False) -> None:
        """Stop the workers; ``cancel=True`` kills running tasks (used on Ctrl-C)."""
        self._closed = True
        self._pending.clear()
        for worker in list(self._workers.values()):
            if cancel and worker.process.is_alive():
                worker.process.terminate()
            else:
                try:
                    worker.conn.send(None)
                except (OSError, ValueError):
                    pass
        deadline = time.monotonic() + 10
        for worker in list(self._workers.values()):
            self._wait_for_exit(worker, max(0.1, deadline - time.monotonic()))
        self._workers.clear()

    @staticmethod
    def _wait_for_exit(worker: _Worker, timeout: float) -> None:
        """Join a worker told to stop; kill it if it is still there after ``timeout``."""
        worker.process.join(timeout)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(5)
        worker.conn.close()

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.shutdown(cancel=exc_type is not None)

    # -- internals -------------------------------------------------------
    def _owner(self, handle) -> _Worker | None:
        for worker in self._workers.values():
            if handle is worker.conn or handle == worker.process.sentinel:
                return worker
        return None

    def _dispatch(self) -> None:
        # Keep the pool at full strength while there is work; replacement
        # workers for retired or lost ones are started here.
        busy_or_ready = sum(1 for w in self._workers.values() if not w.retiring)
        while self._pending and busy_or_ready < self.jobs:
            self._spawn()
            busy_or_ready += 1
        for worker in self._workers.values():
            if not self._pending:
                break
            if worker.ready and worker.task is None and not worker.retiring:
                task = self._pending.popleft()
                try:
                    worker.conn.send(task)
                except (OSError, ValueError):
                    self._pending.appendleft(task)  # worker died; _reap handles it
                    continue
                worker.task = task
                self._emit(WorkerEvent("start", worker.id, worker.process.pid, task.task_id))

    def _drain(self, worker: _Worker) -> Iterator:
        while True:
            try:
                if not worker.conn.poll():
                    return
                message = worker.conn.recv()
            except (EOFError, OSError):
                return
            kind = message[0]
            if kind == "ready":
                worker.ready = True
                self._emit(WorkerEvent("ready", worker.id, message[2]))
            elif kind == "step":
                self._emit(
                    WorkerEvent("step", worker.id, worker.process.pid, message[2], message[3])
                )
            elif kind == "result":
                result = message[3]
                task = worker.task
                worker.task = None
                self._outstanding -= 1
                if message[4]:
                    worker.retiring = True
                    self._emit(WorkerEvent("retire", worker.id, worker.process.pid))
                if isinstance(result, _UnhandledError):
                    result = self.lost_result(task, result.error)
                yield result

    def _reap(self) -> Iterator:
        for worker in list(self._workers.values()):
            if worker.process.is_alive():
                continue
            yield from self._drain(worker)  # a result sent just before exit
            worker.process.join()
            worker.conn.close()
            del self._workers[worker.id]
            if not worker.ready:
                # A worker that dies before it is ready would be respawned for
                # ever; after a few such deaths fail the queued tasks instead.
                self._startup_failures += 1
                if self._startup_failures >= 3:
                    reason = (
                        f"worker processes die while starting (exit code "
                        f"{worker.process.exitcode}); run with -j 1 --debug to see why"
                    )
                    while self._pending:
                        self._outstanding -= 1
                        yield self.lost_result(self._pending.popleft(), reason)
            if worker.task is not None:
                task, worker.task = worker.task, None
                reason = _lost_reason(worker.process.exitcode, self.jobs)
                self._outstanding -= 1
                self._emit(WorkerEvent("lost", worker.id, worker.process.pid, task.task_id))
                yield self.lost_result(task, reason)


@contextlib.contextmanager
def _sigint_blocked():
    """Start a worker with SIGINT blocked: Ctrl-C in a terminal goes to the whole process
    group, and a worker still starting up (before it ignores SIGINT itself) would print
    a KeyboardInterrupt traceback.  The child inherits the blocked mask; the parent's
    Ctrl-C during the start is delivered right after it, not lost."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    from multiprocessing import resource_tracker

    # Started with the first worker otherwise, the tracker would unblock SIGINT (it blocks
    # and then unblocks SIGINT and SIGTERM around its own start) before the worker starts.
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _lost_reason(code: int | None, jobs: int) -> str:
    """Why a worker's task was lost, from the worker's exit code."""
    if code is None or code >= 0:
        return f"worker process exited unexpectedly with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = str(-code)
    reason = f"worker process was killed by {name}"
    if -code == signal.SIGKILL and jobs > 1:
        reason += " (out of memory? try fewer jobs with -j)"
    elif -code == signal.SIGKILL:
        reason += (" (out of memory? with a single job already: run it with more "
                   "memory available, or with --low-memory for image3)")
    return reason
