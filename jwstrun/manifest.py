"""What ran, with what, how long: ``OUTDIR/jwstrun-manifest.json``, read and written here only.

The manifest has one record per task (keyed by task id, so a re-run replaces
the record of the same task) and one short entry per run.  It is rewritten
atomically (:func:`jwstrun._io.atomic_write`) after every finished task, so a
run killed at any moment leaves the previous complete manifest, never a
truncated one.  Only the parent process writes it (workers return results).

The one schema of a task record is :class:`TaskRecord`: what a worker reports
(:class:`TaskResult`) plus what the parent knows of the task (stage, inputs,
parameters, fingerprint, versions).  The runner writes records with
:meth:`TaskRecord.to_dict`; the report reads them with :func:`read_manifest`,
which checks every record against the same dataclass (:func:`check_manifest`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ._io import atomic_write
from .errors import InputError, OutputError

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_FORMAT",
    "Manifest",
    "ManifestContents",
    "TaskResult",
    "TaskRecord",
    "check_manifest",
    "read_manifest",
    "write_json_atomic",
    "product_crds_info",
]

MANIFEST_NAME = "jwstrun-manifest.json"
MANIFEST_FORMAT = 1

log = logging.getLogger(__name__)


def write_json_atomic(path: str | os.PathLike, data) -> None:
    """Write JSON so readers see either the old or the new file, never a partial one
    (serialised first: data that cannot be written leaves the old file as it was)."""
    atomic_write(path, json.dumps(data, indent=1, sort_keys=False, default=str) + "\n")


@dataclass
class TaskResult:
    """What a worker reports for one task (the first part of its manifest record)."""

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
    #: the SLURM (or PBS) job the worker ran in (jwstrun._system.batch_job_id)
    batch_job_id: str | None = None
    tasks_in_worker: int | None = None
    crds_context: str | None = None
    references: dict[str, dict[str, str]] = field(default_factory=dict)
    resolved_parameters: dict | None = None
    validation: dict | None = None
    step_times: dict[str, float] = field(default_factory=dict)
    #: step -> "done", "skipped" or "failed" (as stpipe logged it)
    step_status: dict[str, str] = field(default_factory=dict)
    log_file: str | None = None
    #: product name -> the report previews the worker drew of it (jwstrun.look._worker)
    previews: dict[str, dict] = field(default_factory=dict)
    #: what the pipeline wrote besides the products (a step's save_catalogs,
    #: save_intermediate_results...): paths relative to OUTDIR, in intermediate/<task-id>/
    intermediates: list[str] = field(default_factory=list)
    #: the task's temporary directory, kept with --keep-temp (relative to OUTDIR in a record)
    temp_dir: str | None = None
    #: the report's alignment, sky-level and catalog figures of the products, computed
    #: on the worker side (jwstrun.look._science_store)
    science: dict = field(default_factory=dict)
    #: the corrections run before the pipeline (a profile's ``before:``), in order: step
    #: (stpipe alias), class, package, version, status_keyword, parameters (as the step
    #: resolved them), exposures (how many it corrected), wall_s
    corrections: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        """The record of ``data``, ignoring keys this version does not know (a newer
        jwstrun may add some) and leaving absent ones at their defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class TaskRecord(TaskResult):
    """One task's manifest record: the worker's :class:`TaskResult` and the task.

    ``pipeline`` is the stage name (``"image2"``; a row of :mod:`jwstrun.stages`),
    ``pipeline_class`` its stpipe class name, ``log_file`` relative to OUTDIR.
    """

    pipeline: str | None = None
    pipeline_class: str | None = None
    input: str | None = None
    product: str | None = None
    inputs: list[dict] = field(default_factory=list)
    parameters: dict = field(default_factory=dict)
    fingerprint: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    #: image3: the mosaic and memory estimate and the mode chosen (jwstrun.mosaic)
    memory: dict | None = None
    start_iso: str | None = None
    end_iso: str | None = None

    @classmethod
    def from_result(cls, result: TaskResult, **task) -> "TaskRecord":
        """A record of a worker's ``result`` and the ``task`` fields the parent knows;
        ``start_iso``/``end_iso`` from the result's times."""
        record = cls(**{**result.to_dict(), **task})
        for key in ("start", "end"):
            value = getattr(record, key)
            if value:
                setattr(record, key + "_iso",
                        time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(value)))
        return record


