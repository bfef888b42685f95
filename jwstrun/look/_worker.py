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
a helper process (``python -m jwstrun.look._worker``) starts with the task,
imports matplotlib while the pipeline runs and draws each product as soon as
the step that wrote it is done: the ``_crf`` files while resample runs, the
mosaic's WHT and CON maps while source_catalog runs, the mosaic itself (with
its catalog) once source_catalog is done.  The report's science figures
(:mod:`jwstrun.look._science_store`) are made alongside: the alignment and sky
levels by the helper once every ``_crf`` exists, the catalog's after the
mosaic.  The report then costs the task little.
Without an idle CPU the worker draws and computes them itself at the end.

matplotlib, numpy and astropy are imported by :mod:`jwstrun.look.preview` inside
its functions; this module is imported only where previews are drawn or reused.
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

from .._io import atomic_write
from .preview import MAX_PREVIEWS, PREVIEW_DIRNAME, Preview, _draw_preview, gallery_options

log = logging.getLogger(__name__)

#: Workers draw previews for at most this many tasks of a run (the first by
#: product name): the report shows at most that many images by default.
MAX_TASKS_WITH_PREVIEWS = MAX_PREVIEWS
THUMBNAIL_SUFFIX = "_thumb.jpg"
_HELPER_TIMEOUT_S = 600
#: A mosaic's WHT and CON maps are drawn while source_catalog runs only up to this
#: size: reading them then adds to the memory the task holds.
_EARLY_MAPS_PIXELS = 4_000_000
#: what drawing previews imports: the helper process imports it first thing
_PREVIEW_MODULES = (
    "numpy", "astropy.io.fits", "astropy.table", "astropy.visualization", "astropy.wcs",
    "astropy.coordinates", "matplotlib.figure",
    "matplotlib.backends.backend_agg", "matplotlib.cm", "matplotlib.colors",
    "matplotlib.patches", "PIL.Image",
)
_PARTS = ("all", "image", "maps")  # everything; an i2d without / with only its maps
_SCIENCE_KINDS = ("crf", "catalog")  # the helper's science jobs (jwstrun.look._science_store)


def draw_product(path: Path, directory: Path, by: str = "worker", part: str = "all") -> dict | None:
    """Draw what the report shows of product ``path`` into ``directory`` (which exists).

    Returns its manifest entry (file names relative to OUTDIR, the product's
    size and mtime, the seconds it took and ``by``: who drew it), or None when
    the product is not an image.  ``part="maps"`` draws only a mosaic's WHT and
    CON maps, ``part="image"`` the rest: :func:`_merged` joins the two entries.
    """
    options = gallery_options(path.name)
    if options is None or (part == "maps" and not options["maps"]):
        return None
    start = time.perf_counter()
    stat = path.stat()
    preview = _draw_preview(path, directory, dq=options["dq"],
                            maps=options["maps"] and part != "image", image_part=part != "maps")
    rel = lambda p: f"{PREVIEW_DIRNAME}/{p.name}"  # noqa: E731 - as they will be in OUTDIR
    entry = {
        "product_type": preview.product_type,
        "bunit": preview.bunit,
        "integration": preview.integration,
        "n_catalog_sources": preview.n_catalog_sources,
        "dq_counts": preview.dq_counts,
        **options,
        "files": [rel(p) for p in preview.files],
        "product_size": stat.st_size,
        "product_mtime_ns": stat.st_mtime_ns,
    }
    if part != "maps":
        thumb = directory / (preview.files[0].stem + THUMBNAIL_SUFFIX)
        atomic_write(thumb, preview.thumbnail, fsync=False)  # a lost one is drawn again
        entry["thumbnail"] = rel(thumb)
    entry.update(seconds=round(time.perf_counter() - start, 3), by=by)
    return entry


def _current(entry: dict | None, path: Path) -> bool:
    """Whether ``entry`` was drawn from ``path`` as it is now."""
    try:
        stat = path.stat()
    except OSError:
        return False
    return bool(entry) and (entry.get("product_size"), entry.get("product_mtime_ns")) == (
        stat.st_size, stat.st_mtime_ns)


