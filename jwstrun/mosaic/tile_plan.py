"""Memory by design for sky tiles: each tile's peak, and the tile size a budget allows.

A tile task (resample, then source_catalog, on the tile with its margin) holds the
cut-outs of the ``_crf`` files that overlap the tile (:mod:`jwstrun.mosaic.cutout`)
and the tile's own arrays, so its peak is
:func:`~jwstrun.mosaic.memory.estimate_tile_memory` of

- the exposures whose footprint overlaps the tile's box with margin: their
  ``S_REGION`` polygons (the ``_cal`` headers; tweakreg moves them by a fraction of
  a pixel) projected on the grid, as pixel boxes (:func:`footprint_boxes`);
- of each, at most the cut-out of a whole tile with margin: the exposure's pixels per
  grid pixel times the box a rotated rectangle spans, over the tile's box with
  margin and the cut-out's reach (:func:`footprint_cut_factors`); the whole exposure
  when resample interpolates a sparse pixel map (no cut-outs), or when it crosses an
  edge of the grid (a tile on that edge takes it whole; counted whole for every tile);
- the tile's box with margin (its output pixels), grown, for a tile on the grid's
  edge, over the footprints of the exposures crossing that edge (the runner resamples
  such a tile over them: :func:`jwstrun.mosaic.cutout.edge_box`).

So a tile's estimate shrinks with the tile, however many exposures overlap it.

:func:`plan_tiles` estimates every tile of a tile size at once (sums over the
tiles each exposure's box overlaps, no loop over tiles) and

- with a tile size given, refuses before anything runs when its worst tile does not
  fit the per-task share of the budget (:class:`TilesRefused`);
- without one, chooses the largest tile size whose worst tile fits the share (a
  binary search over sizes from :data:`MIN_AUTO_TILE` to the grid), and refuses
  only when not even a tile of :data:`MIN_AUTO_TILE` pixels fits -- the exposures
  such a tile overlaps alone are then beyond the budget.

Tiles that overlap no exposure hold no data: they write nothing and need nothing.
The estimate of each tile is in the plan (:meth:`TilePlan.estimate`) for the
manifest, next to the size chosen and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .memory import estimate_tile_memory, format_bytes
from .plan import MosaicRefused
from .tiles import DEFAULT_MARGIN, tile_name

__all__ = ["TilesRefused", "TilePlan", "footprint_boxes", "footprint_cut_factors",
           "crossing_edge", "tile_loads", "plan_tiles",
           "MIN_AUTO_TILE", "OVERLAP_PAD"]

#: the smallest tile size --max-memory chooses (smaller tiles are mostly margin)
MIN_AUTO_TILE = 64
#: the most tiles --max-memory cuts a grid into
MAX_TILES = 1_000_000


class TilesRefused(MosaicRefused):
    """The preflight refuses a tiled image3: a tile does not fit its share of the budget."""


#: pixels around a footprint's corners counted as overlapping a tile: the rule by which
#: the runner gives a tile its exposures (jwstrun.runner._tiles; drizzle's kernel reaches
#: half an output pixel beyond an input pixel, distortion between S_REGION's corners)
OVERLAP_PAD = 2.0


def footprint_boxes(footprints, grid):
    """(n, 4) float array: each footprint's box ``ymin, ymax, xmin, xmax`` in grid pixel
    coordinates (off the grid too), widened by :data:`OVERLAP_PAD`.  The polygons' edges
    are straight on a tangent-plane grid, so the vertices' box is the polygon's."""
    import numpy as np

    boxes = np.zeros((len(footprints), 4), dtype=float)
    for i, footprint in enumerate(footprints):
        ra, dec = np.array(footprint.vertices, dtype=float).T
        x, y = grid.sky_to_pixel(ra, dec)
        boxes[i] = (np.min(y) - OVERLAP_PAD, np.max(y) + OVERLAP_PAD,
                    np.min(x) - OVERLAP_PAD, np.max(x) + OVERLAP_PAD)
    return boxes


def footprint_cut_factors(footprints, grid):
    """(n,) float array: per exposure, the input pixels a tile's cut-out of it holds per
    grid pixel of the cut-out's box (:mod:`jwstrun.mosaic.cutout`): the exposure's
    pixels per grid pixel of its footprint, times the box the footprint's rotation on
    the grid makes a rectangle span (1 when aligned, 2 at 45 degrees); and the largest
    grid pixels per input pixel among them."""
    import numpy as np

    factors = np.zeros(len(footprints), dtype=float)
    per_pixel = 1.0
    for i, footprint in enumerate(footprints):
        ra, dec = np.array(footprint.vertices, dtype=float).T
        x, y = grid.sky_to_pixel(ra, dec)
        area = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
        if not area > 0:
            return None, per_pixel  # no shape to scale by: whole exposures
        box = float((np.max(x) - np.min(x)) * (np.max(y) - np.min(y)))
        density = footprint.pixels / area
        factors[i] = density * max(1.0, box / area)
        per_pixel = max(per_pixel, density ** -0.5)
    return factors, per_pixel


def _held(pixels, cut, size: int, margin: int, boxes=None, shape=None):
    """Per exposure, the pixels a tile task holds of it: the whole exposure, or (``cut``:
    :func:`footprint_cut_factors`) at most its cut-out of a whole tile with margin --
    but whole when it crosses an edge of the grid of ``shape`` (``boxes``: the
    footprints' :func:`footprint_boxes`), as a tile on that edge takes it."""
    import numpy as np

    if cut is None:
        return pixels
    from .cutout import extra_grid_pixels

    factors, per_pixel = cut
    if factors is None:
        return pixels
    side = size + 2 * margin + 2 * extra_grid_pixels(per_pixel)
    held = np.minimum(pixels, np.ceil(factors * side * side)).astype(np.int64)
    if boxes is not None and len(boxes):
        held = np.where(crossing_edge(boxes, shape), pixels, held)
    return held


def crossing_edge(boxes, shape):
    """(n,) bool array: which footprints (``boxes``: :func:`footprint_boxes`) cross an
    edge of the grid of ``shape``, or come within :data:`~jwstrun.mosaic.cutout.EDGE_TOL`
    of it: the tiles on that edge take them whole (:func:`jwstrun.mosaic.cutout.edge_box`)."""
    import numpy as np

    from .cutout import EDGE_TOL

    b = np.asarray(boxes, dtype=float).reshape(-1, 4)
    ny, nx = shape
    low = -0.5 + EDGE_TOL + OVERLAP_PAD  # the boxes are widened by OVERLAP_PAD
    return (b[:, 0] < low) | (b[:, 2] < low) | (b[:, 1] > ny - low - 1) | (b[:, 3] > nx - low - 1)


def _spans(low, high, size, margin, n, extent):
    """First and last tile index whose box with margin ``[i*size - margin, (i+1)*size +
    margin)`` (clipped to ``[0, extent)``) a box from ``low`` to ``high`` reaches (pixel
    ``i`` spans ``[i - 0.5, i + 0.5)``), and whether it reaches any."""
    import numpy as np

    first = np.clip(np.floor((low - margin + 0.5) / size), 0, n - 1).astype(np.int64)
    last = np.clip(np.floor((high + margin + 0.5) / size), 0, n - 1).astype(np.int64)
    reaches = (high >= -0.5) & (low < extent - 0.5)
    return first, last, reaches


def tile_loads(shape, size: int, margin: int, boxes, pixels):
    """Per tile (arrays of the tiles' (rows, columns)): the number of overlapping
    exposures, their summed pixels and the tile's output pixels with its margin."""
    import numpy as np

    ny, nx = shape
    n_y, n_x = -(-ny // size), -(-nx // size)
    fy, ly, in_y = _spans(boxes[:, 0], boxes[:, 1], size, margin, n_y, ny)
    fx, lx, in_x = _spans(boxes[:, 2], boxes[:, 3], size, margin, n_x, nx)
    live = in_y & in_x
    fy, ly, fx, lx = fy[live], ly[live], fx[live], lx[live]
    weights = np.asarray(pixels, dtype=np.float64)[live]
    count = np.zeros((n_y + 1, n_x + 1), dtype=np.float64)
    summed = np.zeros((n_y + 1, n_x + 1), dtype=np.float64)
    for grid, value in ((count, np.ones_like(weights)), (summed, weights)):
        np.add.at(grid, (fy, fx), value)  # a 2-d difference array, summed below
        np.add.at(grid, (ly + 1, fx), -value)
        np.add.at(grid, (fy, lx + 1), -value)
        np.add.at(grid, (ly + 1, lx + 1), value)
    count = np.rint(count.cumsum(0).cumsum(1)[:n_y, :n_x]).astype(np.int64)
    summed = np.rint(summed.cumsum(0).cumsum(1)[:n_y, :n_x])
    iy, ix = np.arange(n_y), np.arange(n_x)
    rows = np.minimum(ny, (iy + 1) * size + margin) - np.maximum(0, iy * size - margin)
    cols = np.minimum(nx, (ix + 1) * size + margin) - np.maximum(0, ix * size - margin)
    out = np.outer(rows, cols).astype(np.int64)
    _grow_at_edges(out, shape, size, margin, np.asarray(boxes, dtype=float)[live])
    return count, summed, out


def _grow_at_edges(out, shape, size: int, margin: int, boxes) -> None:
    """``out`` (each tile's output pixels) of the tiles whose box with margin lies on a
    grid edge, grown over the footprints of the exposures that reach the tile and cross
    that edge: the runner resamples such a tile over them
    (:func:`jwstrun.mosaic.cutout.edge_box`, the same rule on the exposures' WCS)."""
    import numpy as np

    from .cutout import EDGE_TOL, PAD

    ny, nx = shape
    n_y, n_x = out.shape
    if not len(boxes):
        return
    low = -0.5 + EDGE_TOL
    bottom, top = boxes[:, 0] < low, boxes[:, 1] > ny - 0.5 - EDGE_TOL
    left, right = boxes[:, 2] < low, boxes[:, 3] > nx - 0.5 - EDGE_TOL
    grown = np.column_stack([
        np.clip(np.floor(boxes[:, 0]) - PAD, 0, ny),
        np.clip(np.ceil(boxes[:, 1]) + PAD + 1, 0, ny),
        np.clip(np.floor(boxes[:, 2]) - PAD, 0, nx),
        np.clip(np.ceil(boxes[:, 3]) + PAD + 1, 0, nx)])
    rows = [i for i in range(n_y) if i * size - margin <= 0 or (i + 1) * size + margin >= ny]
    cols = [i for i in range(n_x) if i * size - margin <= 0 or (i + 1) * size + margin >= nx]
    tiles = {(i, j) for i in rows for j in range(n_x)} | {(i, j) for i in range(n_y) for j in cols}
    for i, j in sorted(tiles):
        y0, y1 = max(0, i * size - margin), min(ny, (i + 1) * size + margin)
        x0, x1 = max(0, j * size - margin), min(nx, (j + 1) * size + margin)
        crossing = (((y0 == 0) & bottom) | ((y1 == ny) & top) | ((x0 == 0) & left)
                    | ((x1 == nx) & right))
        reach = crossing & (boxes[:, 1] >= y0 - 0.5) & (boxes[:, 0] < y1 - 0.5) \
            & (boxes[:, 3] >= x0 - 0.5) & (boxes[:, 2] < x1 - 0.5)
        if reach.any():
            box = grown[reach]
            out[i, j] = int((max(y1, box[:, 1].max()) - min(y0, box[:, 0].min()))
                            * (max(x1, box[:, 3].max()) - min(x0, box[:, 2].min())))


@dataclass
class TilePlan:
    """The tile size of a tiled image3 and the memory it asks of each tile task."""

    size: int
    margin: int
    chosen: bool  # True: chosen from the budget (no tile size was given)
    share_bytes: int
    budget_bytes: int
    budget_source: str
    n_tiles: int
    n_empty: int
    worst: dict = field(default_factory=dict)  # name, bytes, inputs
    reason: str = ""
    estimates: dict = field(default_factory=dict)  # tile name -> bytes (tiles with data)

    def estimate(self, name: str) -> int | None:
        return self.estimates.get(name)

    def to_dict(self) -> dict:
        return {"tile_size": self.size, "margin": self.margin,
                "tile_size_from": "--max-memory" if self.chosen else "--tile-size",
                "share_bytes": self.share_bytes, "budget_bytes": self.budget_bytes,
                "budget_source": self.budget_source, "tiles": self.n_tiles,
                "empty_tiles": self.n_empty, "worst_tile": self.worst, "reason": self.reason}


def _worst(shape, size, margin, boxes, pixels, catalog, cut=None):
    """(estimates array, counts array, index of the worst tile with data or None)."""
    import numpy as np

    held = _held(pixels, cut, size, margin, boxes, shape)
    count, summed, out = tile_loads(shape, size, margin, boxes, held)
    biggest = int(np.max(held)) if len(held) else 0
    estimates = estimate_tile_memory(summed, count, biggest, out, catalog=catalog)
    masked = np.where(count > 0, estimates, -1)
    worst = np.unravel_index(int(np.argmax(masked)), masked.shape) if (count > 0).any() else None
    return estimates, count, worst


def _smallest(shape) -> int:
    """The smallest tile size tried: MIN_AUTO_TILE, or larger so that a grid has at most
    MAX_TILES tiles (the plan's arrays stay small), never above the grid."""
    import math

    return min(max(MIN_AUTO_TILE, math.ceil(math.sqrt(shape[0] * shape[1] / MAX_TILES))),
               max(shape))


def _largest_fitting(shape, margin, boxes, pixels, share, catalog, cut):
    """The largest tile size in [MIN_AUTO_TILE, grid] whose worst tile fits ``share``
    (None when even MIN_AUTO_TILE does not): a binary search, then a step down past
    any size whose cut happens to be worse (the worst tile is not strictly monotonic)."""
    def fits(size):
        estimates, count, worst = _worst(shape, size, margin, boxes, pixels, catalog, cut)
        return worst is None or estimates[worst] <= share

    low, high = _smallest(shape), max(shape)
    if not fits(low):
        return None
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low


def plan_tiles(product: str, grid_shape, boxes, pixels, share: int, budget: int,
               budget_source: str, *, tile_size: int | None = None,
               margin: int = DEFAULT_MARGIN, catalog: bool = True, jobs: int = 1,
               cut=None) -> TilePlan:
    """The tile plan of one association on a grid of ``grid_shape`` whose exposures
    cover ``boxes`` (:func:`footprint_boxes`) with ``pixels`` each; see the module
    docstring.  ``cut``: :func:`footprint_cut_factors` when the tiles resample cut-outs
    (None: whole exposures).  Raises :class:`TilesRefused` (an InputError) when a tile
    cannot fit."""
    import numpy as np

    shape = tuple(int(v) for v in grid_shape)
    pixels = np.asarray(pixels, dtype=np.int64)
    split = f" ({format_bytes(budget)} / {jobs} concurrent tasks)" if jobs > 1 else ""
    chosen = tile_size is None
    if chosen:
        tile_size = _largest_fitting(shape, margin, boxes, pixels, share, catalog, cut)
        if tile_size is None:
            _refuse(product, shape, _smallest(shape), margin, boxes, pixels,
                    share, budget_source, split, catalog, cut, chosen=True)
    estimates, count, worst = _worst(shape, tile_size, margin, boxes, pixels, catalog, cut)
    if worst is not None and estimates[worst] > share:
        _refuse(product, shape, tile_size, margin, boxes, pixels, share, budget_source, split,
                catalog, cut, chosen=False)
    n_x = count.shape[1]
    digits = max(3, len(str(max(count.shape) - 1)))
    names = {(iy, ix): tile_name(iy, ix, digits) for iy in range(count.shape[0])
             for ix in range(n_x)}
    worst_info = {} if worst is None else {
        "name": names[worst], "bytes": int(estimates[worst]), "inputs": int(count[worst])}
    how = ("the largest tile size whose worst tile fits" if chosen else "--tile-size")
    reason = (f"{how}: tile {tile_size} pixels, worst tile {worst_info.get('name', '-')} "
              f"estimated {format_bytes(worst_info.get('bytes'))}; share of the budget "
              f"{format_bytes(share)}{split}")
    return TilePlan(
        size=int(tile_size), margin=margin, chosen=chosen, share_bytes=int(share),
        budget_bytes=int(budget), budget_source=budget_source, n_tiles=int(count.size),
        n_empty=int((count == 0).sum()), worst=worst_info, reason=reason,
        estimates={names[k]: int(estimates[k]) for k in zip(*np.nonzero(count > 0))})


def _refuse(product, shape, size, margin, boxes, pixels, share, budget_source, split, catalog,
            cut, *, chosen: bool):
    estimates, count, worst = _worst(shape, size, margin, boxes, pixels, catalog, cut)
    digits = max(3, len(str(max(count.shape) - 1)))
    name = tile_name(*worst, digits)
    need, n_inputs = format_bytes(int(estimates[worst])), int(count[worst])
    numbers = (f"tile {name} overlaps {n_inputs} exposure{'s' if n_inputs != 1 else ''} and "
               f"needs an estimated {need}, beyond the share of the budget "
               f"{format_bytes(share)}{split}; the budget is {budget_source}.")
    if chosen:
        raise TilesRefused(
            f"{product}: no tile size fits the memory budget: even with tiles of {size} "
            f"pixels, {numbers} The exposures one tile overlaps must fit in memory together: "
            "raise the memory budget (--max-memory), run fewer tasks at once (-j), or split "
            "the association. Nothing was run.")
    raise TilesRefused(
        f"{product}: with tiles of {size} pixels, {numbers} Give a smaller --tile-size, or "
        "leave it out to let --max-memory choose one. Nothing was run.")
