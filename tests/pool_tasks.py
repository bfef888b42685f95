"""Small picklable task functions for executor tests (imported by spawned workers)."""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
from dataclasses import dataclass


PARENT_MARK = False


@dataclass
class PoolTask:
    task_id: str
    action: str = "echo"
    seconds: float = 0.0


def run_pool_task(task: PoolTask, progress):
    """Echo the worker's pid and environment; 'die' kills the worker, 'raise' raises."""
    progress(task.task_id, "first")
    if task.seconds:
        time.sleep(task.seconds)
    if task.action == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if task.action == "raise":
        raise ValueError(f"bad task {task.task_id}")
    progress(task.task_id, "second")
    return {
        "task_id": task.task_id,
        "status": "ok",
        "pid": os.getpid(),
        "env": os.environ.get("JWSTRUN_TEST_ENV"),
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
        "warm_imported": "json.tool" in sys.modules,
        # Set by the test in the parent; a forked worker would inherit it.
        "parent_mark": PARENT_MARK,
        "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def lost_result(task: PoolTask, reason: str):
    return {"task_id": task.task_id, "status": "failed", "error": reason}
