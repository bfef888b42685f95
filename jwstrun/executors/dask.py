"""The Dask executor: the interface of the local pool on a Dask cluster.

Three ways to get a cluster (:class:`DaskOptions`): connect to a running
scheduler (``--scheduler``), start workers as batch jobs through
dask-jobqueue (``--cluster slurm|pbs``), or a ``LocalCluster`` on 127.0.0.1.
:func:`check_dask_options` refuses impossible settings before anything runs.
dask and distributed are imported only when a Dask executor is used.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..errors import ConfigError, InputError
from ._jobqueue import (
    _ACTIVE_SLURM_STATES,
    DASK_INSTALL_HINT,
    JOBQUEUE_CLUSTERS,
    JOBS_ENDED_GRACE_SECONDS,
    _check_cluster,
    _slurm_job_states,
)
from .protocol import WorkerEvent, _UnhandledError

__all__ = [
    "DaskExecutor", "DaskOptions", "check_dask_options", "dask_available",
    "DASK_INSTALL_HINT", "JOBQUEUE_CLUSTERS",
]

log = logging.getLogger(__name__)

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
        _check_scheduler_address(options.scheduler)
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
        _check_cluster(options)
    if options.retries < 0:
        raise ConfigError("Dask retries must be 0 or more.")
    return options


def _check_scheduler_address(address: str) -> None:
    """A scheduler address Dask can connect to (TLS only with certificates configured)."""
    scheme, sep, rest = address.partition("://")
    if (sep and scheme not in _SCHEDULER_SCHEMES) or not (rest if sep else scheme):
        raise ConfigError(
            f"--scheduler {address}: not a Dask scheduler address. Give it as "
            "tcp://HOST:PORT (or tls://HOST:PORT), as printed by 'dask scheduler'."
        )
    if scheme == "tls" and not _tls_configured():
        raise ConfigError(
            f"--scheduler {address}: TLS needs certificates. Set "
            "DASK_DISTRIBUTED__COMM__TLS__CA_FILE, DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT "
            "and DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY (or distributed.comm.tls in "
            "~/.config/dask/distributed.yaml); see docs/dask.md."
        )


def _tls_configured() -> bool:
    """True when dask's configuration names a TLS CA file (distributed.comm.tls.ca-file)."""
    import dask

    return bool(dask.config.get("distributed.comm.tls.ca-file", None))


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
        self._workers_seen: set[str] = set()
        self._no_worker_since: float | None = None
        self._next_check = 0.0

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
        except RuntimeError as exc:  # SpecCluster: "Cluster failed to start: ..."
            raise ConfigError(
                f"--cluster {opts.cluster}: the Dask scheduler did not start: {exc}. Check "
                "--cluster-option interface=... and the other --cluster options."
            ) from None
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
            reason = self._jobs_ended()
            if reason and self._futures:
                log.warning("%s", reason)
                left = list(self._futures.items())
                self._futures.clear()
                self.client.cancel([f for f, _task in left], force=True)
                for _future, task in left:
                    yield self.lost_result(task, reason)

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
    def _jobs_ended(self) -> str | None:
        """``--cluster``: why no worker will come (back) to run the tasks left, or None.

        dask-jobqueue does not submit an ended job again: once no worker is connected
        and every batch job has ended (SLURM: squeue shows none pending or running;
        PBS: each job's worker had connected once) for a few seconds, the tasks left
        are given up with the reason (wall time, scancel)."""
        import time

        if not self.options.cluster or self.cluster is None or time.monotonic() < self._next_check:
            return None
        self._next_check = time.monotonic() + 2.0
        try:
            workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
        except Exception:  # noqa: BLE001 - the scheduler is in this process; try again
            return None
        self._workers_seen.update(w.get("name", a) for a, w in workers.items())
        ids = self._job_ids()
        if self.options.cluster == "slurm" and ids:
            states = _slurm_job_states(ids)
            ended = all(states.get(i, "ENDED") not in _ACTIVE_SLURM_STATES for i in ids)
        else:
            ended = len(self._workers_seen) >= self.jobs
        if workers or not ended:
            self._no_worker_since = None
            return None
        if self._no_worker_since is None:
            self._no_worker_since = time.monotonic()
        if time.monotonic() - self._no_worker_since < JOBS_ENDED_GRACE_SECONDS:
            return None
        return self._ended_reason()

    def _job_ids(self) -> list[str]:
        jobs = getattr(self.cluster, "workers", {}) or {}
        return [str(job.job_id) for job in jobs.values() if getattr(job, "job_id", None)]

    def _ended_reason(self) -> str:
        """The end of the workers' batch jobs in words (SLURM: their state from squeue)."""
        opts = self.options
        ids = self._job_ids()
        states = _slurm_job_states(ids) if opts.cluster == "slurm" else {}
        jobs = f"batch job{'s' if len(ids) != 1 else ''} {', '.join(ids) or '?'}"
        if states and all(s == "TIMEOUT" for s in states.values()):
            why = (f"reached the wall time (--cluster-walltime "
                   f"{opts.cluster_walltime or 'default of the queue'})")
            todo = "re-run with a longer --cluster-walltime to do the rest"
        elif states and all(s == "CANCELLED" for s in states.values()):
            why, todo = "was cancelled (scancel)", "re-run to do the rest"
        else:
            ended = ", ".join(sorted(set(states.values()))) or "wall time, scancel or a node failure"
            why = f"ended ({ended})"
            todo = "re-run to do the rest (with a longer --cluster-walltime if it ran out)"
        return (f"the {opts.cluster.upper()} {jobs} running the Dask workers {why} before this "
                f"task finished; finished tasks are recorded: {todo}")

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
