"""``jwstrun info``: a short summary of one product for people and scripts."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from ..errors import InputError
from ..products import (
    parse_s_region,
    product_suffix,
    product_type,
    read_catalog,
    read_primary_header,
)
from ._asdf import _load_wcs
from ._hdus import _scan_hdus

__all__ = ["product_info"]


def product_info(path: str | os.PathLike, pixel=None, sky=None) -> dict:
    """A short summary of one product for people and scripts.

    Parameters
    ----------
    path : path-like
        A JWST product (FITS or ``*_cat.ecsv``).
    pixel : (x, y), optional
        0-based detector/image pixel to convert to sky with the stored gwcs (forward).
    sky : (ra, dec), optional
        Sky position in degrees to convert to a 0-based pixel (inverse).

    Raises
    ------
    InputError
        For an unreadable file, or a WCS question about a product without WCS.
    """
    path = Path(path)
    if product_suffix(path) == "cat" or path.suffix.lower() == ".ecsv":
        return _catalog_info(path)
    primary = read_primary_header(path)
    info = _header_info(path, primary)
    info.update(_extension_info(path))
    if pixel is not None or sky is not None:
        info.update(_wcs_info(path, pixel, sky))
    return info


def _catalog_info(path: Path) -> dict:
    if not path.exists():
        raise InputError(f"{path}: file not found. Check the path.")
    table = read_catalog(path)
    return {
        "path": str(path),
        "product_type": "cat",
        "n_sources": len(table),
        "columns": list(table.colnames),
    }


def _text(header, key):
    value = header.get(key)
    return None if value is None else (value.strip() if isinstance(value, str) else value)


def _header_info(path: Path, primary) -> dict:
    """What the primary header says: instrument, exposure, versions, steps, references."""

    def text(key):
        return _text(primary, key)

    return {
        "path": str(path),
        "product_type": product_type(path, primary),
        "datamodl": text("DATAMODL"),
        "instrument": text("INSTRUME"),
        "detector": text("DETECTOR"),
        "filter": text("FILTER"),
        "pupil": text("PUPIL"),
        "subarray": text("SUBARRAY"),
        "exp_type": text("EXP_TYPE"),
        "target": text("TARGPROP") or text("TARGNAME"),
        "date_obs": " ".join(str(v) for v in (text("DATE-OBS"), text("TIME-OBS")) if v) or None,
        "exposure_time": text("EFFEXPTM"),
        "nints": text("NINTS"),
        "cal_ver": text("CAL_VER"),
        "crds_context": text("CRDS_CTX"),
        "crds_version": text("CRDS_VER"),
        "step_status": {k: str(v).strip() for k, v in primary.items() if k.startswith("S_")},
        "references": {
            k: str(v).strip()
            for k, v in primary.items()
            if k.startswith("R_") and str(v).strip().upper() != "N/A"
        },
    }


def _extension_info(path: Path) -> dict:
    """The extensions (name, shape, dtype) and what the SCI header says (units, footprint)."""
    from astropy.io import fits

    info: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with fits.open(path, memmap=True) as hdul:
                hdus = _scan_hdus(hdul)
                # tables report their row count (NAXIS2), not the row width in bytes
                extensions = [
                    [h.name, list(h.shape[:1]) if h.kind == "table" else list(h.shape), h.dtype]
                    for h in hdus[1:]
                ]
                sci = next((h for h in hdus if h.name == "SCI"), None)
                if sci is not None:
                    info.update(_sci_info(sci.header, sci.shape))
        except OSError as exc:
            raise InputError(f"{path}: cannot read the FITS extensions ({exc}).") from exc
    info["extensions"] = extensions
    return info


def _sci_info(header, shape) -> dict:
    info = {
        "shape": list(shape),
        "bunit": _text(header, "BUNIT"),
        "photmjsr": _text(header, "PHOTMJSR"),
        "pixar_sr": _text(header, "PIXAR_SR"),
    }
    polygons = parse_s_region(header.get("S_REGION"))
    if polygons:
        # [[ra, dec], ...] of the first polygon (JWST products have one); all of them
        # under "footprints" when the region holds several
        info["footprint"] = [[ra, dec] for ra, dec in polygons[0]]
        if len(polygons) > 1:
            info["footprints"] = [[[ra, dec] for ra, dec in poly] for poly in polygons]
    return info


def _wcs_info(path: Path, pixel, sky) -> dict:
    """``pixel`` -> sky and ``sky`` -> pixel with the gwcs stored in the ASDF extension."""
    wcs = _load_wcs(path)
    info = {}
    if pixel is not None:
        ra, dec = wcs(float(pixel[0]), float(pixel[1]))
        info["pixel_to_sky"] = {"pixel": [float(pixel[0]), float(pixel[1])],
                                "sky": [float(ra), float(dec)]}
    if sky is not None:
        x, y = wcs.invert(float(sky[0]), float(sky[1]))
        info["sky_to_pixel"] = {"sky": [float(sky[0]), float(sky[1])],
                                "pixel": [float(x), float(y)]}
    return info
