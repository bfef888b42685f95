"""One pair of products of the same name in two runs: arrays, WCS, catalog, bytes.

Each function takes the two paths and the relative ``tolerance`` and returns a
plain dict (JSON-ready) with a ``differs`` flag.  numpy, astropy and stdatamodels
are imported inside the functions.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path

from ..products import DQ_FLAGS, product_suffix, read_catalog

log = logging.getLogger(__name__)

#: The image extensions compared, when present (an i2d also has WHT and CON).
ARRAY_EXTENSIONS = ("SCI", "ERR", "DQ", "WHT", "CON", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT")
#: The headers whose keywords are compared (FITS products).
HEADER_HDUS = ("PRIMARY", "SCI")
#: Keywords never compared: what differs between two writes of the same product (the
#: file's date, name and checksums), the FITS structure (the arrays' shapes and types are
#: compared with the arrays) and free text.
IGNORED_KEYWORDS = frozenset({
    "DATE", "FILENAME", "CHECKSUM", "DATASUM", "ZHECKSUM", "ZDATASUM", "IRAF-TLM",
    "SIMPLE", "EXTEND", "XTENSION", "BITPIX", "PCOUNT", "GCOUNT", "BZERO", "BSCALE",
    "EXTNAME", "EXTVER", "HISTORY", "COMMENT", "",
})
#: Products whose ASDF extension holds a gwcs worth comparing.
WCS_SUFFIXES = ("cal", "crf", "i2d")
#: Catalog sources of the two runs are the same source within this distance.
MATCH_ARCSEC = 0.1
_FLUX_COLUMN = "aper_total_flux"


def compare_product(path_a: Path, path_b: Path, tolerance: float) -> dict:
    """Everything compared of one pair: ``{"name", "suffix", "differs", "arrays", "wcs",
    "catalog", "bytes_equal"}`` (the parts that do not apply are None)."""
    suffix = product_suffix(path_a)
    result = {"name": path_a.name, "suffix": suffix, "arrays": None, "headers": None,
              "wcs": None, "catalog": None, "bytes_equal": _same_bytes(path_a, path_b)}
    if path_a.name.lower().endswith(".fits"):
        result["arrays"] = compare_arrays(path_a, path_b, tolerance)
        result["headers"] = compare_headers(path_a, path_b, tolerance)
        if suffix in WCS_SUFFIXES:
            result["wcs"] = compare_wcs(path_a, path_b, tolerance)
    elif suffix == "cat":
        result["catalog"] = compare_catalogs(path_a, path_b, tolerance)
    parts = [p for p in (result["arrays"] and list(result["arrays"].values()),
                         result["headers"] and [result["headers"]],
                         result["wcs"] and [result["wcs"]],
                         result["catalog"] and [result["catalog"]]) if p]
    if parts:
        result["differs"] = any(item["differs"] for part in parts for item in part)
    else:  # another file (an association, a log): byte for byte
        result["differs"] = not result["bytes_equal"]
    return result


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    return _sha256(a) == _sha256(b)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------
# Arrays
# --------------------------------------------------------------------------
def compare_arrays(path_a: Path, path_b: Path, tolerance: float) -> dict:
    """Extension name -> statistics of B minus A, for each of :data:`ARRAY_EXTENSIONS`
    in either file (one missing from a file: ``{"differs": True, "missing_in": "a"}``)."""
    from astropy.io import fits

    stats = {}
    # not memory-mapped: the unsigned DQ arrays are scaled (BZERO)
    with fits.open(path_a, memmap=False) as a, fits.open(path_b, memmap=False) as b:
        names_a, names_b = _image_names(a), _image_names(b)
        for ext in ARRAY_EXTENSIONS:
            if ext not in names_a and ext not in names_b:
                continue
            if ext not in names_a or ext not in names_b:
                stats[ext] = {"differs": True, "missing_in": "a" if ext not in names_a else "b"}
            elif ext == "DQ":
                stats[ext] = dq_difference(a[ext].data, b[ext].data)
            else:
                stats[ext] = array_difference(a[ext].data, b[ext].data, tolerance)
    return stats


def _image_names(hdul) -> set[str]:
    return {h.name for h in hdul if h.is_image and h.header.get("NAXIS", 0) > 0}


def array_difference(a, b, tolerance: float) -> dict:
    """max |B-A|, median B-A (finite pixels of both) and the pixels differing by more
    than ``tolerance`` times max(|A|, |B|) (0: any difference; NaN in one only counts)."""
    import numpy as np

    if a.shape != b.shape:
        return {"differs": True, "shape_a": list(a.shape), "shape_b": list(b.shape)}
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    finite = np.isfinite(a) & np.isfinite(b)
    nan_mismatch = int(np.count_nonzero(np.isnan(a) != np.isnan(b)))
    diff = np.where(finite, b - a, 0.0)
    limit = tolerance * np.maximum(np.abs(a), np.abs(b))
    beyond = int(np.count_nonzero(finite & (np.abs(diff) > np.where(finite, limit, 0.0))))
    n_differ = beyond + nan_mismatch
    return {
        "differs": n_differ > 0,
        "n_pixels": int(a.size),
        "n_differ": n_differ,
        "n_nan_mismatch": nan_mismatch,
        "max_abs_diff": float(np.abs(diff).max()) if diff.size else 0.0,
        "median_diff": float(np.median(diff[finite])) if finite.any() else None,
    }


def dq_difference(a, b) -> dict:
    """The pixels whose DQ changed and, per bit, how many gained or lost it (named
    from :data:`jwstrun.products.DQ_FLAGS`, else ``bit N``)."""
    import numpy as np

    if a.shape != b.shape:
        return {"differs": True, "shape_a": list(a.shape), "shape_b": list(b.shape)}
    a, b = np.asarray(a, dtype=np.uint32), np.asarray(b, dtype=np.uint32)
    changed = a ^ b
    names = {value: name for name, value in DQ_FLAGS.items()}
    bits = []
    any_bits = int(np.bitwise_or.reduce(changed, axis=None)) if changed.size else 0
    for n in range(32):
        value = 1 << n
        if not any_bits & value:
            continue
        gained = int(np.count_nonzero(changed & b & value))
        lost = int(np.count_nonzero(changed & a & value))
        bits.append({"bit": n, "value": value, "name": names.get(value, f"bit {n}"),
                     "gained": gained, "lost": lost})
    n_differ = int(np.count_nonzero(changed))
    return {"differs": n_differ > 0, "n_pixels": int(a.size), "n_differ": n_differ,
            "bits": bits}


# --------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------
def compare_headers(path_a: Path, path_b: Path, tolerance: float = 0.0) -> dict:
    """The keywords of the :data:`HEADER_HDUS` that differ, not counting
    :data:`IGNORED_KEYWORDS` (``{"differs", "keywords": [{"hdu", "key", "a", "b"}]}``; a
    keyword missing from one header is None there); numbers within ``tolerance`` times
    the larger are equal, as pixels are."""
    from astropy.io import fits

    rows = []
    with fits.open(path_a) as a, fits.open(path_b) as b:
        for hdu in HEADER_HDUS:
            if hdu not in a or hdu not in b:
                if (hdu in a) != (hdu in b):
                    rows.append({"hdu": hdu, "key": "(header)", "a": hdu in a, "b": hdu in b})
                continue
            head_a, head_b = a[hdu].header, b[hdu].header
            for key in sorted((set(head_a) | set(head_b)) - IGNORED_KEYWORDS):
                value_a, value_b = head_a.get(key), head_b.get(key)
                if not _same_value(value_a, value_b, tolerance):
                    rows.append({"hdu": hdu, "key": key, "a": _plain(value_a),
                                 "b": _plain(value_b)})
    return {"differs": bool(rows), "keywords": rows}


def _same_value(a, b, tolerance: float) -> bool:
    if a == b:
        return True
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    if not numbers:
        return False
    if a != a or b != b:  # NaN
        return a != a and b != b
    return abs(a - b) <= tolerance * max(abs(a), abs(b))


def _plain(value):
    """A header value as JSON takes it (an undefined value: None)."""
    return value if isinstance(value, (str, int, float, bool)) else None


# --------------------------------------------------------------------------
# WCS
# --------------------------------------------------------------------------
def compare_wcs(path_a: Path, path_b: Path, tolerance: float) -> dict:
    """Sky offset (arcsec) of B's gwcs from A's at the centre and the four corners of
    A's pixel grid; differs when the largest exceeds ``tolerance`` pixels' worth of A's
    pixel size (0: any offset)."""
    import numpy as np

    try:
        wcs_a, shape = _gwcs(path_a)
        wcs_b, _shape = _gwcs(path_b)
    except Exception as exc:  # noqa: BLE001 - a product without a gwcs: said, not fatal
        log.debug("no gwcs in %s or %s: %s", path_a, path_b, exc)
        return {"differs": False, "error": f"no WCS to compare ({type(exc).__name__})"}
    if wcs_a is None or wcs_b is None:
        return {"differs": wcs_a is not wcs_b, "error": "no WCS in one of the products"}
    ny, nx = shape
    points = {"centre": ((nx - 1) / 2, (ny - 1) / 2), "corner_00": (0, 0),
              "corner_x0": (nx - 1, 0), "corner_0y": (0, ny - 1), "corner_xy": (nx - 1, ny - 1)}
    x = np.array([p[0] for p in points.values()], dtype=float)
    y = np.array([p[1] for p in points.values()], dtype=float)
    ra_a, dec_a = wcs_a(x, y, with_bounding_box=False)
    ra_b, dec_b = wcs_b(x, y, with_bounding_box=False)
    offsets = _separation_arcsec(ra_a, dec_a, ra_b, dec_b)
    ra_1, dec_1 = wcs_a(x[0] + 1, y[0], with_bounding_box=False)
    pixel = float(_separation_arcsec(ra_a[:1], dec_a[:1], np.atleast_1d(ra_1),
                                     np.atleast_1d(dec_1))[0])
    largest = float(np.nanmax(offsets))
    return {"differs": bool(largest > tolerance * pixel),
            "offsets_arcsec": {k: float(v) for k, v in zip(points, offsets, strict=True)},
            "max_offset_arcsec": largest, "pixel_arcsec": pixel}


def _gwcs(path: Path):
    from stdatamodels.jwst import datamodels

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with datamodels.open(str(path)) as model:
            return model.meta.wcs, model.data.shape[-2:]


def _separation_arcsec(ra1, dec1, ra2, dec2):
    """Angular distance (haversine, arcsec) between positions in degrees."""
    import numpy as np

    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(v, dtype=float)) for v in (ra1, dec1, ra2, dec2))
    h = (np.sin((dec2 - dec1) / 2) ** 2
         + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2)
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1)))) * 3600.0


# --------------------------------------------------------------------------
# Catalogs
# --------------------------------------------------------------------------
def compare_catalogs(path_a: Path, path_b: Path, tolerance: float) -> dict:
    """Sources matched by position (within :data:`MATCH_ARCSEC`): counts, median
    flux ratio B/A (``aper_total_flux``) and median offset of the matched ones."""
    import numpy as np

    cat_a, cat_b = read_catalog(path_a), read_catalog(path_b)
    result = {"n_a": len(cat_a), "n_b": len(cat_b), "n_matched": 0,
              "median_flux_ratio": None, "max_flux_ratio_error": None,
              "median_offset_arcsec": None, "max_offset_arcsec": None}
    if len(cat_a) and len(cat_b):
        # nearest B source of each A source (astropy's k-d tree)
        nearest, sep, _ = cat_a["sky_centroid"].match_to_catalog_sky(cat_b["sky_centroid"])
        distance = np.asarray(sep.arcsec, dtype=float)
        ok = distance <= MATCH_ARCSEC
        result["n_matched"] = int(ok.sum())
        if ok.any():
            result["median_offset_arcsec"] = float(np.median(distance[ok]))
            result["max_offset_arcsec"] = float(distance[ok].max())
            if _FLUX_COLUMN in cat_a.colnames and _FLUX_COLUMN in cat_b.colnames:
                flux_a = _values(cat_a[_FLUX_COLUMN])[ok]
                flux_b = _values(cat_b[_FLUX_COLUMN])[nearest[ok]]
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = flux_b / flux_a
                good = np.isfinite(ratio)
                if good.any():
                    result["median_flux_ratio"] = float(np.median(ratio[good]))
                    result["max_flux_ratio_error"] = float(np.abs(ratio[good] - 1).max())
    counts_differ = not (result["n_a"] == result["n_b"] == result["n_matched"])
    flux_differs = (result["max_flux_ratio_error"] or 0.0) > tolerance
    moved = (result["max_offset_arcsec"] or 0.0) > 0.0 and tolerance == 0
    result["differs"] = bool(counts_differ or flux_differs or moved)
    return result


def _values(column):
    import numpy as np

    return np.asarray(getattr(column, "value", column), dtype=float)