def product_crds_info(path: str | os.PathLike) -> tuple[str | None, dict[str, str]]:
    """CRDS context (CRDS_CTX) and references used (R_* keywords) of one FITS product.

    Returns ``(context, {"R_FLAT": "crds://jwst_nircam_flat_0001.fits", ...})``;
    ``(None, {})`` for files without a FITS primary header (catalogs).
    """
    if not str(path).lower().endswith(".fits"):
        return None, {}
    from .products import read_primary_header

    header = read_primary_header(path)
    refs = {}
    for key in header:
        if key.startswith("R_") and not key.startswith("R_ID"):
            value = str(header[key]).strip()
            if value and value.upper() != "N/A":
                refs[key] = value
    context = header.get("CRDS_CTX")
    return (str(context).strip() if context else None), refs


#: Deepest nesting of a task record or run entry (a record is about 6 levels deep): deeper
#: ones are hand-made, and too deep for the recursive code that reads them (YAML dump).
MAX_DEPTH = 64
_NUMBER = (int, float)


def _json_type(annotation: str):
    """The JSON type of a TaskRecord field from its annotation (``"float | None"`` ->
    a number)."""
    base = annotation.split("|")[0].split("[")[0].strip()
    return {"str": str, "float": _NUMBER, "int": int, "list": list, "dict": dict}[base]


#: Type of every record field (None allowed too): read from :class:`TaskRecord` itself.
_RECORD_TYPES = {f.name: _json_type(str(f.type)) for f in dataclasses.fields(TaskRecord)}
_INPUT_TYPES = {"path": str, "name": str, "role": str, "size": int, "mtime_ns": int,
                "sha256": str}
_RUN_TYPES = {"command": str, "start": str, "wall_s": _NUMBER, "host": str, "pid": int,
              "counts": dict, "interrupted": bool, "batch_job_id": str, "shard": str}
_WORDS = {str: "a string", _NUMBER: "a number", int: "an integer", list: "a list",
          dict: "an object", bool: "true or false"}


def _depth(value) -> int:
    """Nesting depth of a JSON value, counted up to MAX_DEPTH + 1 (level by level, not
    recursively: the value may be deeper than the stack)."""
    level, frontier = 0, [value] if isinstance(value, (dict, list)) else []
    while frontier and level <= MAX_DEPTH:
        level += 1
        frontier = [child for item in frontier
                    for child in (item.values() if isinstance(item, dict) else item)
                    if isinstance(child, (dict, list))]
    return level


def _wrong_types(entry, types: dict, required=()) -> str | None:
    """What is wrong with the types of ``entry``'s fields (None, or absent, is allowed
    for the fields not ``required``)."""
    if not isinstance(entry, dict):
        return "is not an object"
    for key, wanted in types.items():
        value = entry.get(key)
        if (value is not None or key in required) and not isinstance(value, wanted):
            return f"{key!r} is not {_WORDS[wanted]}"
    return None


def _inside(path) -> bool:
    """A relative path that stays inside OUTDIR (no '..', no NUL)."""
    return (isinstance(path, str) and path not in ("", ".") and "\0" not in path
            and not Path(path).is_absolute() and ".." not in Path(path).parts)


def _plain_name(name) -> bool:
    """A file name directly in OUTDIR: no directory part, no '..', no NUL."""
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
            and "\\" not in name and "\0" not in name)


def _output_name(name) -> bool:
    """A product's name: a file directly in OUTDIR, or in a folder of it (a sweep's
    ``sweep/<variant>/<file>``), each part a plain name."""
    return isinstance(name, str) and all(_plain_name(part) for part in name.split("/"))


def _record_problem(record) -> str | None:
    """Why a task record cannot be used (None when it can)."""
    problem = _wrong_types(record, _RECORD_TYPES, required=("task_id", "status"))
    if problem:
        return problem
    for entry in record.get("inputs") or []:
        problem = _wrong_types(entry, _INPUT_TYPES, required=("path", "name"))
        if problem:
            return f"an input {problem}"
    names = list(record.get("outputs") or []) + list(record.get("output_sizes") or {})
    bad = next((n for n in names if not _output_name(n)), None)
    if bad is not None:
        return f"output {bad!r} is not a file name in the output directory"
    if any(not isinstance(v, int) for v in (record.get("output_sizes") or {}).values()):
        return "an output size is not an integer"
    log_file = record.get("log_file")
    if log_file and (Path(log_file).is_absolute() or ".." in Path(log_file).parts):
        return f"log file {log_file!r} is outside the output directory"
    bad = next((p for p in record.get("intermediates") or [] if not _inside(p)), None)
    if bad is not None:
        return f"intermediate file {bad!r} is outside the output directory"
    temp_dir = record.get("temp_dir")
    if temp_dir and not _inside(temp_dir):
        return f"temporary directory {temp_dir!r} is outside the output directory"
    if any(not isinstance(v, dict) for v in (record.get("references") or {}).values()):
        return "'references' is not an object of objects"
    files = (record.get("validation") or {}).get("files") or {}
    if not isinstance(files, dict) or any(
        not isinstance(items, list) or any(not isinstance(f, dict) for f in items)
        for items in files.values()
    ):
        return "'validation' files are not lists of findings"
    memory = record.get("memory") or {}
    mosaic = memory.get("mosaic") or {}
    shape = mosaic.get("shape") if isinstance(mosaic, dict) else ()
    if (shape is not None and not (isinstance(shape, list) and len(shape) == 2)) or (
        not isinstance(memory.get("estimate_mb"), (*_NUMBER, type(None)))
    ):
        return "'memory' is not a memory plan"
    return None


