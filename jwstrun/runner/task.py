"""One task = one pipeline call; planning, resume, atomic outputs.

``run_image2`` / ``run_image3`` are what the CLI calls.  They

1. expand and check every input before anything runs (``_cal`` given to image2,
   ``_rate`` given to image3, missing association members -> :class:`InputError`),
2. check that OUTDIR can be written, start the local worker pool (from here on
   the workers import jwst while the parent works) and take OUTDIR's lock,
3. turn the inputs into :class:`Task` objects -- one per exposure for image2, one
   per association for image3 -- each with a fingerprint of its input
   checksums, resolved call parameters, jwst/stpipe/crds versions and CRDS
   context; a task whose recorded fingerprint matches and whose products are
   all still there is skipped (``force=True`` redoes it; an input whose size
   and mtime are unchanged keeps its recorded checksum unless ``checksum=True``),
4. prefetch CRDS references once, run the tasks, hash the inputs of the tasks
   that run in a background thread, and record every result in the manifest.

:func:`run_task` is the one function a worker runs (the local pool and the
Dask executor alike, see docs/dask.md).  It calls ``Pipeline.call(input, save_results=True,
output_dir=<tmp>, configure_log=False, **parameters)`` in
``OUTDIR/.jwstrun-tmp/<task-id>/out``, validates the products, and only then
moves them into OUTDIR with ``os.replace`` -- a run killed at any moment never
leaves a file in OUTDIR that looks finished but is not.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from ..errors import ConfigError, InputError, JwstrunError, OutputError, PipelineError
from ..products import (
    STAGE2_INPUTS,
    STAGE3_INPUTS,
    product_basename,
    product_suffix,
    product_type,
    stage_type,
)

__all__ = [
    "PIPELINES",
    "Task",
    "TaskResult",
    "RunSummary",
    "expand_inputs",
    "prepare_outdir",
    "file_sha256",
    "software_versions",
    "compute_fingerprint",
    "plan_image2",
    "plan_image3",
    "run_task",
    "run_tasks",
    "run_image2",
    "run_image3",
    "select_executor",
]

log = logging.getLogger(__name__)

#: jwstrun pipeline name -> (module, class, stpipe alias)
PIPELINES = {
    "image2": ("jwst.pipeline.calwebb_image2", "Image2Pipeline", "calwebb_image2"),
    "image3": ("jwst.pipeline.calwebb_image3", "Image3Pipeline", "calwebb_image3"),
}

TMP_DIRNAME = ".jwstrun-tmp"
LOG_DIRNAME = "logs"

# Peak memory of one worker running one task, used for the default -j: fitted to
# the peaks scripts/bench_profiles.py and scripts/bench_image3_memory.py measure
# (docs/benchmarks.md, sections "profiles" and "image3 memory").
_FULL_FRAME_PIXELS = 2048 * 2048
_IMAGE2_BYTES = (0.30e9, 0.90e9)  # base + per full-frame-equivalent
_IMAGE3_BYTES = (0.35e9, 0.32e9)  # base + per full-frame-equivalent member

_GLOB_CHARS = set("*?[")


# --------------------------------------------------------------------------
# Data passed to workers and back
# --------------------------------------------------------------------------
@dataclass
class Task:
    """One pipeline call; picklable, sent to a worker."""

    task_id: str
    pipeline: str
    input: str
    product: str
    inputs: list[dict]
    outdir: str
    workdir: str
    log_file: str
    parameters: dict
    fingerprint: str
    in_pool: bool = False
    validate: bool = True
    expect_background: bool = False
    #: Environment the task runs with (the CRDS worker settings); applied by
    #: run_task itself, so a Dask worker needs no set-up of its own.
    env: dict = field(default_factory=dict)
    #: image3: the mosaic and memory estimate and the mode chosen (jwstrun.mosaic)
    memory: dict | None = None
    #: draw the report's previews of the products on the worker side (jwstrun._previews),
    #: in a helper process that starts with the task when a CPU is left idle
    previews: bool = False
    preview_helper: bool = False

    @property
    def input_paths(self) -> list[str]:
        return [entry["path"] for entry in self.inputs]


@dataclass
class TaskResult:
    """What a worker reports for one task (also the core of its manifest record)."""

    task_id: str
    status: str  # "ok", "failed", "skipped"
    outputs: list[str] = field(default_factory=list)
    output_sizes: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    failed_step: str | None = None
    start: float | None = None
    end: float | None = None
    wall_s: float | None = None
    peak_rss_mb: float | None = None
    worker_peak_rss_mb: float | None = None
    rss_after_mb: float | None = None
    worker_pid: int | None = None
    host: str | None = None
    tasks_in_worker: int | None = None
    crds_context: str | None = None
    references: dict[str, dict[str, str]] = field(default_factory=dict)
    resolved_parameters: dict | None = None
    validation: dict | None = None
    step_times: dict[str, float] = field(default_factory=dict)
    log_file: str | None = None
    #: product name -> the report previews the worker drew of it (jwstrun._previews)
    previews: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunSummary:
    """Outcome of one ``run_image2`` / ``run_image3`` call."""

    pipeline: str
    outdir: Path
    manifest: Path
    results: list[TaskResult]
    tasks: dict[str, Task]
    jobs: int
    jobs_reason: str
    wall_s: float
    crds_context: str | None = None
    prefetch_s: float = 0.0

    @property
    def failed(self) -> list[TaskResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def skipped(self) -> list[TaskResult]:
        return [r for r in self.results if r.status == "skipped"]

    @property
    def succeeded(self) -> list[TaskResult]:
        return [r for r in self.results if r.status == "ok"]

    @property
    def outputs(self) -> list[Path]:
        return [self.outdir / name for r in self.results if r.status != "failed" for name in r.outputs]

    def to_dict(self) -> dict:
        return {
            "pipeline": self.pipeline,
            "outdir": str(self.outdir),
            "manifest": str(self.manifest),
            "jobs": self.jobs,
            "jobs_reason": self.jobs_reason,
            "wall_s": round(self.wall_s, 3),
            "crds_context": self.crds_context,
            "counts": {
                "total": len(self.results),
                "ok": len(self.succeeded),
                "skipped": len(self.skipped),
                "failed": len(self.failed),
            },
            "tasks": [self._task_dict(r) for r in self.results],
        }

    def _task_dict(self, result: TaskResult) -> dict:
        data = result.to_dict()
        task = self.tasks.get(result.task_id)
        if task is not None and task.memory is not None:
            data["memory"] = task.memory
        return data


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------
def expand_inputs(patterns: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand globs; every pattern must name an existing file or match at least one.

    Paths are made absolute but keep the names given (a symlink is not replaced
    by its target in messages and product names); duplicates are dropped by the
    file they resolve to.
    """
    paths: list[Path] = []
    seen: dict = {}  # (device, inode) -> the name first given for that file
    for pattern in patterns:
        text = str(pattern)
        if os.path.exists(text):
            matches = [text]
        elif _GLOB_CHARS & set(text):
            matches = sorted(glob.glob(os.path.expanduser(text)))
            if not matches:
                raise InputError(f"{text}: no files match this pattern. Check the path.")
        else:
            raise InputError(f"{text}: file not found. Check the path or the glob pattern.")
        for match in matches:
            name = os.path.basename(match)
            if not (name.isascii() and name.isprintable()):
                raise InputError(
                    f"{match!r}: the file name has a newline, control or non-ASCII character, "
                    "which FITS headers (FILENAME) cannot hold. Rename the file."
                )
            resolved = Path(match).resolve()
            if resolved.is_dir():
                raise InputError(
                    f"{match}: is a directory. Give files or a glob such as '{match}/*_rate.fits'."
                )
            try:
                stat = resolved.stat()
                key = (stat.st_dev, stat.st_ino)
            except OSError:
                key = resolved  # planning says what is wrong with it
            if key not in seen:
                seen[key] = match
                paths.append(Path(match).absolute())
            elif os.path.abspath(match) != os.path.abspath(seen[key]):  # a symlink or hard link
                log.warning("%s: is the same file as %s; using it once.", match, seen[key])
    if not paths:
        raise InputError("no inputs given.")
    return paths


def _is_association(path: Path) -> bool:
    return path.suffix.lower() == ".json"


