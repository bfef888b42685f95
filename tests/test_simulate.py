"""The simulator: files, metadata, truth tables and bad input (no pipeline runs here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner

from jwstrun.cli import cli
from jwstrun.simulate import simulate_program

NAME_RE = re.compile(r"^jw\d{5}\d{3}\d{3}_\d{2}\d\d{2}_\d{5}_[a-z0-9]+_(rate|rateints)\.fits$")


@pytest.fixture(scope="module")
def small_program(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    return simulate_program(out, subarray="SUB160", n_dithers=2, n_background=1, seed=7, force=True)


def test_files_follow_jwst_naming(small_program):
    names = [p.name for p in small_program.rate_files + small_program.background_files]
    assert names == ["jw01234001001_02101_00001_nrcb1_rate.fits",
                     "jw01234001001_02101_00002_nrcb1_rate.fits",
                     "jw01234001002_02101_00001_nrcb1_rate.fits"]
    for name in names:
        assert NAME_RE.match(name), name
    assert all(p.exists() for p in small_program.rate_files)
    # no temporary files left behind
    assert not list(small_program.outdir.glob(".*part*"))


def test_rate_metadata_and_layout(small_program):
    path = small_program.rate_files[0]
    with fits.open(path) as hdul:
        assert hdul[0].data is None
        names = [h.name for h in hdul]
        for ext in ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE", "ASDF"):
            assert ext in names
        hdr = hdul[0].header
        assert hdr["INSTRUME"] == "NIRCAM"
        assert hdr["DETECTOR"] == "NRCB1"
        assert hdr["EXP_TYPE"] == "NRC_IMAGE"
        assert hdr["FILTER"] == "F200W"
        assert hdr["PUPIL"] == "CLEAR"
        assert hdr["SUBARRAY"] == "SUB160"
        # SIAF: NRCB1_SUB160 is the first 160x160 science pixels of NRCB1 (read out flipped:
        # its detector-frame corner is (1, 1889))
        assert (hdr["SUBSTRT1"], hdr["SUBSTRT2"], hdr["SUBSIZE1"], hdr["SUBSIZE2"]) == (1, 1, 160, 160)
        assert hdl_shape(hdul) == (160, 160)
        sci = hdul["SCI"].data
        err = hdul["ERR"].data
        var = hdul["VAR_POISSON"].data + hdul["VAR_RNOISE"].data
        assert sci.dtype.str[1:] == "f4" and hdul["DQ"].data.dtype.str[1:] == "u4"
        np.testing.assert_allclose(err**2, var, rtol=1e-4)
        assert (hdul["DQ"].data & 1).any(), "some DO_NOT_USE pixels expected"
        assert hdul["SCI"].header["BUNIT"] == "DN/s"


def hdl_shape(hdul):
    return hdul["SCI"].data.shape


def test_background_exposure_flagged_and_empty(small_program):
    bkg = small_program.background_files[0]
    assert fits.getval(bkg, "BKGDTARG") is True
    sci = fits.getdata(bkg, "SCI")
    dq = fits.getdata(bkg, "DQ")
    good = sci[(dq & 1) == 0]
    # no sources: the brightest good pixel is sky + noise (+ cosmic rays)
    assert np.median(good) > 0


def test_truth_tables(small_program):
    truth = Table.read(small_program.truth_file)
    assert {"ra", "dec", "flux_jy", "abmag", "kind"} <= set(truth.colnames)
    assert (truth["kind"] == "point").sum() >= 30
    assert (truth["kind"] == "galaxy").sum() >= 8
    np.testing.assert_allclose(truth["abmag"], -2.5 * np.log10(truth["flux_jy"] / 3631.0))
    pointing = Table.read(small_program.pointing_file)
    assert len(pointing) == 3
    err = np.hypot(pointing["error_xi_arcsec"], pointing["error_eta_arcsec"])
    assert 0 < err.max() < 1.0
    crs = Table.read(small_program.cosmic_ray_file)
    assert len(crs) > 10
    assert set(crs["file"]) <= {p.name for p in small_program.rate_files + small_program.background_files}


def test_refcat_is_gaia_like_and_on_the_truth_once_moved(small_program):
    """refcat.ecsv: bright point sources under Gaia DR3's names at 2016.0; moved by their
    proper motions to the observations' epoch they sit on the truth within the 7 mas
    noise, and without that they do not."""
    from jwstrun.simulate.refcat import MIN_SNR, POSITION_ERROR_MAS

    refcat = Table.read(small_program.refcat_file)
    truth = Table.read(small_program.truth_file)
    assert refcat.colnames == ["source_id", "ra", "dec", "ra_error", "dec_error", "pmra", "pmdec",
                               "ref_epoch", "phot_g_mean_mag"]
    snr = next(truth[c] for c in truth.colnames if c.startswith("snr_"))
    stars = truth[(truth["kind"] == "point") & (snr >= MIN_SNR)]
    assert len(refcat) == len(stars) >= 20 and np.all(refcat["ref_epoch"] == 2016.0)
    dt = refcat.meta["observation_epoch"] - 2016.0
    dec = refcat["dec"] + refcat["pmdec"] * dt / 3.6e6
    ra = refcat["ra"] + refcat["pmra"] * dt / 3.6e6 / np.cos(np.radians(dec))
    moved = np.hypot((ra - stars["ra"]) * np.cos(np.radians(dec)), dec - stars["dec"]) * 3.6e6
    raw = np.hypot((refcat["ra"] - stars["ra"]) * np.cos(np.radians(dec)),
                   refcat["dec"] - stars["dec"]) * 3.6e6
    assert 0.5 < np.sqrt(np.mean(moved**2)) / (POSITION_ERROR_MAS * np.sqrt(2)) < 1.5
    assert np.sqrt(np.mean(raw**2)) > 3 * np.sqrt(np.mean(moved**2))


def test_env_file(small_program):
    text = small_program.env_file.read_text()
    assert "CRDS_PATH" in text and "CRDS_SERVER_URL" in text and "serverless" in text
    assert (small_program.crds_path / "config" / "jwst" / "server_config").exists()


def test_same_seed_same_data(tmp_path, small_program):
    again = simulate_program(tmp_path / "again", subarray="SUB160", n_dithers=2, n_background=1, seed=7)
    a = fits.getdata(small_program.rate_files[1], "SCI")
    b = fits.getdata(again.rate_files[1], "SCI")
    np.testing.assert_array_equal(a, b)


def test_rateints_are_cubes(tmp_path):
    result = simulate_program(tmp_path / "ints", subarray="SUB160", n_dithers=1, rateints=True, nints=3)
    path = result.rate_files[0]
    assert path.name.endswith("_rateints.fits")
    with fits.open(path) as hdul:
        assert hdul["SCI"].data.shape == (3, 160, 160)
        assert len(hdul["INT_TIMES"].data) == 3
        assert hdul[0].header["NINTS"] == 3


def test_pointing_error_moves_sources(tmp_path):
    """Sources are rendered at the true pointing, the header carries the nominal one."""
    result = simulate_program(tmp_path / "p", subarray="SUB160", n_dithers=1, pointing_error=0.0, seed=3)
    moved = simulate_program(tmp_path / "q", subarray="SUB160", n_dithers=1, pointing_error=0.5, seed=3)
    assert fits.getval(result.rate_files[0], "RA_REF", "SCI") == pytest.approx(
        fits.getval(moved.rate_files[0], "RA_REF", "SCI"))
    a = fits.getdata(result.rate_files[0], "SCI")
    b = fits.getdata(moved.rate_files[0], "SCI")
    assert not np.array_equal(a, b)


# --- command line -------------------------------------------------------------------------


def test_cli_refuses_non_empty_outdir(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    result = CliRunner().invoke(cli, ["simulate", str(tmp_path)])
    assert result.exit_code == 1
    assert "is not empty" in result.output and "--force" in result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "keep.txt").read_text() == "x"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--detector", "NRCB9"], "unknown detector 'NRCB9'. Did you mean NRCB4?"),
        (["--detector", "NRCB1", "--filter", "F44W"], "unknown filter for NRCB1 'F44W'"),
        (["--subarray", "SUB999"], "unknown subarray for NRCB1 'SUB999'"),
        (["--instrument", "MIRI", "--detector", "NRCB1"], "do not belong to instrument MIRI"),
    ],
)
def test_cli_bad_names_list_valid_ones(tmp_path, args, message):
    result = CliRunner().invoke(cli, ["simulate", str(tmp_path / "o"), *args])
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Valid:" in result.output or "belong" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_cli_json(tmp_path):
    result = CliRunner().invoke(
        cli, ["simulate", str(tmp_path / "j"), "--subarray", "SUB160", "--dithers", "1", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["rate_files"]) == 1
    assert data["env"]["CRDS_PATH"].endswith("crds_cache")


def test_load_simulation_reuses_only_a_matching_program(small_program):
    from jwstrun.simulate import load_simulation

    same = load_simulation(small_program.outdir, subarray="sub160", n_dithers=2, seed=7)
    assert same is not None
    assert same.rate_files == small_program.rate_files
    assert same.crds_context == small_program.crds_context
    assert load_simulation(small_program.outdir, seed=8) is None
    assert load_simulation(small_program.outdir / "nowhere") is None


# --- what else a MAST folder holds (--extra) ----------------------------------------------


def test_extras_have_the_headers_of_real_products(mast_folder):
    """The target acquisition, grism exposure and _uncal: DMS names (no filter in them),
    EXP_TYPE, DATAMODL, FILTER/PUPIL, subarray and shapes of the real products."""
    science = mast_folder.rate_files[0]
    assert science.name == "jw01234001001_02101_00001_nrcb1_rate.fits"
    assert [p.name for p in mast_folder.extra_files] == [
        "jw01234001001_01101_00001_nrcb1_rate.fits",
        "jw01234002001_02101_00001_nrcblong_rate.fits",
        "jw01234001001_02101_00001_nrcb1_uncal.fits",
    ]
    ta, grism, uncal = mast_folder.extra_files
    expected = {
        ta: {"EXP_TYPE": "NRC_TACQ", "DATAMODL": "ImageModel", "DETECTOR": "NRCB1",
             "FILTER": "F210M", "PUPIL": "CLEAR", "SUBARRAY": "SUB64P", "VISITGRP": "01",
             "OBSERVTN": "001"},
        grism: {"EXP_TYPE": "NRC_WFSS", "DATAMODL": "ImageModel", "DETECTOR": "NRCBLONG",
                "CHANNEL": "LONG", "FILTER": "F444W", "PUPIL": "GRISMR", "SUBARRAY": "SUB64P",
                "OBSERVTN": "002"},
        uncal: {"EXP_TYPE": "NRC_IMAGE", "DATAMODL": "Level1bModel", "DETECTOR": "NRCB1",
                "FILTER": "F200W", "PUPIL": "CLEAR", "SUBARRAY": "SUB64P", "NGROUPS": 3},
    }
    for path, cards in expected.items():
        with fits.open(path) as hdul:
            header = hdul[0].header
            assert {k: header[k] for k in cards} == cards, path.name
            assert header["FILENAME"] == path.name
            assert not header["BKGDTARG"]
            sci = hdul["SCI"].data
        if path is uncal:
            assert sci.dtype.str[1:] == "u2" and sci.shape == (1, 3, 64, 64)
        else:
            assert sci.dtype.str[1:] == "f4" and sci.shape == (64, 64)
            assert fits.getval(path, "BUNIT", "SCI") == "DN/s"
    summary = json.loads((mast_folder.outdir / "simulation.json").read_text())
    assert summary["extra_files"] == [str(p) for p in mast_folder.extra_files]
    assert summary["options"]["extras"] == ["ta", "grism", "uncal"]


def test_extras_leave_the_science_as_it_was(mast_folder, tmp_path):
    """The same program without --extra: the same science file, and a summary without a
    word about extras (a simulation without them writes what it always did)."""
    options = {k: mast_folder.options[k] for k in ("subarray", "n_dithers", "n_background",
                                                   "seed")}
    plain = simulate_program(tmp_path / "plain", **options)
    (a, _), (b, _) = plain.rate_files, mast_folder.rate_files
    assert a.name == b.name
    with fits.open(a) as one, fits.open(b) as other:
        assert [h.name for h in one] == [h.name for h in other]
        for hdu, same in zip(one, other, strict=True):
            if hdu.name not in ("PRIMARY", "ASDF"):  # ASDF: the tree's creation time
                np.testing.assert_array_equal(hdu.data, same.data, err_msg=hdu.name)
            cards = {k: v for k, v in hdu.header.items() if k != "DATE"}
            assert cards == {k: v for k, v in same.header.items() if k != "DATE"}, hdu.name
    summary = json.loads((plain.outdir / "simulation.json").read_text())
    assert "extra_files" not in summary and "extras" not in summary["options"]
    assert plain.extra_files == []


def test_unknown_extra_is_refused(tmp_path):
    from jwstrun.errors import InputError

    with pytest.raises(InputError) as err:
        simulate_program(tmp_path / "x", extras=["ta", "coron"])
    assert str(err.value) == "unknown extra 'coron'; choose from ta, grism, uncal."
    assert not (tmp_path / "x").exists()
    result = CliRunner().invoke(cli, ["simulate", str(tmp_path / "y"), "--extra", "coron"])
    assert result.exit_code == 2
    assert "Invalid value for '--extra': 'coron' is not one of 'ta', 'grism', 'uncal'." \
        in result.output
    assert not (tmp_path / "y").exists()



# --- the program as on the telescope: exposures read out on several detectors at once -----


@pytest.fixture(scope="module")
def sw_lw_program(tmp_path_factory):
    """NRCB1 + NRCB2 (F200W) and NRCBLONG (F444W) read out together, 2 dithers, 1 background."""
    out = tmp_path_factory.mktemp("swlw")
    return simulate_program(out, detectors=["NRCB1", "NRCB2", "NRCBLONG"],
                            filters=["F200W", "F444W"], subarray="SUB160", n_dithers=2,
                            n_background=1, pointing_error=0.3, seed=5)


def test_one_exposure_is_one_file_per_detector(sw_lw_program):
    names = [p.name for p in sw_lw_program.rate_files]
    assert names == [f"jw01234001001_02101_0000{k}_{d}_rate.fits"
                     for k in (1, 2) for d in ("nrcb1", "nrcb2", "nrcblong")]
    assert [p.name for p in sw_lw_program.background_files] == [
        f"jw01234001002_02101_00001_{d}_rate.fits" for d in ("nrcb1", "nrcb2", "nrcblong")]
    headers = {p.name: fits.getheader(p) for p in sw_lw_program.rate_files}
    for name, hdr in headers.items():
        number = int(name.split("_")[2])
        assert (hdr["PROGRAM"], hdr["OBSERVTN"], hdr["VISIT"], hdr["VISITGRP"], hdr["SEQ_ID"],
                hdr["ACT_ID"], hdr["EXPOSURE"]) == ("01234", "001", "001", "02", "1", "01",
                                                    str(number))
        assert (hdr["EXPCOUNT"], hdr["NEXPOSUR"], hdr["PATT_NUM"], hdr["NUMDTHPT"]) == (
            number, 2, number, 2)
        assert hdr["FILTER"] == ("F444W" if "long" in name else "F200W"), name
        assert hdr["BKGDTARG"] is False and hdr["TARGPROP"] == "SIMFIELD"
    sci = {p.name: fits.getheader(p, "SCI") for p in sw_lw_program.rate_files}
    for k in (1, 2):
        same = [n for n in headers if f"_0000{k}_" in n]
        for key in ("EXPSTART", "DATE-BEG", "OBS_ID"):
            assert len({headers[n][key] for n in same}) == 1, key  # one exposure, one time
        for key in ("RA_V1", "DEC_V1", "PA_V3"):
            assert len({sci[n][key] for n in same}) == 1, key  # and one pointing
    bkg = fits.getheader(sw_lw_program.background_files[2])
    assert (bkg["VISIT"], bkg["EXPOSURE"], bkg["EXPCOUNT"], bkg["NEXPOSUR"], bkg["BKGDTARG"]) == (
        "002", "1", 1, 1, True)


def test_detectors_of_an_exposure_share_one_pointing(sw_lw_program):
    """Each file's WCS keywords (its own aperture's V2/V3_REF on RA/DEC_REF at ROLL_REF)
    describe the same telescope attitude: V1 and the other detectors land on the same sky."""
    from jwstrun.simulate.instruments import siaf_rotations

    rot = siaf_rotations()
    files = sw_lw_program.rate_files[:3]
    wcs = [fits.getheader(p, "SCI") for p in files]
    refs = [(h["V2_REF"], h["V3_REF"]) for h in wcs]
    assert len(set(refs)) == 3  # three apertures, three reference points
    v1 = wcs[0]
    for h in wcs:
        att = rot.attitude(h["V2_REF"], h["V3_REF"], h["RA_REF"], h["DEC_REF"], h["ROLL_REF"])
        ra, dec = rot.pointing(att, 0.0, 0.0)
        assert (ra, dec) == pytest.approx((v1["RA_V1"], v1["DEC_V1"]), abs=1e-5 / 3600)
        for other, (v2, v3) in zip(wcs, refs):
            ra, dec = rot.pointing(att, v2, v3)
            assert (ra, dec) == pytest.approx((other["RA_REF"], other["DEC_REF"]), abs=1e-5 / 3600)


def test_pointing_error_is_per_exposure(sw_lw_program):
    pointing = Table.read(sw_lw_program.pointing_file)
    assert len(pointing) == 9
    errors = {}
    for row in pointing:
        assert row["file"].startswith(row["exposure"] + "_")
        errors.setdefault(row["exposure"], set()).add(
            (row["error_xi_arcsec"], row["error_eta_arcsec"]))
    assert sorted(errors) == ["jw01234001001_02101_00001", "jw01234001001_02101_00002",
                              "jw01234001002_02101_00001"]
    assert all(len(e) == 1 for e in errors.values())  # shared by the exposure's detectors
    assert len({e for (e,) in errors.values()}) == 3  # and drawn for every exposure
    truth = Table.read(sw_lw_program.truth_file)
    assert {"snr_nrcb1_f200w", "snr_nrcb2_f200w", "snr_nrcblong_f444w"} <= set(truth.colnames)


def test_one_observation_gives_one_level3_product_per_filter(sw_lw_program, tmp_path):
    """The detectors of a program are one observation: its F200W product is o001 (it was a
    c1000 merge of one observation per detector), with every SW detector's files."""
    from jwstrun.asn import make_associations

    built = make_associations(sw_lw_program.rate_files, tmp_path / "asn", level=3,
                              group_by="default", allow_outside=True)
    products = {}
    for written in built.associations:
        (product,) = json.loads(written.path.read_text())["products"]
        products[product["name"]] = sorted(Path(m["expname"]).name for m in product["members"])
    names = sorted(p.name for p in sw_lw_program.rate_files)
    assert products == {
        "jw01234-o001_t001_nircam_clear-f200w-sub160": [n for n in names if "long" not in n],
        "jw01234-o001_t001_nircam_clear-f444w-sub160": [n for n in names if "long" in n],
    }


