#!/usr/bin/env python
"""One job, no parallelism: ``jwstrun -j 1`` vs ``strun`` on the same inputs.

image2 on one exposure and image3 on one association (of the image2 products),
each run as a command a user types (process start and the jwst import
included), strun and jwstrun alternating for ``--rounds`` rounds in this one
invocation; the ratio printed is the median jwstrun time over the median strun
time (issue 10's target: within 5 %, ratio <= 1.05).

    python scripts/bench_single.py                       # SUB640, 3 rounds
    python scripts/bench_single.py --full-frame --image3-members 4 --record

``--record`` writes the printed table to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _benchlib import JWSTRUN, STRUN, fresh, machine, record, simulated


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - start


def compare(label: str, strun_cmd, jwstrun_cmd, out: Path, env: dict, rounds: int) -> dict:
    """Alternate strun and jwstrun (each into a fresh directory); medians and ratio."""
    times = {"strun": [], "jwstrun": []}
    for k in range(rounds):
        order = ("strun", "jwstrun") if k % 2 == 0 else ("jwstrun", "strun")
        for name in order:
            target = fresh(out / name)
            cmd = strun_cmd(target) if name == "strun" else jwstrun_cmd(target)
            times[name].append(timed(cmd, env))
    s, j = statistics.median(times["strun"]), statistics.median(times["jwstrun"])
    return {"label": label, "strun": s, "jwstrun": j, "ratio": j / s,
            "all": {k: [round(v, 1) for v in vs] for k, vs in times.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-frame", action="store_true", help="FULL instead of SUB640")
    parser.add_argument("--image3-members", type=int, default=4,
                        help="exposures in the image3 association (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per comparison (default 3)")
    parser.add_argument("--work", default="/tmp/jwstrun-bench-single", help="work directory")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()

    work = Path(args.work)
    subarray = "FULL" if args.full_frame else "SUB640"
    files, env_file, env = simulated(work, subarray, args.image3_members, seed=11)
    rows = []
    rows.append(compare(
        f"image2, 1 {subarray} exposure",
        lambda o: [STRUN, "calwebb_image2", files[0], "--output_dir", str(o)],
        lambda o: [JWSTRUN, "image2", files[0], "-o", str(o), "-j", "1", "--no-progress",
                   "--crds-env", str(env_file)],
        work / "image2", env, args.rounds,
    ))

    # image3 inputs: the _cal files of every exposure and one Level-3 association
    cal_dir = work / f"cal-{subarray}"
    if len(list(cal_dir.glob("*_cal.fits"))) != len(files):
        fresh(cal_dir)
        subprocess.run([JWSTRUN, "image2", *files, "-o", str(cal_dir), "--no-progress",
                        "--crds-env", str(env_file), "--set", "steps.resample.skip=true"],
                       env=env, capture_output=True, text=True, check=True)
    from jwstrun.asn import make_associations

    built = make_associations(sorted(cal_dir.glob("*_cal.fits")), cal_dir / "l3_asn.json",
                              level=3, force=True)
    asn = str(built.associations[0].path)
    rows.append(compare(
        f"image3, {len(files)} x {subarray} association",
        lambda o: [STRUN, "calwebb_image3", asn, "--output_dir", str(o)],
        lambda o: [JWSTRUN, "image3", asn, "-o", str(o), "-j", "1", "--no-progress",
                   "--crds-env", str(env_file)],
        work / "image3", env, max(1, args.rounds - 1),
    ))

    lines = [f"one job, -j 1 vs strun ({machine()})",
             f"{'':34} {'strun':>8} {'jwstrun':>8} {'ratio':>6}"]
    for r in rows:
        lines.append(f"{r['label']:34} {r['strun']:7.1f}s {r['jwstrun']:7.1f}s "
                     f"{r['ratio']:6.3f}   runs {r['all']}")
    met = all(r["ratio"] <= 1.05 for r in rows)
    lines.append(f"target: jwstrun within 5 % of strun (ratio <= 1.05): {'met' if met else 'NOT met'}")
    text = "\n".join(lines)
    print(text)
    if args.record:
        record(f"One job: jwstrun -j 1 vs strun ({subarray})", "bench_single.py", text)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
