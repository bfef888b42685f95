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
from .env import OBSERVATORY, redact_url, server_reachable
from .setup import CrdsSetup, crds_setup, offline_advice, setup_problem

__all__ = ["DoctorReport", "STATUSES", "MODES", "doctor", "filesystem_of", "storage_kind"]

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


#: What each :attr:`DoctorReport.status` means (docs/refs.md has the table).
STATUSES = {
    "ready": "crds can work from this set-up",
    "to-fill": "the cache is not filled yet; `jwstrun refs prefetch INPUTS` fills it from the "
               "server",
    "not-configured": "neither CRDS_PATH nor a CRDS server is set",
    "no-cache-path": "a CRDS server is set, but no CRDS_PATH",
    "empty-offline": "the cache is not filled and there is no server to fill it",
    "empty-unreachable": "the cache is not filled and the server does not answer",
    "incomplete": "the cache lacks something (see the problems)",
}
#: What each :attr:`DoctorReport.mode` means.
MODES = {
    "online": "files crds lacks are fetched from the server",
    "offline": "serverless: crds uses the cache alone and never contacts a server",
    "not-configured": "no cache and no server",
}


@dataclass
class DoctorReport:
    """CRDS set-up as a jwstrun process sees it, with advice per problem.

    ``status`` sums it up (:data:`STATUSES`): "ready" and "to-fill" are fine (exit 0);
    the others come with problems.  ``mode`` (:data:`MODES`) says whether crds is
    online, offline on purpose, or not configured at all.
    """

    status: str
    mode: str
    crds_path: str | None
    #: the cache crds uses: CRDS_PATH, or crds' fallback when it is not set
    cache: str
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


def _check_setup(found: _Findings, setup: CrdsSetup, reachable: bool, detail: str) -> str | None:
    """The status when the cache is not filled (None when it is: the context decides)."""
    problem = setup_problem(setup, purpose="run")
    if problem:
        found.problem(problem[1], problem[2])
        return problem[0]
    if setup.filled or setup.other_location:
        if not setup.serverless and not reachable:
            found.notes.append(
                f"The CRDS server {redact_url(setup.url)} does not answer ({detail}): runs use "
                "the cache alone (jwstrun lowers crds' client timeout to 5 s). Normal on a "
                "compute node without network; --offline skips the probe.")
        return None
    source = f"the mirror {redact_url(setup.mirror)}" if setup.mirror else redact_url(setup.url)
    found.notes.append(f"The CRDS cache {setup.cache} {setup.cache_state()}: `jwstrun refs "
                       f"prefetch INPUTS` will fill it from {source} (image2 and image3 also "
                       "fetch what they need while the server answers).")
    return "to-fill"


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


def _mode_notes(found: _Findings, setup: CrdsSetup) -> None:
    if _readonly_set():
        found.notes.append("CRDS_READONLY_CACHE is set: nothing will be downloaded into the cache.")
    if os.environ.get("CRDS_MODE") == "local" and setup.mode == "online":
        found.notes.append("CRDS_MODE=local computes best references from the cache, but crds "
                           "still asks the server for its configuration: --offline keeps it off "
                           "the network.")


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
    plain-words advice in ``report.problems`` ([{"problem", "advice"}]) and
    ``report.status`` sums the set-up up (:data:`STATUSES`).
    """
    setup = crds_setup()
    found = _Findings()
    start = time.monotonic()
    reachable, detail = server_reachable(setup.url)
    probe_seconds = time.monotonic() - start
    cache = Path(setup.cache).expanduser()
    n_files = n_bytes = 0
    contexts: list[str] = []
    if setup.cache_exists:
        n_files, n_bytes = _tree_size(cache)
        contexts = sorted(p.name for p in (cache / "mappings" / OBSERVATORY).glob("jwst_*.pmap"))
    fstype, mount = filesystem_of(setup.crds_path or os.path.expanduser("~"))
    storage = storage_kind(fstype)

    status = _check_setup(found, setup, reachable, detail)
    if setup.crds_path:
        _storage_notes(found, setup.cache_exists, storage, fstype, mount)
    _mode_notes(found, setup)
    ctx_name = coverage = None
    if status is None:  # a filled cache: the context and the inputs decide
        ctx_name = _check_context(found, context, contexts)
        if inputs and ctx_name and ctx_name in contexts:
            coverage = _coverage(found, inputs, ctx_name)
        status = "incomplete" if found.problems else "ready"
    return DoctorReport(
        status=status, mode=setup.mode, crds_path=setup.crds_path, cache=setup.cache,
        server_url=redact_url(setup.url), context_env=os.environ.get("CRDS_CONTEXT"),
        readonly=_readonly_set(), serverless=setup.serverless, reachable=reachable,
        reachable_detail=detail, probe_seconds=round(probe_seconds, 3),
        cache_exists=setup.cache_exists, cache_files=n_files, cache_bytes=n_bytes,
        contexts_in_cache=contexts, context=ctx_name, filesystem=fstype, mount_point=mount,
        storage=storage, coverage=coverage, problems=found.problems, notes=found.notes,
    )
