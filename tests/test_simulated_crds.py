"""The simulated reference files and the local CRDS cache, proven with the stock crds client.

Pipelines and crds run in subprocesses whose environment holds only the CRDS
variables of the cache (no CRDS_IGNORE_MAPPING_CHECKSUM, no monkeypatching), as
a user would run them after ``source crds.env``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from jwstrun.errors import ConfigError
from jwstrun.refs import SERVERLESS_URL
from jwstrun.simulate.crds_cache import (
    PARS_REFTYPES,
    PIPELINE_REFTYPES,
    RefEntry,
    add_context,
    crds_env,
    operational_context,
    write_crds_cache,
    write_env_file,
)
from jwstrun.simulate.instruments import get_detector, get_filter, siaf_aperture, subarray_geometry
from jwstrun.simulate.references import (
    distortion_reference_path,
    filter_offsets,
    filteroffset_reference_path,
    flat_dq_array,
    flat_field_array,
    pixel_area_sr,
    write_references,
)

PYTHON = sys.executable
STRUN = str(Path(sys.executable).with_name("strun"))

# (detector, filter, subarray) proven end to end
CASES = [("NRCB1", "F200W", "SUB640"), ("NRCBLONG", "F444W", "SUB640"), ("MIRIMAGE", "F770W", "SUB256")]


def _env(cache: Path, context: str | None = None) -> dict[str, str]:
    """os.environ without any CRDS_* variable, plus the cache's CRDS environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env.update(crds_env(cache, context))
    return env


def _make_rate(path: Path, detector_name: str, filter_name: str, subarray: str) -> Path:
    """A minimal rate file with the metadata the image2 steps need (flat sky + noise)."""
    from stdatamodels.jwst.datamodels import ImageModel

    det = get_detector(detector_name)
    filt = get_filter(det, filter_name)
    xstart, ystart, xsize, ysize = subarray_geometry(det, subarray)
    ap = siaf_aperture(det, subarray)
    rng = np.random.default_rng(1)
    data = 1.0 + 0.01 * rng.standard_normal((ysize, xsize))
    # a few isolated stars for source_catalog (Gaussian PSF of the filter's FWHM)
    sigma = filt.fwhm_arcsec / det.pixel_scale / 2.3548
    yy, xx = np.mgrid[0:ysize, 0:xsize]
    for fx in (0.25, 0.5, 0.75):
        for fy in (0.3, 0.7):
            x0, y0 = fx * xsize + 0.3, fy * ysize - 0.2
            data += 20.0 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))
    data = data.astype(np.float32)
    model = ImageModel(data=data)
    model.dq = np.zeros(data.shape, np.uint32)
    model.err = np.full(data.shape, 0.01, np.float32)
    model.var_poisson = np.full(data.shape, 5e-5, np.float32)
    model.var_rnoise = np.full(data.shape, 5e-5, np.float32)
    m = model.meta
    m.filename = path.name
    m.telescope = "JWST"
    m.instrument.name = det.instrument
    m.instrument.detector = det.name
    m.instrument.filter = filt.name
    if filt.pupil:
        m.instrument.pupil = filt.pupil
    if det.module:
        m.instrument.module = det.module
        m.instrument.channel = det.channel
    m.exposure.type = det.exp_type
    m.exposure.start_time = 60000.0
    m.exposure.mid_time = 60000.002
    m.exposure.end_time = 60000.004
    m.exposure.exposure_time = m.exposure.effective_exposure_time = 300.0
    m.exposure.measurement_time = 300.0
    m.exposure.nints = 1
    m.exposure.ngroups = 5
    m.exposure.readpatt = "FAST" if det.instrument == "MIRI" else "MEDIUM8"
    m.observation.date = "2023-01-01"
    m.observation.time = "00:00:00.000"
    m.observation.program_number = "01234"
    m.observation.observation_number = "001"
    m.observation.visit_number = "001"
    m.observation.visit_group = "02"
    m.observation.sequence_id = "1"
    m.observation.activity_id = "01"
    m.observation.exposure_number = "00001"
    m.subarray.name = subarray
    m.subarray.xstart, m.subarray.ystart = xstart, ystart
    m.subarray.xsize, m.subarray.ysize = xsize, ysize
    m.wcsinfo.v2_ref = ap.V2Ref
    m.wcsinfo.v3_ref = ap.V3Ref
    m.wcsinfo.vparity = int(ap.VIdlParity)
    m.wcsinfo.v3yangle = ap.V3IdlYAngle
    m.wcsinfo.ra_ref = 53.16
    m.wcsinfo.dec_ref = -27.78
    m.wcsinfo.roll_ref = 10.0
    m.velocity_aberration.scale_factor = 1.0
    m.photometry.conversion_megajanskys = None
    model.save(path)
    return path


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    """One cache holding NIRCam SW, NIRCam LW and MIRI (written in three merges)."""
    root = tmp_path_factory.mktemp("simcrds")
    cache = root / "crds_cache"
    entries = {}
    for det_name, filt_name, _ in CASES:
        det = get_detector(det_name)
        entries[det_name] = write_references(cache, det, [get_filter(det, filt_name)])
        write_crds_cache(cache, entries[det_name])
    rates = {}
    for det_name, filt_name, sub in CASES:
        name = f"jw01234001001_02101_00001_{det_name.lower()}_rate.fits"
        rates[det_name] = _make_rate(root / name, det_name, filt_name, sub)
    return {"root": root, "cache": cache, "entries": entries, "rates": rates}


