"""``jwstrun demo --from uncal``: Stage 1 to Stage 3 on simulated raw ramps, judged.

The simulator writes the program's ``_uncal`` ramps (bias, dark, non-linearity,
saturating stars, cosmic rays and snowballs; :mod:`jwstrun.simulate.ramps`) and the
Stage-1 references into its CRDS cache (``OUTDIR/sim-uncal``).  ``jwstrun detector1``
reduces them into ``OUTDIR/stage1`` (the calibrated ramps saved, for the jump checks),
and the demo's own chain goes on from the ``_rate`` files it wrote: Level-2
associations beside them, image2 and image3 into ``OUTDIR/out``.

Checks: detector1 against the ramps' truth, every exposure
(:func:`jwstrun.simulate.uncal_checks.detector1_checks`: slopes within noise, jumps
flagged, saturation flagged), then the mosaic's science as in the demo (alignment,
flux recovery, point sources).  The demo's cosmic-ray recall of outlier_detection is
left out: detector1's jump step has flagged the cosmic rays in the ramps already, and
the simulator's cosmic-ray truth is that of its ``_rate`` files.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Callable

__all__ = ["run_uncal_demo", "UNCAL_OPTIONS"]

#: the ramps: six groups in one integration (the readout pattern the simulator picks)
UNCAL_OPTIONS = dict(uncal=True, ngroups=6, uncal_nints=1)


def run_uncal_demo(outdir: Path, *, program: dict, jobs: int | None, force: bool,
                   stage: Callable | None, previews: bool):
    """Simulate ``program`` with its ramps, run detector1, image2 and image3, and judge
    them (a :class:`jwstrun.demo.DemoReport`)."""
    from .demo import DemoReport, _judge, _run_pipelines, _science, _simulate, _timed, _validate
    from .runner import run_detector1

    report = DemoReport(outdir=outdir)
    sim = _simulate(report, outdir, {**program, **UNCAL_OPTIONS}, force, folder="sim-uncal")
    stage1, out = outdir / "stage1", outdir / "out"
    common = dict(jobs=jobs, force=force, crds_env_file=str(sim.env_file), previews=previews)
    first = _timed(
        report, "detector1",
        lambda: run_detector1([str(p) for p in sim.uncal_files], stage1,
                              sets=["save_calibrated_ramp=true"],
                              on_event=stage("detector1") if stage else None,
                              command="jwstrun demo --from uncal (detector1)", **common),
        lambda s: f"{len(s.succeeded)} ran, {len(s.skipped)} up to date, {len(s.failed)} "
                  f"failed ({_parallelism_text(s)})")
    if first.failed:
        report.problems += [r.error for r in first.failed]
        return report
    rates = sorted(stage1 / n for r in first.results for n in r.outputs if n.endswith("_rate.fits"))
    ran = _run_pipelines(report, SimpleNamespace(rate_files=rates), stage1, out, stage, common)
    report.checks = _judge_detector1(report, sim, stage1)
    if ran is None:
        return report
    image2, image3 = ran
    products = sorted({*(stage1 / n for r in first.results for n in r.outputs),
                       *image2.outputs, *image3.outputs})
    report.products = [str(p) for p in products]
    _validate(report, products)
    (result3,) = image3.results
    science = _science(report, sim, out, result3)
    report.science = science.to_dict()
    report.checks += _judge(science, cosmic_rays=False)
    return report


def _parallelism_text(summary) -> str:
    mode = (summary.parallelism or {}).get("mode")  # runner._cores.Parallelism.to_dict()
    return mode.replace("_", " ") if mode else f"-j {summary.jobs}"


def _judge_detector1(report, sim, stage1: Path) -> list[dict]:
    """detector1's products of every exposure against the ramps' truth: the worst
    exposure's figure for each limit of :data:`jwstrun.simulate.uncal_checks.LIMITS`."""
    from .demo import _check, _timed
    from .simulate.uncal_checks import LIMITS, detector1_checks

    def measure() -> list[dict]:
        found = []
        for uncal in sim.uncal_files:
            stem = Path(uncal).name.removesuffix("_uncal.fits")
            ramps = sorted(stage1.glob(f"intermediate/*/{stem}_ramp.fits"))
            rate = stage1 / f"{stem}_rate.fits"
            if not ramps or not rate.is_file():
                report.problems.append(f"{stem}: no _rate or saved _ramp in {stage1}")
                continue
            found.append(detector1_checks(rate, ramps[0], sim.outdir, Path(uncal).name))
        return found

    measured = _timed(report, "detector1 checks", measure,
                      lambda m: f"{len(m)} exposure(s) against truth_uncal*")
    report.science["detector1"] = measured
    if not measured:
        return []
    worst_z = max((m["median_z"] for m in measured), key=abs)
    recall = min(m["jump_recall"] for m in measured)
    saturated = min(m["saturated_flagged"] for m in measured)
    (z_low, z_high), (r_low, _), (s_low, _) = (LIMITS["median_z"], LIMITS["jump_recall"],
                                               LIMITS["saturated_flagged"])
    return [
        _check("slopes - truth (median, in ERR; worst exposure)", worst_z,
               f"{z_low} to {z_high}", z_low < worst_z < z_high, ".3f"),
        _check("jumps flagged (recall; worst exposure)", recall,
               f">= {r_low} of {sum(m['jumps_measured'] for m in measured)}",
               recall >= r_low, ".3f"),
        _check("saturated pixels flagged (worst exposure)", saturated,
               f">= {s_low} of {sum(m['saturated_pixels'] for m in measured)}",
               saturated >= s_low, ".3f"),
    ]
