"""``jwstrun refs refcat`` and tweakreg's ``abs_refcat`` checks, on small synthetic files.

Footprints are FITS files whose SCI header carries an S_REGION (what the checks read);
catalogues are astropy tables.  The named-catalogue rules use a real TCP probe (a
local listening socket stands in for a catalogue service that answers, a closed port
for one that does not).  The checks against real _cal files and a real image3 run are
in tests/test_image3_equal.py.
"""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner

from jwstrun.cli import cli
from jwstrun.errors import ConfigError, InputError, OutputError
from jwstrun.refs.refcat import check_abs_refcat, check_refcat_name, cut_catalogue, in_footprints

RA0, DEC0 = 53.16, -27.79
HALF = 10.0 / 3600  # a 20" square footprint
OFFLINE = {"CRDS_PATH": "/nonexistent", "CRDS_SERVER_URL": "https://jwst-serverless-mode.stsci.edu"}


def _footprint_file(path, ra=RA0, dec=DEC0, date="2024-04-01T00:00:00.000"):
    c = np.cos(np.radians(dec))
    corners = [(ra - HALF / c, dec - HALF), (ra + HALF / c, dec - HALF),
               (ra + HALF / c, dec + HALF), (ra - HALF / c, dec + HALF)]
    sci = fits.ImageHDU(np.zeros((2, 2), np.float32), name="SCI")
    sci.header["S_REGION"] = "POLYGON ICRS " + " ".join(f"{a:.9f} {d:.9f}" for a, d in corners)
    primary = fits.PrimaryHDU()
    primary.header["DATE-BEG"] = date
    fits.HDUList([primary, sci]).writeto(path)
    return path


@pytest.fixture
def field(tmp_path):
    """Two footprints side by side and a Gaia-like catalogue: 30 stars in each footprint
    and 40 far away, positions at 2016.0 with proper motions."""
    cal = [_footprint_file(tmp_path / "a_cal.fits"),
           _footprint_file(tmp_path / "b_cal.fits", ra=RA0 + 30 / 3600)]
    rng = np.random.default_rng(3)
    c = np.cos(np.radians(DEC0))
    ra = np.concatenate([RA0 + rng.uniform(-0.8, 0.8, 30) * HALF / c,
                         RA0 + 30 / 3600 + rng.uniform(-0.8, 0.8, 30) * HALF / c,
                         RA0 + 1 + rng.uniform(-0.01, 0.01, 40)])
    dec = np.concatenate([DEC0 + rng.uniform(-0.8, 0.8, 60) * HALF, np.full(40, DEC0)])
    table = Table({"source_id": np.arange(100), "ra": ra, "dec": dec,
                   "pmra": rng.normal(0, 5, 100), "pmdec": rng.normal(0, 5, 100),
                   "ref_epoch": np.full(100, 2016.0), "phot_g_mean_mag": np.full(100, 19.0)})
    table.write(tmp_path / "gaia.ecsv")
    return tmp_path, cal, table


def test_footprint_mask_and_margin():
    fp = [type("F", (), {"polygons": [[(10.0, 0.0), (10.01, 0.0), (10.01, 0.01), (10.0, 0.01)]]})]
    ra = np.array([10.005, 10.005, 10.0115, 10.02])
    dec = np.array([0.005, 0.0115, 0.005, 0.005])
    assert in_footprints(ra, dec, fp).tolist() == [True, False, False, False]
    # 0.0015 deg = 5.4": inside a 6" margin, not a 5" one; 36" away: never
    assert in_footprints(ra, dec, fp, margin_arcsec=6).tolist() == [True, True, True, False]
    assert in_footprints(ra, dec, fp, margin_arcsec=5).tolist() == [True, False, False, False]


def test_cut_moves_positions_to_the_inputs_epoch(field):
    tmp, cal, table = field
    cut = cut_catalogue(tmp / "gaia.ecsv", [str(p) for p in cal], tmp / "field.ecsv",
                        margin_arcsec=0)
    out = Table.read(tmp / "field.ecsv")
    assert (cut.n_sources, cut.n_written, cut.n_exposures) == (100, 60, 2)
    assert cut.epoch_from == 2016.0 and abs(cut.epoch_to - 2024.2486) < 1e-3
    assert out.colnames[:3] == ["RA", "DEC", "epoch"]
    assert {"source_id", "phot_g_mean_mag", "pmra", "pmdec"} <= set(out.colnames)
    dt = cut.epoch_to - 2016.0
    src = table[out["source_id"]]
    ddec = (out["DEC"] - src["dec"]) * 3.6e6
    dra = (out["RA"] - src["ra"]) * 3.6e6 * np.cos(np.radians(src["dec"]))
    np.testing.assert_allclose(ddec, src["pmdec"] * dt, atol=1e-3)  # mas
    np.testing.assert_allclose(dra, src["pmra"] * dt, atol=1e-3)
    assert cut.summary() == (
        f"Wrote {tmp / 'field.ecsv'}: 60 of gaia.ecsv's 100 sources inside the footprints of "
        f"2 exposure(s) (margin 0\"), positions moved from epoch 2016.00 to 2024.25.")


