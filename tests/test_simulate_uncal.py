"""``jwstrun simulate --uncal``: raw ramps that the stock calwebb_detector1 reduces offline.

One NIRCam SUB160 program (one exposure, 5 groups) reduced once by ``strun
calwebb_detector1`` in a subprocess whose environment holds only the cache's CRDS
variables serves the checks against the simulator's truth: slopes within noise,
jumps flagged, saturation flagged. MIRI likewise (slow). Full frame: the file only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from jwstrun.cli import cli
from jwstrun.simulate import simulate_program
from jwstrun.simulate.uncal_checks import detector1_checks, failures

STRUN = str(Path(sys.executable).with_name("strun"))


def _reduce(outdir: Path, instrument: str, subarray: str, ngroups: int) -> dict:
    result = simulate_program(outdir, instrument=instrument, subarray=subarray, n_dithers=1,
                              uncal=True, ngroups=ngroups, uncal_nints=1, seed=3)
    uncal = result.uncal_files[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env.update(result.env)
    out = outdir / "detector1"
    out.mkdir()
    proc = subprocess.run([STRUN, "calwebb_detector1", str(uncal), "--output_dir", str(out),
                           "--save_calibrated_ramp", "True"],
                          env=env, cwd=outdir, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    stem = uncal.name.replace("_uncal.fits", "")
    return {"result": result, "uncal": uncal, "rate": out / f"{stem}_rate.fits",
            "ramp": out / f"{stem}_ramp.fits", "log": proc.stderr,
            "slope": outdir / "truth_uncal" / f"{stem}_slope.fits"}


@pytest.fixture(scope="module")
def nircam(tmp_path_factory):
    return _reduce(tmp_path_factory.mktemp("uncal_nircam"), "NIRCAM", "SUB160", 5)


@pytest.fixture(scope="module")
def miri(tmp_path_factory):
    return _reduce(tmp_path_factory.mktemp("uncal_miri"), "MIRI", "SUB128", 8)


def _check_steps_and_references(run, steps, detector: str):
    header = fits.getheader(run["rate"])
    for keyword in steps:
        assert header[keyword] == "COMPLETE", keyword
    for keyword in ("R_MASK", "R_SATURA", "R_LINEAR", "R_DARK", "R_GAIN", "R_READNO"):
        assert f"sim-{detector}" in header[keyword], (keyword, header[keyword])
    assert "crds.stsci.edu" not in run["log"]


def _measured(run, unusable_groups=()) -> dict:
    if "measured" not in run:
        run["measured"] = detector1_checks(run["rate"], run["ramp"], run["result"].outdir,
                                           run["uncal"].name, unusable_groups)
    return run["measured"]


def test_nircam_detector1_runs_offline_on_the_simulated_references(nircam):
    _check_steps_and_references(nircam, ("S_DQINIT", "S_SATURA", "S_SUPERB", "S_REFPIX",
                                         "S_LINEAR", "S_DARK", "S_JUMP", "S_RAMP"), "nrcb1")


def test_nircam_slopes_within_noise_of_the_truth(nircam):
    measured = _measured(nircam)
    assert measured["usable_fraction"] > 0.9
    assert abs(measured["median_z"]) < 0.1
    assert 0.85 < measured["rms_z"] < 1.2
    assert measured["fraction_beyond_5_sigma"] < 1e-3


def test_nircam_jumps_flagged(nircam):
    measured = _measured(nircam)
    assert measured["jump_kinds"] == ["cosmic_ray", "snowball"]
    assert measured["jumps_measured"] >= 50
    assert measured["jump_recall"] >= 0.95


def test_nircam_saturation_flagged(nircam):
    measured = _measured(nircam)
    assert measured["saturated_pixels"] >= 5  # the bright stars
    assert measured["saturated_flagged"] == 1.0
    assert failures(measured) == []


def test_nircam_uncal_header_and_truth(nircam):
    with fits.open(nircam["uncal"]) as hdul:
        header, sci = hdul[0].header, hdul["SCI"].data
    assert sci.dtype == np.uint16 and sci.shape == (1, 5, 160, 160)
    assert header["DATAMODL"] == "Level1bModel" and header["SUBARRAY"] == "SUB160"
    assert (header["NGROUPS"], header["NINTS"]) == (5, 1)
    assert header["TFRAME"] == pytest.approx((160 + 12) * 161 * 1e-5)
    assert header["TGROUP"] == pytest.approx(
        (header["NFRAMES"] + header["GROUPGAP"]) * header["TFRAME"])
    summary = nircam["result"].to_dict()
    assert summary["options"]["uncal"] == {"ngroups": 5, "nints": 1, "readpatt": None}
    assert Path(summary["uncal_files"][0]) == nircam["uncal"]


@pytest.mark.slow
def test_miri_detector1_slopes_jumps_and_saturation(miri):
    _check_steps_and_references(miri, ("S_DQINIT", "S_SATURA", "S_LINEAR", "S_DARK",
                                       "S_LASTFR", "S_JUMP", "S_RAMP"), "mirimage")
    ngroups = fits.getheader(miri["uncal"])["NGROUPS"]
    measured = _measured(miri, unusable_groups=(ngroups - 1,))  # lastframe flags the last
    assert failures(measured) == []
    assert measured["jump_kinds"] == ["cosmic_ray", "snowball"]


@pytest.mark.parametrize("detector, tframe", [
    pytest.param("NRCB1", 10.73676, marks=pytest.mark.slow),  # 4 Mpixel: about 20 s
    ("MIRIMAGE", 2.77504),
])
def test_full_frame_uncal_file(tmp_path, detector, tframe):
    """The full-frame file alone (shape, dtype, readout keywords): no pipeline run."""
    from stdatamodels.jwst.datamodels import ImageModel

    from jwstrun.simulate.exposures import bad_pixel_mask
    from jwstrun.simulate.instruments import get_detector, subarray_geometry
    from jwstrun.simulate.ramps import RampOptions, write_ramps

    det = get_detector(detector)
    geometry = subarray_geometry(det, "FULL")
    shape = (geometry[3], geometry[2])

    class Spec:  # what write_ramps reads of an ExposureSpec
        pass

    spec = Spec()
    spec.detector, spec.geometry = det, geometry
    header = ImageModel(shape)
    header.meta.instrument.name, header.meta.instrument.detector = det.instrument, det.name
    header.meta.subarray.name = "FULL"
    header.meta.exposure.start_time = 60400.0
    dq = bad_pixel_mask(det, geometry, np.random.default_rng(1))
    truth = write_ramps(tmp_path / "jw01234001001_02101_00001_x_rate.fits", header, spec,
                        np.full(shape, 2.0), dq, RampOptions(ngroups=2, nints=1))
    with fits.open(truth.path) as hdul:
        h, sci = hdul[0].header, hdul["SCI"].data
    assert sci.dtype == np.uint16 and sci.shape == (1, 2, *shape)
    assert h["TFRAME"] == pytest.approx(tframe, abs=1e-4)
    assert h["NGROUPS"] == 2 and h["SUBARRAY"] == "FULL"
    assert h["READPATT"] == ("DEEP8" if det.instrument == "NIRCAM" else "FASTR1")
    reference = (dq & (1 << 31)) > 0
    assert truth.slope[reference].max() == 0 and truth.slope[~reference].min() == 2.0


def test_detector1_reftypes_are_listed_for_the_imap():
    from jwst.pipeline import Detector1Pipeline

    from jwstrun.simulate.crds_cache import (
        DETECTOR1_PARS_REFTYPES,
        DETECTOR1_REFTYPES,
        PIPELINE_REFTYPES,
    )

    types = {t for step in Detector1Pipeline.step_defs.values() for t in step.reference_file_types}
    assert types <= set(DETECTOR1_REFTYPES) | set(PIPELINE_REFTYPES)
    pars = {"pars-detector1pipeline"} | {
        "pars-" + step.__name__.lower() for step in Detector1Pipeline.step_defs.values()}
    assert pars == set(DETECTOR1_PARS_REFTYPES)


@pytest.mark.parametrize("args, message", [
    (["--ngroups", "4"], "Error: --ngroups and --readpatt describe the _uncal ramps; add --uncal."),
    (["--uncal", "--readpatt", "FASTR1"],
     "Error: --readpatt FASTR1 is not a NIRCAM readout pattern; choose from RAPID, BRIGHT1, "
     "BRIGHT2, SHALLOW2, SHALLOW4, MEDIUM2, MEDIUM8, DEEP2, DEEP8."),
])
def test_cli_refuses_bad_ramp_options_before_writing(tmp_path, args, message):
    out = tmp_path / "sim"
    res = CliRunner().invoke(cli, ["simulate", str(out), "--subarray", "SUB64P", *args])
    assert res.exit_code != 0
    assert res.output.strip().splitlines()[-1] == message
    assert not out.exists()
