"""jwstrun validate / info: real products pass, every failure mode is a finding, never a traceback.

Products are written by stdatamodels itself (ImageModel, CubeModel,
SegmentationMapModel with real meta and a gwcs in the ASDF extension), then
broken with astropy the way real failures break them.  The two real MIRI i2d
files in tests/data/real/ must validate clean.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from jwstrun.cli import cli
from jwstrun.errors import InputError
from jwstrun.products import DQ_FLAGS
from jwstrun.validate import (
    PRODUCT_LAYOUTS,
    VALIDATED_TYPES,
    product_info,
    schema_layout,
    step_status_keys,
    validate_file,
    validate_files,
)

REAL = Path(__file__).parent / "data" / "real"
REAL_I2D = sorted(REAL.glob("*_i2d.fits"))
SHAPE = (40, 48)
NINTS = 3


# --------------------------------------------------------------------------- product factory


def _simple_wcs(shape, ra=53.16, dec=-27.78, scale=0.031 / 3600):
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling import models
    from gwcs import coordinate_frames as cf
    from gwcs import wcs

    ny, nx = shape
    det = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), name="world", unit=(u.deg, u.deg))
    transform = (
        (models.Shift(-(nx - 1) / 2) & models.Shift(-(ny - 1) / 2))
        | (models.Scale(scale) & models.Scale(scale))
        | models.Pix2Sky_TAN()
        | models.RotateNative2Celestial(ra, dec, 180)
    )
    return wcs.WCS([(det, transform), (sky, None)])


def _set_meta(model, steps=(), bunit="MJy/sr", wcs=True):
    model.meta.instrument.name = "NIRCAM"
    model.meta.instrument.detector = "NRCB1"
    model.meta.instrument.module = "B"
    model.meta.instrument.channel = "SHORT"
    model.meta.instrument.filter = "F200W"
    model.meta.instrument.pupil = "CLEAR"
    model.meta.exposure.type = "NRC_IMAGE"
    model.meta.subarray.name = "SUB64P"
    model.meta.observation.date = "2023-01-01"
    model.meta.observation.time = "00:00:00"
    model.meta.ref_file.crds.context_used = "jwst_1322.pmap"
    model.meta.ref_file.flat.name = "crds://jwst_nircam_flat_0001.fits"
    for step in steps:
        setattr(model.meta.cal_step, step, "COMPLETE")
    if bunit:
        model.meta.bunit_data = bunit
        model.meta.bunit_err = bunit
    if wcs:
        model.meta.wcs = _simple_wcs(model.data.shape[-2:])


def _fill_arrays(model, shape, rng, calibrated=True, outliers=False):
    model.data = rng.normal(1.0, 0.1, shape).astype("f4")
    model.err = np.full(shape, 0.1, "f4")
    dq = np.zeros(shape, "u4")
    if outliers:
        dq[..., 5, 7] = DQ_FLAGS["OUTLIER"] | DQ_FLAGS["DO_NOT_USE"]
    model.dq = dq
    model.var_poisson = np.full(shape, 0.005, "f4")
    model.var_rnoise = np.full(shape, 0.005, "f4")
    if calibrated:
        model.var_flat = np.full(shape, 0.0001, "f4")
        model.area = np.ones(shape[-2:], "f4")
        model.meta.photometry.conversion_megajanskys = 0.48
        model.meta.photometry.pixelarea_steradians = 2.29e-14
        model.meta.ref_file.area.name = "crds://jwst_nircam_area_0001.fits"


def _int_times(nints):
    rows = [
        (i + 1, 60000.0 + i, 60000.5 + i, 60001.0 + i, 60000.1 + i, 60000.6 + i, 60001.1 + i)
        for i in range(nints)
    ]
    return np.array(
        rows,
        dtype=[
            ("integration_number", "i4"),
            ("int_start_MJD_UTC", "f8"),
            ("int_mid_MJD_UTC", "f8"),
            ("int_end_MJD_UTC", "f8"),
            ("int_start_BJD_TDB", "f8"),
            ("int_mid_BJD_TDB", "f8"),
            ("int_end_BJD_TDB", "f8"),
        ],
    )


IMAGE2 = ("assign_wcs", "flat_field", "photom")
IMAGE3 = ("tweakreg", "skymatch", "outlier_detection")


def make_product(outdir: Path, ptype: str, name: str | None = None) -> Path:
    """Write a small, valid product of type ``ptype`` with stdatamodels."""
    from stdatamodels.jwst.datamodels import CubeModel, ImageModel, SegmentationMapModel

    rng = np.random.default_rng(42)
    path = Path(outdir) / (name or f"jw01234001001_02101_00001_nrcb1_{ptype}.fits")
    if ptype in ("rate", "bsub"):
        model = ImageModel(SHAPE)
        _fill_arrays(model, SHAPE, rng, calibrated=False)
        _set_meta(model, steps=("bkg_subtract",) if ptype == "bsub" else (), bunit="DN/s",
                  wcs=False)
    elif ptype in ("rateints", "bsubints", "calints", "crfints"):
        shape = (NINTS, *SHAPE)
        model = CubeModel(shape)
        calibrated = ptype in ("calints", "crfints")
        _fill_arrays(model, shape, rng, calibrated=calibrated, outliers=ptype == "crfints")
        model.int_times = _int_times(NINTS)
        model.meta.exposure.nints = NINTS
        steps = {"rateints": (), "bsubints": ("bkg_subtract",), "calints": IMAGE2,
                 "crfints": IMAGE2 + ("outlier_detection",)}[ptype]
        _set_meta(model, steps=steps, bunit="MJy/sr" if calibrated else "DN/s", wcs=calibrated)
    elif ptype in ("cal", "crf"):
        model = ImageModel(SHAPE)
        _fill_arrays(model, SHAPE, rng, outliers=ptype == "crf")
        _set_meta(model, steps=IMAGE2 + (IMAGE3 if ptype == "crf" else ()))
    elif ptype == "i2d":
        model = ImageModel(SHAPE)
        model.data = rng.normal(1.0, 0.1, SHAPE).astype("f4")
        model.data[:2] = np.nan  # edges without coverage, as resample writes them
        model.err = np.full(SHAPE, 0.1, "f4")
        model.con = np.ones((1, *SHAPE), "i4")
        model.wht = np.full(SHAPE, 100.0, "f4")
        model.var_poisson = np.full(SHAPE, 0.005, "f4")
        model.var_rnoise = np.full(SHAPE, 0.005, "f4")
        model.var_flat = np.full(SHAPE, 0.0001, "f4")
        model.meta.photometry.pixelarea_steradians = 2.29e-14
        _set_meta(model, steps=IMAGE2 + IMAGE3 + ("resample",))
    elif ptype == "segm":
        data = np.zeros(SHAPE, "u4")
        data[10:14, 10:14] = 1
        data[20:25, 30:33] = 2
        model = SegmentationMapModel(data)
        _set_meta(model, steps=IMAGE2 + IMAGE3 + ("resample",), bunit=None)
    else:
        raise ValueError(ptype)
    model.meta.filename = path.name
    model.save(path)
    model.close()
    return path


def make_catalog(outdir: Path, n: int = 3, name="jw01234-o001_t001_nircam_clear-f200w_cat.ecsv",
                 drop=(), sky=True) -> Path:
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.table import QTable

    table = QTable()
    table["label"] = np.arange(1, n + 1)
    table["xcentroid"] = np.linspace(5, 30, n)
    table["ycentroid"] = np.linspace(4, 20, n)
    if sky:
        table["sky_centroid"] = SkyCoord(np.linspace(53.1, 53.2, n) * u.deg,
                                         np.full(n, -27.8) * u.deg)
    else:
        table["sky_centroid"] = np.zeros(n)
    for col in ("isophotal_flux", "isophotal_flux_err", "aper_total_flux", "aper_total_flux_err"):
        table[col] = np.full(n, 1e-6) * u.Jy
    for col in drop:
        del table[col]
    path = Path(outdir) / name
    table.write(path, format="ascii.ecsv", overwrite=True)
    return path


def rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy ``src`` to ``dst`` with ``edit(hdul)`` applied (hdul in memory)."""
    with fits.open(src) as hdul:
        hdul = fits.HDUList([h.copy() for h in hdul])
    edit(hdul)
    hdul.writeto(dst, overwrite=True)
    return dst


