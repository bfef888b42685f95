#!/usr/bin/env python
"""Science figures of the demo chain: alignment, flux recovery, cosmic rays.

Runs ``jwstrun.demo.run_demo`` (simulate -> associations -> image2 -> image3 ->
validate, offline on the simulator's CRDS cache) and prints what the science
checks measured against the simulation's truth files, with each requirement,
and the time per stage.  Exit status 1 when a check fails.

    python scripts/bench_science.py                  # the demo's default size, ~1 minute
    python scripts/bench_science.py --full-frame --record

``--record`` writes the printed table to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from _benchlib import machine, record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-frame", action="store_true", help="full-frame exposures")
    parser.add_argument("-j", type=int, default=None, help="workers (default: jwstrun's)")
    parser.add_argument("--work", default="/tmp/jwstrun-bench-science", help="work directory")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()

    from jwstrun.demo import run_demo

    work = Path(args.work) / ("full" if args.full_frame else "small")
    shutil.rmtree(work, ignore_errors=True)  # a fresh run: nothing reused, nothing skipped
    report = run_demo(work, full_frame=args.full_frame, jobs=args.j, force=True)
    lines = [f"jwstrun demo{' --full-frame' if args.full_frame else ''} ({machine()})"]
    for stage in report.stages:
        lines.append(f"  {stage['name']:<16} {stage['seconds']:7.1f} s  {stage['detail']}")
    lines.append(f"  {'check':<38} {'measured':>9}  requirement")
    for check in report.checks:
        lines.append(f"  {check['name']:<38} {check['value']:>9}  {check['requirement']}  "
                     f"{'ok' if check['passed'] else 'FAILED'}")
    lines += [f"  problem: {p}" for p in report.problems]
    text = "\n".join(lines)
    print(text)
    if args.record:
        record(f"Science checks of the demo chain{' (full frame)' if args.full_frame else ''}",
               "bench_science.py", text)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