def _load_association(path: Path, level: int, allow_outside: bool = False):
    """Load and check an association with jwstrun.asn; refuse the wrong level clearly."""
    from ..asn import check_association, load_association

    found = load_association(path, allow_outside=allow_outside)
    if found.level != level:
        if level == 2:
            raise InputError(
                f"{path}: is a Level-3 (image3) association. Give it to 'jwstrun image3'; "
                "image2 takes _rate/_rateints files or Level-2 associations."
            )
        raise InputError(
            f"{path}: is a Level-2 (image2) association of _rate exposures. Run 'jwstrun image2' "
            "on it first and give the resulting _cal files (or a Level-3 association) to image3."
        )
    check = check_association(path, allow_outside=allow_outside)
    if check.problems:
        raise InputError(f"{path}: " + " ".join(check.problems[:3]))
    _check_complete((m.path for product in check.association.products for m in product.members),
                    f"image{level}")
    return check.association


def _check_complete(paths: Iterable[Path], pipeline: str) -> None:
    """Refuse exposures cut short or without SCI/ASDF, or whose SCI unit says they are of
    another stage than ``pipeline`` takes (:func:`jwstrun.products.stage_type`), before
    anything runs (headers only)."""
    from ..products import check_fits_complete

    takes = STAGE2_INPUTS if pipeline == "image2" else STAGE3_INPUTS
    for path in paths:
        if not _is_association(Path(path)):
            hdus = check_fits_complete(path)
            sci = next(cards for name, cards in hdus if name == "SCI")
            found = stage_type(path, hdus[0][1], sci.get("BUNIT"))
            if found not in takes:
                raise InputError(_wrong_stage_message(Path(path), found, pipeline))


def _file_type(path: Path) -> str | None:
    ptype = product_type(path)
    if ptype is None and path.suffix.lower() in (".fits", ".fit"):
        from ..products import read_exposure_info

        ptype = read_exposure_info(path).product_type
    elif ptype is not None:
        # clear errors for empty / truncated / gzip files; a _cal renamed _rate is a cal
        ptype = stage_type(path, _planning_header(path))
    return ptype


def _planning_header(path: Path):
    """read_primary_header, remembered for the next call on the same unchanged file.

    Planning needs each exposure's header twice (product type, then size); with
    astropy at ~1.5 ms a read, 10,000 exposures took twice as long as needed.
    """
    from ..products import read_primary_header

    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if _LAST_HEADER.get("key") != key:
        header = read_primary_header(path)
        _LAST_HEADER.update(key=key, header=header)
    return _LAST_HEADER["header"]


_LAST_HEADER: dict = {}


def _wrong_stage_message(path: Path, ptype: str | None, pipeline: str) -> str:
    named = product_suffix(path)
    # The header says otherwise than the name (products.stage_type)
    where = f"{path}: its header says it" if named and ptype and named != ptype else f"{path}:"
    if pipeline == "image2":
        if ptype in STAGE3_INPUTS or ptype in ("i2d", "segm", "cat"):
            return (
                f"{where} is a _{ptype} product, already processed by calwebb_image2. "
                "Give _rate/_rateints files to image2, or give this file to 'jwstrun image3'."
            )
        return (
            f"{where} is not a _rate/_rateints exposure (product type {ptype or 'unknown'}). "
            "image2 takes *_rate.fits, *_rateints.fits or Level-2 associations."
        )
    if ptype in STAGE2_INPUTS:
        return (
            f"{where} is a _{ptype} exposure, not yet calibrated. Run 'jwstrun image2' on it "
            "first and give the resulting _cal files to image3."
        )
    return (
        f"{where} is not a _cal/_calints/_crf product (product type {ptype or 'unknown'}). "
        "image3 takes *_cal.fits files or Level-3 associations."
    )