def checks(report, severity="error"):
    return [f.check for f in report.findings if f.severity == severity]


def messages(report, severity="error"):
    return [f.message for f in report.findings if f.severity == severity]


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    """One valid product of every FITS type plus a catalog, written once."""
    outdir = tmp_path_factory.mktemp("products")
    made = {t: make_product(outdir, t) for t in VALIDATED_TYPES if t != "cat"}
    made["cat"] = make_catalog(outdir)
    return made


@pytest.fixture
def cal(products, tmp_path):
    return shutil.copy(products["cal"], tmp_path / products["cal"].name)


# --------------------------------------------------------------------------- schemas


def test_layouts_come_from_the_installed_schemas():
    image, cube, segm = (schema_layout(m) for m in ("ImageModel", "CubeModel",
                                                    "SegmentationMapModel"))
    assert image["SCI"]["datatype"] == "float32" and image["SCI"]["ndim"] == 2
    assert cube["SCI"]["ndim"] == 3
    assert image["DQ"]["datatype"] == "uint32"
    assert image["CON"]["datatype"] == "int32"
    assert [c["name"] for c in cube["INT_TIMES"]["datatype"]][0] == "integration_number"
    assert segm["SCI"]["datatype"] == "uint32"
    for ptype, (model, required, expected) in PRODUCT_LAYOUTS.items():
        layout = schema_layout(model)
        for extname in required + expected:
            assert extname in layout, (ptype, extname)


def test_dq_flags_match_stdatamodels():
    from stdatamodels.jwst.datamodels import dqflags

    for name, bit in DQ_FLAGS.items():
        assert dqflags.pixel[name] == bit, name


def test_step_names_map_to_status_keywords():
    assert step_status_keys(["tweakreg", "S_SKYMAT", "outlier_detection", "bkg_subtract"]) == {
        "S_TWKREG", "S_SKYMAT", "S_OUTLIR", "S_BKDSUB"}
    with pytest.raises(InputError, match="unknown pipeline step 'tweakregg'"):
        step_status_keys(["tweakregg"])


# --------------------------------------------------------------------------- valid products


@pytest.mark.parametrize("path", REAL_I2D, ids=lambda p: p.name)
def test_real_jwst_i2d_is_valid_without_findings(path):
    report = validate_file(path)
    assert report.product_type == "i2d"
    assert report.findings == []
    assert report.ok
    assert report.summary["extensions"] == ["SCI", "ERR", "CON", "WHT", "VAR_POISSON",
                                            "VAR_RNOISE", "VAR_FLAT", "ASDF"]


def test_real_files_present():
    assert len(REAL_I2D) == 2


@pytest.mark.parametrize("ptype", [t for t in VALIDATED_TYPES])
def test_products_written_by_stdatamodels_are_valid(products, ptype):
    report = validate_file(products[ptype])
    assert report.product_type == ptype
    assert report.findings == [], [f.message for f in report.findings]


