#!/usr/bin/env python
"""Tiled vs single-shot image3 on one association, side by side (issue 22, "Speed").

One simulated NIRCam association (NRCB1, F200W, SUBARRAY x N exposures, FULL x 8 by
default, reduced once by ``jwstrun image2``) is run, one after the other in this one
invocation, as

- ``jwstrun image3 ASN -j 1``                         (single-shot calwebb_image3)
- ``jwstrun image3 ASN --tile-size T -j CORES``       (align once, then the tiles)

both on one grid (``jwstrun grid ASN --padding 1arcsec``, the grid a tiled run makes
without ``--grid``; ``--padding 0``: resample's tight default grid, on which every
exposure at the border reaches the grid's edge and the tiles on that edge resample it
whole, docs/workflows/tiles.md), and the script prints both wall times, the measured
speed-up (single / tiled) and the ideal one: with resample and source_catalog shared by the cores and the rest
(the per-association part: tweakreg, skymatch, outlier_detection, start-up) unchanged::

    ideal tiled wall = single wall - (resample + source_catalog) * (1 - 1 / CORES)

(issue 22's MIRI example: resample + source_catalog 36 % of image3 -> ideal 1.22x on
2 cores).  The align task's own wall is printed beside it.

The goal: tiled wall <= 1.15 x ideal.  The walls are the two commands'; the step
times come from the single-shot run's JSON summary (stpipe's step times).

    python scripts/bench_tiles.py                                # FULL x 8 on 2 cores
    python scripts/bench_tiles.py --subarray SUB160 --exposures 2 --tile-size 96  # try it
    python scripts/bench_tiles.py --record                       # docs/benchmarks.md
    python scripts/bench_tiles.py --padding 0 --record           # the tight grid's cost
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import JWSTRUN, fresh, machine, record, simulated  # noqa: E402

from jwstrun.mosaic.tiles import GRID_PADDING  # noqa: E402

GOAL = 1.15


def association(work: Path, subarray: str, n: int) -> tuple[Path, Path, dict]:
    """The Level-3 association of the program's _cal files (image2 once, reused)."""
    from jwstrun.asn import make_associations

    rates, env_file, env = simulated(work, subarray, n, seed=8)
    cal_dir = work / f"cal-{subarray}-{n}"
    if len(list(cal_dir.glob("*_cal.fits"))) < n:
        subprocess.run([JWSTRUN, "image2", *rates, "-o", str(cal_dir), "-j", "2", "--crds-env",
                        str(env_file), "--no-progress", "--no-report", "--set",
                        "steps.resample.skip=true"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
    cal = sorted(cal_dir.glob("*_cal.fits"))
    (written,) = make_associations(cal, cal_dir / "l3_asn.json", level=3,
                                   force=True).associations
    return written.path, env_file, env


def image3(asn: Path, env_file: Path, env: dict, out: Path, extra: list[str]) -> tuple[float, dict]:
    command = [JWSTRUN, "image3", str(asn), "-o", str(out), "--crds-env", str(env_file),
               "--no-progress", "--no-report", "--no-validate", "--json", *extra]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return wall, json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subarray", default="FULL")
    parser.add_argument("--exposures", type=int, default=8)
    parser.add_argument("--tile-size", default="1024", help="pixels or an angle (default 1024)")
    parser.add_argument("--cores", type=int, default=2, help="-j of the tiled run (default 2)")
    parser.add_argument("--padding", default=GRID_PADDING,
                        help=f"the grid's padding (jwstrun grid --padding; default "
                        f"{GRID_PADDING})")
    parser.add_argument("--work", default="/tmp/jwstrun-bench-tiles")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    asn, env_file, env = association(work, args.subarray, args.exposures)

    grid = work / "grid.asdf"
    subprocess.run([JWSTRUN, "grid", str(asn), "-o", str(grid), "--padding", args.padding],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    single_wall, single = image3(asn, env_file, env, fresh(work / "single"),
                                 ["-j", "1", "--grid", str(grid)])
    tiled_wall, tiled = image3(asn, env_file, env, fresh(work / "tiled"),
                               ["--tile-size", str(args.tile_size), "-j", str(args.cores),
                                "--grid", str(grid)])
    (task,) = single["tasks"]
    steps = task["step_times"]
    per_tile = steps.get("resample", 0.0) + steps.get("source_catalog", 0.0)
    align = next(t for t in tiled["tasks"] if t["task_id"].startswith("image3-align-"))
    tiles = [t for t in tiled["tasks"] if t["task_id"].startswith("image3-tile-")]
    ideal = single_wall - per_tile * (1 - 1 / args.cores)
    lines = [
        f"{args.exposures} x {args.subarray} NIRCam exposures, one association; "
        f"tiled: --tile-size {args.tile_size}, -j {args.cores}, {len(tiles)} tiles with data; "
        f"both on jwstrun grid --padding {args.padding}",
        "single-shot steps: " + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()),
        f"single-shot image3 (-j 1)          {single_wall:8.1f} s",
        f"tiled image3 (-j {args.cores})               {tiled_wall:8.1f} s   (align "
        f"{align['wall_s']:.1f} s, tiles {sum(t['wall_s'] for t in tiles):.1f} s summed)",
        f"ideal tiled = single - (resample + source_catalog) x (1 - 1/{args.cores}) = "
        f"{single_wall:.1f} - {per_tile:.1f} x {1 - 1 / args.cores:.2f} = {ideal:.1f} s",
        f"speed-up single / tiled: measured {single_wall / tiled_wall:.2f}x, ideal "
        f"{single_wall / ideal:.2f}x",
        f"tiled / ideal = {tiled_wall / ideal:.2f} (goal <= {GOAL})",
    ]
    print("\n".join(lines))
    if args.record:
        title = "tiled vs single-shot image3" + (
            "" if args.padding == GRID_PADDING else f" (grid padding {args.padding})")
        record(title, "bench_tiles.py", "\n".join(lines),
               note="Both runs in one invocation, one after the other; the ideal is measured "
                    "from the same runs (the single-shot run's wall and its resample and "
                    "source_catalog step times).")
    return 0 if tiled_wall <= GOAL * ideal else 1


if __name__ == "__main__":
    sys.exit(main())
