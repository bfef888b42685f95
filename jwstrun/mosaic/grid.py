"""The mosaic's grid, predicted from the members' footprints before anything runs.

Each member's ``S_REGION`` footprint (written by assign_wcs into the SCI
header; resample itself reads exactly these through
``ModelLibrary.read_metadata``) is handed to stcal's ``wcs_from_sregions`` with
the reference exposure's ``wcsinfo`` (roll, V3 Y angle, parity) and the
resample step's grid parameters, the way jwst 3.0's resample does.  The input
pixel scale is the linear part of the header's SIP approximation at CRPIX
(resample measures the full distortion model at the same point; the two agree
to well under 1 %).  :func:`far_inputs` names the inputs whose footprints lie
far from the rest (a pointing wrong by degrees).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, InputError
from ..products import parse_s_region

__all__ = ["GRID_PARAMETERS", "Footprint", "read_footprint", "far_inputs", "mosaic_shape",
           "grid_parameters"]

#: resample parameters that decide the output grid
GRID_PARAMETERS = ("pixel_scale_ratio", "pixel_scale", "rotation", "output_shape", "crpix",
                   "crval", "output_wcs")


@dataclass
class Footprint:
    """One exposure's footprint on the sky, from its SCI header."""

    path: str
    vertices: list[tuple[float, float]]  # (RA, Dec) degrees
    shape: tuple[int, int]  # (ny, nx)
    pixel_scale: float  # degrees, linear part of the SIP approximation at CRPIX
    wcsinfo: dict
    #: exposure identity: jwst resamples members of one group (several
    #: detectors of one exposure) together in outlier_detection
    group: str = ""

    @property
    def pixels(self) -> int:
        return self.shape[0] * self.shape[1]


def read_footprint(path: str | os.PathLike) -> Footprint:
    """The footprint, shape, pixel scale and pointing keywords of one _cal exposure (headers only)."""
    from astropy.io import fits

    path = Path(path)
    try:
        with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
            header = hdul["SCI"].header
            primary = hdul[0].header
            sregion = header.get("S_REGION") or primary.get("S_REGION")
            shape = (int(header.get("NAXIS2") or 0), int(header.get("NAXIS1") or 0))
            cd = _cd_matrix(header)
            # the fields of jwst's attrs_to_group_id, from the primary header
            group = "_".join(str(primary.get(k, "")) for k in (
                "PROGRAM", "OBSERVTN", "VISIT", "VISITGRP", "SEQ_ID", "ACT_ID", "EXPOSURE"))
            wcsinfo = {
                "v3yangle": header.get("V3I_YANG"),
                "vparity": header.get("VPARITY"),
                "roll_ref": header.get("ROLL_REF"),
                "ra_ref": header.get("RA_REF"),
                "dec_ref": header.get("DEC_REF"),
            }
    except (OSError, KeyError) as exc:
        raise InputError(f"{path}: cannot read its SCI header ({exc}).") from exc
    polygons = parse_s_region(str(sregion or ""))
    values = [c for poly in polygons for vertex in poly for c in vertex]
    if not all(map(math.isfinite, values)):
        raise InputError(
            f"{path}: S_REGION in its SCI header is invalid "
            f"({'NaN' if any(map(math.isnan, values)) else 'infinite'} vertices), so the mosaic "
            "cannot be planned. Its WCS is broken: re-run 'jwstrun image2' on its _rate file."
        )
    missing = [k for k, v in wcsinfo.items() if v is None]
    if not polygons or missing or cd is None:
        what = "S_REGION" if not polygons else ", ".join(missing) or "CD/PC matrix"
        raise InputError(
            f"{path}: no {what} in its SCI header, so the mosaic cannot be planned. "
            "Was it calibrated by calwebb_image2 (assign_wcs)? Re-run 'jwstrun image2' on its "
            "_rate file."
        )
    scale = math.sqrt(abs(cd[0][0] * cd[1][1] - cd[0][1] * cd[1][0]))
    return Footprint(
        path=str(path), vertices=[v for poly in polygons for v in poly], shape=shape,
        pixel_scale=scale, wcsinfo={k: float(v) for k, v in wcsinfo.items()}, group=group,
    )


def _cd_matrix(header) -> list[list[float]] | None:
    if "CD1_1" in header:
        return [[float(header.get("CD1_1", 0)), float(header.get("CD1_2", 0))],
                [float(header.get("CD2_1", 0)), float(header.get("CD2_2", 0))]]
    if "CDELT1" in header:
        c1, c2 = float(header["CDELT1"]), float(header.get("CDELT2", header["CDELT1"]))
        pc = [[float(header.get("PC1_1", 1)), float(header.get("PC1_2", 0))],
              [float(header.get("PC2_1", 0)), float(header.get("PC2_2", 1))]]
        return [[c1 * pc[0][0], c1 * pc[0][1]], [c2 * pc[1][0], c2 * pc[1][1]]]
    return None


def _unit_vector(ra: float, dec: float) -> tuple[float, float, float]:
    ra, dec = math.radians(ra), math.radians(dec)
    return (math.cos(dec) * math.cos(ra), math.cos(dec) * math.sin(ra), math.sin(dec))