def test_cut_cli_json_fits_and_errors(field):
    tmp, cal, table = field
    runner = CliRunner()
    args = ["refs", "refcat", str(tmp / "gaia.ecsv"), *map(str, cal), "-o", str(tmp / "f.fits"),
            "--epoch", "catalogue", "--json"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n_written"] == 60 and data["epoch_to"] is None and data["margin_arcsec"] == 5.0
    out = Table.read(tmp / "f.fits")
    assert len(out) == 60 and np.all(out["epoch"] == 2016.0)
    again = runner.invoke(cli, args)
    assert again.exit_code == 1
    assert again.output == f"Error: {tmp / 'f.fits'}: exists. Choose another name, or give --force to replace it.\n"
    assert runner.invoke(cli, [*args, "--force"]).exit_code == 0
    # no proper motions: --epoch inputs keeps the positions, a year is refused
    Table({"RA": table["ra"], "DEC": table["dec"]}).write(tmp / "plain.ecsv")
    plain = runner.invoke(cli, ["refs", "refcat", str(tmp / "plain.ecsv"), str(cal[0]), "-o",
                                str(tmp / "p.ecsv")])
    assert plain.exit_code == 0 and "30 of plain.ecsv's 100 sources" in plain.output
    year = runner.invoke(cli, ["refs", "refcat", str(tmp / "plain.ecsv"), str(cal[0]), "-o",
                               str(tmp / "q.ecsv"), "--epoch", "2020"])
    assert year.exit_code == 1 and not (tmp / "q.ecsv").exists()
    assert year.output == (
        f"Error: {tmp / 'plain.ecsv'}: has no proper motions (pmra, pmdec) with an epoch "
        "(ref_epoch or epoch column), so its positions cannot be moved to the inputs' epoch. "
        "Give --epoch catalogue to keep them as they are.\n")


def test_abs_refcat_file_checks(field):
    tmp, cal, table = field
    groups = [("jw01234-o001_t001_nircam_clear-f200w", cal)]
    cut_catalogue(tmp / "gaia.ecsv", cal, tmp / "field.ecsv")
    assert check_abs_refcat(str(tmp / "field.ecsv"), groups, minobj=15) == str(tmp / "field.ecsv")
    with pytest.raises(InputError) as bad:
        check_abs_refcat(str(tmp / "field.ecsv"), groups, minobj=61)
    assert str(bad.value) == (
        f"abs_refcat {tmp / 'field.ecsv'}: 60 of its 60 sources fall inside the footprints of the "
        "2 exposure(s) of jw01234-o001_t001_nircam_clear-f200w; tweakreg needs at least "
        "abs_minobj=61 to fit. Use a catalogue that covers this field (`jwstrun refs refcat "
        "CATALOGUE INPUTS -o field.ecsv` counts what it keeps) or lower abs_minobj.")
    Table({"Ra": [1.0], "ra": [2.0], "dec": [3.0]}).write(tmp / "twice.ecsv")
    with pytest.raises(InputError) as twice:
        check_abs_refcat(str(tmp / "twice.ecsv"), groups, minobj=1)
    assert str(twice.value) == (
        f"{tmp / 'twice.ecsv'}: has several RA columns (Ra, ra), which tweakreg cannot choose "
        "between (it ignores case). Keep one.")
    (tmp / "locked.ecsv").write_text("# %ECSV 1.0\n")
    (tmp / "locked.ecsv").chmod(0)
    try:
        with pytest.raises(InputError) as locked:
            check_abs_refcat(str(tmp / "locked.ecsv"), groups, minobj=1)
    finally:
        (tmp / "locked.ecsv").chmod(0o644)
    import os
    if os.geteuid() != 0:
        assert str(locked.value) == (
            f"abs_refcat {tmp / 'locked.ecsv'}: cannot be read (permission denied). Make it "
            "readable (chmod a+r) or give a copy you can read.")


def test_abs_refcat_warns_about_an_old_epoch(field, caplog):
    tmp, cal, _ = field
    check_abs_refcat(str(tmp / "gaia.ecsv"), [("product", cal)], minobj=15)
    (record,) = [r for r in caplog.records if "abs_refcat" in r.getMessage()]
    assert record.levelname == "WARNING"
    assert record.getMessage() == (
        f"abs_refcat {tmp / 'gaia.ecsv'}: positions at epoch 2016.0 with proper motions, product "
        "observed at 2024.2; tweakreg uses the positions as they are. Move them to the inputs' "
        f"epoch with `jwstrun refs refcat {tmp / 'gaia.ecsv'} INPUTS -o field.ecsv`.")


def test_named_catalogues(monkeypatch, tmp_path):
    assert check_refcat_name(str(tmp_path / "x.ecsv")) is None  # a path, never a name
    with pytest.raises(ConfigError) as typo:
        check_refcat_name("GAIA", OFFLINE)
    assert str(typo.value) == (
        "abs_refcat 'GAIA': no such file, and not a catalogue name tweakreg knows (GAIAREFCAT, "
        "GAIADR3, GAIADR2, GAIADR1, GAIADR3_S3). Did you mean GAIADR3? Give one of those names "
        "or the path of a catalogue file with RA and DEC columns, e.g. made by `jwstrun refs "
        "refcat CATALOGUE INPUTS -o field.ecsv`.")
    with pytest.raises(ConfigError) as offline:
        check_refcat_name("gaiadr3", OFFLINE)
    assert str(offline.value) == (
        "abs_refcat GAIADR3: tweakreg fetches this catalogue from "
        "https://gsss.stsci.edu/webservices at run time, and this run is offline (no CRDS "
        "server: --offline, --crds-path without CRDS_SERVER_URL, or a serverless "
        "CRDS_SERVER_URL). Download the catalogue where there is network and cut it to the "
        "field: `jwstrun refs refcat CATALOGUE INPUTS -o field.ecsv`, then set abs_refcat to "
        "that file.")
    # a CRDS server configured: the catalogue service is probed (a closed port, then one
    # that listens); the probe results are kept per URL
    online = {"CRDS_PATH": str(tmp_path), "CRDS_SERVER_URL": "https://jwst-crds.stsci.edu"}
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("ASTROMETRIC_CATALOG_URL", f"http://127.0.0.1:{port}/a")
    with pytest.raises(ConfigError) as silent:
        check_refcat_name("GAIADR2", online)
    assert str(silent.value).startswith(
        f"abs_refcat GAIADR2: tweakreg fetches this catalogue from http://127.0.0.1:{port}/a at "
        f"run time, and it does not answer here (127.0.0.1:{port}: ")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("ASTROMETRIC_CATALOG_URL", f"http://127.0.0.1:{server.getsockname()[1]}/b")
        assert check_refcat_name("GaiaDR3", online) == "GAIADR3"


def test_missing_inputs_and_catalogue(field):
    tmp, cal, _ = field
    with pytest.raises(InputError) as missing:
        cut_catalogue(tmp / "nope.ecsv", cal, tmp / "out.ecsv")
    assert str(missing.value) == (
        f"{tmp / 'nope.ecsv'}: no such file. Give the path of a catalogue file (ECSV or FITS "
        "with RA and DEC columns), e.g. made by `jwstrun refs refcat CATALOGUE INPUTS -o "
        "field.ecsv`.")
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((2, 2)), name="SCI")]).writeto(
        tmp / "nowcs_cal.fits")
    with pytest.raises(InputError) as nowcs:
        cut_catalogue(tmp / "gaia.ecsv", [tmp / "nowcs_cal.fits"], tmp / "out.ecsv")
    assert str(nowcs.value) == (
        f"{tmp / 'nowcs_cal.fits'}: no valid S_REGION in its SCI header, so its footprint on the "
        "sky is unknown. Give _cal, _crf or _i2d files (calwebb_image2's assign_wcs writes it).")
    with pytest.raises(OutputError):
        cut_catalogue(tmp / "gaia.ecsv", cal, tmp / "gaia.ecsv")
    assert not (tmp / "out.ecsv").exists()


def test_runner_passes_an_absolute_path_and_warns_about_unused_abs_settings(
        field, monkeypatch, caplog):
    from jwstrun.runner.run import _checked_abs_refcat
    from jwstrun.stages import get_stage

    tmp, cal, _ = field
    cut_catalogue(tmp / "gaia.ecsv", cal, tmp / "field.ecsv")
    monkeypatch.chdir(tmp)
    given = {"steps": {"tweakreg": {"abs_refcat": "field.ecsv", "abs_minobj": 20}}}
    checked = _checked_abs_refcat(get_stage("image3"), given, [], cal, OFFLINE)
    assert checked["steps"]["tweakreg"] == {"abs_refcat": str(tmp / "field.ecsv"),
                                            "abs_minobj": 20}
    assert given["steps"]["tweakreg"]["abs_refcat"] == "field.ecsv"  # not modified
    unused = {"steps": {"tweakreg": {"abs_minobj": 5, "abs_fitgeometry": "shift"}}}
    assert _checked_abs_refcat(get_stage("image3"), unused, [], cal, OFFLINE) is unused
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "steps.tweakreg: abs_fitgeometry, abs_minobj set without abs_refcat: tweakreg ignores "
        "them."]
