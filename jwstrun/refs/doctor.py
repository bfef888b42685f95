"""``jwstrun refs doctor``: the CRDS set-up as a jwstrun process sees it, with advice.

Never waits on the network longer than the short probe of
:func:`jwstrun.refs.env.server_reachable`; every problem comes with plain-words
advice.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import CrdsError
from . import _crds
from .bestrefs import resolve_bestrefs
from .env import OBSERVATORY, SERVERLESS_URL, is_serverless, redact_url, server_reachable
from .prefetch import offline_advice

__all__ = ["DoctorReport", "doctor", "filesystem_of", "storage_kind"]

# Filesystems that every node of a cluster typically sees.
_SHARED_FS = {
    "nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "beegfs", "cephfs", "ceph",
    "panfs", "wekafs", "fuse.glusterfs", "glusterfs", "fuse.sshfs", "afs", "orangefs",
    "fuse.beegfs", "fuse.cephfs", "9p", "virtiofs",
}
_LOCAL_FS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "overlay", "tmpfs", "ramfs", "f2fs"}


def filesystem_of(path: str | os.PathLike, mounts_file: str = "/proc/mounts") -> tuple[str, str]:
    """(fstype, mount point) of the filesystem holding ``path`` (its nearest existing parent)."""
    # realpath resolves symlinks of the existing part; a not-yet-created cache still
    # belongs to the mount its path falls under
    real = os.path.realpath(Path(path).expanduser())
    best = ("unknown", "/")
    best_len = -1
    try:
        lines = Path(mounts_file).read_text().splitlines()
    except OSError:
        return best
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) > best_len:
            best, best_len = (parts[2], mount), len(mount)
    return best


def storage_kind(fstype: str) -> str:
    """"shared" (every node of a cluster sees it), "local" or "unknown"."""
    if fstype in _SHARED_FS or fstype.startswith(("nfs", "fuse.lustre")):
        return "shared"
    if fstype in _LOCAL_FS:
        return "local"
    return "unknown"


def _tree_size(root: Path) -> tuple[int, int]:
    files = size = 0
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        files += 1
                        size += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return files, size


@dataclass
class DoctorReport:
    """CRDS set-up as a jwstrun process sees it, with advice per problem."""

    crds_path: str | None
    server_url: str | None
    context_env: str | None
    readonly: bool
    serverless: bool
    reachable: bool
    reachable_detail: str
    probe_seconds: float
    cache_exists: bool
    cache_files: int
    cache_bytes: int
    contexts_in_cache: list[str]
    context: str | None
    filesystem: str
    mount_point: str
    storage: str
    coverage: dict | None = None
    problems: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def _readonly_set() -> bool:
    return os.environ.get("CRDS_READONLY_CACHE", "").lower() in ("1", "true", "yes", "t")


class _Findings:
    """Problems (each with advice) and notes, in the order they were found."""

    def __init__(self) -> None:
        self.problems: list[dict] = []
        self.notes: list[str] = []

    def problem(self, text: str, advice: str) -> None:
        self.problems.append({"problem": text, "advice": advice})


def _check_cache(found: _Findings, crds_path: str | None, cache: Path | None, exists: bool) -> None:
    if not crds_path:
        found.problem("CRDS_PATH is not set, so crds would use its built-in default location.",
                      "Set CRDS_PATH to your CRDS cache directory (export "
                      "CRDS_PATH=/path/to/crds_cache) or pass --crds-path.")
    elif not exists:
        found.problem(f"CRDS_PATH {crds_path} does not exist.",
                      "Create it and run `jwstrun refs prefetch INPUTS` on a node with network, "
                      "or point CRDS_PATH at an existing cache.")
    elif not (cache / "config" / OBSERVATORY / "server_config").is_file():
        found.problem(f"{cache}/config/jwst/server_config is missing; crds cannot work offline "
                      "without it.",
                      "Run `jwstrun refs prefetch INPUTS` once on a node with network (it writes "
                      "the file).")


def _check_server(found: _Findings, url: str | None, reachable: bool, detail: str) -> None:
    if not url:
        found.notes.append("CRDS_SERVER_URL is not set; crds then runs in serverless mode.")
    elif not is_serverless(url) and not reachable:
        found.problem(f"The CRDS server {redact_url(url)} does not answer ({detail}).",
                      "Work from the local cache: pass --offline or set CRDS_SERVER_URL="
                      f"{SERVERLESS_URL} so crds never waits on the network (its default timeout "
                      "is one hour per request). Fetch missing files where there is network with "
                      "`jwstrun refs prefetch`.")


def _storage_notes(found: _Findings, exists: bool, storage: str, fstype: str, mount: str) -> None:
    if exists and storage == "local":
        if fstype in ("tmpfs", "ramfs"):
            found.notes.append(f"CRDS_PATH is on {fstype} ({mount}): the cache is lost at reboot "
                               "and other nodes cannot see it.")
        else:
            found.notes.append(f"CRDS_PATH is on local storage ({fstype} at {mount}). Fine on one "
                               "machine; on a cluster put the cache on shared storage "
                               "(NFS/Lustre/GPFS) so every compute node sees the same files, and "
                               "prefetch once from a login node.")
    elif exists and storage == "shared":
        found.notes.append(f"CRDS_PATH is on shared storage ({fstype} at {mount}): compute nodes "
                           "can use it; let workers run with CRDS_READONLY_CACHE=1 after a "
                           "prefetch.")
    if _readonly_set():
        found.notes.append("CRDS_READONLY_CACHE is set: nothing will be downloaded into the cache.")


def _check_context(found: _Findings, context: str | None, contexts: list[str]) -> str | None:
    """The context in use, or None when it cannot be worked out (a problem says why)."""
    try:
        name = _crds.context_in_use(context)
    except CrdsError as exc:
        found.problem(str(exc), "Fix the cache configuration first (see above).")
        return None
    if name not in contexts:
        found.problem(f"The context in use, {name}, is not in the cache.",
                      "Run `jwstrun refs prefetch` on a node with network, or pin one of "
                      f"{', '.join(contexts) or 'the cached contexts'} with --crds-context.")
    return name


def _coverage(found: _Findings, inputs, context: str) -> dict | None:
    """Whether the cache holds every reference ``inputs`` need under ``context``."""
    try:
        resolution = resolve_bestrefs(inputs, context=context)
    except CrdsError as exc:
        found.problem(str(exc), "Check the inputs and the context.")
        return None
    missing = []
    for name in resolution.files:
        instrument = next(g.instrument for g in resolution.groups if name in g.files)
        if not _crds.locate_reference(name, instrument).exists():
            missing.append(name)
    if missing:
        found.problem(f"{len(missing)} of {len(resolution.files)} reference files the inputs need "
                      f"are not in the cache (e.g. {missing[0]}).",
                      offline_advice()[0].upper() + offline_advice()[1:] + ".")
    for text in resolution.problems:
        found.problem(text, "Pin another context with --crds-context or fix the CRDS rules.")
    return {"n_exposures": resolution.n_exposures, "n_groups": len(resolution.groups),
            "needed": len(resolution.files), "missing": missing, "unresolved": resolution.problems}


def doctor(inputs=None, context: str | None = None) -> DoctorReport:
    """Check the CRDS configuration (and, with ``inputs``, whether the cache covers them).

    Never waits on the network longer than the short probe; problems come with
    plain-words advice in ``report.problems`` ([{"problem", "advice"}]).
    """
    crds_path = os.environ.get("CRDS_PATH")
    url = os.environ.get("CRDS_SERVER_URL")
    found = _Findings()
    start = time.monotonic()
    reachable, detail = server_reachable(url)
    probe_seconds = time.monotonic() - start
    cache = Path(crds_path) if crds_path else None
    exists = bool(cache and cache.is_dir())
    n_files = n_bytes = 0
    contexts: list[str] = []
    if exists:
        n_files, n_bytes = _tree_size(cache)
        contexts = sorted(p.name for p in (cache / "mappings" / OBSERVATORY).glob("jwst_*.pmap"))
    fstype, mount = filesystem_of(crds_path or os.path.expanduser("~"))
    storage = storage_kind(fstype)

    _check_cache(found, crds_path, cache, exists)
    _check_server(found, url, reachable, detail)
    _storage_notes(found, exists, storage, fstype, mount)
    ctx_name = None
    if exists and not any("server_config" in p["problem"] for p in found.problems):
        ctx_name = _check_context(found, context, contexts)
    coverage = None
    if inputs and ctx_name and ctx_name in contexts:
        coverage = _coverage(found, inputs, ctx_name)
    return DoctorReport(
        crds_path=crds_path, server_url=redact_url(url), context_env=os.environ.get("CRDS_CONTEXT"),
        readonly=_readonly_set(), serverless=is_serverless(url), reachable=reachable,
        reachable_detail=detail, probe_seconds=round(probe_seconds, 3), cache_exists=exists,
        cache_files=n_files, cache_bytes=n_bytes, contexts_in_cache=contexts, context=ctx_name,
        filesystem=fstype, mount_point=mount, storage=storage, coverage=coverage,
        problems=found.problems, notes=found.notes,
    )
