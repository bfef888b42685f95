"""Sky tiles: a mosaic grid cut into fixed tiles (``jwstrun image3 --tile-size``).

A grid of ``(ny, nx)`` pixels and a tile size of ``N`` pixels give tiles on fixed
boundaries: tile ``(iy, ix)`` covers the grid pixels ``[iy*N, (iy+1)*N)`` in y and
``[ix*N, (ix+1)*N)`` in x (its *core*; the last row and column are cut by the grid's
edge).  The boundaries depend on the grid and ``N`` alone, never on the data: the
same grid and tile size always give the same tiles, whatever the inputs.

Each tile is resampled with a *margin* of ``margin`` pixels on every side (clipped to
the grid), then cropped to its core: drizzle treats input pixels cut by the output's
edge differently, so the margin makes the core identical to the same pixels of the
single-shot mosaic (at the grid's own edge the tile grows over the exposures crossing
it: :func:`jwstrun.mosaic.cutout.edge_box`, :meth:`Tile.with_margin_box`); the catalogue of a tile is made on the image with margin and keeps
the sources whose centroid the tile owns (:func:`owner`).

Names: tile ``(iy, ix)`` is ``t<iy><ix>``, each index zero-padded to three digits (or
more when a grid has over 1000 tiles along an axis), row first: ``t003005`` is the
fourth row (y) and sixth column (x).  Its products are
``<product>_t003005_i2d.fits``, ``_segm.fits``, ``_cat.ecsv``; the header keywords
:data:`TILE_KEYWORDS` hold the index and the core box.

Nothing here imports jwst or astropy: planning stays fast.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["Tile", "cut_tiles", "parse_tile_size", "check_tile_size", "owner", "tile_name",
           "DEFAULT_MARGIN", "MIN_MARGIN", "GRID_PADDING", "TILE_KEYWORDS", "TILE_ASN_KEY",
           "global_context"]

#: Pixels resampled around each tile's core.  Drizzle's handling of input pixels cut
#: by the output's edge changes a 2-pixel border (docs/workflows/tiles.md): 4 pixels
#: make the core identical to the single-shot mosaic; the catalogue needs the margin to
#: hold the whole of a source whose centroid the tile owns, hence the default.
DEFAULT_MARGIN = 32
MIN_MARGIN = 4

#: Padding of the grid a tiled run makes when it is given none (``jwstrun grid
#: --padding``).  An exposure that crosses the grid's edge is resampled whole over its
#: footprint by every tile on that edge (mosaic.cutout.edge_box: drizzle's clip at the
#: edge depends on the whole output window), and on resample's tight default grid every
#: exposure at the border touches an edge.  1 arcsec also holds the shifts tweakreg
#: makes after the grid is planned from the ``_cal`` footprints.
GRID_PADDING = "1arcsec"

#: the key of a tile's association (OUTDIR/tiles/<product>_<tile>_asn.json) that
#: describes the tile: grid file, tile, each member's index in the whole association
TILE_ASN_KEY = "jwstrun_tile"

#: Header keywords of a tile's products (primary header), with their comments.
TILE_KEYWORDS = {
    "TILEID": "tile name, t<row><column> (jwstrun)",
    "TILEY0": "first grid row of the tile (0-based)",
    "TILEX0": "first grid column of the tile (0-based)",
    "TILENY": "rows of the tile",
    "TILENX": "columns of the tile",
    "TILESIZE": "tile size in grid pixels",
}

_ANGLE_UNITS = {"arcsec": 1.0, '"': 1.0, "as": 1.0, "arcmin": 60.0, "'": 60.0, "am": 60.0,
                "deg": 3600.0, "d": 3600.0}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z\"']*)\s*$")


def tile_name(iy: int, ix: int, digits: int = 3) -> str:
    """``t<iy><ix>``, each index zero-padded to ``digits``."""
    return f"t{iy:0{digits}d}{ix:0{digits}d}"


@dataclass(frozen=True)
class Tile:
    """One tile of a grid: its index, name, core box and box with margin (grid pixels,
    0-based, half-open: ``y0 <= y < y1``)."""

    iy: int
    ix: int
    name: str
    y0: int
    y1: int
    x0: int
    x1: int
    #: the box with margin, clipped to the grid
    my0: int
    my1: int
    mx0: int
    mx1: int
    size: int

    @property
    def index(self) -> tuple[int, int]:
        return (self.iy, self.ix)

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) of the core."""
        return (self.y1 - self.y0, self.x1 - self.x0)

    @property
    def margin_shape(self) -> tuple[int, int]:
        """(ny, nx) of the box with margin."""
        return (self.my1 - self.my0, self.mx1 - self.mx0)

    @property
    def core_in_margin(self) -> tuple[slice, slice]:
        """The core as slices of an array of the box with margin."""
        return (slice(self.y0 - self.my0, self.y1 - self.my0),
                slice(self.x0 - self.mx0, self.x1 - self.mx0))

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.y0, self.y1, self.x0, self.x1)

    @property
    def margin_box(self) -> tuple[int, int, int, int]:
        return (self.my0, self.my1, self.mx0, self.mx1)

    def with_margin_box(self, box: tuple[int, int, int, int]) -> "Tile":
        """This tile resampled over ``box`` (``(y0, y1, x0, x1)``, holding its core)
        instead of its box with margin."""
        from dataclasses import replace

        my0, my1, mx0, mx1 = (int(v) for v in box)
        if not (my0 <= self.y0 and self.y1 <= my1 and mx0 <= self.x0 and self.x1 <= mx1):
            raise ValueError(f"{box} does not hold the core of tile {self.name} {self.box}")
        return replace(self, my0=my0, my1=my1, mx0=mx0, mx1=mx1)

    def header(self) -> dict:
        """The :data:`TILE_KEYWORDS` of this tile: keyword -> (value, comment)."""
        values = {"TILEID": self.name, "TILEY0": self.y0, "TILEX0": self.x0,
                  "TILENY": self.shape[0], "TILENX": self.shape[1], "TILESIZE": self.size}
        return {k: (values[k], TILE_KEYWORDS[k]) for k in TILE_KEYWORDS}

    def to_dict(self) -> dict:
        return {"name": self.name, "index": [self.iy, self.ix], "box": list(self.box),
                "margin_box": list(self.margin_box), "size": self.size}

    @classmethod
    def from_dict(cls, data: dict) -> "Tile":
        (iy, ix), (y0, y1, x0, x1) = data["index"], data["box"]
        my0, my1, mx0, mx1 = data["margin_box"]
        return cls(iy, ix, data["name"], y0, y1, x0, x1, my0, my1, mx0, mx1, data["size"])


