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

import fcntl
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

from .errors import OutputError

__all__ = ["LOCK_NAME", "OutdirLock", "lock_age", "lock_is_stale", "read_lock",
           "stale_after_seconds"]

LOCK_NAME = ".jwstrun.lock"

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


class OutdirLock:
    """Context manager holding ``OUTDIR/.jwstrun.lock`` for the duration of a run.

    Parameters
    ----------
    outdir : path
        The output directory (must exist).
    command : str
        What is running, recorded in the lock for the error message of a second run.
    """

    def __init__(self, outdir: str | os.PathLike, command: str = "jwstrun",
                 heartbeat: float = HEARTBEAT_SECONDS):
        self.outdir = Path(outdir)
        self.path = self.outdir / LOCK_NAME
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
        }

    def _try_create(self) -> bool:
        # Write the full contents to a private file, then hard-link it into
        # place: link() fails if the lock exists, and a lock that exists is
        # never half-written (a plain O_EXCL create could be seen empty).
        tmp = self.outdir / f"{LOCK_NAME}.{os.getpid()}.{time.monotonic_ns()}"
        try:
            tmp.write_text(json.dumps(self._info()))
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _remove_stale(self, info: dict, age: float | None) -> None:
        """Remove the lock judged stale from ``info``, if it is still that very file.

        Under an flock on the lock file, so that of several starters that judged
        it stale only the first removes it; the others find it gone or replaced
        (another inode, other contents) and leave the new lock alone.
        """
        # NFS locks exclusively only a file open for writing
        flags = os.O_RDWR if os.access(self.path, os.W_OK) else os.O_RDONLY
        try:
            fd = os.open(self.path, flags)
        except FileNotFoundError:
            return  # removed by another starter meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:  # a file system without locks: take over unserialised
                log.debug("cannot flock %s (%s)", self.path, exc)
            try:
                if not os.path.samestat(os.fstat(fd), os.stat(self.path)):
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
                        self.path, info.get("pid"), info.get("command", "?"), why)
            self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def acquire(self) -> None:
        """Take the lock or raise :class:`OutputError` saying who holds it."""
        for _attempt in range(3):
            try:
                if self._try_create():
                    self.acquired = True
                    self._stop.clear()
                    self._beat = threading.Thread(target=self._beating, daemon=True,
                                                  name="jwstrun-lock-heartbeat")
                    self._beat.start()
                    return
            except PermissionError as exc:
                raise OutputError(
                    f"{self.outdir}: cannot create the lock file ({exc.strerror}). "
                    "Choose an output directory you can write to."
                ) from exc
            info = read_lock(self.path)
            if info is None:
                continue  # released between our attempt and the read
            age = lock_age(self.path)
            if info and lock_is_stale(info, age=age):
                self._remove_stale(info, age)
                continue
            if not info:
                raise OutputError(
                    f"{self.outdir} is locked by {self.path}, which cannot be read. "
                    f"If no jwstrun run is using this directory, delete {self.path} and retry."
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
                f"If that run is dead, delete {self.path}.{elsewhere}"
            )
        raise OutputError(f"{self.outdir}: could not take the lock {self.path}; retry.")

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
        self.acquired = False

    def __enter__(self) -> "OutdirLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
