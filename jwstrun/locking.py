"""One jwstrun run per output directory: a lock file with pid and host.

Two runs writing into the same OUTDIR would move products over each other and
both rewrite the manifest, so the second run refuses with a message naming the
holder.  A lock left behind by a run that was killed (kill -9, power loss, a
batch job at its wall time) is detected as stale and taken over:

- on the same host, as soon as its process no longer exists (pid and process
  start time are recorded, so a recycled pid is not mistaken for the holder);
- from another host, whose processes cannot be checked, once the lock has had
  no heartbeat for ``JWSTRUN_LOCK_STALE_SECONDS`` (default 600): the holder
  touches the lock file every 30 s while it runs, so a job resubmitted to
  another node after its first node died goes on by itself after ten minutes.

Several starters may judge the same lock stale at once (a batch of jobs
resubmitted after a crash): the takeover is serialised by an ``flock`` on the
stale lock file itself, and only a starter that finds, under that flock, the
very file it judged (same inode, same contents) still in place removes it.
The others then see the winner's new lock and refuse.  The flock is held for
the takeover only: the lock itself stays a plain file with a heartbeat, which
works across the hosts of a shared (NFS) file system.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

from .errors import OutputError

__all__ = ["LOCK_NAME", "LOCKS_DIRNAME", "MANIFEST_GUARD", "OutdirLock", "TaskLocks",
           "live_task_locks", "lock_age", "lock_is_stale", "planning_lock", "read_lock", "stale_after_seconds"]

LOCK_NAME = ".jwstrun.lock"
#: Per-task locks of the runs in an OUTDIR (``<task-id>.lock``), and the guard files
#: that serialise the start of runs and the planning of shards.
LOCKS_DIRNAME = ".jwstrun-locks"
#: The file in LOCKS_DIRNAME whose flock serialises the shards' manifest merges
#: (jwstrun.manifest); removed with the folder by the last shard to finish.
MANIFEST_GUARD = "manifest.guard"
_GUARD_NAME = "start.guard"
_PLAN_GUARD_NAME = "plan.guard"

#: Seconds between two touches of the lock file by the run that holds it.
HEARTBEAT_SECONDS = 30.0
#: A lock from another host without a heartbeat for this long is stale.
STALE_VARIABLE = "JWSTRUN_LOCK_STALE_SECONDS"
DEFAULT_STALE_SECONDS = 600.0

log = logging.getLogger(__name__)


def _process_start_ticks(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (Linux), to detect pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read().decode(errors="replace")
    except OSError:
        return None
    # Field 2 (comm) may contain spaces and parentheses; the fields after the
    # last ')' are well defined: state is field 3, starttime is field 22.
    fields = data[data.rfind(")") + 2 :].split()
    try:
        return fields[19]
    except IndexError:
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def read_lock(path: str | os.PathLike) -> dict | None:
    """Contents of a lock file, ``{}`` when unreadable/corrupt, None when absent."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def stale_after_seconds() -> float:
    """Heartbeat age after which another host's lock is stale (``JWSTRUN_LOCK_STALE_SECONDS``)."""
    try:
        value = float(os.environ.get(STALE_VARIABLE, DEFAULT_STALE_SECONDS))
    except ValueError:
        return DEFAULT_STALE_SECONDS
    return value if value > 0 else DEFAULT_STALE_SECONDS


def lock_age(path: str | os.PathLike) -> float | None:
    """Seconds since the lock file was last touched (its holder's heartbeat)."""
    try:
        return max(0.0, time.time() - os.stat(path).st_mtime)
    except OSError:
        return None


