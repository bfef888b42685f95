#!/usr/bin/env python
"""Time `jwstrun simulate --uncal` and `strun calwebb_detector1` on its ramps, with the checks.

Simulates --exposures NIRCam NRCB1 exposures (default one full frame, DEEP8, 7 groups, as
survey programs take them) with their _uncal ramps and Stage-1 references, then reduces the
first with `strun calwebb_detector1 --save_calibrated_ramp True` in a subprocess with only
the cache's CRDS variables, and prints the wall times, the strun process's peak RSS and
jwstrun.simulate.uncal_checks against the truth (slopes, jump recall, saturation).

    python scripts/bench_uncal.py [--subarray FULL] [--ngroups 7] [--readpatt DEEP8]
                                  [--exposures 1] [--record]

Try it small first: `python scripts/bench_uncal.py --subarray SUB160`.
``--record`` appends the printed lines, the command, date and machine to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _benchlib import machine, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subarray", default="FULL")
    parser.add_argument("--ngroups", type=int, default=7)
    parser.add_argument("--readpatt", default="DEEP8")
    parser.add_argument("--exposures", type=int, default=1)
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    say(f"started {machine()}")
    from jwstrun.simulate import simulate_program
    from jwstrun.simulate.uncal_checks import detector1_checks, failures

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = simulate_program(Path(tmp) / "sim", subarray=args.subarray,
                                  n_dithers=args.exposures, uncal=True, ngroups=args.ngroups,
                                  uncal_nints=1, readpatt=args.readpatt)
        say(f"simulate --uncal, {args.exposures} x NRCB1 {args.subarray} {args.readpatt} "
            f"x {args.ngroups} groups: {time.perf_counter() - start:.1f} s")
        uncal = result.uncal_files[0]
        out = Path(tmp) / "detector1"
        out.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
        env.update(result.env)
        strun = str(Path(sys.executable).with_name("strun"))
        start = time.perf_counter()
        subprocess.run([strun, "calwebb_detector1", str(uncal), "--output_dir", str(out),
                        "--save_calibrated_ramp", "True"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
        say(f"strun calwebb_detector1 on one: {seconds:.1f} s, peak RSS {peak_gb:.2f} GB")
        stem = uncal.name.replace("_uncal.fits", "")
        measured = detector1_checks(out / f"{stem}_rate.fits", out / f"{stem}_ramp.fits",
                                    result.outdir, uncal.name)
        for name, value in measured.items():
            say(f"  {name}: {value}")
        say("checks: " + ("all met" if not failures(measured) else "; ".join(failures(measured))))
    if args.record:
        record("simulate --uncal and calwebb_detector1", "bench_uncal.py",
               "\n".join(lines))


if __name__ == "__main__":
    main()