def test_test_products_load_as_datamodels(products):
    # our fixtures are real products: stdatamodels opens them with schema validation
    from stdatamodels.jwst import datamodels

    for ptype in ("cal", "calints", "i2d", "segm", "rateints"):
        with datamodels.open(products[ptype]) as model:
            assert model.data.ndim == (3 if ptype.endswith("ints") else 2)


def test_type_from_datamodl_when_the_name_has_no_suffix(products, tmp_path):
    plain = shutil.copy(products["cal"], tmp_path / "product.fits")
    report = validate_file(plain)
    assert report.product_type == "cal"
    assert report.ok


def test_uncal_is_named_for_what_it_is(tmp_path):
    """An _uncal (raw ramps) is not a product validate checks, and says so; an ImageModel
    named _uncal is a DATAMODL error naming the file, the suffix and the DATAMODL."""
    header = fits.Header({"DATAMODL": "Level1bModel", "INSTRUME": "NIRCAM",
                          "EXP_TYPE": "NRC_IMAGE"})
    uncal = tmp_path / "jw01234001001_02101_00001_nrcb1_uncal.fits"
    fits.PrimaryHDU(header=header).writeto(uncal)
    report = validate_file(uncal)
    assert report.product_type == "uncal" and not report.ok
    assert messages(report) == [
        f"{uncal.name}: is an _uncal file (raw ramps, DATAMODL Level1bModel); validate checks "
        "the products of calwebb_detector1 and later (rate, rateints, bsub, bsubints, cal, "
        "calints, crf, crfints, i2d, segm, cat)."
    ]
    header["DATAMODL"] = "ImageModel"
    misnamed = tmp_path / "jw01234001001_02101_00002_nrcb1_uncal.fits"
    fits.PrimaryHDU(header=header).writeto(misnamed)
    assert messages(validate_file(misnamed)) == [
        f"{misnamed}: is named _uncal, but its DATAMODL is ImageModel (an _uncal file is a "
        "Level1bModel or RampModel); its header says it is a _rate product: rename it to end "
        "in _rate.fits, or re-create it."
    ]


# --------------------------------------------------------------------------- layout failures


def test_missing_extension_is_an_error(cal, tmp_path):
    broken = rewrite(cal, tmp_path / "x_cal.fits", lambda h: h.remove(h["DQ"]))
    report = validate_file(broken)
    assert "required extension DQ is missing." in messages(report)
    # the ASDF tree still points at the DQ array that is gone
    assert "ASDF tree refers to extension DQ (dq) that the file does not have." in messages(report)


def test_missing_expected_extension_is_a_warning(cal, tmp_path):
    def edit(h):
        h.remove(h["VAR_FLAT"])

    report = validate_file(rewrite(cal, tmp_path / "x_cal.fits", edit))
    assert "extension VAR_FLAT is missing (current jwst writes it for 'cal')." in messages(
        report, "warning")


def test_wrong_dtype_is_an_error(cal, tmp_path):
    def edit(h):
        h["SCI"].data = h["SCI"].data.astype("f8")

    report = validate_file(rewrite(cal, tmp_path / "x_cal.fits", edit))
    assert "SCI has dtype float64, the ImageModel schema says float32." in messages(report)


def test_signed_dq_is_a_dtype_error(cal, tmp_path):
    def edit(h):
        h["DQ"].data = h["DQ"].data.astype("i4")

    report = validate_file(rewrite(cal, tmp_path / "x_cal.fits", edit))
    assert "DQ has dtype int32, the ImageModel schema says uint32." in messages(report)


def test_3d_data_in_a_2d_product_is_an_ndim_error(products):
    report = validate_file(products["calints"], expect="cal")
    errors = messages(report)
    assert "DATAMODL is CubeModel but a 'cal' product is a ImageModel." in errors
    assert f"SCI is 3-D {(NINTS, *SHAPE)}, a 'cal' product needs 2-D (ny x nx)." in errors
    assert "file name says 'calints' but it is validated as 'cal' (--expect)." in messages(
        report, "warning")


def test_shape_mismatch_is_an_error(cal, tmp_path):
    def edit(h):
        h["ERR"].data = h["ERR"].data[:-1]

    report = validate_file(rewrite(cal, tmp_path / "x_cal.fits", edit))
    assert f"ERR shape {(SHAPE[0] - 1, SHAPE[1])} differs from SCI shape {SHAPE}." in messages(
        report)


def test_ints_product_needs_int_times(products, tmp_path):
    src = shutil.copy(products["calints"], tmp_path / "a_calints.fits")
    report = validate_file(rewrite(src, tmp_path / "b_calints.fits",
                                   lambda h: h.remove(h["INT_TIMES"])))
    assert "required extension INT_TIMES is missing." in messages(report)


def test_int_times_columns_follow_the_schema(products, tmp_path):
    from astropy.table import Table

    def edit(h):
        table = Table(h["INT_TIMES"].data)
        del table["int_mid_BJD_TDB"]
        new = fits.table_to_hdu(table)
        new.name = "INT_TIMES"
        h[h.index_of("INT_TIMES")] = new

    src = shutil.copy(products["calints"], tmp_path / "a_calints.fits")
    report = validate_file(rewrite(src, tmp_path / "b_calints.fits", edit))
    assert "INT_TIMES table lacks column int_mid_BJD_TDB." in messages(report)


def test_primary_hdu_with_data_is_an_error(cal, tmp_path):
    def edit(h):
        h[0].data = np.zeros((2, 2), "f4")

    report = validate_file(rewrite(cal, tmp_path / "x_cal.fits", edit))
    assert "primary HDU holds data of shape (2, 2); JWST products keep the primary HDU empty " \
           "(NAXIS = 0)." in messages(report)


