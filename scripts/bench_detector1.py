#!/usr/bin/env python
"""detector1 over N _uncal ramps: strun loop vs ``xargs -P J strun`` vs ``jwstrun detector1 -j J``,
and cores inside jump/ramp_fit vs exposures side by side.

All run in this one invocation on the same simulated ramps (NIRCam NRCB1 F200W,
the simulator's bias, dark, non-linearity, saturation, cosmic rays and snowballs,
and its offline CRDS cache), one after the other, each into a fresh directory:

1. ``strun calwebb_detector1`` on each file in turn;
2. the same through ``xargs -P J``;
3. ``jwstrun detector1 -j J`` (exposures side by side, one core per step);
4. ``jwstrun detector1 -j 1`` with ``maximum_cores=J`` for jump and ramp_fit (one
   exposure at a time, the steps on J cores) over the same N files;
5. one exposure: ``-j 1`` serial vs ``maximum_cores=J`` (what jwstrun picks for fewer
   exposures than cores).

The peak memory of one worker is the largest ``peak_rss_mb`` the manifest of run 3
records (VmHWM of the worker process over its task; the processes jump and ramp_fit
start in run 4 are not in it), printed with what the detector1 row's memory model
predicts for one exposure (``Stage.bytes_per_task``: per full-frame group).

    python scripts/bench_detector1.py --subarray SUB160 -n 2 --ngroups 6   # a smoke run
    python scripts/bench_detector1.py --full-frame -n 8 --ngroups 10 --record   # the issue's

``--record`` appends the printed table to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
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


def jwstrun_run(files: list[str], out: Path, env: dict, env_file: Path,
                options: list[str]) -> tuple[float, dict]:
    """Seconds of one ``jwstrun detector1`` run, and its manifest."""
    seconds = time_command([JWSTRUN, "detector1", *files, "-o", str(out), "--no-progress",
                            "--crds-env", str(env_file), *options], env)
    return seconds, json.loads((out / "jwstrun-manifest.json").read_text())


def in_step(cores: int) -> list[str]:
    return ["-j", "1", "--set", f"steps.jump.maximum_cores={cores}",
            "--set", f"steps.ramp_fit.maximum_cores={cores}"]


def measure(files: list[str], work: Path, env: dict, env_file: Path, jobs: int) -> dict:
    times: dict[str, float] = {}
    args = ["calwebb_detector1"]
    times["strun loop"] = time_strun_loop(files, args, fresh(work / "strun-seq"), env)
    times[f"xargs -P {jobs} strun"] = time_strun_xargs(files, args, fresh(work / "strun-xargs"),
                                                       env, jobs)
    across = f"jwstrun -j {jobs} (exposures)"
    times[across], manifest = jwstrun_run(files, fresh(work / "jwstrun"), env, env_file,
                                          ["-j", str(jobs)])
    inside = f"jwstrun -j 1, maximum_cores={jobs}"
    times[inside], _ = jwstrun_run(files, fresh(work / "jwstrun-instep"), env, env_file,
                                   in_step(jobs))
    one = files[:1]
    times["1 exposure: jwstrun -j 1"], _ = jwstrun_run(one, fresh(work / "one-serial"), env,
                                                       env_file, ["-j", "1"])
    times[f"1 exposure: maximum_cores={jobs}"], _ = jwstrun_run(
        one, fresh(work / "one-instep"), env, env_file, in_step(jobs))
    tasks = list(manifest["tasks"].values())
    return {"times": times, "peak_mb": max(t.get("peak_rss_mb") or 0 for t in tasks),
            "walls": [t["wall_s"] for t in tasks]}


def predicted_mb(path: str) -> float:
    from jwstrun.runner.plan import _exposure_pixels
    from jwstrun.stages import get_stage

    return get_stage("detector1").bytes_per_task(_exposure_pixels(Path(path))) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=8, help="exposures (default 8)")
    parser.add_argument("-j", type=int, default=2, help="parallel workers / cores (default 2)")
    parser.add_argument("--ngroups", type=int, default=10, help="groups per integration (10)")
    parser.add_argument("--subarray", default="SUB640", help="subarray (default SUB640)")
    parser.add_argument("--full-frame", action="store_true", help="FULL instead of --subarray")
    parser.add_argument("--work", default="/tmp/jwstrun-bench-detector1", help="work directory")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()

    subarray = "FULL" if args.full_frame else args.subarray
    work = Path(args.work)
    files, env_file, env = simulated(work, subarray, args.n, 7, uncal_groups=args.ngroups)
    started = machine()
    result = measure(files, work, env, env_file, args.j)
    times = result["times"]
    loop, xargs = times["strun loop"], times[f"xargs -P {args.j} strun"]
    across = times[f"jwstrun -j {args.j} (exposures)"]
    inside = times[f"jwstrun -j 1, maximum_cores={args.j}"]
    lines = [f"{args.n} x NIRCam {subarray} _uncal, {args.ngroups} groups, 1 integration, "
             f"-j {args.j}, {os.cpu_count()} CPUs (task wall {min(result['walls']):.1f}-"
             f"{max(result['walls']):.1f} s)"]
    lines += [f"{name:<34} {seconds:7.1f} s" for name, seconds in times.items()]
    lines += [
        f"jwstrun -j {args.j} vs strun loop:            {loop / across:.2f}x",
        f"jwstrun -j {args.j} vs xargs -P {args.j} strun:      {xargs / across:.2f}x "
        "(target >= 1.3)",
        f"exposures side by side vs cores inside: {inside / across:.2f}x",
        f"1 exposure, cores inside vs serial:     "
        f"{times['1 exposure: jwstrun -j 1'] / times[f'1 exposure: maximum_cores={args.j}']:.2f}x",
        f"peak RSS of one worker: {result['peak_mb']:.0f} MB measured; the detector1 row's "
        f"memory model: {predicted_mb(files[0]):.0f} MB",
    ]
    text = "\n".join(lines)
    print(text)
    if args.record:
        record(f"detector1: strun loop vs xargs -P vs jwstrun detector1 ({subarray} x{args.n}, "
               f"{args.ngroups} groups)", "bench_detector1.py", f"started {started}\n" + text)


if __name__ == "__main__":
    main()