def cut_tiles(grid_shape: tuple[int, int], tile_size: int, margin: int = DEFAULT_MARGIN
              ) -> list[Tile]:
    """The tiles of a grid of ``grid_shape`` (ny, nx) with square tiles of ``tile_size``
    pixels, row by row; see the module docstring.  ``tile_size`` is checked against the
    grid (:func:`check_tile_size`)."""
    ny, nx = (int(v) for v in grid_shape)
    check_tile_size(tile_size, (ny, nx))
    if margin < 0:
        raise ConfigError(f"tile margin {margin}: must be at least 0 pixels.")
    n_y, n_x = -(-ny // tile_size), -(-nx // tile_size)
    digits = max(3, len(str(max(n_y, n_x) - 1)))
    tiles = []
    for iy in range(n_y):
        for ix in range(n_x):
            y0, x0 = iy * tile_size, ix * tile_size
            y1, x1 = min(ny, y0 + tile_size), min(nx, x0 + tile_size)
            tiles.append(Tile(iy, ix, tile_name(iy, ix, digits), y0, y1, x0, x1,
                              max(0, y0 - margin), min(ny, y1 + margin),
                              max(0, x0 - margin), min(nx, x1 + margin), tile_size))
    return tiles


def check_tile_size(tile_size: int, grid_shape: tuple[int, int], given: str | None = None) -> None:
    """:class:`ConfigError` for a tile size below one pixel or larger than the grid
    (whose one tile would then be the whole grid: run without tiles)."""
    ny, nx = grid_shape
    what = f"tile_size={given if given is not None else tile_size}"
    if tile_size < 1:
        raise ConfigError(f"{what}: a tile must be at least 1 pixel of the grid. "
                          "Give a larger tile size.")
    if tile_size > max(ny, nx):
        raise ConfigError(f"{what} is {tile_size} pixels, larger than the grid ({nx} x {ny} "
                          "pixels). Give a smaller tile size, or run without one.")


def parse_tile_size(value, pixel_scale: float | None = None) -> int:
    """Pixels of a tile from ``value``: an integer (pixels, ``512`` or ``512px``) or an
    angle (``2arcmin``, ``30arcsec``, ``0.1deg``, ``2'``, ``30"``) converted with the
    grid's ``pixel_scale`` (arcsec per pixel) and rounded to the nearest pixel.  The
    result may be below 1 (``check_tile_size`` refuses it with the grid's shape)."""
    text = str(value).strip()
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or (unit not in _ANGLE_UNITS and unit not in ("", "px", "pix", "pixels")):
        raise ConfigError(
            f"tile_size={text!r}: not a size; give pixels (512) or an angle "
            "(2arcmin, 30arcsec, 0.05deg).")
    number = float(match.group(1))
    if unit in _ANGLE_UNITS:
        if not pixel_scale:
            raise ConfigError(f"tile_size={text!r}: an angle needs the grid's pixel scale.")
        return int(math.floor(number * _ANGLE_UNITS[unit] / pixel_scale + 0.5))
    if number != int(number):
        raise ConfigError(f"tile_size={text!r}: pixels must be a whole number.")
    return int(number)


def owner(y: float, x: float, tile_size: int, grid_shape: tuple[int, int]) -> tuple[int, int]:
    """The index (iy, ix) of the tile owning a source whose centroid is at grid pixel
    coordinates (y, x): pixel ``i`` spans ``[i - 0.5, i + 0.5)``, so the tile whose core
    holds the pixel containing the centroid; a centroid beyond the grid's edge belongs
    to the edge tile.  Every position has exactly one owner."""
    ny, nx = grid_shape
    n_y, n_x = -(-ny // tile_size), -(-nx // tile_size)
    iy = min(n_y - 1, max(0, math.floor((y + 0.5) / tile_size)))
    ix = min(n_x - 1, max(0, math.floor((x + 0.5) / tile_size)))
    return (iy, ix)


def global_context(con, member_index: list[int], n_members: int):
    """A tile's context planes (resample's CON: bit ``i`` of plane ``i // 32`` set where
    the tile's ``i``-th input contributes) renumbered so that the bits name the
    association's members (``member_index``: the tile's inputs, in order, as indices of
    the association's members), as in the single-shot mosaic."""
    import numpy as np

    planes = np.zeros(((n_members - 1) // 32 + 1, *con.shape[1:]), dtype=np.int32)
    for local, member in enumerate(member_index):
        bit = (con[local // 32] >> (local % 32)) & 1
        planes[member // 32] |= (bit << (member % 32)).astype(np.int32)
    return planes