def _center(vertices) -> tuple[float, float, float]:
    vectors = [_unit_vector(ra, dec) for ra, dec in vertices]
    x, y, z = (sum(v[i] for v in vectors) for i in range(3))
    norm = math.sqrt(x * x + y * y + z * z) or 1.0
    return (x / norm, y / norm, z / norm)


def _separation(a, b) -> float:
    """Angle in degrees between two unit vectors."""
    dot = max(-1.0, min(1.0, sum(p * q for p, q in zip(a, b, strict=True))))
    return math.degrees(math.acos(dot))


def _diameter(vertices) -> float:
    vectors = [_unit_vector(ra, dec) for ra, dec in vertices]
    return max((_separation(a, b) for a in vectors for b in vectors), default=0.0)


def far_inputs(footprints: list[Footprint]) -> list[tuple[Footprint, float]]:
    """Inputs outside the main group of overlapping or neighbouring footprints.

    Footprints whose centres are closer than twice the largest footprint
    diameter are linked; everything not in the largest linked group is
    returned, each with its distance (degrees) from the centre of that group.
    """
    if len(footprints) < 2:
        return []
    centers = [_center(f.vertices) for f in footprints]
    link = 2.0 * max(_diameter(f.vertices) for f in footprints)
    group = list(range(len(footprints)))

    def root(i):
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for i in range(len(footprints)):
        for j in range(i + 1, len(footprints)):
            if _separation(centers[i], centers[j]) <= link:
                group[root(i)] = root(j)
    members: dict[int, list[int]] = {}
    for i in range(len(footprints)):
        members.setdefault(root(i), []).append(i)
    main = max(members.values(), key=lambda m: (len(m), -m[0]))
    main_center = _center([v for i in main for v in footprints[i].vertices])
    far = [(footprints[i], _separation(centers[i], main_center))
           for i in range(len(footprints)) if i not in main]
    return sorted(far, key=lambda item: -item[1])


def grid_parameters(resample: dict) -> dict:
    """The resample parameters given that decide the output grid."""
    return {k: resample.get(k) for k in GRID_PARAMETERS if resample.get(k) not in (None, "")}


def mosaic_shape(footprints: list[Footprint], resample: dict | None = None) -> tuple[int, int]:
    """(ny, nx) of the mosaic resample would make from these footprints and parameters.

    The same computation as jwst 3.0 ``resampled_wcs_from_models``: stcal's
    ``wcs_from_sregions`` with the first exposure's wcsinfo as reference.
    """
    import warnings

    import numpy as np

    resample = grid_parameters(resample or {})
    if resample.get("output_wcs"):
        return _custom_wcs_shape(resample["output_wcs"])
    if resample.get("output_shape"):
        nx, ny = (int(v) for v in resample["output_shape"])  # step parameter is [x, y]
        return ny, nx
    ref = footprints[0]
    everything = [v for f in footprints for v in f.vertices]
    # Beyond ~80 degrees the tangent projection breaks down: the mosaic is
    # hopeless anyway; call it as large as the sky.
    center = _center(everything)
    if max(_separation(center, _unit_vector(*v)) for v in everything) > 80.0:
        side = int(180.0 / ref.pixel_scale)
        return side, side
    if resample.get("pixel_scale"):
        pscale = float(resample["pixel_scale"]) / 3600.0
    else:
        pscale = ref.pixel_scale * float(resample.get("pixel_scale_ratio", 1.0))
    from stcal.alignment.util import wcs_from_sregions

    crpix = resample.get("crpix")
    crval = resample.get("crval")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            wcs = wcs_from_sregions(
                [np.array(f.vertices) for f in footprints], ref_wcs=_frames(),
                ref_wcsinfo=ref.wcsinfo,
                pscale=pscale, rotation=resample.get("rotation"),
                crpix=None if crpix is None else [float(v) for v in crpix],
                crval=None if crval is None else [float(v) for v in crval],
            )
        except ValueError as exc:
            raise InputError(
                f"resample cannot make a mosaic from these inputs and parameters ({exc.args[0]})."
            ) from exc
    ny, nx = wcs.array_shape
    return int(ny), int(nx)


def _frames():
    """What wcs_from_sregions takes from its reference WCS once a pixel scale is given:
    the input and output frames (the reference exposure's gwcs is not needed)."""
    from types import SimpleNamespace

    from astropy.coordinates import ICRS
    from gwcs import coordinate_frames as cf

    return SimpleNamespace(
        input_frame=cf.Frame2D(name="detector"),
        output_frame=cf.CelestialFrame(reference_frame=ICRS(), name="world"),
    )


def _custom_wcs_shape(path: str) -> tuple[int, int]:
    import asdf

    try:
        with asdf.open(path) as handle:
            wcs = handle.tree["wcs"]
            if wcs.array_shape is not None:
                return tuple(int(v) for v in wcs.array_shape)
            bbox = wcs.bounding_box
            nx = int(bbox[0][1] - bbox[0][0] + 0.5) if bbox else 0
            ny = int(bbox[1][1] - bbox[1][0] + 0.5) if bbox else 0
            return ny, nx
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"resample output_wcs {path}: cannot read its WCS shape ({exc}).") from exc
