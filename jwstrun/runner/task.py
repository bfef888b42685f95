"""The worker side: :func:`run_task`, the one function a worker runs.

The local pool and the Dask executor alike call it (docs/dask.md).  It calls
``Pipeline.call(input, save_results=True, output_dir=<tmp>, configure_log=False,
**parameters)`` -- the class read from the task's row of :mod:`jwstrun.stages`
-- in ``OUTDIR/.jwstrun-tmp/<task-id>/out``, validates the products, and only
then moves them into OUTDIR with ``os.replace``: a run killed at any moment
never leaves a file in OUTDIR that looks finished but is not.  Other files the
pipeline wrote (a step's ``save_catalogs``...) go, unvalidated, to
``OUTDIR/intermediate/<task-id>/`` (:mod:`._intermediates`).

While the pipeline runs, :class:`._task_logging._StepWatcher` follows stpipe's log records
(``Step %s running`` / ``Step %s done`` / ``Step skipped.`` / ``Step %s
parameters are``) for the live progress, the step times and the resolved
parameters of the manifest; tests/test_cli_run.py runs a real pipeline and
fails if any of them comes back empty, so a change in stpipe breaks a test
rather than a report.

The worker's only module-level state is :data:`WORKER_STATE` (tasks run and
peak memory of this process, reported with each result);
:func:`WorkerState.clear` resets it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .._system import batch_job_id
from ..errors import JwstrunError, PipelineError
from ..inputs import is_association
from ..manifest import TaskResult
from ..stages import Stage, get_stage
from ._corrections import CorrectionFailed, corrected_input, required_status
from ._intermediates import publish_intermediates, split_outputs, step_output_dirs
from ._task_logging import _parse_logged_parameters, _StepWatcher, _TaskLogging
from ._step import in_directory

__all__ = ["Task", "TaskResult", "WorkerState", "WORKER_STATE", "run_task", "lost_task_result",
           "stage_class"]

log = logging.getLogger(__name__)


@dataclass
class Task:
    """One pipeline call; picklable, sent to a worker."""

    task_id: str
    pipeline: str  # the stage name, a row of jwstrun.stages ("image2")
    input: str
    product: str
    inputs: list[dict]
    outdir: str
    workdir: str
    log_file: str
    parameters: dict
    fingerprint: str
    in_pool: bool = False
    validate: bool = True
    expect_background: bool = False
    #: Environment the task runs with (the CRDS worker settings); applied by
    #: run_task itself, so a Dask worker needs no set-up of its own.
    env: dict = field(default_factory=dict)
    #: image3: the mosaic and memory estimate and the mode chosen (jwstrun.mosaic)
    memory: dict | None = None
    #: draw the report's previews of the products on the worker side (jwstrun.look._worker),
    #: in a helper process that starts with the task when a CPU is left idle
    previews: bool = False
    preview_helper: bool = False
    #: the names of the stage's products this task writes (runner.expected_outputs);
    #: anything else the pipeline writes is an intermediate (runner._intermediates).
    #: None: every file is a product.
    expected_outputs: list[str] | None = None
    #: keep ``workdir`` after the task (``--keep-temp``, for debugging)
    keep_temp: bool = False
    #: jwstrun step (runner._step): the files given to the step as one list (a set
    #: step), the directory it runs in (stpipe's input_dir for a list: where it finds
    #: files beside its inputs) and the status keyword its products must have COMPLETE
    call_inputs: list[str] | None = None
    input_dir: str | None = None
    status_keyword: str | None = None
    #: steps to run before the pipeline (a profile's ``before:``, :mod:`._corrections`)
    corrections: list[dict] = field(default_factory=list)
    #: exposure path -> the exposures a set step among them reads with it (persist)
    exposure_sets: dict[str, list[dict]] = field(default_factory=dict)
    #: steps skipped before this task whose status its products carry (a sky tile's
    #: i2d has its _crf files' S_TWKREG...; runner._tiles); None: those ``parameters`` skip
    expected_skips: list[str] | None = None

    @property
    def input_paths(self) -> list[str]:
        return [entry["path"] for entry in self.inputs]

    @property
    def stage(self) -> Stage:
        """The task's row of the stage table (``pipeline`` is its name)."""
        return get_stage(self.pipeline)


def _skipped_steps(parameters: dict) -> list[str]:
    return sorted(
        step for step, pars in (parameters.get("steps") or {}).items()
        if isinstance(pars, dict) and pars.get("skip") is True
    )