# --------------------------------------------------------------------------
# Checksums, versions, fingerprints
# --------------------------------------------------------------------------
def file_sha256(path: str | os.PathLike, chunk: int = 4 << 20) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def software_versions() -> dict[str, str]:
    """Versions that change results: jwst, stpipe, crds, stdatamodels (no imports)."""
    versions = {}
    for dist in ("jwst", "stpipe", "crds", "stdatamodels", "stcal"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    from .._version import __version__

    versions["jwstrun"] = __version__
    return versions


def compute_fingerprint(
    pipeline: str,
    inputs: list[dict],
    parameters: dict,
    versions: dict[str, str],
    crds_context: str | None,
) -> str:
    """Hash of everything that determines a task's products.

    ``inputs`` entries carry ``name`` and ``sha256`` (not the full path: moving
    the input files does not change the products).  The jwstrun version is left
    out on purpose: a jwstrun upgrade does not change what jwst computes.
    """
    payload = {
        "pipeline": pipeline,
        "inputs": sorted((e["name"], e["sha256"]) for e in inputs),
        "parameters": parameters,
        "versions": {k: v for k, v in versions.items() if k != "jwstrun"},
        "crds_context": crds_context,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------
# Output directory
# --------------------------------------------------------------------------
def prepare_outdir(outdir: str | os.PathLike) -> Path:
    """Create OUTDIR if needed and prove it is writable; :class:`OutputError` otherwise."""
    outdir = Path(outdir).expanduser()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise OutputError(f"{outdir}: exists and is not a directory. Choose another -o OUTDIR.") from exc
    except OSError as exc:
        raise OutputError(
            f"{outdir}: cannot create the output directory ({exc.strerror}). "
            "Choose a directory you can write to with -o."
        ) from exc
    if not outdir.is_dir():
        raise OutputError(f"{outdir}: exists and is not a directory. Choose another -o OUTDIR.")
    probe = outdir / f".jwstrun-write-test-{os.getpid()}"
    try:
        probe.unlink(missing_ok=True)  # a planted symlink is removed, never written through
        try:
            with os.fdopen(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                                   0o644), "wb") as handle:
                handle.write(b"x")
        finally:  # a full disk fails the write after the file was created
            probe.unlink(missing_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{outdir}: cannot write to the output directory ({exc.strerror}). "
            "Free space or fix its permissions, or choose another -o OUTDIR; nothing was run."
        ) from exc
    return outdir.resolve()


# --------------------------------------------------------------------------
# The sibling modules: profiles, refs, validate
# --------------------------------------------------------------------------
def _call_parameters(pipeline: str, profiles: Iterable[str], sets: Iterable[str]) -> dict:
    """Pipeline.call keyword arguments from profiles and --set (checked by jwstrun.profiles)."""
    profiles, sets = list(profiles or ()), list(sets or ())
    if not profiles and not sets:
        return {}
    from ..profiles import build_call_parameters

    return dict(build_call_parameters(pipeline, profiles, sets) or {})


def _skipped_steps(parameters: dict) -> list[str]:
    return sorted(
        step for step, pars in (parameters.get("steps") or {}).items()
        if isinstance(pars, dict) and pars.get("skip") is True
    )


def _validate_products(paths: list[Path], parameters: dict, expect_background: bool) -> dict:
    """Check products with jwstrun.validate; errors make the task fail before the move."""
    from ..validate import validate_file

    report: dict = {"files": {}, "errors": [], "warnings": 0}
    skips = _skipped_steps(parameters)
    for path in paths:
        file_report = validate_file(
            path, expected_skips=skips, expect_background=expect_background
        )
        report["files"][path.name] = [f.to_dict() for f in file_report.findings]
        report["warnings"] += len(file_report.warnings)
        report["errors"].extend(f"{path.name}: {f.message}" for f in file_report.errors)
    return report


# --------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------
def _safe_id(name: str) -> str:
    """``name`` with characters other than letters, digits and ``-_.`` made ``_``; when any
    was, a short hash of the exact name is appended, so ``evil a`` and ``evil_a`` get
    different ids (and the same name always the same id: resume keys on it)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    if safe != name:
        safe += "-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return safe


def _task_id(item: "_Planned") -> str:
    return f"{item.pipeline}-{_safe_id(item.product)}"


def _input_entry(path: Path, role: str) -> dict:
    stat = path.stat()
    return {
        "path": str(path),
        "name": path.name,
        "role": role,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        # from the manifest when size and mtime are unchanged, else hashed by
        # _InputHasher in the parent while the workers run
        "sha256": None,
    }


def _write_product_asn(asn, product, dest: Path) -> None:
    """Write a one-product copy of an association with absolute member paths (those of
    ``product.members``, which may leave some of the association's out)."""
    paths = {member.expname: member.path for member in product.members}
    members = [dict(raw, expname=str(paths[raw["expname"]]))
               for raw in _raw_members(asn, product.name) if raw["expname"] in paths]
    single = {k: v for k, v in asn.data.items() if k != "products"}
    raw_product = next(p for p in asn.data["products"] if p.get("name") == product.name)
    single["products"] = [dict(raw_product, members=members)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(single, indent=4))


def _raw_members(asn, product_name: str) -> list[dict]:
    for raw in asn.data["products"]:
        if raw.get("name") == product_name:
            return list(raw["members"])
    raise InputError(f"{asn.path}: product {product_name!r} not found.")


@dataclass
class _Planned:
    pipeline: str
    product: str
    input: Path | None  # a file, or None when a one-product asn must be written
    inputs: list[Path]
    roles: list[str]
    asn: object | None = None
    asn_product: object | None = None
    pixels: int = _FULL_FRAME_PIXELS
    n_members: int = 1
    has_background: bool = False
    memory: object | None = None  # image3: a jwstrun.mosaic.MemoryPlan
    refused: Exception | None = None  # image3: the preflight's refusal, raised if it must run


def _exposure_pixels(path: Path) -> int:
    try:
        header = _planning_header(path)
        xsize = int(header.get("SUBSIZE1") or 2048)
        ysize = int(header.get("SUBSIZE2") or 2048)
        return xsize * ysize
    except (JwstrunError, ValueError, TypeError):
        return _FULL_FRAME_PIXELS


def plan_image2(paths: list[Path]) -> list[_Planned]:
    """One planned task per science exposure; errors for anything image2 cannot take."""
    planned: list[_Planned] = []
    for path in paths:
        if _is_association(path):
            asn = _load_association(path, 2)
            single = len(asn.products) == 1
            for product in asn.products:
                science = product.by_type("science")[0]
                members = [m.path for m in product.members]
                roles = [m.exptype for m in product.members]
                planned.append(
                    _Planned(
                        "image2", product.name, path if single else None, [path, *members],
                        ["association", *roles], asn=asn, asn_product=product,
                        pixels=_exposure_pixels(science.path),
                        has_background=bool(product.by_type("background")),
                    )
                )
        else:
            ptype = _file_type(path)
            if ptype not in STAGE2_INPUTS:
                raise InputError(_wrong_stage_message(path, ptype, "image2"))
            planned.append(
                _Planned("image2", product_basename(path), path, [path], ["science"],
                         pixels=_exposure_pixels(path))
            )
    return planned


def check_image3_inputs(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Split image3 inputs into (associations, loose _cal files), refusing anything else."""
    cal_files: list[Path] = []
    asn_paths: list[Path] = []
    for path in paths:
        if _is_association(path):
            _load_association(path, 3)
            asn_paths.append(path)
        else:
            ptype = _file_type(path)
            if ptype not in STAGE3_INPUTS:
                raise InputError(_wrong_stage_message(path, ptype, "image3"))
            cal_files.append(path)
    return asn_paths, cal_files


def plan_image3(paths: list[Path], outdir: Path) -> list[_Planned]:
    """One planned task per Level-3 association.

    Loose _cal files are grouped (program, instrument, filter, pupil, target) and
    written as associations into OUTDIR by jwstrun.asn -- call this only while
    holding OUTDIR's lock.
    """
    asn_paths, cal_files = check_image3_inputs(paths)
    asns = [(_load_association(p, 3), True) for p in asn_paths]
    if cal_files:
        from ..asn import make_associations

        built = make_associations(
            cal_files, outdir, level=3, group_by="default", force=True, allow_outside=True
        )
        for written in built.associations:
            log.info("built %s from %d _cal files", written.path.name, written.n_members)
            # read_exposures gave each exposure once already
            asns.append((_load_association(written.path, 3, allow_outside=True), False))
    planned = []
    for asn, given in asns:
        product = _unique_members(asn) if given else asn.products[0]
        members = [m.path for m in product.members]
        whole = len(product.members) == len(asn.products[0].members)
        planned.append(
            _Planned(
                "image3", product.name, Path(asn.path) if whole else None,
                [Path(asn.path), *members],
                ["association", *[m.exptype for m in product.members]], asn=asn,
                asn_product=product, pixels=_exposure_pixels(members[0]),
                n_members=len(members),
            )
        )
    return planned


def _unique_members(asn):
    """The Level-3 product of ``asn`` with each exposure once
    (:func:`jwstrun.asn.repeated_exposures`): a repeat is left out with a warning, and the
    task runs a copy of the association without it."""
    from ..asn import AsnProduct, repeated_exposures
    from ..products import read_exposure_info

    product = asn.products[0]
    repeats = repeated_exposures([read_exposure_info(m.path) for m in product.members])
    for index, (first, why) in repeats.items():
        log.warning("%s: member %s %s %s; using it once.", asn.path,
                    product.members[index].expname, why, product.members[first].expname)
    return AsnProduct(product.name, [m for i, m in enumerate(product.members) if i not in repeats])


def _check_unique_products(planned: list[_Planned]) -> None:
    seen: dict[str, _Planned] = {}
    ids: dict[str, _Planned] = {}
    for item in planned:
        if item.product in seen:
            first = seen[item.product]
            raise InputError(
                f"{item.inputs[0]} and {first.inputs[0]} would both write products named "
                f"{item.product}_*. Give each exposure once, or use separate output directories."
            )
        first = ids.get(_task_id(item))
        if first is not None:  # a name made to match another name's sanitised id and hash
            raise InputError(
                f"{item.inputs[0]} and {first.inputs[0]}: products {item.product!r} and "
                f"{first.product!r} would share task id {_task_id(item)}. Rename one of them."
            )
        seen[item.product] = ids[_task_id(item)] = item


#: What each pipeline writes as <product>_<suffix> (image3 adds <member>_<asn_id>_crf.fits).
_PRODUCT_SUFFIXES = {
    "image2": ("cal.fits", "calints.fits", "bsub.fits", "bsubints.fits", "i2d.fits"),
    "image3": ("i2d.fits", "segm.fits", "cat.ecsv"),
}


def _expected_outputs(item: _Planned) -> list[str]:
    """The names a planned task may write into OUTDIR."""
    names = [f"{item.product}_{suffix}" for suffix in _PRODUCT_SUFFIXES[item.pipeline]]
    if item.pipeline == "image3" and item.asn_product is not None:
        asn_id = item.asn.data.get("asn_id")
        names += ["_".join([product_basename(m.path), *([str(asn_id)] if asn_id else []),
                            "crf.fits"]) for m in item.asn_product.by_type("science")]
    return names


def _replacement(to_run: list[tuple[Task, _Planned]], manifest, outdir: Path):
    """An :class:`OutputError` when a task would replace a file that another task's
    manifest record owns, or that another task of this run writes too; else None.

    Tasks are told apart by pipeline and product (what their ids are made of), so a
    record kept under an id of an older jwstrun is still the same task's.
    """
    owners: dict[str, dict] = {}  # file name -> {(pipeline, product): task id}
    for owner, record in manifest.tasks.items():
        if isinstance(record, dict) and record.get("status") in ("ok", "skipped"):
            for name in record.get("outputs") or ():
                if (outdir / str(name)).exists():
                    key = (record.get("pipeline"), record.get("product"))
                    owners.setdefault(str(name), {})[key] = owner
    for task, item in to_run:
        for name in _expected_outputs(item):
            others = [o for key, o in owners.get(name, {}).items()
                      if key != (task.pipeline, task.product)]
            if others:
                return OutputError(
                    f"{outdir / name}: task {task.task_id} ({task.input}) would replace this "
                    f"product of task {others[0]}. Give the product another name (for an "
                    "association: its product name, or asn_id for _crf files) or use another "
                    "-o OUTDIR; nothing was run."
                )
        for name in _expected_outputs(item):
            owners.setdefault(name, {})[(task.pipeline, task.product)] = task.task_id
    return None


def _bytes_per_worker(planned: list[_Planned]) -> float:
    if not planned:
        return _IMAGE2_BYTES[0]
    if planned[0].pipeline == "image2":
        base, per = _IMAGE2_BYTES
        return base + per * max(p.pixels for p in planned) / _FULL_FRAME_PIXELS
    if all(p.memory is not None for p in planned):
        # the in-memory estimate: the same -j that jwstrun.mosaic split the budget by
        return float(max(p.memory.estimate.in_memory_bytes for p in planned))
    base, per = _IMAGE3_BYTES
    return base + per * max(p.pixels * p.n_members for p in planned) / _FULL_FRAME_PIXELS


def _make_tasks(
    planned: list[_Planned],
    outdir: Path,
    parameters: dict,
    in_pool: bool,
    validate: bool,
) -> list[Task]:
    tasks = []
    tmp_root = outdir / TMP_DIRNAME
    for item in planned:
        task_id = _task_id(item)
        workdir = tmp_root / task_id
        if item.input is not None:
            task_input = item.input
        else:
            # Several products in one association: each task gets its own
            # one-product copy (same file name, so meta.asn.table_name is kept).
            task_input = workdir / "asn" / Path(item.asn.path).name
            _write_product_asn(item.asn, item.asn_product, task_input)
        inputs = [_input_entry(p, role) for p, role in zip(item.inputs, item.roles, strict=True)]
        task_parameters = parameters
        if item.memory is not None and item.memory.call_overrides():
            task_parameters = _merge(parameters, item.memory.call_overrides())
        tasks.append(
            Task(
                task_id=task_id,
                pipeline=item.pipeline,
                input=str(task_input),
                product=item.product,
                inputs=inputs,
                outdir=str(outdir),
                workdir=str(workdir),
                log_file=str(outdir / LOG_DIRNAME / f"{task_id}.log"),
                parameters=task_parameters,
                fingerprint="",
                in_pool=in_pool,
                validate=validate,
                expect_background=item.has_background,
                memory=item.memory.to_dict() if item.memory is not None else None,
            )
        )
    return tasks


def _reuse_checksums(task: Task, record: dict | None) -> None:
    """Take each input's sha256 from the manifest when its size and mtime are unchanged.

    The quick check of make and rsync: a re-run does not read every input
    again to learn that nothing changed; ``checksum=True`` (``--checksum``)
    re-hashes instead.
    """
    recorded = {e.get("path"): e for e in (record or {}).get("inputs") or []}
    for entry in task.inputs:
        old = recorded.get(entry["path"])
        if (
            old and old.get("sha256") and old.get("size") == entry["size"]
            and old.get("mtime_ns") == entry.get("mtime_ns")
        ):
            entry["sha256"] = old["sha256"]


def _fill_checksums(task: Task, known: dict[str, str | None], strict: bool = True) -> None:
    """sha256 of each of ``task``'s inputs that has none yet; ``known`` (path -> digest)
    is shared by the whole run, so an input of several tasks (a background exposure
    of many Level-2 associations) is read once.  ``strict=False``: an unreadable file
    gets None (and a warning) instead of raising."""
    for entry in task.inputs:
        if entry["sha256"]:
            continue
        path = entry["path"]
        if path not in known:
            try:
                known[path] = file_sha256(path)
            except OSError as exc:
                if strict:
                    raise
                log.warning("cannot checksum %s: %s", path, exc)
                known[path] = None
        entry["sha256"] = known[path]


class _InputHasher:
    """SHA-256 of the tasks' inputs in a background thread of the parent.

    Started once the tasks are submitted, so hashing overlaps the workers'
    start-up and their first tasks instead of delaying them (hashlib releases
    the GIL).  :meth:`wait` blocks until one task's inputs are hashed; a file
    that cannot be read gets ``sha256=None`` (its task's fingerprint then never
    matches, so it is redone on the next run).
    """

    def __init__(self, tasks: list[Task], known: dict[str, str | None]):
        import threading

        self._tasks = list(tasks)
        self._known = known
        self._done = {t.task_id: threading.Event() for t in self._tasks}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jwstrun-hasher", daemon=True)

    def start(self) -> "_InputHasher":
        self._thread.start()
        return self

    def _run(self) -> None:
        for task in self._tasks:
            if self._stop.is_set():
                return
            _fill_checksums(task, self._known, strict=False)
            self._done[task.task_id].set()

    def wait(self, task: Task) -> None:
        event = self._done.get(task.task_id)
        if event is not None:
            event.wait()

    def stop(self) -> None:
        self._stop.set()


def _check_maximum_cores(parameters: dict, jobs: int) -> None:
    """Refuse a steps' maximum_cores other than 1 together with a pool of several workers."""
    if jobs <= 1:
        return
    for step, pars in (parameters.get("steps") or {}).items():
        value = (pars or {}).get("maximum_cores")
        if value is None or str(value).lower() in ("1", "none"):
            continue
        raise ConfigError(
            f"step {step}: maximum_cores={value} cannot be combined with -j {jobs}: each of the "
            f"{jobs} workers would start its own processes and overload the machine "
            "(jwst issues 8383, 8743). Use -j 1 to let the step use several cores, "
            "or drop the maximum_cores setting."
        )


def _can_skip(task: Task, record: dict | None, outdir: Path) -> bool:
    if not record or record.get("status") not in ("ok", "skipped"):
        return False
    if record.get("fingerprint") != task.fingerprint:
        return False
    sizes = record.get("output_sizes") or {}
    outputs = record.get("outputs") or []
    if not outputs:
        return False
    for name in outputs:
        path = outdir / name
        if not path.is_file():
            return False
        if name in sizes and path.stat().st_size != sizes[name]:
            return False
    return True


# --------------------------------------------------------------------------
# The worker side
# --------------------------------------------------------------------------
_WORKER_STATE = {"tasks": 0, "peak_mb": 0.0}

_STPIPE_LOGGERS = ("jwst", "stcal", "stdatamodels", "stpipe", "tweakwcs", "py.warnings")
_LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


def _reset_peak_rss() -> None:
    # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM and ru_maxrss)
    # of this process, so the peak measured after the task is the task's own.
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def _proc_status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _peak_rss_mb() -> float:
    value = _proc_status_mb("VmHWM")
    if value is None:
        import resource

        value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return value


class _StepWatcher(logging.Handler):
    """Follows stpipe's 'Step X running' / 'Step X done' lines: current step and its times."""

    def __init__(self, task_id: str, progress: Callable | None):
        super().__init__(logging.INFO)
        self.task_id = task_id
        self.progress = progress
        self.stack: list[tuple[str, float]] = []
        self.times: dict[str, float] = {}
        self.parameters_text: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("stpipe"):
            return
        msg = record.msg if isinstance(record.msg, str) else ""
        args = record.args if isinstance(record.args, tuple) else ()
        if msg.startswith("Step %s running") and args:
            self.stack.append((str(args[0]), time.monotonic()))
            self._report()
        elif (msg == "Step %s done" and args) or msg == "Step skipped.":
            if self.stack:
                name, started = self.stack.pop()
                self.times[name] = round(self.times.get(name, 0.0) + time.monotonic() - started, 3)
            self._report()
        elif msg.startswith("Step %s parameters are") and len(args) > 1 and not self.parameters_text:
            self.parameters_text = str(args[1])

    @property
    def current(self) -> str | None:
        return self.stack[-1][0] if self.stack else None

    def _report(self) -> None:
        if self.progress is not None and self.current:
            try:
                self.progress(self.task_id, self.current)
            except Exception:  # noqa: BLE001 - progress is best effort
                pass


def _parse_logged_parameters(text: str | None) -> dict | None:
    """stpipe logs the resolved parameters as YAML with Python literals; read them back."""
    if not text:
        return None
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return {"_text": text}

    def fix(value):
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        return None if value == "None" else value

    return fix(data) if isinstance(data, dict) else {"_text": text}


class _TaskLogging:
    """Route the pipeline's own log lines (and stdout/stderr) into the task's log file."""

    def __init__(self, log_file: Path, watcher: _StepWatcher):
        self.log_file = log_file
        self.watcher = watcher
        self.handler: logging.StreamHandler | None = None
        self.saved_fds: list[tuple[int, int]] = []
        self.saved_levels: dict[str, int] = {}

    def __enter__(self):
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        # A re-run replaces the old log: removed, then created anew, never through
        # a symlink (one planted in logs/ would have its target overwritten).
        self.log_file.unlink(missing_ok=True)
        fd = os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL
                     | os.O_NOFOLLOW, 0o644)
        self.handler = logging.StreamHandler(os.fdopen(os.dup(fd), "a", encoding="utf-8"))
        self.handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        self.handler.setLevel(logging.INFO)
        for name in _STPIPE_LOGGERS:
            logger = logging.getLogger(name)
            self.saved_levels[name] = logger.level
            if logger.level == logging.NOTSET or logger.level > logging.INFO:
                logger.setLevel(logging.INFO)
            logger.addHandler(self.handler)
            logger.addHandler(self.watcher)
        logging.captureWarnings(True)
        # Anything written straight to stdout/stderr (the CRDS console handler,
        # C extensions) also lands in this task's log, never on the terminal.
        sys.stdout.flush()
        sys.stderr.flush()
        for std in (1, 2):
            self.saved_fds.append((std, os.dup(std)))
            os.dup2(fd, std)
        os.close(fd)
        return self

    def __exit__(self, *exc):
        sys.stdout.flush()
        sys.stderr.flush()
        for std, saved in self.saved_fds:
            os.dup2(saved, std)
            os.close(saved)
        self.saved_fds.clear()
        logging.captureWarnings(False)
        for name, level in self.saved_levels.items():
            logger = logging.getLogger(name)
            logger.removeHandler(self.handler)
            logger.removeHandler(self.watcher)
            logger.setLevel(level)
        if self.handler is not None:
            self.handler.close()
            self.handler.stream.close()


def _pipeline_class(pipeline: str):
    """The task's pipeline class, its module loaded without jwst.pipeline's other nine."""
    from .._jwst_import import import_pipeline_module

    module_name, class_name, _alias = PIPELINES[pipeline]
    return getattr(import_pipeline_module(module_name), class_name)


def _pool_parameters(cls, parameters: dict) -> dict:
    """Inside a pool, steps that can use several cores get maximum_cores='1'."""
    parameters = json.loads(json.dumps(parameters))  # deep copy
    steps = parameters.setdefault("steps", {})
    for name, step_cls in getattr(cls, "step_defs", {}).items():
        if "maximum_cores" in (getattr(step_cls, "spec", "") or ""):
            steps.setdefault(name, {}).setdefault("maximum_cores", "1")
    if not steps:
        parameters.pop("steps")
    return parameters


def _close_models(result) -> None:
    items = result if isinstance(result, (list, tuple)) else [result]
    for item in items:
        close = getattr(item, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001
                pass


def _describe_error(exc: BaseException, task: Task | None = None) -> str:
    import errno

    # astropy checks free space itself and raises a plain OSError (no errno) that
    # starts "Not enough space on disk"; the disk is just as full.
    full = isinstance(exc, OSError) and (
        exc.errno == errno.ENOSPC or str(exc).startswith("Not enough space on disk")
    )
    if full:
        return (
            f"disk full while writing ({exc}). Free space in the output directory and "
            "re-run: finished tasks are kept and skipped."
        )
    if isinstance(exc, MemoryError):
        if task is None or task.in_pool:
            return "out of memory. Re-run with fewer parallel jobs (-j)."
        advice = (
            "with --low-memory (the pipeline's on-disk mode, in_memory=False), or on fewer "
            "exposures per association" if task.pipeline == "image3" else "or on smaller inputs"
        )
        return (
            f"out of memory with a single job (-j 1). Run it with more memory available, {advice} "
            "(and check parameters that enlarge the products, such as resample's "
            "pixel_scale_ratio)."
        )
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, JwstrunError) else text


def _apply_task_environment(env: dict) -> None:
    """Make a task's environment this process's (a no-op in a local pool worker, which has it).

    A long-lived Dask worker may have run another jwstrun run with another
    CRDS cache or context: CRDS settings go through refs.apply_crds_environment,
    which also resets crds' in-process state when crds is already imported.
    """
    changed = {k: str(v) for k, v in (env or {}).items() if os.environ.get(k) != str(v)}
    if not changed:
        return
    os.environ.update({k: v for k, v in changed.items() if not k.startswith("CRDS_")})
    if any(k.startswith("CRDS_") for k in changed):
        from ..refs import apply_crds_environment

        apply_crds_environment({k: str(v) for k, v in env.items() if k.startswith("CRDS_")})


class _on_disk_directory:
    """With ``in_memory=False``, work in the task's directory while the pipeline runs.

    jwst 3.0's on-disk ModelLibrary and stcal's on-disk median write their
    temporary files into the current directory; this keeps them under
    ``OUTDIR/.jwstrun-tmp/<task-id>`` (removed with the task's directory)
    instead of wherever the worker was started.  Also when the directory's path
    has a '$': the pipeline is then given relative paths (see :func:`_stpipe_path`).
    """

    def __init__(self, parameters: dict, workdir: Path):
        from ..mosaic import spec_bool

        on_disk = spec_bool(parameters.get("in_memory", True)) is False
        self.workdir = workdir if on_disk or "$" in str(workdir) else None
        self.saved: str | None = None

    def __enter__(self):
        if self.workdir is not None:
            self.saved = os.getcwd()
            os.chdir(self.workdir)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            os.chdir(self.saved)


def _stpipe_path(path: Path, workdir: Path) -> str:
    """``path`` as stpipe may be given it: without a '$' where it would be expanded.

    stpipe expands ``$VARS`` in ``output_dir`` and, with jwst, in association
    paths (not in member or exposure paths).  An association is then given as a
    copy in ``workdir`` with absolute member paths; a path in ``workdir`` relative
    to it (the current directory meanwhile when its path has a '$').
    """
    if "$" not in str(path):
        return str(path)
    if _is_association(path) and workdir not in path.parents:
        data = json.loads(path.read_text())
        for product in data.get("products") or []:
            for member in product.get("members") or []:
                member["expname"] = str(path.parent / member["expname"])
        path = workdir / "asn" / path.name.replace("$", "_")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=4))
    if "$" in str(workdir) and (path == workdir or workdir in path.parents):
        return os.path.relpath(path, workdir)
    return str(path)


