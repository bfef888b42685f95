#!/usr/bin/env python
"""image2 over N exposures: strun loop vs ``xargs -P J strun`` vs ``jwstrun image2 -j J``.

All three run in this one invocation on the same simulated files, one after the
other, each into a fresh output directory, with the same CRDS environment (the
simulator's offline cache).  "ideal" is the sum of the per-exposure pipeline
times divided by J, where a pipeline time is the wall time of
``Image2Pipeline.call(file, save_results=True, ...)`` in one warm Python process
that imported jwst once (so neither the ~3 s import each strun pays nor any
wrapper overhead is in it).

    python scripts/bench_image2.py                 # 4 x SUB640, -j 2 (about 2 minutes)
    python scripts/bench_image2.py --full-frame -n 8 --rounds 3 --record   # the issue's target

With ``--rounds`` the four measurements repeat and the medians are compared
(the per-round ratios are printed too): on a shared machine one round can land
on a noisy minute.  The last line splits jwstrun's time using its manifest.

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

# Run in a separate process: import jwst once, then time each Pipeline.call.
TIMER = """
import json, sys, time
from jwst.pipeline import Image2Pipeline
out, files = sys.argv[1], sys.argv[2:]
times = []
for path in files:
    start = time.perf_counter()
    Image2Pipeline.call(path, output_dir=out, save_results=True, configure_log=False)
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def one_round(files: list[str], work: Path, env: dict, env_file: Path, jobs: int) -> dict:
    """The four measurements of one round, each into a fresh output directory."""
    times: dict[str, float] = {}

    # 0. per-exposure pipeline times, warm process
    out = fresh(work / "warm")
    proc = subprocess.run([sys.executable, "-c", TIMER, str(out), *files], env=env,
                          capture_output=True, text=True, check=True)
    pipeline_times = json.loads(proc.stdout.strip().splitlines()[-1])

    # 1. sequential strun loop; 2. xargs -P J strun
    strun_args = ["calwebb_image2"]
    times["strun loop"] = time_strun_loop(files, strun_args, fresh(work / "strun-seq"), env)
    times[f"xargs -P {jobs} strun"] = time_strun_xargs(
        files, strun_args, fresh(work / "strun-xargs"), env, jobs)

    # 3. jwstrun image2 -j J
    out = fresh(work / "jwstrun")
    started_epoch = time.time()
    times[f"jwstrun image2 -j {jobs}"] = time_command(
        [JWSTRUN, "image2", *files, "-o", str(out), "-j", str(jobs), "--no-progress",
         "--crds-env", str(env_file)], env)
    times["ideal (sum / j)"] = sum(pipeline_times) / jobs

    # Where jwstrun's time went, from its manifest.
    tasks = json.loads((out / "jwstrun-manifest.json").read_text())["tasks"]
    tasks = list(tasks.values()) if isinstance(tasks, dict) else tasks
    in_pool = sum(t["step_times"]["Image2Pipeline"] for t in tasks)
    outside = sum(t["wall_s"] - t["step_times"]["Image2Pipeline"] for t in tasks)
    breakdown = {
        "first task began after": min(t["start"] for t in tasks) - started_epoch,
        "Image2Pipeline step time summed over the pool's tasks": in_pool,
        "task time outside that step, summed": outside,
        "Pipeline.call summed, one at a time (warm process)": sum(pipeline_times),
    }
    return {"times": times, "pipeline_times": pipeline_times, "breakdown": breakdown}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=4, help="exposures (default 4)")
    parser.add_argument("-j", type=int, default=2, help="parallel workers (default 2)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the four measurements; medians are compared (default 1)")
    parser.add_argument("--full-frame", action="store_true", help="FULL instead of SUB640")
    parser.add_argument("--work", default="/tmp/jwstrun-bench-image2", help="work directory")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()

    work = Path(args.work)
    subarray = "FULL" if args.full_frame else "SUB640"
    files, env_file, env = simulated(work, subarray, args.n, seed=5)
    started = machine()
    rounds = []
    for k in range(args.rounds):
        rounds.append(one_round(files, work, env, env_file, args.j))
        if args.rounds > 1:
            print(f"round {k + 1}: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds
                                                 in rounds[-1]["times"].items()), flush=True)

    loop, xargs = "strun loop", f"xargs -P {args.j} strun"
    jw, ideal = f"jwstrun image2 -j {args.j}", "ideal (sum / j)"
    times = {name: statistics.median(r["times"][name] for r in rounds) for name in rounds[0]["times"]}
    every = [t for r in rounds for t in r["pipeline_times"]]
    per_round = lambda f, digits=2: " ".join(f"{f(r['times']):.{digits}f}" for r in rounds)  # noqa: E731
    lines = [
        f"{args.n} x NIRCam {subarray} image2, -j {args.j}, {os.cpu_count()} CPUs, "
        f"{args.rounds} round(s), medians "
        f"(per-exposure pipeline time {min(every):.1f}-{max(every):.1f} s)",
    ]
    for name, seconds in times.items():
        runs = " ".join(f"{r['times'][name]:.1f}" for r in rounds)
        lines.append(f"{name:<24} {seconds:7.1f} s" + (f"   rounds: {runs}" if args.rounds > 1 else ""))
    lines.append(f"speed-up vs strun loop:     {times[loop] / times[jw]:.2f}x (target >= 2.5)"
                 + (f"   rounds: {per_round(lambda t: t[loop] / t[jw])}" if args.rounds > 1 else ""))
    lines.append(f"speed-up vs xargs -P {args.j}:     {times[xargs] / times[jw]:.2f}x (target >= 1.3)"
                 + (f"   rounds: {per_round(lambda t: t[xargs] / t[jw])}" if args.rounds > 1 else ""))
    lines.append(f"jwstrun / ideal:            {times[jw] / times[ideal]:.3f} (target <= 1.15)"
                 + (f"   rounds: {per_round(lambda t: t[jw] / t[ideal], 3)}" if args.rounds > 1 else ""))
    lines.append("where jwstrun's time went (its manifest; medians):")
    lines.extend(f"  {name:<55} {statistics.median(r['breakdown'][name] for r in rounds):6.1f} s"
                 for name in rounds[0]["breakdown"])
    text = "\n".join(lines)
    print(text)
    if args.record:
        record(f"image2: strun loop vs xargs -P vs jwstrun image2 ({subarray} x{args.n})",
               "bench_image2.py", f"started {started}\n" + text)


if __name__ == "__main__":
    main()
