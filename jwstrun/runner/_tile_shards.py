"""Tiles over every shard: a tiled image3 with ``--shard`` (issue 22; docs/workflows/tiles.md).

A sharded tiled run spreads *both* phases over all the shards, so the tiles of one big
association (one mosaic) run on every array task, not on the one that holds it:

- the ``image3-align`` tasks are sorted by task id and shard K takes every N-th from the
  K-th (as :mod:`jwstrun.runner.shard` does for any task);
- the ``image3-tile`` tasks -- every tile the grids cut, of every association, empty or
  not -- are sorted by task id and split the same way.  The tiles are fixed by the grid
  and the tile size alone, so every shard plans the same set before any ``_crf`` exists.

A shard whose tiles belong to an association another shard aligns waits for that align
task to be done in the shared manifest (:class:`AlignWatch`: up to date as resume
decides it -- record ok, same fingerprint, products there), polling every
:data:`POLL_S` seconds for at most ``JWSTRUN_ALIGN_WAIT_SECONDS`` (:data:`DEFAULT_WAIT_S`);
an align that failed makes its tiles fail at once (a failed result naming the align task
and its log).  ``phase="align"`` runs the first phase only, ``phase="tiles"`` the second
only and refuses when an align it needs is not done (two job arrays, the second
``--dependency=afterok`` on the first).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

from ..errors import ConfigError, PipelineError
from ..manifest import Manifest, TaskResult

__all__ = ["PHASES", "WAIT_ENV", "AlignWatch", "check_phase", "spread", "wait_for_aligns",
           "assemble_when_complete"]

log = logging.getLogger(__name__)

PHASES = ("align", "tiles")
#: how long a shard waits for an align task of another shard (seconds)
WAIT_ENV = "JWSTRUN_ALIGN_WAIT_SECONDS"
DEFAULT_WAIT_S = 6 * 3600
POLL_S = 2.0
#: a failed align record older than this run counts as failed (not as about to be retried
#: by its shard) once that shard has had this long to claim it again
FAILED_GRACE_S = 60.0


def check_phase(phase) -> str | None:
    if phase is None or phase in PHASES:
        return phase
    raise ConfigError(f"phase={phase!r}: choose one of {', '.join(PHASES)} (or neither, for "
                      "both phases in one run).")


def spread(shard, task_ids) -> dict:
    """Task id -> its shard (1-based; None when unsharded), every task id of the plan."""
    if shard is None:
        return dict.fromkeys(task_ids)
    return shard.of(list(task_ids), key=str)


def wait_seconds() -> float:
    text = os.environ.get(WAIT_ENV, "").strip()
    try:
        return float(text) if text else DEFAULT_WAIT_S
    except ValueError:
        raise ConfigError(f"{WAIT_ENV}={text!r}: not a number of seconds.") from None


class AlignWatch:
    """Whether align tasks run by other shards are done, as resume decides it (their
    fingerprint computed here, as the shard running them computes it)."""

    def __init__(self, items, outdir: Path, parameters: dict, kwargs: dict):
        from ._parent import _Run
        from ._tiles import ALIGN_STAGE
        from .plan import make_tasks
        from ..stages import get_stage

        self.outdir, self.start = outdir, time.time()
        self.force = bool(kwargs.get("force"))
        self.run = _Run(get_stage(ALIGN_STAGE), outdir, parameters=parameters,
                        extra_env=kwargs.get("extra_env"), on_event=None,
                        command=kwargs.get("command", "jwstrun"), shard=kwargs.get("shard"))
        self.run.settle(items, kwargs.get("crds_env") or {}, kwargs.get("crds_context"), 1,
                        "local")
        # input is never opened here (only the fingerprint is computed): no copy written
        stand_ins = [dataclasses.replace(i, input=Path(os.devnull)) for i in items]
        self.tasks = make_tasks(stand_ins, outdir, parameters, False, False,
                                corrections=kwargs.get("corrections") or (),
                                exposure_sets=kwargs.get("exposure_sets"))
        self.known: dict = {}

    def states(self) -> dict[str, tuple[str, dict | None]]:
        """Task id -> (``done``, ``failed``, ``running`` or ``pending``, its record)."""
        from ..locking import live_task_locks
        from .resume import split_up_to_date

        manifest = Manifest.load(self.outdir, shared=True)
        done, _ = split_up_to_date(self.tasks, manifest, self.outdir, self.run.fingerprint,
                                   self.known)
        done_ids = {r.task_id for r in done}
        claimed = live_task_locks(self.outdir)
        states = {}
        for task in self.tasks:
            record = manifest.get(task.task_id)
            end = (record or {}).get("end") or 0
            if task.task_id in done_ids and not (self.force and end < self.start):
                state = "done"
            elif f"{task.task_id}.lock" in claimed:
                state = "running"
            elif (record or {}).get("status") == "failed" and (
                    end >= self.start or time.time() - self.start > FAILED_GRACE_S):
                state = "failed"
            else:
                state = "pending"
            states[task.task_id] = (state, record)
        return states


def wait_for_aligns(watch: AlignWatch, need: dict[str, int], owners: dict, shard,
                    outdir: Path) -> tuple[set, list[TaskResult]]:
    """Wait until every align task of ``need`` (task id -> how many tiles of this shard
    need it) is done or failed; (the done ids, a failed result for each failed one).
    :class:`PipelineError` when one is still not done after the wait."""
    limit = wait_seconds()
    deadline = time.monotonic() + limit
    log.info("shard %s: waiting for %d align task(s) of other shards", shard, len(need))
    while True:
        states = {k: v for k, v in watch.states().items() if k in need}
        waiting = [k for k, (state, _) in states.items() if state in ("running", "pending")]
        if not waiting:
            break
        if time.monotonic() >= deadline:
            task_id = waiting[0]
            raise PipelineError(
                f"{task_id}: not done after waiting {limit:.0f} s ({WAIT_ENV}); "
                f"{need[task_id]} tile(s) of shard {shard} need its _crf files and shard "
                f"{owners[task_id]}/{shard.count} aligns it. See `jwstrun status {outdir}`: "
                "submit that shard again if it is missing, then this one; or run the two "
                "phases as two job arrays (--phase align, then --phase tiles).")
        time.sleep(POLL_S)
    done = {k for k, (state, _) in states.items() if state == "done"}
    failed = [_failed_align(k, record, need[k], shard, outdir)
              for k, (state, record) in sorted(states.items()) if state == "failed"]
    return done, failed


def _failed_align(task_id: str, record: dict, n_tiles: int, shard, outdir: Path) -> TaskResult:
    where = f"job {record['batch_job_id']}" if record.get("batch_job_id") else (
        f"pid {record.get('worker_pid')} on {record.get('host')}")
    log_file = record.get("log_file")
    result = TaskResult(
        task_id=task_id, status="failed", error_type="AlignFailed",
        error=(f"the alignment failed in another shard ({where}): {record.get('error')}; "
               f"the {n_tiles} tile(s) of shard {shard} that need its _crf files were not "
               "run"),
        log_file=str(outdir / log_file) if log_file else None)
    log.error("%s: %s", task_id, result.error)
    return result


def check_phase_tiles(watch: AlignWatch, need: dict[str, int], outdir: Path,
                      command: str) -> None:
    """``phase="tiles"``: refuse, before any tile runs, when an align it needs is not done."""
    states = watch.states()
    for task_id in sorted(need):
        state, _ = states[task_id]
        if state != "done":
            first = command.replace("--phase tiles", "--phase align") \
                if "--phase tiles" in command else "the same command with phase='align'"
            raise ConfigError(
                f"phase='tiles': {task_id} is not done in {outdir} ({state}); its tiles need "
                f"its _crf files. Run the align phase first: {first}")


def assemble_when_complete(outdir: Path, planned, layouts, summary, *, force: bool) -> None:
    """``--assemble`` in a shard: each association whose tiles are all done in the shared
    manifest (every shard's) is assembled by the shard that sees it so first; the others
    are left to the shard that finishes their last tile."""
    from ._tile_memory import assemble_all
    from ._tiles import ALIGN_STAGE, TILE_STAGE

    records = Manifest.load(outdir, shared=True).tasks
    status = {k: ("ok" if r.get("status") == "ok" else r.get("status"))
              for k, r in records.items()}
    ready, ready_layouts = [], []
    for item, layout in zip(planned, layouts, strict=True):
        ids = [f"{TILE_STAGE}-{item.product}_{t.name}" for t in layout[2]]
        if all(status.get(i) in ("ok", "empty") for i in ids):
            ready.append(item)
            ready_layouts.append(layout)
        else:
            log.info("%s: tiles of other shards not done yet: the shard that finishes the "
                     "last one assembles the mosaic", item.product)
    if not ready:
        return
    view = dataclasses.replace(summary, results=[
        TaskResult(task_id=k, status=v) for k, v in status.items()
        if k.startswith((f"{ALIGN_STAGE}-", f"{TILE_STAGE}-"))])
    before = len(view.results)
    assemble_all(outdir, ready, ready_layouts, view, force=force)
    summary.results.extend(view.results[before:])