def lock_is_stale(info: dict, host: str | None = None, age: float | None = None) -> bool:
    """True when the lock's holder is known to be gone.

    Same host: its process no longer exists (or the pid was reused).  Another
    host: ``age`` (seconds since the last heartbeat, :func:`lock_age`) exceeds
    :func:`stale_after_seconds`; without an age it cannot be told.
    """
    host = host or socket.gethostname()
    if info.get("host") != host:
        return age is not None and age > stale_after_seconds()
    try:
        pid = int(info["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    if not _pid_alive(pid):
        return True
    recorded = info.get("proc_start")
    current = _process_start_ticks(pid)
    # Same pid but a different start time: the pid was reused by another process.
    return bool(recorded and current and recorded != current)


def _create_lock_file(path: Path, info: dict) -> bool:
    """Create the lock file ``path`` holding ``info``; False when it exists already.

    The full contents go to a private file first, then are hard-linked into place:
    link() fails if the lock exists, and a lock that exists is never half-written
    (a plain O_EXCL create could be seen empty)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    try:
        tmp.write_text(json.dumps(info))
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _remove_stale_lock(path: Path, info: dict, age: float | None) -> None:
    """Remove the lock judged stale from ``info``, if it is still that very file.

    Under an flock on the lock file, so that of several starters that judged it
    stale only the first removes it; the others find it gone or replaced
    (another inode, other contents) and leave the new lock alone.
    """
    # NFS locks exclusively only a file open for writing
    flags = os.O_RDWR if os.access(path, os.W_OK) else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return  # removed by another starter meanwhile
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # a file system without locks: take over unserialised
            log.debug("cannot flock %s (%s)", path, exc)
        try:
            if not os.path.samestat(os.fstat(fd), os.stat(path)):
                return  # replaced by a new lock meanwhile
        except FileNotFoundError:
            return  # removed by another starter meanwhile
        try:
            if json.loads(os.pread(fd, 1 << 16, 0)) != info:
                return  # another lock than the one judged stale
        except ValueError:
            return
        if info.get("host") == socket.gethostname():
            why = "which no longer runs"
        else:
            why = f"on {info.get('host')}, silent for {(age or 0) / 60:.0f} minutes"
        log.warning("Removing stale lock %s left by process %s (%s), %s.",
                    path, info.get("pid"), info.get("command", "?"), why)
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)


class OutdirLock:
    """Context manager holding ``OUTDIR/.jwstrun.lock`` for the duration of a run.

    Parameters
    ----------
    outdir : path
        The output directory (must exist).
    command : str
        What is running, recorded in the lock for the error message of a second run.
    shard : str, optional
        ``"K/N"``: this run is one shard of several sharing OUTDIR.  It refuses while
        a whole run holds ``.jwstrun.lock`` (and such a run refuses while shards
        work), but shares OUTDIR with the other shards: its lock is
        ``.jwstrun-locks/run-<host>-<pid>-<n>.lock``, and each task it runs is
        claimed with a :class:`TaskLocks` lock.
    """

    def __init__(self, outdir: str | os.PathLike, command: str = "jwstrun",
                 heartbeat: float = HEARTBEAT_SECONDS, shard: str | None = None):
        self.outdir = Path(outdir)
        self.shard = shard
        # A shard shares OUTDIR with the other shards: its lock is one of theirs.
        self.path = self.outdir / LOCK_NAME if shard is None else (
            self.outdir / LOCKS_DIRNAME
            / f"run-{socket.gethostname()}-{os.getpid()}-{time.monotonic_ns()}.lock")
        self.command = command
        self.acquired = False
        self.heartbeat = heartbeat
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _beating(self) -> None:
        """Touch the lock while the run holds it, so other hosts can tell it is alive."""
        while not self._stop.wait(self.heartbeat):
            try:
                os.utime(self.path)
            except OSError:
                pass  # OUTDIR gone or read-only now: the run's own error says so

    def _info(self) -> dict:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "proc_start": _process_start_ticks(os.getpid()),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": self.command,
            "heartbeat_s": self.heartbeat,
            "shard": self.shard,
        }

    def _try_create(self) -> bool:
        return _create_lock_file(self.path, self._info())

    def _remove_stale(self, info: dict, age: float | None) -> None:
        _remove_stale_lock(self.path, info, age)

    def acquire(self) -> None:
        """Take the lock or raise :class:`OutputError` saying who holds it.

        Under an flock on OUTDIR itself, so that a run and a shard starting at the
        same moment cannot both find the other absent."""
        try:
            with _outdir_guard(self.outdir):
                if self.shard is None:
                    self._refuse_if_shards()
                    self._take()
                else:
                    self._check_holder(self.outdir / LOCK_NAME)
                    (self.outdir / LOCKS_DIRNAME).mkdir(exist_ok=True)
                    if not self._try_create():
                        raise OutputError(f"{self.outdir}: could not take the lock {self.path}; "
                                          "retry.")
        except PermissionError as exc:
            raise OutputError(
                f"{self.outdir}: cannot create the lock file ({exc.strerror}). "
                "Choose an output directory you can write to."
            ) from exc
        self.acquired = True
        self._stop.clear()
        self._beat = threading.Thread(target=self._beating, daemon=True,
                                      name="jwstrun-lock-heartbeat")
        self._beat.start()

    def _take(self) -> None:
        for _attempt in range(3):
            if self._try_create():
                return
            self._check_holder(self.path)
        raise OutputError(f"{self.outdir}: could not take the lock {self.path}; retry.")

    def _check_holder(self, path: Path) -> None:
        """Return when the lock ``path`` is absent or was stale (and is now removed);
        raise :class:`OutputError` naming its holder when it is alive."""
        info = read_lock(path)
        if info is None:
            return  # released between our attempt and the read
        age = lock_age(path)
        if info and lock_is_stale(info, age=age):
            _remove_stale_lock(path, info, age)
            return
        if not info:
            raise OutputError(
                f"{self.outdir} is locked by {path}, which cannot be read. "
                f"If no jwstrun run is using this directory, delete {path} and retry."
            )
        elsewhere = ""
        if info.get("host") != socket.gethostname() and age is not None:
            elsewhere = (
                f" Its last heartbeat was {age:.0f} s ago; a lock from another host is "
                f"taken over after {stale_after_seconds():.0f} s without one "
                f"({STALE_VARIABLE})."
            )
        raise OutputError(
            f"{self.outdir} is in use by another jwstrun run "
            f"(pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}: "
            f"{info.get('command', '?')}). Wait for it to finish or use another -o OUTDIR. "
            f"If that run is dead, delete {path}.{elsewhere}"
        )

    def _refuse_if_shards(self) -> None:
        """A run of the whole plan refuses while shard runs work in OUTDIR."""
        live = [info for info in live_task_locks(self.outdir).values() if info.get("shard")]
        if live:
            info = live[0]
            raise OutputError(
                f"{self.outdir} is in use by jwstrun shard runs (shard {info.get('shard')}: "
                f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}). "
                f"Wait for them to finish ('jwstrun status {self.outdir}' shows them), or run "
                "this one with --shard too."
            )

    def release(self) -> None:
        """Remove the lock if we hold it (and it is still ours)."""
        if not self.acquired:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
            self._beat = None
        info = read_lock(self.path)
        if info and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
            try:
                self.path.unlink(missing_ok=True)
            except OSError as exc:
                # OUTDIR became unwritable during the run: the error that stopped
                # the run matters more; the next run sees this lock as stale.
                log.warning("Could not remove the lock %s (%s); the next run will take it over.",
                            self.path, exc.strerror or exc)
        if self.shard is not None:
            _remove_locks_dir(self.outdir)
        self.acquired = False

    def __enter__(self) -> "OutdirLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _remove_locks_dir(outdir: Path) -> None:
    """Remove ``OUTDIR/.jwstrun-locks`` when only the manifest's merge guard is left in
    it: the last shard to finish takes it away.  Under the OUTDIR guard, so a shard
    starting now either made its run lock before (the folder stays) or makes the folder
    again after; a live shard always has its run lock file there, and a killed one's
    stale locks keep the folder until a run takes them over."""
    directory = outdir / LOCKS_DIRNAME
    with _outdir_guard(outdir):
        try:
            names = {p.name for p in directory.iterdir()}
        except OSError:
            return
        if names - {MANIFEST_GUARD}:
            return
        try:
            (directory / MANIFEST_GUARD).unlink(missing_ok=True)
        except OSError:
            return
        _remove_if_empty(directory)


def _remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass  # other runs' locks are still there


@contextlib.contextmanager
def _outdir_guard(outdir: Path):
    """An flock on the OUTDIR directory itself while runs start (no file of its own; on a
    file system that cannot lock directories, the start is unserialised)."""
    try:
        fd = os.open(outdir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            log.debug("cannot flock %s (%s)", outdir, exc)
        yield
    finally:
        os.close(fd)


#: Shards plan one after the other (an association stage writes its associations into
#: OUTDIR while it plans): the same flock as the start of runs.
planning_lock = _outdir_guard


def live_task_locks(outdir: str | os.PathLike) -> dict[str, dict]:
    """Lock file name -> holder of every live lock in ``OUTDIR/.jwstrun-locks`` (run
    locks ``run-*.lock`` of shards and task locks ``<task-id>.lock``)."""
    directory = Path(outdir) / LOCKS_DIRNAME
    live = {}
    try:
        names = sorted(p.name for p in directory.iterdir() if p.name.endswith(".lock"))
    except OSError:
        return live
    for name in names:
        info = read_lock(directory / name)
        if info and not lock_is_stale(info, age=lock_age(directory / name)):
            live[name] = info
    return live


class TaskLocks:
    """The tasks one shard run has claimed: ``OUTDIR/.jwstrun-locks/<task-id>.lock``.

    A task is claimed before it is submitted and released once its result is
    recorded; a task another live run has claimed is left to it.  Locks left by a
    killed run are stale by the rules of :class:`OutdirLock` (same host: the
    process is gone; another host: no heartbeat) and are taken over.  One thread
    touches every held lock each ``heartbeat`` seconds.
    """

    def __init__(self, outdir: str | os.PathLike, info: dict,
                 heartbeat: float = HEARTBEAT_SECONDS):
        self.directory = Path(outdir) / LOCKS_DIRNAME
        self.info = dict(info)
        self.heartbeat = heartbeat
        self.held: set[str] = set()
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def path(self, task_id: str) -> Path:
        return self.directory / f"{task_id}.lock"

    def claim(self, task_id: str) -> dict | None:
        """Claim ``task_id``: None when it is now ours, else the live holder's lock."""
        self.directory.mkdir(exist_ok=True)
        path = self.path(task_id)
        for _attempt in range(3):
            if _create_lock_file(path, {**self.info, "task_id": task_id}):
                with self._mutex:
                    self.held.add(task_id)
                self._start_beating()
                return None
            info = read_lock(path)
            if info is None:
                continue
            age = lock_age(path)
            if info and lock_is_stale(info, age=age):
                _remove_stale_lock(path, info, age)
                continue
            return info or {"task_id": task_id}
        return read_lock(path) or {"task_id": task_id}

    def release(self, task_id: str) -> None:
        """Give ``task_id`` back (its result is recorded)."""
        with self._mutex:
            if task_id not in self.held:
                return
            self.held.discard(task_id)
        self.path(task_id).unlink(missing_ok=True)

    def close(self) -> None:
        """Release every claim and stop the heartbeat."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        for task_id in list(self.held):
            self.release(task_id)
        _remove_if_empty(self.directory)

    def _start_beating(self) -> None:
        if self._beat is None:
            self._beat = threading.Thread(target=self._beating, daemon=True,
                                          name="jwstrun-task-lock-heartbeat")
            self._beat.start()

    def _beating(self) -> None:
        while not self._stop.wait(self.heartbeat):
            with self._mutex:
                held = list(self.held)
            for task_id in held:
                try:
                    os.utime(self.path(task_id))
                except OSError:
                    pass
