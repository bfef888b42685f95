"""What the report reads from image3's products: how far tweakreg moved each exposure
(its ``_cal`` and ``_crf`` WCS), the sky levels skymatch recorded (the ``_crf``
headers' ``BKGLEVEL``, ``BKGMETH``, ``BKGSUB``) and the catalog's magnitudes,
compared with a truth catalog of injected sources when one is given.

The figures come from the products themselves, never from a step's log text: a
change in tweakwcs' or skymatch's wording cannot empty the report.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import JwstrunError
from ..products import product_basename, read_catalog
from ._html import _data_uri, _e, _fig_png, _num, _plot_figure

__all__ = ["tweakreg_shifts", "skymatch_levels", "alignment_plot", "catalog_figures",
           "cal_crf_pairs"]

log = logging.getLogger(__name__)

# Catalog-to-truth match radius: tweakreg aligns relative to the first exposure,
# so the mosaic keeps that exposure's absolute pointing error (~0.1" simulated).
_MATCH_ARCSEC = 0.25
# The second point that measures a rotation: this many pixels above the centre.
_ROTATION_ARM_PIXELS = 100.0


# --------------------------------------------------------------------------
# Alignment (tweakreg): the _cal WCS against the _crf WCS
# --------------------------------------------------------------------------
def tweakreg_shifts(pairs) -> list[dict]:
    """How tweakreg moved each exposure, from its ``(cal, crf)`` pair of products.

    Each row: ``cal``, ``crf`` (file names), ``status`` (the crf's ``S_TWKREG``:
    COMPLETE or SKIPPED), ``dra_arcsec`` / ``ddec_arcsec`` (the sky position of
    the image centre, crf minus cal, RA times cos Dec), ``shift_arcsec`` (their
    length) and ``rotation_deg`` (the turn of the image's y axis on the sky).
    Both WCS are read from the FITS headers (``update_fits_wcsinfo`` writes the
    crf's after the fit); a pair whose headers hold no celestial WCS gets None.
    """
    rows = []
    for cal, crf in pairs:
        cal, crf = Path(cal), Path(crf)
        row = {"cal": cal.name, "crf": crf.name, "status": None, "dra_arcsec": None,
               "ddec_arcsec": None, "shift_arcsec": None, "rotation_deg": None}
        try:
            row.update(_wcs_change(cal, crf))
        except Exception as exc:  # noqa: BLE001 - one unreadable pair shows as "-"
            log.debug("no WCS change for %s: %s", crf.name, exc)
        rows.append(row)
    return rows


def _wcs_change(cal: Path, crf: Path) -> dict:
    """The move of the centre pixel's and the y axis' sky positions between two WCS."""
    import warnings

    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SIP/FITS WCS chatter about the JWST headers
        h_cal = fits.getheader(cal, "SCI")
        with fits.open(crf) as hdul:
            status = str(hdul[0].header.get("S_TWKREG", "") or "").strip() or None
            h_crf = hdul["SCI"].header.copy()
        nx, ny = int(h_cal["NAXIS1"]), int(h_cal["NAXIS2"])
        x = np.array([(nx - 1) / 2, (nx - 1) / 2])
        y = np.array([(ny - 1) / 2, (ny - 1) / 2 + _ROTATION_ARM_PIXELS])
        before = WCS(h_cal, naxis=2).pixel_to_world(x, y)
        after = WCS(h_crf, naxis=2).pixel_to_world(x, y)
    dra, ddec = before[0].spherical_offsets_to(after[0])
    turn = after[0].position_angle(after[1]) - before[0].position_angle(before[1])
    return {"status": status, "dra_arcsec": float(dra.arcsec), "ddec_arcsec": float(ddec.arcsec),
            "shift_arcsec": float(before[0].separation(after[0]).arcsec),
            "rotation_deg": float(turn.wrap_at("180d").deg)}


def _cal_crf_pairs(record: dict, run_dir: Path) -> list[tuple[Path, Path]]:
    """The (cal input, crf output) pairs of a task (an image3 association) both on disk."""
    return cal_crf_pairs(record.inputs, record.outputs, run_dir)


def cal_crf_pairs(inputs, names, directory: Path) -> list[tuple[Path, Path]]:
    """The (cal input, crf product) pairs of a task both on disk: ``inputs`` are its
    manifest input entries, ``names`` its product names, in ``directory``."""
    cals = {product_basename(e["name"]): Path(e["path"]) for e in inputs or []
            if str(e.get("name", "")).endswith("_cal.fits") and e.get("path")}
    pairs = []
    for name in names or []:
        crf = directory / name
        if not name.endswith("_crf.fits") or not crf.exists():
            continue
        cal = next((p for base, p in cals.items() if name.startswith(base + "_")), None)
        if cal is not None and cal.exists():
            pairs.append((cal, crf))
    return pairs


def _alignment_block(record: dict, rows: list[dict], plot: bytes | None = None) -> str:
    """The task's alignment table and plot (``plot``: its PNG, drawn here when None)."""
    title = f"<h3>{_e(record.task_id)}</h3>"
    if rows and all(r["status"] == "SKIPPED" for r in rows):
        return title + "<p>tweakreg was skipped: the exposures keep their pointing WCS.</p>"
    cells = "".join(
        f"<tr class='tweakreg'><td>{_e(r['cal'])}</td><td>{_e(r['status'] or '-')}</td>"
        f"<td class='num'>{_num(r['dra_arcsec'], '.4f')}</td>"
        f"<td class='num'>{_num(r['ddec_arcsec'], '.4f')}</td>"
        f"<td class='num'>{_num(r['shift_arcsec'], '.4f')}</td>"
        f"<td class='num'>{_num(r['rotation_deg'], '.5f')}</td><td>{_e(r['crf'])}</td></tr>"
        for r in rows
    )
    plot = alignment_plot(rows) if plot is None else plot
    return (title + "<table class='tweakreg-table'><tr><th>exposure</th><th>tweakreg</th>"
            "<th>ΔRA cos Dec (arcsec)</th><th>ΔDec (arcsec)</th><th>moved (arcsec)</th>"
            "<th>rotation (deg)</th><th>crf</th></tr>" + cells + "</table>"
            + (f"<div class='plot'><img alt='tweakreg shifts' src='{_data_uri(plot)}'></div>"
               if plot else ""))


def _alignment_section(records: list[dict], run_dir: Path) -> str:
    from ._science_store import reused_alignment

    blocks = []
    for record in records:  # the tasks that turned _cal inputs into _crf (image3's members)
        pairs = _cal_crf_pairs(record, run_dir)
        if pairs:  # what the worker computed (jwstrun.look._science_store), else now
            rows, plot = (reused_alignment(record.science, pairs, run_dir)
                          or (tweakreg_shifts(pairs), None))
            blocks.append(_alignment_block(record, rows, plot))
    if not blocks:
        return ""
    return ("<h2>Alignment (tweakreg)</h2><p class='muted'>From the products: how far the sky "
            "position of each exposure's centre pixel moved between its _cal WCS (the pointing) "
            "and its _crf WCS (after tweakreg), and how much its y axis turned. tweakreg aligns "
            "the exposures to one another: the reference stays where it was.</p>"
            + "".join(blocks))


def has_alignment_plot(rows: list[dict]) -> bool:
    """Whether the alignment block of ``rows`` has a plot (:func:`alignment_plot`)."""
    return not all(r["status"] == "SKIPPED" for r in rows) and any(
        r["shift_arcsec"] is not None for r in rows)


def alignment_plot(rows: list[dict]) -> bytes | None:
    """The PNG bar plot of how far each exposure moved; None when the block has none
    (tweakreg skipped on every exposure, or no pair with a WCS)."""
    import numpy as np

    if not has_alignment_plot(rows):
        return None
    rows = [r for r in rows if r["shift_arcsec"] is not None]
    fig = _plot_figure(6.4, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(rows))
    ax.bar(x, [r["shift_arcsec"] for r in rows], 0.5, color="#c0504d")
    ax.set_xticks(x, [product_basename(r["cal"]) for r in rows], fontsize=6, rotation=12)
    ax.set_ylabel("arcsec")
    ax.set_title("how far tweakreg moved each exposure (cal → crf WCS)", fontsize=9)
    return _fig_png(fig)


# --------------------------------------------------------------------------
# Sky matching (skymatch): the crf headers
# --------------------------------------------------------------------------
def skymatch_levels(paths) -> list[dict]:
    """The sky level skymatch recorded in each product's primary header.

    Each row: ``name``, ``status`` (``S_SKYMAT``), ``level`` (``BKGLEVEL``, in the
    image's units), ``method`` (``BKGMETH``) and ``subtracted`` (``BKGSUB``);
    None for a keyword that is absent or a file that cannot be read.
    """
    from astropy.io import fits

    rows = []
    for path in map(Path, paths):
        try:
            header = fits.getheader(path, 0)
        except Exception as exc:  # noqa: BLE001 - a missing product shows as "-"
            log.debug("no header of %s: %s", path.name, exc)
            header = {}
        rows.append({"name": path.name, "status": header.get("S_SKYMAT"),
                     "level": header.get("BKGLEVEL"), "method": header.get("BKGMETH"),
                     "subtracted": header.get("BKGSUB")})
    return rows


def _skymatch_section(records: list[dict], run_dir: Path) -> str:
    from ._science_store import reused_skymatch

    blocks = []
    for record in records:
        crfs = [run_dir / n for n in record.outputs or [] if n.endswith("_crf.fits")]
        if not crfs:
            continue
        levels = reused_skymatch(record.science, crfs) or skymatch_levels(crfs)
        rows = "".join(
            f"<tr class='skymatch'><td>{_e(r['name'])}</td><td>{_e(r['status'] or '-')}</td>"
            f"<td class='num'>{_num(r['level'], '.5g')}</td><td>{_e(r['method'] or '-')}</td>"
            f"<td>{_e('-' if r['subtracted'] is None else r['subtracted'])}</td></tr>"
            for r in levels
        )
        blocks.append(
            f"<h3>{_e(record.task_id)}</h3><table class='skymatch-table'><tr><th>crf</th>"
            "<th>skymatch</th><th>sky level (BKGLEVEL)</th><th>method (BKGMETH)</th>"
            "<th>subtracted (BKGSUB)</th></tr>" + rows + "</table>"
        )
    if not blocks:
        return ""
    return ("<h2>Sky matching (skymatch)</h2><p class='muted'>From the crf headers. Levels in "
            "the images' units (MJy/sr); with 'match' the lowest image is 0 and the others are "
            "relative to it.</p>" + "".join(blocks))


# --------------------------------------------------------------------------
# Catalog magnitudes, against a truth catalog when one is given
# --------------------------------------------------------------------------
def _read_truth(truth: str | os.PathLike | None):
    """The truth table, or None (with a warning when it was given but is unreadable)."""
    if truth is None:
        return None
    try:
        return read_catalog(truth)
    except JwstrunError as exc:  # the comparison is optional: the page is still written
        log.warning("%s No measured-vs-injected plot.", exc)
        return None


def _floats(column):
    """A table column as a float array, masked or invalid values as NaN."""
    import numpy as np

    values = getattr(column, "value", column)  # a Quantity's numbers
    return np.asarray(np.ma.filled(np.ma.masked_invalid(np.ma.asarray(values, dtype=float)),
                                   np.nan), float)


def _catalog_section(records: list[dict], run_dir: Path, truth: str | os.PathLike | None) -> str:
    from ._science_store import reused_catalog

    cats = [(run_dir / n, r) for r in records for n in r.outputs or []
            if n.endswith("_cat.ecsv") and (run_dir / n).exists()]
    if not cats:
        return ""
    truth_table = _read_truth(truth)
    blocks = []
    for cat_path, record in cats:
        try:  # what the worker computed (jwstrun.look._science_store), else now
            numbers, plot = ((truth_table is None and reused_catalog(record.science, cat_path))
                             or catalog_figures(cat_path, truth_table, Path(truth or "")))
            blocks.append(_catalog_block(cat_path.name, numbers, plot))
        except JwstrunError as exc:
            blocks.append(f"<p class='err'>{_e(cat_path.name)}: unreadable ({_e(exc)})</p>")
    return "<h2 id='catalog'>Catalog magnitudes</h2>" + "".join(blocks)


_MAG_COLUMN = "aper_total_abmag"


def catalog_figures(cat_path: Path, truth=None,
                    truth_path: Path = Path("")) -> tuple[dict, bytes | None]:
    """What the report says of a catalog: its numbers (``n_sources``, ``n_extended``,
    ``magnitudes``: whether it has them, ``match_text``: the truth comparison's
    sentence) and the PNG of its magnitude histogram (and of measured against
    injected magnitudes when ``truth``, a table, is given)."""
    import numpy as np

    cat = read_catalog(cat_path)
    numbers = {"n_sources": len(cat), "n_extended": None, "magnitudes": False, "match_text": ""}
    if _MAG_COLUMN not in cat.colnames:
        return numbers, None
    mags = _floats(cat[_MAG_COLUMN])
    good = np.isfinite(mags)
    if "is_extended" in cat.colnames:
        numbers["n_extended"] = int(np.sum(np.asarray(cat["is_extended"])))
    fig = _plot_figure(6.4 if truth is None else 11.0, 3.6)
    ax = fig.add_subplot(1, 1 if truth is None else 2, 1)
    if good.any():
        ax.hist(mags[good], bins=min(40, max(8, good.sum() // 4)), color="#4f81bd")
    ax.set_xlabel(f"{_MAG_COLUMN} (AB mag)")
    ax.set_ylabel("sources")
    ax.set_title(f"{cat_path.name}: {good.sum()} of {len(cat)} with a magnitude", fontsize=8)
    if truth is not None and "sky_centroid" in cat.colnames:
        comparison = _match_truth(cat, truth, mags)
        if comparison is not None:
            numbers["match_text"] = _truth_plot(fig, *comparison, _MAG_COLUMN, truth_path.name)
    numbers["magnitudes"] = True
    return numbers, _fig_png(fig)


def _catalog_block(name: str, numbers: dict, plot: bytes | None) -> str:
    if not numbers["magnitudes"]:
        return f"<p>{_e(name)}: {numbers['n_sources']} sources, no {_MAG_COLUMN} column.</p>"
    plot = f"<div class='plot'><img alt='catalog magnitudes' src='{_data_uri(plot)}'></div>"
    n_ext = numbers["n_extended"]
    ext = f", {n_ext} extended" if n_ext is not None else ""
    return (f"<p><b>{_e(name)}</b>: {numbers['n_sources']} sources{ext}."
            f"{numbers['match_text']}</p>{plot}")


def _truth_plot(fig, injected, measured, sep, column: str, truth_name: str) -> str:
    """Measured against injected magnitudes, in the figure's second panel; the sentence."""
    import numpy as np

    ax = fig.add_subplot(1, 2, 2)
    ax.scatter(injected, measured, s=9, color="#c0504d")
    lo = float(np.nanmin([injected.min(), measured.min()])) - 0.3
    hi = float(np.nanmax([injected.max(), measured.max()])) + 0.3
    ax.plot([lo, hi], [lo, hi], color="#333", lw=0.8, label="measured = injected")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("injected abmag (truth)")
    ax.set_ylabel(f"measured {column}")
    delta = measured - injected
    ax.set_title(f"{len(injected)} matched within {_MATCH_ARCSEC}\": median Δ = "
                 f"{np.median(delta):+.3f} mag", fontsize=8)
    ax.legend(fontsize=8)
    return (f" {len(injected)} sources matched to {_e(truth_name)} within "
            f"{_MATCH_ARCSEC} arcsec; median measured − injected = {np.median(delta):+.3f} mag, "
            f"median separation {np.median(sep):.3f} arcsec.")


def _match_truth(cat, truth, mags):
    """(injected, measured, separation) for catalog sources within _MATCH_ARCSEC of a truth source."""
    import numpy as np
    from astropy.coordinates import SkyCoord

    if not {"ra", "dec", "abmag"} <= set(truth.colnames):
        return None
    try:
        measured_pos = cat["sky_centroid"]
        truth_pos = SkyCoord(_floats(truth["ra"]), _floats(truth["dec"]), unit="deg")
        idx, sep, _ = measured_pos.match_to_catalog_sky(truth_pos)
    except Exception as exc:  # noqa: BLE001 - optional comparison
        log.debug("truth match failed: %s", exc)
        return None
    sep = sep.arcsec
    ok = (sep < _MATCH_ARCSEC) & np.isfinite(mags)
    if "kind" in truth.colnames:  # extended sources have no single total magnitude to compare
        ok &= np.asarray([str(k) == "point" for k in truth["kind"][idx]])
    if not ok.any():
        return None
    return _floats(truth["abmag"])[idx][ok], mags[ok], sep[ok]
