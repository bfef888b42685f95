"""A Level-2 association with background members, end to end through ``jwstrun image2``.

The simulator writes one dedicated background exposure (an empty field) next
to two science dithers; ``jwstrun asn`` makes the Level-2 association with it
as a background member of each product; ``jwstrun image2 --save-bsub`` runs
calwebb_image2 on the association.  The background step must really run
(S_BKDSUB COMPLETE, not SKIPPED), the _bsub product must be written and
valid, and ``jwstrun validate --background`` must pass on everything.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from jwstrun.cli import cli


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from jwstrun.simulate import simulate_program

    outdir = tmp_path_factory.mktemp("background") / "sim"
    return simulate_program(outdir, subarray="SUB320", n_dithers=2, n_background=1, seed=5)


@pytest.fixture(scope="module")
def l2_asn(sim):
    assert len(sim.background_files) == 1
    path = sim.outdir / "l2_asn.json"
    result = CliRunner().invoke(cli, [
        "asn", *map(str, sim.rate_files), "-b", str(sim.background_files[0]), "-o", str(path),
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def run(sim, l2_asn, tmp_path_factory):
    outdir = tmp_path_factory.mktemp("background_out") / "out"
    # crds exports its defaults (CRDS_MODE, CRDS_CONFIG_URI ...) into os.environ when it is
    # first imported: that is crds' doing, whichever test imports it first, not the run's.
    import crds  # noqa: F401

    crds_before = {k: v for k, v in os.environ.items() if k.startswith("CRDS_")}
    result = CliRunner().invoke(cli, [
        "image2", str(l2_asn), "-o", str(outdir), "--save-bsub", "-j", "2",
        "--crds-env", str(sim.env_file), "--no-progress", "--json",
    ])
    crds_after = {k: v for k, v in os.environ.items() if k.startswith("CRDS_")}
    return {"result": result, "outdir": outdir, "crds_before": crds_before,
            "crds_after": crds_after}


def test_association_has_background_members(l2_asn, sim):
    asn = json.loads(l2_asn.read_text())
    assert len(asn["products"]) == len(sim.rate_files)
    for product in asn["products"]:
        types = sorted(m["exptype"] for m in product["members"])
        assert types == ["background", "science"]
        bkg = next(m for m in product["members"] if m["exptype"] == "background")
        assert bkg["expname"] == sim.background_files[0].name


def test_run_ok_with_bsub_products(run, sim):
    result = run["result"]
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["ok"] == len(sim.rate_files)
    assert summary["counts"]["failed"] == 0
    outdir = run["outdir"]
    for suffix in ("cal", "bsub", "i2d"):
        assert len(list(outdir.glob(f"*_{suffix}.fits"))) == len(sim.rate_files), suffix
    # the background exposure is a member, not a product of its own
    stem = sim.background_files[0].name.rsplit("_", 1)[0]
    assert not list(outdir.glob(f"{stem}_*.fits"))


def test_background_step_complete_and_subtracted(run, sim):
    from astropy.io import fits

    for cal in sorted(run["outdir"].glob("*_cal.fits")):
        bsub = cal.with_name(cal.name.replace("_cal.fits", "_bsub.fits"))
        rate = sim.outdir / cal.name.replace("_cal.fits", "_rate.fits")
        with fits.open(cal) as hdul:
            assert hdul[0].header["S_BKDSUB"] == "COMPLETE"
        with fits.open(bsub) as b, fits.open(rate) as r:
            assert b[0].header["S_BKDSUB"] == "COMPLETE"
            # the simulated sky level was removed: bsub median near zero, rate median not
            good = (b["DQ"].data & 1) == 0
            rate_median = float(np.nanmedian(r["SCI"].data[good]))
            bsub_median = float(np.nanmedian(b["SCI"].data[good]))
            assert rate_median > 0
            assert abs(bsub_median) < 0.2 * rate_median, (rate_median, bsub_median)


def test_validate_with_background_passes(run):
    outdir = run["outdir"]
    files = sorted(str(p) for p in outdir.glob("*.fits"))
    result = CliRunner().invoke(cli, ["validate", *files, "--background", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    reports = data["files"] if isinstance(data, dict) and "files" in data else data
    assert len(reports) == len(files)
    bsub = [r for r in reports if str(r.get("path", "")).endswith("_bsub.fits")]
    assert len(bsub) == 2


def test_run_leaves_callers_crds_settings_alone(run):
    """A run applies its crds.env (CRDS_PATH, CRDS_CONTEXT...) only while it runs."""
    assert run["crds_after"] == run["crds_before"]