def run_task(task: Task, progress: Callable | None = None) -> TaskResult:
    """Run one pipeline call in ``task.workdir`` and move its products into OUTDIR.

    Never raises for a pipeline failure: the returned :class:`TaskResult` has
    ``status='failed'``, the reason and, where known, the failing step.
    """
    started = time.time()
    _apply_task_environment(task.env)
    _reset_peak_rss()
    _WORKER_STATE["tasks"] += 1
    result = TaskResult(
        task_id=task.task_id, status="failed", start=started, log_file=task.log_file,
        worker_pid=os.getpid(), host=socket.gethostname(), tasks_in_worker=_WORKER_STATE["tasks"],
    )
    workdir = Path(task.workdir)
    outdir = Path(task.outdir)
    out = workdir / "out"
    watcher = _StepWatcher(task.task_id, progress)
    alias = PIPELINES[task.pipeline][2]
    previews = None
    try:
        shutil.rmtree(out, ignore_errors=True)  # leftovers of a killed run
        out.mkdir(parents=True)
        if task.previews:
            from .._previews import TaskPreviews

            previews = TaskPreviews(workdir, helper=task.preview_helper)
            watcher.progress = previews.watch(out, watcher.progress)
        with _TaskLogging(Path(task.log_file), watcher):
            log_task = logging.getLogger("jwstrun.runner")
            try:
                cls = _pipeline_class(task.pipeline)
                parameters = _pool_parameters(cls, task.parameters) if task.in_pool else task.parameters
                if progress is not None:
                    progress(task.task_id, alias)
                with _on_disk_directory(parameters, workdir):
                    models = cls.call(
                        _stpipe_path(Path(task.input), workdir),
                        output_dir=_stpipe_path(out, workdir),
                        save_results=True,
                        configure_log=False,
                        **parameters,
                    )
                _close_models(models)
                del models
            except Exception as exc:
                step = watcher.current
                result.failed_step = step
                result.error_type = type(exc).__name__
                where = f" in step {step}" if step and step not in (alias, cls_name(task)) else ""
                result.error = (f"{alias} failed{where} on {Path(task.input).name}: "
                                f"{_describe_error(exc, task)}")
                logging.getLogger("stpipe").exception("jwstrun: task %s failed", task.task_id)
                return result
            finally:
                result.step_times = dict(watcher.times)
                result.resolved_parameters = _parse_logged_parameters(watcher.parameters_text)
            del log_task
        products = sorted(p for p in out.iterdir() if p.is_file())
        if not products:
            raise PipelineError(f"{alias} finished but wrote no products for {Path(task.input).name}.")
        if task.validate:
            result.validation = _validate_products(
                products, task.parameters, task.expect_background
            )
            if result.validation.get("errors"):
                raise PipelineError(
                    "products failed validation: " + "; ".join(result.validation["errors"][:3])
                )
        for path in products:
            context, refs = _product_crds_info(path)
            if context and not result.crds_context:
                result.crds_context = context
            if refs:
                result.references[path.name] = refs
        if previews is not None:  # while the products are in the page cache, before the move
            previews.finish(products)
        # The only moment products appear in OUTDIR: after the pipeline
        # succeeded and the products were checked, one atomic rename each.
        sizes = {p.name: p.stat().st_size for p in products}
        for path in products:
            os.replace(path, outdir / path.name)
        if previews is not None:
            result.previews = previews.publish(outdir)
        result.outputs = [p.name for p in products]
        result.output_sizes = sizes
        result.status = "ok"
    except JwstrunError as exc:
        result.error = f"{task.task_id}: {exc}"
        result.error_type = type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - one task's failure must not stop the others
        result.error = f"{task.task_id}: {_describe_error(exc, task)}"
        result.error_type = type(exc).__name__
    finally:
        if previews is not None:
            previews.close()
        shutil.rmtree(workdir, ignore_errors=True)
        result.end = time.time()
        result.wall_s = round(result.end - started, 3)
        peak = _peak_rss_mb()
        _WORKER_STATE["peak_mb"] = max(_WORKER_STATE["peak_mb"], peak)
        result.peak_rss_mb = round(peak, 1)
        result.worker_peak_rss_mb = round(_WORKER_STATE["peak_mb"], 1)
        rss = _proc_status_mb("VmRSS")
        result.rss_after_mb = round(rss, 1) if rss is not None else None
    return result


