"""One output grid for many mosaics: made from footprints, written as a gwcs in ASDF.

``jwstrun grid`` and ``jwstrun image3 --grid`` (issue 22).  A :class:`Grid` is the
kind of WCS jwst 3.0's resample builds for its output -- a gwcs whose one transform
is gwcs's ``FITSImagingWCSTransform`` (TAN projection, tangent point CRVAL,
reference pixel CRPIX, pixel scale CDELT and rotation PC), with its array shape --
so resample takes it unchanged through its own ``output_wcs`` parameter.

:func:`make_grid` predicts it from the inputs' ``S_REGION`` footprints the way
resample predicts its default grid (:mod:`jwstrun.mosaic.grid`; stcal's
``wcs_from_sregions``), over any number of filters and programs: the reference
exposure (orientation, pixel scale) is the first input of the finest camera, so a
grid of F200W and F444W exposures has the short-wavelength pixels.
:func:`write_grid` writes the ASDF file resample reads (``load_custom_wcs``: the
gwcs under the tree key ``wcs``, its ``pixel_shape`` and ``bounding_box`` set, the
pixel scale in arcsec under ``pixel_scale``) and a FITS-WCS header beside it
(``grid.hdr``, text cards, as SWarp's ``.head`` files) for other tools;
:func:`read_grid` reads it back.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, InputError
from .grid import Footprint, read_footprint

__all__ = ["Grid", "GridError", "GridNotCovering", "make_grid", "write_grid", "read_grid",
           "header_path", "parse_padding", "grid_footprints", "uncovered", "check_coverage",
           "grid_call_parameters"]

#: the FITS-WCS header written beside a grid file (text cards, one per line)
HEADER_SUFFIX = ".hdr"
_MAKE = "make one with 'jwstrun grid INPUTS -o grid.asdf'"


class GridError(InputError):
    """A grid file that cannot be used (not a gwcs ASDF, or not an imaging grid)."""


def _not_covering_base():
    from .plan import MosaicRefused  # a preflight refusal: raised only if the task has to run

    return MosaicRefused


class GridNotCovering(_not_covering_base()):
    """A grid that does not cover an association's inputs."""


