"""Recovery, round two (issue 21): a stale lock taken over by several starters at once has
exactly one winner; a hand-edited manifest of the wrong shape is set aside and rebuilt;
read-only OUTDIRs, full disks and refused runs leave clear errors and no debris."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

from jwstrun.locking import LOCK_NAME

RACE_TRIALS = 800
RACE_PROCESSES = 4


def _dead_pid() -> int:
    """A pid of this host whose process has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _race_worker(root: str, trials: int, barrier, results) -> None:
    """One starter: in each trial directory, take the lock at the barrier, hold it until
    every starter has tried, then release it."""
    from jwstrun.errors import OutputError
    from jwstrun.locking import OutdirLock

    for trial in range(trials):
        lock = OutdirLock(Path(root) / f"t{trial}", command="racer", heartbeat=3600)
        barrier.wait()
        try:
            lock.acquire()
            outcome = "WON"
        except OutputError as exc:
            outcome = f"REFUSED {exc}"
        barrier.wait()  # the winner holds the lock until every starter has tried
        lock.release()
        results.put((trial, os.getpid(), outcome))


def test_stale_lock_takeover_race_has_one_winner(tmp_path):
    """800 times, 4 processes released at a barrier take over the same stale lock (a dead pid
    of this host): exactly one wins each time, the others are refused naming it."""
    dead = _dead_pid()
    stale = {"pid": dead, "host": socket.gethostname(), "started": "2026-01-01T00:00:00",
             "command": "jwstrun image2 killed"}
    for trial in range(RACE_TRIALS):
        (tmp_path / f"t{trial}").mkdir()
        (tmp_path / f"t{trial}" / LOCK_NAME).write_text(json.dumps(stale))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(RACE_PROCESSES)
    results = context.Queue()
    procs = [context.Process(target=_race_worker, args=(str(tmp_path), RACE_TRIALS, barrier,
                                                         results))
             for _ in range(RACE_PROCESSES)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in range(RACE_TRIALS * RACE_PROCESSES)]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    by_trial: dict[int, list] = {}
    for trial, pid, outcome in outcomes:
        by_trial.setdefault(trial, []).append((pid, outcome))
    double = {t: o for t, o in by_trial.items() if sum(x == "WON" for _p, x in o) != 1}
    assert not double, f"{len(double)} of {RACE_TRIALS} trials without exactly one winner: {double}"
    for trial, entries in by_trial.items():
        winner = next(pid for pid, outcome in entries if outcome == "WON")
        for _pid, outcome in entries:
            if outcome != "WON":
                assert f"in use by another jwstrun run (pid {winner} on " in outcome, outcome
        assert not list((tmp_path / f"t{trial}").iterdir())  # released, nothing left behind
