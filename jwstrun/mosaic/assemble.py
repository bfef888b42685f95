"""``--assemble``: the tiles' ``_i2d`` products copied into one mosaic file, never held in memory.

The mosaic is written the way a FITS file is laid out on disk: every header is
written first, with each image extension's full size reserved (a sparse file),
then each tile's pixels are copied into their place with ``os.pwrite``, row by
row, one tile at a time.  The peak memory is one tile's arrays, whatever the
size of the mosaic.  Nothing is resampled: the pixels are the tiles' pixels.

What the file holds (the layout of resample's own ``_i2d``): SCI, ERR, CON,
WHT and the VAR_POISSON / VAR_RNOISE / VAR_FLAT planes the tiles have, HDRTAB
(one row per input exposure, in the association's order) and the ASDF
extension with the full grid's gwcs, so ``datamodels.open`` reads the file as
an :class:`~stdatamodels.jwst.datamodels.ImageModel` and astropy reads the
FITS-WCS keywords of the SCI header.  The metadata are the first tile's, with
the grid's WCS (``wcsinfo`` written by resample's own ``update_fits_wcsinfo``),
the tiles' S_REGIONs combined (stcal's ``combine_sregions``, as resample does),
the earliest start and latest end time of the tiles.  Pixels no tile covers
hold resample's fill values: NaN in SCI, ERR and the variances, 0 in WHT and CON.

The context image (CON) numbers the inputs of each resample call: bit *k* of a
tile is the *k*-th input *of that tile*.  Each tile's bits are renumbered to
the input's place in the whole association (``members``, else the tiles'
HDRTAB file names in sorted order), so CON means what a single-shot mosaic's
does.
"""

from __future__ import annotations

import copy
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._io import atomic_write
from ..errors import InputError

__all__ = ["TilePiece", "assemble_mosaic", "IMAGE_EXTENSIONS"]

log = logging.getLogger(__name__)

#: the i2d image extensions copied, with their on-disk type and fill value
IMAGE_EXTENSIONS = {
    "SCI": (">f4", np.nan),
    "ERR": (">f4", np.nan),
    "CON": (">i4", 0),
    "WHT": (">f4", 0.0),
    "VAR_POISSON": (">f4", np.nan),
    "VAR_RNOISE": (">f4", np.nan),
    "VAR_FLAT": (">f4", np.nan),
}
_BLOCK = 2880


@dataclass
class TilePiece:
    """One tile of the mosaic: the grid pixels it owns and its product."""

    #: (y0, y1, x0, x1): the grid pixels this tile owns (its margins excluded)
    box: tuple[int, int, int, int]
    #: its ``_i2d`` product; None when the tile held no data (its pixels get the fill values)
    path: str | os.PathLike | None
    #: the grid pixel (y, x) of the product's pixel [0, 0]; read from its WCS when None
    origin: tuple[int, int] | None = None


def _padded(nbytes: int) -> int:
    return -(-nbytes // _BLOCK) * _BLOCK


def _grid_model(template, grid_wcs, shape):
    """An ImageModel with ``template``'s metadata, the grid's gwcs and its FITS-WCS keywords."""
    from jwst.resample.resample import ResampleImage
    from stdatamodels.jwst import datamodels

    model = datamodels.ImageModel()
    model._instance["meta"] = copy.deepcopy(template._instance["meta"])
    wcs = copy.deepcopy(grid_wcs)
    wcs.array_shape = tuple(shape)
    wcs.bounding_box = ((-0.5, shape[1] - 0.5), (-0.5, shape[0] - 0.5))
    model.meta.wcs = wcs
    ResampleImage.update_fits_wcsinfo(model)
    return model


def _combined_sregion(sregions: list[str], wcs) -> str | None:
    from jwst.resample.resample_utils import multi_sregion_to_list
    from stcal.alignment import combine_sregions

    polygons = [p for s in sregions if s for p in multi_sregion_to_list(s)]
    if not polygons:
        return None
    try:
        return combine_sregions(polygons, wcs.get_transform("detector", "world"),
                                intersect_footprint=wcs.footprint())
    except ValueError as exc:  # as resample: the mosaic then has no S_REGION
        log.warning("could not combine the tiles' S_REGIONs (%s); the mosaic has none", exc)
        return None


def _origin(piece: TilePiece, header, crpix: tuple[float, float]) -> tuple[int, int]:
    """Where the tile's pixel [0, 0] lies in the grid: from the CRPIX difference."""
    if piece.origin is not None:
        return tuple(piece.origin)
    dx = crpix[0] - float(header["CRPIX1"])
    dy = crpix[1] - float(header["CRPIX2"])
    ox, oy = round(dx), round(dy)
    if abs(dx - ox) > 1e-3 or abs(dy - oy) > 1e-3:
        raise InputError(
            f"{piece.path}: its WCS is not on the mosaic's grid (CRPIX off by a fraction of a "
            "pixel). Assemble only tiles made by one 'jwstrun image3 --tile-size' run.")
    return oy, ox


def _input_names(hdul) -> list[str]:
    if "HDRTAB" not in hdul:
        return []
    return [str(n).strip() for n in hdul["HDRTAB"].data["FILENAME"]]


def _scan(pieces: list[TilePiece]):
    """The tiles' extensions, input names (in order), S_REGIONs and times; headers only."""
    from astropy.io import fits

    extensions, names, sregions, times, first = set(), {}, [], [], None
    for piece in pieces:
        if piece.path is None:
            continue
        try:
            with fits.open(piece.path, memmap=True) as hdul:
                extensions.update(h.name for h in hdul if h.name in IMAGE_EXTENSIONS)
                names[str(piece.path)] = _input_names(hdul)
                sregions.append(hdul["SCI"].header.get("S_REGION", ""))
                prim = hdul[0].header
                times.append((prim.get("EXPSTART"), prim.get("EXPEND")))
                first = first or piece.path
        except (OSError, KeyError) as exc:
            raise InputError(f"{piece.path}: not a readable _i2d product ({exc}). Re-run its "
                             "tile (jwstrun image3 resumes the missing ones).") from exc
    if first is None:
        raise InputError("no tile holds data: there is nothing to assemble.")
    return first, [e for e in IMAGE_EXTENSIONS if e in extensions], names, sregions, times


def _meta_hdus(first, grid_wcs, shape, sregions, times):
    """The headers (PRIMARY, SCI, ERR...) and ASDF extension stdatamodels writes for the
    mosaic's metadata, built without any array."""
    from stdatamodels import fits_support
    from stdatamodels.jwst import datamodels

    with datamodels.open(first) as template:
        model = _grid_model(template, grid_wcs, shape)
    model.meta.wcsinfo.s_region = _combined_sregion(sregions, model.meta.wcs)
    starts = [t[0] for t in times if t[0] is not None]
    ends = [t[1] for t in times if t[1] is not None]
    if starts:
        model.meta.exposure.start_time = min(starts)
    if ends:
        model.meta.exposure.end_time = max(ends)
    model.meta.filename = None
    hdul = fits_support.to_fits(model._instance, model._schema)
    crpix = (model.meta.wcsinfo.crpix1, model.meta.wcsinfo.crpix2)
    model.close()
    return hdul, crpix
