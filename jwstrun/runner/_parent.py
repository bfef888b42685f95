"""The parent side of a run: :func:`run_tasks` and the workers it feeds.

The caller (:func:`jwstrun.runner.run_image2` and co.) holds OUTDIR's lock and
has planned the tasks.  Here the parent settles the CRDS context (part of every
fingerprint), decides what is up to date (:mod:`.resume`), refuses a task that
would replace another task's product (:mod:`._outputs`), prefetches the CRDS
references once, submits the tasks to the local pool or to Dask, hashes the
inputs in a thread while the workers work, and records every result in the
manifest as it arrives.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .._system import batch_job_id
from ..errors import JwstrunError
from ..manifest import Manifest, TaskRecord, TaskResult
from ..stages import Stage, get_stage
from ._outputs import INTERMEDIATE_DIRNAME, LOG_DIRNAME, TMP_DIRNAME, _replacement
from ._corrections import correction_fingerprint
from .plan import Planned, bytes_per_worker, check_maximum_cores, make_tasks
from .resume import _InputHasher, compute_fingerprint, software_versions, split_up_to_date
from .task import Task, lost_task_result, run_task, stage_class

__all__ = ["RunSummary", "run_tasks"]

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """Outcome of one ``run_image2`` / ``run_image3`` call."""

    pipeline: str
    outdir: Path
    manifest: Path
    results: list[TaskResult]
    tasks: dict[str, Task]
    jobs: int
    jobs_reason: str
    wall_s: float
    crds_context: str | None = None
    prefetch_s: float = 0.0
    #: input files left out (another EXP_TYPE, _uncal): jwstrun.selection.LeftOut
    left_out: list = field(default_factory=list)
    #: a sweep's table, one row per variant (jwstrun.compare.sweep)
    sweep: list = field(default_factory=list)
    #: detector1 or another core-step stage: where the cores went (runner._cores)
    parallelism: dict | None = None
    #: the run of the stage before, when this one ran it first (image2 --from uncal)
    before: "RunSummary | None" = None

    @property
    def failed(self) -> list[TaskResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def skipped(self) -> list[TaskResult]:
        return [r for r in self.results if r.status == "skipped"]

    @property
    def succeeded(self) -> list[TaskResult]:
        return [r for r in self.results if r.status == "ok"]

    @property
    def outputs(self) -> list[Path]:
        return [self.outdir / name for r in self.results if r.status != "failed" for name in r.outputs]

    def to_dict(self) -> dict:
        return {
            "pipeline": self.pipeline,
            "outdir": str(self.outdir),
            "manifest": str(self.manifest),
            "jobs": self.jobs,
            "jobs_reason": self.jobs_reason,
            "wall_s": round(self.wall_s, 3),
            "crds_context": self.crds_context,
            "counts": {
                "total": len(self.results),
                "ok": len(self.succeeded),
                "skipped": len(self.skipped),
                "failed": len(self.failed),
            },
            "tasks": [self._task_dict(r) for r in self.results],
            "left_out": [item.to_dict() for item in self.left_out],
            **({"sweep": self.sweep} if self.sweep else {}),
            **({"parallelism": self.parallelism} if self.parallelism else {}),
            **({"before": self.before.to_dict()} if self.before is not None else {}),
        }

    def _task_dict(self, result: TaskResult) -> dict:
        data = result.to_dict()
        task = self.tasks.get(result.task_id)
        if task is not None and task.memory is not None:
            data["memory"] = task.memory
        backgrounds = [e["name"] for e in task.inputs if e["role"] == "background"] \
            if task is not None else []
        if backgrounds:  # members of the task, never tasks of their own
            data["backgrounds"] = backgrounds
        return data


def manifest_record(task: Task, result: TaskResult, versions: dict,
                    context: str | None) -> TaskRecord:
    """The manifest record of a task's result (:class:`jwstrun.manifest.TaskRecord`)."""
    return TaskRecord.from_result(
        result,
        pipeline=task.pipeline,
        pipeline_class=task.stage.class_name,
        input=task.input,
        product=task.product,
        inputs=[dict(e) for e in task.inputs],
        parameters=task.parameters,
        fingerprint=task.fingerprint,
        versions=versions,
        crds_context=result.crds_context or context,
        log_file=os.path.relpath(task.log_file, task.outdir),
        temp_dir=os.path.relpath(result.temp_dir, task.outdir) if result.temp_dir else None,
        memory=dict(task.memory) if task.memory is not None else None,
    )


