"""Tiles at the grid's edge (jwstrun.mosaic.cutout.edge_box; docs/workflows/tiles.md).

drizzle keeps or drops the input pixels cut by the output's edge by a polygon whose
vertices depend on the whole output window and on the input's box, so a tile whose window
is its box with margin clipped to the grid can differ from the single-shot mosaic in the
grid's outermost pixels.  jwstrun gives a tile every exposure that crosses the grid's edge
whole and resamples the tile over its footprint on the grid.  Here with drizzle's own
``Drizzle`` and stcal's ``calc_pixmap`` (what jwst's resample calls) on gwcs imaging WCSs:
no pipeline, a second.  tests/test_tiles_run.py (and the slow tests/test_tiles_edges.py)
run the pipelines.
"""

from __future__ import annotations

import numpy as np
import pytest

GRID = (150, 200)  # ny, nx
EXPOSURE = (160, 160)
TILE, MARGIN = 40, 8


def _wcs(crpix, shape, rotation=0.0, crval=(80.5, -69.5)):
    from jwstrun.mosaic.grid import _frames
    from jwstrun.mosaic.gridfile import _imaging_wcs

    scale = 0.03 / 3600
    c, s = np.cos(np.radians(rotation)), np.sin(np.radians(rotation))
    return _imaging_wcs(crpix, crval, (scale, scale), [[-c, s], [s, c]], shape, _frames())


def _grid():
    from jwstrun.mosaic.gridfile import Grid

    return Grid(_wcs((100.0, 75.0), GRID), 0.03)


def _exposure(dx, dy, rotation):
    """An exposure whose centre lands on grid pixel (100 + dx, 75 + dy)."""
    return _wcs((79.5 - dx, 79.5 - dy), EXPOSURE, rotation)


def _drizzle(exposure, grid, box):
    from drizzle.resample import Drizzle
    from stcal.resample.utils import calc_pixmap

    pixmap = calc_pixmap(exposure, grid.sub_grid(*box).wcs, EXPOSURE)
    driz = Drizzle(kernel="square", out_shape=(box[1] - box[0], box[3] - box[2]),
                   fillval=0.0)
    data = np.ones(EXPOSURE, np.float32)
    driz.add_image(data, exptime=1.0, pixmap=pixmap, weight_map=data)
    return driz.out_wht


def test_edge_box_holds_the_footprint_of_an_exposure_crossing_the_grid_edge():
    from jwstrun.mosaic.cutout import edge_box

    grid = _grid()
    crossing = _exposure(60.0, 10.0, 2.0)  # beyond the right edge
    everything = (0, GRID[0], 0, GRID[1])
    box = edge_box(crossing, EXPOSURE, GRID, grid.wcs, everything)
    y, x = np.mgrid[-0.5:EXPOSURE[0]:1.0, -0.5:EXPOSURE[1]:1.0]  # the pixels' corners
    gx, gy = grid.wcs.backward_transform(*crossing.forward_transform(x, y))
    on = (gx > -0.5) & (gx < GRID[1] - 0.5) & (gy > -0.5) & (gy < GRID[0] - 0.5)
    assert box is not None and box[3] == GRID[1]
    assert box[0] <= gy[on].min() + 0.5 and gy[on].max() + 0.5 <= box[1]
    assert box[2] <= gx[on].min() + 0.5
    inside = _wcs((49.5, 49.5), (100, 100), 1.0)  # grid pixels ~(50:150, 25:125)
    assert edge_box(inside, (100, 100), GRID, grid.wcs, everything) is None
    assert edge_box(_exposure(900.0, 0.0, 0.0), EXPOSURE, GRID, grid.wcs, everything) is None
    # only for a window on an edge the exposure crosses: the right edge and the top
    assert edge_box(crossing, EXPOSURE, GRID, grid.wcs, (0, 40, 0, 40)) is None
    assert edge_box(crossing, EXPOSURE, GRID, grid.wcs, (40, 80, 150, 200)) == box


def test_with_margin_box_must_hold_the_core():
    from jwstrun.mosaic.tiles import cut_tiles

    tile = cut_tiles(GRID, TILE, margin=MARGIN)[1]
    grown = tile.with_margin_box((0, 150, 0, 200))
    assert (grown.box, grown.margin_box, grown.core_in_margin) == (
        tile.box, (0, 150, 0, 200), (slice(0, 40), slice(40, 80)))
    with pytest.raises(ValueError, match="does not hold the core of tile t000001"):
        tile.with_margin_box((0, 40, 0, 60))


def test_tiles_over_crossing_footprints_equal_the_whole_grid():
    """Every tile of a grid that a rotated exposure crosses, drizzled over its box with
    margin grown by edge_box, equals the same pixels of the whole grid; with the box
    with margin alone, some pixels of the grid's edge differ (what the rule is for)."""
    from jwstrun.mosaic.cutout import edge_box
    from jwstrun.mosaic.tiles import cut_tiles

    grid = _grid()
    differ = {"margin": 0, "grown": 0}
    for dx, dy, rotation in ((60.0, 10.0, 2.5), (-55.0, -40.0, -1.7), (30.0, 45.0, 3.1)):
        exposure = _exposure(dx, dy, rotation)
        whole = _drizzle(exposure, grid, (0, GRID[0], 0, GRID[1]))
        for tile in cut_tiles(GRID, TILE, margin=MARGIN):
            edge = edge_box(exposure, EXPOSURE, GRID, grid.wcs, tile.margin_box)
            grown = tile.margin_box if edge is None else (
                min(tile.my0, edge[0]), max(tile.my1, edge[1]),
                min(tile.mx0, edge[2]), max(tile.mx1, edge[3]))
            expected = whole[tile.y0:tile.y1, tile.x0:tile.x1]
            bad = {}
            for rule, box in (("margin", tile.margin_box), ("grown", grown)):
                if rule == "grown" and box == tile.margin_box:
                    bad[rule] = bad["margin"]
                    continue
                ys, xs = tile.with_margin_box(box).core_in_margin
                got = _drizzle(exposure, grid, box)[ys, xs]
                bad[rule] = int((~np.isclose(got, expected, rtol=1e-5, atol=1e-6)).sum())
            for rule, count in bad.items():
                differ[rule] += count
    assert differ["grown"] == 0 and differ["margin"] > 0, differ