@dataclass
class Grid:
    """An output pixel grid: a gwcs (``FITSImagingWCSTransform``) and its shape.

    ``shape`` is (ny, nx); pixel (x, y) = (0, 0) is the centre of the first pixel,
    as in resample.  ``pixel_scale`` is in arcsec.
    """

    wcs: object  # gwcs.WCS
    pixel_scale: float
    path: str | None = None
    #: provenance written into the ASDF tree (inputs, parameters)
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        ny, nx = self.wcs.array_shape
        return int(ny), int(nx)

    @property
    def transform(self):
        return self.wcs.forward_transform

    @property
    def crpix(self) -> tuple[float, float]:
        """0-based reference pixel (x, y)."""
        return tuple(float(v) for v in self.transform.crpix.value)

    @property
    def crval(self) -> tuple[float, float]:
        return tuple(float(v) for v in self.transform.crval.value)

    @property
    def pc(self):
        return [[float(v) for v in row] for row in self.transform.pc.value]

    @property
    def rotation(self) -> float:
        """Position angle of the grid's +Y axis, degrees East of North (resample's
        ``rotation``)."""
        pc = self.pc
        return math.degrees(math.atan2(pc[0][1], pc[1][1])) % 360.0

    def pixel_to_sky(self, x, y):
        """(RA, Dec) in degrees of 0-based pixel coordinates (no bounding box)."""
        return self.transform(x, y)

    def sky_to_pixel(self, ra, dec):
        """0-based (x, y) of (RA, Dec) in degrees (outside the grid too)."""
        return self.transform.inverse(ra, dec)

    def sub_grid(self, y0: int, y1: int, x0: int, x1: int) -> "Grid":
        """Rows y0:y1 and columns x0:x1 of this grid (numpy slice convention): the same
        sky pixels, pixel (0, 0) of the sub-grid being pixel (y0, x0) of this one."""
        ny, nx = self.shape
        bounds = (int(y0), int(y1), int(x0), int(x1))
        if bounds != (y0, y1, x0, x1) or not (0 <= y0 < y1 <= ny and 0 <= x0 < x1 <= nx):
            raise ValueError(f"sub_grid({y0}, {y1}, {x0}, {x1}) is not a part of a grid of "
                             f"{ny} x {nx} (ny x nx) pixels.")
        cx, cy = self.crpix
        wcs = _imaging_wcs((cx - x0, cy - y0), self.crval, self.transform.cdelt.value,
                           self.pc, (y1 - y0, x1 - x0), self.wcs)
        return Grid(wcs, self.pixel_scale, meta={**self.meta, "parent_offset": [y0, x0]})

    def fits_header(self):
        """The grid as a FITS-WCS header (astropy ``Header``): TAN, CRPIX 1-based."""
        from astropy.io import fits

        ny, nx = self.shape
        (c1, c2), (v1, v2) = self.crpix, self.crval
        d1, d2 = (float(v) for v in self.transform.cdelt.value)
        pc = self.pc
        cards = [
            ("NAXIS", 2, "grid (no data)"), ("NAXIS1", nx, "grid columns"),
            ("NAXIS2", ny, "grid rows"), ("WCSAXES", 2, ""),
            ("CTYPE1", "RA---TAN", ""), ("CTYPE2", "DEC--TAN", ""),
            ("CUNIT1", "deg", ""), ("CUNIT2", "deg", ""),
            ("CRPIX1", c1 + 1.0, "1-based (gwcs crpix + 1)"), ("CRPIX2", c2 + 1.0, ""),
            ("CRVAL1", v1, "tangent point RA [deg]"), ("CRVAL2", v2, "tangent point Dec [deg]"),
            ("CDELT1", d1, "pixel scale [deg]"), ("CDELT2", d2, ""),
            ("PC1_1", pc[0][0], ""), ("PC1_2", pc[0][1], ""),
            ("PC2_1", pc[1][0], ""), ("PC2_2", pc[1][1], ""),
            ("LONPOLE", float(self.transform.lon_pole), ""), ("RADESYS", "ICRS", ""),
        ]
        return fits.Header(cards)

    def write(self, path: str | os.PathLike) -> Path:
        return write_grid(self, path)

    def to_dict(self) -> dict:
        ny, nx = self.shape
        return {"path": self.path, "shape": [ny, nx], "crval": list(self.crval),
                "crpix": list(self.crpix), "pixel_scale": self.pixel_scale,
                "rotation": round(self.rotation, 10)}


def _imaging_wcs(crpix, crval, cdelt, pc, shape, frames_from):
    """The gwcs resample builds for its output (stcal ``wcs_from_sregions``)."""
    import gwcs
    import numpy as np
    from astropy.modeling import models
    from gwcs import FITSImagingWCSTransform

    transform = FITSImagingWCSTransform(
        models.Pix2Sky_TAN(), crpix=[float(v) for v in crpix], crval=[float(v) for v in crval],
        cdelt=[float(v) for v in cdelt], pc=np.asarray(pc, dtype=float))
    wcs = gwcs.WCS([gwcs.Step(frames_from.input_frame, transform),
                    gwcs.Step(frames_from.output_frame, None)])
    ny, nx = shape
    wcs.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    wcs.pixel_shape = (nx, ny)
    return wcs


# --------------------------------------------------------------------------- padding
_PAD = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(px|pix|pixels?|arcsec|\"|"
                  r"arcmin|'|deg)?\s*$")
_ANGLE = {"arcsec": 1.0, '"': 1.0, "arcmin": 60.0, "'": 60.0, "deg": 3600.0}