def test_missing_area_with_area_reference_is_an_error_without_is_a_warning(products, tmp_path):
    from stdatamodels.jwst.datamodels import ImageModel

    with ImageModel(products["cal"]) as model:
        del model.area  # as photom leaves it when no area reference was used
        model.save(tmp_path / "a_cal.fits")
        model.meta.ref_file.area.name = "N/A"
        model.save(tmp_path / "b_cal.fits")
    report = validate_file(tmp_path / "a_cal.fits")
    assert messages(report) == [
        "AREA extension is missing although photom used the area reference "
        "crds://jwst_nircam_area_0001.fits."
    ]
    report = validate_file(tmp_path / "b_cal.fits")
    assert report.ok
    assert checks(report, "warning") == ["missing-extension"]


# --------------------------------------------------------------------------- ASDF


def test_no_asdf_extension_is_an_error(cal, tmp_path):
    report = validate_file(rewrite(cal, tmp_path / "x_cal.fits", lambda h: h.remove(h["ASDF"])))
    assert any(m.startswith("no ASDF extension: the file was not completely written")
               for m in messages(report))


def test_corrupt_asdf_tree_is_an_error(cal, tmp_path):
    def edit(h):
        raw = h["ASDF"].data["ASDF_METADATA"][0].tobytes()
        cut = raw[: len(raw) // 2]
        col = fits.Column(name="ASDF_METADATA", format=f"{len(cut)}B",
                          array=np.frombuffer(cut, "u1")[None, :])
        new = fits.BinTableHDU.from_columns([col])
        new.name = "ASDF"
        h[h.index_of("ASDF")] = new

    report = validate_file(rewrite(cal, tmp_path / "x_cal.fits", edit))
    assert ("ASDF extension is unreadable: its YAML tree has no end marker ('...'): the write "
            "was cut short.") in messages(report)


def test_calibrated_product_without_wcs_is_an_error(products, tmp_path):
    from stdatamodels.jwst.datamodels import ImageModel

    with ImageModel(products["cal"]) as model:
        model.meta.wcs = None
        path = tmp_path / "nowcs_cal.fits"
        model.save(path)
    report = validate_file(path)
    assert any(m.startswith("no WCS in the ASDF extension") for m in messages(report))


# --------------------------------------------------------------------------- step status


def _set_status(src, dst, **status):
    def edit(h):
        for key, value in status.items():
            if value is None:
                del h[0].header[key]
            else:
                h[0].header[key] = value

    return rewrite(src, dst, edit)


def test_skipped_step_is_an_error_unless_the_profile_skipped_it(cal, tmp_path):
    path = _set_status(cal, tmp_path / "x_cal.fits", S_PHOTOM="SKIPPED")
    report = validate_file(path)
    assert [m for m in messages(report) if m.startswith("S_PHOTOM is SKIPPED: photom did not run")]
    assert validate_file(path, expected_skips={"photom"}).ok
    assert validate_file(path, expected_skips={"S_PHOTOM"}).ok


def test_failed_and_missing_step_status_are_errors(cal, tmp_path):
    report = validate_file(_set_status(cal, tmp_path / "a_cal.fits", S_FLAT="FAILED"))
    assert "S_FLAT is FAILED: flat_field did not succeed. See the step log." in messages(report)
    report = validate_file(_set_status(cal, tmp_path / "b_cal.fits", S_WCS=None))
    assert ("S_WCS (assign_wcs) is not set: the step never ran on this 'cal' product."
            in messages(report))


def test_step_that_ran_although_skipped_in_the_profile_is_a_warning(products):
    report = validate_file(products["cal"], expected_skips=["flat_field"])
    assert report.ok
    assert [m for m in messages(report, "warning") if m.startswith("S_FLAT is COMPLETE although")]


def test_background_members_require_bkg_subtract(products):
    assert validate_file(products["cal"]).ok
    report = validate_file(products["cal"], expect_background=True)
    assert ("S_BKDSUB (bkg_subtract) is not set: the step never ran on this 'cal' product."
            in messages(report))
    assert validate_file(products["bsub"], expect_background=True).ok


def test_level3_steps_in_crf_and_mosaic(products, tmp_path):
    crf = shutil.copy(products["crf"], tmp_path / "a_crf.fits")
    report = validate_file(_set_status(crf, tmp_path / "b_crf.fits", S_TWKREG="SKIPPED"))
    assert checks(report) == ["step-status"]
    assert validate_file(tmp_path / "b_crf.fits", expected_skips=["tweakreg"]).ok
    # tweakreg on a single exposure records FAILED: waived to a warning when expected
    failed = _set_status(crf, tmp_path / "c_crf.fits", S_TWKREG="FAILED")
    assert [m for m in messages(validate_file(failed))
            if m.startswith("S_TWKREG is FAILED") and "--skip tweakreg" in m]
    report = validate_file(failed, expected_skips=["tweakreg"])
    assert report.ok and checks(report, "warning") == ["step-status"]
    i2d = shutil.copy(products["i2d"], tmp_path / "a_i2d.fits")
    report = validate_file(_set_status(i2d, tmp_path / "b_i2d.fits", S_OUTLIR="SKIPPED"))
    assert [m for m in messages(report) if m.startswith("S_OUTLIR is SKIPPED")]


def test_bad_step_name_raises_input_error(products):
    with pytest.raises(InputError, match="unknown pipeline step 'outliers'"):
        validate_file(products["cal"], expected_skips=["outliers"])


# ------------------------------------------------------------------ units, photometry, data


def test_countrate_units_in_cal_are_an_error(cal, tmp_path):
    def edit(h):
        h["SCI"].header["BUNIT"] = "DN/s"
        h["ERR"].header["BUNIT"] = "DN/s"

    report = validate_file(rewrite(cal, tmp_path / "x_cal.fits", edit))
    assert "SCI BUNIT is 'DN/s', a 'cal' product is in MJy/sr." in messages(report)


def test_rate_in_wrong_units_is_an_error(products, tmp_path):
    src = shutil.copy(products["rate"], tmp_path / "a_rate.fits")
    report = validate_file(rewrite(src, tmp_path / "b_rate.fits",
                                   lambda h: h["SCI"].header.set("BUNIT", "MJy/sr")))
    assert "SCI BUNIT is 'MJy/sr', a 'rate' product is in DN/s." in messages(report)


def test_missing_photometry_keywords_are_errors(cal, tmp_path):
    def edit(h):
        del h["SCI"].header["PHOTMJSR"]
        h["SCI"].header["PIXAR_SR"] = 0.0

    report = validate_file(rewrite(cal, tmp_path / "x_cal.fits", edit))
    assert "PHOTMJSR is missing from the SCI header (set by photom)." in messages(report)
    assert "PIXAR_SR = 0.0 is not a positive number." in messages(report)


@pytest.mark.parametrize("fill, word", [(np.nan, "NaN"), (0.0, "zero (or NaN)")])
def test_empty_science_data_is_an_error(cal, tmp_path, fill, word):
    def edit(h):
        h["SCI"].data = np.full(SHAPE, fill, "f4")

    report = validate_file(rewrite(cal, tmp_path / "x_cal.fits", edit))
    assert (f"SCI is entirely {word}: no usable pixel. Check the input and the step logs."
            in messages(report))
    # --headers-only skips the pixel read
    assert validate_file(tmp_path / "x_cal.fits", check_data=False).ok


def test_crf_without_outlier_flags_is_a_warning(products, tmp_path):
    assert validate_file(products["crf"]).findings == []
    src = shutil.copy(products["crf"], tmp_path / "a_crf.fits")

    def edit(h):
        h["DQ"].data = np.zeros(SHAPE, "u4")

    report = validate_file(rewrite(src, tmp_path / "b_crf.fits", edit))
    assert report.ok and checks(report, "warning") == ["outliers"]


def test_mosaic_without_wht_is_an_error(products, tmp_path):
    src = shutil.copy(products["i2d"], tmp_path / "a_i2d.fits")
    report = validate_file(rewrite(src, tmp_path / "b_i2d.fits", lambda h: h.remove(h["WHT"])))
    assert "required extension WHT is missing." in messages(report)


# --------------------------------------------------------------------------- bad input


def test_truncated_at_many_offsets_gives_an_error_never_a_traceback(cal, tmp_path):
    raw = Path(cal).read_bytes()
    with fits.open(cal) as hdul:
        boundaries = []
        for hdu in hdul:
            info = hdu.fileinfo()
            boundaries += [info["hdrLoc"], info["datLoc"]]
    offsets = sorted({1, 80, 2000, 2880, len(raw) - 2880, len(raw) - 1000, len(raw) - 1,
                      *boundaries[1:]} - {len(raw)})
    assert len(offsets) >= 12
    for offset in offsets:
        path = tmp_path / f"cut{offset}_cal.fits"
        path.write_bytes(raw[:offset])
        report = validate_file(path)
        assert not report.ok, offset
        assert report.errors, offset
        assert all("Traceback" not in m for m in messages(report))
        # the first error either names the file or says what was cut
        first = report.errors[0].message
        assert str(path) in first or "missing" in first or "ASDF" in first, (offset, first)


def test_truncated_on_a_block_boundary_says_truncated(cal, tmp_path):
    raw = Path(cal).read_bytes()
    path = tmp_path / "cut_cal.fits"
    path.write_bytes(raw[: len(raw) - 2880])
    report = validate_file(path)
    assert report.errors[0].check == "truncated"
    assert report.errors[0].message.startswith(
        f"{path}: truncated: {len(raw) - 2880} bytes on disk, its headers describe {len(raw)}")


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "file is empty (0 bytes)"),
        (b"hello world\n" * 300, "is not a FITS file"),
        (None, "is gzip-compressed"),
    ],
)
def test_bad_input_names_the_file(cal, tmp_path, content, expected):
    path = tmp_path / "bad_cal.fits"
    path.write_bytes(gzip.compress(Path(cal).read_bytes()) if content is None else content)
    report = validate_file(path)
    assert report.product_type == "cal"
    assert len(report.errors) == 1
    assert report.errors[0].message.startswith(f"{path}: {expected}")


