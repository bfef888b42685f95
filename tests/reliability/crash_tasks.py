"""Picklable task functions that crash their worker in different ways (imported by spawned
workers of jwstrun.executors.LocalExecutor)."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass


@dataclass
class CrashTask:
    task_id: str
    action: str = "ok"
    seconds: float = 0.0


def run_crash_task(task: CrashTask, progress):
    """'ok' returns; 'exit' calls os._exit(3) mid-task; 'segv' dies by SIGSEGV; 'abort' by
    SIGABRT; 'raise' raises; 'systemexit' calls sys.exit inside the task."""
    progress(task.task_id, "working")
    if task.seconds:
        time.sleep(task.seconds)
    if task.action == "exit":
        os._exit(3)
    if task.action == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if task.action == "abort":
        os.abort()
    if task.action == "raise":
        raise RuntimeError(f"task {task.task_id} broke")
    if task.action == "systemexit":
        raise SystemExit(5)
    return {"task_id": task.task_id, "status": "ok", "pid": os.getpid()}


def lost_result(task: CrashTask, reason: str):
    return {"task_id": task.task_id, "status": "failed", "error": reason}
