"""``jwstrun demo``: simulate -> associations -> image2 -> image3 -> validation -> science.

Runs entirely offline on the CRDS cache the simulator writes, then judges the
result against the simulator's truth tables (alignment after tweakreg,
cosmic-ray recall of outlier_detection, point-source recovery and flux).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

__all__ = ["DemoReport", "run_demo", "REQUIREMENTS"]

log = logging.getLogger(__name__)

#: What the demo calls a pass (same limits as the simulator's proof with strun).
REQUIREMENTS = {
    "alignment_max_arcsec": 0.01,
    "cosmic_ray_recall": 0.90,
    "sources_recovered": 0.95,
    "flux_ratio": (0.85, 1.15),
}

#: source_catalog's default of 25 connected pixels is tuned for extended sources: on an
#: undersampled short-wave point-source field it needs S/N ~ 40 to detect a star
#: (docs/simulate.md). The demo asks for point sources down to S/N 20, so it uses 10.
DEMO_IMAGE3_SETS = ("steps.source_catalog.npixels=10",)

_SMALL = dict(detectors=["NRCB1"], filters=["F200W"], subarray="SUB640", n_dithers=4, seed=11)
_FULL = dict(detectors=["NRCB1"], filters=["F200W"], subarray="FULL", n_dithers=4, seed=11)


@dataclass
class DemoReport:
    """Stages with times, science checks with pass/fail, products."""

    outdir: Path
    stages: list[dict] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)
    products: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    science: dict = field(default_factory=dict)
    #: the simulator's catalog of injected sources (the HTML report compares the
    #: catalog magnitudes with it: ``write_report(..., truth=report.truth_file)``)
    truth_file: Path | None = None
    #: the run the HTML report shows (None: found from ``outdir``, its ``out/``)
    run_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and all(c["passed"] for c in self.checks)

    def problem_text(self) -> str:
        failed = [f"{c['name']} {c['value']} (needs {c['requirement']})"
                  for c in self.checks if not c["passed"]]
        return "; ".join(self.problems + failed) or "none"

    def to_dict(self) -> dict:
        return {
            "outdir": str(self.outdir),
            "ok": self.ok,
            "stages": self.stages,
            "checks": self.checks,
            "science": self.science,
            "products": self.products,
            "problems": self.problems,
        }


def _check(name: str, value, requirement: str, passed: bool, fmt: str) -> dict:
    shown = "-" if value is None else format(value, fmt)
    return {"name": name, "value": shown, "requirement": requirement,
            "passed": bool(passed) and value is not None}


def run_demo(
    outdir: str | Path = "jwstrun-demo",
    *,
    full_frame: bool = False,
    jobs: int | None = None,
    force: bool = False,
    stage: Callable[[str], Callable] | None = None,
    previews: bool = False,
    corrections: bool = False,
    from_type: str | None = None,
) -> DemoReport:
    """Run the whole chain in ``outdir`` (``sim/`` with the associations, ``out/``) and judge it.

    ``stage(name)`` returns the progress callback for one pipeline stage (the CLI
    passes a fresh live display per stage). ``previews=True``: the workers draw
    the HTML report's previews (for a :func:`jwstrun.look.write_report` after).
    ``corrections=True``: the chain without and with the corrections and absolute
    astrometry instead (:mod:`jwstrun.demo_corrections`: ``sim-effects/``,
    ``uncorrected/``, ``corrected/``).  ``from_type="uncal"``: from simulated raw ramps
    through detector1 first (:mod:`jwstrun.demo_uncal`: ``sim-uncal/``, ``stage1/``,
    ``out/``), with detector1's checks against the ramps' truth.
    """
    from .runner import prepare_outdir

    outdir = prepare_outdir(outdir)
    if corrections:
        from .demo_corrections import run_corrections_demo

        return run_corrections_demo(outdir, jobs=jobs, force=force, stage=stage,
                                    previews=previews,
                                    program={"subarray": "FULL"} if full_frame else None)
    if from_type is not None:
        if from_type != "uncal" or corrections:
            raise ConfigError(f"from_type={from_type!r}: the demo starts from 'uncal' only, "
                              "without corrections=True.")
        from .demo_uncal import run_uncal_demo

        return run_uncal_demo(outdir, program=_FULL if full_frame else _SMALL, jobs=jobs,
                              force=force, stage=stage, previews=previews)
    report = DemoReport(outdir=outdir)
    sim = _simulate(report, outdir, _FULL if full_frame else _SMALL, force)
    out = outdir / "out"
    common = dict(jobs=jobs, force=force, crds_env_file=str(sim.env_file), previews=previews)
    ran = _run_pipelines(report, sim, outdir / "sim", out, stage, common)
    if ran is None:
        return report
    image2, image3 = ran
    products = sorted({*image2.outputs, *image3.outputs})
    report.products = [str(p) for p in products]
    _validate(report, products)
    (result3,) = [r for r in image3.results]
    science = _science(report, sim, out, result3)
    report.science = science.to_dict()
    report.checks = _judge(science)
    return report


def _timed(report: DemoReport, name: str, func: Callable, detail: Callable):
    """Run ``func()``, record the stage's time and ``detail(value)`` in the report."""
    start = time.monotonic()
    value = func()
    report.stages.append({"name": name, "seconds": round(time.monotonic() - start, 2),
                          "detail": detail(value)})
    return value