def worker_env(crds_env: dict, context: str | None, extra_env: dict | None,
               in_pool: bool) -> dict:
    """The environment every task runs with: the CRDS worker settings, ``extra_env``,
    and one thread per numerical library in a pool (unless the user set them)."""
    from .. import refs

    env = refs.worker_environment(crds_env, context)
    env.update(extra_env or {})
    if in_pool:
        # Several workers on few cores: numerical libraries get one thread
        # each unless the user chose otherwise.
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, os.environ.get(var, "1"))
    return env


def early_pool(stage: Stage, n_tasks: int, jobs: int | None, bytes_per_task: float,
               crds_env: dict, extra_env: dict, max_tasks_per_worker: int,
               daemon: bool = True, idle: int | None = None):
    """Start the local workers now, so that their jwst import (docs/benchmarks.md,
    "import") overlaps the parent's planning, CRDS context lookup and prefetch instead
    of following them.

    Their environment lacks only the CRDS context, which each task sets before
    it runs (``Task.env``); run_tasks gives the pool its final size.  ``idle``: start
    only the workers beyond the first ``idle`` cores' (which other tasks still use:
    :func:`jwstrun.runner._tiles._early_tile_pool`); None when none is left.
    """
    from .._system import default_jobs

    if jobs is None:
        jobs = default_jobs(n_tasks, bytes_per_task)[0]
    jobs = max(1, min(jobs, n_tasks))
    size = jobs - (idle or 0)
    if size < 1:
        return None
    env = worker_env(crds_env, None, extra_env, jobs > 1)
    return local_pool(stage, size, env, max_tasks_per_worker, daemon=daemon).start()


def local_pool(stage: Stage, jobs: int, env: dict, max_tasks_per_worker: int, on_event=None,
               daemon: bool = True):
    """The local executor for ``stage``'s tasks (not started); its workers load the
    stage's class as they start (not daemonic when their steps start processes)."""
    from ..executors import LocalExecutor

    return LocalExecutor(jobs, run_task, lost_task_result, env=env,
                         warm=(functools.partial(stage_class, stage.name),),
                         max_tasks_per_child=max_tasks_per_worker, on_event=on_event,
                         daemon=daemon)