def _source_pixels(path, cosmic_rays) -> int:
    """Good pixels 10 sigma above the sky that are not cosmic rays: pixels of sources."""
    sci = fits.getdata(path, "SCI")
    err = fits.getdata(path, "ERR")
    bright = ((fits.getdata(path, "DQ") & 1) == 0) & (sci > np.median(sci) + 10 * err)
    for row in cosmic_rays[cosmic_rays["file"] == path.name]:
        bright[row["y"], row["x"]] = False
    return int(bright.sum())


def test_sources_land_on_every_detector(sw_lw_program):
    """The scene covers all the detectors' footprints: each file sees injected sources,
    while the background exposures of the same detectors see none."""
    crs = Table.read(sw_lw_program.cosmic_ray_file)
    science = {p.name: _source_pixels(p, crs) for p in sw_lw_program.rate_files}
    background = {p.name: _source_pixels(p, crs) for p in sw_lw_program.background_files}
    assert min(science.values()) >= 20, science
    assert max(background.values()) <= 2, background


def test_filter_sets_pair_short_and_long_wave():
    from jwstrun.simulate.layout import base36, module_detectors, plan_exposure_sets

    sets = plan_exposure_sets(None, ["NRCB1", "NRCBLONG", "nrcb1"], ["F090W", "F150W", "F277W"])
    assert [(s.observation, s.activity, [(d.name, f.name) for d, f in s.members]) for s in sets] == [
        (1, 1, [("NRCB1", "F090W"), ("NRCBLONG", "F277W")]),
        (1, 3, [("NRCB1", "F150W"), ("NRCBLONG", "F277W")]),
    ]
    (only,) = plan_exposure_sets(None, ["NRCB1", "NRCBLONG"], ["F150W"])
    assert [f.name for _, f in only.members] == ["F150W", "F444W"]  # LW default
    mixed = plan_exposure_sets(None, ["NRCB1", "MIRIMAGE"], ["F200W", "F770W", "F1000W"])
    assert [(s.observation, s.activity, s.filters) for s in mixed] == [
        (1, 1, ["F200W"]), (2, 1, ["F770W"]), (2, 3, ["F1000W"])]
    assert module_detectors("b") == ["NRCB1", "NRCB2", "NRCB3", "NRCB4", "NRCBLONG"]
    assert len(module_detectors("ALL")) == 10
    assert [base36(n) for n in (1, 3, 11, 17)] == ["01", "03", "0b", "0h"]


