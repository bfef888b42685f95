"""Shared fixtures of the reliability suite (tests/reliability, docs/reliability.md).

One small simulation (NIRCam NRCB1 SUB160, three dithers, its own CRDS cache)
serves every test; one uninterrupted ``jwstrun image2`` run of it is the
reference every faulted-then-resumed run must reproduce (SCI/ERR/DQ equal).
Runs that are signalled or faulted go through a real ``python -m jwstrun``
subprocess; the rest through Click's CliRunner.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ._helpers import (
    SIM_OPTIONS,
    Run,
    image2_args,
    jwstrun_command,
    session_processes,
    tree_digest,
)

# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def rel_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reliability")


@pytest.fixture(scope="session")
def sim(shared_simulation):
    """NIRCam NRCB1 F200W SUB160, three dithers, and its CRDS cache (made once per test run,
    also for tests/test_sweep.py)."""
    return shared_simulation(**SIM_OPTIONS)


@pytest.fixture(scope="session")
def sim_digest(sim):
    """Checksums of every simulated input (and the CRDS cache) before any test ran."""
    return tree_digest(sim.outdir)


@pytest.fixture(scope="session")
def reference(sim, sim_digest, rel_root):
    """One uninterrupted run: the products every resumed run must reproduce.

    While it runs, a second ``jwstrun image2`` on the same OUTDIR is started
    (tests/reliability/test_concurrency.py checks that it was refused).
    """
    outdir = rel_root / "reference"
    first = Run(image2_args(sim, outdir), rel_root / "logs", name="reference")
    lock = outdir / ".jwstrun.lock"
    assert first.wait_for(lock.exists), first.stderr
    holder = json.loads(lock.read_text())
    second = subprocess.run(
        jwstrun_command(*image2_args(sim, outdir, extra=["--force"])),
        capture_output=True, text=True, timeout=300,
    )
    still_running = first.proc.poll() is None
    code = first.wait()
    assert code == 0, first.stderr[-3000:]
    return {
        "outdir": outdir, "wall": first.wall, "run": first, "holder": holder,
        "second": second, "second_while_running": still_running,
    }


@pytest.fixture(scope="session")
def cal_files(reference):
    return sorted(reference["outdir"].glob("*_cal.fits"))


@pytest.fixture
def no_leftover_processes():
    """Sessions registered here must have no process left when the test ends."""
    sessions: list[int] = []
    yield sessions
    deadline = time.monotonic() + 15
    left = []
    while time.monotonic() < deadline:
        left = [pid for sid in sessions for pid in session_processes(sid)]
        if not left:
            break
        time.sleep(0.2)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"processes outlived their run: {left}"