def parse_padding(value) -> tuple[float, str]:
    """``10`` / ``10px`` -> (10, 'pixels'); ``2arcsec`` / ``2"`` / ``0.1arcmin`` -> (arcsec,
    'arcsec').  A bare number is pixels."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number, unit = float(value), None
    else:
        match = _PAD.match(str(value))
        if not match:
            raise ConfigError(f"padding {value!r}: give pixels (10, 10px) or an angle "
                              "(2arcsec, 0.1arcmin).")
        number, unit = float(match.group(1)), match.group(2)
    if unit in _ANGLE:
        return number * _ANGLE[unit], "arcsec"
    return number, "pixels"


def _padding_pixels(padding, pixel_scale_arcsec: float) -> int:
    number, unit = parse_padding(padding)
    return int(math.ceil(number / pixel_scale_arcsec - 1e-9)) if unit == "arcsec" \
        else int(math.ceil(number - 1e-9))


# --------------------------------------------------------------------------- make
def grid_footprints(inputs) -> list[Footprint]:
    """The footprints of _cal/_crf files, glob patterns, directories and the members of
    association files (:func:`jwstrun.inputs.expand_inputs`)."""
    from ..inputs import expand_inputs

    paths = expand_inputs(inputs, suffixes=("cal", "crf"), members=True)
    return [read_footprint(p) for p in paths]


def _reference(footprints: list[Footprint]) -> Footprint:
    """The first input of the finest camera (pixel scale within 10 % of the smallest):
    resample's reference is the first input; across cameras the finest one wins."""
    finest = min(f.pixel_scale for f in footprints)
    return next(f for f in footprints if f.pixel_scale <= 1.1 * finest)


def _reference_scale(reference: Footprint) -> float:
    """The reference exposure's pixel scale (degrees) as resample measures it: stcal's
    compute_scale on its gwcs at (RA_REF, DEC_REF)."""
    from stcal.alignment.util import compute_scale
    from stdatamodels.jwst import datamodels

    with datamodels.open(reference.path) as model:
        wcs = model.meta.wcs
        if wcs is None:
            return reference.pixel_scale
        return compute_scale(wcs, (reference.wcsinfo["ra_ref"], reference.wcsinfo["dec_ref"]))


def make_grid(
    paths,
    *,
    pixel_scale: float | None = None,
    pixel_scale_ratio: float | None = None,
    rotation: float | None = None,
    padding=0,
    extend: str | os.PathLike | None = None,
) -> Grid:
    """One grid covering the footprints of all ``paths`` (_cal/_crf files, globs,
    directories, association files: their members), of any filters and programs.

    As resample builds its default grid: tangent point at the centre of the
    footprints, orientation of the reference exposure (``rotation``: the +Y axis's
    position angle in degrees instead), its pixel scale times ``pixel_scale_ratio``
    (or ``pixel_scale`` in arcsec).  ``padding``: pixels (a number) or an angle
    ('2arcsec') added on every side.  ``extend``: an existing grid file grown to
    also cover ``paths``, keeping its tangent point, rotation, scale and pixel
    phase (its pixels keep their sky positions).
    """
    footprints = grid_footprints(paths)
    if extend is not None:
        if pixel_scale is not None or pixel_scale_ratio is not None or rotation is not None:
            raise ConfigError(
                f"{extend}: an extended grid keeps its pixel scale and rotation; drop the "
                "pixel scale, pixel scale ratio and rotation, or make a new grid.")
        return _extended(read_grid(extend), footprints, padding)
    return _new_grid(footprints, pixel_scale, pixel_scale_ratio, rotation, padding)


def _new_grid(footprints, pixel_scale, pixel_scale_ratio, rotation, padding) -> Grid:
    import warnings

    import numpy as np
    from stcal.alignment.util import wcs_from_sregions

    from .grid import _frames

    reference = _reference(footprints)
    if pixel_scale is not None:
        if pixel_scale <= 0:
            raise ConfigError(f"pixel scale {pixel_scale}: must be above 0 arcsec.")
        pscale = float(pixel_scale) / 3600.0
    else:
        ratio = 1.0 if pixel_scale_ratio is None else float(pixel_scale_ratio)
        if ratio <= 0:
            raise ConfigError(f"pixel scale ratio {ratio}: must be above 0.")
        pscale = _reference_scale(reference) * ratio
    frames = _frames()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            made = wcs_from_sregions([np.array(f.vertices) for f in footprints], ref_wcs=frames,
                                     ref_wcsinfo=reference.wcsinfo, pscale=pscale,
                                     rotation=rotation)
        except ValueError as exc:
            raise InputError(f"no grid can be made from these inputs ({exc.args[0]})") from exc
    transform = made.forward_transform
    pad = _padding_pixels(padding, pscale * 3600.0)
    cx, cy = (float(v) + pad for v in transform.crpix.value)
    ny, nx = (int(v) + 2 * pad for v in made.array_shape)
    wcs = _imaging_wcs((cx, cy), transform.crval.value, transform.cdelt.value,
                       transform.pc.value, (ny, nx), frames)
    meta = {"reference": os.path.basename(reference.path), "n_inputs": len(footprints),
            "padding_pixels": pad}
    return Grid(wcs, pscale * 3600.0, meta=meta)


