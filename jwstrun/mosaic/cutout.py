"""The part of an exposure that lands in a tile (``jwstrun image3 --tile-size``).

jwst's resample maps every pixel of every input it is given through the WCS (stcal's
``calc_pixmap``: about 6 s for a full-frame NIRCam exposure) before drizzle drops the
pixels that fall outside the output.  A tile overlaps nearly every dithered exposure of
its association, so a tile given whole ``_crf`` files pays about a whole resample.

:func:`cutout` gives a tile only the rows and columns of an exposure that can reach it:
the arrays are sliced, and the WCS gets ``Shift(x0) & Shift(y0)`` in front of its
detector-to-sky transform, with the bounding box moved by the same offset.  Pixel
``(x, y)`` of the cut-out is then computed as exactly the same float64 numbers as pixel
``(x + x0, y + y0)`` of the exposure (adding an integer to an integer-valued float64 is
exact), so drizzle receives the same pixel map, weights and values for every pixel that
reaches the tile, in the same order: the tile is bit-identical to the tile made from the
whole exposures.  Everything else resample takes from an input (the nominal pixel area
of the flux scale, the exposure times, the sky level) is metadata, unchanged.

The box is found from the WCS itself, on a coarse grid of the exposure's pixels mapped
onto the grid, and padded generously: drizzle computes a pixel's corners from its
neighbours' map, so the pixels next to a cut edge must map outside the tile (with its
margin).  The cut is skipped (the exposure is used whole) when resample interpolates a
sparse pixel map (``pixmap_stepsize > 1``): the interpolation depends on the extent.

An exposure that crosses an edge of the grid on which the tile's box with margin lies is
used whole too, and the tile is resampled over all of its footprint on the grid
(:func:`edge_box`): drizzle decides which input
pixels cut by the output's edge it keeps from a polygon -- the input's box mapped onto
the output, clipped to the output, mapped back by an iterative inversion (0.03 pixel)
-- whose vertices depend on the input's box and on the whole output window, not only on
where the edge lies.  With the same input box and a window holding the same clipped
polygon, the tile keeps the same input pixels at the grid's edge as the single-shot
mosaic (scripts/drizzle_grid_edge.py shows the difference otherwise).

This module imports numpy alone (astropy inside a function): the tile workers use it,
and the memory plan (mosaic.tile_plan) its constants.
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["input_box", "edge_box", "cutout", "open_mapped", "extra_grid_pixels", "STRIDE",
           "PAD", "EDGE_TOL"]

log = logging.getLogger(__name__)

#: input pixels between the points mapped to find the box
STRIDE = 8
#: input pixels added on every side of the box: drizzle computes a pixel's corners from
#: its neighbours' map, so the pixels next to a cut edge differ from the whole exposure's
PAD = 4
#: how far beyond an input pixel's centre its kernel reaches, in input pixels (lanczos3)
KERNEL_REACH = 3.0


def _reach(per_pixel: float) -> float:
    """Grid pixels beyond a box within which the coarse points are kept (``per_pixel``:
    grid pixels per input pixel)."""
    return 2.0 * STRIDE * per_pixel + KERNEL_REACH * max(per_pixel, 1.0) + 1.0


def extra_grid_pixels(per_pixel: float) -> float:
    """How far (grid pixels) a cut-out reaches beyond the tile's box with margin, at
    most: the kept coarse points' reach and the pad.  The memory plan's cut-out size
    (:mod:`jwstrun.mosaic.tile_plan`)."""
    return _reach(per_pixel) + PAD * per_pixel
#: grid pixels: an exposure whose outline comes this close to the grid's edge (or
#: beyond) counts as crossing it (:func:`edge_box`)
EDGE_TOL = 1.0


def _coarse(shape: tuple[int, int]):
    ny, nx = shape
    ys = np.unique(np.r_[np.arange(0, ny, STRIDE), ny - 1]).astype(float)
    xs = np.unique(np.r_[np.arange(0, nx, STRIDE), nx - 1]).astype(float)
    return np.meshgrid(ys, xs, indexing="ij")


def input_box(wcs, shape: tuple[int, int], grid_wcs, box: tuple[int, int, int, int]):
    """The rows and columns ``(y0, y1, x0, x1)`` (half-open) of an exposure of ``shape``
    with ``wcs`` that can reach the grid pixels ``box`` (``(y0, y1, x0, x1)``, half-open)
    of ``grid_wcs``, padded by :data:`PAD`; ``None`` when none can.

    The exposure's pixels every :data:`STRIDE` are mapped onto the grid.  Over one cell
    of that coarse grid a grid coordinate changes by at most ``2 * step`` (``step``: the
    largest change between neighbouring points), so a pixel that reaches the box (with
    its kernel) lies in a cell whose four corners all map within ``2 * step + kernel``
    of the box: the box of those corners holds every such pixel."""
    yy, xx = _coarse(shape)
    gx, gy = grid_wcs.backward_transform(*wcs.forward_transform(xx, yy))
    gx, gy = np.asarray(gx, dtype=float), np.asarray(gy, dtype=float)
    finite = np.isfinite(gx) & np.isfinite(gy)
    if not finite.any():
        return None
    diffs = [np.abs(np.diff(a, axis=k)) for a in (gx, gy) for k in (0, 1) if a.shape[k] > 1]
    step = max((float(np.nanmax(d)) for d in diffs if np.isfinite(d).any()), default=0.0)
    reach = _reach(step / STRIDE)  # grid pixels per input pixel
    y0, y1, x0, x1 = box
    near = finite & (gx >= x0 - 0.5 - reach) & (gx <= x1 - 0.5 + reach) \
        & (gy >= y0 - 0.5 - reach) & (gy <= y1 - 0.5 + reach)
    if not near.any():
        return None
    ny, nx = shape
    return (max(0, int(yy[near].min()) - PAD), min(ny, int(yy[near].max()) + PAD + 1),
            max(0, int(xx[near].min()) - PAD), min(nx, int(xx[near].max()) + PAD + 1))


def edge_box(wcs, shape: tuple[int, int], grid_shape: tuple[int, int], grid_wcs,
             window: tuple[int, int, int, int]):
    """The grid pixels ``(y0, y1, x0, x1)`` (half-open, padded, clipped to the grid) of
    the footprint of an exposure of ``shape`` with ``wcs`` when its outline (the edges
    of its pixels' box) crosses, or comes within :data:`EDGE_TOL` of, an edge of the
    grid of ``grid_shape`` with ``grid_wcs`` on which the box ``window`` (``(y0, y1,
    x0, x1)``, half-open) lies; ``None`` otherwise (drizzle's polygon then has no edge
    along that grid edge, or it is away from the window: at most 2 pixels from it)."""
    ny, nx = shape
    gny, gnx = grid_shape
    along_x = np.r_[np.arange(-0.5, nx - 0.5, STRIDE), nx - 0.5]
    along_y = np.r_[np.arange(-0.5, ny - 0.5, STRIDE), ny - 0.5]
    x = np.r_[along_x, along_x, np.full(along_y.size, -0.5), np.full(along_y.size, nx - 0.5)]
    y = np.r_[np.full(along_x.size, -0.5), np.full(along_x.size, ny - 0.5), along_y, along_y]
    gx, gy = grid_wcs.backward_transform(*wcs.forward_transform(x, y))
    gx, gy = np.asarray(gx, dtype=float), np.asarray(gy, dtype=float)
    finite = np.isfinite(gx) & np.isfinite(gy)
    if not finite.any():
        return None
    gx, gy = gx[finite], gy[finite]
    wy0, wy1, wx0, wx1 = window
    low = -0.5 + EDGE_TOL
    crosses = ((wx0 == 0 and gx.min() < low) or (wy0 == 0 and gy.min() < low)
               or (wx1 == gnx and gx.max() > gnx - 0.5 - EDGE_TOL)
               or (wy1 == gny and gy.max() > gny - 0.5 - EDGE_TOL))
    box = (max(0, int(np.floor(gy.min())) - PAD), min(gny, int(np.ceil(gy.max())) + PAD + 1),
           max(0, int(np.floor(gx.min())) - PAD), min(gnx, int(np.ceil(gx.max())) + PAD + 1))
    if not crosses or box[0] >= box[1] or box[2] >= box[3]:
        return None
    return box


def _shift_wcs(wcs, y0: int, x0: int):
    """``wcs`` (changed in place: it is the cut-out's own, read for this tile) with
    ``Shift(x0) & Shift(y0)`` in front of its first transform and its bounding box moved."""
    from astropy.modeling.models import Shift

    bbox = wcs.bounding_box
    wcs.insert_transform(wcs.available_frames[0], Shift(x0) & Shift(y0), after=True)
    if bbox is not None:
        (bx0, bx1), (by0, by1) = (bbox.bounding_box(order="F") if hasattr(bbox, "bounding_box")
                                  else tuple(bbox))
        wcs.bounding_box = ((bx0 - x0, bx1 - x0), (by0 - y0, by1 - y0))
    else:
        wcs.bounding_box = None
    return wcs


def open_mapped(path):
    """The ``_crf`` file ``path`` as an ImageModel whose arrays are astropy memory maps
    (read from disk only where sliced: a cut-out reads only its rows), and its HDUList,
    to close once the arrays the model keeps are copies (:func:`cutout`).

    The file is one the align task wrote and jwstrun validated: it is read without
    validating its ASDF tree against the schemas again, and the arrays cut out of it
    (the same types) are set without validating each assignment: both took longer than
    resampling a small cut-out."""
    import asdf
    from astropy.io import fits
    from stdatamodels.jwst import datamodels

    hdul = fits.open(path)
    with asdf.config_context() as config:
        config.validate_on_read = False
        return datamodels.ImageModel(hdul, validate_on_assignment=False), hdul


def cutout(model, box: tuple[int, int, int, int]):
    """``model`` (opened, modified in place) cut to ``box`` = ``(y0, y1, x0, x1)``:
    every array of the exposure's shape sliced (copies), the WCS shifted.  Returns
    ``model``."""
    y0, y1, x0, x1 = box
    shape = model.data.shape
    if (y0, y1, x0, x1) == (0, shape[0], 0, shape[1]):
        return model
    for name in list(model.instance):
        value = model.instance[name]
        if isinstance(value, np.ndarray) and value.shape == shape:
            setattr(model, name, np.array(value[y0:y1, x0:x1]))
    model.meta.wcs = _shift_wcs(model.meta.wcs, y0, x0)
    return model
