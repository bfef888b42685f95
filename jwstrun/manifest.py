"""What ran, with what, how long: ``OUTDIR/jwstrun-manifest.json``, read and written here only.

The manifest has one record per task (keyed by task id, so a re-run replaces
the record of the same task) and one short entry per run.  It is rewritten
atomically (temporary file, fsync, ``os.replace``) after every finished task,
so a run killed at any moment leaves the previous complete manifest, never a
truncated one.  Only the parent process writes it (workers return records).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from .errors import OutputError

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_FORMAT",
    "Manifest",
    "write_json_atomic",
    "product_crds_info",
]

MANIFEST_NAME = "jwstrun-manifest.json"
MANIFEST_FORMAT = 1

log = logging.getLogger(__name__)


def write_json_atomic(path: str | os.PathLike, data) -> None:
    """Write JSON so readers see either the old or the new file, never a partial one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private; the manifest is for everyone
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=False, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


class Manifest:
    """The manifest of one output directory.

    Parameters
    ----------
    outdir : path
        Output directory; the file is ``outdir/jwstrun-manifest.json``.
    """

    def __init__(self, outdir: str | os.PathLike):
        self.outdir = Path(outdir)
        self.path = self.outdir / MANIFEST_NAME
        self.data: dict = {"format": MANIFEST_FORMAT, "tasks": {}, "runs": []}

    @classmethod
    def load(cls, outdir: str | os.PathLike) -> "Manifest":
        """Read the manifest of ``outdir`` (an empty one if there is none).

        An unreadable manifest is set aside (renamed ``*.corrupt-<time>``) with a
        warning; the run then redoes every task, which is always safe.
        """
        manifest = cls(outdir)
        if not manifest.path.exists():
            return manifest
        try:
            data = json.loads(manifest.path.read_text())
            if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
                raise ValueError("no 'tasks' table")
        except (OSError, ValueError) as exc:
            aside = manifest.path.with_name(
                f"{MANIFEST_NAME}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
            )
            log.warning(
                "%s is unreadable (%s); moved it to %s and will redo every task.",
                manifest.path, exc, aside.name,
            )
            os.replace(manifest.path, aside)
            return manifest
        data.setdefault("runs", [])
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
        if save:
            self.save()

    def add_run(self, run: dict, save: bool = True) -> None:
        """Append one run entry (command, start/end, counts)."""
        self.data["runs"].append(run)
        if save:
            self.save()

    def save(self) -> None:
        """Write the manifest atomically; :class:`OutputError` when OUTDIR cannot take it."""
        self.data["format"] = MANIFEST_FORMAT
        self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        try:
            write_json_atomic(self.path, self.data)
        except OSError as exc:
            # A full disk or a directory made read-only during the run: say so
            # plainly (the previous manifest is intact, products already moved
            # into OUTDIR are complete; a re-run redoes what is not recorded).
            what = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
            raise OutputError(
                f"{self.path}: cannot write the run manifest ({what}). Free space or restore "
                "write permission on the output directory and re-run: finished tasks are kept."
            ) from exc