# ----------------------------------------------------------------- distortion vs pysiaf


@pytest.mark.parametrize("det_name", ["NRCB1", "NRCBLONG", "MIRIMAGE"])
def test_distortion_file_reproduces_pysiaf(program, det_name):
    from stdatamodels.jwst.datamodels import DistortionModel

    det = get_detector(det_name)
    ap = siaf_aperture(det, "FULL")
    path = distortion_reference_path(program["cache"], det)
    with DistortionModel(str(path)) as ref:
        transform = ref.model
        assert ref.meta.reftype.lower() == "distortion"
        assert ref.meta.instrument.detector == det_name
    # 0-based detector pixels over the whole detector, edges included
    xs = np.linspace(0, ap.XSciSize - 1, 23)
    ys = np.linspace(0, ap.YSciSize - 1, 19)
    x, y = (a.ravel() for a in np.meshgrid(xs, ys))
    v2, v3 = transform(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v2_siaf, v3_siaf = ap.sci_to_tel(x + 1, y + 1)  # SIAF science frame is 1-based
    assert np.max(np.hypot(v2 - v2_siaf, v3 - v3_siaf)) < 1e-6
    # the inverse round-trips to 1e-3 pixel over the whole detector (SIAF's own
    # Idl2Sci, compared here, is only good to 0.006 px on NIRCam, 0.11 px on MIRI)
    xb, yb = transform.inverse(v2_siaf, v3_siaf)
    assert np.max(np.hypot(xb - x, yb - y)) < 1e-3
    x_siaf, y_siaf = ap.tel_to_sci(v2_siaf, v3_siaf)
    assert np.max(np.hypot(xb - (x_siaf - 1), yb - (y_siaf - 1))) < 0.12
    # the reference pixel lands on V2Ref, V3Ref
    v2r, v3r = transform(ap.XSciRef - 1, ap.YSciRef - 1)
    assert abs(v2r - ap.V2Ref) < 1e-9 and abs(v3r - ap.V3Ref) < 1e-9


def test_flat_arrays_are_deterministic_and_flag_bad_pixels():
    det = get_detector("NRCB1")
    filt = get_filter(det, "F200W")
    flat = flat_field_array(det, filt)
    dq = flat_dq_array(det, filt)
    assert flat.shape == dq.shape == (2048, 2048) and flat.dtype == np.float32
    assert np.array_equal(flat, flat_field_array(det, filt), equal_nan=True)
    bad = np.isnan(flat)
    assert 4 <= bad.sum() < 1000
    assert np.array_equal(bad, dq != 0)
    from stdatamodels.jwst.datamodels import dqflags

    expected_flag = dqflags.pixel["DO_NOT_USE"] | dqflags.pixel["NO_FLAT_FIELD"]
    assert set(np.unique(dq[bad])) == {expected_flag}
    good = flat[~bad]
    assert 0.96 < good.min() and good.max() < 1.04  # 2 % smooth + 3 x 0.5 % pixel-to-pixel
    assert abs(np.median(good) - 1.0) < 0.01
    other = flat_field_array(det, get_filter(det, "F150W"))
    assert not np.allclose(np.nan_to_num(other), np.nan_to_num(flat))
    flat[0, 0] = 5.0  # callers get a copy: the cached array is untouched
    assert flat_field_array(det, filt)[0, 0] != 5.0


def test_reference_files_load_and_carry_the_simulation_values(program):
    from stdatamodels.jwst import datamodels as dm

    cache = program["cache"]
    det = get_detector("NRCB1")
    refdir = cache / "references" / "jwst" / "nircam"
    with dm.NrcImgPhotomModel(str(refdir / "jwst_nircam_photom_sim-nrcb1.fits")) as ph:
        rows = {r["filter"]: r for r in ph.phot_table}
        assert set(rows) == set(det.filter_names)
        assert rows["F200W"]["photmjsr"] == pytest.approx(get_filter(det, "F200W").photmjsr)
        assert ph.meta.photometry.pixelarea_steradians == pytest.approx(pixel_area_sr(det))
    with dm.FlatModel(str(refdir / "jwst_nircam_flat_sim-nrcb1-f200w-clear.fits")) as flat:
        assert flat.meta.subarray.name == "FULL" and flat.data.shape == (2048, 2048)
        np.testing.assert_array_equal(flat.data, flat_field_array(det, get_filter(det, "F200W")))
    with dm.PixelAreaModel(str(refdir / "jwst_nircam_area_sim-nrcb1.fits")) as area:
        # distortion makes pixel areas differ by a few percent across the detector
        assert 0.9 < np.nanmin(area.data) < 1.0 < np.nanmax(area.data) < 1.1
    with dm.FilteroffsetModel(str(filteroffset_reference_path(cache, det))) as fo:
        offsets = {f.filter: (f.column_offset, f.row_offset) for f in fo.filters}
        assert offsets == filter_offsets(det)
    with dm.ABVegaOffsetModel(str(refdir / "jwst_nircam_abvegaoffset_real.asdf")) as ab:
        table = ab.abvega_offset
        for filt in det.filters + get_detector("NRCBLONG").filters:
            assert ((table["filter"] == filt.name) & (table["pupil"] == "CLEAR")).sum() == 1
    mirdir = cache / "references" / "jwst" / "miri"
    with dm.ABVegaOffsetModel(str(mirdir / "jwst_miri_abvegaoffset_sim.asdf")) as ab:
        assert set(ab.abvega_offset["filter"]) == set(get_detector("MIRIMAGE").filter_names)


# ------------------------------------------------------------------ the mappings


def test_cache_layout_and_merge_keeps_every_detector(program):
    cache = program["cache"]
    assert (cache / "config/jwst/ref_cache_subdir_mode").read_text().strip() == "instrument"
    assert operational_context(cache) == "jwst_0001.pmap"
    pmap = (cache / "mappings/jwst/jwst_0001.pmap").read_text()
    assert "'MIRI'" in pmap and "'NIRCAM'" in pmap
    imaps = sorted((cache / "mappings/jwst").glob("jwst_nircam_*.imap"))
    imap = imaps[-1].read_text()
    for reftype in PIPELINE_REFTYPES + PARS_REFTYPES:
        assert f"'{reftype}' :" in imap, reftype
    flat_rmaps = sorted((cache / "mappings/jwst").glob("jwst_nircam_flat_*.rmap"))
    text = flat_rmaps[-1].read_text()
    assert "jwst_nircam_flat_sim-nrcb1-f200w-clear.fits" in text
    assert "jwst_nircam_flat_sim-nrcblong-f444w-clear.fits" in text


def test_write_crds_cache_is_idempotent(program):
    cache = program["cache"]
    before = {p.name: p.read_text() for p in (cache / "mappings/jwst").iterdir()}
    entries = program["entries"]["NRCB1"]
    assert write_crds_cache(cache, entries) == "jwst_0001.pmap"
    again = write_references(cache, get_detector("NRCB1"), [get_filter(get_detector("NRCB1"), "F200W")])
    assert again == entries
    write_crds_cache(cache, again)
    after = {p.name: p.read_text() for p in (cache / "mappings/jwst").iterdir()}
    assert after == before


def test_entries_must_name_existing_files_and_consistent_keys(tmp_path):
    entry = RefEntry("nircam", "flat", "missing.fits", (("META.INSTRUMENT.DETECTOR", "NRCB1"),))
    with pytest.raises(ConfigError, match=r"missing\.fits does not exist"):
        write_crds_cache(tmp_path, [entry])
    refdir = tmp_path / "references/jwst/nircam"
    refdir.mkdir(parents=True)
    (refdir / "a.fits").write_bytes(b"")
    (refdir / "b.fits").write_bytes(b"")
    a = RefEntry("nircam", "flat", "a.fits", (("META.INSTRUMENT.DETECTOR", "NRCB1"),))
    b = RefEntry("nircam", "flat", "b.fits", (("META.INSTRUMENT.FILTER", "F200W"),))
    with pytest.raises(ConfigError, match="different match keys"):
        write_crds_cache(tmp_path, [a, b])
    with pytest.raises(ConfigError, match="invalid CRDS context name"):
        write_crds_cache(tmp_path, [a], context="mycontext")
    assert not (tmp_path / "mappings").exists()


def test_env_file_round_trips_through_the_shell(program, tmp_path):
    env = crds_env(program["cache"])
    assert env["CRDS_SERVER_URL"] == SERVERLESS_URL and "serverless" in SERVERLESS_URL
    assert env["CRDS_CONTEXT"] == "jwst_0001.pmap"
    assert Path(env["CRDS_PATH"]).is_absolute()
    path = tmp_path / "dir with space" / "crds.env"
    write_env_file(path, dict(env, CRDS_PATH=env["CRDS_PATH"] + "/it's here"))
    out = subprocess.run(
        ["bash", "-c", f"source {str(path)!r} && env"], capture_output=True, text=True, check=True,
        env={"PATH": os.environ["PATH"]},
    ).stdout
    got = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("CRDS_"))
    assert got["CRDS_PATH"] == env["CRDS_PATH"] + "/it's here"
    assert got["CRDS_CONTEXT"] == "jwst_0001.pmap"