def _validate_products(paths: list[Path], task: Task) -> dict:
    """Check products with jwstrun.validate (and, for ``jwstrun step``, the step's own
    status keyword); errors make the task fail before the move."""
    from ..validate import validate_file

    report: dict = {"files": {}, "errors": [], "warnings": 0}
    skips = _skipped_steps(task.parameters) if task.expected_skips is None \
        else task.expected_skips
    for path in paths:
        file_report = validate_file(
            path, expected_skips=skips, expect_background=task.expect_background,
            required_status=required_status(task),
        )
        report["files"][path.name] = [f.to_dict() for f in file_report.findings]
        report["warnings"] += len(file_report.warnings)
        report["errors"].extend(f"{path.name}: {f.message}" for f in file_report.errors)
        if task.status_keyword:  # jwstrun step: the step's own status keyword
            from ._step import status_problem

            problem = status_problem(path, task.status_keyword, task.stage.alias)
            report["errors"].extend([problem] if problem else [])
    return report


class WorkerState:
    """What one worker process remembers between tasks: how many it ran and the
    peak memory of the process over them (both reported with every result)."""

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        """Start counting anew (a notebook reusing its process, tests)."""
        self.tasks = 0
        self.peak_mb = 0.0


#: This process's :class:`WorkerState` (the only module-level state of the worker side).
WORKER_STATE = WorkerState()

def _reset_peak_rss() -> None:
    # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM and ru_maxrss)
    # of this process, so the peak measured after the task is the task's own.
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def _proc_status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _peak_rss_mb() -> float:
    value = _proc_status_mb("VmHWM")
    if value is None:
        import resource

        value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return value


def stage_class(pipeline: str):
    """A stage's stpipe class, as a worker loads it (a ``jwst.pipeline`` module
    without the package's other pipelines, :meth:`jwstrun.stages.Stage.load_class`)."""
    return get_stage(pipeline).load_class(lean=True)


def _pool_parameters(cls, parameters: dict) -> dict:
    """Inside a pool, steps that can use several cores get maximum_cores='1'."""
    parameters = json.loads(json.dumps(parameters))  # deep copy
    steps = parameters.setdefault("steps", {})
    for name, step_cls in getattr(cls, "step_defs", {}).items():
        if "maximum_cores" in (getattr(step_cls, "spec", "") or ""):
            steps.setdefault(name, {}).setdefault("maximum_cores", "1")
    if not steps:
        parameters.pop("steps")
    return parameters


def _close_models(result) -> None:
    items = result if isinstance(result, (list, tuple)) else [result]
    for item in items:
        close = getattr(item, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001
                pass


def _describe_error(exc: BaseException, task: Task | None = None) -> str:
    import errno

    # astropy checks free space itself and raises a plain OSError (no errno) that
    # starts "Not enough space on disk"; the disk is just as full.
    full = isinstance(exc, OSError) and (
        exc.errno == errno.ENOSPC or str(exc).startswith("Not enough space on disk")
    )
    if full:
        return (
            f"disk full while writing ({exc}). Free space in the output directory and "
            "re-run: finished tasks are kept and skipped."
        )
    if isinstance(exc, MemoryError):
        if task is None or task.in_pool:
            return "out of memory. Re-run with fewer parallel jobs (-j)."
        # A task with a memory plan (jwstrun.mosaic) has an on-disk mode to fall back on.
        advice = (
            "with --low-memory (the pipeline's on-disk mode, in_memory=False), or on fewer "
            "exposures per association" if task.memory is not None else "or on smaller inputs"
        )
        return (
            f"out of memory with a single job (-j 1). Run it with more memory available, {advice} "
            "(and check parameters that enlarge the products, such as resample's "
            "pixel_scale_ratio)."
        )
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, JwstrunError) else text


def _apply_task_environment(env: dict) -> None:
    """Make a task's environment this process's (a no-op in a local pool worker, which has it).

    A long-lived Dask worker may have run another jwstrun run with another
    CRDS cache or context: CRDS settings go through refs.apply_crds_environment,
    which also resets crds' in-process state when crds is already imported.
    """
    changed = {k: str(v) for k, v in (env or {}).items() if os.environ.get(k) != str(v)}
    if not changed:
        return
    os.environ.update({k: v for k, v in changed.items() if not k.startswith("CRDS_")})
    if any(k.startswith("CRDS_") for k in changed):
        from ..refs import apply_crds_environment

        apply_crds_environment({k: str(v) for k, v in env.items() if k.startswith("CRDS_")})


