"""The static HTML run report: ``OUTDIR/jwstrun-report.html``.

:func:`write_report` writes one page with no network resources and no
JavaScript: task table, timings, memory, validation, CRDS references, resolved
parameters, thumbnails linking to full previews (:mod:`jwstrun.look.preview`),
and what the products say of the alignment, the sky levels and the catalog
(:mod:`jwstrun.look._science`).  The previews are normally drawn by the workers
as each task ends (:mod:`jwstrun.look._worker`); the report reuses them.  The
run is read from its manifest (:mod:`jwstrun.manifest`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from .._io import atomic_write
from ..errors import InputError, JwstrunError, OutputError
from ..products import product_type
from ..stages import stage_names
from ._html import _CSS, _data_uri, _e, _num, _rel
from ._science import _alignment_section, _catalog_section, _skymatch_section
from ._tiles import TILE_CSS, tile_map_section
from .preview import MAX_PREVIEWS, PREVIEW_DIRNAME, PREVIEW_TYPES, gallery_options, is_level3, preview_file

__all__ = ["REPORT_NAME", "find_run_dir", "write_report", "preload_report_modules"]

log = logging.getLogger(__name__)

REPORT_NAME = "jwstrun-report.html"


def find_run_dir(outdir: str | os.PathLike) -> Path:
    """The directory holding ``jwstrun-manifest.json``: OUTDIR, or OUTDIR/out for a demo."""
    from ..manifest import MANIFEST_NAME

    outdir = Path(outdir)
    if not outdir.is_dir():
        raise InputError(f"{outdir}: directory not found. Give the -o OUTDIR of a jwstrun run.")
    for candidate in (outdir, outdir / "out"):
        if (candidate / MANIFEST_NAME).is_file():
            return candidate
    raise InputError(
        f"{outdir}: has no {MANIFEST_NAME} (nor out/{MANIFEST_NAME}). Give the output directory "
        "of 'jwstrun image2', 'jwstrun image3' or 'jwstrun demo'."
    )


def _load_manifest(run_dir: Path):
    """The manifest's records and runs that have the expected shape (a warning for the rest),
    read by the same code as the runner's (:func:`jwstrun.manifest.read_manifest`)."""
    from ..manifest import read_manifest

    manifest = read_manifest(run_dir)
    if manifest.problems:
        problems = manifest.problems
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        log.warning("%s is not a valid manifest (%s%s): the report leaves that out. Re-run the "
                    "pipeline command to rebuild it.", manifest.path, "; ".join(problems[:3]), more)
    return manifest


def _or(value, default):
    """``value``, or ``default`` where the record has none."""
    return default if value is None else value


def _task_sort_key(record: dict):
    """Tasks in the order of the stage table (image2 before image3), then by start."""
    order = {name: i for i, name in enumerate(stage_names())}
    return (order.get(record.pipeline, len(order)), record.start or 0,
            record.task_id)


def _validation_counts(record: dict) -> tuple[int, int]:
    validation = record.validation or {}
    errors = warnings = 0
    for findings in (validation.get("files") or {}).values():
        for finding in findings or []:
            if finding.get("severity") == "error":
                errors += 1
            else:
                warnings += 1
    return errors, warnings


