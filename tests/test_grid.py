"""One grid for many mosaics (issue 22, grids): ``jwstrun grid`` and ``image3 --grid``.

One simulated NIRCam program, NRCB1 and NRCBLONG read out together in F200W and
F444W (SUB320, two dithers, no pointing errors so that tweakreg has nothing to
correct and is skipped), reduced once by ``jwstrun image2``.  On it:

- the grid API: the default grid of one association is the one resample builds
  (same gwcs parameters), ``sub_grid`` keeps the sky positions, the ASDF file is
  read by resample's own ``load_custom_wcs`` and the FITS-WCS header gives the same
  sky positions, ``--extend`` keeps the old pixels' sky positions;
- ``jwstrun image3 --grid``: the F200W and F444W mosaics have identical WCS and
  shape and the stars sit on the same pixels in both (their mean offsets from the
  truth projected through the grid agree to 0.02 pixel; to 0.01 pixel on SUB640 in
  a slow test); the F200W products
  equal ``strun calwebb_image3 --steps.resample.output_wcs=grid.asdf`` (run at the
  same time); the manifest records the grid as an input with its checksum;
- the errors: a grid that does not cover an association, a file that is not a
  gwcs grid, a grid together with resample grid parameters.
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
SKIP_TWEAKREG = {"steps.tweakreg.skip": "true"}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from jwstrun.simulate import simulate_program

    return simulate_program(tmp_path_factory.mktemp("grid") / "sim", detectors=["NRCB1", "NRCBLONG"],
                            filters=["F200W", "F444W"], subarray="SUB320", n_dithers=2, seed=3,
                            pointing_error=0.0, source_density=4.0)


@pytest.fixture(scope="module")
def caldir(sim, tmp_path_factory):
    caldir = tmp_path_factory.mktemp("grid_cal")
    result = CliRunner().invoke(cli, [
        "image2", *map(str, sim.rate_files), "-o", str(caldir), "-j", "2",
        "--crds-env", str(sim.env_file), "--no-progress", "--set", "steps.resample.skip=true",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(list(caldir.glob("*_cal.fits"))) == 4
    return caldir


@pytest.fixture(scope="module")
def associations(caldir) -> dict[str, Path]:
    from jwstrun.asn import make_associations

    built = make_associations(sorted(caldir.glob("*_cal.fits")), caldir, level=3,
                              group_by="default")
    found = {}
    for written in built.associations:
        name = Path(written.path).name
        found["f200w" if "f200w" in name else "f444w"] = Path(written.path)
    assert sorted(found) == ["f200w", "f444w"]
    return found


@pytest.fixture(scope="module")
def grid_file(caldir, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("grid_file") / "grid.asdf"
    result = CliRunner().invoke(cli, ["grid", str(caldir), "-o", str(path), "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n_inputs"] == 4 and data["header"] == str(path.with_suffix(".hdr"))
    return path


def _env(sim) -> dict:
    from jwstrun.refs import read_env_file

    env = dict(os.environ)
    env.update(read_env_file(sim.env_file))
    return env


# --------------------------------------------------------------------------- the API
def test_default_grid_is_the_one_resample_builds(sim, caldir, monkeypatch):
    """make_grid of one association's members = resample's own default output WCS."""
    from jwst.resample import ResampleStep

    from jwstrun.mosaic import make_grid

    for key, value in _env(sim).items():
        if key.startswith("CRDS_"):
            monkeypatch.setenv(key, value)
    members = sorted(map(str, caldir.glob("*_nrcb1_cal.fits")))
    grid = make_grid(members)
    with ResampleStep.call(members) as mosaic:
        theirs = mosaic.meta.wcs
    transform = theirs.forward_transform
    assert tuple(theirs.array_shape) == grid.shape
    for name in ("crpix", "crval", "cdelt", "pc"):
        np.testing.assert_array_equal(getattr(transform, name).value,
                                      getattr(grid.transform, name).value, err_msg=name)


def test_all_filters_rotation_scale_padding(caldir):
    from astropy.coordinates import SkyCoord

    from jwstrun.mosaic import make_grid

    sw = make_grid([str(caldir / "*_nrcb1_cal.fits")])
    both = make_grid([str(caldir)])
    # the finest camera is the reference: F200W + F444W get the short-wave pixels
    assert both.pixel_scale == sw.pixel_scale and both.pc == sw.pc
    assert both.shape[0] * both.shape[1] > 2 * sw.shape[0] * sw.shape[1]  # LW covers more sky
    north = make_grid([str(caldir)], pixel_scale=0.05, rotation=0.0)
    assert north.pixel_scale == 0.05 and abs(north.rotation) < 1e-9
    cx, cy = north.crpix
    ra0, dec0 = north.pixel_to_sky(cx, cy)
    ra1, dec1 = north.pixel_to_sky(cx, cy + 100.0)  # +Y is North along the central meridian
    assert abs(ra1 - ra0) < 1e-9 and dec1 - dec0 == pytest.approx(100 * 0.05 / 3600, rel=1e-6)
    turned = make_grid([str(caldir)], rotation=30.0)
    assert turned.rotation == pytest.approx(30.0, abs=1e-9)
    cx, cy = turned.crpix  # +Y points 30 degrees East of North
    start, end = (SkyCoord(*turned.pixel_to_sky(cx, y), unit="deg") for y in (cy, cy + 100))
    assert start.position_angle(end).deg == pytest.approx(30.0, abs=1e-6)
    padded = make_grid([str(caldir)], padding=10)
    assert padded.shape == (both.shape[0] + 20, both.shape[1] + 20)
    assert padded.crpix == pytest.approx((both.crpix[0] + 10, both.crpix[1] + 10), abs=1e-9)
    arcsec = make_grid([str(caldir)], padding="1arcsec")
    pad = int(np.ceil(1.0 / both.pixel_scale))
    assert arcsec.shape == (both.shape[0] + 2 * pad, both.shape[1] + 2 * pad)


def test_sub_grid_keeps_sky_positions(grid_file):
    from jwstrun.mosaic import read_grid

    grid = read_grid(grid_file)
    ny, nx = grid.shape
    sub = grid.sub_grid(30, ny - 7, 11, 140)
    assert sub.shape == (ny - 37, 129) and sub.pixel_scale == grid.pixel_scale
    x, y = np.meshgrid(np.linspace(-0.5, 128.5, 7), np.linspace(-0.5, ny - 37.5, 5))
    ra, dec = sub.pixel_to_sky(x, y)
    ra0, dec0 = grid.pixel_to_sky(x + 11, y + 30)
    np.testing.assert_allclose(ra, ra0, rtol=0, atol=1e-10)
    np.testing.assert_allclose(dec, dec0, rtol=0, atol=1e-10)
    assert sub.sub_grid(1, 2, 3, 4).pixel_to_sky(0, 0) == pytest.approx(
        grid.pixel_to_sky(14, 31), abs=1e-10)
    for bounds in ((0, ny + 1, 0, 5), (5, 5, 0, 5), (-1, 3, 0, 5)):
        with pytest.raises(ValueError, match="is not a part of a grid of"):
            grid.sub_grid(*bounds)


def test_grid_file_is_what_resample_and_fits_readers_read(grid_file, tmp_path):
    from astropy.io import fits
    from astropy.wcs import WCS
    from jwst.resample.resample_utils import load_custom_wcs

    from jwstrun.mosaic import read_grid

    grid = read_grid(grid_file)
    loaded = load_custom_wcs(str(grid_file))
    assert tuple(loaded["wcs"].array_shape) == grid.shape
    assert loaded["pixel_scale"] == grid.pixel_scale
    header = fits.Header.fromtextfile(grid_file.with_suffix(".hdr"))
    wcs = WCS(header)
    assert wcs.pixel_shape == grid.shape[::-1]
    x, y = np.array([0.0, 17.3, grid.shape[1] - 1.0]), np.array([0.0, 40.9, grid.shape[0] - 1.0])
    ra, dec = wcs.pixel_to_world_values(x, y)
    ra0, dec0 = grid.pixel_to_sky(x, y)
    np.testing.assert_allclose(ra, ra0, rtol=0, atol=1e-10)
    np.testing.assert_allclose(dec, dec0, rtol=0, atol=1e-10)
    # written again, read again: the same grid
    again = read_grid(grid.write(tmp_path / "copy.asdf"))
    assert again.to_dict() | {"path": None} == grid.to_dict() | {"path": None}


def test_extend_keeps_the_old_pixels(caldir, tmp_path):
    from jwstrun.mosaic import make_grid, read_grid

    small = tmp_path / "sw.asdf"
    result = CliRunner().invoke(cli, ["grid", str(caldir / "*_nrcb1_cal.fits"), "-o", str(small)])
    assert result.exit_code == 0, result.output
    old = read_grid(small)
    grown = tmp_path / "grown.asdf"
    result = CliRunner().invoke(cli, ["grid", str(caldir / "*_nrcblong_cal.fits"), "--extend",
                                      str(small), "-o", str(grown), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    new = read_grid(grown)
    sy, sx = data["offset_of_old_grid"]
    assert sx > 0 and sy > 0 and data["extended_from_shape"] == list(old.shape)
    assert new.crval == old.crval and new.pc == old.pc and new.pixel_scale == old.pixel_scale
    x, y = np.array([0.0, 5.0, old.shape[1] - 1.0]), np.array([0.0, 9.0, old.shape[0] - 1.0])
    np.testing.assert_allclose(new.pixel_to_sky(x + sx, y + sy), old.pixel_to_sky(x, y),
                               rtol=0, atol=1e-10)
    # everything is now covered: extending again by any input changes nothing
    same = make_grid([str(caldir)], extend=grown)
    assert same.shape == new.shape and same.crpix == new.crpix


def test_grid_command_errors(caldir, tmp_path):
    import asdf

    text = tmp_path / "notes.asdf"
    text.write_text("not a grid\n")
    tree = tmp_path / "tree.asdf"
    asdf.AsdfFile({"wcs": "nothing", "pixel_scale": 0.03}).write_to(tree)
    cases = [
        (["-o", str(tmp_path / "grid.fits")],
         f"Error: -o {tmp_path / 'grid.fits'}: a grid file's name ends in .asdf (e.g. grid.asdf)."),
        (["-o", str(tmp_path / "g.asdf"), "--extend", str(text)],
         f"Error: {text}: not a gwcs grid (not an ASDF file); make one with 'jwstrun grid "
         "INPUTS -o grid.asdf'."),
        (["-o", str(tmp_path / "g.asdf"), "--extend", str(tree)],
         f"Error: {tree}: not a gwcs grid (its ASDF tree has no gwcs WCS under 'wcs'); make one "
         "with 'jwstrun grid INPUTS -o grid.asdf'."),
        (["-o", str(tmp_path / "g.asdf"), "--padding", "3furlongs"],
         "Error: padding '3furlongs': give pixels (10, 10px) or an angle (2arcsec, 0.1arcmin)."),
    ]
    for args, expected in cases:
        result = CliRunner().invoke(cli, ["grid", str(caldir), *args])
        assert result.exit_code == 1, result.output
        assert result.output.strip() == expected
    assert not (tmp_path / "g.asdf").exists() and not (tmp_path / "grid.fits").exists()


# --------------------------------------------------------------------------- image3 --grid
@pytest.fixture(scope="module")
def mosaics(sim, associations, grid_file, tmp_path_factory):
    """``jwstrun image3 --grid`` on both filters and ``strun calwebb_image3
    --steps.resample.output_wcs`` on F200W, at the same time."""
    ours = tmp_path_factory.mktemp("grid_jwstrun")
    theirs = tmp_path_factory.mktemp("grid_strun")
    strun = subprocess.Popen(
        [STRUN, "calwebb_image3", str(associations["f200w"]), "--output_dir", str(theirs),
         f"--steps.resample.output_wcs={grid_file}",
         *(f"--{key}={value}" for key, value in SKIP_TWEAKREG.items())],
        env=_env(sim), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    sets = [arg for key, value in SKIP_TWEAKREG.items() for arg in ("--set", f"{key}={value}")]
    try:
        result = CliRunner().invoke(cli, [
            "image3", *map(str, associations.values()), "-o", str(ours), "-j", "2",
            "--grid", str(grid_file), "--crds-env", str(sim.env_file), "--no-progress",
            "--no-report", "--json", *sets,
        ])
        strun_log, _ = strun.communicate(timeout=600)
    finally:
        if strun.poll() is None:
            strun.kill()
    assert result.exit_code == 0, result.output
    assert strun.returncode == 0, strun_log[-3000:]
    return {"ours": ours, "theirs": theirs, "summary": json.loads(result.stdout)}


def _i2d(directory: Path, band: str) -> Path:
    (path,) = directory.glob(f"*{band}*_i2d.fits")
    return path


@pytest.mark.slow  # image3 of two filters and strun (~50 s); tests/test_tiles_run.py
# runs image3 on a grid against strun in the default suite
def test_filters_share_the_grid(mosaics, grid_file):
    from astropy.io import fits

    from jwstrun.mosaic import read_grid

    grid = read_grid(grid_file)
    headers = {}
    for band in ("f200w", "f444w"):
        with fits.open(_i2d(mosaics["ours"], band)) as hdul:
            headers[band] = hdul["SCI"].header
            assert hdul["SCI"].data.shape == grid.shape
    keys = ["NAXIS1", "NAXIS2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CDELT1", "CDELT2",
            "PC1_1", "PC1_2", "PC2_1", "PC2_2", "CTYPE1", "CTYPE2"]
    assert [headers["f200w"][k] for k in keys] == [headers["f444w"][k] for k in keys]
    assert headers["f200w"]["CRPIX1"] == grid.crpix[0] + 1
    assert headers["f200w"]["CRVAL1"] == grid.crval[0]


def _star_offsets(truth_file: Path, directory: Path, grid) -> dict[str, np.ndarray]:
    """Per filter: (x, y) of each isolated truth star with S/N >= 100 in the mosaic
    (2-D Gaussian centroid) minus where the grid puts its truth position."""
    from astropy.io import fits
    from astropy.table import Table
    from photutils.centroids import centroid_2dg

    truth = Table.read(truth_file)
    x, y = grid.sky_to_pixel(np.asarray(truth["ra"]), np.asarray(truth["dec"]))
    nearest = np.array([np.sort(np.hypot(x - x[i], y - y[i]))[1] for i in range(len(x))])
    found = {}
    for band, column, half in (("f200w", "snr_nrcb1_f200w", 5), ("f444w", "snr_nrcblong_f444w", 8)):
        sci = fits.getdata(_i2d(directory, band), "SCI")
        offsets = []
        for i, row in enumerate(truth):
            ix, iy = int(round(x[i])), int(round(y[i]))
            cut = sci[max(iy - half, 0):iy + half + 1, max(ix - half, 0):ix + half + 1]
            if (row["kind"] != "point" or row[column] < 100 or nearest[i] < 3 * half
                    or cut.shape != (2 * half + 1,) * 2 or not np.isfinite(cut).all()):
                continue
            cx, cy = centroid_2dg(cut - np.median(cut))
            offsets.append((cx + ix - half - x[i], cy + iy - half - y[i]))
        found[band] = np.array(offsets)
    return found


def _assert_stars_aligned(truth_file, directory, grid_file, tolerance, min_stars):
    from jwstrun.mosaic import read_grid

    offsets = _star_offsets(truth_file, directory, read_grid(grid_file))
    assert len(offsets["f200w"]) >= min_stars and len(offsets["f444w"]) >= min_stars, \
        {band: len(o) for band, o in offsets.items()}
    for band in offsets:  # each mosaic puts its stars where the grid puts the truth
        assert np.all(np.abs(offsets[band].mean(axis=0)) < 0.03), (band, offsets[band])
    difference = offsets["f200w"].mean(axis=0) - offsets["f444w"].mean(axis=0)
    assert np.all(np.abs(difference) < tolerance), f"F200W - F444W star positions: {difference}"


@pytest.mark.slow  # image3 of two filters and strun (~50 s); tests/test_tiles_run.py
# runs image3 on a grid against strun in the default suite
def test_stars_sit_on_the_same_pixels_in_both_filters(sim, mosaics, grid_file):
    """The stars' mean position in the F200W mosaic and in the F444W one, both measured
    from the truth projected through the grid: the same to 0.02 pixel (SUB320 has few
    bright stars on the short-wave detector; the slow test below has 4x the area)."""
    _assert_stars_aligned(sim.truth_file, mosaics["ours"], grid_file, 0.02, min_stars=4)


@pytest.mark.slow
def test_stars_sit_on_the_same_pixels_to_a_hundredth(tmp_path_factory):
    """SUB640 (about 20 stars on NRCB1, 65 on NRCBLONG): the same to 0.01 pixel."""
    from jwstrun.simulate import simulate_program

    root = tmp_path_factory.mktemp("grid_sub640")
    sim = simulate_program(root / "sim", detectors=["NRCB1", "NRCBLONG"],
                           filters=["F200W", "F444W"], subarray="SUB640", n_dithers=2, seed=3,
                           pointing_error=0.0, source_density=2.0)
    base = ["--crds-env", str(sim.env_file), "--no-progress", "-j", "2"]
    for args in (["image2", *map(str, sim.rate_files), "-o", str(root / "cal"),
                  "--set", "steps.resample.skip=true"],
                 ["grid", str(root / "cal"), "-o", str(root / "grid.asdf")],
                 ["image3", str(root / "cal" / "*_cal.fits"), "-o", str(root / "out"),
                  "--grid", str(root / "grid.asdf"), "--no-report",
                  "--set", "steps.tweakreg.skip=true"]):
        result = CliRunner().invoke(cli, [*args, *(base if args[0] != "grid" else [])],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
    _assert_stars_aligned(sim.truth_file, root / "out", root / "grid.asdf", 0.01, min_stars=15)


@pytest.mark.slow  # image3 of two filters and strun (~50 s); tests/test_tiles_run.py
# runs image3 on a grid against strun in the default suite
def test_image3_grid_equals_strun_output_wcs(mosaics):
    from astropy.io import fits

    ours = {p.name: p for p in mosaics["ours"].glob("*f200w*.fits")}
    ours.update({p.name: p for p in mosaics["ours"].glob("*nrcb1*_crf.fits")})
    theirs = {p.name: p for p in mosaics["theirs"].glob("*.fits")}
    assert sorted(ours) == sorted(theirs) and len(ours) == 4  # 2 _crf, _i2d, _segm
    for name, path in sorted(ours.items()):
        with fits.open(path) as a, fits.open(theirs[name]) as b:
            names = [h.name for h in a if h.is_image and h.data is not None]
            assert names == [h.name for h in b if h.is_image and h.data is not None], name
            for ext in names:
                np.testing.assert_array_equal(a[ext].data, b[ext].data, err_msg=f"{name}[{ext}]")


@pytest.mark.slow  # image3 of two filters and strun (~50 s); tests/test_tiles_run.py
# runs image3 on a grid against strun in the default suite
def test_manifest_records_the_grid(mosaics, grid_file):
    import hashlib

    from jwstrun.manifest import read_manifest
    from jwstrun.mosaic import read_grid

    digest = hashlib.sha256(grid_file.read_bytes()).hexdigest()
    contents = read_manifest(mosaics["ours"])
    assert len(contents.tasks) == 2 and not contents.problems
    shape = list(read_grid(grid_file).shape)
    for record in contents.tasks.values():
        (entry,) = [e for e in record.inputs if e["role"] == "grid"]
        assert entry["path"] == str(grid_file) and entry["sha256"] == digest
        assert record.parameters["steps"]["resample"]["output_wcs"] == str(grid_file)
        assert list(record.memory["mosaic"]["shape"]) == shape  # the preflight used the grid


@pytest.mark.slow  # image3 of two filters and strun (~50 s); tests/test_tiles_run.py
# runs image3 on a grid against strun in the default suite
def test_rerun_with_the_same_grid_is_up_to_date(sim, associations, grid_file, mosaics):
    sets = [arg for key, value in SKIP_TWEAKREG.items() for arg in ("--set", f"{key}={value}")]
    result = CliRunner().invoke(cli, [
        "image3", *map(str, associations.values()), "-o", str(mosaics["ours"]), "-j", "2",
        "--grid", str(grid_file), "--crds-env", str(sim.env_file), "--no-progress",
        "--no-report", "--json", *sets,
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [t["status"] for t in summary["tasks"]] == ["skipped", "skipped"]


def test_image3_grid_errors(sim, caldir, associations, grid_file, tmp_path):
    from jwstrun.mosaic import make_grid

    small = make_grid([str(caldir / "*_nrcb1_cal.fits")])
    small_file = small.write(tmp_path / "sw.asdf")
    not_grid = tmp_path / "grid.asdf"
    not_grid.write_text("{}")
    base = ["--crds-env", str(sim.env_file), "--no-progress", "--no-report"]
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["image3", str(associations["f444w"]), "-o", str(out),
                                      "--grid", str(small_file), *base])
    assert result.exit_code == 1, result.output
    product = associations["f444w"].name.replace("_image3_asn.json", "")
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith(
        f"Error: {small_file}: the grid does not cover association {product}: 2 of its 2 "
        "inputs reach up to ")
    assert lines[-1].endswith(
        "Make the grid from all the inputs ('jwstrun grid INPUTS -o grid.asdf') or grow it "
        f"('jwstrun grid NEW_INPUTS --extend {small_file} -o {small_file}'); nothing was run.")
    assert not list(out.glob("logs/*.log")) and not list(out.glob("*.fits"))
    assert "Traceback" not in result.output
    tiled = CliRunner().invoke(cli, ["image3", str(associations["f444w"]), "-o",
                                     str(tmp_path / "tiled"), "--grid", str(small_file),
                                     "--tile-size", "64", *base])
    assert tiled.exit_code == 1, tiled.output
    assert tiled.output.strip().splitlines()[-1] == lines[-1]  # tiles check it too
    assert not list((tmp_path / "tiled").glob("**/*.fits"))
    assert not list((tmp_path / "tiled").glob("**/*_asn.json"))

    out2 = tmp_path / "out2"
    result = CliRunner().invoke(cli, ["image3", str(associations["f444w"]), "-o", str(out2),
                                      "--grid", str(not_grid), *base])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {not_grid}: not a gwcs grid (not an ASDF file); make one with 'jwstrun grid "
        "INPUTS -o grid.asdf'.")
    assert not out2.exists()

    result = CliRunner().invoke(cli, ["image3", str(associations["f444w"]), "-o", str(out2),
                                      "--grid", str(grid_file), "--set",
                                      "steps.resample.pixel_scale=0.05", *base])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: grid {grid_file} fixes the output grid, but steps.resample.pixel_scale is set "
        "too (profile or --set): drop it, or make the grid with those settings ('jwstrun grid "
        "--pixel-scale/--rotation').")
    assert not out2.exists()