def test_crds_env_without_cache_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="run `jwstrun simulate OUTDIR`"):
        crds_env(tmp_path)


def test_crds_env_refuses_a_context_the_cache_does_not_hold(program):
    with pytest.raises(ConfigError, match=r"jwst_0099\.pmap is not in .*use one of: jwst_0001\.pmap"):
        crds_env(program["cache"], "jwst_0099.pmap")


# ------------------------------------------------------- the stock crds client, offline

_BESTREFS = r"""
import json, sys
import crds
from stdatamodels.jwst import datamodels
from jwst.pipeline import Image2Pipeline, Image3Pipeline
types, pars = set(), set()
for pipe in (Image2Pipeline, Image3Pipeline):
    pars.add("pars-" + pipe.__name__.lower())
    for step in pipe.step_defs.values():
        types |= set(step.reference_file_types)
        pars.add("pars-" + step.__name__.lower())
result = {"pipeline_types": sorted(types), "pars_types": sorted(pars), "refs": {}}
for path in sys.argv[1:]:
    with datamodels.open(path) as model:
        params = model.get_crds_parameters()
    refs = crds.getreferences(params, reftypes=sorted(types), observatory="jwst")
    result["refs"][path] = refs
result["context"] = crds.get_context_name("jwst")
print("RESULT" + json.dumps(result))
"""


