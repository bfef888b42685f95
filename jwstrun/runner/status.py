"""``jwstrun status OUTDIR``: what is done, failed, running and missing, across shards.

Read from OUTDIR alone: the manifest's records and the plans the runs recorded
(:meth:`jwstrun.manifest.Manifest.set_plan`: every task id of a stage's last plan
and its shard), the task locks of shard runs and the lock of a whole run
(:mod:`jwstrun.locking`).  A task is

- ``done``: its record is ok (or up to date) and its products are all there;
- ``failed``: its last record failed;
- ``running``: a live run has claimed it (a shard's task lock, or the lock of a
  whole run that planned it and has not recorded it since it started);
- ``missing``: planned but none of the above (never run, or its run was killed);
- ``empty``: a sky tile no exposure overlaps (``image3 --tile-size``): nothing to write.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from ..errors import InputError
from ..manifest import MANIFEST_NAME, check_manifest

__all__ = ["OutdirStatus", "TaskStatus", "outdir_status", "STATES"]

STATES = ("done", "failed", "running", "missing", "empty")


@dataclass
class TaskStatus:
    """One task's state; ``shard`` its shard in the plan (None when unsharded),
    ``detail`` the error, the run working on it, or the products missing."""

    task_id: str
    stage: str | None
    state: str
    shard: int | None = None
    detail: str | None = None


@dataclass
class OutdirStatus:
    """Every task of an OUTDIR and what counts them."""

    outdir: Path
    tasks: list[TaskStatus] = field(default_factory=list)
    #: the live runs in OUTDIR: pid, host, shard, started, command
    runs: list[dict] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts = {state: sum(t.state == state for t in self.tasks) for state in STATES}
        if not counts["empty"]:  # only runs with sky tiles have empty tasks
            del counts["empty"]
        return counts

    @property
    def complete(self) -> bool:
        """Every planned task done (or an empty tile)."""
        return bool(self.tasks) and all(t.state in ("done", "empty") for t in self.tasks)

    def to_dict(self) -> dict:
        return {"outdir": str(self.outdir), "complete": self.complete, "counts": self.counts,
                "tasks": [asdict(t) for t in self.tasks], "runs": self.runs}


def outdir_status(outdir: str | os.PathLike) -> OutdirStatus:
    """The state of every task planned or recorded in ``outdir`` (:class:`InputError`
    when it holds no jwstrun manifest)."""
    from ..locking import LOCK_NAME, live_task_locks, lock_age, lock_is_stale, read_lock

    outdir = Path(outdir)
    path = outdir / MANIFEST_NAME
    try:
        data, _problems = check_manifest(json.loads(path.read_text()))
    except FileNotFoundError:
        raise InputError(
            f"{outdir}: no {MANIFEST_NAME} here, so no jwstrun run has recorded anything yet. "
            "Give the -o OUTDIR of a jwstrun image2/image3 run."
        ) from None
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f"{path}: unreadable manifest ({exc}).") from None
    live = live_task_locks(outdir)
    claimed = {name[:-len(".lock")]: info for name, info in live.items()
               if not name.startswith("run-")}
    runs = [info for name, info in live.items() if name.startswith("run-")]
    whole = read_lock(outdir / LOCK_NAME)
    if whole and lock_is_stale(whole, age=lock_age(outdir / LOCK_NAME)):
        whole = None
    if whole:
        runs.insert(0, whole)
    status = OutdirStatus(outdir=outdir, runs=runs)
    planned: dict[str, tuple[str, int | None, bool]] = {}
    for stage, plan in (data.get("plans") or {}).items():
        # planned by the whole run that holds OUTDIR now
        by_live_run = bool(whole) and (plan.get("pid"), plan.get("host")) == (
            whole.get("pid"), whole.get("host"))
        for task_id, shard in plan["tasks"].items():
            planned[task_id] = (stage, shard, by_live_run)
    for task_id in sorted(set(planned) | set(data["tasks"])):
        stage, shard, by_live_run = planned.get(task_id, (None, None, False))
        record = data["tasks"].get(task_id)
        status.tasks.append(_task_status(outdir, task_id, stage or (record or {}).get("pipeline"),
                                         shard, record, claimed.get(task_id),
                                         whole if by_live_run else None))
    return status


def _task_status(outdir: Path, task_id: str, stage, shard, record: dict | None,
                 claim: dict | None, whole: dict | None) -> TaskStatus:
    status = TaskStatus(task_id=task_id, stage=stage, state="missing", shard=shard)
    if claim is not None:
        status.state = "running"
        status.detail = _holder(claim)
        return status
    if whole is not None and (record is None or _older_than(record, whole)):
        status.state, status.detail = "running", _holder(whole)
        return status
    if record is None:
        return status
    if record.get("status") == "failed":
        status.state, status.detail = "failed", record.get("error")
        return status
    if record.get("status") == "empty":
        status.state, status.detail = "empty", "no exposure overlaps this tile"
        return status
    absent = [name for name in record.get("outputs") or [] if not (outdir / name).exists()]
    if absent:
        status.detail = f"products gone: {', '.join(absent[:3])}"
        return status
    status.state = "done"
    return status


def _holder(info: dict) -> str:
    shard = f"shard {info['shard']}, " if info.get("shard") else ""
    job = f", job {info['batch_job_id']}" if info.get("batch_job_id") else ""
    return f"{shard}pid {info.get('pid')} on {info.get('host')}{job}"


def _older_than(record: dict, lock: dict) -> bool:
    """The record ended before the run holding ``lock`` started (a stale record)."""
    try:
        started = datetime.strptime(lock["started"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except (KeyError, TypeError, ValueError):
        return False
    return (record.get("end") or 0) < started