@pytest.mark.parametrize("detectors, filters, message", [
    (["NRCB1", "NRCB2"], ["F200W", "F770W"],
     "filter F770W is not on the detector(s) given (NRCB1, NRCB2) but on MIRIMAGE. "
     "Add --detector MIRIMAGE, or leave --filter F770W out."),
    (["NRCB1"], ["F444W"],
     "filter F444W is not on the detector(s) given (NRCB1) but on NRCALONG, NRCBLONG. "
     "Add --detector NRCBLONG, or leave --filter F444W out."),
    (["NRCB1", "NRCBLONG"], ["F200W", "F4444W"],
     "unknown filter for NRCB1 'F4444W'. Valid: F070W, F090W, F115W, F150W, F200W, F182M, F210M."),
])
def test_filter_on_none_of_the_detectors_is_refused(detectors, filters, message):
    from jwstrun.errors import InputError
    from jwstrun.simulate.layout import plan_exposure_sets

    with pytest.raises(InputError) as info:
        plan_exposure_sets(None, detectors, filters)
    assert str(info.value) == message


def test_cli_summary_per_exposure_set(tmp_path):
    result = CliRunner().invoke(
        cli, ["simulate", str(tmp_path / "m"), "--detector", "NRCB1", "--detector", "NRCBLONG",
              "--filter", "F200W", "--filter", "F150W", "--filter", "F444W",
              "--subarray", "SUB160", "--dithers", "1"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert re.fullmatch(rf"Simulated 2 science and 0 background exposures \(4 files\) in "
                        rf"[0-9.]+ s into {re.escape(str(tmp_path / 'm'))}/", lines[0])
    assert lines[1:3] == [
        "  observation 001 activity 01: 1 science, 0 background exposures; F200W on NRCB1; "
        "F444W on NRCBLONG",
        "  observation 001 activity 03: 1 science, 0 background exposures; F150W on NRCB1; "
        "F444W on NRCBLONG",
    ]
    assert sorted(p.name for p in (tmp_path / "m").glob("*_rate.fits")) == [
        "jw01234001001_02101_00001_nrcb1_rate.fits", "jw01234001001_02101_00001_nrcblong_rate.fits",
        "jw01234001001_02103_00001_nrcb1_rate.fits", "jw01234001001_02103_00001_nrcblong_rate.fits"]


def test_cli_module_of_another_instrument(tmp_path):
    result = CliRunner().invoke(cli, ["simulate", str(tmp_path / "o"), "--instrument", "MIRI",
                                      "--module", "B"])
    assert result.exit_code == 1
    assert result.output == (
        "Error: detector(s) NRCB1, NRCB2, NRCB3, NRCB4, NRCBLONG do not belong to instrument MIRI.\n")
    assert not (tmp_path / "o").exists()