def test_missing_file_and_unknown_type(tmp_path):
    report = validate_file(tmp_path / "nope_cal.fits")
    assert report.errors[0].message == (
        f"{tmp_path / 'nope_cal.fits'}: file not found. Check the path or the glob pattern.")
    hdu = fits.PrimaryHDU()
    hdu.writeto(tmp_path / "mystery.fits")
    report = validate_file(tmp_path / "mystery.fits")
    assert report.errors[0].check == "product-type"
    assert "pass --expect TYPE" in report.errors[0].message


def test_fits_without_sci_is_invalid(tmp_path):
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((4, 4), "f4"), name="ERR")])
    hdul[0].header["DATAMODL"] = "ImageModel"
    hdul.writeto(tmp_path / "x_rate.fits")
    report = validate_file(tmp_path / "x_rate.fits")
    assert "required extension SCI is missing." in messages(report)


# --------------------------------------------------------------------------- catalogs


def test_catalog_failures(tmp_path):
    report = validate_file(make_catalog(tmp_path, name="a_cat.ecsv", drop=("sky_centroid",)))
    assert "column sky_centroid is missing." in messages(report)
    report = validate_file(make_catalog(tmp_path, name="b_cat.ecsv", sky=False))
    assert "sky_centroid is not a sky coordinate column (SkyCoord)." in messages(report)
    report = validate_file(make_catalog(tmp_path, n=0, name="c_cat.ecsv"))
    assert report.ok and messages(report, "warning") == ["catalog has no sources."]
    (tmp_path / "d_cat.ecsv").write_text("label,x\n1,2\n")
    report = validate_file(tmp_path / "d_cat.ecsv")
    assert report.errors[0].message.startswith(f"{tmp_path / 'd_cat.ecsv'}: is not an ECSV table")
    good = make_catalog(tmp_path, name="e_cat.ecsv")
    (tmp_path / "f_cat.ecsv").write_bytes(good.read_bytes()[:200])
    report = validate_file(tmp_path / "f_cat.ecsv")
    assert report.errors[0].message.startswith(f"{tmp_path / 'f_cat.ecsv'}: cannot be read as")


