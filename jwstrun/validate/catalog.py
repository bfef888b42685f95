"""Checks of a source catalog (``*_cat.ecsv``, written by image3's source_catalog step)."""

from __future__ import annotations

from pathlib import Path

from ..products import read_catalog
from .findings import FileReport

__all__ = ["CATALOG_REQUIRED_COLUMNS", "CATALOG_EXPECTED_COLUMNS", "validate_catalog"]

#: Columns a catalog must have (jwst's source_catalog has written them for years).
CATALOG_REQUIRED_COLUMNS = ("label", "xcentroid", "ycentroid", "sky_centroid")
#: Columns a current jwst writes; their absence is only a warning.
CATALOG_EXPECTED_COLUMNS = (
    "isophotal_flux",
    "isophotal_flux_err",
    "aper_total_flux",
    "aper_total_flux_err",
)


def validate_catalog(path: Path, report: FileReport) -> None:
    """Add the findings about the catalog at ``path`` to ``report`` (and its summary).

    Raises :class:`~jwstrun.errors.InputError` naming the file when it cannot be read
    as an ECSV table at all (:func:`jwstrun.validate.validate_file` turns that into a
    finding).
    """
    if not _readable_ecsv(path, report):
        return
    table = read_catalog(path)  # raises InputError naming the file
    columns = list(table.colnames)
    report.summary = {"n_sources": len(table), "columns": columns}
    for c in CATALOG_REQUIRED_COLUMNS:
        if c not in columns:
            report.error("catalog-columns", f"column {c} is missing.")
    for c in CATALOG_EXPECTED_COLUMNS:
        if c not in columns:
            report.warn("catalog-columns", f"column {c} is missing (current jwst writes it).")
    if len(table) == 0:
        report.warn("catalog-rows", "catalog has no sources.")
        return
    if "sky_centroid" in columns:
        _check_sky_centroid(table["sky_centroid"], report)
    _check_pixel_centroids(table, columns, report)


def _readable_ecsv(path: Path, report: FileReport) -> bool:
    """False (with an error finding) for an empty, gzip-compressed or non-ECSV file."""
    if path.stat().st_size == 0:
        report.error("unreadable", f"{path}: file is empty (0 bytes). Re-create it.")
        return False
    with open(path, "rb") as handle:
        start = handle.read(32)
    if start[:2] == b"\x1f\x8b":
        report.error("unreadable", f"{path}: is gzip-compressed; run 'gunzip {path}' first.")
        return False
    if not start.startswith(b"# %ECSV"):
        report.error(
            "unreadable",
            f"{path}: is not an ECSV table (no '# %ECSV' header line). jwst writes source "
            "catalogs as *_cat.ecsv.",
        )
        return False
    return True


def _check_sky_centroid(sky, report: FileReport) -> None:
    import numpy as np

    ra = getattr(getattr(sky, "ra", None), "deg", None)
    dec = getattr(getattr(sky, "dec", None), "deg", None)
    if ra is None or dec is None:
        report.error("sky-coordinates", "sky_centroid is not a sky coordinate column (SkyCoord).")
        return
    good = np.isfinite(ra) & np.isfinite(dec)
    if not np.any(good):
        report.error("sky-coordinates", "no source has finite sky coordinates.")
    elif not np.all(good):
        report.warn(
            "sky-coordinates",
            f"{int(np.sum(~good))} of {len(good)} sources have no finite sky coordinates.",
        )
    else:
        report.summary["ra_range"] = [float(np.min(ra)), float(np.max(ra))]
        report.summary["dec_range"] = [float(np.min(dec)), float(np.max(dec))]


def _check_pixel_centroids(table, columns, report: FileReport) -> None:
    import numpy as np

    for c in ("xcentroid", "ycentroid"):
        if c in columns and not np.any(np.isfinite(np.asarray(table[c], dtype=float))):
            report.error("catalog-values", f"{c} has no finite value.")
