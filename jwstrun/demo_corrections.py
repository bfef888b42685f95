"""``jwstrun demo --corrections``: the chain with and without the science-grade corrections.

One simulated NIRCam program with 1/f striping, snowballs and persistence afterimages
(``simulate --effect``) and its Gaia-like reference catalogue, reduced twice from the
same ``_rate`` files:

* ``uncorrected/``: calwebb_image2 and calwebb_image3 as they come;
* ``corrected/``: the ``nircam-clean`` profile's corrections (clean_flicker_noise,
  snowblind, persist) before calwebb_image2, and calwebb_image3 with tweakreg's
  ``abs_refcat`` set to the simulated catalogue cut to the field and moved to the
  observations' epoch (:func:`jwstrun.refs.refcat.cut_catalogue`).

The two are judged against the simulator's truth by issue 17's limits: the corrections
by :func:`jwstrun.simulate.effect_checks.correction_checks` (corrected ``_cal`` files
against the uncorrected ones), the astrometry by :func:`jwstrun.simulate.checks.run_checks`
on both mosaics (the absolute offset with the catalogue, and without it for comparison;
the relative alignment of the exposures unchanged).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .demo import DEMO_IMAGE3_SETS, DemoReport, _check, _simulate, _timed, _validate

__all__ = ["run_corrections_demo", "PROFILE", "EFFECTS", "ASTROMETRY"]

#: the built-in profile whose ``before:`` corrections the demo runs
PROFILE = "nircam-clean"
#: what the simulator injects (what the profile removes)
EFFECTS = ("flicker", "snowballs", "persistence")
#: SUB640 x 4 dithers: the smallest program whose catalogue has enough stars for
#: tweakreg's abs_minobj inside the footprints
_PROGRAM = dict(detectors=["NRCB1"], filters=["F200W"], subarray="SUB640", n_dithers=4, seed=11)
#: issue 17's limits on absolute astrometry (arcsec)
ASTROMETRY = {
    "mosaic_offset_max_arcsec": 0.01,
    "relative_alignment_max_arcsec": 0.01,
    "relative_alignment_change_arcsec": 0.001,  # "unchanged": at most this much worse
}
#: the folders of OUTDIR (apart from the default demo's sim/ and out/)
SIM, UNCORRECTED, CORRECTED = "sim-effects", "uncorrected", "corrected"
FIELD_CATALOGUE = "field.ecsv"


def run_corrections_demo(
    outdir: Path,
    *,
    jobs: int | None = None,
    force: bool = False,
    stage: Callable[[str], Callable] | None = None,
    previews: bool = False,
    program: dict | None = None,
) -> DemoReport:
    """Simulate with the effects, reduce without and with the corrections, judge both.

    ``outdir`` exists (:func:`jwstrun.demo.run_demo` prepares it); ``program``: the
    simulated program's options (:func:`jwstrun.simulate.simulate_program`'s keywords,
    default one NRCB1 SUB640 detector, 4 dithers; smaller programs have too few reference
    stars for ``abs_refcat``). ``previews`` is for the corrected run's HTML report
    (``report.run_dir``).
    """
    report = DemoReport(outdir=outdir)
    options = {**_PROGRAM, **(program or {}), "effects": list(EFFECTS)}
    sim = _simulate(report, outdir, options, force, folder=SIM)
    report.run_dir = outdir / CORRECTED
    common = dict(jobs=jobs, force=force, crds_env_file=str(sim.env_file))
    asn_files = _associations(report, sim)
    cal, products = {}, []
    for label, profiles in ((UNCORRECTED, ()), (CORRECTED, (PROFILE,))):
        summary = _stage(report, stage, "image2", label, lambda on_event, p=profiles, d=label:
                         _image2(asn_files, outdir / d, p, on_event, common, previews))
        if summary is None:
            return report
        products += summary.outputs
        cal[label] = [p for p in summary.outputs if p.name.endswith("_cal.fits")]
    corrections = _timed(report, "correction checks", lambda: _correction_checks(sim, cal),
                         lambda c: f"{sum(x['passed'] for x in c['checks'])}/"
                                   f"{len(c['checks'])} pass, corrected/ against uncorrected/")
    field = _timed(report, "refs refcat", lambda: _field_catalogue(sim, cal[CORRECTED]),
                   lambda cut: cut.summary().replace(str(outdir) + "/", ""))
    sets = {UNCORRECTED: DEMO_IMAGE3_SETS,
            CORRECTED: (*DEMO_IMAGE3_SETS, f"steps.tweakreg.abs_refcat={field.output}")}
    for label in (UNCORRECTED, CORRECTED):
        summary = _stage(report, stage, "image3", label, lambda on_event, d=label:
                         _image3(cal[d], outdir / d, sets[d], on_event, common, previews))
        if summary is None:
            return report
        products += summary.outputs
    products = sorted(set(products))
    report.products = [str(p) for p in products]
    _validate(report, products)
    science = _timed(report, "science checks", lambda: _science(sim, outdir),
                     lambda s: "both mosaics against truth_*.ecsv")
    report.science = {"corrections": {k: v for k, v in corrections.items() if k != "checks"},
                      "without": science[UNCORRECTED].to_dict(),
                      "with": science[CORRECTED].to_dict(),
                      "abs_refcat": field.output}
    report.checks = [*_shown(corrections["checks"]), *_judge_astrometry(science)]
    return report


def _associations(report: DemoReport, sim) -> list[str]:
    """Level-2 associations beside the _rate files (and their _jump files, which persist
    reads), as the default demo makes them."""
    from .asn import make_associations

    built = _timed(
        report,
        "associations",
        lambda: make_associations(sim.rate_files, sim.outdir, level=2, group_by="default",
                                  force=True),
        lambda b: f"{len(b.associations)} Level-2 association(s) in {SIM}/",
    )
    return [str(a.path) for a in built.associations]


def _stage(report: DemoReport, stage, name: str, label: str, call: Callable):
    """One pipeline run, timed as ``name (label)``: its summary, or None after a failure
    (in ``report.problems``)."""
    title = f"{name} ({label})"
    summary = _timed(report, title, lambda: call(stage(title) if stage else None),
                     lambda s: f"{len(s.succeeded)} ran, {len(s.skipped)} up to date, "
                               f"{len(s.failed)} failed (-j {s.jobs}) in {label}/")
    if summary.failed:
        report.problems += [r.error for r in summary.failed]
        return None
    return summary


def _image2(asn_files, out: Path, profiles, on_event, common: dict, previews: bool):
    from .runner import run_image2

    label = f"--profile {profiles[0]}" if profiles else "no corrections"
    return run_image2(asn_files, out, profiles=profiles, on_event=on_event,
                      previews=previews and bool(profiles),
                      command=f"jwstrun demo --corrections (image2, {label})", **common)


def _image3(cal_files, out: Path, sets, on_event, common: dict, previews: bool):
    from .runner import run_image3

    with_refcat = any("abs_refcat" in s for s in sets)
    return run_image3([str(p) for p in cal_files], out, sets=sets, on_event=on_event,
                      previews=previews and with_refcat,
                      command="jwstrun demo --corrections (image3"
                              + (", abs_refcat)" if with_refcat else ")"), **common)


def _correction_checks(sim, cal: dict) -> dict:
    from .simulate.effect_checks import correction_checks

    return correction_checks(cal[CORRECTED], cal[UNCORRECTED], sim.outdir)


def _field_catalogue(sim, cal_files):
    """The simulated catalogue cut to the exposures' footprints and moved to their epoch
    (what ``jwstrun refs refcat sim-effects/refcat.ecsv CAL_FILES -o ...`` writes)."""
    from .refs.refcat import cut_catalogue

    return cut_catalogue(sim.refcat_file, cal_files, sim.outdir / FIELD_CATALOGUE, force=True)


def _science(sim, outdir: Path) -> dict:
    """:func:`jwstrun.simulate.checks.run_checks` of both mosaics."""
    from .simulate.checks import run_checks

    group = sim.groups[0]
    snr_column = f"snr_{group['detector'].lower()}_{group['filter'].lower()}"
    out = {}
    for label in (UNCORRECTED, CORRECTED):
        cat = next(iter(sorted((outdir / label).glob("*_cat.ecsv"))), None)
        out[label] = run_checks(sim.outdir, sorted((outdir / label).glob("*_crf.fits")), cat,
                                sim.crds_path, snr_column)
    return out


def _shown(checks: list[dict]) -> list[dict]:
    """correction_checks' checks in the demo's shape (the value as printed)."""
    return [_check(c["name"], c["value"], c["requirement"], c["passed"],
                   ".2%" if "%" in c["requirement"] else ".1f") for c in checks]


def _judge_astrometry(science: dict) -> list[dict]:
    """The mosaic's absolute offset with the catalogue (and without, for comparison), and
    the relative alignment of the exposures against the run without it."""
    lim = ASTROMETRY
    without, with_ = science[UNCORRECTED], science[CORRECTED]
    offset, before = with_.frame_offset_arcsec, without.frame_offset_arcsec
    spread, spread_before = with_.alignment_max_arcsec, without.alignment_max_arcsec
    unchanged = (spread is not None and spread_before is not None
                 and spread <= spread_before + lim["relative_alignment_change_arcsec"])
    return [
        _check("mosaic offset from the truth with abs_refcat (arcsec)", offset,
               f"< {lim['mosaic_offset_max_arcsec']} (without: {_fmt(before)})",
               offset is not None and offset < lim["mosaic_offset_max_arcsec"], ".4f"),
        _check("relative alignment, max residual (arcsec)", spread,
               f"< {lim['relative_alignment_max_arcsec']}, at most "
               f"{lim['relative_alignment_change_arcsec']} over without ({_fmt(spread_before)})",
               unchanged and spread < lim["relative_alignment_max_arcsec"], ".4f"),
    ]


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"
