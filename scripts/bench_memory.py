#!/usr/bin/env python
"""Does a jwstrun worker's memory grow with the number of exposures it has run?

One ``jwstrun image2 -j 1 --max-tasks-per-worker N`` run over N small simulated
exposures (NIRCam SUB160), so a single worker process runs them all, one after
the other.  From the run's manifest (written by the worker for every task):

- ``worker_peak_rss_mb``: the worker's peak RSS since it started (what
  ``ru_maxrss`` would say), after task k;
- ``peak_rss_mb``: the peak of task k alone (the worker resets its high-water
  mark before each task);
- ``rss_after_mb``: the worker's RSS once task k is done (what a leak raises).

The ratio printed is worker peak after task N / worker peak after task 5
(the target: within 10%, ratio <= 1.10).  Exit status 1 when it is not.

    python scripts/bench_memory.py              # 50 x SUB160, about 2 minutes
    python scripts/bench_memory.py -n 100 --record

``--record`` writes the printed table to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _benchlib import record

BIN = Path(sys.executable).parent
JWSTRUN = str(BIN / "jwstrun")
EARLY = 5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="exposures (default 50)")
    parser.add_argument("--subarray", default="SUB160", help="NIRCam subarray (default SUB160)")
    parser.add_argument("--work", default="/tmp/jwstrun-bench-memory", help="work directory")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    if args.n <= EARLY:
        parser.error(f"-n must be larger than {EARLY}")

    from jwstrun.refs import read_env_file
    from jwstrun.simulate import simulate_program

    work = Path(args.work)
    sim_dir = work / f"sim-{args.subarray}-{args.n}"
    env_file = sim_dir / "crds.env"
    if not env_file.exists():  # simulate once, reuse afterwards
        simulate_program(sim_dir, detectors=["NRCB1"], filters=["F200W"],
                         subarray=args.subarray, n_dithers=args.n, seed=7, force=True)
    files = sorted(str(p) for p in sim_dir.glob("*_rate.fits"))
    assert len(files) == args.n, f"expected {args.n} exposures in {sim_dir}, found {len(files)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env.update(read_env_file(env_file))

    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    load_before = os.getloadavg()
    start = time.perf_counter()
    subprocess.run([JWSTRUN, "image2", *files, "-o", str(out), "-j", "1",
                    "--max-tasks-per-worker", str(args.n + 1), "--no-progress",
                    "--crds-env", str(env_file)],
                   env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    load_after = os.getloadavg()

    manifest = json.loads((out / "jwstrun-manifest.json").read_text())
    tasks = sorted(manifest["tasks"].values(), key=lambda t: t["tasks_in_worker"])
    workers = {t["worker_pid"] for t in tasks}
    if len(workers) != 1 or [t["tasks_in_worker"] for t in tasks] != list(range(1, args.n + 1)):
        print(f"expected one worker running tasks 1..{args.n}; got workers {sorted(workers)}",
              file=sys.stderr)
        return 2
    if any(t["status"] != "ok" for t in tasks):
        print("some tasks failed; see " + str(out / "logs"), file=sys.stderr)
        return 2

    def row(k: int) -> str:
        t = tasks[k - 1]
        return (f"{k:>6} {t['worker_peak_rss_mb']:>12.1f} {t['peak_rss_mb']:>12.1f} "
                f"{t['rss_after_mb']:>12.1f}")

    marks = sorted({1, 2, EARLY, 10, 25, args.n // 2, args.n} & set(range(1, args.n + 1)))
    peak_early = tasks[EARLY - 1]["worker_peak_rss_mb"]
    peak_last = tasks[-1]["worker_peak_rss_mb"]
    ratio = peak_last / peak_early
    rss_early = tasks[EARLY - 1]["rss_after_mb"]
    rss_last = tasks[-1]["rss_after_mb"]
    lines = [
        f"{args.n} x NIRCam {args.subarray} image2 in one worker (-j 1), {wall:.0f} s wall, "
        f"load average {load_before[0]:.1f} before / {load_after[0]:.1f} after, "
        f"{os.cpu_count()} CPUs",
        f"{'task':>6} {'worker peak':>12} {'task peak':>12} {'RSS after':>12}   (MB)",
        *(row(k) for k in marks),
        f"worker peak after task {EARLY}: {peak_early:.1f} MB; after task {args.n}: "
        f"{peak_last:.1f} MB; ratio {ratio:.3f} (target <= 1.10: "
        f"{'met' if ratio <= 1.10 else 'NOT met'})",
        f"RSS after task {EARLY}: {rss_early:.1f} MB; after task {args.n}: {rss_last:.1f} MB; "
        f"growth {(rss_last - rss_early) / (args.n - EARLY):+.2f} MB per task",
    ]
    text = "\n".join(lines)
    print(text)
    if args.record:
        record(f"Worker memory over {args.n} exposures ({args.subarray})", "bench_memory.py",
               text)
    return 0 if ratio <= 1.10 else 1


if __name__ == "__main__":
    sys.exit(main())