def _task_details(record: dict, run_dir: Path, report_dir: Path) -> str:
    import yaml

    parts = []
    if record.error:
        parts.append(f"<p class='err'><b>Error:</b> {_e(record.error)}</p>")
    meta = [
        ("pipeline", f"{record.pipeline_class or record.pipeline}"),
        ("input", Path(str(record.input or "")).name),
        ("inputs", ", ".join(e.get("name", "") for e in record.inputs or [])),
        ("started / ended", f"{_or(record.start_iso, '-')} / {_or(record.end_iso, '-')}"),
        ("worker", f"pid {_or(record.worker_pid, '-')} on {_or(record.host, '-')}, "
                   f"task #{_or(record.tasks_in_worker, '-')} in that worker, "
                   f"worker peak {_num(record.worker_peak_rss_mb, '.0f', ' MB')}"),
        ("versions", ", ".join(f"{k} {v}" for k, v in (record.versions or {}).items())),
        ("fingerprint", (record.fingerprint or "-")[:16]),
    ]
    if record.memory:
        meta.insert(4, ("memory", _memory_text(record.memory, record.peak_rss_mb)))
    parts.append("<table class='kv'>" + "".join(
        f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in meta) + "</table>")
    steps = record.step_times or {}
    if steps:
        parts.append("<b>Step times</b><table><tr><th>step</th><th>seconds</th></tr>" + "".join(
            f"<tr><td>{_e(k)}</td><td class='num'>{_num(v)}</td></tr>" for k, v in steps.items())
            + "</table>")
    refs = record.references or {}
    if refs or record.crds_context:
        # Products of one task normally share their references: show each distinct set once.
        distinct: dict[str, list[str]] = {}
        for product, keys in refs.items():
            distinct.setdefault(json.dumps(keys, sort_keys=True), []).append(product)
        block = [f"<b>CRDS</b> context <code>{_e(record.crds_context or '-')}</code>"]
        for keys_json, products in distinct.items():
            keys = json.loads(keys_json)
            block.append(
                f"<table><tr><th>reference ({_e(', '.join(products) if len(products) < 3 else f'{len(products)} products')})"
                "</th><th>file</th></tr>" + "".join(
                    f"<tr><td>{_e(k)}</td><td><code>{_e(v)}</code></td></tr>"
                    for k, v in sorted(keys.items())) + "</table>")
        parts.append("".join(block))
    validation = (record.validation or {}).get("files") or {}
    findings = [(name, f) for name, items in validation.items() for f in items or []]
    if validation:
        if findings:
            parts.append("<b>Validation findings</b><ul>" + "".join(
                f"<li class='{'err' if f.get('severity') == 'error' else 'warn'}'>"
                f"{_e(name)}: {_e(f.get('severity'))} [{_e(f.get('check'))}] {_e(f.get('message'))}</li>"
                for name, f in findings) + "</ul>")
        else:
            parts.append(f"<p>Validation: {len(validation)} product(s), no findings.</p>")
    if record.parameters:
        parts.append("<details><summary>requested parameters (profiles and --set)</summary><pre>"
                     + _e(yaml.safe_dump(record.parameters, sort_keys=False)) + "</pre></details>")
    if record.resolved_parameters:
        parts.append("<details><summary>resolved parameters (as stpipe logged them)</summary><pre>"
                     + _e(yaml.safe_dump(record.resolved_parameters, sort_keys=False,
                                         default_flow_style=None))
                     + "</pre></details>")
    if record.intermediates:
        # not products: listed (and linked while they are there), never previewed or validated
        parts.append("<b>Intermediate files</b> (not products)<ul>" + "".join(
            f"<li><a href='{_rel(run_dir / name, report_dir)}'>{_e(name)}</a></li>"
            if (run_dir / name).exists() else f"<li>{_e(name)} (removed)</li>"
            for name in record.intermediates) + "</ul>")
    if record.temp_dir:
        parts.append(f"<p>Temporary directory kept (--keep-temp): <code>{_e(record.temp_dir)}"
                     "</code></p>")
    log_file = record.log_file
    if log_file and (run_dir / log_file).exists():
        parts.append(f"<p>Log: <a href='{_rel(run_dir / log_file, report_dir)}'>{_e(log_file)}</a></p>")
    return "".join(parts)


def _peak_cell(record: dict) -> str:
    """Measured peak, and for image3 the estimate made before the run (jwstrun.mosaic)."""
    measured = _num(record.peak_rss_mb, ".0f", " MB")
    memory = record.memory or {}
    if memory.get("estimate_mb") is None:
        return measured
    return (f"{measured} <span class='muted' title='estimated before the run'>"
            f"(est. {_num(memory['estimate_mb'], '.0f', ' MB')})</span>")


def _memory_text(memory: dict, peak_mb) -> str:
    mosaic = memory.get("mosaic") or {}
    shape = mosaic.get("shape")
    grid = f"mosaic {shape[1]} x {shape[0]} pixels" if shape else "no mosaic (resample skipped)"
    ratio = ""
    if peak_mb and memory.get("estimate_mb"):
        ratio = f", estimate / measured peak {memory['estimate_mb'] / peak_mb:.2f}"
    return (f"{str(memory.get('mode', '-')).replace('_', ' ')} mode, {grid}, estimated peak "
            f"{_num(memory.get('estimate_mb'), '.0f', ' MB')}{ratio}; {memory.get('reason', '')}")


