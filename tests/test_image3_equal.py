"""``jwstrun image3`` gives the same products as ``strun calwebb_image3``.

One simulated NIRCam SUB640 program with four dithers (enough stars for
tweakreg), reduced once by ``jwstrun image2``; one Level-3 association of its
_cal files is then given to both ``jwstrun image3`` (in-process) and
``strun calwebb_image3`` (a subprocess, run at the same time), with default
parameters.  Every array of every product must be identical.
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
def sim(tmp_path_factory):
    from jwstrun.simulate import simulate_program

    outdir = tmp_path_factory.mktemp("image3_equal") / "sim"
    return simulate_program(outdir, subarray="SUB640", n_dithers=4, seed=11)


@pytest.fixture(scope="module")
def cal_asn(sim, tmp_path_factory):
    """``jwstrun image2`` on the four exposures, then one Level-3 association beside the _cal files."""
    from jwstrun.asn import make_associations

    caldir = tmp_path_factory.mktemp("image3_equal_cal")
    result = CliRunner().invoke(cli, [
        "image2", *map(str, sim.rate_files), "-o", str(caldir), "-j", "2",
        "--crds-env", str(sim.env_file), "--no-progress",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    cal_files = sorted(caldir.glob("*_cal.fits"))
    assert len(cal_files) == 4
    built = make_associations(cal_files, caldir / "l3_asn.json", level=3)
    (written,) = built.associations
    return written.path


@pytest.fixture(scope="module")
def products(sim, cal_asn, tmp_path_factory):
    """Both runs on the same association, side by side (one core each)."""
    ours = tmp_path_factory.mktemp("image3_equal_jwstrun")
    theirs = tmp_path_factory.mktemp("image3_equal_strun")
    from jwstrun.refs import read_env_file

    env = dict(os.environ)
    env.update(read_env_file(sim.env_file))
    strun = subprocess.Popen(
        [STRUN, "calwebb_image3", str(cal_asn), "--output_dir", str(theirs)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        result = CliRunner().invoke(cli, [
            "image3", str(cal_asn), "-o", str(ours), "-j", "1", "--crds-env", str(sim.env_file),
            "--no-progress", "--no-report", "--json",
        ])
        strun_log, _ = strun.communicate(timeout=600)
    finally:
        if strun.poll() is None:
            strun.kill()
    assert result.exit_code == 0, result.output
    assert strun.returncode == 0, strun_log[-3000:]
    return {"ours": ours, "theirs": theirs, "summary": json.loads(result.stdout)}


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