class _on_disk_directory:
    """With ``in_memory=False``, work in the task's directory while the pipeline runs.

    jwst 3.0's on-disk ModelLibrary and stcal's on-disk median write their
    temporary files into the current directory; this keeps them under
    ``OUTDIR/.jwstrun-tmp/<task-id>`` (removed with the task's directory)
    instead of wherever the worker was started.  Also when the directory's path
    has a '$': the pipeline is then given relative paths (see :func:`_stpipe_path`).
    """

    def __init__(self, parameters: dict, workdir: Path):
        from ..mosaic import spec_bool

        on_disk = spec_bool(parameters.get("in_memory", True)) is False
        self.workdir = workdir if on_disk or "$" in str(workdir) else None
        self.saved: str | None = None

    def __enter__(self):
        if self.workdir is not None:
            self.saved = os.getcwd()
            os.chdir(self.workdir)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            os.chdir(self.saved)


def _stpipe_path(path: Path, workdir: Path) -> str:
    """``path`` as stpipe may be given it: without a '$' where it would be expanded.

    stpipe expands ``$VARS`` in ``output_dir`` and, with jwst, in association
    paths (not in member or exposure paths).  An association is then given as a
    copy in ``workdir`` with absolute member paths; a path in ``workdir`` relative
    to it (the current directory meanwhile when its path has a '$').
    """
    if "$" not in str(path):
        return str(path)
    if is_association(path) and workdir not in path.parents:
        data = json.loads(path.read_text())
        for product in data.get("products") or []:
            for member in product.get("members") or []:
                member["expname"] = str(path.parent / member["expname"])
        path = workdir / "asn" / path.name.replace("$", "_")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=4))
    if "$" in str(workdir) and (path == workdir or workdir in path.parents):
        return os.path.relpath(path, workdir)
    return str(path)


def run_task(task: Task, progress: Callable | None = None) -> TaskResult:
    """Run one pipeline call in ``task.workdir`` and move its products into OUTDIR.

    Never raises for a pipeline failure: the returned :class:`TaskResult` has
    ``status='failed'``, the reason and, where known, the failing step.
    """
    started = time.time()
    _apply_task_environment(task.env)
    _reset_peak_rss()
    WORKER_STATE.tasks += 1
    result = TaskResult(
        task_id=task.task_id, status="failed", start=started, log_file=task.log_file,
        worker_pid=os.getpid(), host=socket.gethostname(), tasks_in_worker=WORKER_STATE.tasks,
        batch_job_id=batch_job_id(),
    )
    workdir = Path(task.workdir)
    out = workdir / "out"
    watcher = _StepWatcher(task.task_id, progress)
    previews = None
    try:
        shutil.rmtree(out, ignore_errors=True)  # leftovers of a killed run
        out.mkdir(parents=True)
        if task.previews:
            from ..look._worker import TaskPreviews

            previews = TaskPreviews(workdir, helper=task.preview_helper, inputs=task.inputs,
                                    name=task.product)
            watcher.progress = previews.watch(out, watcher.progress)
        if _call_pipeline(task, result, watcher, progress):
            _publish_products(task, result, out, previews)
    except JwstrunError as exc:
        result.error = f"{task.task_id}: {exc}"
        result.error_type = type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - one task's failure must not stop the others
        result.error = f"{task.task_id}: {_describe_error(exc, task)}"
        result.error_type = type(exc).__name__
    finally:
        if previews is not None:
            previews.close()
        if task.keep_temp:
            result.temp_dir = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        _measure(result, started)
    return result


