#!/usr/bin/env python
"""Full-frame `simulate --effect` and the real corrections against its truth.

Simulates NRCB1 F200W (FULL by default) with --dithers N twice, without and with
``--effect flicker --effect snowballs --effect persistence``, and prints the simulator's
extra time.  Then runs, per exposure, jwst's clean_flicker_noise (skip=False,
autoparam=True) and snowblind's snowblind, and snowblind's persist once over the set
(the time each adds per exposure), and judges the corrected _rate files against the
truth (``jwstrun.simulate.effect_checks.correction_checks``: on a full frame the 1/f
stripes are per amplifier).  ``--image2`` also runs image2 (no resample) with and
without the corrections and judges the _cal files.

    python scripts/bench_effects.py [--subarray FULL] [--dithers 4] [--image2] [--record]

``--record`` writes the printed lines, the command, date and machine to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _benchlib import Recorder, machine, record

EFFECTS = ["flicker", "snowballs", "persistence"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subarray", default="FULL")
    parser.add_argument("--dithers", type=int, default=4)
    parser.add_argument("--image2", action="store_true", help="also judge image2's _cal files")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    say = Recorder()

    say(f"started {machine()}")
    import jwst.assign_wcs  # noqa: F401  - the first import is not timed

    from jwstrun.simulate import simulate_program

    options = dict(detectors=["NRCB1"], filters=["F200W"], subarray=args.subarray,
                   n_dithers=args.dithers, seed=3)
    with tempfile.TemporaryDirectory(prefix="bench-effects-") as tmp:
        root = Path(tmp)
        # warm-up (SIAF, distortion models, PSF curves): not part of the comparison
        simulate_program(root / "warm-up", **{**options, "n_dithers": 1})
        seconds = {}
        for name, effects in (("plain", []), ("effects", EFFECTS)):
            t0 = time.perf_counter()
            sim = simulate_program(root / name, effects=effects, **options)
            seconds[name] = time.perf_counter() - t0
        say(f"simulate {args.subarray} x{args.dithers}: {seconds['plain']:.1f} s without effects, "
            f"{seconds['effects']:.1f} s with all three "
            f"(+{(seconds['effects'] - seconds['plain']) / args.dithers:.1f} s per exposure)")
        corrected = _correct(sim, root / "corr", say)
        from jwstrun.simulate.effect_checks import correction_checks

        _say_checks("on _rate", correction_checks(corrected, sim.rate_files, sim.outdir), say)
        if args.image2:
            cals = {k: _image2(files, sim, root / k) for k, files in
                    (("corr-cal", corrected), ("plain-cal", sim.rate_files))}
            _say_checks("on _cal", correction_checks(cals["corr-cal"], cals["plain-cal"],
                                                     sim.outdir), say)
    if args.record:
        record(f"Simulated effects and the real corrections ({args.subarray} x{args.dithers})",
               "bench_effects.py", say.text)


def _correct(sim, out: Path, say) -> list[Path]:
    """clean_flicker_noise + snowblind per exposure, persist over the set; timed."""
    from jwstrun.refs.env import applied_crds_environment

    out.mkdir()
    n = len(sim.rate_files)
    with applied_crds_environment(sim.env):
        from jwst.clean_flicker_noise import CleanFlickerNoiseStep
        from snowblind import PersistenceFlagStep, SnowblindStep

        models, t_cfn, t_snow = [], 0.0, 0.0
        for path in sim.rate_files:
            t0 = time.perf_counter()
            model = CleanFlickerNoiseStep.call(str(path), skip=False, autoparam=True)
            t1 = time.perf_counter()
            models.append(SnowblindStep.call(model))
            t_cfn, t_snow = t_cfn + t1 - t0, t_snow + time.perf_counter() - t1
        t0 = time.perf_counter()
        flagged = PersistenceFlagStep.call(models, input_dir=str(sim.outdir))
        t_persist = time.perf_counter() - t0
        paths = []
        for model in flagged:
            paths.append(out / model.meta.filename)
            model.save(paths[-1])
    say(f"per exposure: clean_flicker_noise {t_cfn / n:.1f} s, snowblind {t_snow / n:.1f} s, "
        f"persist {t_persist / n:.1f} s (over the set of {n})")
    return paths


def _image2(files, sim, out: Path) -> list[Path]:
    from jwstrun.refs.env import applied_crds_environment

    out.mkdir()
    with applied_crds_environment(sim.env):
        from jwst.pipeline import Image2Pipeline

        for path in files:
            Image2Pipeline.call(str(path), output_dir=str(out), save_results=True,
                                steps={"resample": {"skip": True}})
    return sorted(out.glob("*_cal.fits"))


def _say_checks(where: str, result: dict, say) -> None:
    for check in result["checks"]:
        value = check["value"]
        shown = "-" if value is None else f"{value:.4g}"
        say(f"{where}: {check['name']}: {shown} (needs {check['requirement']}) "
            f"{'ok' if check['passed'] else 'FAILED'}")
    say(f"{where}: details {json.dumps({k: v for k, v in result.items() if k != 'checks'})}")


if __name__ == "__main__":
    main()