def _pixel_bounds(grid: Grid, footprints: list[Footprint]):
    import numpy as np

    ra, dec = (np.array([v[i] for f in footprints for v in f.vertices]) for i in (0, 1))
    x, y = grid.sky_to_pixel(ra, dec)
    return float(np.min(x)), float(np.max(x)), float(np.min(y)), float(np.max(y))


def _extended(grid: Grid, footprints: list[Footprint], padding) -> Grid:
    """``grid`` grown by whole pixels to cover ``footprints`` (+ padding)."""
    xmin, xmax, ymin, ymax = _pixel_bounds(grid, footprints)
    pad = _padding_pixels(padding, grid.pixel_scale)
    ny, nx = grid.shape
    # resample's convention: the footprints' lowest vertex at pixel 0, the highest
    # at most half a pixel inside the far edge (1e-6 pixel: rounding of the inverse)
    sx = max(0, math.ceil(-xmin - 1e-6) + pad)
    sy = max(0, math.ceil(-ymin - 1e-6) + pad)
    new_nx = max(nx + sx, int(xmax + sx + 0.5 - 1e-6) + pad)
    new_ny = max(ny + sy, int(ymax + sy + 0.5 - 1e-6) + pad)
    cx, cy = grid.crpix
    wcs = _imaging_wcs((cx + sx, cy + sy), grid.crval, grid.transform.cdelt.value, grid.pc,
                       (new_ny, new_nx), grid.wcs)
    meta = {**grid.meta, "extended_from": grid.path, "offset_of_old_grid": [sy, sx],
            "n_inputs_added": len(footprints)}
    return Grid(wcs, grid.pixel_scale, meta=meta)


def uncovered(grid: Grid, footprints: list[Footprint], tolerance: float = 1.0 + 1e-6):
    """(footprint, pixels beyond the grid's edge) of each footprint with a vertex more
    than ``tolerance`` pixels outside the grid (pixel edges at -0.5 and n - 0.5).

    One pixel: resample's own grid puts the lowest vertex at pixel 0 and rounds the
    far edge to the nearest pixel (shape ``int(max + 0.5)``), so a vertex may lie up
    to one pixel beyond the last pixel's outer edge.
    """
    ny, nx = grid.shape
    out = []
    for footprint in footprints:
        xmin, xmax, ymin, ymax = _pixel_bounds(grid, [footprint])
        beyond = max(-0.5 - xmin, -0.5 - ymin, xmax - (nx - 0.5), ymax - (ny - 0.5))
        if beyond > tolerance:
            out.append((footprint, beyond))
    return out


def check_coverage(grid_path: str | os.PathLike, product: str,
                   footprints: list[Footprint]) -> None:
    """:class:`GridNotCovering` naming the grid and the association when a footprint of
    ``footprints`` reaches beyond the grid in ``grid_path``.  Another kind of gwcs that
    resample's ``output_wcs`` takes (``--set steps.resample.output_wcs=``) is left to
    resample."""
    try:
        grid = read_grid(grid_path)
    except GridError:
        return
    outside = uncovered(grid, footprints)
    if not outside:
        return
    names = ", ".join(Path(f.path).name for f, _ in outside[:3])
    more = f" and {len(outside) - 3} more" if len(outside) > 3 else ""
    beyond = max(b for _, b in outside)
    raise GridNotCovering(
        f"{grid_path}: the grid does not cover association {product}: {len(outside)} of its "
        f"{len(footprints)} inputs reach up to {beyond:.1f} pixels beyond its edge ({names}"
        f"{more}). Make the grid from all the inputs ('jwstrun grid INPUTS -o grid.asdf') or "
        f"grow it ('jwstrun grid NEW_INPUTS --extend {grid_path} -o {grid_path}'); "
        "nothing was run."
    )


