"""Round two (issue 21): CRDS per exposure, SIGTERM like Ctrl-C, Ctrl-C at any moment,
CRDS_* variables that cannot be used.

Real ``python -m jwstrun`` subprocesses on the simulated program and its CRDS cache
(the stock crds client); no crds, stpipe or jwst function is replaced.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ._helpers import (
    Run,
    assert_no_traceback,
    assert_nothing_half_written,
    assert_same_products,
    image2_args,
    jwstrun_command,
    read_manifest,
    stop_worker_while_importing,
    worker_pids,
)
from .test_faults import _finished_tasks, _open_logs, _resume, _wait_session_gone


# ----------------------------------------------------------------------------- CRDS
def test_exposure_crds_cannot_match_fails_alone(sim, reference, tmp_path, no_leftover_processes):
    """One exposure dated 1900-01-01 (before every CRDS rule) among three: only its task fails,
    with the CRDS reason in the summary and the manifest; the others run; exit 1."""
    from astropy.io import fits

    inputs = []
    for path in sim.rate_files:
        inputs.append(Path(shutil.copy2(path, tmp_path / path.name)))
    bad = inputs[1]
    fits.setval(bad, "DATE-OBS", value="1900-01-01")
    outdir = tmp_path / "out"
    run = Run(image2_args(sim, outdir, *inputs), tmp_path, name="crds")
    no_leftover_processes.append(run.pid)
    code = run.wait()
    assert code == 1, run.stderr[-3000:]
    assert_no_traceback(run.stderr)
    task_id = "image2-" + bad.name.removesuffix("_rate.fits")
    reason = ("CRDS: no area, distortion, filteroffset, flat, photom reference under "
              "jwst_0001.pmap (NIRCAM NRCB1 F200W CLEAR NRC_IMAGE): No match found. Check the "
              "exposure's header or pin another context with --crds-context.")
    assert f"failed  {task_id}  {reason}" in run.stderr  # the progress line
    assert f"FAILED {task_id}: {reason}" in run.stdout  # the summary
    assert "3 task(s): 2 ok, 0 up to date (skipped), 1 failed" in run.stdout
    assert "Error: 1 of 3 task(s) failed" in run.stderr
    manifest = read_manifest(outdir)
    assert {k: r["status"] for k, r in manifest["tasks"].items()} == {
        "image2-" + p.name.removesuffix("_rate.fits"): "ok" if p != bad else "failed"
        for p in inputs}
    record = manifest["tasks"][task_id]
    assert record["error"] == reason and record["error_type"] == "CrdsError"
    assert manifest["runs"][-1]["counts"] == {"ok": 2, "skipped": 0, "failed": 1}
    assert_nothing_half_written(outdir)
    assert_same_products(outdir, reference["outdir"],
                         names=[p.name.removesuffix("_rate.fits") for p in inputs if p != bad])


# ----------------------------------------------------------------------------- signals
def _assert_stopped_cleanly(run, outdir: Path, code: int, text: str, n_tasks: int) -> None:
    """The parent left with ``code`` after ``text``; nothing of the run is left behind."""
    assert run.wait(120) == code, run.stderr[-3000:]
    assert run.stderr.count(text) == 1, run.stderr[-3000:]
    assert_no_traceback(run.stderr)  # no "leaked semaphore" either
    assert _wait_session_gone(run.pid) == []
    assert not (outdir / ".jwstrun.lock").exists()
    assert not (outdir / ".jwstrun-tmp").exists()
    if (outdir / "jwstrun-manifest.json").exists():  # written once the tasks were planned
        last = read_manifest(outdir)["runs"][-1]
        # not interrupted: every task had finished, the signal came during the summary
        assert last["interrupted"] or last["counts"]["ok"] == n_tasks, last
    assert_nothing_half_written(outdir)


def test_sigterm_is_handled_like_ctrl_c(sim, reference, rel_root, no_leftover_processes):
    """SIGTERM (a scheduler's wall-time kill) to the main process while pipelines run: exit 143
    after "Terminated.", workers stopped, the run recorded as interrupted, lock and temporary
    directory gone, no leaked semaphore; a re-run completes with the reference's products."""
    outdir = rel_root / "round2-sigterm"
    work = rel_root / "round2-sigterm-logs"
    run = Run(image2_args(sim, outdir), work, name="sigterm")
    no_leftover_processes.append(run.pid)
    logs = outdir / "logs"
    assert run.wait_for(lambda: any(_open_logs(p, logs) for p in worker_pids(run.pid))), (
        run.stderr)
    os.kill(run.pid, signal.SIGTERM)
    _assert_stopped_cleanly(run, outdir, 143, "Terminated.", len(sim.rate_files))
    assert read_manifest(outdir)["runs"][-1]["interrupted"] is True
    done = _finished_tasks(outdir)
    summary = _resume(sim, outdir, work)
    assert summary["counts"]["failed"] == 0 and summary["counts"]["skipped"] == len(done)
    assert "Removing stale lock" not in summary["_stderr"]
    assert_same_products(outdir, reference["outdir"])


#: Moments of the fast Ctrl-C test after the run took its lock: seconds into start-up (the
#: parent imports crds and astropy, plans and prefetches while the workers import jwst), then
#: fractions of a one-exposure run (the task, shutdown); each jittered by its own seed.
START_UP_SECONDS = [0.0, 0.3, 0.6, 0.9, 1.2, 1.5]
RUN_FRACTIONS = [0.4, 0.8, 1.0]
#: The default suite's share of those moments, by their index in START_UP_SECONDS +
#: RUN_FRACTIONS (start-up early, middle and late, and mid-task); the slow suite runs all
#: nine. Each moment keeps its seed (its index), so its jitter is the same in both.
FEW_MOMENTS = [0, 2, 4, 7]


@pytest.mark.parametrize("chosen", [
    pytest.param(FEW_MOMENTS, id="few"),
    pytest.param(range(len(START_UP_SECONDS) + len(RUN_FRACTIONS)), id="all",
                 marks=pytest.mark.slow),
])
def test_ctrl_c_twice_at_many_moments(sim, reference, rel_root, no_leftover_processes, chosen):
    """Ctrl-C twice in quick succession (SIGINT to the process group, then again 0-50 ms later)
    at moments spread over a one-exposure run, start-up and shutdown included: always exit 130
    after one "Interrupted.", never death by the signal, nothing left behind."""
    one = sim.rate_files[:1]
    span = reference["wall"]  # three exposures on two workers: about one exposure's run
    moments = START_UP_SECONDS + [f * span for f in RUN_FRACTIONS]
    codes = []
    for seed in chosen:
        moment = moments[seed]
        rng = random.Random(seed)
        outdir = rel_root / f"round2-ctrl-c-{len(chosen)}-{seed}"
        run = Run(image2_args(sim, outdir, *one), rel_root / "round2-ctrl-c-logs",
                  name=f"ctrl-c-{len(chosen)}-{seed}")
        no_leftover_processes.append(run.pid)
        assert run.wait_for((outdir / ".jwstrun.lock").exists), run.stderr
        time.sleep(max(0.0, moment + rng.uniform(-0.1, 0.1)))
        for _ in range(2):
            if run.proc.poll() is None:
                os.killpg(run.pid, signal.SIGINT)
            time.sleep(rng.uniform(0, 0.05))
        code = run.wait(120)
        codes.append(code)
        if code == 0:  # finished before the signal
            continue
        _assert_stopped_cleanly(run, outdir, 130, "Interrupted.", len(one))
    # every start-up moment is interrupted (a task-time one may come after the run ended)
    assert codes.count(130) >= sum(s < len(START_UP_SECONDS) for s in chosen), codes


# ----------------------------------------------------------------------------- CRDS settings
BAD_URL = ("is not a usable URL ({}). Set it to a CRDS server such as https://jwst-crds.stsci.edu, "
           "or unset it to work from the local cache (CRDS_PATH or --crds-path).")
BAD_TIMEOUT = ("is not a whole number of seconds. Set it to a positive integer such as 30, or "
               "unset it.")


@pytest.mark.parametrize("name, value, in_file, message", [
    ("CRDS_SERVER_URL", "http://[::1", False,
     "CRDS_SERVER_URL (in the environment) " + BAD_URL.format("Invalid IPv6 URL")),
    ("CRDS_SERVER_URL", "https://alice:hunter2pw@[::1", False,
     "CRDS_SERVER_URL (in the environment) " + BAD_URL.format("Invalid IPv6 URL")),
    ("CRDS_SERVER_URL", "https://jwst-crds.stsci.edu:99999", True,
     "CRDS_SERVER_URL (in {env_file}) " + BAD_URL.format("Port out of range 0-65535")),
    ("CRDS_CLIENT_TIMEOUT_SECONDS", "abc", False,
     "CRDS_CLIENT_TIMEOUT_SECONDS='abc' (in the environment) " + BAD_TIMEOUT),
    ("CRDS_CLIENT_TIMEOUT_SECONDS", "2.5", True,
     "CRDS_CLIENT_TIMEOUT_SECONDS='2.5' (in {env_file}) " + BAD_TIMEOUT),
])
def test_unusable_crds_variable_is_refused(sim, tmp_path, name, value, in_file, message):
    """A CRDS_SERVER_URL that does not parse or a CRDS_CLIENT_TIMEOUT_SECONDS that is not a
    number, in the environment or a --crds-env file: one Error line naming the variable, where
    it was set and the fix (never the URL, which may hold a password), exit 1, no OUTDIR."""
    from jwstrun.refs import read_env_file

    settings = {**read_env_file(sim.env_file), name: value}
    env = dict(os.environ)
    extra = []
    if in_file:
        env_file = tmp_path / "crds.env"
        env_file.write_text("".join(f"export {k}='{v}'\n" for k, v in settings.items()))
        extra = ["--crds-env", env_file]
    else:
        env.update(settings)
    outdir = tmp_path / "out"
    args = ["image2", sim.rate_files[0], "-o", outdir, "-j", "1", "--no-progress", *extra]
    proc = subprocess.run(jwstrun_command(*args), env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1, proc.stderr
    expected = "Error: " + message.format(env_file=tmp_path / "crds.env")
    assert proc.stderr.splitlines() == [expected]
    assert "hunter2pw" not in proc.stdout + proc.stderr
    assert not outdir.exists()


def test_worker_sigterm_inside_a_callback_still_ends_it(tmp_path):
    """Ctrl-C while a pool worker imports (the parent's shutdown sends it SIGTERM) at the moment
    a weakref callback of the import runs, where Python ignores exceptions: the worker still
    leaves at once, quietly, with 143, instead of printing "Exception ignored" and running on
    until it is killed 10 s later (which leaks a semaphore)."""
    (tmp_path / "slow_callback_module.py").write_text(
        "import pathlib, time, weakref\n"
        "class Thing: pass\n"
        "def _callback(_ref):\n"
        "    pathlib.Path(__file__).with_suffix('.inside').touch()\n"
        "    time.sleep(2)\n"
        "thing = Thing()\n"
        "ref = weakref.ref(thing, _callback)\n"
        "del thing\n"
    )
    stop_worker_while_importing(tmp_path, "slow_callback_module")