def run_tasks(
    pipeline: str,
    planned: list[Planned],
    outdir: Path,
    *,
    parameters: dict,
    crds_env: dict,
    crds_context: str | None = None,
    jobs: int | None = None,
    force: bool = False,
    checksum: bool = False,
    extra_env: dict | None = None,
    validate: bool = True,
    max_tasks_per_worker: int = 25,
    on_event: Callable | None = None,
    command: str = "jwstrun",
    executor_kind: str = "local",
    dask_options=None,
    pool=None,
    remove_if_refused: list | None = None,
    previews: bool = False,
    keep_temp: bool = False,
    corrections: list[dict] | None = None,
    exposure_sets: dict[str, list[dict]] | None = None,
    shard=None,
    plan_shards: dict | None = None,
    parallelism=None,
) -> RunSummary:
    """Run planned tasks of stage ``pipeline`` (the caller holds OUTDIR's lock); skip
    what is up to date.

    ``shard`` (a :class:`~jwstrun.runner.shard.Shard`): ``planned`` is this shard's part
    of the plan and other shards work in OUTDIR at the same time: each task is claimed
    with a task lock before it runs (one claimed by another live run is left to it),
    the manifest is merged on every save, and only this run's temporary directories are
    cleaned.  ``plan_shards``: every task id of the whole plan -> its shard (None when
    unsharded), recorded in the manifest for ``jwstrun status``.

    ``pool`` is a :class:`LocalExecutor` the caller started early (see
    :func:`early_pool`); run_tasks resizes it, uses it and shuts it down.
    ``remove_if_refused``: files the caller wrote for these tasks (associations), to
    remove if the run stops before any task is submitted; run_tasks empties the list
    when it submits the first (from then on they are inputs the records name).

    A task is up to date when its manifest record is ok, its products are there
    with their recorded sizes, and its fingerprint (input checksums, parameters,
    versions, CRDS context) is unchanged.  Inputs whose size and mtime match the
    record keep their recorded checksum unless ``checksum=True``.

    ``previews=True`` has the workers draw the HTML report's previews of their
    products (the first tasks by product name, as many as the report shows);
    :func:`jwstrun.look.write_report` reuses them.

    ``keep_temp=True`` keeps each task's temporary directory
    (``OUTDIR/.jwstrun-tmp/<task-id>``, named in its result's ``temp_dir``) until the
    next run in OUTDIR.

    ``corrections``: the steps each task runs before the pipeline
    (:func:`jwstrun.profiles.build_corrections`), with ``exposure_sets``
    (:func:`._corrections.exposure_sets`) for a set step among them.

    ``on_event(kind, **info)`` is called in this process: ``plan`` (total,
    to_run, skipped, jobs), ``prefetch`` (seconds, context), ``start``/``step``
    (task_id, worker, step), ``done`` (result), ``retire``/``lost`` (worker).
    """
    run = _Run(get_stage(pipeline), Path(outdir), parameters=parameters, extra_env=extra_env,
               on_event=on_event, command=command, keep_temp=keep_temp, shard=shard)
    run.corrections, run.exposure_sets = list(corrections or ()), dict(exposure_sets or {})
    run.plan_shards, run.parallelism = plan_shards, parallelism  # a _cores.Parallelism
    run.settle(planned, crds_env, crds_context, jobs, executor_kind)
    tasks = run.make_tasks(planned, validate)
    executor = run.executor(pool, len(tasks), max_tasks_per_worker, dask_options)
    return run.execute(executor, tasks, planned, force=force, checksum=checksum,
                       previews=previews, remove_if_refused=remove_if_refused)