def check_manifest(data) -> tuple[dict, list[str]]:
    """The part of a manifest document that has the expected shape, and what did not.

    Checks the document (an object with a ``tasks`` object and a ``runs`` list),
    every task record and run entry (at most :data:`MAX_DEPTH` levels deep; the
    type of each field the runner and ``jwstrun report`` read; outputs named as
    plain files in OUTDIR, the log file inside it).  Returns a clean document with the
    records and runs that conform, and one line per problem (empty: all conform).
    """
    clean: dict = {"format": MANIFEST_FORMAT, "tasks": {}, "runs": []}
    if not isinstance(data, dict):
        return clean, ["the document is not an object"]
    problems = []
    tasks, runs = data.get("tasks"), data.get("runs", [])
    if not isinstance(tasks, dict):
        problems.append("no 'tasks' table")
        tasks = {}
    if not isinstance(runs, list):
        problems.append("'runs' is not a list")
        runs = []
    deep = f"nested more than {MAX_DEPTH} levels deep"
    for task_id, record in tasks.items():
        problem = deep if _depth(record) > MAX_DEPTH else _record_problem(record)
        if problem:
            problems.append(f"record {task_id!r}: {problem}")
        else:
            clean["tasks"][task_id] = record
    for number, run in enumerate(runs, 1):
        problem = deep if _depth(run) > MAX_DEPTH else _wrong_types(run, _RUN_TYPES)
        if problem:
            problems.append(f"run entry {number}: {problem}")
        else:
            clean["runs"].append(run)
    if isinstance(data.get("updated"), str):
        clean["updated"] = data["updated"]
    if isinstance(data.get("reproduced_from"), dict):  # jwstrun reproduce
        clean["reproduced_from"] = data["reproduced_from"]
    plans = data.get("plans")
    if plans is not None:
        if isinstance(plans, dict) and all(_plan_ok(p) for p in plans.values()):
            clean["plans"] = plans
        else:
            problems.append("'plans' is not an object of task plans")
    return clean, problems


def _plan_ok(plan) -> bool:
    """A stage's plan: ``{"tasks": {task_id: shard or None}, "shards": N or None}``."""
    return (isinstance(plan, dict) and isinstance(plan.get("tasks"), dict)
            and _depth(plan) <= 3
            and all(v is None or isinstance(v, int) for v in plan["tasks"].values())
            and (plan.get("shards") is None or isinstance(plan.get("shards"), int)))


