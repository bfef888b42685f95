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


# --------------------------------------------------------------------------
# The tiles' memory plan
# --------------------------------------------------------------------------
PLAN_SHAPE = (3000, 5000)


def _plan_grid():
    from jwstrun.mosaic.grid import _frames
    from jwstrun.mosaic.gridfile import Grid, _imaging_wcs

    scale = 0.03 / 3600
    return Grid(_imaging_wcs((2500.0, 1500.0), (150.1, 2.2), (scale, scale),
                             [[-1.0, 0.0], [0.0, 1.0]], PLAN_SHAPE, _frames()), 0.03)


def _footprints(grid, n=40, seed=3):
    """Detector-sized footprints (2048 x 2048 input pixels, 1000 x 1000 on the grid) at
    random places, some reaching off the grid."""
    from jwstrun.mosaic.grid import Footprint

    rng = np.random.default_rng(seed)
    result = []
    for i in range(n):
        x0, y0 = rng.uniform(-600, PLAN_SHAPE[1] - 400), rng.uniform(-600, PLAN_SHAPE[0] - 400)
        xs, ys = np.array([x0, x0 + 1000, x0 + 1000, x0]), np.array([y0, y0, y0 + 1000, y0 + 1000])
        ra, dec = grid.pixel_to_sky(xs, ys)
        result.append(Footprint(f"e{i}_cal.fits", list(zip(ra, dec)), (2048, 2048), 0.06 / 3600,
                                {}))
    return result


def test_tile_loads_follow_the_runners_overlap_rule():
    """The plan counts, for each tile, the exposures the runner gives that tile."""
    from jwstrun.mosaic.tile_plan import footprint_boxes, tile_loads
    from jwstrun.mosaic.tiles import cut_tiles
    from jwstrun.runner._tiles import _overlaps

    grid = _plan_grid()
    footprints = _footprints(grid)
    boxes = footprint_boxes(footprints, grid)  # the runner's boxes too (runner._tiles)
    runner_boxes = list(boxes)
    grown = 0
    for size, margin in ((700, 32), (333, 100)):
        count, summed, out = tile_loads(PLAN_SHAPE, size, margin, boxes,
                                        [f.pixels for f in footprints])
        for tile in cut_tiles(PLAN_SHAPE, size, margin):
            runner = [b for b in runner_boxes if _overlaps(b, tile)]
            assert count[tile.index] == len(runner), (size, tile.name)
            assert summed[tile.index] == 2048 * 2048 * len(runner)
            # a tile on the grid's edge grows over the footprints crossing that edge
            # (mosaic.cutout.edge_box); the others resample their box with margin
            crossing = [b for b in runner if _crosses(b, tile.margin_box, PLAN_SHAPE)]
            assert out[tile.index] == _grown_area(tile.margin_box, crossing, PLAN_SHAPE)
            grown += bool(crossing)
    assert grown  # the rule was exercised


def _crosses(box, window, shape):
    (ny, nx), (y0, y1, x0, x1) = shape, window
    return ((y0 == 0 and box[0] < 0.5) or (x0 == 0 and box[2] < 0.5)
            or (y1 == ny and box[1] > ny - 1.5) or (x1 == nx and box[3] > nx - 1.5))


def _grown_area(window, boxes, shape):
    import math

    from jwstrun.mosaic.cutout import PAD

    (ny, nx), (y0, y1, x0, x1) = shape, window
    for b in boxes:
        y0 = min(y0, max(0, math.floor(b[0]) - PAD))
        y1 = max(y1, min(ny, math.ceil(b[1]) + PAD + 1))
        x0 = min(x0, max(0, math.floor(b[2]) - PAD))
        x1 = max(x1, min(nx, math.ceil(b[3]) + PAD + 1))
    return (y1 - y0) * (x1 - x0)


