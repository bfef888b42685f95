"""``jwstrun image3`` gives the same products as ``strun calwebb_image3``.

One simulated NIRCam SUB640 program with four dithers (enough stars for
tweakreg), reduced once by ``jwstrun image2``; one Level-3 association of its
_cal files is then given to both ``jwstrun image3`` (in-process) and
``strun calwebb_image3`` (a subprocess, run at the same time), with default
parameters.  Every array of every product must be identical.

Then the same with absolute astrometry offline: the simulator's Gaia-like
``refcat.ecsv`` is cut to the field and moved to the exposures' epoch by ``jwstrun
refs refcat``, and both runs take it as tweakreg's ``abs_refcat``: the products are
identical again, the mosaic sits on the truth within 0.01" (0.09" without the
catalogue: the first exposure's pointing error) and the exposures stay aligned to
each other as well as without it.  A bad ``abs_refcat`` is refused before anything
runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from jwstrun.cli import cli

VENV_BIN = Path(sys.executable).parent
STRUN = shutil.which("strun", path=str(VENV_BIN)) or shutil.which("strun")


@pytest.fixture(scope="module")
def sim(shared_simulation):
    from conftest import SUB640_FOUR

    return shared_simulation(**SUB640_FOUR)


@pytest.fixture(scope="module")
def cal_asn(sim, sub640_cal, tmp_path_factory):
    """``jwstrun image2`` on the four exposures (conftest.sub640_cal, made once per run), then
    one Level-3 association beside (hard links of) the _cal files."""
    from jwstrun.asn import make_associations

    caldir = tmp_path_factory.mktemp("image3_equal_cal")
    for cal in sub640_cal.glob("*_cal.fits"):
        os.link(cal, caldir / cal.name)
    cal_files = sorted(caldir.glob("*_cal.fits"))
    assert len(cal_files) == 4
    built = make_associations(cal_files, caldir / "l3_asn.json", level=3)
    (written,) = built.associations
    return written.path


def _run_both(sim, cal_asn, ours: Path, theirs: Path, parameters: dict[str, str]) -> dict:
    """``jwstrun image3`` (in-process) and ``strun calwebb_image3`` (a subprocess, at the same
    time, one core each) on ``cal_asn`` with the same step parameters."""
    from jwstrun.refs import read_env_file

    env = dict(os.environ)
    env.update(read_env_file(sim.env_file))
    strun = subprocess.Popen(
        [STRUN, "calwebb_image3", str(cal_asn), "--output_dir", str(theirs),
         *(f"--{key}={value}" for key, value in parameters.items())],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    sets = [arg for key, value in parameters.items() for arg in ("--set", f"{key}={value}")]
    try:
        result = CliRunner().invoke(cli, [
            "image3", str(cal_asn), "-o", str(ours), "-j", "1", "--crds-env", str(sim.env_file),
            "--no-progress", "--no-report", "--json", *sets,
        ])
        strun_log, _ = strun.communicate(timeout=600)
    finally:
        if strun.poll() is None:
            strun.kill()
    assert result.exit_code == 0, result.output
    assert strun.returncode == 0, strun_log[-3000:]
    return {"ours": ours, "theirs": theirs, "summary": json.loads(result.stdout)}


@pytest.fixture(scope="module")
def products(sim, cal_asn, tmp_path_factory):
    """Both runs on the same association, side by side (one core each)."""
    return _run_both(sim, cal_asn, tmp_path_factory.mktemp("image3_equal_jwstrun"),
                     tmp_path_factory.mktemp("image3_equal_strun"), {})


def _fits_products(directory: Path) -> dict[str, Path]:
    return {p.name: p for p in directory.glob("*.fits")}


def test_same_products(products):
    ours, theirs = _fits_products(products["ours"]), _fits_products(products["theirs"])
    assert sorted(ours) == sorted(theirs)
    suffixes = sorted(name.rsplit("_", 1)[1] for name in ours)
    assert suffixes == ["crf.fits"] * 4 + ["i2d.fits", "segm.fits"]
    assert sorted(p.name for p in products["ours"].glob("*_cat.ecsv")) == \
        sorted(p.name for p in products["theirs"].glob("*_cat.ecsv"))
    (task,) = products["summary"]["tasks"]
    assert task["status"] == "ok"


def test_arrays_identical(products):
    _assert_arrays_identical(products)


def _assert_arrays_identical(products):
    from astropy.io import fits

    ours, theirs = _fits_products(products["ours"]), _fits_products(products["theirs"])
    compared: dict[str, list[str]] = {}
    for name, path in sorted(ours.items()):
        with fits.open(path) as a, fits.open(theirs[name]) as b:
            names_a = [h.name for h in a if h.is_image and h.data is not None]
            names_b = [h.name for h in b if h.is_image and h.data is not None]
            assert names_a == names_b, name
            for ext in names_a:
                np.testing.assert_array_equal(a[ext].data, b[ext].data, err_msg=f"{name}[{ext}]")
            compared[name.rsplit("_", 1)[1]] = names_a
    assert {"SCI", "ERR", "CON", "WHT"} <= set(compared["i2d.fits"])
    assert {"SCI", "ERR", "DQ"} <= set(compared["crf.fits"])


def test_tweakreg_ran_and_mosaic_is_not_empty(products):
    from astropy.io import fits

    (i2d,) = products["ours"].glob("*_i2d.fits")
    with fits.open(i2d) as hdul:
        header = hdul[0].header
        assert header["S_TWKREG"] == "COMPLETE"
        assert header["S_OUTLIR"] == "COMPLETE"
        assert header["S_RESAMP"] == "COMPLETE"
        sci = hdul["SCI"].data
        assert np.isfinite(sci).sum() > 0.5 * sci.size


def test_catalogs_identical(products):
    from astropy.table import Table

    (ours,) = products["ours"].glob("*_cat.ecsv")
    theirs = products["theirs"] / ours.name
    a, b = Table.read(ours), Table.read(theirs)
    assert len(a) > 10  # a real point-source catalog, not an empty table
    assert a.colnames == b.colnames
    for column in a.colnames:
        col_a, col_b = a[column], b[column]
        if hasattr(col_a, "ra"):  # sky_centroid is a SkyCoord
            col_a, col_b = np.stack([col_a.ra.deg, col_a.dec.deg]), np.stack([col_b.ra.deg, col_b.dec.deg])
        if np.asarray(col_a).dtype.kind in "fiub":
            np.testing.assert_array_equal(np.asarray(col_a), np.asarray(col_b), err_msg=column)
        else:
            assert [str(v) for v in col_a] == [str(v) for v in col_b], column


# --------------------------------------------------------------------------- abs_refcat


@pytest.fixture(scope="module")
def refcat(sim, cal_asn, tmp_path_factory):
    """The simulated Gaia-like catalogue cut to the field and moved to its epoch."""
    out = tmp_path_factory.mktemp("image3_refcat") / "field.ecsv"
    result = CliRunner().invoke(cli, ["refs", "refcat", str(sim.refcat_file), str(cal_asn),
                                      "-o", str(out), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


@pytest.fixture(scope="module")
def abs_products(sim, cal_asn, refcat, tmp_path_factory):
    return _run_both(sim, cal_asn, tmp_path_factory.mktemp("image3_abs_jwstrun"),
                     tmp_path_factory.mktemp("image3_abs_strun"),
                     {"steps.tweakreg.abs_refcat": str(refcat[0])})


def test_refcat_cut_to_the_field(sim, refcat):
    from astropy.table import Table

    path, cut = refcat
    assert cut["n_exposures"] == 4 and cut["epoch_from"] == 2016.0
    assert 30 <= cut["n_written"] < cut["n_sources"] == len(Table.read(sim.refcat_file))
    table = Table.read(path)
    assert table.colnames[:3] == ["RA", "DEC", "epoch"] and len(table) == cut["n_written"]


def test_abs_refcat_products_identical_to_strun(abs_products):
    _assert_arrays_identical(abs_products)
    (task,) = abs_products["summary"]["tasks"]
    assert task["status"] == "ok"


def _truth_figures(sim, directory: Path) -> dict:
    from astropy.table import Table

    from jwstrun.simulate.checks import _spread, alignment_residuals, source_recovery

    snr_column = next(c for c in Table.read(sim.truth_file).colnames if c.startswith("snr_"))
    after, _ = alignment_residuals(sorted(directory.glob("*_crf.fits")), sim.outdir, sim.crds_path)
    (cat,) = directory.glob("*_cat.ecsv")
    recovered, considered, offset, _ = source_recovery(cat, sim.outdir, snr_column)
    return {"exposure_offsets": np.hypot(after[:, 0], after[:, 1]), "spread": _spread(after)[1],
            "mosaic_offset": offset, "recovered": recovered, "considered": considered}


def test_abs_refcat_puts_the_mosaic_on_the_truth(sim, products, abs_products):
    """Mosaic offset from the truth below 0.01" with the catalogue (about 0.09" without,
    from the first exposure's pointing error); the exposures as well aligned to each
    other as without it (within 1 mas)."""
    before = _truth_figures(sim, products["ours"])
    after = _truth_figures(sim, abs_products["ours"])
    assert before["mosaic_offset"] > 0.05, before  # there is something to correct
    assert after["mosaic_offset"] < 0.01, after
    assert after["exposure_offsets"].max() < 0.01, after
    assert after["spread"] < 0.01 and after["spread"] <= before["spread"] + 0.001, (before, after)
    assert after["considered"] > 30 and after["recovered"] >= before["recovered"] - 0.02


REFUSED = {
    "GAIA": "abs_refcat 'GAIA': no such file, and not a catalogue name tweakreg knows "
            "(GAIAREFCAT, GAIADR3, GAIADR2, GAIADR1, GAIADR3_S3). Did you mean GAIADR3? Give one "
            "of those names or the path of a catalogue file with RA and DEC columns, e.g. made by "
            "`jwstrun refs refcat CATALOGUE INPUTS -o field.ecsv`.",
    "GAIADR3": "abs_refcat GAIADR3: tweakreg fetches this catalogue from "
               "https://gsss.stsci.edu/webservices at run time, and this run is offline (no CRDS "
               "server: --offline, --crds-path without CRDS_SERVER_URL, or a serverless "
               "CRDS_SERVER_URL). Download the catalogue where there is network and cut it to "
               "the field: `jwstrun refs refcat CATALOGUE INPUTS -o field.ecsv`, then set "
               "abs_refcat to that file.",
    "{tmp}/none.ecsv": "abs_refcat {tmp}/none.ecsv: no such file. Give the path of a catalogue "
                       "file (ECSV or FITS with RA and DEC columns), e.g. made by `jwstrun refs "
                       "refcat CATALOGUE INPUTS -o field.ecsv`.",
    "{tmp}/few.ecsv": "abs_refcat {tmp}/few.ecsv: 3 of its 3 sources fall inside the footprints "
                      "of the 4 exposure(s) of jw01234-o001_t001_nircam_clear-f200w-sub640; "
                      "tweakreg needs at least abs_minobj=15 to fit. Use a catalogue that covers "
                      "this field (`jwstrun refs refcat CATALOGUE INPUTS -o field.ecsv` counts "
                      "what it keeps) or lower abs_minobj.",
    "{tmp}/cols.ecsv": "abs_refcat {tmp}/cols.ecsv: has no RA and DEC columns (it has x, y). "
                       "tweakreg needs one RA and one DEC column in degrees (any case) or a "
                       "sky_centroid column; rename them, or cut the catalogue with `jwstrun refs "
                       "refcat CATALOGUE INPUTS -o field.ecsv`.",
}


@pytest.mark.parametrize("value", list(REFUSED))
def test_bad_abs_refcat_refused_before_anything_runs(sim, cal_asn, refcat, tmp_path, value):
    from astropy.table import Table

    field = Table.read(refcat[0])
    field[:3].write(tmp_path / "few.ecsv")
    Table({"x": [1.0], "y": [2.0]}).write(tmp_path / "cols.ecsv")
    outdir = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "image3", str(cal_asn), "-o", str(outdir), "--crds-env", str(sim.env_file),
        "--no-progress", "--set", f"steps.tweakreg.abs_refcat={value.format(tmp=tmp_path)}",
    ])
    assert result.exit_code == 1
    assert result.output == f"Error: {REFUSED[value].format(tmp=tmp_path)}\n"
    assert not outdir.exists()