def _simulate(report: DemoReport, outdir: Path, options: dict, force: bool,
              folder: str = "sim"):
    """The simulated program in ``outdir/folder`` (an earlier one when its options match)."""
    from .simulate import load_simulation, simulate_program

    # A demo re-run in the same OUTDIR reuses the simulation and resumes the rest.
    previous = None if force else load_simulation(outdir / folder, **options)
    sim = _timed(
        report,
        "simulate",
        lambda: previous or simulate_program(outdir / folder, force=force, **options),
        lambda s: f"{len(s.rate_files)} {options['subarray']} exposures"
        + (f" with {', '.join(options['effects'])}" if options.get("effects") else "")
        + f", CRDS cache {s.crds_context}" + (" (reused)" if previous else ""),
    )
    report.truth_file = sim.truth_file
    return sim


def _run_pipelines(report: DemoReport, sim, asn_dir: Path, out: Path, stage, common: dict):
    """Associations (in ``asn_dir``, next to their members: the JWST convention),
    image2 and image3: their summaries, or None after a failure (the failures are
    in ``report.problems``)."""
    from .asn import make_associations
    from .runner import run_image2, run_image3

    built = _timed(
        report,
        "associations",
        lambda: make_associations(sim.rate_files, asn_dir, level=2, group_by="default",
                                  force=True),
        lambda b: f"{len(b.associations)} Level-2 association(s) in {asn_dir.name}/",
    )
    image2 = _timed(
        report,
        "image2",
        lambda: run_image2([str(a.path) for a in built.associations], out,
                           on_event=stage("image2") if stage else None,
                           command="jwstrun demo (image2)", **common),
        lambda s: f"{len(s.succeeded)} ran, {len(s.skipped)} up to date, {len(s.failed)} failed "
        f"(-j {s.jobs})",
    )
    if image2.failed:
        report.problems += [r.error for r in image2.failed]
        return None
    cal_files = [out / n for r in image2.results for n in r.outputs if n.endswith("_cal.fits")]
    image3 = _timed(
        report,
        "image3",
        lambda: run_image3([str(p) for p in cal_files], out,
                           on_event=stage("image3") if stage else None,
                           command="jwstrun demo (image3)", sets=DEMO_IMAGE3_SETS, **common),
        lambda s: f"{len(s.succeeded)} ran, {len(s.skipped)} up to date, {len(s.failed)} failed",
    )
    if image3.failed:
        report.problems += [r.error for r in image3.failed]
        return None
    return image2, image3


def _validate(report: DemoReport, products: list) -> None:
    """Validate every product; errors become report problems."""
    from .validate import validate_files

    reports = _timed(
        report,
        "validate",
        lambda: validate_files(products),
        lambda rs: f"{sum(r.ok for r in rs)}/{len(rs)} products valid",
    )
    report.problems += [f"{r.name}: {f.message}" for r in reports for f in r.errors]


def _science(report: DemoReport, sim, out: Path, result3):
    """The science checks of the image3 products against the simulator's truth."""
    from .simulate.checks import run_checks

    crf_files = [out / n for n in result3.outputs if n.endswith("_crf.fits")]
    cat_files = [out / n for n in result3.outputs if n.endswith("_cat.ecsv")]
    group = sim.groups[0]
    snr_column = f"snr_{group['detector'].lower()}_{group['filter'].lower()}"
    return _timed(
        report,
        "science checks",
        lambda: run_checks(sim.outdir, crf_files, cat_files[0] if cat_files else None,
                           sim.crds_path, snr_column),
        lambda c: "against truth_*.ecsv",
    )


def _judge(science, *, cosmic_rays: bool = True) -> list[dict]:
    """The science figures against :data:`REQUIREMENTS`; ``cosmic_rays=False`` leaves out
    outlier_detection's cosmic-ray recall (from _uncal ramps, the jump step took them:
    :mod:`jwstrun.demo_uncal`)."""
    req = REQUIREMENTS
    checks = [
        _check("alignment residual (max, arcsec)", science.alignment_max_arcsec,
               f"< {req['alignment_max_arcsec']} (before tweakreg: "
               f"{_fmt(science.alignment_before_max_arcsec)})",
               (science.alignment_max_arcsec or 1) < req["alignment_max_arcsec"], ".4f"),
        _check("flux recovery (median measured/true)", science.flux_ratio_median,
               f"{req['flux_ratio'][0]}-{req['flux_ratio'][1]}",
               req["flux_ratio"][0] < (science.flux_ratio_median or 0) < req["flux_ratio"][1],
               ".3f"),
        _check("point sources recovered", science.sources_recovered,
               f">= {req['sources_recovered']} of {science.sources_considered}",
               (science.sources_recovered or 0) >= req["sources_recovered"], ".3f"),
    ]
    if cosmic_rays:
        checks.append(_check(
            "cosmic-ray recall", science.cosmic_ray_recall,
            f">= {req['cosmic_ray_recall']} of {science.cosmic_rays_injected}",
            (science.cosmic_ray_recall or 0) >= req["cosmic_ray_recall"], ".3f"))
    return checks


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"
