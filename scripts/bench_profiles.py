"""Wall time of calwebb_image2 per full-frame exposure: profile `fast` vs `default`.

Simulates one NIRCam full-frame exposure (and its CRDS cache), then runs
``Image2Pipeline.call`` with ``build_call_parameters("image2", [profile])`` in a
fresh process per run, alternating default / fast so both see the same machine
load.  Only the pipeline call is timed (the ~3 s ``import jwst.pipeline`` is
excluded and identical for both).  Also times ``jwstrun profiles check`` with a
cold and a warm spec cache.  With ``--image3 N``, also simulates N dithers,
reduces them with image2 and times ``Image3Pipeline.call`` default vs fast.

    python scripts/bench_profiles.py [--repeat 3] [--subarray FULL] [--image3 4] [--workdir DIR]
        [--record]

About 2 minutes on 2 shared cores with --repeat 3 (full frame, image2 only; 100 s at
load average 4); --image3 4 adds several minutes (two full-frame mosaics per repeat).
``--record`` writes the printed lines, the command, date and machine to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _benchlib import Recorder, machine, record

CHILD = r"""
import json, resource, sys, time
from jwst.pipeline import Image2Pipeline, Image3Pipeline
from jwstrun.profiles import build_call_parameters
rate, outdir, profile, pipeline = sys.argv[1:5]
kwargs = build_call_parameters(pipeline, [profile])
cls = Image2Pipeline if pipeline == "image2" else Image3Pipeline
t0 = time.perf_counter()
cls.call(rate, output_dir=outdir, save_results=True, configure_log=False, **kwargs)
wall = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall": wall, "rss_mb": rss}))
"""


def run_once(rate: Path, outdir: Path, profile: str, env: dict, pipeline="image2") -> dict:
    outdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(rate), str(outdir), profile, pipeline],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"{profile} run failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["products"] = sorted(p.name.split("_")[-1] for p in outdir.glob("*.fits"))
    return result


def time_check(env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "jwstrun", "profiles", "check",
         str(Path(__file__).resolve().parent.parent / "configs" / "crowded.yaml")],
        env=env, check=True, capture_output=True,
    )
    return time.perf_counter() - t0


def bench_image3(work: Path, args, say) -> None:
    from jwstrun.simulate import simulate_program

    sim = simulate_program(
        work / "sim3", subarray=args.subarray, n_dithers=args.image3, force=True
    )
    env = {**os.environ, **sim.env}
    cal_dir = work / "cal3"
    for rate in sim.rate_files:
        run_once(rate, cal_dir, "fast", env)
    cals = sorted(p.name for p in cal_dir.glob("*_cal.fits"))
    subprocess.run(
        [str(Path(sys.executable).with_name("asn_from_list")), "-o", "l3_asn.json",
         "--product-name", "mosaic", *cals],
        cwd=cal_dir, check=True, capture_output=True,
    )
    say(f"image3: {len(cals)} x {args.subarray} exposures")
    walls: dict[str, list[float]] = {"default": [], "fast": []}
    for i in range(max(1, args.repeat - 1)):
        for profile in ("default", "fast"):
            r = run_once(cal_dir / "l3_asn.json", work / f"i3{profile}{i}", profile, env, "image3")
            walls[profile].append(r["wall"])
            size = sum(p.stat().st_size for p in (work / f"i3{profile}{i}").glob("*_i2d.fits"))
            say(
                f"  run {i + 1} {profile:7s} {r['wall']:6.2f} s  peak RSS {r['rss_mb']:6.0f} MB"
                f"  _i2d {size / 1e6:.0f} MB"
            )
    d, f = statistics.median(walls["default"]), statistics.median(walls["fast"])
    say(f"image3 median: default {d:.2f} s, fast {f:.2f} s, ratio default/fast {d / f:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--subarray", default="FULL")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--image3", type=int, default=0, metavar="N",
                        help="also time image3 default vs fast on N dithers")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    say = Recorder()

    say(f"started {machine()}")

    from jwstrun.simulate import simulate_program

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_profiles_"))
    sim = simulate_program(work / "sim", subarray=args.subarray, n_dithers=1, force=True)
    rate = sim.rate_files[0]
    env = {**os.environ, **sim.env}
    say(f"input: {rate.name} ({args.subarray}), CRDS {sim.crds_context}")

    walls: dict[str, list[float]] = {"default": [], "fast": []}
    for i in range(args.repeat):
        for profile in ("default", "fast"):
            r = run_once(rate, work / f"{profile}{i}", profile, env)
            walls[profile].append(r["wall"])
            say(
                f"  run {i + 1} {profile:7s} {r['wall']:6.2f} s  peak RSS {r['rss_mb']:6.0f} MB"
                f"  products {', '.join(r['products'])}"
            )
    d, f = statistics.median(walls["default"]), statistics.median(walls["fast"])
    say(f"image2 median: default {d:.2f} s, fast {f:.2f} s, ratio default/fast {d / f:.2f}x")

    if args.image3:
        bench_image3(work, args, say)

    cache_env = {**os.environ, "XDG_CACHE_HOME": str(work / "xdg")}
    cold = time_check(cache_env)
    warm = min(time_check(cache_env) for _ in range(3))
    say(
        f"jwstrun profiles check: cold spec cache {cold:.2f} s, warm {warm:.2f} s, "
        f"ratio {cold / warm:.1f}x"
    )
    if args.record:
        record(f"profiles: `fast` vs `default`, NIRCam {args.subarray}", "bench_profiles.py",
               say.text)


if __name__ == "__main__":
    main()
