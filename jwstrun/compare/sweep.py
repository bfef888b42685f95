"""A sweep's table: what each variant (:mod:`jwstrun.runner._sweep`) gave.

One row per variant, over the products of its tasks:

- ``outlier_fraction``: pixels flagged OUTLIER in the ``_crf`` DQ arrays over the
  valid pixels (those not DO_NOT_USE, or DO_NOT_USE because they are outliers);
- ``n_sources``: rows of the ``_cat.ecsv`` catalogues;
- ``tweakreg_rmse_arcsec``: the largest ``FIT RMSE`` tweakreg's fits logged (tangent
  plane, arcsec; none when tweakreg did not fit);
- with a truth catalogue (``ra``, ``dec``): ``n_matched``, the catalogue sources within
  :data:`MATCH_ARCSEC` of an injected one, and ``alignment_rms_arcsec``, the RMS of
  their offsets from the injected positions around the median offset
  (:func:`truth_matches`).

numpy and astropy are imported inside the functions.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from ..products import DQ_FLAGS, read_catalog

__all__ = ["MATCH_ARCSEC", "COLUMNS", "sweep_table", "write_sweep_table", "outlier_counts",
           "tweakreg_rmse", "truth_matches"]

log = logging.getLogger(__name__)

#: A catalogue source within this of an injected source is matched (tweakreg aligns
#: relative to the first exposure, whose absolute pointing error stays: ~0.1" simulated).
MATCH_ARCSEC = 0.25
#: The measured columns, in the table's order (after ``variant`` and the swept keys).
COLUMNS = ("tasks_ok", "tasks_failed", "outlier_fraction", "n_outliers", "n_valid",
           "n_sources", "tweakreg_rmse_arcsec", "n_matched", "alignment_rms_arcsec")
_RMSE = re.compile(r"FIT RMSE:\s*([-+0-9.eEnaif]+)")


def outlier_counts(crf_files) -> tuple[int, int]:
    """(pixels flagged OUTLIER, valid pixels) over the DQ arrays of ``crf_files``."""
    import numpy as np
    from astropy.io import fits

    outlier, do_not_use = DQ_FLAGS["OUTLIER"], DQ_FLAGS["DO_NOT_USE"]
    n_outliers = n_valid = 0
    for path in crf_files:
        with fits.open(path, memmap=False) as hdul:
            dq = np.asarray(hdul["DQ"].data, dtype=np.uint32)
        flagged = (dq & outlier) != 0
        n_outliers += int(np.count_nonzero(flagged))
        n_valid += int(np.count_nonzero(((dq & do_not_use) == 0) | flagged))
    return n_outliers, n_valid


def tweakreg_rmse(log_files) -> float | None:
    """The largest ``FIT RMSE`` tweakwcs logged in the tasks' logs (None: no fit)."""
    values = []
    for path in log_files:
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        for match in _RMSE.finditer(text):
            try:
                values.append(float(match.group(1)))
            except ValueError:
                continue
    return max(values) if values else None


def truth_matches(cat_files, truth) -> tuple[int, float | None]:
    """(catalogue sources within :data:`MATCH_ARCSEC` of a truth source, RMS offset in
    arcsec of those from their truth source around the median offset -- the frame's
    common offset taken out, as tweakreg aligns relative to an exposure; None under
    two matches)."""
    import numpy as np
    from astropy.coordinates import SkyCoord

    truth_pos = SkyCoord(np.asarray(truth["ra"], dtype=float),
                         np.asarray(truth["dec"], dtype=float), unit="deg")
    offsets = []
    for path in cat_files:
        cat = read_catalog(path)
        if not (len(cat) and len(truth_pos)):
            continue
        measured = cat["sky_centroid"]
        idx, sep, _ = measured.match_to_catalog_sky(truth_pos)
        ok = sep.arcsec <= MATCH_ARCSEC
        dlon, dlat = truth_pos[idx[ok]].spherical_offsets_to(measured[ok])
        offsets += list(zip(dlon.arcsec, dlat.arcsec, strict=True))
    if len(offsets) < 2:
        return len(offsets), None
    rel = np.asarray(offsets) - np.median(offsets, axis=0)
    return len(offsets), float(np.sqrt(np.mean(np.sum(rel**2, axis=1))))


def sweep_table(summary, variants, truth: str | os.PathLike | None = None) -> list[dict]:
    """One row per variant of ``summary`` (a sweep's :class:`RunSummary`): ``variant``
    (its folder), ``values`` and the :data:`COLUMNS` (None where they do not apply)."""
    truth_table = None
    if truth is not None:
        from astropy.table import Table

        truth_table = Table.read(truth, format="ascii.ecsv")
    rows = []
    for variant in variants:
        results = [r for r in summary.results
                   if getattr(summary.tasks.get(r.task_id), "subdir", None) == variant.subdir]
        done = [r for r in results if r.status != "failed"]
        names = [n for r in done for n in r.outputs]
        crfs = [summary.outdir / n for n in names if n.endswith("_crf.fits")]
        cats = [summary.outdir / n for n in names if n.endswith("_cat.ecsv")]
        row = {"variant": variant.folder, "values": dict(variant.values),
               **dict.fromkeys(COLUMNS)}
        row["tasks_ok"], row["tasks_failed"] = len(done), len(results) - len(done)
        if crfs:
            row["n_outliers"], row["n_valid"] = outlier_counts(crfs)
            row["outlier_fraction"] = (row["n_outliers"] / row["n_valid"]
                                       if row["n_valid"] else None)
        if cats:
            row["n_sources"] = sum(len(read_catalog(p)) for p in cats)
        logs = [summary.outdir / r.log_file if not os.path.isabs(r.log_file) else r.log_file
                for r in done if r.log_file]
        row["tweakreg_rmse_arcsec"] = tweakreg_rmse(logs)
        if truth_table is not None and cats:
            row["n_matched"], row["alignment_rms_arcsec"] = truth_matches(cats, truth_table)
        rows.append(row)
    return rows


def write_sweep_table(rows: list[dict], variants, path: Path) -> Path:
    """``rows`` as an ECSV table (a column per swept key, masked where None)."""
    from astropy.table import MaskedColumn, Table

    from .._io import atomic_write

    keys = list(variants[0].values) if variants else []
    table = Table()
    table["variant"] = [row["variant"] for row in rows]
    for key in keys:
        table[key] = [row["values"][key] for row in rows]
    for column in COLUMNS:
        values = [row[column] for row in rows]
        filler = 0.0 if any(isinstance(v, float) for v in values) else 0
        table[column] = MaskedColumn([filler if v is None else v for v in values],
                                     mask=[v is None for v in values])
    table.meta["description"] = ("jwstrun sweep: one row per variant (OUTDIR/sweep/<variant>/); "
                                 "see docs/workflows/compare.md")
    return atomic_write(path, lambda tmp: table.write(tmp, format="ascii.ecsv", overwrite=True))
