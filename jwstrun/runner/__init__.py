"""One task = one stpipe pipeline call: planning, resume, atomic outputs.

``run_image2`` / ``run_image3`` are what the CLI calls; every stage decision
reads the stage's row (:mod:`jwstrun.stages`).  Where things live:

- :mod:`.plan` -- a stage's inputs -> planned tasks (one per exposure or per
  association, as the row's ``grouping`` says), the image3 memory plan, Tasks;
- :mod:`._stage_inputs` -- input expansion and checks, wrong-stage messages;
- :mod:`._outputs` -- OUTDIR made ready, no task replacing another's product;
- :mod:`._intermediates` -- what a task writes besides its products, in
  ``OUTDIR/intermediate/<task-id>/``;
- :mod:`.resume` -- checksums, fingerprints, what is up to date;
- :mod:`.task` -- the worker side: :func:`run_task`, the step watcher, task logs;
- :mod:`._parent` -- the parent side: :func:`run_tasks`, executors, the manifest;
- :mod:`._step` -- ``jwstrun step``: a step's inputs, output names and set tasks;
- :mod:`.run` -- :func:`run_detector1`, :func:`run_image2`, :func:`run_image3`,
  :func:`run_step`, executor selection;
- :mod:`._cores` -- exposures in parallel or cores inside jump/ramp_fit (detector1);
- :mod:`._chain` -- ``image2 --from uncal``: detector1 then image2.

Module-level state, all clearable with :func:`clear_caches`: the planning's one
remembered header (:data:`._stage_inputs.PLANNING_HEADERS`) and a worker
process's task count and peak memory (:data:`.task.WORKER_STATE`).
"""

from __future__ import annotations

from ..manifest import TaskRecord, TaskResult
from ._outputs import (
    INTERMEDIATE_DIRNAME,
    LOG_DIRNAME,
    TMP_DIRNAME,
    expected_outputs,
    prepare_outdir,
)
from ._parent import RunSummary, run_tasks
from ._stage_inputs import PLANNING_HEADERS, stage_inputs, wrong_stage_message
from .plan import Planned, plan, plan_image2, plan_image3
from .resume import can_skip, compute_fingerprint, file_sha256, software_versions
from .run import EXECUTORS, run_detector1, run_image2, run_image3, run_step, select_executor
from .task import WORKER_STATE, Task, lost_task_result, run_task

__all__ = [
    "Task",
    "TaskResult",
    "TaskRecord",
    "RunSummary",
    "Planned",
    "EXECUTORS",
    "TMP_DIRNAME",
    "LOG_DIRNAME",
    "INTERMEDIATE_DIRNAME",
    "stage_inputs",
    "wrong_stage_message",
    "prepare_outdir",
    "expected_outputs",
    "file_sha256",
    "software_versions",
    "compute_fingerprint",
    "can_skip",
    "plan",
    "plan_image2",
    "plan_image3",
    "run_task",
    "lost_task_result",
    "run_tasks",
    "run_detector1",
    "run_image2",
    "run_image3",
    "run_step",
    "select_executor",
    "clear_caches",
]


def clear_caches() -> None:
    """Forget the runner's module-level state: the remembered planning header, this
    process's worker counters and the rows built for ``jwstrun step``
    (:func:`jwstrun.stages.step_stage`, e.g. after installing a package that registers
    steps) (a long-lived notebook or Dask worker, tests)."""
    from ..stages import step_stage

    PLANNING_HEADERS.clear()
    WORKER_STATE.clear()
    step_stage.cache_clear()