class Manifest:
    """The manifest of one output directory.

    Parameters
    ----------
    outdir : path
        Output directory; the file is ``outdir/jwstrun-manifest.json``.
    """

    def __init__(self, outdir: str | os.PathLike, shared: bool = False):
        self.outdir = Path(outdir)
        self.path = self.outdir / MANIFEST_NAME
        self.data: dict = {"format": MANIFEST_FORMAT, "tasks": {}, "runs": []}
        #: other runs (shards) write this manifest too: every save merges (:meth:`save`)
        self.shared = shared
        self._pending: dict = {"tasks": {}, "runs": [], "plans": {}}

    @classmethod
    def load(cls, outdir: str | os.PathLike, shared: bool = False) -> "Manifest":
        """Read the manifest of ``outdir`` (an empty one if there is none).

        A manifest that is unreadable or not of the expected shape
        (:func:`check_manifest`) is set aside (renamed ``*.corrupt-<time>``) with a
        warning; the run keeps the records that conform and redoes the other
        tasks, which is always safe.
        """
        manifest = cls(outdir, shared=shared)
        if not manifest.path.exists():
            return manifest
        try:
            data, problems = check_manifest(json.loads(manifest.path.read_text()))
        except (OSError, ValueError, RecursionError) as exc:
            data, problems = manifest.data, [f"unreadable: {exc}"]
        if problems:
            aside = manifest.path.with_name(
                f"{MANIFEST_NAME}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
            )
            more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
            log.warning(
                "%s is not a valid manifest (%s%s); moved it to %s, kept the %d valid task "
                "record(s) and will redo the other tasks.",
                manifest.path, "; ".join(problems[:3]), more, aside.name, len(data["tasks"]),
            )
            if not shared:  # a shard leaves that to a run of the whole plan
                os.replace(manifest.path, aside)
        manifest.data = data
        return manifest

    @property
    def tasks(self) -> dict[str, dict]:
        """Task id -> record."""
        return self.data["tasks"]

    def get(self, task_id: str) -> dict | None:
        """The last record of a task, or None."""
        return self.tasks.get(task_id)

    def record(self, record: dict, save: bool = True) -> None:
        """Store (replace) the record of ``record['task_id']`` and save."""
        self.tasks[record["task_id"]] = record
        self._pending["tasks"][record["task_id"]] = record
        if save:
            self.save()

    def add_run(self, run: dict, save: bool = True) -> None:
        """Append one run entry (command, start/end, counts)."""
        self.data["runs"].append(run)
        self._pending["runs"].append(run)
        if save:
            self.save()

    def set_plan(self, stage: str, tasks: dict[str, int | None], shards: int | None,
                 save: bool = True) -> None:
        """Record the tasks a run of ``stage`` planned (task id -> its shard, or None), so
        that ``jwstrun status`` can tell what is missing across shards."""
        import socket

        plan = {"tasks": dict(tasks), "shards": shards, "pid": os.getpid(),
                "host": socket.gethostname()}
        self.data.setdefault("plans", {})[stage] = plan
        self._pending["plans"][stage] = plan
        if save:
            self.save()

    @property
    def plans(self) -> dict[str, dict]:
        """Stage -> the tasks its last run planned (:meth:`set_plan`)."""
        return self.data.get("plans", {})

    def save(self) -> None:
        """Write the manifest atomically; :class:`OutputError` when OUTDIR cannot take it.

        A shared manifest (shards writing one OUTDIR) is merged under an flock: the
        file on disk is read again and this run's records, runs and plans since its
        last save are laid over it, so no shard's record is lost.
        """
        try:
            with self._merge_lock():
                if self.shared:
                    self._merge_from_disk()
                self.data["format"] = MANIFEST_FORMAT
                self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                write_json_atomic(self.path, self.data)
            self._pending = {"tasks": {}, "runs": [], "plans": {}}
        except OSError as exc:
            # A full disk or a directory made read-only during the run: say so
            # plainly (the previous manifest is intact, products already moved
            # into OUTDIR are complete; a re-run redoes what is not recorded).
            what = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
            raise OutputError(
                f"{self.path}: cannot write the run manifest ({what}). Free space or restore "
                "write permission on the output directory and re-run: finished tasks are kept."
            ) from exc

    @contextlib.contextmanager
    def _merge_lock(self):
        if not self.shared:
            yield
            return
        from .locking import LOCKS_DIRNAME, MANIFEST_GUARD

        guard = self.outdir / LOCKS_DIRNAME / MANIFEST_GUARD
        guard.parent.mkdir(exist_ok=True)
        with open(guard, "a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            yield

    def _merge_from_disk(self) -> None:
        """The manifest on disk with this run's unsaved changes laid over it."""
        try:
            data, _problems = check_manifest(json.loads(self.path.read_text()))
        except FileNotFoundError:
            data = {"format": MANIFEST_FORMAT, "tasks": {}, "runs": []}
        except (OSError, ValueError, RecursionError):
            return  # unreadable: keep what this run knows; a whole run sets it aside
        data["tasks"].update(self._pending["tasks"])
        data["runs"].extend(self._pending["runs"])
        if self._pending["plans"] or data.get("plans"):
            data["plans"] = {**data.get("plans", {}), **self._pending["plans"]}
        self.data = data


@dataclass
class ManifestContents:
    """What :func:`read_manifest` found: the records and runs of the expected shape,
    and one line per part that was not (left out)."""

    path: Path
    tasks: dict[str, TaskRecord]
    runs: list[dict]
    updated: str | None = None
    problems: list[str] = field(default_factory=list)


def read_manifest(path: str | os.PathLike) -> ManifestContents:
    """Read a manifest (a ``jwstrun-manifest.json`` file, or the directory holding it)
    for a reader such as the report: records as :class:`TaskRecord` objects, through the
    same checks as the runner's (:func:`check_manifest`).  :class:`InputError` when the
    file cannot be read at all; parts of the wrong shape are left out and named in
    ``problems``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        data, problems = check_manifest(json.loads(path.read_text()))
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(
            f"{path}: unreadable manifest ({exc}). Re-run the pipeline command to rewrite it."
        ) from exc
    return ManifestContents(
        path=path,
        tasks={task_id: TaskRecord.from_dict(record) for task_id, record in data["tasks"].items()},
        runs=data["runs"], updated=data.get("updated"), problems=problems,
    )