def _tasks_section(records: list, run_dir: Path, report_dir: Path) -> str:
    rows = []
    for record in records:
        status = _or(record.status, "?")
        errors, warnings = _validation_counts(record)
        if record.validation is None:
            vtext = "<span class='muted'>not run</span>"
        else:
            vtext = (f"<span class='{'err' if errors else 'ok'}'>{errors} error(s)</span>, "
                     f"{warnings} warning(s)")
        log_file = record.log_file
        log_cell = (f"<a href='{_rel(run_dir / log_file, report_dir)}'>log</a>"
                    if log_file and (run_dir / log_file).exists() else "-")
        rows.append(
            f"<tr class='task' data-status='{_e(status)}'><td><code>{_e(record.task_id)}</code></td>"
            f"<td>{_e(record.pipeline)}</td><td class='{_e(status)}'>{_e(status)}</td>"
            f"<td class='num'>{_num(record.wall_s, '.1f', ' s')}</td>"
            f"<td class='num'>{_peak_cell(record)}</td>"
            f"<td class='when'>{_e(str(_or(record.start_iso, '-')).replace('T', ' ')[:19])}</td><td>{vtext}</td>"
            f"<td><code>{_e(record.crds_context or '-')}</code></td>"
            f"<td class='num'>{len(record.outputs or [])}</td><td>{log_cell}</td></tr>"
            f"<tr class='details'><td colspan='10'><details><summary>details of "
            f"{_e(record.task_id)}</summary>{_task_details(record, run_dir, report_dir)}"
            "</details></td></tr>"
        )
    return (
        "<h2 id='tasks-heading'>Tasks</h2><table id='tasks'><thead><tr><th>task</th><th>pipeline</th>"
        "<th>status</th><th>wall</th><th>peak memory</th><th>started</th><th>validation</th>"
        "<th>CRDS context</th><th>products</th><th>log</th></tr></thead><tbody>"
        + "".join(rows) + "</tbody></table>"
    )


def _runs_section(runs: list[dict]) -> str:
    if not runs:
        return ""
    rows = "".join(
        f"<tr><td><code>{_e(r.get('command'))}</code></td><td>{_e(r.get('start'))}</td>"
        f"<td class='num'>{_num(r.get('wall_s'), '.1f', ' s')}</td>"
        f"<td>{_e(', '.join(f'{k} {v}' for k, v in (r.get('counts') or {}).items()))}</td>"
        f"<td>{'interrupted' if r.get('interrupted') else ''}</td></tr>"
        for r in runs[-20:]
    )
    return ("<h2>Runs in this directory</h2><table><tr><th>command</th><th>started</th>"
            "<th>wall</th><th>tasks</th><th></th></tr>" + rows + "</table>")