def cls_name(task: Task) -> str:
    """Class name of a task's pipeline (e.g. Image2Pipeline)."""
    return PIPELINES[task.pipeline][1]


def _product_crds_info(path: Path):
    from ..manifest import product_crds_info

    try:
        return product_crds_info(path)
    except JwstrunError:
        return None, {}


def lost_task_result(task: Task, reason: str) -> TaskResult:
    """Result for a task whose worker died (or raised outside run_task)."""
    now = time.time()
    return TaskResult(
        task_id=task.task_id, status="failed", error=f"{task.task_id}: {reason}",
        error_type="WorkerLost", start=None, end=now, log_file=task.log_file,
    )


# --------------------------------------------------------------------------
# The parent side
# --------------------------------------------------------------------------
def _manifest_record(task: Task, result: TaskResult, versions: dict, context: str | None) -> dict:
    record = result.to_dict()
    record.update(
        pipeline=task.pipeline,
        pipeline_class=cls_name(task),
        input=task.input,
        product=task.product,
        inputs=[{k: v for k, v in e.items()} for e in task.inputs],
        parameters=task.parameters,
        fingerprint=task.fingerprint,
        versions=versions,
        crds_context=result.crds_context or context,
        log_file=os.path.relpath(task.log_file, task.outdir),
    )
    if task.memory is not None:
        record["memory"] = dict(task.memory)
    for key in ("start", "end"):
        if record.get(key):
            record[key + "_iso"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(record[key]))
    return record