def grid_call_parameters(grid_path: str | os.PathLike, parameters: dict) -> dict:
    """The pipeline parameters that resample every association onto the grid file
    ``grid_path`` (resample's own ``output_wcs``): checked to be a gwcs grid, made
    absolute; :class:`ConfigError` when ``parameters`` already set resample's grid."""
    from .grid import grid_parameters

    read_grid(grid_path)
    resample = (parameters.get("steps") or {}).get("resample") or {}
    given = sorted(grid_parameters(resample))
    if given:
        raise ConfigError(
            f"grid {grid_path} fixes the output grid, but steps.resample."
            f"{', steps.resample.'.join(given)} is set too (profile or sets): drop "
            f"{'it' if len(given) == 1 else 'them'}, or make the grid with those settings "
            "('jwstrun grid --pixel-scale/--rotation')."
        )
    return {"steps": {"resample": {"output_wcs": str(Path(grid_path).absolute())}}}


# --------------------------------------------------------------------------- files
def header_path(path: str | os.PathLike) -> Path:
    """The FITS-WCS header file written beside grid file ``path`` (grid.asdf -> grid.hdr)."""
    return Path(path).with_suffix(HEADER_SUFFIX)


def write_grid(grid: Grid, path: str | os.PathLike) -> Path:
    """Write ``grid`` as resample's ``output_wcs`` reads it, and its FITS-WCS header
    (:func:`header_path`); both atomically.  Returns the ASDF path."""
    import asdf

    from .._io import atomic_write
    from .._version import __version__

    path = Path(path)
    ny, nx = grid.shape
    tree = {
        "wcs": grid.wcs,
        "pixel_scale": float(grid.pixel_scale),  # arcsec: resample's output pixel scale
        "array_shape": [ny, nx],
        "jwstrun_grid": {"version": __version__, **_plain(grid.meta), **_plain(grid.to_dict()),
                         "path": None},
    }
    text = grid.fits_header().tostring(sep="\n", endcard=True, padding=False) + "\n"
    atomic_write(path, lambda tmp: asdf.AsdfFile(tree).write_to(tmp))
    atomic_write(header_path(path), text)
    grid.path = str(path)
    return path


def _plain(data: dict) -> dict:
    import json

    return json.loads(json.dumps(data, default=str))


def read_grid(path: str | os.PathLike) -> Grid:
    """The grid in an ASDF file holding a gwcs under ``wcs`` (:func:`write_grid`, or any
    such file resample's ``output_wcs`` reads); :class:`GridError` for anything else."""
    import asdf
    import gwcs

    path = Path(path)
    if not path.is_file():
        raise GridError(f"{path}: no such grid file; {_MAKE}.")
    try:
        with asdf.open(path, lazy_load=False, memmap=False) as handle:
            tree = dict(handle.tree)
    except Exception as exc:  # noqa: BLE001 - asdf raises many kinds for a non-ASDF file
        raise GridError(f"{path}: not a gwcs grid (not an ASDF file); {_MAKE}.") from exc
    wcs = tree.get("wcs")
    if not isinstance(wcs, gwcs.WCS):
        raise GridError(f"{path}: not a gwcs grid (its ASDF tree has no gwcs WCS under 'wcs'); "
                        f"{_MAKE}.")
    from gwcs import FITSImagingWCSTransform

    if not isinstance(wcs.forward_transform, FITSImagingWCSTransform):
        raise GridError(f"{path}: not a gwcs grid (its WCS is not an imaging grid "
                        f"[FITSImagingWCSTransform] such as resample makes); {_MAKE}.")
    if wcs.array_shape is None:
        shape = tree.get("array_shape")
        if shape is None and wcs.bounding_box is not None:
            shape = [int(axis[1] + 0.5) for axis in wcs.bounding_box.bounding_box(order="C")]
        if shape is None:
            raise GridError(f"{path}: not a gwcs grid (no array shape or bounding box); "
                            f"{_MAKE}.")
        wcs.array_shape = tuple(int(v) for v in shape)
    scale = tree.get("pixel_scale")
    if scale is None:
        scale = math.sqrt(tree["pixel_area"]) if tree.get("pixel_area") else \
            3600.0 * abs(float(wcs.forward_transform.cdelt.value[0]))
    meta = dict(tree.get("jwstrun_grid") or {})
    return Grid(wcs, float(scale), path=str(path),
                meta={k: v for k, v in meta.items() if k in ("reference", "n_inputs",
                                                             "padding_pixels", "version")})