def _merged(image: dict, maps: dict) -> dict:
    """One entry from the ``image`` and ``maps`` parts of a mosaic's previews."""
    return {**image, "files": [*image["files"], *maps["files"]],
            "seconds": round(image["seconds"] + maps["seconds"], 3)}


class TaskPreviews:
    """The previews of one task's products, drawn under ``workdir/previews``.

    ``helper=True`` starts the helper process now (call it when the task
    begins); :meth:`watch` wraps the task's progress callback so that each
    step's finished products go to the helper; :meth:`finish` draws the rest
    once the products are validated; :meth:`publish` moves the previews into
    OUTDIR; :meth:`close` (always) stops the helper.  The report's science
    figures (:mod:`jwstrun.look._science_store`) go the same way: the helper
    computes the alignment and sky levels once every ``_crf`` of the task's
    ``inputs`` exists, the catalog's once it exists; ``name`` (the task's
    product) names the alignment plot.
    """

    def __init__(self, workdir: Path, helper: bool = False, inputs: list[dict] | None = None,
                 name: str = "task"):
        import shutil

        self.directory = workdir / PREVIEW_DIRNAME
        shutil.rmtree(self.directory, ignore_errors=True)  # leftovers of a killed run
        self.directory.mkdir(parents=True)
        self.entries: dict[str, dict] = {}
        self._sent: set[tuple[str, str]] = set()  # (product name, part)
        self.inputs = list(inputs or [])
        self.name = Path(name).name or "task"
        #: the report's science figures of the products (jwstrun.look._science_store)
        self.science: dict = {}
        self._science_sent: set[str] = set()  # of _SCIENCE_KINDS
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
                    [sys.executable, "-m", "jwstrun.look._worker", str(os.getpid())],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors, env=env,
                )
            # During the pipeline a full pipe must not stall it: such a job waits for the end.
            os.set_blocking(self._helper.stdin.fileno(), False)
        except OSError as exc:  # the worker draws them itself
            log.warning("no preview helper process: %s", exc)
            self._stop_helper()

    def _send(self, path: Path, part: str) -> None:
        if self._helper is None or (path.name, part) in self._sent:
            return
        job = json.dumps({"product": str(path), "directory": str(self.directory), "part": part})
        try:
            os.write(self._helper.stdin.fileno(), (job + "\n").encode())  # < PIPE_BUF: atomic
        except BlockingIOError:
            return  # sent again at the end
        except (OSError, ValueError):  # the helper died: the worker draws the rest
            self._stop_helper()
            return
        self._sent.add((path.name, part))

    def _send_science(self, out: Path) -> None:
        """Have the helper compute the alignment and sky levels once every cal has its crf,
        and the catalog's figures once it exists."""
        from ._science import cal_crf_pairs

        if self._helper is None:
            return
        cals = [e for e in self.inputs if str(e.get("name", "")).endswith("_cal.fits")]
        names = sorted(p.name for p in out.iterdir())
        if "crf" not in self._science_sent and cals \
                and len(cal_crf_pairs(cals, names, out)) == len(cals):
            self._send_job("crf", {"inputs": cals, "out": str(out), "name": self.name})
        catalogs = [str(out / n) for n in names if n.endswith("_cat.ecsv")]
        if "catalog" not in self._science_sent and catalogs:
            self._send_job("catalog", {"catalogs": catalogs})

    def _send_job(self, kind: str, job: dict) -> None:
        path = self.directory / f"science-{kind}-job.json"
        atomic_write(path, json.dumps({**job, "kind": kind, "directory": str(self.directory)}),
                     fsync=False)
        self._send(path, "science")  # one short line: atomic
        if (path.name, "science") in self._sent:
            self._science_sent.add(kind)

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
        at that moment is complete.  A mosaic (_i2d) waits for the end, except
        when it is small: its WHT and CON maps go while source_catalog runs, the
        image with its catalog once source_catalog is done (while the worker
        validates the products).
        """

        def wrapped(task_id, step):
            if self._helper is not None:
                try:
                    for path in sorted(out.iterdir()):
                        options = gallery_options(path.name)
                        if options is None:
                            continue
                        if not path.name.endswith("_i2d.fits"):
                            self._send(path, "all")
                        elif options["maps"] and not {(path.name, "maps"), (path.name, "image")} \
                                <= self._sent and _pixels(path) <= _EARLY_MAPS_PIXELS:
                            self._send(path, "maps")
                            if _catalog_of(path).exists():  # source_catalog is done
                                self._send(path, "image")
                    self._send_science(out)
                except Exception:  # noqa: BLE001 - then it is drawn at the end
                    log.debug("preview scan of %s failed", out, exc_info=True)
            if progress is not None:
                progress(task_id, step)

        return wrapped

    # -- the end of the task ------------------------------------------------
    def finish(self, products: list[Path]) -> None:
        """Draw (or collect from the helper) the previews of the validated ``products``.

        Never raises: a product whose preview fails is left to the report.
        """
        wanted = [p for p in products if gallery_options(p.name) is not None]
        if self._helper is not None:
            os.set_blocking(self._helper.stdin.fileno(), True)
            for path in wanted:
                done = {part for name, part in self._sent if name == path.name}
                if not done & {"all", "image"}:
                    self._send(path, "image" if "maps" in done else "all")
        # what the helper was not given: the worker computes it (while the helper draws)
        out = products[0].parent if products else None
        for kind in _SCIENCE_KINDS:
            if kind not in self._science_sent and out is not None:
                self._science_part(lambda kind=kind: self._compute_science(kind, out))
        self._stop_helper(wait=_HELPER_TIMEOUT_S)
        for kind in self._science_sent:
            if out is not None:
                self._collect_science(kind, out)
        for path in wanted:
            parts = {part: self._read(path, part) for part in _PARTS}
            if _current(parts["all"], path):
                entry = parts["all"]
            elif _current(parts["image"], path) and _current(parts["maps"], path):
                entry = _merged(parts["image"], parts["maps"])
            else:  # no helper, or it failed, or it drew an older file
                try:
                    entry = draw_product(path, self.directory)
                except Exception as exc:  # noqa: BLE001 - a preview never fails the task
                    log.warning("no preview of %s: %s", path.name, exc)
                    continue
            self.entries[path.name] = entry

    def _science_part(self, compute: Callable[[], dict]) -> None:
        """Add what ``compute`` returns to :attr:`science`; never raises (the report
        computes what is missing)."""
        try:
            self.science.update(compute())
        except Exception as exc:  # noqa: BLE001 - a figure never fails the task
            log.warning("report figures not computed: %s", exc)

    def _compute_science(self, kind: str, out: Path) -> dict:
        store = _science_store()
        if kind == "crf":
            return store.crf_science(self.inputs, out, self.name, self.directory)
        return store.catalog_science(sorted(out.glob("*_cat.ecsv")), self.directory)

    def _collect_science(self, kind: str, out: Path) -> None:
        """The helper's figures of ``kind``, or the worker's when they are not current."""
        try:
            science = json.loads((self.directory / f"science-{kind}.json").read_text())
            current = isinstance(science, dict) and _science_store().science_current(
                science, self.inputs, out, kind)
        except (OSError, ValueError):
            current = False
        if current:
            self.science.update(science)
        else:  # the helper failed, or the products changed after it read them
            self._science_part(lambda: self._compute_science(kind, out))

    def _read(self, path: Path, part: str) -> dict | None:
        try:
            return json.loads(_entry_path(self.directory, path.name, part).read_text())
        except (OSError, ValueError):
            return None

    def publish(self, outdir: Path) -> dict[str, dict]:
        """Move the previews into ``outdir/previews``; the manifest record's entries.

        Called after the products were moved, so each preview is newer than
        its product.  Never raises: a preview that cannot be moved is left out.
        """
        target = outdir / PREVIEW_DIRNAME
        published: dict[str, dict] = {}
        for name, entry in self.entries.items():
            try:
                if target.is_symlink():  # never written through a link planted in OUTDIR
                    target.unlink()
                target.mkdir(exist_ok=True)
                for rel in (*entry["files"], entry["thumbnail"]):
                    os.replace(self.directory / Path(rel).name, target / Path(rel).name)
            except OSError as exc:
                log.warning("previews of %s not kept: %s", name, exc)
                continue
            published[name] = entry
        self.science = self._publish_science(target)
        return published

    def _publish_science(self, target: Path) -> dict:
        """Move the science plots into ``target``; the parts whose plot moved."""
        kept = {}
        if target.is_symlink():  # never written through a link planted in OUTDIR
            target.unlink()
        for key, part in self.science.items():
            parts = part if key == "catalogs" else {key: part}
            moved = {}
            for name, entry in parts.items():
                try:
                    if entry.get("plot"):
                        target.mkdir(exist_ok=True)
                        rel = Path(entry["plot"]).name
                        os.replace(self.directory / rel, target / rel)
                except OSError as exc:
                    log.warning("report figures of %s not kept: %s", name, exc)
                    continue
                moved[name] = entry
            if moved:
                kept[key] = moved if key == "catalogs" else moved[key]
        return kept

    def close(self) -> None:
        """Stop the helper process if it still runs (a failed or interrupted task)."""
        self._stop_helper()


def _science_store():
    from . import _science_store

    return _science_store


def _entry_path(directory: Path, name: str, part: str) -> Path:
    return directory / f"{name}.{part}.json"


def _catalog_of(mosaic: Path) -> Path:
    """The catalog an i2d preview circles (:func:`jwstrun.look.preview.preview_file`'s default)."""
    from ..products import product_basename

    return mosaic.with_name(product_basename(mosaic) + "_cat.ecsv")


def _pixels(path: Path) -> int:
    """Pixels of a product's SCI image, from its header."""
    from astropy.io import fits

    header = fits.getheader(path, "SCI")
    return int(header.get("NAXIS1", 0)) * int(header.get("NAXIS2", 0))


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
    """The helper process: draw each product named on stdin (one JSON job per line).

    Each job's entry is written next to its previews as ``<product>.<part>.json``;
    the worker reads them when the task ends.  Exits at the end of stdin, which is
    also what the worker's death gives.
    """
    import importlib

    for module in _PREVIEW_MODULES:  # while the pipeline runs, not after it
        importlib.import_module(module)
    for line in sys.stdin:
        if os.getppid() != parent_pid:
            break  # the worker is gone
        job = json.loads(line)
        path, directory, part = Path(job["product"]), Path(job["directory"]), job["part"]
        if part == "science":
            _helper_science(path)
            continue
        try:
            entry = draw_product(path, directory, by="helper", part=part)
        except Exception as exc:  # noqa: BLE001 - the worker draws it again and logs why
            print(f"no preview of {path.name}: {exc}", file=sys.stderr, flush=True)
            continue
        if entry is not None:
            atomic_write(_entry_path(directory, path.name, part), json.dumps(entry), fsync=False)


def _helper_science(job_path: Path) -> None:
    """The helper's science job: the alignment and sky levels of the task's crf products,
    or the catalog's figures."""
    store = _science_store()
    try:
        job = json.loads(job_path.read_text())
        directory = Path(job["directory"])
        if job["kind"] == "crf":
            science = store.crf_science(job["inputs"], Path(job["out"]), job["name"],
                                        directory, by="helper")
        else:
            science = store.catalog_science([Path(c) for c in job["catalogs"]], directory,
                                            by="helper")
    except Exception as exc:  # noqa: BLE001 - the worker computes them again and logs why
        print(f"no report figures ({job_path.name}): {exc}", file=sys.stderr, flush=True)
        return
    atomic_write(directory / f"science-{job['kind']}.json", json.dumps(science), fsync=False)


if __name__ == "__main__":
    _helper_main(int(sys.argv[1]))
    # Everything is written and the worker waits for this exit: skip the interpreter's
    # clean-up of matplotlib and astropy (a few tenths of a second).
    sys.stderr.flush()
    os._exit(0)
