#!/usr/bin/env python
"""``jwstrun step NAME`` over N exposures: strun loop vs ``xargs -P J strun`` vs
``jwstrun step NAME -j J``.

All three run in this one invocation on the same simulated NIRCam rate files, one
after the other, each into a fresh output directory, with the same CRDS environment
(the simulator's offline cache).  strun is given ``--skip=False`` (what it does anyway
for a step run on its own, said here so the comparison is plain).  "ideal" is the sum
of the per-exposure step times divided by J, a step time being the wall time of
``Step.call(file, save_results=True, ...)`` in one warm Python process that imported
jwst once.  The products of the three are checked equal (SCI, DQ, ERR) before any
figure is printed.

    python scripts/bench_step.py --subarray SUB160 -n 2        # a check (about a minute)
    python scripts/bench_step.py --full-frame -n 8 -j 2 --record   # the issue's figure

``--record`` writes the printed table to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _benchlib import (
    JWSTRUN,
    fresh,
    machine,
    record,
    simulated,
    time_command,
    time_strun_loop,
    time_strun_xargs,
)

# Run in a separate process: import the step once, then time each Step.call.
TIMER = """
import json, sys, time
from stpipe.utilities import import_class, resolve_step_class_alias
from stpipe import Step
cls = import_class(resolve_step_class_alias(sys.argv[1]), Step)
out, files = sys.argv[2], sys.argv[3:]
times = []
for path in files:
    start = time.perf_counter()
    cls.call(path, output_dir=out, save_results=True, configure_log=False)
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def one_round(step: str, files: list[str], work: Path, env: dict, env_file: Path,
              jobs: int) -> dict:
    """The four measurements of one round, each into a fresh output directory."""
    times: dict[str, float] = {}
    out = fresh(work / "warm")
    proc = subprocess.run([sys.executable, "-c", TIMER, step, str(out), *files], env=env,
                          capture_output=True, text=True, check=True)
    step_times = json.loads(proc.stdout.strip().splitlines()[-1])

    strun_args = [step, "--skip=False"]
    times["strun loop"] = time_strun_loop(files, strun_args, fresh(work / "strun-seq"), env)
    times[f"xargs -P {jobs} strun"] = time_strun_xargs(
        files, strun_args, fresh(work / "strun-xargs"), env, jobs)

    out = fresh(work / "jwstrun")
    started_epoch = time.time()
    times[f"jwstrun step -j {jobs}"] = time_command(
        [JWSTRUN, "step", step, *files, "-o", str(out), "-j", str(jobs), "--no-progress",
         "--crds-env", str(env_file)], env)
    times["ideal (sum / j)"] = sum(step_times) / jobs

    tasks = list(json.loads((out / "jwstrun-manifest.json").read_text())["tasks"].values())
    breakdown = {
        "first task began after": min(t["start"] for t in tasks) - started_epoch,
        "task wall time summed over the pool's tasks": sum(t["wall_s"] for t in tasks),
        "Step.call summed, one at a time (warm process)": sum(step_times),
    }
    _check_equal(work / "strun-seq", out)
    return {"times": times, "step_times": step_times, "breakdown": breakdown}


def _check_equal(theirs: Path, ours: Path) -> None:
    """The products of strun and jwstrun: the same files, SCI/DQ/ERR equal."""
    import numpy as np
    from astropy.io import fits

    names = sorted(p.name for p in theirs.glob("*.fits"))
    if names != sorted(p.name for p in ours.glob("*.fits")):
        raise SystemExit(f"different products: strun {names}, jwstrun "
                         f"{sorted(p.name for p in ours.glob('*.fits'))}")
    for name in names:
        with fits.open(theirs / name) as a, fits.open(ours / name) as b:
            for ext in ("SCI", "DQ", "ERR"):
                if not np.array_equal(a[ext].data, b[ext].data, equal_nan=True):
                    raise SystemExit(f"{name}: {ext} differs between strun and jwstrun")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", default="clean_flicker_noise",
                        help="the step alias (default clean_flicker_noise)")
    parser.add_argument("-n", type=int, default=8, help="exposures (default 8)")
    parser.add_argument("-j", type=int, default=2, help="parallel workers (default 2)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the measurements; medians are compared (default 1)")
    parser.add_argument("--full-frame", action="store_true", help="FULL frames")
    parser.add_argument("--subarray", default="SUB640",
                        help="subarray without --full-frame (default SUB640)")
    parser.add_argument("--work", default="/tmp/jwstrun-bench-step", help="work directory")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()

    work = Path(args.work)
    subarray = "FULL" if args.full_frame else args.subarray
    files, env_file, env = simulated(work, subarray, args.n, seed=5)
    started = machine()
    rounds = [one_round(args.step, files, work, env, env_file, args.j)
              for _ in range(args.rounds)]
    loop, xargs = "strun loop", f"xargs -P {args.j} strun"
    jw, ideal = f"jwstrun step -j {args.j}", "ideal (sum / j)"
    times = {name: statistics.median(r["times"][name] for r in rounds)
             for name in rounds[0]["times"]}
    every = [t for r in rounds for t in r["step_times"]]
    lines = [
        f"{args.n} x NIRCam {subarray} {args.step}, -j {args.j}, {os.cpu_count()} CPUs, "
        f"{args.rounds} round(s), medians (per-exposure step time "
        f"{min(every):.1f}-{max(every):.1f} s); products equal to strun's (SCI, DQ, ERR)",
    ]
    for name, seconds in times.items():
        runs = " ".join(f"{r['times'][name]:.1f}" for r in rounds)
        lines.append(f"{name:<24} {seconds:7.1f} s"
                     + (f"   rounds: {runs}" if args.rounds > 1 else ""))
    lines.append(f"speed-up vs strun loop:     {times[loop] / times[jw]:.2f}x")
    lines.append(f"speed-up vs xargs -P {args.j}:     {times[xargs] / times[jw]:.2f}x")
    lines.append(f"jwstrun / ideal:            {times[jw] / times[ideal]:.3f}")
    lines.append("where jwstrun's time went (its manifest; medians):")
    lines.extend(f"  {name:<50} {statistics.median(r['breakdown'][name] for r in rounds):6.1f} s"
                 for name in rounds[0]["breakdown"])
    text = "\n".join(lines)
    print(text)
    if args.record:
        record(f"jwstrun step {args.step}: strun loop vs xargs -P vs jwstrun step "
               f"({subarray} x{args.n})", "bench_step.py", f"started {started}\n" + text)


if __name__ == "__main__":
    main()
