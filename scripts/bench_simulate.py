#!/usr/bin/env python
"""Time `simulate_program` for 4 NIRCam exposures (SUB640 and full frame) with their CRDS cache.

The issue's budget: under 30 s for SUB640 and under 60 s for full frame on 2 cores, not
counting the first jwst import.  jwst/stdatamodels/pysiaf are imported once before timing,
then each configuration is simulated --repeat times into a fresh directory; the script
prints the median wall time and its ratio to the budget (ratio < 1 means within budget).

    python scripts/bench_simulate.py [--repeat 3] [--miri] [--record]

``--record`` writes the printed lines, the command, date and machine to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _benchlib import Recorder, machine, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--miri", action="store_true", help="also time MIRI FULL x4")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    say = Recorder()

    say(f"started {machine()}")

    t0 = time.perf_counter()
    import jwst.assign_wcs  # noqa: F401  - the first import is not part of the budget
    import pysiaf  # noqa: F401
    import stdatamodels.jwst.datamodels  # noqa: F401

    from jwstrun.simulate import simulate_program

    say(f"warm-up imports: {time.perf_counter() - t0:.1f} s")
    cases = [
        ("NIRCam NRCB1 SUB640 x4", dict(detectors=["NRCB1"], subarray="SUB640"), 30.0),
        ("NIRCam NRCB1 FULL x4", dict(detectors=["NRCB1"], subarray="FULL"), 60.0),
    ]
    if args.miri:
        cases.append(("MIRI MIRIMAGE FULL x4", dict(detectors=["MIRIMAGE"], subarray="FULL"), 60.0))
    say(f"{'case':<26} {'median s':>9} {'budget s':>9} {'ratio':>7}")
    for name, options, budget in cases:
        times = []
        for k in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                simulate_program(Path(tmp) / "sim", n_dithers=4, seed=k + 1, **options)
                times.append(time.perf_counter() - start)
        median = statistics.median(times)
        say(f"{name:<26} {median:9.1f} {budget:9.0f} {median / budget:7.2f}")
    if args.record:
        record("simulate: 4 NIRCam exposures with their CRDS cache", "bench_simulate.py",
               say.text)


if __name__ == "__main__":
    main()
