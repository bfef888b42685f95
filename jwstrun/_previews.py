"""Report previews drawn on the worker side, and their reuse by the report.

A task's worker draws the previews of its image products (what the HTML
report's gallery shows: the preview PNGs and a JPEG thumbnail each) once they
passed validation, while they are still in the page cache and while other
tasks run.  They are drawn into the task's work directory and move into
``OUTDIR/previews/`` after the products (:meth:`TaskPreviews.publish`), so a
killed task leaves no preview that looks finished; the task's manifest record
lists them with the size and modification time of the product each shows.
:func:`jwstrun.look.write_report` then reads them (:func:`reuse`) and draws a
preview itself only where one is missing or older than its product (runs with
``--no-report``, older manifests, API runs).

When the run leaves a CPU idle (one image3 association on a 2-core machine),
a helper process (``python -m jwstrun._previews``) starts with the task,
imports matplotlib while the pipeline runs, draws each product as soon as the
step that wrote it is done (the ``_crf`` files while resample and
source_catalog run) and the rest at the end: the report then costs the task
almost no time.  Without an idle CPU the worker draws them itself at the end.

matplotlib, numpy and astropy are imported by :mod:`jwstrun.look` inside its
functions; this module is imported only where previews are drawn or reused.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .look import (
    MAX_PREVIEWS,
    PREVIEW_DIRNAME,
    Preview,
    _gallery_options,
    _write_atomically,
    preview_file,
)

log = logging.getLogger(__name__)

#: Workers draw previews for at most this many tasks of a run (the first by
#: product name): the report shows at most that many images by default.
MAX_TASKS_WITH_PREVIEWS = MAX_PREVIEWS
THUMBNAIL_SUFFIX = "_thumb.jpg"
_ENTRY_SUFFIX = ".preview.json"
_HELPER_TIMEOUT_S = 600
#: what drawing previews imports: the helper process imports it first thing
_PREVIEW_MODULES = (
    "numpy", "astropy.io.fits", "astropy.table", "astropy.visualization", "matplotlib.figure",
    "matplotlib.backends.backend_agg", "matplotlib.cm", "matplotlib.colors",
    "matplotlib.patches", "PIL.Image",
)


def draw_product(path: Path, directory: Path, by: str = "worker") -> dict | None:
    """Draw what the report shows of product ``path`` into ``directory`` (which exists).

    Returns its manifest entry (file names relative to OUTDIR, the product's
    size and mtime, the seconds it took and ``by``: who drew it), or None when
    the product is not an image.
    """
    options = _gallery_options(path.name)
    if options is None:
        return None
    start = time.perf_counter()
    stat = path.stat()
    preview = preview_file(path, directory, **options)
    thumb = directory / (preview.files[0].stem + THUMBNAIL_SUFFIX)
    _write_atomically(thumb, lambda tmp: Path(tmp).write_bytes(preview.thumbnail))
    rel = lambda p: f"{PREVIEW_DIRNAME}/{p.name}"  # noqa: E731 - as they will be in OUTDIR
    return {
        "product_type": preview.product_type,
        "bunit": preview.bunit,
        "integration": preview.integration,
        "n_catalog_sources": preview.n_catalog_sources,
        "dq_counts": preview.dq_counts,
        **options,
        "files": [rel(p) for p in preview.files],
        "thumbnail": rel(thumb),
        "product_size": stat.st_size,
        "product_mtime_ns": stat.st_mtime_ns,
        "seconds": round(time.perf_counter() - start, 3),
        "by": by,
    }


def _current(entry: dict | None, path: Path) -> bool:
    """Whether ``entry`` was drawn from ``path`` as it is now."""
    try:
        stat = path.stat()
    except OSError:
        return False
    return bool(entry) and (entry.get("product_size"), entry.get("product_mtime_ns")) == (
        stat.st_size, stat.st_mtime_ns)


class TaskPreviews:
    """The previews of one task's products, drawn under ``workdir/previews``.

    ``helper=True`` starts the helper process now (call it when the task
    begins); :meth:`watch` wraps the task's progress callback so that each
    step's finished products go to the helper; :meth:`finish` draws the rest
    once the products are validated; :meth:`publish` moves the previews into
    OUTDIR; :meth:`close` (always) stops the helper.
    """

    def __init__(self, workdir: Path, helper: bool = False):
        import shutil

        self.directory = workdir / PREVIEW_DIRNAME
        shutil.rmtree(self.directory, ignore_errors=True)  # leftovers of a killed run
        self.directory.mkdir(parents=True)
        self.entries: dict[str, dict] = {}
        self._sent: set[str] = set()
        self._helper: subprocess.Popen | None = None
        if helper:
            self._start_helper()

    # -- the helper process ----------------------------------------------
    def _start_helper(self) -> None:
        import jwstrun

        env = dict(os.environ)
        # the helper imports this very jwstrun, wherever the worker found it
        here = str(Path(jwstrun.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        try:
            with open(self.directory / "helper.log", "ab") as errors:
                self._helper = subprocess.Popen(
                    [sys.executable, "-m", "jwstrun._previews", str(os.getpid())],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors, env=env,
                )
            # During the pipeline a full pipe must not stall it: such a job waits for the end.
            os.set_blocking(self._helper.stdin.fileno(), False)
        except OSError as exc:  # the worker draws them itself
            log.warning("no preview helper process: %s", exc)
            self._stop_helper()

    def _send(self, path: Path) -> None:
        if self._helper is None:
            return
        job = (json.dumps({"product": str(path), "directory": str(self.directory)}) + "\n").encode()
        try:
            os.write(self._helper.stdin.fileno(), job)  # one line < PIPE_BUF: all or nothing
        except BlockingIOError:
            return  # sent again at the end
        except (OSError, ValueError):  # the helper died: the worker draws the rest
            self._stop_helper()
            return
        self._sent.add(path.name)

    def _stop_helper(self, wait: float = 0.0) -> None:
        helper, self._helper = self._helper, None
        if helper is None:
            return
        try:
            helper.stdin.close()
        except OSError:
            pass
        try:
            helper.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass
        if helper.poll() is None:
            helper.kill()
            helper.wait()
        try:
            problems = (self.directory / "helper.log").read_text(errors="replace").strip()
        except OSError:
            problems = ""
        if problems:
            log.warning("preview helper: %s", problems[-2000:])

    def watch(self, out: Path, progress: Callable | None) -> Callable:
        """``progress`` that also sends the products finished so far to the helper.

        The runner calls progress when a step starts or ends; stpipe saves a
        step's products before it logs the step done, so every file in ``out``
        at that moment is complete.  Mosaics (_i2d) wait for the end: their
        catalog comes later, and they may be large to read during the run.
        """

        def wrapped(task_id, step):
            if self._helper is not None:
                try:
                    for path in sorted(out.iterdir()):
                        options = _gallery_options(path.name)
                        if options is not None and path.name not in self._sent \
                                and not path.name.endswith("_i2d.fits"):
                            self._send(path)
                except OSError:
                    pass
            if progress is not None:
                progress(task_id, step)

        return wrapped

    # -- the end of the task ------------------------------------------------
    def finish(self, products: list[Path]) -> None:
        """Draw (or collect from the helper) the previews of the validated ``products``.

        Never raises: a product whose preview fails is left to the report.
        """
        wanted = [p for p in products if _gallery_options(p.name) is not None]
        if self._helper is not None:
            os.set_blocking(self._helper.stdin.fileno(), True)
            for path in wanted:
                if path.name not in self._sent:
                    self._send(path)
        self._stop_helper(wait=_HELPER_TIMEOUT_S)
        for path in wanted:
            entry = None
            try:
                entry = json.loads((self.directory / (path.name + _ENTRY_SUFFIX)).read_text())
            except (OSError, ValueError):
                pass
            if not _current(entry, path):  # no helper, or it failed or drew an older file
                try:
                    entry = draw_product(path, self.directory)
                except Exception as exc:  # noqa: BLE001 - a preview never fails the task
                    log.warning("no preview of %s: %s", path.name, exc)
                    continue
            self.entries[path.name] = entry

    def publish(self, outdir: Path) -> dict[str, dict]:
        """Move the previews into ``outdir/previews``; the manifest record's entries.

        Called after the products were moved, so each preview is newer than
        its product.  Never raises: a preview that cannot be moved is left out.
        """
        target = outdir / PREVIEW_DIRNAME
        published: dict[str, dict] = {}
        for name, entry in self.entries.items():
            try:
                target.mkdir(exist_ok=True)
                for rel in (*entry["files"], entry["thumbnail"]):
                    os.replace(self.directory / Path(rel).name, target / Path(rel).name)
            except OSError as exc:
                log.warning("previews of %s not kept: %s", name, exc)
                continue
            published[name] = entry
        return published

    def close(self) -> None:
        """Stop the helper process if it still runs (a failed or interrupted task)."""
        self._stop_helper()


def reuse(entry: dict | None, product: Path, run_dir: Path, options: dict) -> Preview | None:
    """The worker-made preview of ``product`` when it is still valid, else None.

    Valid: drawn with the same options, the product has the size and
    modification time it had when it was drawn, and every file is there and
    not older than the product.
    """
    if not entry or any(entry.get(k) != v for k, v in options.items()) \
            or not _current(entry, product):
        return None
    try:
        product_mtime = product.stat().st_mtime_ns
        files = [run_dir / name for name in entry["files"]]
        thumb = run_dir / entry["thumbnail"]
        if not files or any(p.stat().st_mtime_ns < product_mtime for p in (*files, thumb)):
            return None
        thumbnail = thumb.read_bytes()
    except (OSError, KeyError, TypeError) as exc:
        log.debug("preview of %s not reused: %s", product.name, exc)
        return None
    return Preview(source=product, product_type=entry.get("product_type", ""), files=files,
                   bunit=entry.get("bunit") or "", integration=entry.get("integration"),
                   n_catalog_sources=entry.get("n_catalog_sources"),
                   dq_counts=entry.get("dq_counts"), thumbnail=thumbnail)


def _helper_main(parent_pid: int) -> None:
    """The helper process: draw each product named on stdin (one JSON line each).

    Each product's entry is written next to its previews as
    ``<product>.preview.json``; the worker reads them when the task ends.
    Exits at the end of stdin, which is also what the worker's death gives.
    """
    import importlib

    for module in _PREVIEW_MODULES:  # while the pipeline runs, not after it
        importlib.import_module(module)
    for line in sys.stdin:
        if os.getppid() != parent_pid:
            return  # the worker is gone
        job = json.loads(line)
        path, directory = Path(job["product"]), Path(job["directory"])
        try:
            entry = draw_product(path, directory, by="helper")
        except Exception as exc:  # noqa: BLE001 - the worker draws it again and logs why
            print(f"no preview of {path.name}: {exc}", file=sys.stderr, flush=True)
            continue
        if entry is not None:
            dest = directory / (path.name + _ENTRY_SUFFIX)
            _write_atomically(dest, lambda tmp, e=entry: Path(tmp).write_text(json.dumps(e)))


if __name__ == "__main__":
    _helper_main(int(sys.argv[1]))
