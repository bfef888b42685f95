#!/usr/bin/env python
"""What the HTML run report adds to a run: the same command with and without ``--no-report``.

Three cases, each run as a user types it (process start and imports included),
into a fresh output directory every time, with the simulator's offline CRDS cache:

* ``jwstrun image3`` on one association of 4 full-frame MIRI exposures (``_cal``),
* ``jwstrun image3`` on one association of 4 full-frame NIRCam exposures,
* ``jwstrun image2 -j 2 --report`` on 8 full-frame NIRCam exposures (the report is
  opt-in for image2; "without" adds ``--no-report``, which turns it off again).

Each case runs once with the report as a warm-up (not timed), then ``--rounds``
rounds of both variants side by side, alternating which goes first; the line
printed per case is the median wall time with and without the report and what
the report adds (issue 25's target: at most 5 %).  Under it, from the runs with
the report: how many previews the workers drew (and how many of them the helper
process that uses an idle CPU), their summed drawing time, and the seconds the
parent took to write the page (its "Written by jwstrun in" line).

    python scripts/bench_report.py                  # full frame, 3 rounds (about 30 minutes)
    python scripts/bench_report.py --quick          # small subarrays, 1 round: a smoke check
    python scripts/bench_report.py --only miri      # one case (miri, nircam, image2)
    python scripts/bench_report.py --record         # append the table to docs/benchmarks.md

The image3 inputs are the ``_cal`` files of one ``jwstrun image2`` run (resample
skipped) and the Level-3 association built from them, made once under --work.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _benchlib import JWSTRUN, fresh, machine, record, simulated

TARGET_PERCENT = 5.0


def cal_association(work: Path, files: list[str], env_file: Path, env: dict, name: str) -> str:
    """A Level-3 association of the _cal files of ``files`` (made once, reused)."""
    from jwstrun.asn import make_associations

    cal_dir = work / f"cal-{name}"
    if len(list(cal_dir.glob("*_cal.fits"))) != len(files):
        fresh(cal_dir)
        subprocess.run([JWSTRUN, "image2", *files, "-o", str(cal_dir), "--no-progress",
                        "--no-report", "--crds-env", str(env_file),
                        "--set", "steps.resample.skip=true"],
                       env=env, capture_output=True, text=True, check=True)
    built = make_associations(sorted(cal_dir.glob("*_cal.fits")), cal_dir / "l3_asn.json",
                              level=3, force=True)
    return str(built.associations[0].path)


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {shlex.join(command)}\n{proc.stderr[-3000:]}")
    return seconds


def report_breakdown(out: Path) -> dict:
    """What the previews and the page cost in a run with the report (its manifest and page)."""
    tasks = json.loads((out / "jwstrun-manifest.json").read_text())["tasks"].values()
    entries = [e for t in tasks for e in (t.get("previews") or {}).values()]
    page = (out / "jwstrun-report.html").read_text()
    written = re.search(r"Written by jwstrun in ([0-9.]+) s", page)
    return {
        "previews": len(entries),
        "by helper": sum(e.get("by") == "helper" for e in entries),
        "drawing s": sum(e.get("seconds") or 0 for e in entries),
        "page s": float(written.group(1)) if written else float("nan"),
    }


def compare(label: str, command, work: Path, env: dict, rounds: int) -> dict:
    """Warm-up, then ``rounds`` alternating pairs with and without the report."""
    with_cmd = lambda out: command(out)  # noqa: E731
    without_cmd = lambda out: [*command(out), "--no-report"]  # noqa: E731
    print(f"== {label}\n   with:    {shlex.join(with_cmd(work / 'with'))}\n"
          f"   without: {shlex.join(without_cmd(work / 'without'))}", flush=True)
    timed(with_cmd(fresh(work / "with")), env)  # warm-up: page cache, font cache, CRDS files
    walls: dict[str, list[float]] = {"with": [], "without": []}
    breakdowns = []
    for k in range(rounds):
        for variant in (("without", "with") if k % 2 == 0 else ("with", "without")):
            out = fresh(work / variant)
            walls[variant].append(timed((with_cmd if variant == "with" else without_cmd)(out), env))
            if variant == "with":
                breakdowns.append(report_breakdown(out))
        print(f"   round {k + 1}: with {walls['with'][-1]:.1f} s, without "
              f"{walls['without'][-1]:.1f} s", flush=True)
    with_s, without_s = statistics.median(walls["with"]), statistics.median(walls["without"])
    return {
        "label": label, "with": with_s, "without": without_s,
        "adds": 100.0 * (with_s / without_s - 1.0),
        "walls": {k: [round(v, 1) for v in vs] for k, vs in walls.items()},
        "breakdown": {k: statistics.median(b[k] for b in breakdowns) for k in breakdowns[0]},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None,
                        help="pairs per case after the warm-up (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="NIRCam SUB160 / MIRI SUB128, 4 exposures each: a smoke check of "
                        "this script, not a measurement")
    parser.add_argument("--only", action="append", choices=("miri", "nircam", "image2"),
                        help="run only this case (repeatable; default: all three)")
    parser.add_argument("-j", type=int, default=2, help="image2 workers (default 2)")
    parser.add_argument("--work", default="/tmp/jwstrun-bench-report", help="work directory")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    nircam, miri = ("SUB160", "SUB128") if args.quick else ("FULL", "FULL")
    n_image2 = 4 if args.quick else 8
    cases = args.only or ["miri", "nircam", "image2"]

    work = Path(args.work)
    started = machine()
    print(f"started {started}", flush=True)
    rows = []

    for case in ("miri", "nircam"):
        if case not in cases:
            continue
        instrument, subarray = ("MIRI", miri) if case == "miri" else ("NIRCam", nircam)
        files, env_file, env = simulated(work, subarray, 4, seed=25 if case == "miri" else 11,
                                         instrument=instrument)
        asn = cal_association(work, files, env_file, env, f"{case}-{subarray}")
        rows.append(compare(
            f"image3, 4 x {instrument} {subarray} association",
            lambda out, asn=asn, env_file=env_file: [
                JWSTRUN, "image3", asn, "-o", str(out), "--no-progress", "--crds-env", str(env_file)],
            work / f"image3-{case}", env, rounds))
    if "image2" in cases:
        files, env_file, env = simulated(work, nircam, n_image2, seed=5)
        rows.append(compare(
            f"image2, {n_image2} x NIRCam {nircam}, -j {args.j}",
            lambda out: [JWSTRUN, "image2", *files, "-o", str(out), "-j", str(args.j),
                         "--no-progress", "--crds-env", str(env_file), "--report"],
            work / "image2", env, rounds))

    lines = [f"report vs --no-report, {rounds} round(s) after a warm-up, medians "
             f"(started {started}; ended {machine()})",
             f"{'':40} {'with':>8} {'without':>8}  report adds"]
    for r in rows:
        lines.append(f"{r['label']:40} {r['with']:7.1f}s {r['without']:7.1f}s  "
                     f"{r['adds']:+6.1f} %   runs {r['walls']}")
        b = r["breakdown"]
        lines.append(f"{'':40} {b['previews']:.0f} products previewed on the worker side "
                     f"({b['by helper']:.0f} by the helper), drawing {b['drawing s']:.1f} s "
                     f"summed; page written in {b['page s']:.2f} s")
    if args.quick:
        lines.append("quick: small subarrays, not judged against the target")
        met = True
    else:
        met = all(r["adds"] <= TARGET_PERCENT for r in rows)
        lines.append(f"target: the report adds at most {TARGET_PERCENT:.0f} % of the wall time: "
                     f"{'met' if met else 'NOT met'}")
    text = "\n".join(lines)
    print(text)
    if args.record:
        record("report: the HTML run report's cost (with vs --no-report)", "bench_report.py", text)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
