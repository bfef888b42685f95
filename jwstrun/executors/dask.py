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
the pipeline step the task is in.  :class:`DaskExecutor` (bottom of this module,
dask imported only when it is used) offers that interface on a Dask cluster.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

__all__ = [
    "LocalExecutor", "WorkerEvent", "default_jobs", "available_memory", "batch_memory_limit",
    "cgroup_memory_available", "cpu_count",
    "DaskExecutor", "DaskOptions", "check_dask_options", "dask_available",
]

log = logging.getLogger(__name__)

# cgroup files say "no limit" with "max" (v2) or a number near 2**63 (v1).
_UNLIMITED = 1 << 60


def cpu_count() -> int:
    """CPUs this process may run on (respects taskset / cgroup affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _meminfo_available(meminfo: str = "/proc/meminfo") -> int | None:
    """MemAvailable from /proc/meminfo (None where unknown)."""
    try:
        with open(meminfo) as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_bytes(path: Path) -> int | None:
    """An integer cgroup file; None when absent, unreadable or unlimited."""
    try:
        text = path.read_text().strip()
        value = int(text)
    except (OSError, ValueError):
        return None  # includes "max" (cgroup v2's "no limit")
    return value if 0 <= value < _UNLIMITED else None


def _stat_value(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def cgroup_memory_available(proc_cgroup: str = "/proc/self/cgroup",
                            root: str = "/sys/fs/cgroup") -> int | None:
    """Memory this process's cgroup may still use: limit minus usage, the page
    cache it can drop (inactive files) not counted as used; the tightest limit
    of the cgroup and its parents.  None when no limit is set or cgroups are
    not readable.  Covers cgroup v2 (``memory.max``) and v1
    (``memory.limit_in_bytes``); batch systems (SLURM's task/cgroup, Kubernetes,
    Docker ``--memory``) enforce their memory limits there.
    """
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    best = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hid, controllers, relative = parts
        if controllers == "":
            base, files = Path(root), ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):
            base = Path(root) / "memory"
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        else:
            continue
        limit_name, usage_name, inactive_key = files
        # The cgroup's own directory; inside a container the namespace's root
        # is mounted at ``base`` and the recorded path does not exist there.
        here = base / relative.strip("/")
        if not (here / limit_name).exists():
            here = base
        while True:
            limit = _read_bytes(here / limit_name)
            if limit is not None:
                usage = _read_bytes(here / usage_name) or 0
                usage -= min(usage, _stat_value(here / "memory.stat", inactive_key))
                free = max(0, limit - usage)
                best = free if best is None else min(best, free)
            if here == base or base not in here.parents:
                break
            here = here.parent
    return best


def batch_memory_limit(environ=None) -> tuple[int, str] | None:
    """The memory a SLURM job asked for on this node (``--mem`` or ``--mem-per-cpu``)."""
    environ = os.environ if environ is None else environ
    try:
        if environ.get("SLURM_MEM_PER_NODE"):
            return int(environ["SLURM_MEM_PER_NODE"]) * 2**20, "SLURM --mem"
        if environ.get("SLURM_MEM_PER_CPU"):
            cpus = int(environ.get("SLURM_CPUS_ON_NODE") or 1)
            return int(environ["SLURM_MEM_PER_CPU"]) * 2**20 * cpus, "SLURM --mem-per-cpu"
    except ValueError:
        pass
    return None


def available_memory() -> tuple[int, str] | None:
    """``(bytes, where the figure comes from)``: the least of the node's available
    memory, this process's cgroup limit and a SLURM job's memory request."""
    candidates = []
    node = _meminfo_available()
    if node is not None:
        candidates.append((node, "available memory"))
    cgroup = cgroup_memory_available()
    if cgroup is not None:
        candidates.append((cgroup, "memory left under the cgroup limit"))
    batch = batch_memory_limit()
    if batch is not None:
        candidates.append(batch)
    return min(candidates) if candidates else None


def default_jobs(n_tasks: int, bytes_per_worker: float) -> tuple[int, str]:
    """Number of workers that fits the CPUs and the available memory.

    Returns ``(jobs, reason)``; the reason is a short sentence for the log.
    """
    cpus = cpu_count()
    jobs = cpus
    reason = f"{cpus} CPUs"
    found = available_memory()
    if found is not None and bytes_per_worker > 0:
        mem, source = found
        by_memory = max(1, int(mem // bytes_per_worker))
        if by_memory < jobs:
            jobs = by_memory
            reason = f"{mem / 1e9:.1f} GB {source} / {bytes_per_worker / 1e9:.2f} GB per worker"
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


class _Terminated(SystemExit):
    """Raised by the SIGTERM handler (not by a task's own sys.exit, which is reported)."""


def _exit_on_sigterm(signum, _frame):
    raise _Terminated(128 + signum)


def _terminate_again(unraisable) -> None:
    """``sys.unraisablehook`` of a worker: a _Terminated raised where Python ignores
    exceptions (a weakref callback during an import, a ``__del__``) would print
    "Exception ignored" and leave the worker running until it is killed; it is
    raised again a moment later instead, where it ends the worker."""
    if not isinstance(unraisable.exc_value, _Terminated):
        sys.__unraisablehook__(unraisable)
        return
    signal.signal(signal.SIGALRM, lambda *_: _exit_on_sigterm(signal.SIGTERM, None))
    signal.setitimer(signal.ITIMER_REAL, 0.01)


def _leave_quickly() -> None:
    """End an idle worker without the interpreter's teardown of every jwst module
    (about 0.5 s the parent would wait for at the end of each run).

    multiprocessing's finalizers run first (they unregister the semaphore crds
    creates at import, or the resource tracker warns of a leak); nothing else is
    pending: every result was sent and each task closed its own log file.
    """
    from multiprocessing import util

    util._exit_function()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(0)


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
    sys.unraisablehook = _terminate_again
    _die_with_parent()
    os.environ.update(env or {})
    import importlib

    for module in warm or ():
        try:
            if callable(module):
                module()
            else:
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
            _leave_quickly()
        task_id = getattr(task, "task_id", None)

        def progress(tid, step, _send=send):
            _send(("step", worker_id, tid, step))

        try:
            result = task_function(task, progress)
        except _Terminated:
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
    warm : sequence of str or callable
        Modules each worker imports at start-up, or picklable functions it calls.
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
        warm: tuple = (),
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
                code = worker.process.exitcode
                if code is not None and code < 0:
                    try:
                        name = signal.Signals(-code).name
                    except ValueError:
                        name = str(-code)
                    reason = f"worker process was killed by {name}"
                    if -code == signal.SIGKILL and self.jobs > 1:
                        reason += " (out of memory? try fewer jobs with -j)"
                    elif -code == signal.SIGKILL:
                        reason += (" (out of memory? with a single job already: run it with more "
                                   "memory available, or with --low-memory for image3)")
                else:
                    reason = f"worker process exited unexpectedly with code {code}"
                self._outstanding -= 1
                self._emit(WorkerEvent("lost", worker.id, worker.process.pid, task.task_id))
                yield self.lost_result(task, reason)


# --------------------------------------------------------------------------
# Dask: the same interface on a distributed cluster
# --------------------------------------------------------------------------
DASK_INSTALL_HINT = (
    "pip install 'jwstrun[dask]' (or: pip install 'dask[distributed]' dask-jobqueue)"
)

#: --cluster name -> dask_jobqueue class and the command that submits its jobs
JOBQUEUE_CLUSTERS = {"slurm": ("SLURMCluster", "sbatch"), "pbs": ("PBSCluster", "qsub")}

_SCHEDULER_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss", "inproc")

# One jwstrun task at a time per worker process, whatever the worker's thread
# count: a task redirects the process's stdout/stderr into its log file and
# owns the pipeline loggers while it runs.
_DASK_TASK_LOCK = threading.Lock()


@dataclass
class DaskOptions:
    """Where Dask runs the tasks.

    Exactly one of: ``scheduler`` (address of a running scheduler,
    ``tcp://host:8786`` or ``tls://...``), ``cluster`` ('slurm' or 'pbs': start
    workers as batch jobs through dask-jobqueue), or neither (a
    ``LocalCluster`` on 127.0.0.1 with one single-threaded worker process per
    job).
    """

    scheduler: str | None = None
    cluster: str | None = None
    cluster_cores: int | None = None
    cluster_memory: str | None = None
    cluster_walltime: str | None = None
    cluster_jobs: int = 1
    cluster_options: dict = field(default_factory=dict)
    connect_timeout: float = 5.0
    retries: int = 1

    @classmethod
    def coerce(cls, value) -> "DaskOptions":
        """A DaskOptions from None, a dict of its fields, or a DaskOptions."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                from ..errors import ConfigError

                raise ConfigError(
                    f"unknown Dask option(s) {', '.join(sorted(unknown))}; known: "
                    f"{', '.join(cls.__dataclass_fields__)}."
                )
            return cls(**value)
        raise TypeError(f"dask_options must be a DaskOptions or a dict, not {type(value).__name__}")


def dask_available() -> bool:
    """True when dask.distributed can be imported (only called when Dask is asked for)."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def check_dask_options(options: DaskOptions, jobs: int | None = None) -> DaskOptions:
    """Refuse impossible Dask settings before anything runs (no connection is made).

    Raises :class:`~jwstrun.errors.InputError` when dask (or dask-jobqueue for
    ``--cluster``) is not installed and :class:`~jwstrun.errors.ConfigError`
    for contradictory options.
    """
    from ..errors import ConfigError, InputError

    if not dask_available():
        raise InputError(
            "the dask executor needs dask.distributed, which is not installed. Install it with "
            f"{DASK_INSTALL_HINT}, or run with --executor local."
        )
    if options.scheduler and options.cluster:
        raise ConfigError(
            "--scheduler and --cluster exclude each other: --scheduler connects to a running "
            "Dask scheduler, --cluster starts one with batch-job workers. Give one of them."
        )
    if options.scheduler:
        scheme, sep, rest = options.scheduler.partition("://")
        if (sep and scheme not in _SCHEDULER_SCHEMES) or not (rest if sep else scheme):
            raise ConfigError(
                f"--scheduler {options.scheduler}: not a Dask scheduler address. Give it as "
                "tcp://HOST:PORT (or tls://HOST:PORT), as printed by 'dask scheduler'."
            )
        if scheme == "tls" and not _tls_configured():
            raise ConfigError(
                f"--scheduler {options.scheduler}: TLS needs certificates. Set "
                "DASK_DISTRIBUTED__COMM__TLS__CA_FILE, DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT "
                "and DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY (or distributed.comm.tls in "
                "~/.config/dask/distributed.yaml); see docs/dask.md."
            )
    if not options.cluster:
        given = [name for name, value in (
            ("--cluster-cores", options.cluster_cores),
            ("--cluster-memory", options.cluster_memory),
            ("--cluster-walltime", options.cluster_walltime),
            ("--cluster-option", options.cluster_options),
        ) if value]
        if given:
            raise ConfigError(
                f"{', '.join(given)} only apply with --cluster slurm|pbs."
            )
    if (options.scheduler or options.cluster) and jobs is not None:
        where = "the running cluster" if options.scheduler else "--cluster-jobs and --cluster-cores"
        raise ConfigError(
            f"-j {jobs} sets the number of local worker processes; with "
            f"{'--scheduler' if options.scheduler else '--cluster'} the parallelism comes from "
            f"{where}. Leave out -j."
        )
    if options.cluster:
        if options.cluster not in JOBQUEUE_CLUSTERS:
            raise ConfigError(
                f"--cluster {options.cluster}: unknown; choose one of "
                f"{', '.join(JOBQUEUE_CLUSTERS)}."
            )
        try:
            import dask_jobqueue  # noqa: F401
        except ImportError:
            raise InputError(
                f"--cluster {options.cluster} needs dask-jobqueue, which is not installed. "
                f"Install it with {DASK_INSTALL_HINT}."
            ) from None
        if options.cluster_jobs < 1:
            raise ConfigError(f"--cluster-jobs {options.cluster_jobs}: must be at least 1.")
        command = JOBQUEUE_CLUSTERS[options.cluster][1]
        if shutil.which(command) is None:
            raise ConfigError(
                f"--cluster {options.cluster}: the '{command}' command is not on PATH, so no "
                "batch job can be submitted from here. Run jwstrun on the cluster's login node, "
                "or connect to a running scheduler with --scheduler."
            )
        if not _jobqueue_interface(options):
            raise ConfigError(
                f"--cluster {options.cluster}: name the network interface the compute nodes "
                "reach this machine on, e.g. --cluster-option interface=ib0 ('ip addr' lists "
                "them). jwstrun never opens the scheduler on every interface by itself."
            )
    if options.retries < 0:
        raise ConfigError("Dask retries must be 0 or more.")
    return options


def _tls_configured() -> bool:
    """True when dask's configuration names a TLS CA file (distributed.comm.tls.ca-file)."""
    import dask

    return bool(dask.config.get("distributed.comm.tls.ca-file", None))


def _jobqueue_interface(options: DaskOptions) -> str | None:
    """The interface (or scheduler host) the user chose, on the command line or in dask config."""
    extra = options.cluster_options or {}
    if extra.get("interface"):
        return str(extra["interface"])
    scheduler_options = extra.get("scheduler_options") or {}
    if scheduler_options.get("interface") or scheduler_options.get("host"):
        return str(scheduler_options.get("interface") or scheduler_options.get("host"))
    import dask

    name = options.cluster
    return (
        dask.config.get(f"jobqueue.{name}.interface", None)
        or (dask.config.get(f"jobqueue.{name}.scheduler-options", None) or {}).get("interface")
        or (dask.config.get(f"jobqueue.{name}.scheduler-options", None) or {}).get("host")
    )


def _shared_path_problem(task) -> str | None:
    """On a Dask worker: the task's input or OUTDIR is not visible here (no shared filesystem)."""
    for path in (getattr(task, "input", None), getattr(task, "outdir", None)):
        if path and not os.path.exists(path):
            return (
                f"{path} is not visible on Dask worker host {socket.gethostname()}. Dask workers "
                "need the inputs, OUTDIR and CRDS_PATH on a filesystem they mount at the same path "
                "(see docs/dask.md)."
            )
    return None


def _run_on_dask_worker(task_function, task, topic):
    """What Dask runs: the task function, with progress sent as scheduler events."""
    from distributed import get_worker

    worker = get_worker()
    info = {"address": worker.address, "pid": os.getpid(), "host": socket.gethostname()}
    task_id = getattr(task, "task_id", None)

    def send(kind, tid=None, step=None):
        try:
            worker.log_event(topic, dict(info, kind=kind, task_id=tid or task_id, step=step))
        except Exception:  # noqa: BLE001 - progress is best effort
            pass

    problem = _shared_path_problem(task)
    if problem:
        raise FileNotFoundError(problem)  # Dask retries elsewhere (retries=)
    with _DASK_TASK_LOCK:
        send("start")
        try:
            return task_function(task, lambda tid, step: send("step", tid, step))
        except Exception as exc:  # noqa: BLE001 - same contract as the local pool
            return _UnhandledError(task_id, f"{type(exc).__name__}: {exc}")


class DaskExecutor:
    """Tasks on a Dask cluster, behind the interface of :class:`LocalExecutor`.

    The task function (``task_function(task, progress)``) is the same one the
    local pool runs; it must take everything it needs from the task (jwstrun's
    ``Task`` carries the CRDS worker environment), so remote workers need no
    set-up beyond jwstrun installed and a shared filesystem.  Dask re-runs a
    task whose worker died on another worker (up to
    ``distributed.scheduler.allowed-failures``, then the task alone fails);
    ``retries`` re-runs tasks that raised outside the task function.  Step
    progress travels as scheduler events (``Worker.log_event``).

    Parameters
    ----------
    task_function, lost_result, env, on_event
        As for :class:`LocalExecutor`.  ``env`` is set in the worker processes
        of a ``LocalCluster`` or the batch jobs jwstrun starts; on a running
        cluster it cannot be, which is why tasks carry their own.
    options : DaskOptions
        Where to run.
    jobs : int
        Worker processes of the local cluster (ignored with a scheduler or ``--cluster``).
    """

    def __init__(
        self,
        task_function: Callable,
        lost_result: Callable,
        *,
        options: DaskOptions | dict | None = None,
        jobs: int = 1,
        env: dict | None = None,
        on_event: Callable[[WorkerEvent], None] | None = None,
    ):
        self.task_function = task_function
        self.lost_result = lost_result
        self.options = DaskOptions.coerce(options)
        self.env = dict(env or {})
        self.on_event = on_event
        self.jobs = max(1, int(jobs or 1))
        self.jobs_reason = ""
        self.client = None
        self.cluster = None
        self.address: str | None = None
        import uuid

        self._topic = f"jwstrun-{uuid.uuid4().hex}"
        self._futures: dict = {}  # future -> task
        self._events: deque = deque()
        self._some_done = threading.Event()
        self._worker_ids: dict[str, int] = {}
        self._closed = False

    # -- connecting ------------------------------------------------------
    def start(self) -> "DaskExecutor":
        """Connect to (or start) the cluster; clear errors when that fails."""
        if self.client is not None:
            return self
        check_dask_options(self.options)
        try:
            if self.options.scheduler:
                self._connect(self.options.scheduler)
            elif self.options.cluster:
                self._start_jobqueue()
            else:
                self._start_local()
            self.client.subscribe_topic(self._topic, self._events.append)
        except BaseException:
            self._close_quietly()
            raise
        log.info("Dask: %s (%s)", self.address, self.jobs_reason)
        return self

    def _connect(self, address: str) -> None:
        from distributed import Client

        from ..errors import ConfigError

        timeout = self.options.connect_timeout
        try:
            self.client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"--scheduler {address}: no Dask scheduler answered within {timeout:g} s "
                f"({exc}). Check the address (the scheduler prints it at start-up), that the "
                "scheduler is running and that this machine can reach its port."
            ) from None
        except Exception as exc:  # noqa: BLE001 - something answered, but not Dask
            raise ConfigError(
                f"--scheduler {address}: something answered but it does not speak the Dask "
                f"protocol ({type(exc).__name__}). Check the address and port; for TLS give "
                "tls://... and set the certificates (docs/dask.md)."
            ) from None
        self.address = address
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
        threads = sum(int(w.get("nthreads", 1)) for w in workers.values())
        self.jobs = max(1, threads)
        self.jobs_reason = (
            f"Dask scheduler {address}: {len(workers)} worker(s), {threads} thread(s)"
        )
        if not workers:
            log.warning("the Dask scheduler at %s has no workers yet; tasks wait for them", address)

    def _start_local(self) -> None:
        from distributed import Client, LocalCluster

        # Loopback only: a cluster jwstrun starts on its own is never reachable
        # from the network (its HTTP server / dashboard included, on a free port).
        self.cluster = LocalCluster(
            n_workers=self.jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR,
            env={k: v for k, v in self.env.items() if not k.startswith("CRDS_")},
        )
        self.client = Client(self.cluster, set_as_default=False)
        self.address = self.cluster.scheduler_address
        self.jobs_reason = f"Dask LocalCluster on 127.0.0.1, {self.jobs} worker process(es)"

    def _start_jobqueue(self) -> None:
        import dask_jobqueue
        from distributed import Client

        from ..errors import ConfigError

        opts = self.options
        class_name = JOBQUEUE_CLUSTERS[opts.cluster][0]
        kwargs = dict(opts.cluster_options or {})
        for key, value in (("cores", opts.cluster_cores), ("memory", opts.cluster_memory),
                           ("walltime", opts.cluster_walltime)):
            if value is not None:
                kwargs[key] = value
        # Thread-count variables (OMP_NUM_THREADS...) must be set before the
        # worker imports numpy: export them in the job script.
        exports = [f"export {k}={v}" for k, v in self.env.items() if not k.startswith("CRDS_")]
        kwargs["job_script_prologue"] = list(kwargs.get("job_script_prologue") or []) + exports
        if "security" not in kwargs and _tls_configured():
            # TLS certificates from dask's configuration: scheduler and workers use them.
            from distributed.security import Security

            kwargs["security"] = Security()
        scheduler_options = dict(kwargs.pop("scheduler_options", None) or {})
        scheduler_options.setdefault("dashboard_address", "127.0.0.1:8787")
        kwargs["scheduler_options"] = scheduler_options
        try:
            self.cluster = getattr(dask_jobqueue, class_name)(**kwargs)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"--cluster {opts.cluster}: dask-jobqueue refused the settings: {exc}. "
                "Give --cluster-cores and --cluster-memory (and queue/account with "
                "--cluster-option queue=NAME)."
            ) from None
        self.cluster.scale(jobs=opts.cluster_jobs)
        self.client = Client(self.cluster, set_as_default=False)
        self.address = self.cluster.scheduler_address
        per_job = getattr(self.cluster._dummy_job, "worker_processes", 1) or 1
        self.jobs = max(1, opts.cluster_jobs * per_job)
        self.jobs_reason = (
            f"{opts.cluster.upper()} via dask-jobqueue: {opts.cluster_jobs} job(s) x "
            f"{per_job} worker process(es)"
        )

    def job_script(self) -> str | None:
        """The batch script dask-jobqueue submits (``--cluster`` only)."""
        return self.cluster.job_script() if hasattr(self.cluster, "job_script") else None

    # -- public interface -----------------------------------------------
    def submit(self, task) -> None:
        """Hand one task to the scheduler."""
        if self._closed:
            raise RuntimeError("executor is shut down")
        self.start()
        future = self.client.submit(
            _run_on_dask_worker, self.task_function, task, self._topic,
            key=f"jwstrun-{task.task_id}-{self._topic[8:16]}", pure=False,
            retries=self.options.retries,
        )
        self._futures[future] = task
        future.add_done_callback(lambda _future: self._some_done.set())

    def as_completed(self) -> Iterator:
        """Yield one result per submitted task, in completion order."""
        while self._futures:
            self._some_done.wait(0.5)
            self._some_done.clear()
            self._drain_events()
            for future in [f for f in self._futures if f.done()]:
                task = self._futures.pop(future)
                yield self._result_of(future, task)

    def shutdown(self, cancel: bool = False) -> None:
        """Cancel what is still queued or running (``cancel=True``) and disconnect."""
        self._closed = True
        if cancel and self.client is not None and self._futures:
            try:
                self.client.cancel(list(self._futures), force=True)
            except Exception:  # noqa: BLE001
                log.debug("could not cancel Dask tasks", exc_info=True)
        self._futures.clear()
        self._close_quietly()

    def __enter__(self) -> "DaskExecutor":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.shutdown(cancel=exc_type is not None)

    # -- internals -------------------------------------------------------
    def _close_quietly(self) -> None:
        for thing in (self.client, self.cluster):
            if thing is None:
                continue
            try:
                thing.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                log.debug("closing %r failed", thing, exc_info=True)
        self.client = self.cluster = None

    def _worker_id(self, address: str) -> int:
        if address not in self._worker_ids:
            self._worker_ids[address] = len(self._worker_ids)
        return self._worker_ids[address]

    def _drain_events(self) -> None:
        while self._events:
            _stamp, msg = self._events.popleft()
            if self.on_event is None or not isinstance(msg, dict):
                continue
            event = WorkerEvent(
                msg.get("kind", "step"), self._worker_id(msg.get("address", "?")),
                msg.get("pid"), msg.get("task_id"), msg.get("step"),
            )
            try:
                self.on_event(event)
            except Exception:  # noqa: BLE001 - a display problem must not stop a run
                log.debug("progress callback failed", exc_info=True)

    def _result_of(self, future, task):
        status = future.status
        if status == "finished":
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - e.g. the result could not be unpickled
                return self.lost_result(task, f"could not fetch the result from Dask: {exc}")
            if isinstance(result, _UnhandledError):
                return self.lost_result(task, result.error)
            return result
        if status == "cancelled":
            return self.lost_result(
                task, "cancelled by Dask (the scheduler restarted or the client lost it)"
            )
        exc = future.exception()
        if type(exc).__name__ == "KilledWorker":
            return self.lost_result(
                task,
                "Dask workers died while running this task, every time it was retried "
                "(out of memory? give workers more memory or run fewer per node)",
            )
        return self.lost_result(task, f"{type(exc).__name__}: {exc}")