def _worker_env(crds_env: dict, context: str | None, extra_env: dict | None,
                in_pool: bool) -> dict:
    from .. import refs

    env = refs.worker_environment(crds_env, context)
    env.update(extra_env or {})
    if in_pool:
        # Several workers on few cores: numerical libraries get one thread
        # each unless the user chose otherwise.
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, os.environ.get(var, "1"))
    return env


def _early_pool(pipeline: str, n_tasks: int, jobs: int | None, bytes_per_worker: float,
                crds_env: dict, extra_env: dict, max_tasks_per_child: int):
    """Start the local workers now, so that their ~4 s jwst import overlaps the
    parent's planning, CRDS context lookup and prefetch instead of following them.

    Their environment lacks only the CRDS context, which each task sets before
    it runs (``Task.env``); run_tasks gives the pool its final size.
    """
    from ..executors import default_jobs

    if jobs is None:
        jobs = default_jobs(n_tasks, bytes_per_worker)[0]
    jobs = max(1, min(jobs, n_tasks))
    env = _worker_env(crds_env, None, extra_env, jobs > 1)
    return _local_pool(pipeline, jobs, env, max_tasks_per_child).start()


def _local_pool(pipeline: str, jobs: int, env: dict, max_tasks_per_child: int, on_event=None):
    """The local executor for ``pipeline``'s tasks (not started)."""
    from ..executors import LocalExecutor

    return LocalExecutor(jobs, run_task, lost_task_result, env=env,
                         warm=(functools.partial(_pipeline_class, pipeline),),
                         max_tasks_per_child=max_tasks_per_child, on_event=on_event)


