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

The context image (CON) is copied as it is: a tile's bits already number the
whole association's members (the tile pipeline renumbers them,
:mod:`jwstrun.runner._tile_pipeline`), so CON means what a single-shot
mosaic's does.  HDRTAB lists each input once, in the association's order
(``members``, else the file names sorted).
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

    # the tile's metadata are valid already; the model is checked once, when written
    model = datamodels.ImageModel(validate_on_assignment=False)
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
    """The tiles' extensions, input names (in order), S_REGIONs, times and context
    planes; headers only."""
    from astropy.io import fits

    extensions, names, sregions, times, first, planes = set(), {}, [], [], None, 1
    for piece in pieces:
        if piece.path is None:
            continue
        try:
            with fits.open(piece.path, memmap=True) as hdul:
                extensions.update(h.name for h in hdul if h.name in IMAGE_EXTENSIONS)
                if "CON" in hdul:
                    planes = max(planes, int(hdul["CON"].header.get("NAXIS3", 1)))
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
    return (first, [e for e in IMAGE_EXTENSIONS if e in extensions], names, sregions, times,
            planes)


def _meta_hdus(first, grid_wcs, shape, sregions, times, hdrtab, filename: str):
    """The headers (PRIMARY, SCI, ERR...), HDRTAB and ASDF extension stdatamodels writes
    for the mosaic's metadata, built without any image array."""
    from astropy.io import fits
    from jwst.model_blender._tablebuilder import table_to_schema
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
    model.meta.filename = filename
    if hdrtab is not None:  # as jwst's ModelBlender.finalize_model does
        schema = table_to_schema(hdrtab)
        model.add_schema_entry("hdrtab", schema)
        model.hdrtab = fits_support.from_fits_hdu(fits.BinTableHDU.from_columns(hdrtab), schema)
    hdul = fits_support.to_fits(model._instance, model._schema)
    crpix = (model.meta.wcsinfo.crpix1, model.meta.wcsinfo.crpix2)
    model.close()
    return hdul, crpix


