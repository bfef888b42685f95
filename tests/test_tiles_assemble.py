"""``--assemble`` and the tiles' memory plan (issue 22, items 2 and 3), without a pipeline run.

- :func:`jwstrun.mosaic.assemble.assemble_mosaic` copies tile products (made here from
  a real MIRI i2d's metadata on a grid of 1500 x 2000 pixels, random pixels) into one
  ``_i2d`` equal to the mosaic they were cut from, tiles without data holding
  resample's fill values, read back by ``datamodels.open`` as an ImageModel with the
  grid's WCS; its traced peak stays far below the mosaic's size;
- :func:`jwstrun.mosaic.tile_plan.plan_tiles`: the estimates of each tile from the
  footprints it overlaps, the tile size the budget chooses, the refusals.

The end-to-end equality with a single-shot image3 is in tests/test_tiles.py.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

REAL_I2D = Path("/work/shared/data/real/jw01288015001_04101_00001_mirimage_i2d.fits")
if not REAL_I2D.is_file():
    REAL_I2D = Path(__file__).parent / "data" / "real" / REAL_I2D.name

SHAPE = (1000, 1200)
TILE = 400
EMPTY = {(0, 1), (2, 2)}  # tiles without data


def _grid(template_wcs):
    from jwstrun.mosaic.gridfile import Grid, _imaging_wcs

    scale = 0.11 / 3600
    wcs = _imaging_wcs((SHAPE[1] / 2, SHAPE[0] / 2), (80.5, -69.5), (scale, scale),
                       [[-1.0, 0.0], [0.0, 1.0]], SHAPE, template_wcs)
    return Grid(wcs, 0.11)


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    """A random mosaic on the grid, and its tiles as _i2d products (two of them empty)."""
    from astropy.io import fits
    from jwst.assign_wcs.util import update_s_region_imaging
    from jwst.resample.resample import ResampleImage
    from stdatamodels.jwst import datamodels

    from jwstrun.mosaic.assemble import TilePiece
    from jwstrun.mosaic.tiles import cut_tiles

    root = tmp_path_factory.mktemp("assemble")
    rng = np.random.default_rng(5)
    full = {name: rng.normal(size=SHAPE).astype(np.float32)
            for name in ("data", "err", "wht", "var_poisson", "var_rnoise", "var_flat")}
    full["con"] = rng.integers(0, 2 ** 20, size=(1, *SHAPE)).astype(np.int32)
    with datamodels.open(REAL_I2D) as template:
        grid = _grid(template.meta.wcs)
        first = template.copy()
    first.meta.wcs = grid.sub_grid(0, TILE, 0, TILE).wcs
    ResampleImage.update_fits_wcsinfo(first)
    update_s_region_imaging(first)
    path0 = root / "template_i2d.fits"
    first.save(path0)
    first.close()
    extensions = {"data": "SCI", "err": "ERR", "wht": "WHT", "con": "CON",
                  "var_poisson": "VAR_POISSON", "var_rnoise": "VAR_RNOISE", "var_flat": "VAR_FLAT"}
    pieces = []
    for tile in cut_tiles(SHAPE, TILE, margin=0):
        if tile.index in EMPTY:
            pieces.append(TilePiece(tile.box, None))
            continue
        # the template's file with the tile's pixels and CRPIX (what assemble reads of a
        # tile beyond the first one's metadata)
        path = root / f"mosaic_{tile.name}_i2d.fits"
        with fits.open(path0) as hdul:
            for name, ext in extensions.items():
                hdul[ext].data = np.ascontiguousarray(full[name][..., tile.y0:tile.y1,
                                                                 tile.x0:tile.x1])
            hdul["SCI"].header["CRPIX1"] -= tile.x0
            hdul["SCI"].header["CRPIX2"] -= tile.y0
            hdul.writeto(path)
        pieces.append(TilePiece(tile.box, path))
    for name in ("data", "err", "var_poisson", "var_rnoise", "var_flat"):
        for iy, ix in EMPTY:
            full[name][iy * TILE:(iy + 1) * TILE, ix * TILE:(ix + 1) * TILE] = np.nan
    for iy, ix in EMPTY:
        full["wht"][iy * TILE:(iy + 1) * TILE, ix * TILE:(ix + 1) * TILE] = 0
        full["con"][:, iy * TILE:(iy + 1) * TILE, ix * TILE:(ix + 1) * TILE] = 0
    return {"root": root, "grid": grid, "pieces": pieces, "full": full}


def test_assembled_mosaic_equals_the_tiles_in_bounded_memory(tiled):
    from stdatamodels.jwst import datamodels

    from jwstrun.mosaic.assemble import assemble_mosaic

    # a first small assembly loads the schemas and modules, so the traced peak is the copy's
    warm = tiled["root"] / "warm_i2d.fits"
    assemble_mosaic(tiled["pieces"][:1], tiled["grid"].sub_grid(0, TILE, 0, TILE), warm)
    out = tiled["root"] / "mosaic_i2d.fits"
    tracemalloc.start()
    try:
        assemble_mosaic(tiled["pieces"], tiled["grid"], out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    mosaic_bytes = sum(a.nbytes for a in tiled["full"].values())  # 34 MB
    tile_bytes = mosaic_bytes / len(tiled["pieces"])  # 3.7 MB
    print(f"traced peak {peak / 1e6:.1f} MB, tile {tile_bytes / 1e6:.1f} MB")
    assert peak < 2 * tile_bytes < mosaic_bytes / 4, (peak, tile_bytes, mosaic_bytes)
    with datamodels.open(out) as model:
        assert isinstance(model, datamodels.ImageModel)
        for name, array in tiled["full"].items():
            np.testing.assert_array_equal(getattr(model, name), array, err_msg=name)
        grid = tiled["grid"]
        x, y = np.array([0.0, 1199.0, 733.3]), np.array([0.0, 999.0, 621.7])
        np.testing.assert_allclose(model.meta.wcs(x, y), grid.wcs(x, y), rtol=0, atol=1e-12)
        assert model.meta.wcsinfo.crpix1 == pytest.approx(grid.crpix[0] + 1)
        assert model.meta.filename == out.name
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(out) as hdul:
        sky = WCS(hdul["SCI"].header).pixel_to_world_values(x, y)
        np.testing.assert_allclose(sky, grid.wcs(x, y), rtol=0, atol=1e-9)
        assert [h.name for h in hdul][:8] == ["PRIMARY", "SCI", "ERR", "CON", "WHT",
                                              "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"]


def test_assemble_refuses_a_tile_off_the_grid(tiled, tmp_path):
    from jwstrun.errors import InputError
    from jwstrun.mosaic.assemble import TilePiece, assemble_mosaic

    first = tiled["pieces"][0]
    moved = TilePiece((0, TILE, TILE, 2 * TILE), first.path)  # claims the tile next to it
    out = tmp_path / "x_i2d.fits"
    with pytest.raises(InputError) as info:
        assemble_mosaic([moved], tiled["grid"], out)
    assert str(info.value) == (
        f"{first.path}: does not cover its tile's pixels 400:800 x 0:400 of the grid. "
        "Assemble the products of one 'jwstrun image3 --tile-size' run.")
    assert list(tmp_path.iterdir()) == []