def run_tasks(
    pipeline: str,
    planned: list[_Planned],
    outdir: Path,
    *,
    parameters: dict,
    crds_env: dict,
    crds_context: str | None = None,
    jobs: int | None = None,
    force: bool = False,
    checksum: bool = False,
    extra_env: dict | None = None,
    validate: bool = True,
    max_tasks_per_child: int = 25,
    on_event: Callable | None = None,
    command: str = "jwstrun",
    executor_kind: str = "local",
    dask_options=None,
    pool=None,
    remove_if_refused: list | None = None,
    previews: bool = False,
) -> RunSummary:
    """Run planned tasks (the caller holds OUTDIR's lock); skip what is up to date.

    ``pool`` is a :class:`LocalExecutor` the caller started early (see
    :func:`_early_pool`); run_tasks resizes it, uses it and shuts it down.
    ``remove_if_refused``: files the caller wrote for these tasks (associations), to
    remove if the run stops before any task is submitted; run_tasks empties the list
    when it submits the first (from then on they are inputs the records name).

    A task is up to date when its manifest record is ok, its products are there
    with their recorded sizes, and its fingerprint (input checksums, parameters,
    versions, CRDS context) is unchanged.  Inputs whose size and mtime match the
    record keep their recorded checksum unless ``checksum=True``.

    ``previews=True`` has the workers draw the HTML report's previews of their
    products (the first tasks by product name, as many as the report shows);
    :func:`jwstrun.look.write_report` reuses them.

    ``on_event(kind, **info)`` is called in this process: ``plan`` (total,
    to_run, skipped, jobs), ``prefetch`` (seconds, context), ``start``/``step``
    (task_id, worker, step), ``done`` (result), ``retire``/``lost`` (worker).
    """
    from .. import refs
    from ..executors import default_jobs
    from ..manifest import Manifest

    def emit(kind, **info):
        if on_event is not None:
            on_event(kind, **info)

    run_start = time.time()
    versions = software_versions()
    manifest = Manifest.load(outdir)
    jobs_reason = "-j"
    if jobs is None:
        jobs, jobs_reason = default_jobs(len(planned), _bytes_per_worker(planned))
    on_dask = executor_kind == "dask"
    # A Dask worker shares its node with other workers: it is a pool worker.
    _check_maximum_cores(parameters, max(jobs, 2) if on_dask else jobs)
    in_pool = jobs > 1 or on_dask

    # The parent settles CRDS first: the context is pinned for every worker,
    # and it is part of each task's fingerprint.
    refs.apply_crds_environment(crds_env)
    context = refs.context_in_use(crds_context)
    worker_env = _worker_env(crds_env, context, extra_env, in_pool)
    fingerprint_parameters = dict(parameters)
    if extra_env:
        fingerprint_parameters["_environment"] = dict(sorted(extra_env.items()))

    # We hold the lock, so anything in the temporary area is left over from a
    # run that was killed: remove it before new tasks write there.  jwstrun's
    # own directories are never written through a symlink planted in OUTDIR.
    for name in (TMP_DIRNAME, LOG_DIRNAME):
        if (outdir / name).is_symlink():
            log.warning("%s: was a symbolic link; replaced by a directory.", outdir / name)
            (outdir / name).unlink()
    shutil.rmtree(outdir / TMP_DIRNAME, ignore_errors=True)
    tasks = _make_tasks(planned, outdir, parameters, in_pool, validate)
    for task in tasks:
        task.env = dict(worker_env)  # travels with the task to wherever it runs
    refusals = {t.task_id: p.refused for t, p in zip(tasks, planned, strict=True) if p.refused}
    by_id = {t.task_id: t for t in tasks}
    by_plan = {t.task_id: p for t, p in zip(tasks, planned, strict=True)}
    def on_worker_event(ev):
        emit(ev.kind, task_id=ev.task_id, worker=ev.worker, step=ev.step, pid=ev.pid)

    if pool is not None and not on_dask:
        # Started by _run before planning: the workers have been importing jwst
        # meanwhile. Now the pool gets its final size and the full environment.
        executor = pool
        executor.max_tasks_per_child = max_tasks_per_child
        executor.on_event = on_worker_event
        executor.resize(min(jobs, len(tasks)) or 1, env=worker_env)
    else:
        if pool is not None:
            pool.shutdown(cancel=True)
        executor = _local_pool(pipeline, min(jobs, len(tasks)) or 1, worker_env,
                               max_tasks_per_child, on_event=on_worker_event)
    if on_dask:
        # Same tasks, same run_task: only submitting and gathering differ.
        # Connect now, before the run is recorded: a bad address is a plain error.
        executor = _start_dask_executor(dask_options, min(jobs, len(tasks)) or 1, worker_env, emit)
        jobs, jobs_reason = executor.jobs, executor.jobs_reason
    results: list[TaskResult] = []
    prefetch_s = 0.0
    to_run: list[Task] = []
    hasher: _InputHasher | None = None
    checksums: dict[str, str | None] = {}  # path -> sha256, for every task of this run
    refused: Exception | None = None
    try:
        # Workers import jwst while this process decides what is up to date and
        # prefetches; inputs of the tasks that run are hashed in a thread of this
        # process while the workers work (only needed for the manifest).
        executor.start()
        for task in tasks:
            record = None if force else manifest.get(task.task_id)
            if record and record.get("status") in ("ok", "skipped"):
                if not checksum:
                    _reuse_checksums(task, record)
                _fill_checksums(task, checksums)
                task.fingerprint = compute_fingerprint(
                    pipeline, task.inputs, fingerprint_parameters, versions, context
                )
                if _can_skip(task, record, outdir):
                    results.append(
                        TaskResult(
                            task_id=task.task_id, status="skipped",
                            outputs=list(record["outputs"]),
                            output_sizes=dict(record.get("output_sizes") or {}),
                            log_file=task.log_file, crds_context=record.get("crds_context"),
                        )
                    )
                    continue
            to_run.append(task)
        # The image3 preflight's refusals count only for what has to run; nothing ran yet.
        refused = next((refusals[t.task_id] for t in to_run if t.task_id in refusals), None)
        refused = refused or _replacement([(t, by_plan[t.task_id]) for t in to_run], manifest,
                                          outdir)
        if refused is not None:
            raise refused
        emit("plan", total=len(tasks), to_run=len(to_run), skipped=len(results), jobs=jobs,
             jobs_reason=jobs_reason, tasks=[t.task_id for t in to_run], context=context)
        for skipped in list(results):
            emit("done", result=skipped)
        if to_run:
            t0 = time.time()
            exposures = [p for t in to_run for p, e in zip(t.input_paths, t.inputs, strict=True)
                         if e["role"] != "association"]
            # An exposure crds cannot serve fails its own task, not the run.
            unresolved = refs.prefetch(exposures, context=context, pipelines=(pipeline,),
                                       steps=parameters.get("steps"), per_exposure=True).unresolved
            prefetch_s = time.time() - t0
            emit("prefetch", seconds=prefetch_s, context=context)
            if remove_if_refused:
                remove_if_refused.clear()
            if previews:
                _mark_previews(tasks, to_run, jobs, on_dask)
            submitted = []
            for task in to_run:
                reasons = [unresolved[p] if len(task.inputs) == 1 else
                           f"{os.path.basename(p)}: {unresolved[p]}"
                           for p in map(os.path.abspath, task.input_paths) if p in unresolved]
                if not reasons:
                    executor.submit(task)
                    submitted.append(task)
                    continue
                now = time.time()
                result = TaskResult(task_id=task.task_id, status="failed", error=reasons[0],
                                    error_type="CrdsError", start=now, end=now,
                                    crds_context=context)
                manifest.record(_manifest_record(task, result, versions, context))
                results.append(result)
                emit("done", result=result)
            hasher = _InputHasher(submitted, checksums).start()
            for result in executor.as_completed():
                task = by_id[result.task_id]
                hasher.wait(task)
                if all(e["sha256"] for e in task.inputs):
                    task.fingerprint = compute_fingerprint(
                        pipeline, task.inputs, fingerprint_parameters, versions, context
                    )
                manifest.record(_manifest_record(task, result, versions, context))
                results.append(result)
                emit("done", result=result)
    except BaseException as exc:
        if hasher is not None:
            hasher.stop()
        executor.shutdown(cancel=True)
        # The workers are stopped and we still hold the lock: nothing of ours runs there now.
        shutil.rmtree(outdir / TMP_DIRNAME, ignore_errors=True)
        if exc is refused:  # refused before anything ran: not a run to record
            raise
        try:
            manifest.add_run(_run_entry(command, run_start, results, interrupted=True))
        except JwstrunError as error:  # the manifest may be what failed: keep the first error
            log.debug("%s", error)
        raise
    # Nothing ran: the warming workers are not needed, stop them at once.
    executor.shutdown(cancel=not to_run)
    manifest.add_run(_run_entry(command, run_start, results))
    _tidy_tmp(outdir)
    order = {t.task_id: i for i, t in enumerate(tasks)}
    results.sort(key=lambda r: order.get(r.task_id, 0))
    return RunSummary(
        pipeline=pipeline, outdir=outdir, manifest=manifest.path, results=results, tasks=by_id,
        jobs=jobs, jobs_reason=jobs_reason, wall_s=time.time() - run_start,
        crds_context=context, prefetch_s=prefetch_s,
    )


def _mark_previews(tasks: list[Task], to_run: list[Task], jobs: int, on_dask: bool) -> None:
    """Which tasks draw the report's previews: the first by product name, as many as the
    report shows; each with a helper process when the local workers leave a CPU idle."""
    from .._previews import MAX_TASKS_WITH_PREVIEWS
    from ..executors import cpu_count

    idle_cpu = not on_dask and cpu_count() > min(jobs, len(to_run))
    for task in sorted(tasks, key=lambda t: t.product)[:MAX_TASKS_WITH_PREVIEWS]:
        task.previews, task.preview_helper = True, idle_cpu


def _start_dask_executor(dask_options, jobs: int, worker_env: dict, emit: Callable):
    """A started :class:`~jwstrun.executors.DaskExecutor` for run_tasks."""
    from ..executors import DaskExecutor

    executor = DaskExecutor(
        run_task, lost_task_result, options=dask_options, jobs=jobs, env=worker_env,
        on_event=lambda ev: emit(
            ev.kind, task_id=ev.task_id, worker=ev.worker, step=ev.step, pid=ev.pid
        ),
    )
    return executor.start()


def _run_entry(command: str, start: float, results: list[TaskResult], interrupted=False) -> dict:
    counts = {"ok": 0, "skipped": 0, "failed": 0}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return {
        "command": command,
        "start": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(start)),
        "wall_s": round(time.time() - start, 3),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "counts": counts,
        "interrupted": interrupted,
    }


def _tidy_tmp(outdir: Path) -> None:
    tmp = outdir / TMP_DIRNAME
    try:
        tmp.rmdir()  # only when empty
    except OSError:
        pass