def _call_pipeline(task: Task, result: TaskResult, watcher: "_StepWatcher",
                   progress: Callable | None) -> bool:
    """Run the stage's pipeline into ``workdir/out`` with its log in the task's log
    file; False (and the failure in ``result``) when the pipeline raised."""
    stage = task.stage
    workdir = Path(task.workdir)
    with _TaskLogging(Path(task.log_file), watcher):
        try:
            cls = stage.load_class(lean=True)
            parameters = _pool_parameters(cls, task.parameters) if task.in_pool else task.parameters
            out = _stpipe_path(workdir / "out", workdir)
            parameters = step_output_dirs(parameters, out)
            if progress is not None:
                progress(task.task_id, stage.alias)
            with in_directory(task.input_dir), _on_disk_directory(parameters, workdir):
                given, result.corrections = corrected_input(task, workdir / "out", watcher)
                watcher.parameters_text = None  # the pipeline's own, from here on
                if task.call_inputs is not None:  # a set step: its files as one list
                    given = task.call_inputs
                models = cls.call(
                    given if not isinstance(given, str) else _stpipe_path(Path(given), workdir),
                    output_dir=out,
                    save_results=True,
                    configure_log=False,
                    **parameters,
                )
            _close_models(models)
            _close_models(given)
            del models, given
        except CorrectionFailed as exc:
            if watcher.current:
                watcher.status[watcher.current] = "failed"
            result.failed_step, result.error_type = exc.step, type(exc.__cause__).__name__
            result.error = str(exc)
            logging.getLogger("stpipe").exception("jwstrun: task %s failed", task.task_id)
            return False
        except Exception as exc:
            step = watcher.current
            result.failed_step = step
            if step:
                watcher.status[step] = "failed"
            result.error_type = type(exc).__name__
            where = f" in step {step}" if step and step not in (stage.alias, stage.class_name) \
                else ""
            result.error = (f"{stage.alias} failed{where} on {Path(task.input).name}: "
                            f"{_describe_error(exc, task)}")
            logging.getLogger("stpipe").exception("jwstrun: task %s failed", task.task_id)
            return False
        finally:
            result.step_times = dict(watcher.times)
            result.step_status = dict(watcher.status)
            result.resolved_parameters = _parse_logged_parameters(watcher.parameters_text)
    return True


def _publish_products(task: Task, result: TaskResult, out: Path, previews) -> None:
    """Validate the products in ``out``, note their CRDS references, and move them into
    OUTDIR (one atomic rename each), the other files the pipeline wrote into
    OUTDIR/intermediate/<task-id>/ first; :class:`PipelineError` when there are no
    products or they fail validation."""
    outdir = Path(task.outdir)
    alias = task.stage.alias
    products, intermediates = split_outputs(sorted(p for p in out.iterdir() if p.is_file()),
                                            task.expected_outputs)
    if not products:
        wrote = (f" (it wrote only {', '.join(p.name for p in intermediates[:3])}"
                 f"{' ...' if len(intermediates) > 3 else ''})" if intermediates else "")
        raise PipelineError(
            f"{alias} finished but wrote no products for {Path(task.input).name}{wrote}.")
    if task.validate:
        result.validation = _validate_products(products, task)
        if result.validation.get("errors"):
            raise PipelineError(
                "products failed validation: " + "; ".join(result.validation["errors"][:3])
            )
    for path in products:
        context, refs = _product_crds_info(path)
        if context and not result.crds_context:
            result.crds_context = context
        if refs:
            result.references[path.name] = refs
    if previews is not None:  # while the products are in the page cache, before the move
        previews.finish(products)
    # The only moment products appear in OUTDIR: after the pipeline
    # succeeded and the products were checked, one atomic rename each.
    sizes = {p.name: p.stat().st_size for p in products}
    result.intermediates = publish_intermediates(outdir, task.task_id, intermediates)
    for path in products:
        os.replace(path, outdir / path.name)
    if previews is not None:
        result.previews = previews.publish(outdir)
        result.science = previews.science
    result.outputs = [p.name for p in products]
    result.output_sizes = sizes
    result.status = "ok"


def _measure(result: TaskResult, started: float) -> None:
    """End time, wall time and memory of the task (and of its worker so far)."""
    result.end = time.time()
    result.wall_s = round(result.end - started, 3)
    peak = _peak_rss_mb()
    WORKER_STATE.peak_mb = max(WORKER_STATE.peak_mb, peak)
    result.peak_rss_mb = round(peak, 1)
    result.worker_peak_rss_mb = round(WORKER_STATE.peak_mb, 1)
    rss = _proc_status_mb("VmRSS")
    result.rss_after_mb = round(rss, 1) if rss is not None else None


def _product_crds_info(path: Path):
    from ..manifest import product_crds_info

    try:
        return product_crds_info(path)
    except JwstrunError:
        return None, {}


def lost_task_result(task: Task, reason: str) -> TaskResult:
    """Result for a task whose worker died (or raised outside run_task)."""
    now = time.time()
    return TaskResult(
        task_id=task.task_id, status="failed", error=f"{task.task_id}: {reason}",
        error_type="WorkerLost", start=None, end=now, log_file=task.log_file,
    )

