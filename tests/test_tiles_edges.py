"""Tiles equal the single-shot mosaic at the grid's edges, with tweakreg on (issue 22).

The configuration of a real run, where the tiles once differed from the single shot in the
grid's last column: a NIRCam SUB160 program of three dithers with pointing errors (tweakreg
aligns them), reduced by ``jwstrun image2``, on the grid ``jwstrun grid`` makes of its
``_cal`` files -- the exposures reach all four edges of it --, cut into tiles of 64 pixels,
a size that divides neither axis, so that tiles touch all four edges.  ``jwstrun image3
--grid --tile-size`` runs next to ``strun calwebb_image3 --steps.resample.output_wcs=grid``
(tweakreg on in both); every tile's SCI/ERR/WHT/CON/VAR_* must equal the same pixels of the
single-shot mosaic, edges included, and the tiles must have used cut-outs (their logs).
The same again with resample's ``pixmap_stepsize=4`` in both (the tiles use whole
exposures there).  Slow: four pipeline runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from jwstrun.cli import cli

pytestmark = pytest.mark.slow

VENV_BIN = Path(sys.executable).parent
STRUN = shutil.which("strun", path=str(VENV_BIN)) or shutil.which("strun")
TILE = 64
EXTENSIONS = ("SCI", "ERR", "WHT", "CON", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT")


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    """The simulated program through image2, its Level-3 association and its grid."""
    from jwstrun.asn import make_associations
    from jwstrun.mosaic.gridfile import make_grid
    from jwstrun.simulate import simulate_program

    root = tmp_path_factory.mktemp("tiles_edges")
    sim = simulate_program(root / "sim", subarray="SUB160", n_dithers=3, seed=4)
    result = CliRunner().invoke(cli, [
        "image2", *map(str, sim.rate_files), "-o", str(root / "cal"), "-j", "2",
        "--crds-env", str(sim.env_file), "--no-progress", "--no-report",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    cals = sorted((root / "cal").glob("*_cal.fits"))
    (asn,) = make_associations(cals, root / "cal" / "l3_asn.json", level=3).associations
    grid = make_grid(cals)
    grid.write(root / "grid.asdf")
    ny, nx = grid.shape
    assert ny % TILE and nx % TILE and ny > 2 * TILE and nx > 2 * TILE, grid.shape
    return sim, asn.path, root


def _runs(program, name: str, sets: tuple[str, ...]):
    """The tiled run and the single-shot strun (a subprocess, at the same time), tweakreg
    on, with the resample parameters ``sets``: (tiled OUTDIR, single-shot mosaic)."""
    from jwstrun.refs import read_env_file

    sim, asn, root = program
    base = root / name
    env = dict(os.environ)
    env.update(read_env_file(sim.env_file))
    (base / "single").mkdir(parents=True)
    single = subprocess.Popen(
        [STRUN, "calwebb_image3", str(asn), "--output_dir", str(base / "single"),
         f"--steps.resample.output_wcs={root / 'grid.asdf'}", *[f"--{s}" for s in sets]],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        extra = [arg for s in sets for arg in ("--set", s)]
        result = CliRunner().invoke(cli, [
            "image3", str(asn), "-o", str(base / "tiles"), "--tile-size", str(TILE),
            "--grid", str(root / "grid.asdf"), "-j", "1", "--crds-env", str(sim.env_file),
            "--no-progress", "--no-report", *extra])
    finally:
        log, _ = single.communicate(timeout=1800)
    assert single.returncode == 0, log[-3000:]
    assert result.exit_code == 0, result.output
    (mosaic,) = (base / "single").glob("*_i2d.fits")
    return base / "tiles", mosaic


def _assert_tiles_equal(tiles: Path, mosaic: Path) -> set[str]:
    """Every tile equals the same pixels of ``mosaic``; the grid's edges the tiles touch."""
    from astropy.io import fits

    touched = set()
    with fits.open(mosaic) as whole:
        ny, nx = whole["SCI"].data.shape
        covered = np.zeros((ny, nx), dtype=bool)
        for path in sorted(tiles.glob("*_t[0-9]*_i2d.fits")):
            with fits.open(path) as tile:
                head = tile[0].header
                y0, x0, th, tw = head["TILEY0"], head["TILEX0"], head["TILENY"], head["TILENX"]
                for ext in EXTENSIONS:
                    expected = whole[ext].data[..., y0:y0 + th, x0:x0 + tw]
                    np.testing.assert_allclose(tile[ext].data, expected, rtol=1e-5, atol=0,
                                               equal_nan=True, err_msg=f"{path.name} {ext}")
                covered[y0:y0 + th, x0:x0 + tw] = True
                touched |= {side for side, hit in (("bottom", y0 == 0), ("left", x0 == 0),
                                                   ("top", y0 + th == ny),
                                                   ("right", x0 + tw == nx)) if hit}
        # the tiles cover every pixel of the mosaic that holds data
        assert covered[whole["WHT"].data > 0].all()
    return touched


def _assert_same_alignment(tiles: Path, single: Path) -> None:
    """The align task's ``_crf`` files are the single shot's: the same pixels and the
    same (tweakreg-corrected) WCS."""
    from stdatamodels.jwst import datamodels

    ours, theirs = sorted(tiles.glob("*_crf.fits")), sorted(single.glob("*_crf.fits"))
    assert [p.name for p in ours] == [p.name for p in theirs] and len(ours) == 3
    y, x = np.mgrid[0:160:31, 0:160:31].astype(float)
    for a, b in zip(ours, theirs, strict=True):
        with datamodels.open(a) as one, datamodels.open(b) as two:
            np.testing.assert_array_equal(one.data, two.data)
            np.testing.assert_array_equal(one.meta.wcs(x, y), two.meta.wcs(x, y))


def _log_lines(tiles: Path, pattern: str) -> list[str]:
    return [line for log in sorted((tiles / "logs").glob("image3-tile-*.log"))
            for line in log.read_text().splitlines() if re.search(pattern, line)]


def test_tiles_equal_the_single_shot_at_the_grid_edges_with_tweakreg(program):
    tiles, mosaic = _runs(program, "default", ())
    assert _assert_tiles_equal(tiles, mosaic) == {"bottom", "left", "top", "right"}
    _assert_same_alignment(tiles, mosaic.parent)
    # tweakreg ran and moved the exposures in the align task
    (align_log,) = (tiles / "logs").glob("image3-align-*.log")
    assert "Step tweakreg done" in align_log.read_text()
    # the tiles went through the cut-out path (with SUB160 exposures and 64-pixel tiles a
    # cut-out is most of an exposure; tests/test_tiles_run.py checks smaller ones), and
    # the exposures crossing the grid's edge were used whole
    assert _log_lines(tiles, r"rows \d+:\d+, columns \d+:\d+ reach tile t\d{6}")
    assert _log_lines(tiles, r"crosses the grid's edge: used whole, tile t\d{6} resampled")


def test_tiles_equal_the_single_shot_with_a_sparse_pixel_map(program):
    sets = ("steps.resample.pixmap_stepsize=4",)
    tiles, mosaic = _runs(program, "stepsize", sets)
    assert _assert_tiles_equal(tiles, mosaic) == {"bottom", "left", "top", "right"}
    assert not _log_lines(tiles, r"reach tile t\d{6}")  # no cut-outs: whole exposures
    assert _log_lines(tiles, r"pixmap_stepsize: 4")
