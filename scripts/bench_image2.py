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
    python scripts/bench_image2.py --full-frame -n 8 --record   # the issue's target

``--record`` appends the printed table to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _benchlib import JWSTRUN, STRUN, fresh, machine, record, simulated

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=4, help="exposures (default 4)")
    parser.add_argument("-j", type=int, default=2, help="parallel workers (default 2)")
    parser.add_argument("--full-frame", action="store_true", help="FULL instead of SUB640")
    parser.add_argument("--work", default="/tmp/jwstrun-bench-image2", help="work directory")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()

    work = Path(args.work)
    subarray = "FULL" if args.full_frame else "SUB640"
    files, env_file, env = simulated(work, subarray, args.n, seed=5)
    started = machine()
    results = {}

    # 0. per-exposure pipeline times, warm process
    out = fresh(work / "warm")
    proc = subprocess.run([sys.executable, "-c", TIMER, str(out), *files], env=env,
                          capture_output=True, text=True, check=True)
    pipeline_times = json.loads(proc.stdout.strip().splitlines()[-1])

    # 1. sequential strun loop
    out = fresh(work / "strun-seq")
    start = time.perf_counter()
    for path in files:
        subprocess.run([STRUN, "calwebb_image2", path, "--output_dir", str(out)],
                       env=env, capture_output=True, text=True, check=True)
    results["strun loop"] = time.perf_counter() - start

    # 2. xargs -P J strun
    out = fresh(work / "strun-xargs")
    start = time.perf_counter()
    subprocess.run(
        ["xargs", "-P", str(args.j), "-n", "1", "sh", "-c",
         f'"{STRUN}" calwebb_image2 "$0" --output_dir "{out}" > /dev/null 2>&1'],
        input="\n".join(files), env=env, text=True, check=True,
    )
    results[f"xargs -P {args.j} strun"] = time.perf_counter() - start

    # 3. jwstrun image2 -j J
    out = fresh(work / "jwstrun")
    start = time.perf_counter()
    subprocess.run([JWSTRUN, "image2", *files, "-o", str(out), "-j", str(args.j),
                    "--no-progress", "--crds-env", str(env_file)],
                   env=env, capture_output=True, text=True, check=True)
    results[f"jwstrun image2 -j {args.j}"] = time.perf_counter() - start

    ideal = sum(pipeline_times) / args.j
    jw = results[f"jwstrun image2 -j {args.j}"]
    lines = [
        f"{args.n} x NIRCam {subarray} image2, -j {args.j}, {os.cpu_count()} CPUs "
        f"(per-exposure pipeline time {min(pipeline_times):.1f}-{max(pipeline_times):.1f} s)",
    ]
    for name, seconds in results.items():
        lines.append(f"{name:<24} {seconds:7.1f} s")
    lines.append(f"{'ideal (sum / j)':<24} {ideal:7.1f} s")
    lines.append(f"speed-up vs strun loop:     {results['strun loop'] / jw:.2f}x")
    lines.append(f"speed-up vs xargs -P {args.j}:     "
                 f"{results[f'xargs -P {args.j} strun'] / jw:.2f}x")
    lines.append(f"jwstrun / ideal:            {jw / ideal:.2f} (1.00 = ideal)")
    text = "\n".join(lines)
    print(text)
    if args.record:
        record(f"image2: strun loop vs xargs -P vs jwstrun image2 ({subarray} x{args.n})",
               "bench_image2.py", f"started {started}\n" + text)


if __name__ == "__main__":
    main()
