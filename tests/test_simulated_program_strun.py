"""Proof of the foundation: the OFFICIAL command line reduces the simulated data offline.

``strun calwebb_image2`` on every rate file and ``strun calwebb_image3`` on an
``asn_from_list`` association run in subprocesses whose only CRDS settings are
the three environment variables ``jwstrun simulate`` writes.  Every step must be
COMPLETE, and the Stage 3 products are checked against the truth tables.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.io import fits

from jwstrun.simulate.checks import run_checks

STRUN = str(Path(sys.executable).with_name("strun"))
ASN_FROM_LIST = str(Path(sys.executable).with_name("asn_from_list"))

CONFIGS = {
    "nircam_sw": dict(detectors=["NRCB1"], filters=["F200W"], subarray="SUB640"),
    "nircam_lw": dict(detectors=["NRCBLONG"], filters=["F444W"], subarray="SUB640"),
    "miri": dict(detectors=["MIRIMAGE"], filters=["F770W"], subarray="BRIGHTSKY"),
}


def _clean_env(sim_env: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env.update(sim_env)
    env["STPIPE_DISABLE_CRDS_STEPPARS"] = "False"
    return env


def _run(cmd, cwd, env):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


# The long-wave NIRCam program repeats the short-wave one's path with another detector
# (test_simulated_crds runs jwstrun on it), and MIRI's has jwstrun runs of its own
# (test_simulated_crds, test_cli_run): `python -m pytest -m slow` (suite budget).
@pytest.fixture(scope="module", params=[
    pytest.param(name, marks=[pytest.mark.slow] if name in ("nircam_lw", "miri") else [])
    for name in CONFIGS])
def official_run(request, tmp_path_factory, shared_simulation):
    name = request.param
    root = tmp_path_factory.mktemp(name)
    # nircam_sw's is conftest.SUB640_FOUR, which test_image3_equal and test_mosaic reduce too
    sim = shared_simulation(seed=11, n_dithers=4, **CONFIGS[name])
    env = _clean_env(sim.env)
    work = root / "work"
    work.mkdir()
    if name == "nircam_sw":
        # exactly what users type: one strun per exposure
        for rate in sim.rate_files:
            _run([STRUN, "calwebb_image2", str(rate), "--output_dir", str(work)], work, env)
    else:
        # the other documented form: one Level-2 association for all exposures
        for rate in sim.rate_files:
            (work / rate.name).symlink_to(rate)
        names = [rate.name for rate in sim.rate_files]
        _run([ASN_FROM_LIST, "-o", "l2_asn.json", "-r", "DMSLevel2bBase", *names], work, env)
        _run([STRUN, "calwebb_image2", "l2_asn.json", "--output_dir", str(work)], work, env)
    cal_files = sorted(p.name for p in work.glob("*_cal.fits"))
    _run([ASN_FROM_LIST, "-o", "l3_asn.json", "--product-name", "l3_results", *cal_files], work, env)
    # npixels: source_catalog's default (25 connected pixels) is tuned for extended
    # sources; with an undersampled point-source PSF it needs S/N ~ 40 to detect a star
    # (measured on this simulation: 82% of S/N>20 stars at 25, 100% at 10).
    _run([STRUN, "calwebb_image3", "l3_asn.json", "--output_dir", str(work),
          "--steps.source_catalog.npixels=10"], work, env)
    return name, sim, work


def _status(path):
    hdr = fits.getheader(path, 0)
    return {k: hdr[k] for k in hdr if k.startswith("S_")}


def test_image2_every_step_complete(official_run):
    _, sim, work = official_run
    cals = sorted(work.glob("*_cal.fits"))
    assert len(cals) == len(sim.rate_files)
    for cal in cals:
        status = _status(cal)
        for key in ("S_WCS", "S_FLAT", "S_PHOTOM"):
            assert status.get(key) == "COMPLETE", (cal.name, status)
        assert "SKIPPED" not in status.values(), (cal.name, status)
        assert fits.getval(cal, "BUNIT", "SCI") == "MJy/sr"


def test_image2_used_simulated_references(official_run):
    _, sim, work = official_run
    cal = sorted(work.glob("*_cal.fits"))[0]
    hdr = fits.getheader(cal, 0)
    assert hdr["CRDS_CTX"] == sim.crds_context
    for key in ("R_DISTOR", "R_FLAT", "R_PHOTOM", "R_AREA"):
        name = hdr[key].replace("crds://", "")
        assert (sim.crds_path / "references" / "jwst" / hdr["INSTRUME"].lower() / name).exists(), key


def test_image3_every_step_complete(official_run):
    _, sim, work = official_run
    crfs = sorted(work.glob("*_crf.fits"))
    assert len(crfs) == len(sim.rate_files)
    for crf in crfs:
        status = _status(crf)
        for key in ("S_TWKREG", "S_SKYMAT", "S_OUTLIR"):
            assert status.get(key) == "COMPLETE", (crf.name, status)
    i2d = work / "l3_results_i2d.fits"
    status = _status(i2d)
    assert status.get("S_RESAMP") == "COMPLETE"
    assert "SKIPPED" not in status.values(), status
    assert (work / "l3_results_cat.ecsv").exists()
    assert (work / "l3_results_segm.fits").exists()


def test_science_against_truth(official_run):
    name, sim, work = official_run
    group = sim.groups[0]
    snr_column = f"snr_{group['detector'].lower()}_{group['filter'].lower()}"
    checks = run_checks(
        sim.outdir,
        sorted(work.glob("*_crf.fits")),
        work / "l3_results_cat.ecsv",
        sim.crds_path,
        snr_column,
    )
    print(name, checks)
    assert checks.alignment_before_max_arcsec > 0.03, "the simulation must give tweakreg work"
    assert checks.alignment_max_arcsec < 0.01, checks
    assert checks.cosmic_ray_recall >= 0.90, checks
    assert checks.sources_considered >= 10, checks
    assert checks.sources_recovered >= 0.95, checks
    assert 0.85 < checks.flux_ratio_median < 1.15, checks