def _gallery_section(products: list[Path], run_dir: Path, report_dir: Path,
                     max_previews: int, problems: list[str], records: list) -> str:
    from ._worker import reuse

    if not products:
        return "<h2>Images</h2><p class='muted'>No image products in this run.</p>"
    preview_dir = run_dir / PREVIEW_DIRNAME
    if preview_dir.is_symlink():  # the report's own directory: never written through a link
        preview_dir.unlink()
    # previews the workers drew (jwstrun.look._worker), by product name
    made = {name: entry for record in records if record.status != "failed"
            for name, entry in (record.previews or {}).items()}
    cards = []
    for path in products[:max_previews]:
        options = gallery_options(path.name)
        try:
            preview = (reuse(made.get(path.name), path, run_dir, options)
                       or preview_file(path, preview_dir, **options))
        except JwstrunError as exc:
            problems.append(str(exc))
            cards.append(f"<figure><div class='err'>{_e(path.name)}: no preview ({_e(exc)})</div></figure>")
            continue
        main, *extra = preview.files
        links = "".join(
            f" · <a href='{_rel(p, report_dir)}'>{_e(p.stem.rsplit('_', 1)[-1].upper())}</a>"
            for p in extra
        )
        note = (f" · {preview.n_catalog_sources} catalog sources"
                if preview.n_catalog_sources is not None else "")
        cards.append(
            f"<figure><a href='{_rel(main, report_dir)}'><img class='thumb' alt='{_e(path.name)}' "
            f"src='{_data_uri(preview.thumbnail, 'image/jpeg')}'></a><figcaption>{_e(path.name)}"
            f"<br><span class='muted'>_{_e(preview.product_type)}, {_e(preview.bunit or 'no BUNIT')}"
            f"{note}</span>{links}</figcaption></figure>"
        )
    more = ""
    if len(products) > max_previews:
        more = (f"<p class='muted'>{len(products) - max_previews} more image products not drawn; "
                f"use 'jwstrun preview' on them.</p>")
    return ("<h2>Images</h2><p class='muted'>Thumbnails link to full previews (colour bar in "
            "BUNIT; crf previews mark DQ-flagged pixels; i2d previews circle the catalog sources, "
            "with WHT and CON maps).</p><div class='gallery'>" + "".join(cards) + "</div>" + more)


def _header_section(outdir: Path, run_dir: Path, manifest, records: list) -> str:
    counts: dict[str, int] = {}
    for record in records:
        counts[_or(record.status, "?")] = counts.get(_or(record.status, "?"), 0) + 1
    contexts = sorted({r.crds_context for r in records if r.crds_context})
    versions = next((r.versions for r in records if r.versions), {}) or {}
    summary = ", ".join(f"<span class='{_e(k)}'>{v} {_e(k)}</span>" for k, v in sorted(counts.items()))
    rows = [
        ("output directory", str(run_dir)),
        ("tasks", None),
        ("CRDS context", ", ".join(contexts) or "-"),
        ("software", ", ".join(f"{k} {v}" for k, v in versions.items()) or "-"),
        ("manifest updated", _or(manifest.updated, "-")),
        ("report written", time.strftime("%Y-%m-%d %H:%M:%S %z")),
    ]
    body = "".join(
        f"<tr><td>{_e(k)}</td><td>{summary if v is None else _e(v)}</td></tr>" for k, v in rows
    )
    return (f"<h1>jwstrun run report: {_e(outdir.name or outdir)}</h1>"
            f"<table class='kv' id='summary'>{body}</table>")


def _image_products(records: list, run_dir: Path) -> list[Path]:
    """Image products of the run, mosaics first, then crf, cal and the rest."""
    rank = {"i2d": 1, "crf": 2, "cal": 3, "calints": 4, "crfints": 5, "bsub": 6}
    found = []
    for record in records:
        if record.status == "failed":
            continue
        for name in record.outputs or []:
            path = run_dir / name
            ptype = product_type(path)
            if ptype in PREVIEW_TYPES and path.exists():
                # Level-3 mosaics (jwNNNNN-oNNN_...) ahead of per-exposure i2d
                level3 = 0 if is_level3(name) else 1
                found.append(((rank.get(ptype, 9), level3, name), path))
    return [p for _key, p in sorted(found)]


#: what an image3 report imports (about 2 s): :func:`preload_report_modules` imports
#: them ahead, in a thread of a process that is waiting for its workers anyway
_REPORT_MODULES = (
    "numpy", "astropy.io.fits", "astropy.table", "astropy.visualization", "astropy.wcs",
    "astropy.coordinates", "matplotlib.figure", "matplotlib.backends.backend_agg",
    "matplotlib.colors", "matplotlib.patches", "matplotlib.cm", "PIL.Image", "yaml",
    "scipy.spatial",  # astropy's catalog matching (the truth comparison)
)


def preload_report_modules():
    """Import what :func:`write_report` needs in a daemon thread; returns the thread.

    ``jwstrun image3`` and ``demo`` start it with the run: the parent only waits
    for its workers meanwhile, so the report at the end does not pay the imports.
    """
    import importlib
    import threading

    def run():
        for name in _REPORT_MODULES:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the report itself will say what is wrong
                log.debug("preloading %s failed", name, exc_info=True)

    thread = threading.Thread(target=run, name="jwstrun-report-preload", daemon=True)
    thread.start()
    return thread


