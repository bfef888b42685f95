"""What the corrections before calwebb_image2 cost per full-frame exposure: `nircam-clean` vs `default`.

Simulates N NIRCam full-frame exposures of one detector and their CRDS cache, writes a
``_jump`` file beside each (a RampModel of ``--groups`` groups whose last group marks
a few pixels SATURATED: what persist reads; until the simulator writes them itself),
then runs ``jwstrun image2 -j 1`` on them with ``--profile default`` and with
``--profile nircam-clean`` (clean_flicker_noise with autoparam, snowblind, persist),
alternating, ``--repeat`` times each.  Per exposure it reports the task's wall time
(from the manifest) and, for nircam-clean, each correction step's time as the task
recorded it.

    python scripts/bench_corrections.py [--exposures 3] [--repeat 2] [--groups 5]
        [--subarray FULL] [--workdir DIR] [--record]

About 4 minutes on 2 shared cores with the defaults (3 full-frame exposures, 2 repeats
of each profile).  ``--record`` writes the printed lines, the command, date and machine
to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from _benchlib import JWSTRUN, Recorder, fresh, machine, record


def write_jumps(rate_files, groups: int) -> None:
    """A ``_jump`` file beside each exposure, with a saturated block in the last group."""
    import numpy as np
    from stdatamodels.jwst import datamodels

    for number, rate in enumerate(rate_files):
        jump_path = rate.with_name(rate.name.replace("_rate", "_jump"))
        if jump_path.exists():
            continue
        with datamodels.open(rate) as model:
            shape = model.data.shape
            jump = datamodels.RampModel(data=np.zeros((1, groups, *shape), np.float32))
            jump.update(model)
        groupdq = np.zeros((1, groups, *shape), np.uint8)
        if number % 2 == 0:
            groupdq[0, -1, 1000:1020, 1000:1020] = datamodels.dqflags.group["SATURATED"]
        jump.groupdq = groupdq
        jump.save(jump_path)
        jump.close()


def run(sim: Path, outdir: Path, profile: str, env: dict) -> dict:
    fresh(outdir)
    done = subprocess.run(
        [JWSTRUN, "image2", str(sim), "-o", str(outdir), "-j", "1", "--profile", profile,
         "--no-progress", "--no-report", "--json"],
        env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{profile} run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads((outdir / "jwstrun-manifest.json").read_text())["tasks"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exposures", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--groups", type=int, default=5)
    parser.add_argument("--subarray", default="FULL")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    say = Recorder()

    say(f"started {machine()}")
    from jwstrun.simulate import simulate_program

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_corrections_"))
    sim = simulate_program(work / "sim", detectors=["NRCB1"], filters=["F200W"],
                           subarray=args.subarray, n_dithers=args.exposures, seed=7, force=True)
    write_jumps(sim.rate_files, args.groups)
    env = {**os.environ, **sim.env}
    say(f"input: {len(sim.rate_files)} x NIRCam {args.subarray} exposures, _jump files of "
        f"{args.groups} groups, CRDS {sim.crds_context}")

    walls: dict[str, list[float]] = {"default": [], "nircam-clean": []}
    steps: dict[str, list[float]] = {}
    for i in range(args.repeat):
        for profile in ("default", "nircam-clean"):
            tasks = run(sim.outdir, work / f"out-{profile}-{i}", profile, env)
            per_task = [t["wall_s"] for t in tasks.values()]
            walls[profile] += per_task
            for task in tasks.values():
                for correction in task.get("corrections") or []:
                    steps.setdefault(correction["step"], []).append(correction["wall_s"])
            say(f"  run {i + 1} {profile:12s} per exposure "
                f"{', '.join(f'{w:.1f}' for w in per_task)} s, peak RSS "
                f"{max(t['peak_rss_mb'] for t in tasks.values()):.0f} MB")
    d, c = statistics.median(walls["default"]), statistics.median(walls["nircam-clean"])
    say(f"median per exposure: default {d:.1f} s, nircam-clean {c:.1f} s: the corrections "
        f"add {c - d:.1f} s ({(c - d) / d * 100:.0f} %)")
    say("median per exposure and step: " + ", ".join(
        f"{step} {statistics.median(times):.1f} s" for step, times in steps.items()))
    if args.record:
        record(f"corrections before image2: `nircam-clean` vs `default`, NIRCam {args.subarray}",
               "bench_corrections.py", say.text)


if __name__ == "__main__":
    main()