def _run(args, env, cwd, timeout=300):
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def _result(proc):
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


@pytest.fixture(scope="module")
def bestrefs(program):
    paths = [str(p) for p in program["rates"].values()]
    proc = _run([PYTHON, "-c", _BESTREFS, *paths], _env(program["cache"]), program["root"])
    return _result(proc)


def test_imap_lists_every_reftype_the_installed_pipelines_prefetch(bestrefs):
    assert set(bestrefs["pipeline_types"]) <= set(PIPELINE_REFTYPES)
    assert set(bestrefs["pars_types"]) <= set(PARS_REFTYPES)


@pytest.mark.parametrize("det_name,filt_name,sub", CASES)
def test_stock_crds_client_selects_the_simulated_references(program, bestrefs, det_name, filt_name, sub):
    assert bestrefs["context"] == "jwst_0001.pmap"
    refs = bestrefs["refs"][str(program["rates"][det_name])]
    inst = get_detector(det_name).instrument.lower()
    expected = {e.reftype: e.filename for e in program["entries"][det_name]}
    refdir = program["cache"].resolve() / "references" / "jwst" / inst
    for reftype, filename in expected.items():
        assert refs[reftype] == str(refdir / filename), reftype
    for reftype in set(PIPELINE_REFTYPES) - set(expected):
        # crds.getreferences reports an imap 'N/A' as "NOT FOUND n/a"; stpipe skips it
        assert refs[reftype].upper() in ("N/A", "NOT FOUND N/A"), reftype


