#!/usr/bin/env python
"""Tiled image3: peak memory and wall time against mosaic area (issue 22, "Scale").

One simulated NIRCam program (NRCB1, F200W, SUBARRAY x N dithers, reduced once by
``jwstrun image2``) is mosaicked at several output pixel scales
(``steps.resample.pixel_scale_ratio`` R: the mosaic's area grows as 1/R^2 while the
inputs stay the same), each time as ``jwstrun image3 --tile-size T -j 1``.  For each
area the script prints the mosaic's shape and area (of the grid the tiled run makes:
resample's with 1 arcsec of room, more pixels at the finer scales), the number of tiles
with data, the largest measured peak of a tile task (the worker's peak RSS from the
run's JSON summary) beside the largest estimate, the tile phase's wall time (the tile tasks'
summed walls), that time per megapixel and per tile, and the single-shot image3's estimated
peak for the same mosaic (jwstrun.mosaic).  Memory by design means the tile peak is
flat in area while the single-shot estimate grows; the time per megapixel is flat
(time linear in area).  The align phase (tweakreg, skymatch, outlier_detection on
the default grid) is the same at every scale and is reported once.

    python scripts/bench_tiles_scale.py                                  # 3 sizes
    python scripts/bench_tiles_scale.py --ratios 0.5,0.25 --subarray SUB160 --dithers 2
    python scripts/bench_tiles_scale.py --record                         # docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import JWSTRUN, fresh, machine, record, simulated  # noqa: E402

from jwstrun.mosaic.gridfile import read_grid  # noqa: E402

DEFAULT_RATIOS = "0.5,0.35,0.25,0.18"


def reduce(work: Path, subarray: str, n: int) -> tuple[list[Path], Path, dict]:
    """The _cal files of the program (image2 once, reused), its crds.env and environment."""
    rates, env_file, env = simulated(work, subarray, n, seed=9)
    cal_dir = work / f"cal-{subarray}-{n}"
    if len(list(cal_dir.glob("*_cal.fits"))) < n:
        subprocess.run([JWSTRUN, "image2", *rates, "-o", str(cal_dir), "-j", "2", "--crds-env",
                        str(env_file), "--no-progress", "--no-report"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
    return sorted(cal_dir.glob("*_cal.fits")), env_file, env


def single_shot_estimate(cal: list[Path], ratio: float) -> tuple[tuple[int, int], int]:
    from jwstrun.mosaic import estimate_association

    parameters = {"steps": {"resample": {"pixel_scale_ratio": ratio}}}
    estimate = estimate_association("x", cal, parameters)
    return estimate.shape, min(estimate.in_memory_bytes, estimate.on_disk_bytes)


def run(cal, env_file, env, out: Path, ratio: float, tile: int) -> dict:
    command = [JWSTRUN, "image3", *map(str, cal), "-o", str(out), "--tile-size", str(tile),
               "-j", "1", "--crds-env", str(env_file), "--set",
               f"steps.resample.pixel_scale_ratio={ratio}", "--no-progress", "--no-report",
               "--no-validate", "--json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", default=DEFAULT_RATIOS,
                        help=f"resample pixel_scale_ratio of each size (default {DEFAULT_RATIOS})")
    parser.add_argument("--subarray", default="SUB320")
    parser.add_argument("--dithers", type=int, default=2)
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--work", default="/tmp/jwstrun-bench-tiles-scale")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    ratios = sorted((float(r) for r in args.ratios.split(",")), reverse=True)
    if len(ratios) < 3 and args.record:
        sys.exit("record at least 3 sizes (--ratios)")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cal, env_file, env = reduce(work, args.subarray, args.dithers)
    header = (f"{'ratio':>5} {'mosaic':>11} {'Mpx':>6} {'tiles':>5} {'tile peak':>9} "
              f"{'estimate':>8} {'tile wall':>9} {'s/Mpx':>6} {'s/tile':>6} {'single-shot est.':>16}")
    lines = [header]
    print(header, flush=True)
    align = None
    for ratio in ratios:
        _, single = single_shot_estimate(cal, ratio)
        out = fresh(work / f"out-{ratio}")
        summary = run(cal, env_file, env, out, ratio, args.tile_size)
        shape = read_grid(next(out.glob("*_grid.asdf"))).shape  # the tiled run's own grid
        tiles = [t for t in summary["tasks"] if t["task_id"].startswith("image3-tile-")
                 and t["status"] == "ok"]
        align = align or next(t for t in summary["tasks"]
                              if t["task_id"].startswith("image3-align-"))
        area = shape[0] * shape[1] / 1e6
        peak = max(t["peak_rss_mb"] for t in tiles)
        estimate = max(t["memory"]["estimate_mb"] for t in tiles)
        wall = sum(t["wall_s"] for t in tiles)
        line = (f"{ratio:>5.2f} {shape[1]:>5} x {shape[0]:<5}{area:>6.1f} {len(tiles):>5} "
                f"{peak:>6.0f} MB {estimate:>5.0f} MB {wall:>7.1f} s {wall / area:>6.1f} "
                f"{wall / len(tiles):>6.1f} "
                f"{single / 1e6:>13.0f} MB")
        lines.append(line)
        print(line, flush=True)
    lines.append(f"align phase (once per association, the same at every scale): "
                 f"{align['wall_s']:.1f} s, peak {align['peak_rss_mb']:.0f} MB")
    print(lines[-1])
    if args.record:
        record("tiled image3: memory and time against mosaic area", "bench_tiles_scale.py",
               "\n".join(lines),
               note=f"{args.subarray} x {args.dithers} NIRCam exposures, --tile-size "
                    f"{args.tile_size}, -j 1; the mosaic's area set by resample's "
                    "pixel_scale_ratio. Memory by design: the tile peak stays flat while the "
                    "single-shot estimate grows with the area; s/Mpx flat = time linear in area.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
