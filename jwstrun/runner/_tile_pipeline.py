"""The worker side of one sky tile (``jwstrun image3 --tile-size``; docs/workflows/tiles.md).

:class:`TilePipeline` is an stpipe Pipeline of jwst's own ``resample`` and
``source_catalog`` steps, the last two steps of calwebb_image3, run on one tile of the
grid.  Its input is the tile's association (written by :mod:`._tiles`): the ``_crf``
files whose footprints overlap the tile, and a ``jwstrun_tile`` entry naming the grid
file, the tile and each member's index in the whole association.  It

1. cuts each ``_crf`` to the part that can reach the tile (:mod:`..mosaic.cutout`),
   but for one crossing a grid edge the tile lies on: that one is used whole and the
   tile's window grows over its footprint, so that drizzle keeps the same input pixels
   at the grid's edge as in the single-shot mosaic
   (:func:`~jwstrun.mosaic.cutout.edge_box`);
2. writes that part of the grid (the tile with its margin, or the grown window) as a
   gwcs ASDF file (the grid's own transform with CRPIX moved by the window's origin,
   and the grid's pixel scale: resample derives the flux scale from it) and runs
   ResampleStep onto it (its own ``output_wcs`` parameter);
3. crops the result to the tile's core (SCI, ERR, WHT, CON, VAR_*), numbers the
   context bits as the whole association's members (the single-shot mosaic's CON),
   and writes ``<product>_<tile>_i2d.fits`` with the tile keywords
   (:data:`jwstrun.mosaic.tiles.TILE_KEYWORDS`);
4. runs SourceCatalogStep on the image with margin and keeps the sources whose
   centroid the tile owns (:func:`jwstrun.mosaic.tiles.owner`), their pixel
   positions in the cropped tile; the segmentation map is cropped the same way, the
   labels of sources left to a neighbouring tile cleared.

This module imports jwst: only workers load it (``Stage.load_class``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from astropy.io import fits
from jwst.resample.resample_step import ResampleStep
from jwst.source_catalog.source_catalog_step import SourceCatalogStep
from jwst.stpipe import Pipeline
from stdatamodels.jwst import datamodels

from ..mosaic.tiles import TILE_ASN_KEY as TILE_KEY
from ..mosaic.tiles import Tile, global_context, owner
from ..mosaic.gridfile import read_grid

__all__ = ["TilePipeline"]

#: under stpipe's logger, so that the records land in the tile task's log file
#: (runner._task_logging) beside the steps' own
log = logging.getLogger("stpipe.jwstrun_tile")

#: the ownership rule, as recorded in each tile catalogue's meta
OWNERSHIP_RULE = (
    "a source is kept only in the tile whose core holds the grid pixel containing its "
    "centroid; the catalogue was made on the tile with its margin")


class TilePipeline(Pipeline):
    """Resample the ``_crf`` files of one tile onto the tile's part of the grid, then
    make its source catalogue (see the module docstring)."""

    class_alias = "jwstrun_tile"

    spec = """
    """

    step_defs = {"resample": ResampleStep, "source_catalog": SourceCatalogStep}

    def process(self, input_data):
        path = Path(input_data)
        asn = json.loads(path.read_text())
        info = asn[TILE_KEY]
        tile = Tile.from_dict(info["tile"])
        name = asn["products"][0]["name"]
        out = Path(self.output_dir or ".")
        grid = read_grid(info["grid"])
        inputs, member_index, window = _tile_inputs(path, asn, grid, tile, info,
                                                    self.resample.pixmap_stepsize)
        tile = tile.with_margin_box(window)
        margin_grid = out.parent / f"{tile.name}_grid.asdf"
        grid.sub_grid(*tile.margin_box).write(margin_grid)
        self.resample.output_wcs = str(margin_grid)
        self.resample.save_results = False
        self.source_catalog.save_results = True
        self.source_catalog.output_dir = str(out)
        self.output_file = name
        with self.resample.run(inputs) as mosaic:
            core = mosaic.copy()
            _crop(core, tile, grid, member_index, int(info["n_members"]))
            i2d = out / f"{name}_i2d.fits"
            core.save(i2d)
            core.close()
            _add_keywords(i2d, tile)
            self.source_catalog.run(mosaic)
        _keep_owned(out, name, tile, grid)
        return None


def _tile_inputs(path: Path, asn: dict, grid, tile: Tile, info: dict, stepsize):
    """The tile's ``_crf`` files as a ModelLibrary, each one's index in the whole
    association, and the box of the grid to resample (the tile's box with margin,
    grown over the footprint of every exposure that crosses a grid edge that box lies
    on).

    Each exposure is cut to the part that can reach that box
    (:mod:`jwstrun.mosaic.cutout`), but for one that crosses the grid's edge (drizzle's
    handling of the input pixels cut by the edge depends on the input's box: see
    :func:`~jwstrun.mosaic.cutout.edge_box`) and when resample interpolates a sparse
    pixel map (``pixmap_stepsize > 1``): those are used whole.  The association's
    path when no pixel reaches the tile."""
    from jwst.datamodels import ModelLibrary

    from ..mosaic.cutout import cutout, edge_box, input_box, open_mapped

    sparse = stepsize is not None and stepsize > 1
    kept, window = [], list(tile.margin_box)
    members = asn["products"][0]["members"]
    for member, number in zip(members, info["member_index"], strict=True):
        name = Path(member["expname"]).name
        model, hdul = open_mapped(path.parent / member["expname"])  # no array read yet
        wcs, shape = model.meta.wcs, model.data.shape
        box = input_box(wcs, shape, grid.wcs, tile.margin_box)
        if box is None:
            log.info("%s: no pixel reaches tile %s", name, tile.name)
            model.close()
            hdul.close()
            continue
        edge = edge_box(wcs, shape, grid.shape, grid.wcs, tile.margin_box)
        if edge is not None:
            log.info("%s crosses the grid's edge: used whole, tile %s resampled over its "
                     "footprint (grid rows %d:%d, columns %d:%d)", name, tile.name, *edge)
            window = [min(window[0], edge[0]), max(window[1], edge[1]),
                      min(window[2], edge[2]), max(window[3], edge[3])]
        kept.append((model, hdul, number, sparse or edge is not None, name, box))
    if not kept:  # footprints overlap, no pixel lands: resample the whole files
        return str(path), list(info["member_index"]), tile.margin_box
    grown = tuple(window) != tuple(tile.margin_box)
    for model, hdul, _, whole, name, box in kept:
        if not whole:
            if grown:
                box = input_box(model.meta.wcs, model.data.shape, grid.wcs, tuple(window))
            log.info("%s: rows %d:%d, columns %d:%d reach tile %s", name, *box, tile.name)
            cutout(model, box)
            hdul.close()  # the model's arrays are copies of the rows it needs
    return (ModelLibrary([k[0] for k in kept], on_disk=False),
            [k[2] for k in kept], tuple(window))


def _crop(model, tile: Tile, grid, member_index: list[int], n_members: int) -> None:
    """``model`` (the tile with margin) cut to the tile's core, on the core's grid."""
    ys, xs = tile.core_in_margin
    for attr in ("data", "err", "wht", "dq", "var_rnoise", "var_poisson", "var_flat"):
        array = getattr(model, attr, None) if model.hasattr(attr) else None
        if array is not None and np.ndim(array) == 2 and array.size:
            setattr(model, attr, np.ascontiguousarray(array[ys, xs]))
    if model.hasattr("con") and model.con is not None and model.con.size:
        model.con = global_context(model.con[:, ys, xs], member_index, n_members)
    core = grid.sub_grid(*tile.box)
    model.meta.wcs = core.wcs
    from jwst.assign_wcs.util import update_s_region_imaging
    from jwst.resample.resample import ResampleImage

    ResampleImage.update_fits_wcsinfo(model)
    update_s_region_imaging(model)


def _add_keywords(path: Path, tile: Tile) -> None:
    with fits.open(path, mode="update") as hdul:
        for key, (value, comment) in tile.header().items():
            hdul[0].header[key] = (value, comment)


def _keep_owned(out: Path, name: str, tile: Tile, grid) -> None:
    """The catalogue and segmentation map of the tile with margin, cut to the sources
    the tile owns and to its core."""
    from astropy.table import Table

    cat_path, segm_path = out / f"{name}_cat.ecsv", out / f"{name}_segm.fits"
    kept: set[int] = set()
    if cat_path.exists():
        catalog = Table.read(cat_path, format="ascii.ecsv")
        gy = np.asarray(catalog["ycentroid"], dtype=float) + tile.my0
        gx = np.asarray(catalog["xcentroid"], dtype=float) + tile.mx0
        mine = np.array([owner(y, x, tile.size, grid.shape) == tile.index
                         for y, x in zip(gy, gx, strict=True)], dtype=bool)
        catalog = catalog[mine] if len(catalog) else catalog
        catalog["xcentroid"] -= tile.x0 - tile.mx0
        catalog["ycentroid"] -= tile.y0 - tile.my0
        kept = {int(v) for v in catalog["label"]}
        catalog.meta["jwstrun_tile"] = {**tile.to_dict(), "rule": OWNERSHIP_RULE,
                                        "pixels": "xcentroid, ycentroid in the tile's i2d"}
        catalog.write(cat_path, format="ascii.ecsv", overwrite=True)
    if segm_path.exists():
        ys, xs = tile.core_in_margin
        with datamodels.SegmentationMapModel(segm_path) as segm:
            data = np.array(segm.data[ys, xs])
            data[~np.isin(data, list(kept))] = 0
            cropped = segm.copy()
        cropped.data = data
        cropped.meta.wcs = grid.sub_grid(*tile.box).wcs
        from jwst.resample.resample import ResampleImage

        ResampleImage.update_fits_wcsinfo(cropped)
        partial = out.parent / "segm" / segm_path.name  # same name: meta.filename
        partial.parent.mkdir(exist_ok=True)
        cropped.save(partial)
        cropped.close()
        _add_keywords(partial, tile)
        partial.replace(segm_path)
