"""Resume: what makes a task's products up to date, and whether they still are.

A task's fingerprint is a hash of its input checksums, its resolved call
parameters, the jwst/stpipe/crds/stdatamodels/stcal versions and the CRDS
context.  A task is skipped when its manifest record is ok, its fingerprint is
unchanged and its products are all still there with their recorded sizes.  An
input whose size and mtime are unchanged keeps its recorded checksum (the quick
check of make and rsync) unless ``checksum=True``; the inputs of the tasks that
run are hashed in a thread of the parent while the workers work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from ..manifest import TaskResult
from .task import Task

__all__ = ["file_sha256", "software_versions", "compute_fingerprint", "can_skip",
           "split_up_to_date"]

log = logging.getLogger(__name__)


def file_sha256(path: str | os.PathLike, chunk: int = 4 << 20) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def software_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions that change results: jwst, stpipe, crds, stdatamodels, and the ``extra``
    distributions (the package of a step ``jwstrun step`` runs: snowblind) (no imports)."""
    versions = {}
    for dist in ("jwst", "stpipe", "crds", "stdatamodels", "stcal", *extra):
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


def can_skip(task: Task, record: dict | None, outdir: Path) -> bool:
    """Whether ``task`` (its fingerprint computed) is up to date: its ``record`` is ok
    with the same fingerprint, and every output it names is in ``outdir`` with its
    recorded size (intermediate files are not products: whether they are still there
    does not matter)."""
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




def split_up_to_date(
    tasks: list[Task],
    manifest,
    outdir: Path,
    fingerprint: Callable[[Task], str],
    known: dict[str, str | None],
    *,
    force: bool = False,
    checksum: bool = False,
) -> tuple[list[TaskResult], list[Task]]:
    """``(skipped results, tasks to run)``: a task with an ok record is fingerprinted
    (``fingerprint(task)``, its inputs hashed first, reusing the record's checksums of
    unchanged inputs unless ``checksum``) and skipped when :func:`can_skip`; ``force``
    runs every task.  ``known`` (path -> sha256) is shared by the whole run."""
    skipped: list[TaskResult] = []
    to_run: list[Task] = []
    for task in tasks:
        record = None if force else manifest.get(task.task_id)
        if record and record.get("status") in ("ok", "skipped"):
            if not checksum:
                _reuse_checksums(task, record)
            _fill_checksums(task, known)
            task.fingerprint = fingerprint(task)
            if can_skip(task, record, outdir):
                skipped.append(TaskResult(
                    task_id=task.task_id, status="skipped", outputs=list(record["outputs"]),
                    output_sizes=dict(record.get("output_sizes") or {}),
                    intermediates=list(record.get("intermediates") or []),
                    log_file=task.log_file, crds_context=record.get("crds_context"),
                ))
                continue
        to_run.append(task)
    return skipped, to_run