def _image_header(meta_hdul, name: str, dtype: str, shape: tuple[int, ...]):
    """The extension header of one full-size image: stdatamodels' keywords for it (SCI
    holds the WCS) with BITPIX/NAXISn of the mosaic."""
    from astropy.io import fits

    data_shape = tuple(int(n) for n in shape)
    hdu = fits.ImageHDU(name=name)
    if name in meta_hdul:
        for card in meta_hdul[name].header.cards:
            if card.keyword not in ("XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "EXTNAME"):
                hdu.header.append(card)
    header = hdu.header
    header["BITPIX"] = {">f4": -32, ">i4": 32}[dtype]
    header["NAXIS"] = len(data_shape)
    for i, n in enumerate(reversed(data_shape), start=1):
        header.set(f"NAXIS{i}", n, after="NAXIS" if i == 1 else f"NAXIS{i - 1}")
    return header


def _table_bytes(hdu) -> bytes:
    """One table extension as bytes (header and padded data), as astropy writes it."""
    from astropy.io import fits

    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
    return buffer.getvalue()[_BLOCK:]  # an empty primary header is one block


def _hdrtab(pieces, names: dict, order: list[str]):
    """HDRTAB rows of the mosaic: one per input, in ``order`` (from the tiles' HDRTABs)."""
    from astropy.io import fits
    from astropy.table import Table, vstack

    rows, seen = [], set()
    for piece in pieces:
        if piece.path is None or not names.get(str(piece.path)):
            continue
        with fits.open(piece.path, memmap=True) as hdul:
            table = Table(hdul["HDRTAB"].data)
        keep = [i for i, n in enumerate(names[str(piece.path)]) if n not in seen]
        seen.update(names[str(piece.path)])
        if keep:
            rows.append(table[keep])
    if not rows:
        return None
    table = vstack(rows, join_type="inner", metadata_conflicts="silent")
    rank = {n: i for i, n in enumerate(order)}
    table = table[np.argsort([rank[str(n).strip()] for n in table["FILENAME"]], kind="stable")]
    return table.as_array()


def _layout(meta_hdul, extensions, shape, n_con):
    """(header bytes, data offset, dtype, full shape) of each HDU, and the table HDUs."""
    from astropy.io import fits

    primary = fits.PrimaryHDU(header=meta_hdul[0].header.copy()).header
    primary["EXTEND"] = True
    parts, offset = [("PRIMARY", primary.tostring().encode("ascii"), None, None, None)], 0
    offset = len(parts[0][1])
    for name in extensions:
        dtype = IMAGE_EXTENSIONS[name][0]
        full = (n_con, *shape) if name == "CON" else tuple(shape)
        header = _image_header(meta_hdul, name, dtype, full).tostring().encode("ascii")
        data_at = offset + len(header)
        parts.append((name, header, data_at, dtype, full))
        offset = data_at + _padded(int(np.prod(full)) * 4)
    return parts, offset


def assemble_mosaic(pieces: list[TilePiece], grid, output: str | os.PathLike,
                    members: list[str] | None = None) -> Path:
    """Copy the tiles' products into one ``_i2d`` mosaic at ``output`` (atomically).

    ``pieces`` cover the grid (every pixel owned by one piece; a piece without a
    product gets the fill values); ``grid`` the :class:`~jwstrun.mosaic.gridfile.Grid`
    they were cut from; ``members`` the association's input file names in its order
    (HDRTAB's).  Peak memory: one tile's arrays.
    """
    shape = tuple(int(n) for n in grid.shape)
    first, extensions, names, sregions, times, planes = _scan(pieces)
    order = [Path(m).name for m in members] if members else sorted(
        {n for ns in names.values() for n in ns})
    for path, tile_names in names.items():
        missing = sorted(set(tile_names) - set(order))
        if missing:
            raise InputError(f"{path}: resampled {missing[0]}, which is not a member of the "
                             "association being assembled. Assemble one association's tiles.")
    hdrtab = _hdrtab(pieces, names, order)
    meta_hdul, crpix = _meta_hdus(first, grid.wcs, shape, sregions, times, hdrtab,
                                  Path(output).name)
    n_con = max(-(-len(order) // 32), planes)
    parts, end = _layout(meta_hdul, extensions, shape, n_con)
    tables = [meta_hdul[n] for n in ("HDRTAB", "ASDF") if n in meta_hdul]

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            fd = handle.fileno()
            for _, header, data_at, _, _ in parts:
                os.pwrite(fd, header, (data_at or len(header)) - len(header))
            handle.seek(end)
            for table in tables:
                handle.write(_table_bytes(table))
            for piece in pieces:
                _copy_piece(fd, piece, parts, crpix)

    result = atomic_write(output, write)
    log.info("assembled %d tiles into %s (%d x %d pixels)", len(pieces), result, shape[1], shape[0])
    return result


def _write_block(fd: int, block: np.ndarray, data_at: int, full: tuple, box) -> None:
    """``block`` (planes, rows, columns of ``box``) into its place, one pwrite per row."""
    y0, y1, x0, x1 = box
    ny, nx = full[-2:]
    for plane in range(block.shape[0]):
        for row in range(y1 - y0):
            at = data_at + ((plane * ny + y0 + row) * nx + x0) * 4
            os.pwrite(fd, block[plane, row].tobytes(), at)


def _copy_piece(fd: int, piece: TilePiece, parts, crpix) -> None:
    """One tile's owned box, every extension: its pixels, or the fill values."""
    from astropy.io import fits

    y0, y1, x0, x1 = piece.box
    if y1 <= y0 or x1 <= x0:
        return
    hdul = fits.open(piece.path, memmap=True) if piece.path is not None else None
    try:
        if hdul is not None:
            oy, ox = _origin(piece, hdul["SCI"].header, crpix)
            ty, tx = hdul["SCI"].shape
            if y0 - oy < 0 or x0 - ox < 0 or y1 - oy > ty or x1 - ox > tx:
                raise InputError(
                    f"{piece.path}: does not cover its tile's pixels {x0}:{x1} x {y0}:{y1} of "
                    "the grid. Assemble the products of one 'jwstrun image3 --tile-size' run.")
        for name, _, data_at, dtype, full in parts[1:]:
            planes = full[0] if name == "CON" else 1
            shape = (planes, y1 - y0, x1 - x0)
            if hdul is None or name not in hdul:
                block = np.full(shape, IMAGE_EXTENSIONS[name][1], dtype=dtype)
            else:
                cut = (slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox))
                if name == "CON":  # planes beyond the tile's are zero
                    block = np.zeros(shape, dtype=dtype)
                    tile_con = np.asarray(hdul[name].section[(slice(None), *cut)])
                    block[:tile_con.shape[0]] = tile_con[:planes]
                else:
                    block = np.asarray(hdul[name].section[cut])[None]
                block = block.astype(dtype, copy=False)
            _write_block(fd, block, data_at, full, piece.box)
            del block
    finally:
        if hdul is not None:
            hdul.close()