def _run(
    pipeline: str,
    inputs: Iterable[str | os.PathLike],
    outdir: str | os.PathLike,
    *,
    profiles: Iterable[str] = (),
    sets: Iterable[str] = (),
    extra_parameters: dict | None = None,
    jobs: int | None = None,
    force: bool = False,
    checksum: bool = False,
    crds_path: str | None = None,
    crds_context: str | None = None,
    crds_env_file: str | None = None,
    crds_offline: bool = False,
    no_crds_steppars: bool = False,
    validate: bool = True,
    max_tasks_per_child: int = 25,
    on_event: Callable | None = None,
    command: str = "jwstrun",
    executor: str | None = None,
    dask_options=None,
    memory_options: dict | None = None,
    previews: bool = False,
) -> RunSummary:
    from .. import refs
    from ..locking import OutdirLock

    if jobs is not None and jobs < 1:
        raise ConfigError(f"-j {jobs}: the number of jobs must be at least 1.")
    executor, dask_options = select_executor(executor, dask_options, jobs)
    # Everything that can be checked is checked before OUTDIR is touched.
    paths = expand_inputs(inputs)
    parameters = _call_parameters(pipeline, profiles, sets)
    if extra_parameters:
        parameters = _merge(parameters, extra_parameters)
    crds_env = refs.crds_environment(
        crds_path=crds_path, context=crds_context, env_file=crds_env_file, offline=crds_offline
    )
    extra_env = {"STPIPE_DISABLE_CRDS_STEPPARS": "True"} if no_crds_steppars else {}
    pool = None
    if executor == "local":
        # The workers start now: their ~4 s jwst import overlaps the input checks,
        # planning, CRDS context lookup and prefetch below. Tasks are counted for
        # sure only once planned (loose _cal files are grouped): run_tasks resizes.
        if pipeline == "image2":
            n_tasks, per_worker = len(paths), sum(_IMAGE2_BYTES)
        else:
            n_tasks = sum(map(_is_association, paths)) + any(not _is_association(p) for p in paths)
            per_worker = _IMAGE3_BYTES[0]
        pool = _early_pool(pipeline, n_tasks, jobs, per_worker, crds_env, extra_env,
                           max_tasks_per_child)
    try:
        if pipeline == "image2":
            planned = plan_image2(paths)
            _check_unique_products(planned)
        else:
            check_image3_inputs(paths)
        _check_complete(paths, pipeline)  # after the product-type checks, whose messages say more
        outdir = prepare_outdir(outdir)
        # The run's CRDS settings (a crds.env may pin CRDS_CONTEXT) must not outlive it
        # in a long-lived process: the next call may use another cache.
        with OutdirLock(outdir, command=command), refs.applied_crds_environment(crds_env), \
                _removed_if_refused() as made:
            if pipeline == "image3":
                known = set(outdir.glob("*_asn.json"))
                planned = plan_image3(paths, outdir)
                made += sorted(set(outdir.glob("*_asn.json")) - known)
                _check_unique_products(planned)
                _plan_image3_memory(planned, parameters, jobs, executor, **(memory_options or {}))
            return run_tasks(
                pipeline, planned, outdir, parameters=parameters, crds_env=crds_env,
                crds_context=crds_context, jobs=jobs, force=force, checksum=checksum,
                extra_env=extra_env,
                validate=validate, max_tasks_per_child=max_tasks_per_child, on_event=on_event,
                command=command, executor_kind=executor, dask_options=dask_options,
                pool=pool, remove_if_refused=made, previews=previews,
            )
    except BaseException:
        if pool is not None:  # run_tasks shuts it down itself; this covers bad input & co.
            pool.shutdown(cancel=True)
        raise


@contextlib.contextmanager
def _removed_if_refused():
    """A list of files this run wrote for its tasks (associations), removed if the run
    stops before run_tasks submitted a task (it empties the list when it does)."""
    made: list[Path] = []
    try:
        yield made
    except BaseException:
        for path in made:
            path.unlink(missing_ok=True)
        raise


#: values of ``executor=`` / ``--executor``
EXECUTORS = ("local", "dask")


def select_executor(executor: str | None, dask_options=None, jobs: int | None = None):
    """``(kind, DaskOptions or None)`` from the user's choice; errors before anything runs.

    ``executor=None`` means local, or dask when ``dask_options`` names a
    scheduler or a cluster.  Asking for dask without dask installed is an
    :class:`InputError` that says how to install it.
    """
    from ..executors import DaskOptions, check_dask_options

    options = DaskOptions.coerce(dask_options) if dask_options is not None else None
    remote = options is not None and (options.scheduler or options.cluster)
    if executor is None:
        executor = "dask" if remote else "local"
    if executor not in EXECUTORS:
        raise ConfigError(f"executor {executor!r}: unknown; choose one of {', '.join(EXECUTORS)}.")
    if executor == "local":
        if remote:
            raise ConfigError(
                "--scheduler and --cluster need --executor dask (the local executor runs "
                "worker processes on this machine)."
            )
        return "local", None
    return "dask", check_dask_options(options or DaskOptions(), jobs)


def _merge(base: dict, extra: dict) -> dict:
    merged = json.loads(json.dumps(base))
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def run_image2(inputs, outdir, *, save_bsub: bool = False, **options) -> RunSummary:
    """Run calwebb_image2 on _rate/_rateints files or Level-2 associations.

    ``save_bsub`` saves the background-subtracted ``_bsub`` product (through the
    background step's ``save_results``, the non-deprecated way).  Other options:
    see :func:`run_tasks` (``jobs``, ``force``, ``profiles``, ``sets``,
    ``crds_path``, ``crds_context``, ``on_event``...).  ``executor='dask'``
    with ``dask_options`` (a :class:`jwstrun.executors.DaskOptions` or a dict
    of its fields, e.g. ``{"scheduler": "tcp://host:8786"}``) runs the tasks on
    Dask (docs/dask.md).
    """
    extra = {"steps": {"bkg_subtract": {"save_results": True}}} if save_bsub else None
    return _run("image2", inputs, outdir, extra_parameters=extra, **options)


def _plan_image3_memory(
    planned: list[_Planned],
    parameters: dict,
    jobs: int | None,
    executor: str,
    *,
    max_memory=None,
    max_mosaic_pixels: int | None = None,
    low_memory: bool = False,
) -> None:
    """Mosaic preflight and memory mode of every association (jwstrun.mosaic); before any step."""
    from ..mosaic import (
        MosaicRefused,
        decide,
        default_max_mosaic_pixels,
        estimate_association,
        memory_budget,
        spec_bool,
    )

    if low_memory and spec_bool(parameters.get("in_memory")) is True:
        raise ConfigError(
            "--low-memory asks for the pipeline's on-disk mode but in_memory=true is set "
            "(profile or --set); drop one of them."
        )
    budget, source = memory_budget(max_memory)
    limit = max_mosaic_pixels or default_max_mosaic_pixels(budget)
    # A refusal is kept with its association and raised by run_tasks only if the
    # association has to run: an up-to-date product is not refused on a re-run
    # with a smaller --max-memory.
    estimates = {}
    for item in planned:
        item.memory = item.refused = None
        try:
            estimates[item.product] = estimate_association(
                item.product, [m.path for m in item.asn_product.by_type("science")], parameters,
                max_mosaic_pixels=limit,
            )
        except MosaicRefused as exc:
            item.refused = exc
    # The budget is split between the associations that run at the same time:
    # -j, or the -j that run_tasks will choose from the same in-memory estimates.
    if jobs is None and executor == "local" and estimates:
        from ..executors import default_jobs

        jobs = default_jobs(len(planned), max(e.in_memory_bytes for e in estimates.values()))[0]
    # Dask workers have their own memory (unknown here): each gets the whole budget.
    concurrent = 1 if executor == "dask" else max(1, min(jobs or 1, len(planned)))
    share = budget // concurrent
    for item in planned:
        estimate = estimates.get(item.product)
        if estimate is None:
            continue
        try:
            item.memory = decide(
                estimate, share, budget, source, low_memory=low_memory,
                user_in_memory=parameters.get("in_memory"), jobs=concurrent,
            )
        except MosaicRefused as exc:
            item.refused = exc
            continue
        log.info("%s: %s mode, mosaic %s; %s", item.product, item.memory.mode.replace("_", " "),
                 "x".join(map(str, estimate.shape[::-1])) if estimate.shape else "-",
                 item.memory.reason)


def run_image3(
    inputs, outdir, *, max_memory=None, max_mosaic_pixels: int | None = None,
    low_memory: bool = False, **options,
) -> RunSummary:
    """Run calwebb_image3 on Level-3 associations or a list of _cal files.

    Before any step runs, each association's output mosaic and peak memory are
    estimated (:mod:`jwstrun.mosaic`): a mosaic beyond ``max_mosaic_pixels``
    (default derived from the memory budget) is refused naming the inputs far
    from the rest; an association whose in-memory estimate exceeds its share of
    ``max_memory`` (bytes or '8GB'; default 80 % of the available memory, split
    between the associations that run at once) runs in the pipeline's on-disk
    mode (``in_memory=False``), or is refused when even that does not fit.
    ``low_memory=True`` forces the on-disk mode.  Other options as for
    :func:`run_image2` (``executor='dask'`` and ``dask_options`` included).
    """
    memory_options = {"max_memory": max_memory, "max_mosaic_pixels": max_mosaic_pixels,
                      "low_memory": low_memory}
    return _run("image3", inputs, outdir, memory_options=memory_options, **options)
