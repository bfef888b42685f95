#!/usr/bin/env python
"""Why a tile at the grid's edge is resampled over whole exposures (docs/workflows/tiles.md).

drizzle (the library jwst's resample calls) decides which input pixels it drizzles from a
polygon: the input's box, its four corners mapped onto the output through the pixel map,
clipped to the output's box, and mapped back by an iterative inversion (within 0.03
input pixel).  Where an input crosses the output's edge, the input pixels cut by the edge
are kept or dropped by that polygon -- and its vertices depend on the whole output window
(where the window's other edges cut the input) and on the input's box, not only on where
the edge lies.  A tile that shares the grid's edge but not the rest of the grid can thus
keep an input pixel the single-shot mosaic drops, or drop one it keeps: a different value
in the outermost rows and columns of the grid (at most 2 pixels from the edge).

This script drizzles synthetic inputs (160 x 160 pixels, shifted, rotated by up to 3 deg,
mildly distorted, each crossing the grid's edges somewhere) with drizzle's own
``Drizzle`` (square kernel) onto a 150 x 200 grid and onto 40-pixel tiles of it (each
with an 8-pixel margin, the pixel map shifted by the window's origin), and compares every
tile pixel with the same pixel of the whole grid (rtol 1e-5):

- ``clipped``:  the window is the tile with its margin, clipped to the grid;
- ``covering``: jwstrun's rule -- the window also holds the footprint on the grid of
  every input, given whole, that crosses a grid edge on which the window lies
  (mosaic.cutout.edge_box).

Typical output: ``clipped`` differs at a few hundred pixels, all within 2 pixels of the
grid's edge; ``covering`` differs nowhere.

    python scripts/drizzle_grid_edge.py
"""

from __future__ import annotations

import numpy as np
from drizzle.resample import Drizzle

NY, NX = 150, 200  # the grid
TILE, MARGIN = 40, 8


def pixmap(shape, dx, dy, rot, k):
    """A pixel map: shift, rotation (degrees) and a quadratic distortion ``k``."""
    y, x = np.indices(shape, dtype=np.float64)
    c, s = np.cos(np.radians(rot)), np.sin(np.radians(rot))
    return np.dstack([c * x - s * y + dx + k * (x - 80) ** 2,
                      s * x + c * y + dy + k * (y - 80) ** 2])


def drizzle(pm, box):
    """WHT of the input drizzled onto the grid's rows y0:y1, columns x0:x1."""
    y0, y1, x0, x1 = box
    driz = Drizzle(kernel="square", out_shape=(y1 - y0, x1 - x0), fillval=0.0)
    data = np.ones(pm.shape[:2], np.float32)
    driz.add_image(data, exptime=1.0, pixmap=pm - np.array([x0, y0], float), weight_map=data)
    return driz.out_wht


def footprint(pm, window):
    """The grid pixels of the input's footprint when it crosses a grid edge on which
    ``window`` lies (jwstrun's rule, mosaic.cutout.edge_box), else None."""
    x, y = pm[..., 0], pm[..., 1]
    y0, y1, x0, x1 = window
    if not ((x0 == 0 and x.min() < 0.5) or (y0 == 0 and y.min() < 0.5)
            or (x1 == NX and x.max() > NX - 1.5) or (y1 == NY and y.max() > NY - 1.5)):
        return None
    return (max(0, int(np.floor(y.min())) - 2), min(NY, int(np.ceil(y.max())) + 3),
            max(0, int(np.floor(x.min())) - 2), min(NX, int(np.ceil(x.max())) + 3))


def compare(trials: int = 30, seed: int = 1) -> dict:
    """{rule: (differing pixels, farthest from the grid's edge)} and the pixels compared."""
    rng = np.random.default_rng(seed)
    found = {"clipped": [0, -1], "covering": [0, -1]}
    compared = 0
    for _ in range(trials):
        pm = pixmap((160, 160), rng.uniform(-40, 120), rng.uniform(-40, 20),
                    rng.uniform(-3, 3), rng.uniform(-2e-4, 2e-4))
        whole = drizzle(pm, (0, NY, 0, NX))
        for y0 in range(0, NY, TILE):
            for x0 in range(0, NX, TILE):
                y1, x1 = min(NY, y0 + TILE), min(NX, x0 + TILE)
                margin = (max(0, y0 - MARGIN), min(NY, y1 + MARGIN),
                          max(0, x0 - MARGIN), min(NX, x1 + MARGIN))
                crossing = footprint(pm, margin)
                covering = margin if crossing is None else (
                    min(margin[0], crossing[0]), max(margin[1], crossing[1]),
                    min(margin[2], crossing[2]), max(margin[3], crossing[3]))
                expected = whole[y0:y1, x0:x1]
                yy, xx = np.mgrid[y0:y1, x0:x1]
                depth = np.minimum(np.minimum(yy, NY - 1 - yy), np.minimum(xx, NX - 1 - xx))
                compared += expected.size
                for rule, box in (("clipped", margin), ("covering", covering)):
                    tile = drizzle(pm, box)[y0 - box[0]:y1 - box[0], x0 - box[2]:x1 - box[2]]
                    bad = ~np.isclose(tile, expected, rtol=1e-5, atol=1e-6)
                    found[rule][0] += int(bad.sum())
                    found[rule][1] = max(found[rule][1], int(depth[bad].max(initial=-1)))
    return {"compared": compared, **{k: tuple(v) for k, v in found.items()}}


def main() -> None:
    result = compare()
    print(f"{result['compared']} tile pixels compared with the whole grid (rtol 1e-5)")
    for rule in ("clipped", "covering"):
        count, depth = result[rule]
        where = f", all within {depth + 1} pixel(s) of the grid's edge" if count else ""
        print(f"{rule:9s} {count} pixels differ{where}")


if __name__ == "__main__":
    main()