class _Run:
    """The state of one :func:`run_tasks` call, step by step."""

    def __init__(self, stage: Stage, outdir: Path, *, parameters: dict, extra_env: dict | None,
                 on_event: Callable | None, command: str, keep_temp: bool = False,
                 shard=None):
        self.stage, self.outdir, self.parameters = stage, outdir, parameters
        self.keep_temp, self.shard = keep_temp, shard
        self.extra_env, self.on_event, self.command = extra_env, on_event, command
        self.start = time.time()
        self.versions = software_versions((stage.package,) if stage.package else ())
        self.manifest = Manifest.load(outdir, shared=shard is not None)
        self.claims = None  # a jwstrun.locking.TaskLocks, for shards
        self.plan_shards: dict | None = None
        self.parallelism = None
        self.results: list[TaskResult] = []
        self.prefetch_s = 0.0
        # The extra environment (STPIPE_DISABLE_CRDS_STEPPARS) changes what runs.
        self.fingerprint_parameters = dict(parameters)
        if extra_env:
            self.fingerprint_parameters["_environment"] = dict(sorted(extra_env.items()))

    def emit(self, kind: str, **info) -> None:
        if self.on_event is not None:
            self.on_event(kind, **info)

    def fingerprint(self, task: Task) -> str:
        parameters = self.fingerprint_parameters
        if task.corrections:  # which steps, with what, and the exposure sets they read
            parameters = {**parameters, **correction_fingerprint(task)}
        if task.sweep:  # a sweep's variant: its values
            parameters = {**parameters, "_sweep": task.sweep}
        return compute_fingerprint(self.stage.name, task.inputs, parameters,
                                   self.versions, self.context)

    def settle(self, planned: list[Planned], crds_env: dict, crds_context: str | None,
               jobs: int | None, executor_kind: str) -> None:
        """-j, the CRDS context and the workers' environment, before any task exists."""
        from .. import refs
        from .._system import default_jobs

        self.jobs_reason = "-j"
        if jobs is None:
            jobs, self.jobs_reason = default_jobs(len(planned),
                                                  bytes_per_worker(self.stage, planned))
        self.jobs = jobs
        self.on_dask = executor_kind == "dask"
        # A Dask worker shares its node with other workers: it is a pool worker.
        check_maximum_cores(self.parameters, max(jobs, 2) if self.on_dask else jobs)
        self.in_pool = jobs > 1 or self.on_dask
        limited = self.in_pool or bool(self.parallelism and self.parallelism.threads_limited)
        if self.parallelism is not None:
            self.jobs_reason = self.parallelism.reason
            log.info("parallelism: %s (%s)", self.parallelism.mode.replace("_", " "),
                     self.parallelism.reason)
        # The parent settles CRDS first: the context is pinned for every worker,
        # and it is part of each task's fingerprint.
        refs.apply_crds_environment(crds_env)
        self.context = refs.context_in_use(crds_context, purpose="run")
        self.worker_env = worker_env(crds_env, self.context, self.extra_env, limited)

    @property
    def _in_step(self) -> bool:
        """One exposure at a time, its steps starting processes (runner._cores)."""
        return self.parallelism is not None and self.parallelism.mode == "in_step"

    def make_tasks(self, planned: list[Planned], validate: bool) -> list[Task]:
        # We hold the lock, so anything in the temporary area is left over from a
        # run that was killed: remove it before new tasks write there.  jwstrun's
        # own directories are never written through a symlink planted in OUTDIR.
        for name in (TMP_DIRNAME, LOG_DIRNAME, INTERMEDIATE_DIRNAME):
            if (self.outdir / name).is_symlink():
                log.warning("%s: was a symbolic link; replaced by a directory.",
                            self.outdir / name)
                (self.outdir / name).unlink()
        if self.shard is None:  # other shards' temporary directories are in use
            shutil.rmtree(self.outdir / TMP_DIRNAME, ignore_errors=True)
        tasks = make_tasks(planned, self.outdir, self.parameters, self.in_pool, validate,
                           keep_temp=self.keep_temp, corrections=self.corrections,
                           exposure_sets=self.exposure_sets)
        for task in tasks:
            task.env = dict(self.worker_env)  # travels with the task to wherever it runs
            if self.parallelism is not None and self.parallelism.maximum_cores:
                task.maximum_cores = self.parallelism.maximum_cores
        return tasks

    def executor(self, pool, n_tasks: int, max_tasks_per_worker: int, dask_options):
        """The executor the tasks go to: the early pool resized, a new local pool, or Dask."""
        def on_worker_event(ev):
            self.emit(ev.kind, task_id=ev.task_id, worker=ev.worker, step=ev.step, pid=ev.pid)

        size = min(self.jobs, n_tasks) or 1
        if pool is not None and not self.on_dask:
            # Started before planning: the workers have been importing jwst
            # meanwhile. Now the pool gets its final size and the full environment.
            pool.max_tasks_per_child = max_tasks_per_worker
            pool.on_event = on_worker_event
            pool.resize(size, env=self.worker_env)
            return pool
        if pool is not None:
            pool.shutdown(cancel=True)
        if not self.on_dask:
            return local_pool(self.stage, size, self.worker_env, max_tasks_per_worker,
                              on_event=on_worker_event, daemon=not self._in_step)
        # Same tasks, same run_task: only submitting and gathering differ.
        # Connect now, before the run is recorded: a bad address is a plain error.
        from ..executors import DaskExecutor

        executor = DaskExecutor(run_task, lost_task_result, options=dask_options, jobs=size,
                                env=self.worker_env, on_event=on_worker_event).start()
        self.jobs, self.jobs_reason = executor.jobs, executor.jobs_reason
        return executor

    def execute(self, executor, tasks: list[Task], planned: list[Planned], *, force: bool,
                checksum: bool, previews: bool, remove_if_refused: list | None) -> RunSummary:
        """Skip, refuse or run every task; the manifest records each as it ends."""
        by_plan = {t.task_id: p for t, p in zip(tasks, planned, strict=True)}
        hasher: _InputHasher | None = None
        refused: Exception | None = None
        to_run: list[Task] = []
        try:
            # Workers import jwst while this process decides what is up to date and
            # prefetches; inputs of the tasks that run are hashed in a thread of this
            # process while the workers work (only needed for the manifest).
            executor.start()
            checksums: dict[str, str | None] = {}  # path -> sha256, for every task of this run
            self.results, to_run = split_up_to_date(tasks, self.manifest, self.outdir,
                                                    self.fingerprint, checksums, force=force,
                                                    checksum=checksum)
            refused = self._refusal(to_run, by_plan)
            if refused is not None:
                raise refused
            to_run = self._claim(to_run)
            if self.plan_shards is not None:
                self.manifest.set_plan(self.stage.name, self.plan_shards,
                                       self.shard.count if self.shard else None)
            self.emit("plan", stage=self.stage.name, total=len(tasks), to_run=len(to_run),
                      skipped=len(self.results),
                      jobs=self.jobs, jobs_reason=self.jobs_reason,
                      tasks=[t.task_id for t in to_run], context=self.context)
            for skipped in list(self.results):
                self.emit("done", result=skipped)
            if to_run:
                unresolved = self._prefetch(to_run)
                if remove_if_refused:
                    remove_if_refused.clear()
                if previews:
                    _mark_previews(tasks, to_run, self.jobs, self.on_dask)
                submitted = self._submit(executor, to_run, unresolved)
                hasher = _InputHasher(submitted, checksums).start()
                self._gather(executor, {t.task_id: t for t in tasks}, hasher)
        except BaseException as exc:
            self._stop(executor, hasher, record=exc is not refused)
            raise
        # Nothing ran: the warming workers are not needed, stop them at once.
        executor.shutdown(cancel=not to_run)
        self._release_claims()
        self.manifest.add_run(self._run_entry())
        _tidy_tmp(self.outdir)
        order = {t.task_id: i for i, t in enumerate(tasks)}
        self.results.sort(key=lambda r: order.get(r.task_id, 0))
        return RunSummary(
            pipeline=self.stage.name, outdir=self.outdir, manifest=self.manifest.path,
            results=self.results, tasks={t.task_id: t for t in tasks}, jobs=self.jobs,
            jobs_reason=self.jobs_reason, wall_s=time.time() - self.start,
            crds_context=self.context, prefetch_s=self.prefetch_s,
            parallelism=self.parallelism.to_dict() if self.parallelism else None,
        )

    def _claim(self, to_run: list[Task]) -> list[Task]:
        """A shard claims each task it is to run; a task another live run claimed is left
        to that run (a warning names it)."""
        if self.shard is None:
            return to_run
        from ..locking import TaskLocks

        self.claims = TaskLocks(self.outdir, {
            "pid": os.getpid(), "host": socket.gethostname(), "shard": str(self.shard),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.start)),
            "command": self.command, "batch_job_id": batch_job_id(),
        })
        claimed = []
        for task in to_run:
            holder = self.claims.claim(task.task_id)
            if holder is None:
                claimed.append(task)  # run_task clears what a killed run left in its workdir
            else:
                log.warning("%s: left to the run that is working on it (pid %s on %s, shard "
                            "%s).", task.task_id, holder.get("pid"), holder.get("host"),
                            holder.get("shard") or "-")
        return claimed

    def _release_claims(self) -> None:
        if self.claims is not None:
            self.claims.close()

    def _refusal(self, to_run: list[Task], by_plan: dict[str, Planned]) -> Exception | None:
        """The memory preflight's refusal of a task that has to run (nothing ran yet), or a
        product another task owns; None when every task may run."""
        refused = next((by_plan[t.task_id].refused for t in to_run
                        if by_plan[t.task_id].refused), None)
        return refused or _replacement([(t, by_plan[t.task_id]) for t in to_run],
                                       self.manifest, self.outdir)

    def _prefetch(self, to_run: list[Task]) -> dict[str, str]:
        """Prefetch the references of every exposure to run; path -> why crds cannot
        serve it (an exposure crds cannot serve fails its own task, not the run)."""
        from .. import refs

        t0 = time.time()
        exposures = [p for t in to_run for p, e in zip(t.input_paths, t.inputs, strict=True)
                     if e["role"] not in ("association", "grid")]
        unresolved = refs.prefetch(exposures, context=self.context, pipelines=(self.stage.name,),
                                   steps=self.parameters.get("steps"),
                                   per_exposure=True, purpose="run").unresolved
        self.prefetch_s = time.time() - t0
        self.emit("prefetch", seconds=self.prefetch_s, context=self.context)
        # A Step run on its own (jwstrun step) prefetches forgivingly (stpipe logs a type
        # the context lacks, such as clean_flicker_noise's pastasoss for NIRCam) and asks
        # for what it needs as it runs: nothing is refused here.
        return {} if self.stage.is_step else unresolved

    def _submit(self, executor, to_run: list[Task], unresolved: dict[str, str]) -> list[Task]:
        """Submit every task whose inputs crds could serve; record the others as failed."""
        submitted = []
        for task in to_run:
            reasons = [unresolved[p] if len(task.inputs) == 1 else
                       f"{os.path.basename(p)}: {unresolved[p]}"
                       for p in map(os.path.abspath, task.input_paths) if p in unresolved]
            if not reasons:
                executor.submit(task)
                submitted.append(task)
                continue
            now = time.time()
            self._record(task, TaskResult(task_id=task.task_id, status="failed",
                                          error=reasons[0], error_type="CrdsError", start=now,
                                          end=now, crds_context=self.context))
        return submitted

    def _gather(self, executor, by_id: dict[str, Task], hasher: _InputHasher) -> None:
        for result in executor.as_completed():
            task = by_id[result.task_id]
            hasher.wait(task)
            if all(e["sha256"] for e in task.inputs):
                task.fingerprint = self.fingerprint(task)
            self._record(task, result)

    def _record(self, task: Task, result: TaskResult) -> None:
        record = manifest_record(task, result, self.versions, self.context)
        self.manifest.record(record.to_dict())
        if self.claims is not None:
            self.claims.release(task.task_id)
        self.results.append(result)
        self.emit("done", result=result)

    def _stop(self, executor, hasher: _InputHasher | None, record: bool) -> None:
        """After an error or an interrupt: stop the workers, clear the temporary area, and
        record the run as interrupted (unless refused before anything ran)."""
        if hasher is not None:
            hasher.stop()
        executor.shutdown(cancel=True)
        # The workers are stopped and we still hold the lock: nothing of ours runs there now.
        if not self.keep_temp and self.shard is None:
            shutil.rmtree(self.outdir / TMP_DIRNAME, ignore_errors=True)
        elif not self.keep_temp and self.claims is not None:
            for task_id in list(self.claims.held):
                shutil.rmtree(self.outdir / TMP_DIRNAME / task_id, ignore_errors=True)
        self._release_claims()
        if not record:  # refused before anything ran: not a run to record
            return
        try:
            self.manifest.add_run(self._run_entry(interrupted=True))
        except JwstrunError as error:  # the manifest may be what failed: keep the first error
            log.debug("%s", error)

    def _run_entry(self, interrupted: bool = False) -> dict:
        counts = {"ok": 0, "skipped": 0, "failed": 0}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        return {
            "command": self.command,
            "start": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.start)),
            "wall_s": round(time.time() - self.start, 3),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "batch_job_id": batch_job_id(),
            "shard": str(self.shard) if self.shard else None,
            "counts": counts,
            "interrupted": interrupted,
            # what jwstrun reproduce/export need besides the task records
            "stage": self.stage.name,
            "crds": {k: v for k, v in (getattr(self, "worker_env", None) or {}).items()
                     if k in ("CRDS_PATH", "CRDS_SERVER_URL", "CRDS_CONTEXT")},
            "environment": dict(self.extra_env or {}),
            **({"parallelism": self.parallelism.to_dict()} if self.parallelism else {}),
        }


def _mark_previews(tasks: list[Task], to_run: list[Task], jobs: int, on_dask: bool) -> None:
    """Which tasks draw the report's previews: the first by product name, as many as the
    report shows; each with a helper process when the local workers leave a CPU idle."""
    from ..look._worker import MAX_TASKS_WITH_PREVIEWS
    from .._system import cpu_count

    idle_cpu = not on_dask and cpu_count() > min(jobs, len(to_run))
    for task in sorted(tasks, key=lambda t: t.product)[:MAX_TASKS_WITH_PREVIEWS]:
        task.previews, task.preview_helper = True, idle_cpu


def _tidy_tmp(outdir: Path) -> None:
    for name in (TMP_DIRNAME, INTERMEDIATE_DIRNAME):
        try:
            (outdir / name).rmdir()  # only when empty
        except OSError:
            pass
