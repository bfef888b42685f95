#!/usr/bin/env python
"""Planning an image2 run over N exposures: one header read per exposure vs two.

``jwstrun.runner.plan_image2`` needs each exposure's primary header twice (its
product type, then its size for the default -j).  The runner remembers the last
header read (keyed by path, mtime and size); this script times planning N hard
links of one simulated SUB160 exposure with that memo and with it bypassed (every
call reads the file again, as before), side by side in one process, and prints
the ratio.  The input-completeness check (``products.check_fits_complete``) is
timed on the same files.

    python scripts/bench_planning.py             # N = 10,000, about a minute
    python scripts/bench_planning.py -n 2000
    python scripts/bench_planning.py --record   # append to docs/benchmarks.md with date, machine
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from _benchlib import machine, record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000, help="number of exposures")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    where = machine()

    from jwstrun import runner
    from jwstrun.products import read_primary_header
    from jwstrun.runner._stage_inputs import PLANNING_HEADERS, check_complete
    from jwstrun.stages import get_stage
    from jwstrun.simulate import simulate_program

    root = Path(tempfile.mkdtemp(prefix="jwstrun-bench-planning-"))
    try:
        sim = simulate_program(root / "sim", subarray="SUB160", n_dithers=1, seed=1)
        many = root / "many"
        many.mkdir()
        for i in range(args.n):
            os.link(sim.rate_files[0],
                    many / f"jw01234{i // 100 + 1:03d}001_02101_{i % 100 + 1:05d}_nrcb1_rate.fits")
        # 10,000 names of one file: the input expander would rightly use it once, so the
        # planner is given the names directly (it is what is measured)
        paths = sorted(p.absolute() for p in many.glob("*_rate.fits"))
        runner.plan_image2(paths[:50])  # imports and caches warm for both sides

        timings = {}
        for label, header_reader in (("two reads", read_primary_header), ("one read", None)):
            if header_reader is not None:
                PLANNING_HEADERS.read = header_reader  # this instance only: no memory
            try:
                started = time.perf_counter()
                planned = runner.plan_image2(paths)
                timings[label] = time.perf_counter() - started
            finally:
                vars(PLANNING_HEADERS).pop("read", None)
                PLANNING_HEADERS.clear()
            assert len(planned) == args.n
        started = time.perf_counter()
        check_complete(paths, get_stage("image2"))
        complete = time.perf_counter() - started
    finally:
        shutil.rmtree(root, ignore_errors=True)

    per = {k: v / args.n * 1e3 for k, v in timings.items()}
    text = "\n".join([
        f"started {where}",
        f"plan_image2 over {args.n} exposures",
        f"  header read twice  {timings['two reads']:6.1f} s  ({per['two reads']:.2f} ms each)",
        f"  header read once   {timings['one read']:6.1f} s  ({per['one read']:.2f} ms each)",
        f"  ratio {timings['two reads'] / timings['one read']:.2f}x",
        f"check_fits_complete {complete:.1f} s ({complete / args.n * 1e3:.2f} ms each)",
    ])
    print(text)
    if args.record:
        record("planning: one header read per exposure vs two (runner)", "bench_planning.py",
               text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