# --------------------------------------------------------------------------- CLI


def test_cli_validate_exit_codes_and_table(products, cal, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["validate", str(products["cal"]), str(REAL_I2D[0])],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "2 files: 2 valid, 0 invalid, 0 warnings." in result.output
    bad = _set_status(cal, tmp_path / "skip_cal.fits", S_PHOTOM="SKIPPED")
    result = runner.invoke(cli, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "INVALID (1 error)" in result.output
    assert "S_PHOTOM is SKIPPED" in result.output
    result = runner.invoke(cli, ["validate", str(bad), "--skip", "photom"], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_cli_validate_json(products, tmp_path):
    (tmp_path / "empty_cal.fits").write_bytes(b"")
    result = CliRunner().invoke(cli, ["validate", str(products["i2d"]),
                                      str(tmp_path / "empty_cal.fits"), "--json"])
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["n_files"] == 2 and payload["n_invalid"] == 1 and not payload["valid"]
    first, second = payload["files"]
    assert first["valid"] and first["product_type"] == "i2d" and first["findings"] == []
    assert second["findings"] == [{
        "severity": "error", "check": "unreadable",
        "message": f"{tmp_path / 'empty_cal.fits'}: file is empty (0 bytes). "
                   "Re-download or re-create it."}]


def test_cli_bad_skip_name(products):
    result = CliRunner().invoke(cli, ["validate", str(products["cal"]), "--skip", "nosuchstep"])
    assert result.exit_code == 1
    assert result.output == (
        "Error: unknown pipeline step 'nosuchstep': give a step name such as tweakreg, skymatch, "
        "outlier_detection, bkg_subtract, or a status keyword such as S_TWKREG.\n"
    )


def test_cli_verbosity_after_the_command(products):
    import logging

    logger = logging.getLogger("jwstrun")
    level = logger.level
    runner = CliRunner()
    try:
        result = runner.invoke(cli, ["validate", str(products["cal"]), "-v"],
                               catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert logger.level == logging.DEBUG
        result = runner.invoke(cli, ["-v", "info", str(products["cal"]), "-q"],
                               catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert logger.level == logging.WARNING
        result = runner.invoke(cli, ["-q", "validate", str(products["cal"])],
                               catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert logger.level == logging.WARNING
    finally:
        logger.setLevel(level)


def test_validate_files_calls_progress(products):
    seen = []
    reports = validate_files([products["rate"], products["segm"]], progress=seen.append)
    assert [r.product_type for r in seen] == ["rate", "segm"] and reports == seen


# --------------------------------------------------------------------------- info


def test_info_summary(products):
    info = product_info(products["cal"])
    assert info["product_type"] == "cal"
    assert (info["instrument"], info["detector"], info["filter"], info["pupil"]) == (
        "NIRCAM", "NRCB1", "F200W", "CLEAR")
    assert info["shape"] == list(SHAPE)
    assert info["crds_context"] == "jwst_1322.pmap"
    assert info["references"]["R_FLAT"] == "crds://jwst_nircam_flat_0001.fits"
    assert info["step_status"] == {"S_WCS": "COMPLETE", "S_FLAT": "COMPLETE",
                                   "S_PHOTOM": "COMPLETE"}
    assert info["bunit"] == "MJy/sr"


def test_info_footprint_from_s_region(products, tmp_path):
    path = tmp_path / "x_cal.fits"
    shutil.copy(products["cal"], path)
    fits.setval(path, "S_REGION", extname="SCI",
                value="POLYGON ICRS 1.0 2.0 3.0 2.0 3.0 4.0 1.0 4.0")
    info = product_info(path)
    assert info["footprint"] == [[1.0, 2.0], [3.0, 2.0], [3.0, 4.0], [1.0, 4.0]]
    assert "footprints" not in info
    fits.setval(path, "S_REGION", extname="SCI",
                value="POLYGON ICRS 1 2 3 2 3 4 POLYGON ICRS 5 6 7 6 7 8")
    info = product_info(path)
    assert info["footprint"] == [[1.0, 2.0], [3.0, 2.0], [3.0, 4.0]]
    assert info["footprints"] == [info["footprint"], [[5.0, 6.0], [7.0, 6.0], [7.0, 8.0]]]
    fits.setval(path, "S_REGION", extname="SCI", value="CIRCLE 1 2 3")
    assert "footprint" not in product_info(path)


def test_clear_caches_forgets_and_rebuilds(products):
    from jwstrun.validate import _asdf, _schemas, clear_caches

    before = validate_file(products["cal"]).findings
    assert _schemas._load_schema.cache_info().currsize > 0
    assert _asdf._asdf_yaml_loader.cache_info().currsize == 1
    clear_caches()
    assert _schemas._load_schema.cache_info().currsize == 0
    assert _schemas.schema_layout.cache_info().currsize == 0
    assert _asdf._asdf_yaml_loader.cache_info().currsize == 0
    assert validate_file(products["cal"]).findings == before


def test_info_pixel_and_sky_agree_with_the_fits_wcs_of_a_real_file():
    from astropy.wcs import WCS

    path = REAL_I2D[0]
    info = product_info(path, pixel=(68.0, 64.0), sky=(83.8314, -5.4138))
    fits_wcs = WCS(fits.getheader(path, "SCI"))
    ra, dec = fits_wcs.pixel_to_world_values(68.0, 64.0)
    got_ra, got_dec = info["pixel_to_sky"]["sky"]
    assert abs(got_ra - ra) * 3600 < 0.01 and abs(got_dec - dec) * 3600 < 0.01
    x, y = fits_wcs.world_to_pixel_values(83.8314, -5.4138)
    gx, gy = info["sky_to_pixel"]["pixel"]
    assert abs(gx - x) < 0.01 and abs(gy - y) < 0.01
    assert len(info["footprint"]) == 4
    assert info["crds_context"] == "jwst_1039.pmap"


def test_cli_info_json_and_errors(products, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["info", str(products["i2d"]), "--json", "--pixel", "23.5", "19.5"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert list(payload) == ["files", "errors"] and payload["errors"] == []
    (info,) = payload["files"]
    ra, dec = info["pixel_to_sky"]["sky"]
    assert abs(ra - 53.16) < 1e-6 and abs(dec + 27.78) < 1e-6  # the fixture WCS centre
    result = runner.invoke(cli, ["info", str(products["rate"]), "--pixel", "1", "2"])
    assert result.exit_code == 1
    assert "has no WCS (meta.wcs) in its ASDF extension" in result.output
    (tmp_path / "junk_cal.fits").write_text("not fits")
    result = runner.invoke(cli, ["info", str(tmp_path / "junk_cal.fits")])
    assert result.exit_code == 1
    assert f"Error: {tmp_path / 'junk_cal.fits'}: is not a FITS file" in result.output
    result = runner.invoke(cli, ["info", str(products["cat"])], catch_exceptions=False)
    assert result.exit_code == 0 and "sources" in result.output


def test_cli_info_json_has_one_shape_for_any_number_of_files(products, tmp_path):
    junk = tmp_path / "junk_cal.fits"
    junk.write_text("not fits")
    runner = CliRunner()
    shapes = {}
    for args in ([products["cal"]], [products["cal"], products["i2d"]], [products["cal"], junk]):
        result = runner.invoke(cli, ["info", *map(str, args), "--json"])
        payload = json.loads(result.stdout)
        assert list(payload) == ["files", "errors"], payload
        shapes[len(args), result.exit_code] = (
            [f["path"] for f in payload["files"]], [e["path"] for e in payload["errors"]])
    assert shapes == {
        (1, 0): ([str(products["cal"])], []),
        (2, 0): ([str(products["cal"]), str(products["i2d"])], []),
        (2, 1): ([str(products["cal"])], [str(junk)]),
    }


def _deep_dir(tmp_path: Path) -> Path:
    """A directory with a path of over 150 characters (rich used to wrap at 80 columns)."""
    deep = tmp_path / ("d" * 60) / ("e" * 60) / ("f" * 40)
    deep.mkdir(parents=True)
    return deep


def test_cli_validate_and_info_off_a_terminal_one_line_per_row(products, cal, tmp_path):
    """Click's runner, like a pipe or a batch log, is not a terminal: plain lines, every
    file name whole on its line, each finding and each info field on a line of its own."""
    deep = _deep_dir(tmp_path)
    good = Path(shutil.copy(products["cal"], deep / products["cal"].name))
    skipped = _set_status(cal, deep / "jw01234001001_02101_00002_nrcb1_cal.fits",
                          S_PHOTOM="SKIPPED")
    empty = deep / "jw01234001001_02101_00003_nrcb1_cal.fits"
    empty.write_bytes(b"")
    result = CliRunner().invoke(cli, ["validate", str(good), str(skipped), str(empty)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert "\x1b[" not in result.output and "\u2500" not in result.output
    assert f"{good}  cal  valid" in lines
    assert f"{skipped}  cal  INVALID (1 error)" in lines
    assert f"{empty}  cal  INVALID (1 error)" in lines
    for path in (skipped, empty):
        (finding,) = validate_file(path).findings
        assert ["error", finding.check, finding.message] in [
            line.split(None, 2) for line in lines], result.output
    assert f"{empty}: file is empty (0 bytes). Re-download or re-create it." in result.output
    assert lines[-1] == "3 files: 1 valid, 2 invalid, 0 warnings."

    result = CliRunner().invoke(cli, ["info", str(good)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    info = product_info(good)
    assert lines[0] == str(good)
    rows = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in lines[1:] if line}
    assert rows["datamodel"] == info["datamodl"] and rows["filter"] == "F200W"
    assert rows["references"] == ", ".join(f"{k} {v}" for k, v in info["references"].items())
    assert rows["steps"] == " ".join(f"{k}={v}" for k, v in info["step_status"].items())


# ------------------------------------------------------------------ products written by jwst

STRUN = str(Path(__import__("sys").executable).with_name("strun"))
ASN_FROM_LIST = str(Path(__import__("sys").executable).with_name("asn_from_list"))


@pytest.fixture(scope="module")
def pipeline_products(tmp_path_factory, shared_simulation):
    """calwebb_image2 + calwebb_image3 (official strun, offline CRDS) on a simulated program."""
    import os
    import subprocess

    from conftest import SUB640_TWO

    root = tmp_path_factory.mktemp("pipeline")
    sim = shared_simulation(**SUB640_TWO)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env.update(sim.env)
    work = root / "work"
    work.mkdir()

    def run(*cmd):
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]

    rates = [str(p.resolve()) for p in sim.rate_files]
    run(ASN_FROM_LIST, "-o", "l2_asn.json", "-r", "DMSLevel2bBase", *rates)
    run(STRUN, "calwebb_image2", "l2_asn.json", "--output_dir", ".")
    cals = sorted(p.name for p in work.glob("*_cal.fits"))
    run(ASN_FROM_LIST, "-o", "l3_asn.json", "--product-name", "l3_results", *cals)
    run(STRUN, "calwebb_image3", "l3_asn.json", "--output_dir", ".")
    return sim, work


def _opened_with_datamodels(path) -> float:
    """Seconds to open ``path`` as the pipeline does (stdatamodels) and sum its SCI."""
    import time

    from stdatamodels.jwst import datamodels

    start = time.perf_counter()
    with datamodels.open(path) as model:
        float(np.nansum(model.data))
    return time.perf_counter() - start


def test_every_product_jwst_wrote_is_valid(pipeline_products):
    """Valid, and validated in less time than stdatamodels takes to open the same file
    (what any reader of the product pays): measured side by side, so a loaded machine
    slows both, and again when a load spike hit one (measured: 0.2-0.4 of it)."""
    sim, work = pipeline_products
    written = sorted(work.glob("*.fits")) + sorted(work.glob("*_cat.ecsv"))
    kinds = {validate_file(p).product_type for p in written}
    assert {"cal", "crf", "i2d"} <= kinds
    _opened_with_datamodels(sim.rate_files[0])  # the schemas and asdf, imported once
    for path in [*sim.rate_files, *written]:
        report = validate_file(path)
        assert report.findings == [], (path.name, [f.message for f in report.findings])
        if path.suffix != ".fits":
            continue
        validating, opening = report.seconds, _opened_with_datamodels(path)
        if validating >= opening:  # a load spike in either: the least of a second try each
            validating = min(validating, validate_file(path).seconds)
            opening = min(opening, _opened_with_datamodels(path))
        assert validating < opening, (path.name, validating, opening)


def test_pipeline_products_broken_the_way_pipelines_break(pipeline_products, tmp_path):
    _, work = pipeline_products
    cal = sorted(work.glob("*_cal.fits"))[0]
    raw = cal.read_bytes()
    # killed while writing: everything after the SCI data is gone
    with fits.open(cal) as hdul:
        cut = hdul["ERR"].fileinfo()["hdrLoc"]
    (tmp_path / "killed_cal.fits").write_bytes(raw[:cut])
    report = validate_file(tmp_path / "killed_cal.fits")
    assert {"missing-extension", "asdf"} <= set(checks(report))
    # flat reference missing from CRDS: the step skips itself
    report = validate_file(_set_status(cal, tmp_path / "noflat_cal.fits", S_FLAT="SKIPPED"))
    assert [m for m in messages(report) if m.startswith("S_FLAT is SKIPPED")]
    mosaic = work / "l3_results_i2d.fits"
    report = validate_file(_set_status(mosaic, tmp_path / "l3_i2d.fits", S_SKYMAT="SKIPPED"))
    assert [m for m in messages(report) if m.startswith("S_SKYMAT is SKIPPED")]
    assert validate_file(tmp_path / "l3_i2d.fits", expected_skips={"skymatch"}).ok


def test_info_on_a_jwst_cal(pipeline_products):
    sim, work = pipeline_products
    cal = sorted(work.glob("*_cal.fits"))[0]
    info = product_info(cal, pixel=(320.0, 320.0))
    assert info["crds_context"] == sim.crds_context
    assert info["references"]["R_FLAT"].startswith("crds://")
    assert info["step_status"]["S_PHOTOM"] == "COMPLETE"
    assert len(info["footprint"]) == 4
    ra, dec = info["pixel_to_sky"]["sky"]
    ras = [p[0] for p in info["footprint"]]
    decs = [p[1] for p in info["footprint"]]
    assert min(ras) < ra < max(ras) and min(decs) < dec < max(decs)


def test_cli_info_several_files_json(products):
    result = CliRunner().invoke(cli, ["info", str(products["cal"]), str(products["calints"]),
                                      "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [f["product_type"] for f in payload["files"]] == ["cal", "calints"]
    extensions = {name: shape for name, shape, _ in payload["files"][1]["extensions"]}
    assert extensions["SCI"] == [NINTS, *SHAPE] and extensions["INT_TIMES"] == [NINTS]


def test_a_step_the_inputs_skipped_is_not_demanded_of_the_stage_products(tmp_path):
    """image2 run with steps.flat_field.skip=true: the image3 mosaic carries S_FLAT =
    SKIPPED from its members, and the task's validation takes the members' own record;
    without such a member the same mosaic fails, naming S_FLAT."""
    from jwstrun.runner.task import Task, _validate_products

    mosaic = tmp_path / REAL_I2D[0].name
    shutil.copy(REAL_I2D[0], mosaic)
    mosaic.chmod(0o644)
    fits.setval(mosaic, "S_FLAT", value="SKIPPED")
    member = tmp_path / "member_cal.fits"
    fits.PrimaryHDU(header=fits.Header([("S_FLAT", "SKIPPED"), ("S_SNOWBL", "SKIPPED")])
                    ).writeto(member)

    def task(inputs):
        return Task(task_id="image3-x", pipeline="image3", input=str(mosaic), product="x",
                    inputs=[{"path": str(p), "role": "science"} for p in inputs],
                    outdir=str(tmp_path), workdir=str(tmp_path), log_file="", parameters={},
                    fingerprint="")

    assert _validate_products([mosaic], task([member]))["errors"] == []
    errors = _validate_products([mosaic], task([]))["errors"]
    assert errors == [f"{mosaic.name}: S_FLAT is SKIPPED: flat_field did not run although the "
                      "profile did not ask to skip it (a missing reference file, or the step "
                      "gave up). See the step log."]
