"""Run tasks in parallel: a local pool of spawned worker processes.

Why not ``concurrent.futures.ProcessPoolExecutor``: when one worker dies
(killed by the OOM killer, a segfault in a C extension) that pool marks every
pending task as failed.  Here each worker gets its task over its own pipe, so
the parent always knows which task a dead worker held: that task alone fails
(with the exit code as reason), a fresh worker takes its place and the others
carry on.

Workers are started with the ``spawn`` method (never ``fork``: a forked copy of
a parent that has touched jwst keeps growing, jwst issue 8404), import the
modules named in ``warm`` once at start-up -- while the parent is still busy,
e.g. prefetching references -- and then handle many tasks, so the ~3 s
``import jwst.pipeline`` is paid once per worker, not once per exposure.  A
worker retires after ``max_tasks_per_child`` tasks and is replaced, which
bounds memory growth.

The interface is deliberately small so that a Dask executor can offer the same:
``submit(task)``, ``as_completed()`` yielding results, ``shutdown()``.  A task is
any picklable object with a ``task_id``; the task function is called as
``task_function(task, progress)`` where ``progress(task_id, step_name)`` reports
the pipeline step the task is in.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import wait

__all__ = ["LocalExecutor", "WorkerEvent", "default_jobs", "available_memory_bytes", "cpu_count"]

log = logging.getLogger(__name__)


def cpu_count() -> int:
    """CPUs this process may run on (respects taskset / cgroup affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (None where unknown)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def default_jobs(n_tasks: int, bytes_per_worker: float) -> tuple[int, str]:
    """Number of workers that fits the CPUs and the available memory.

    Returns ``(jobs, reason)``; the reason is a short sentence for the log.
    """
    cpus = cpu_count()
    jobs = cpus
    reason = f"{cpus} CPUs"
    mem = available_memory_bytes()
    if mem is not None and bytes_per_worker > 0:
        by_memory = max(1, int(mem // bytes_per_worker))
        if by_memory < jobs:
            jobs = by_memory
            reason = (
                f"{mem / 1e9:.1f} GB available memory / {bytes_per_worker / 1e9:.2f} GB per worker"
            )
    if n_tasks and n_tasks < jobs:
        jobs = n_tasks
        reason = f"{n_tasks} task{'s' if n_tasks != 1 else ''}"
    return max(1, jobs), reason


@dataclass
class WorkerEvent:
    """Something a worker reported: ``kind`` is 'ready', 'start', 'step', 'retire' or 'lost'."""

    kind: str
    worker: int
    pid: int | None = None
    task_id: str | None = None
    step: str | None = None
    time: float = field(default_factory=time.time)


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies (kill -9), instead of running on orphaned.

    An orphaned worker would finish its task and race a re-run for the same
    temporary directory; dying with the parent leaves only a temporary
    directory that the next run removes.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)  # the parent died before prctl took effect


def _exit_on_sigterm(signum, _frame):
    raise SystemExit(128 + signum)


def _worker_main(conn, worker_id, env, warm, task_function, max_tasks):
    """Entry point of a spawned worker process."""
    # The parent owns Ctrl-C: it stops the workers itself, so a KeyboardInterrupt
    # never surfaces half-way through a pipeline step as a task "failure".
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # shutdown(cancel=True) terminates workers: leave through Python so that
    # multiprocessing's finalizers unregister the semaphore crds creates at
    # import; a bare SIGTERM death makes the resource tracker print a "leaked
    # semaphore objects" warning after every Ctrl-C or failed run.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _die_with_parent()
    os.environ.update(env or {})
    import importlib

    for module in warm or ():
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - the task will report it properly
            logging.getLogger(__name__).warning("worker could not import %s: %s", module, exc)
    send_lock = threading.Lock()

    def send(message):
        with send_lock:
            conn.send(message)

    send(("ready", worker_id, os.getpid()))
    done = 0
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return  # parent went away
        if task is None:
            return
        task_id = getattr(task, "task_id", None)

        def progress(tid, step, _send=send):
            _send(("step", worker_id, tid, step))

        try:
            result = task_function(task, progress)
        except SystemExit:
            raise  # terminated by the parent: nothing to report
        except BaseException as exc:  # noqa: BLE001 - report, keep the worker honest
            result = _UnhandledError(task_id, f"{type(exc).__name__}: {exc}")
        done += 1
        retiring = bool(max_tasks and done >= max_tasks)
        # The retire flag travels with the result so the parent can never
        # hand this worker another task in between.
        send(("result", worker_id, task_id, result, retiring))
        if retiring:
            return


@contextlib.contextmanager
def _main_module_importable():
    """Let spawn work when __main__ is not a file (``python -`` or ``python -c``).

    A spawned child re-imports the parent's main script by path; when that path
    does not exist (stdin) the child would die at start-up, so hide it for the
    duration of ``Process.start``.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or os.path.exists(path):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


@dataclass
class _UnhandledError:
    """Returned when the task function itself raised (it should catch its own errors)."""

    task_id: str | None
    error: str


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
    warm : sequence of str
        Modules each worker imports at start-up.
    max_tasks_per_child : int
        Tasks a worker handles before it is replaced (0 = never).
    on_event : callable, optional
        Called in the parent with each :class:`WorkerEvent`.
    """

    def __init__(
        self,
        jobs: int,
        task_function: Callable,
        lost_result: Callable,
        *,
        env: dict | None = None,
        warm: tuple[str, ...] = (),
        max_tasks_per_child: int = 25,
        on_event: Callable[[WorkerEvent], None] | None = None,
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
            daemon=True,
        )
        with _main_module_importable():
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
            worker.process.join(max(0.1, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)
            worker.conn.close()
        self._workers.clear()

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
                code = worker.process.exitcode
                if code is not None and code < 0:
                    try:
                        name = signal.Signals(-code).name
                    except ValueError:
                        name = str(-code)
                    reason = f"worker process was killed by {name}"
                    if -code == signal.SIGKILL:
                        reason += " (out of memory? try fewer jobs with -j)"
                else:
                    reason = f"worker process exited unexpectedly with code {code}"
                self._outstanding -= 1
                self._emit(WorkerEvent("lost", worker.id, worker.process.pid, task.task_id))
                yield self.lost_result(task, reason)