_IMAGE2 = r"""
import glob, sys
from jwst.pipeline import Image2Pipeline
from jwst.source_catalog import SourceCatalogStep
for path in sys.argv[2:]:
    Image2Pipeline.call(path, output_dir=sys.argv[1], save_results=True)
# source_catalog (calwebb_image3's last step) needs the apcorr and abvegaoffset refs
for i2d in sorted(glob.glob(sys.argv[1] + "/*_i2d.fits")):
    SourceCatalogStep.call(i2d, output_dir=sys.argv[1], save_results=True)
"""


@pytest.fixture(scope="module")
def image2(program):
    """calwebb_image2 offline: strun (the official CLI) on NIRCam SW, Python API on the others."""
    root, cache = program["root"], program["cache"]
    out = root / "image2"
    out.mkdir()
    env = _env(cache)
    _run([STRUN, "calwebb_image2", str(program["rates"]["NRCB1"]), "--output_dir", str(out)],
         env, root)  # fmt: skip
    others = [str(program["rates"][d]) for d in ("NRCBLONG", "MIRIMAGE")]  # then catalogs of all 3
    _run([PYTHON, "-c", _IMAGE2, str(out), *others], env, root)
    return out


@pytest.mark.parametrize("det_name,filt_name,sub", CASES)
def test_image2_runs_offline_with_every_step_complete(program, image2, det_name, filt_name, sub):
    from astropy.io import fits

    rate = program["rates"][det_name]
    cal = image2 / rate.name.replace("_rate", "_cal")
    det = get_detector(det_name)
    filt = get_filter(det, filt_name)
    expected = {e.reftype: e.filename for e in program["entries"][det_name]}
    with fits.open(cal) as hdul:
        hdr = hdul[0].header
        for key in ("S_WCS", "S_FLAT", "S_PHOTOM"):
            assert hdr[key] == "COMPLETE", key
        assert hdr["CRDS_CTX"] == "jwst_0001.pmap"
        assert hdr["R_DISTOR"] == "crds://" + expected["distortion"]
        assert hdr["R_FILOFF"] == "crds://" + expected["filteroffset"]
        assert hdr["R_FLAT"] == "crds://" + expected["flat"]
        assert hdr["R_PHOTOM"] == "crds://" + expected["photom"]
        assert hdr["R_AREA"] == "crds://" + expected["area"]
        sci_hdr = hdul["SCI"].header
        assert sci_hdr["BUNIT"] == "MJy/sr"
        assert sci_hdr["PHOTMJSR"] == pytest.approx(filt.photmjsr, rel=1e-6)
        assert sci_hdr["PIXAR_SR"] == pytest.approx(pixel_area_sr(det), rel=1e-9)
        cal_data = hdul["SCI"].data
        assert "AREA" in hdul
    # cal = rate / flat(subarray) * PHOTMJSR where the flat is good
    with fits.open(rate) as hdul:
        rate_data = hdul["SCI"].data
    xstart, ystart, xsize, ysize = subarray_geometry(det, sub)
    flat = flat_field_array(det, filt)[ystart - 1 : ystart - 1 + ysize, xstart - 1 : xstart - 1 + xsize]
    good = np.isfinite(flat) & np.isfinite(cal_data)
    assert good.mean() > 0.99
    np.testing.assert_allclose(cal_data[good], rate_data[good] / flat[good] * filt.photmjsr, rtol=1e-5)
    with fits.open(image2 / rate.name.replace("_rate", "_i2d")) as hdul:
        assert hdul[0].header["S_RESAMP"] == "COMPLETE"