def test_budget_chooses_the_largest_tile_size_that_fits():
    from jwstrun.mosaic import estimate_memory
    from jwstrun.mosaic.memory import estimate_tile_memory
    from jwstrun.mosaic.tile_plan import _worst, footprint_boxes, plan_tiles

    # the tile model is estimate_memory's in-memory resample + source_catalog, the tile
    # pipeline's copy of the resampled tile (32 bytes per pixel) and a worker's first tile
    # importing source_catalog's packages (50 MB)
    assert estimate_tile_memory(3000, 2, 2000, 50000) == estimate_memory(
        [1000, 2000], 50000, 0, 1, on_disk=False, outlier=False)["bytes"] + 32 * 50000 \
        + 50_000_000
    grid = _plan_grid()
    footprints = _footprints(grid)
    boxes, pixels = footprint_boxes(footprints, grid), [f.pixels for f in footprints]
    budget = 8_000_000_000
    plan = plan_tiles("p", PLAN_SHAPE, boxes, pixels, budget // 2, budget, "--max-memory 8.00 GB",
                      jobs=2)
    assert plan.chosen and 64 <= plan.size < 3000
    assert plan.worst["bytes"] <= budget // 2 == plan.share_bytes
    assert max(plan.estimates.values()) == plan.worst["bytes"]
    estimates, count, worst = _worst(PLAN_SHAPE, plan.size + 1, 32, boxes, pixels, True)
    assert estimates[worst] > budget // 2  # one pixel more and the worst tile does not fit
    assert plan.to_dict()["tile_size_from"] == "--max-memory"
    assert plan.n_tiles - plan.n_empty == len(plan.estimates)


def test_tiles_that_cannot_fit_are_refused_before_anything_runs():
    from jwstrun.errors import InputError
    from jwstrun.mosaic.tile_plan import footprint_boxes, plan_tiles

    grid = _plan_grid()
    footprints = _footprints(grid)
    boxes, pixels = footprint_boxes(footprints, grid), [f.pixels for f in footprints]
    with pytest.raises(InputError) as given:
        plan_tiles("jw01234-o001_t001_nircam_clear-f200w", PLAN_SHAPE, boxes, pixels,
                   4_000_000_000, 8_000_000_000, "--max-memory 8.00 GB", tile_size=2000, jobs=2)
    assert str(given.value).startswith(
        "jw01234-o001_t001_nircam_clear-f200w: with tiles of 2000 pixels, tile t00")
    assert str(given.value).endswith(
        "beyond the share of the budget 4.00 GB (8.00 GB / 2 concurrent tasks); the budget is "
        "--max-memory 8.00 GB. Give a smaller --tile-size, or leave it out to let --max-memory "
        "choose one. Nothing was run.")
    with pytest.raises(InputError) as none:
        plan_tiles("p", PLAN_SHAPE, boxes, pixels, 400_000_000, 400_000_000,
                   "--max-memory 400 MB")
    text = str(none.value)
    assert text.startswith("p: no tile size fits the memory budget: even with tiles of 64 "
                           "pixels, tile t"), text
    assert " exposures and needs an estimated " in text
    assert text.endswith(
        "beyond the share of the budget 400 MB; the budget is --max-memory 400 MB. The "
        "exposures one tile overlaps must fit in memory together: raise the memory budget "
        "(--max-memory), run fewer tasks at once (-j), or split the association. Nothing "
        "was run.")


def test_a_grid_stretched_by_a_far_input_is_refused():
    """One exposure 3 degrees from the others: the tiled preflight names it, as the
    single-shot one does, before counting tiles."""
    from jwstrun.errors import InputError
    from jwstrun.mosaic.grid import Footprint
    from jwstrun.runner._tile_memory import _refuse_far

    grid = _plan_grid()
    footprints = []
    for i, (x0, y0) in enumerate(((100, 100), (500, 300), (900, 500))):  # one field
        xs, ys = np.array([x0, x0 + 1000, x0 + 1000, x0]), np.array([y0, y0, y0 + 1000, y0 + 1000])
        footprints.append(Footprint(f"e{i}_cal.fits", list(zip(*grid.pixel_to_sky(xs, ys))),
                                    (2048, 2048), 0.06 / 3600, {}))
    (ra, dec), = [footprints[0].vertices[0]]
    far = Footprint("stray_cal.fits", [(ra + 3, dec), (ra + 3.01, dec), (ra + 3.01, dec + 0.01),
                                       (ra + 3, dec + 0.01)], (2048, 2048), 0.06 / 3600, {})
    _refuse_far("p", grid, footprints)  # one field: nothing to say
    with pytest.raises(InputError) as info:
        _refuse_far("p", grid, [*footprints, far])
    assert str(info.value).startswith("p: the grid would be 5000 x 3000 pixels: these inputs "
                                      "lie far from the rest: stray_cal.fits (3.0")
    assert str(info.value).endswith(" deg away). Check their pointing (WCS) or leave them out "
                                    "of the association; nothing was run.")


