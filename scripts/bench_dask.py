#!/usr/bin/env python
"""The local pool vs a 2-worker Dask LocalCluster, side by side in one run.

1. image2 over the same N simulated exposures (default 8 x NIRCam SUB320) with
   ``jwstrun.runner.run_image2(..., jobs=2)`` (local pool) and with
   ``executor="dask", jobs=2`` (jwstrun starts a LocalCluster on 127.0.0.1), each into
   a fresh output directory with the simulator's offline CRDS cache.
2. Executor overhead per task: M no-op tasks through ``LocalExecutor`` (2 workers) and
   ``DaskExecutor`` (2-worker LocalCluster), after both are started, so the figure is
   submit + schedule + gather per task and nothing else.

    python scripts/bench_dask.py                 # about 2 minutes on 2 cores
    python scripts/bench_dask.py -n 8 --record   # append the table to docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _benchlib import machine, record


@dataclass
class NoopTask:
    task_id: str


def noop_task(task: NoopTask, progress) -> dict:
    progress(task.task_id, "noop")
    return {"task_id": task.task_id, "status": "ok"}


def noop_lost(task: NoopTask, reason: str) -> dict:
    return {"task_id": task.task_id, "status": "failed", "error": reason}


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


def executor_overhead(n_tasks: int) -> dict[str, float]:
    """Seconds per no-op task through each executor, workers already running."""
    from jwstrun.executors import DaskExecutor, LocalExecutor

    per_task = {}
    for name, executor in (
        ("local", LocalExecutor(2, noop_task, noop_lost, max_tasks_per_child=0)),
        ("dask", DaskExecutor(noop_task, noop_lost, jobs=2)),
    ):
        with executor:
            executor.start()
            # One round first: workers ready (local) and the task function shipped (dask).
            executor.submit(NoopTask("warm-0"))
            executor.submit(NoopTask("warm-1"))
            list(executor.as_completed())
            start = time.perf_counter()
            for i in range(n_tasks):
                executor.submit(NoopTask(f"t{i}"))
            results = list(executor.as_completed())
            per_task[name] = (time.perf_counter() - start) / n_tasks
            assert all(r["status"] == "ok" for r in results), results
    return per_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--exposures", type=int, default=8)
    parser.add_argument("--subarray", default="SUB320")
    parser.add_argument("--noop-tasks", type=int, default=200)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()

    from jwstrun.runner import run_image2
    from jwstrun.simulate import simulate_program

    started = machine()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-dask-"))
    sim = simulate_program(work / "sim", subarray=args.subarray, n_dithers=args.exposures,
                           seed=7, force=True)
    inputs = [str(p) for p in sim.rate_files]
    rows = []
    for name, options in (("local pool, -j 2", {}),
                          ("Dask LocalCluster, 2 workers", {"executor": "dask"})):
        outdir = fresh(work / name.split()[0].lower().strip(","))
        start = time.perf_counter()
        summary = run_image2(inputs, outdir, jobs=2, crds_env_file=str(sim.env_file), **options)
        wall = time.perf_counter() - start
        assert not summary.failed, [r.error for r in summary.failed]
        task_sum = sum(r.wall_s for r in summary.results)
        # A worker's first task includes its `import jwst.pipeline` on Dask (the local
        # pool imports it at start-up, while the parent prefetches references).
        first = [r.wall_s for r in summary.results if r.tasks_in_worker == 1]
        later = [r.wall_s for r in summary.results if r.tasks_in_worker != 1]
        mean = lambda values: sum(values) / len(values) if values else float("nan")  # noqa: E731
        rows.append((name, wall, task_sum, mean(first), mean(later)))
    overhead = executor_overhead(args.noop_tasks)

    local_wall = rows[0][1]
    lines = [
        f"started {started}",
        f"image2, {args.exposures} x NIRCam {args.subarray}, {os.cpu_count()} CPUs",
        "",
        "| executor | wall (s) | wall / local | sum of task walls (s) "
        "| first task per worker (s) | later tasks (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, wall, task_sum, first, later in rows:
        lines.append(f"| {name} | {wall:.1f} | {wall / local_wall:.2f} | {task_sum:.1f} "
                     f"| {first:.1f} | {later:.1f} |")
    lines += [
        "",
        f"Per-task overhead, {args.noop_tasks} no-op tasks, 2 workers already running: "
        f"local pool {overhead['local'] * 1e3:.2f} ms, Dask LocalCluster "
        f"{overhead['dask'] * 1e3:.2f} ms (ratio {overhead['dask'] / overhead['local']:.1f}x).",
    ]
    table = "\n".join(lines)
    print(table)
    if args.record:
        record(f"Dask: local pool vs a 2-worker LocalCluster ({args.subarray})", "bench_dask.py",
               table)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