@pytest.mark.parametrize("det_name,filt_name,sub", CASES)
def test_source_catalog_uses_apcorr_and_abvegaoffset(program, image2, det_name, filt_name, sub):
    from astropy import units as u
    from astropy.table import Table
    from stdatamodels.jwst import datamodels
    from stdatamodels.jwst.datamodels import ABVegaOffsetModel

    rate = program["rates"][det_name]
    cat = Table.read(image2 / rate.name.replace("_rate.fits", "_cat.ecsv"))
    assert len(cat) >= 6  # the six stars (edge noise may add a few)
    det = get_detector(det_name)
    refdir = program["cache"] / "references" / "jwst" / det.instrument.lower()
    abv_file = next(e.filename for e in program["entries"][det_name] if e.reftype == "abvegaoffset")
    with ABVegaOffsetModel(str(refdir / abv_file)) as ab:
        table = ab.abvega_offset
        offset = float(table["abvega_offset"][table["filter"] == filt_name][0])
    good = np.isfinite(cat["aper_total_abmag"])
    assert good.sum() >= 6
    diff = cat["aper_total_abmag"][good] - cat["aper_total_vegamag"][good]
    np.testing.assert_allclose(diff, offset, atol=1e-4)
    # apcorr: the 70 % aperture's radius and correction come from the apcorr reference
    apcorr_file = next(e.filename for e in program["entries"][det_name] if e.reftype == "apcorr")
    with datamodels.open(str(refdir / apcorr_file)) as ap:
        rows = ap.apcorr_table
        second = "pupil" if det.instrument == "NIRCAM" else "subarray"
        value = get_filter(det, filt_name).pupil if second == "pupil" else sub
        row = rows[(rows["filter"] == filt_name) & (rows[second] == value)
                   & (np.round(rows["eefraction"] * 100) == 70)][0]  # fmt: skip
    params = cat.meta["aperture_params"]
    ratio = params["aperture_radii"][2] / row["radius"]  # 1 / pixel_scale_ratio of the i2d
    assert 0.5 < ratio < 2.0
    assert params["aperture_corrections"][2] == pytest.approx(row["apcorr"])
    total = u.Quantity(cat["aper_total_flux"][good]).to_value(u.Jy)
    aper70 = u.Quantity(cat["aper70_flux"][good]).to_value(u.Jy)
    np.testing.assert_allclose(total, aper70 * row["apcorr"], rtol=1e-5)


# --------------------------------------------------------------- a second context


_PHOTOM_ONLY = r"""
import json, sys
import crds
from stdatamodels.jwst import datamodels
out = {}
with datamodels.open(sys.argv[1]) as model:
    params = model.get_crds_parameters()
for ctx in sys.argv[2:]:
    refs = crds.getreferences(params, reftypes=["photom", "distortion", "flat"], context=ctx,
                              observatory="jwst")
    out[ctx] = {k: v.rsplit("/", 1)[-1] for k, v in refs.items()}
out["default"] = crds.get_context_name("jwst")
print("RESULT" + json.dumps(out))
"""


def test_add_context_selects_a_different_photom_file(program, tmp_path):
    from stdatamodels.jwst.datamodels import NrcImgPhotomModel

    cache = tmp_path / "crds"
    det = get_detector("NRCB1")
    entries = write_references(cache, det, [])  # no flats: quick
    write_crds_cache(cache, entries)
    # a second detector merged into the same context keeps the first
    write_crds_cache(cache, write_references(cache, get_detector("NRCB2"), []))
    refdir = cache / "references/jwst/nircam"
    photom = next(e for e in entries if e.reftype == "photom")
    alt_name = "jwst_nircam_photom_sim-nrcb1-alt.fits"
    with NrcImgPhotomModel(str(refdir / photom.filename)) as model:
        model.phot_table["photmjsr"] *= 1.1
        model.save(refdir / alt_name)
    alt = RefEntry("nircam", "photom", alt_name, photom.match, photom.useafter)
    assert add_context(cache, [alt], "jwst_0002.pmap") == "jwst_0002.pmap"
    assert operational_context(cache) == "jwst_0002.pmap"
    # jwst_0001 is untouched: its mappings are not rewritten
    ctx1 = (cache / "mappings/jwst/jwst_0001.pmap").read_text()
    ctx2 = (cache / "mappings/jwst/jwst_0002.pmap").read_text()
    assert ctx1 != ctx2

    rate = _make_rate(tmp_path / "jw01234001001_02101_00001_nrcb1_rate.fits", "NRCB1", "F200W", "SUB640")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env.update(crds_env(cache))
    del env["CRDS_CONTEXT"]  # the operational context of server_config applies
    proc = _run([PYTHON, "-c", _PHOTOM_ONLY, str(rate), "jwst_0001.pmap", "jwst_0002.pmap"], env, tmp_path)
    got = _result(proc)
    assert got["jwst_0001.pmap"]["photom"] == photom.filename
    assert got["jwst_0002.pmap"]["photom"] == alt_name
    assert got["jwst_0001.pmap"]["distortion"] == got["jwst_0002.pmap"]["distortion"]
    assert got["default"] == "jwst_0002.pmap"

    # make_operational=False leaves server_config alone
    add_context(cache, [photom], "jwst_0003.pmap", make_operational=False)
    assert operational_context(cache) == "jwst_0002.pmap"
    shutil.rmtree(cache)