def _exposure(grid, x0, y0, angle_deg, shape=(2048, 2048)):
    """A tangent-plane exposure of ``shape`` pixels of 0.015" (two per grid pixel) centred
    on grid pixel (x0, y0), rotated by ``angle_deg`` on the grid: its gwcs and Footprint."""
    from jwstrun.mosaic.grid import Footprint, _frames
    from jwstrun.mosaic.gridfile import _imaging_wcs

    ra, dec = grid.pixel_to_sky(np.array([x0]), np.array([y0]))
    scale, a = 0.015 / 3600, np.deg2rad(angle_deg)
    pc = [[-np.cos(a), np.sin(a)], [np.sin(a), np.cos(a)]]
    centre = ((shape[1] - 1) / 2, (shape[0] - 1) / 2)
    wcs = _imaging_wcs(centre, (float(ra[0]), float(dec[0])), (scale, scale), pc, shape,
                       _frames())
    ny, nx = shape
    corners = wcs.forward_transform(np.array([-0.5, nx - 0.5, nx - 0.5, -0.5]),
                                    np.array([-0.5, -0.5, ny - 0.5, ny - 0.5]))
    return wcs, Footprint("e_cal.fits", list(zip(*corners)), shape, scale, {})


@pytest.mark.parametrize("angle", [0.0, 30.0, 45.0])
def test_the_plan_holds_each_exposure_as_the_cut_out_a_tile_takes(angle):
    """A tile task holds, of each exposure, the cut-out mosaic.cutout.input_box takes: the
    plan's per-exposure count is at least that box, and far below the whole exposure."""
    from jwstrun.mosaic.cutout import input_box
    from jwstrun.mosaic.tile_plan import _held, footprint_cut_factors
    from jwstrun.mosaic.tiles import cut_tiles

    grid = _plan_grid()
    wcs, footprint = _exposure(grid, 2500.0, 1500.0, angle)
    cut = footprint_cut_factors([footprint], grid)
    size, margin = 200, 32
    (held,) = _held(np.array([footprint.pixels]), cut, size, margin)
    inside = [t for t in cut_tiles(PLAN_SHAPE, size, margin)  # wholly on the exposure
              if abs((t.y0 + t.y1) / 2 - 1500) < 100 and abs((t.x0 + t.x1) / 2 - 2500) < 100]
    boxes = [input_box(wcs, footprint.shape, grid.wcs, t.margin_box) for t in inside]
    taken = max((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in boxes)
    assert inside and taken <= held < footprint.pixels / 4, (taken, held)
    assert held < 1.6 * taken  # an upper bound, not a loose one


def test_deep_coverage_fits_as_small_tiles_with_cut_outs():
    """40 exposures on one spot: whole, they never fit 2 GB whatever the tile; as the
    cut-outs the tiles take, a tile size is chosen, and smaller tiles need less."""
    from jwstrun.errors import InputError
    from jwstrun.mosaic.tile_plan import footprint_boxes, footprint_cut_factors, plan_tiles

    grid = _plan_grid()
    footprints = [_exposure(grid, 2500.0 + i, 1500.0 - i, 10.0)[1] for i in range(40)]
    boxes, pixels = footprint_boxes(footprints, grid), [f.pixels for f in footprints]
    budget = 2_000_000_000
    with pytest.raises(InputError):
        plan_tiles("p", PLAN_SHAPE, boxes, pixels, budget, budget, "--max-memory 2.00 GB")
    cut = footprint_cut_factors(footprints, grid)
    plan = plan_tiles("p", PLAN_SHAPE, boxes, pixels, budget, budget, "--max-memory 2.00 GB",
                      cut=cut)
    assert plan.chosen and plan.worst["bytes"] <= budget and plan.worst["inputs"] == 40
    small = plan_tiles("p", PLAN_SHAPE, boxes, pixels, budget, budget, "--max-memory 2.00 GB",
                       tile_size=plan.size // 2, cut=cut)
    assert small.worst["bytes"] < plan.worst["bytes"]


def test_tile_workers_start_beside_an_align_that_leaves_cores_idle():
    """One association on two cores: one align task, so one tile worker starts at once
    (its jwst import overlaps the align); none when the aligns fill the cores, with
    Dask, or without tiles."""
    from jwstrun.runner._tiles import _early_tile_pool

    base = {"jobs": 2, "crds_env": {}, "extra_env": {}, "max_tasks_per_worker": 25}
    pool = _early_tile_pool(1, 9, base)
    try:
        assert pool is not None and pool.jobs == 1
    finally:
        pool.shutdown(cancel=True)
    assert _early_tile_pool(2, 9, base) is None
    assert _early_tile_pool(1, 9, {**base, "executor_kind": "dask"}) is None
    assert _early_tile_pool(1, 0, base) is None