def write_report(outdir: str | os.PathLike, *, previews: bool = True,
                 max_previews: int = MAX_PREVIEWS,
                 truth: str | os.PathLike | None = None,
                 compare: str | os.PathLike | None = None) -> Path:
    """Write ``OUTDIR/jwstrun-report.html`` for the run in OUTDIR (or OUTDIR/out for a demo).

    The page needs no network and no JavaScript: plots and thumbnails are
    embedded as base64 PNGs; full previews are written to ``<run>/previews/``
    and linked relative to the page, as are the task logs.  Previews the
    workers drew (the tasks' manifest records list them, jwstrun.look._worker)
    are reused while they are newer than their product; the others are drawn
    here.  ``truth``: an ECSV catalog of injected sources (columns ``ra``,
    ``dec`` in degrees, ``abmag``, optionally ``kind``; the simulator's
    ``truth_file``) to compare the catalog magnitudes with.  ``compare``: another run's
    OUTDIR, whose differences from this run (``jwstrun diff``) the page shows in a
    section of its own (:mod:`jwstrun.look._compare`).  Returns the path.
    """
    outdir = Path(outdir)
    run_dir = find_run_dir(outdir)
    if compare is not None:
        from ..compare.diff import _run_dir

        compare = _run_dir(compare)  # a bad path is refused before anything is drawn
    manifest = _load_manifest(run_dir)
    for directory in dict.fromkeys((outdir, run_dir) if previews else (outdir,)):
        _check_writable(directory)  # before spending time on drawing
    records = sorted(manifest.tasks.values(), key=_task_sort_key)
    report_dir = outdir.resolve()
    run_dir = run_dir.resolve()
    problems: list[str] = []
    start = time.monotonic()
    sections = [
        _header_section(report_dir, run_dir, manifest, records),
        tile_map_section(records),  # a summary of the tiles above their tasks
        _tasks_section(records, run_dir, report_dir),
    ]
    if previews:
        sections.append(_gallery_section(_image_products(records, run_dir), run_dir, report_dir,
                                         max_previews, problems, records))
    sections += _product_sections(records, run_dir, truth, problems)
    if compare is not None:
        from ._compare import compare_section

        sections.append(compare_section(run_dir, compare))
    sections.append(_runs_section(manifest.runs or []))
    if problems:
        sections.append("<h2>Report problems</h2><ul>" + "".join(
            f"<li class='err'>{_e(p)}</li>" for p in problems) + "</ul>")
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>jwstrun report: {_e(outdir.name)}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<style>{_CSS}{TILE_CSS}</style></head><body>" + "".join(sections)
        + f"<p class='muted'>Written by jwstrun in {time.monotonic() - start:.2f} s.</p></body></html>\n"
    )
    dest = report_dir / REPORT_NAME
    try:
        atomic_write(dest, page)
    except OSError as exc:
        raise _unwritable(outdir, exc) from exc
    log.info("report written to %s", dest)
    return dest


def _product_sections(records: list, run_dir: Path, truth, problems: list[str]) -> list[str]:
    """Alignment, sky matching and catalog: one that fails is named in ``problems``."""
    builders = (
        ("alignment section", lambda: _alignment_section(records, run_dir)),
        ("skymatch section", lambda: _skymatch_section(records, run_dir)),
        ("catalog section", lambda: _catalog_section(records, run_dir, truth)),
    )
    sections = []
    for name, build in builders:
        try:
            sections.append(build())
        except Exception as exc:  # noqa: BLE001 - one broken section must not lose the page
            log.warning("report: %s failed (%s)", name, exc)
            problems.append(f"{name}: {exc}")
    return sections


def _unwritable(directory: Path, exc: OSError) -> OutputError:
    what = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return OutputError(
        f"{directory}: cannot write the report there ({what}). Make the directory writable "
        "(or free space), or run 'jwstrun report' on a writable copy of it."
    )


def _check_writable(directory: Path) -> None:
    """:class:`OutputError` unless a file can be created in ``directory``."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise _unwritable(directory, exc) from exc


