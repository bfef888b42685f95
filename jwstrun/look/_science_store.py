"""The report's science figures of a task, computed on the worker side, and their reuse.

What the report says of an image3 task's products (:mod:`jwstrun.look._science`:
how far tweakreg moved each exposure, the sky levels skymatch recorded, the
catalog's magnitudes) is computed where the products are made, off the run's
critical path: in the preview helper process, the alignment and sky levels as
soon as every ``_crf`` exists (while resample runs), the catalog's numbers and
plot once source_catalog is done (while the worker validates the products); by
the worker at the end of its task when there is no helper
(:class:`jwstrun.look._worker.TaskPreviews`).  The task's manifest record keeps
them (``science``: the table rows and numbers, the plots as PNG files in
``OUTDIR/previews/``) with the size and modification time of every file they
were computed from; :func:`jwstrun.look.write_report` uses them while those
files are unchanged (``reused_*``), and computes them itself otherwise (runs
with ``--no-report``, older manifests, API runs, a truth catalog given).  Both
sides draw with the same functions, so the page is the same either way.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from .._io import atomic_write
from .preview import PREVIEW_DIRNAME

log = logging.getLogger(__name__)

ALIGNMENT_PLOT_SUFFIX = "_alignment.png"
MAGNITUDES_PLOT_SUFFIX = "_magnitudes.png"
_ROW_KEYS = {
    "alignment": ("cal", "crf", "status", "dra_arcsec", "ddec_arcsec", "shift_arcsec",
                  "rotation_deg"),
    "skymatch": ("name", "status", "level", "method", "subtracted"),
}
_NUMBER_KEYS = ("n_sources", "n_extended", "magnitudes", "match_text")


def _sources(items) -> list[list] | None:
    """``[key, size, mtime_ns]`` of each ``(key, path)``; None when one is missing."""
    found = []
    for key, path in items:
        try:
            stat = Path(path).stat()
        except OSError:
            return None
        found.append([key, stat.st_size, stat.st_mtime_ns])
    return found


def _pair_items(pairs):
    """The files an alignment is computed from: each cal by its path, each crf by name."""
    for cal, crf in pairs:
        yield str(cal), cal
        yield crf.name, crf


def _entry(kind: str, rows_or_numbers, items, plot: bytes | None, plot_path: Path,
           start: float, by: str) -> dict:
    entry = {("numbers" if kind == "catalog" else "rows"): rows_or_numbers,
             "sources": _sources(items), "plot": None}
    if plot is not None:
        atomic_write(plot_path, plot, fsync=False)  # a lost one is computed again
        entry["plot"] = f"{PREVIEW_DIRNAME}/{plot_path.name}"
    entry.update(seconds=round(time.perf_counter() - start, 3), by=by)
    return entry


# --------------------------------------------------------------------------
# The worker side
# --------------------------------------------------------------------------
def crf_science(inputs, out: Path, name: str, directory: Path, by: str = "worker") -> dict:
    """The alignment (tweakreg) and skymatch parts of a task whose ``_crf`` products
    are in ``out``: ``inputs`` are its manifest input entries (the ``_cal`` files),
    ``name`` names the plot, drawn into ``directory``."""
    from ._science import alignment_plot, cal_crf_pairs, skymatch_levels, tweakreg_shifts

    names = sorted(p.name for p in out.iterdir())
    science = {}
    start = time.perf_counter()
    pairs = cal_crf_pairs(inputs, names, out)
    if pairs:
        rows = tweakreg_shifts(pairs)
        science["alignment"] = _entry("alignment", rows, _pair_items(pairs), alignment_plot(rows),
                                      directory / f"{name}{ALIGNMENT_PLOT_SUFFIX}", start, by)
    start = time.perf_counter()
    crfs = [out / n for n in names if n.endswith("_crf.fits")]
    if crfs:
        science["skymatch"] = _entry("skymatch", skymatch_levels(crfs),
                                     [(p.name, p) for p in crfs], None, directory, start, by)
    return science


def catalog_science(catalogs: list[Path], directory: Path, by: str = "worker") -> dict:
    """The catalog part: per ``_cat.ecsv`` its numbers and magnitude plot (no truth)."""
    from ._science import catalog_figures

    entries = {}
    for cat in catalogs:
        start = time.perf_counter()
        numbers, plot = catalog_figures(cat)
        entries[cat.name] = _entry("catalog", numbers, [(cat.name, cat)], plot,
                                   directory / f"{cat.stem}{MAGNITUDES_PLOT_SUFFIX}", start, by)
    return {"catalogs": entries} if entries else {}


def science_current(science: dict, inputs, out: Path, kind: str = "crf") -> bool:
    """Whether the ``kind`` part of ``science`` (``crf``: alignment and sky levels,
    ``catalog``) was computed from the products in ``out`` as they are now (the
    helper computed it during the pipeline)."""
    from ._science import cal_crf_pairs

    names = sorted(p.name for p in out.iterdir())
    if kind == "catalog":
        entries = science.get("catalogs")
        cats = [n for n in names if n.endswith("_cat.ecsv")]
        return isinstance(entries, dict) and sorted(entries) == cats and all(
            _valid(entries[n], [(n, out / n)], "catalog") for n in cats)
    pairs = cal_crf_pairs(inputs, names, out)
    crfs = [out / n for n in names if n.endswith("_crf.fits")]
    return ((not pairs or _valid(science.get("alignment"), _pair_items(pairs), "alignment"))
            and (not crfs or _valid(science.get("skymatch"), [(p.name, p) for p in crfs],
                                    "skymatch")))


# --------------------------------------------------------------------------
# The report side
# --------------------------------------------------------------------------
def _valid(entry, items, kind: str) -> bool:
    """``entry`` has the expected shape and was computed from ``items`` as they are now."""
    if not isinstance(entry, dict):
        return False
    current = _sources(items)
    if current is None or entry.get("sources") != current:
        return False
    if kind == "catalog":
        numbers = entry.get("numbers")
        return isinstance(numbers, dict) and all(k in numbers for k in _NUMBER_KEYS)
    rows = entry.get("rows")
    return isinstance(rows, list) and all(
        isinstance(r, dict) and all(k in r for k in _ROW_KEYS[kind]) for r in rows)


def _reused(entry, items, run_dir: Path, kind: str):
    """``(entry, plot PNG or None)`` when ``entry`` is still valid and its plot is there
    and not older than what it shows, else None."""
    items = list(items)
    try:
        if not _valid(entry, items, kind):
            return None
        rel = entry.get("plot")
        if rel is None:
            return entry, None
        parts = Path(rel).parts
        if len(parts) != 2 or parts[0] != PREVIEW_DIRNAME or parts[1] in ("", ".", ".."):
            return None
        plot = run_dir / rel
        if plot.stat().st_mtime_ns < max(mtime for _key, _size, mtime in entry["sources"]):
            return None
        return entry, plot.read_bytes()
    except (OSError, TypeError, ValueError, AttributeError) as exc:
        log.debug("%s figures not reused: %s", kind, exc)
        return None


def reused_alignment(science, pairs, run_dir: Path) -> tuple[list[dict], bytes | None] | None:
    """The worker's alignment rows and plot of ``pairs`` (as the report found them)."""
    from ._science import has_alignment_plot

    found = _reused((science or {}).get("alignment"), _pair_items(pairs), run_dir, "alignment")
    if found is None or (found[1] is None) == has_alignment_plot(found[0]["rows"]):
        return None
    return found[0]["rows"], found[1]


def reused_skymatch(science, crfs: list[Path]) -> list[dict] | None:
    """The worker's skymatch rows of ``crfs``."""
    found = _reused((science or {}).get("skymatch"), [(p.name, p) for p in crfs],
                    Path("."), "skymatch")
    return None if found is None else found[0]["rows"]


def reused_catalog(science, cat_path: Path) -> tuple[dict, bytes | None] | None:
    """The worker's numbers and magnitude plot of the catalog ``cat_path`` (no truth)."""
    entry = ((science or {}).get("catalogs") or {}).get(cat_path.name) \
        if isinstance((science or {}).get("catalogs"), dict) else None
    found = _reused(entry, [(cat_path.name, cat_path)], cat_path.parent, "catalog")
    if found is None or (found[1] is None) == bool(found[0]["numbers"]["magnitudes"]):
        return None
    return found[0]["numbers"], found[1]
