"""The grid of a tiled image3 until ``jwstrun grid`` (issue 22, item 1) provides it:
:func:`make_grid` (the grid resample would make from the inputs' footprints),
:func:`read_grid` (a gwcs ASDF file, what resample's ``output_wcs`` reads) and
:class:`Grid` (``wcs``, ``shape``, ``pixel_scale``, ``sub_grid``, ``write``)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, InputError

__all__ = ["Grid", "make_grid", "read_grid"]


@dataclass
class Grid:
    """An output grid: a gwcs with a FITS imaging transform, its (ny, nx) shape and
    its pixel scale (arcsec; resample's flux scale depends on it, so a tile carries
    the grid's own)."""

    wcs: object
    shape: tuple[int, int]
    pixel_scale: float

    def sub_grid(self, y0: int, y1: int, x0: int, x1: int) -> "Grid":
        """The grid's pixels [y0, y1) x [x0, x1) as a grid of their own: the same
        transform with CRPIX moved by (x0, y0)."""
        import gwcs
        from gwcs import FITSImagingWCSTransform

        step = self.wcs.pipeline[0]
        transform = step.transform
        if not isinstance(transform, FITSImagingWCSTransform):
            raise ConfigError("the grid's WCS is not a FITS imaging transform; cannot cut tiles.")
        crpix = [float(transform.crpix[0]) - x0, float(transform.crpix[1]) - y0]
        moved = FITSImagingWCSTransform(transform.projection, crpix=crpix,
                                        crval=list(transform.crval), cdelt=list(transform.cdelt),
                                        pc=transform.pc.value.reshape(2, 2))
        ny, nx = y1 - y0, x1 - x0
        wcs = gwcs.WCS([gwcs.Step(step.frame, moved),
                        gwcs.Step(self.wcs.pipeline[-1].frame, None)])
        wcs.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
        wcs.pixel_shape = (nx, ny)
        return Grid(wcs, (ny, nx), self.pixel_scale)

    def write(self, path: str | os.PathLike) -> None:
        """The grid as resample's ``output_wcs`` reads it (``wcs``, ``pixel_scale``)."""
        import asdf

        asdf.AsdfFile({"wcs": self.wcs, "pixel_scale": self.pixel_scale,
                       "array_shape": list(self.shape)}).write_to(str(path))


def read_grid(path: str | os.PathLike) -> Grid:
    """The grid in a gwcs ASDF file; its pixel scale as resample takes it (the file's
    ``pixel_scale``, else the square root of ``pixel_area``, else the mean pixel area
    over the grid)."""
    import asdf

    try:
        with asdf.open(path) as handle:
            wcs = handle.tree["wcs"]
            scale = handle.tree.get("pixel_scale")
            area = handle.tree.get("pixel_area")
            shape = wcs.array_shape or handle.tree.get("array_shape")
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: not a gwcs ASDF grid ({exc}).") from exc
    if shape is None:
        raise InputError(f"{path}: its gwcs has no array shape.")
    if scale is None and area is not None:
        scale = math.sqrt(float(area))
    if scale is None:
        from stcal.alignment.util import compute_mean_pixel_area
        import numpy as np

        wcs.array_shape = tuple(shape)
        scale = 3600.0 * float(np.rad2deg(math.sqrt(compute_mean_pixel_area(wcs))))
    return Grid(wcs, tuple(int(v) for v in shape), float(scale))


def make_grid(paths: list[Path], resample: dict | None = None) -> Grid:
    """The grid resample would make from the footprints of ``paths`` (_cal files) and
    its grid parameters (``pixel_scale``, ``pixel_scale_ratio``, ``rotation``, ``crpix``,
    ``crval``), as :func:`jwstrun.mosaic.grid.mosaic_shape` predicts it."""
    import warnings

    import numpy as np
    from stcal.alignment.util import wcs_from_sregions

    from .grid import _frames, read_footprint

    resample = resample or {}
    footprints = [read_footprint(p) for p in paths]
    ref = footprints[0]
    if resample.get("pixel_scale"):
        pscale = float(resample["pixel_scale"]) / 3600.0
    else:
        pscale = ref.pixel_scale * float(resample.get("pixel_scale_ratio") or 1.0)
    crpix, crval = resample.get("crpix"), resample.get("crval")
    shape = resample.get("output_shape")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wcs = wcs_from_sregions(
            [np.array(f.vertices) for f in footprints], ref_wcs=_frames(),
            ref_wcsinfo=ref.wcsinfo, pscale=pscale, rotation=resample.get("rotation"),
            shape=None if shape is None else [int(v) for v in shape][::-1],
            crpix=None if crpix is None else [float(v) for v in crpix],
            crval=None if crval is None else [float(v) for v in crval])
    ny, nx = wcs.array_shape
    return Grid(wcs, (int(ny), int(nx)), pscale * 3600.0)
