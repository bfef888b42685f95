"""Faults in the middle of real runs (``python -m jwstrun image2 ... -j 2`` subprocesses).

After each fault: no file in OUTDIR looks finished without being complete and valid
(every product validates, the manifest is whole and matches the files), no process
outlives the run, and a plain re-run completes the rest and produces the same products
(SCI/ERR/DQ, WHT/CON equal) as the uninterrupted reference run.
"""

from __future__ import annotations

import errno
import json
import os
import random
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest

from jwstrun.executors import LocalExecutor

from . import crash_tasks
from ._helpers import (
    Run,
    assert_no_traceback,
    assert_nothing_half_written,
    assert_same_products,
    can_drop_dac_override,
    copy_tree_linked,
    drop_dac_override,
    image2_args,
    jwstrun_command,
    mounted_tmpfs,
    read_manifest,
    session_processes,
    worker_pids,
)

#: Seeds of the random moments; more with -m slow (JWSTRUN_SIGNAL_SEEDS in all, default 4).
SEEDS = [pytest.param(11), *(pytest.param(s, marks=pytest.mark.slow) for s in
                             range(12, 11 + int(os.environ.get("JWSTRUN_SIGNAL_SEEDS", 4))))]


def _wait_session_gone(sid: int, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = session_processes(sid)
        if not left:
            return []
        time.sleep(0.1)
    return session_processes(sid)


def _resume(sim, outdir: Path, workdir: Path, *inputs, name="resume") -> dict:
    """Re-run the same command to completion; return its JSON summary (and stderr)."""
    run = Run(image2_args(sim, outdir, *inputs, extra=["--json"]), workdir, name=name)
    code = run.wait()
    assert code == 0, run.stderr[-3000:]
    assert_no_traceback(run.stderr)
    summary = json.loads(run.stdout)
    summary["_stderr"] = run.stderr
    assert not (outdir / ".jwstrun-tmp").exists()
    assert not (outdir / ".jwstrun.lock").exists()
    return summary


def _finished_tasks(outdir: Path) -> set[str]:
    """Tasks recorded ok whose products are all still there (what a re-run may skip)."""
    if not (outdir / "jwstrun-manifest.json").exists():
        return set()
    return {
        task_id for task_id, record in read_manifest(outdir)["tasks"].items()
        if record["status"] == "ok" and all((outdir / n).exists() for n in record["outputs"])
    }


def _open_logs(pid: int, logs: Path) -> bool:
    """True when process ``pid`` has a file under ``logs`` open (a worker inside a task)."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd).startswith(str(logs)):
                return True
        except OSError:
            continue
    return False


# ----------------------------------------------------------------------------- signals
@pytest.mark.parametrize("seed", SEEDS)
def test_ctrl_c_then_kill_9_then_resume(sim, reference, rel_root, seed, no_leftover_processes):
    """Ctrl-C (SIGINT to the process group) and kill -9 (SIGKILL to the main process) at
    seeded random moments of the same OUTDIR's runs, then a plain re-run."""
    rng = random.Random(seed)
    span = 0.7 * reference["wall"]
    outdir = rel_root / f"signals-{seed}"
    work = rel_root / f"signals-{seed}-logs"
    lock = outdir / ".jwstrun.lock"

    # 1. Ctrl-C: the terminal sends SIGINT to every process of the foreground group.
    run = Run(image2_args(sim, outdir), work, name="sigint")
    no_leftover_processes.append(run.pid)
    assert run.wait_for(lock.exists), run.stderr
    time.sleep(rng.uniform(0, span))
    if run.proc.poll() is None:
        os.killpg(run.pid, signal.SIGINT)
    code = run.wait(120)
    assert code in (130, 0), run.stderr[-3000:]
    if code == 130:
        assert "Interrupted." in run.stderr
        if (outdir / "jwstrun-manifest.json").exists():  # written once the tasks were planned
            last = read_manifest(outdir)["runs"][-1]
            # not interrupted: every task had finished, the signal came during the summary
            assert last["interrupted"] or last["counts"]["ok"] == len(sim.rate_files), last
    assert_no_traceback(run.stderr)
    assert _wait_session_gone(run.pid) == []
    assert not lock.exists(), "Ctrl-C must release the lock"
    assert_nothing_half_written(outdir)
    done_after_sigint = _finished_tasks(outdir)

    # 2. kill -9 of the main process only: its workers must die with it.
    run = Run(image2_args(sim, outdir), work, name="sigkill")
    no_leftover_processes.append(run.pid)
    assert run.wait_for(lock.exists), run.stderr
    time.sleep(rng.uniform(0, span))
    killed = run.proc.poll() is None
    if killed:
        os.kill(run.pid, signal.SIGKILL)
    code = run.wait(120)
    assert code in (-signal.SIGKILL, 0), run.stderr[-3000:]
    assert _wait_session_gone(run.pid) == [], "workers outlived their killed parent"
    assert_nothing_half_written(outdir)
    done_after_kill = _finished_tasks(outdir)
    assert done_after_sigint <= done_after_kill
    stale = lock.exists()

    # 3. The same command again: takes over the stale lock, skips what is finished.
    summary = _resume(sim, outdir, work)
    counts = summary["counts"]
    assert counts["failed"] == 0 and counts["total"] == len(sim.rate_files)
    assert counts["skipped"] == len(done_after_kill)
    if stale:
        assert "Removing stale lock" in summary["_stderr"]
    assert_nothing_half_written(outdir)
    assert_same_products(outdir, reference["outdir"])
    print(f"seed {seed}: finished after Ctrl-C {len(done_after_sigint)}, after kill -9 "
          f"{len(done_after_kill)}, stale lock {stale}")


def test_worker_killed_mid_task(sim, reference, rel_root, no_leftover_processes):
    """SIGKILL one pool worker while it runs a pipeline (what the OOM killer does)."""
    outdir = rel_root / "worker-killed"
    logs = outdir / "logs"
    run = Run(image2_args(sim, outdir), rel_root / "worker-killed-logs", name="run")
    no_leftover_processes.append(run.pid)
    busy: list[int] = []

    def a_worker_is_busy():
        busy[:] = [pid for pid in worker_pids(run.pid) if _open_logs(pid, logs)]
        return bool(busy)

    assert run.wait_for(a_worker_is_busy), run.stderr
    os.kill(busy[0], signal.SIGKILL)
    code = run.wait()
    assert code == 1, run.stderr[-3000:]
    assert_no_traceback(run.stderr, worker_killed=True)
    assert "worker process was killed by SIGKILL (out of memory? try fewer jobs with -j)" in (
        run.stderr
    )
    tasks = read_manifest(outdir)["tasks"]
    lost = [t for t in tasks.values() if t["status"] == "failed"]
    assert len(lost) == 1 and lost[0]["error_type"] == "WorkerLost", tasks
    assert sum(t["status"] == "ok" for t in tasks.values()) == len(sim.rate_files) - 1
    assert_nothing_half_written(outdir)
    summary = _resume(sim, outdir, rel_root / "worker-killed-logs")
    assert summary["counts"]["ok"] == 1 and summary["counts"]["skipped"] == 2
    assert_same_products(outdir, reference["outdir"])


def test_crashing_tasks_through_the_executor_api():
    """os._exit, SIGSEGV and abort inside tasks: only those tasks fail, with the reason;
    a task's own exception or sys.exit is reported; the pool carries on and shuts down."""
    events = []
    executor = LocalExecutor(2, crash_tasks.run_crash_task, crash_tasks.lost_result,
                             on_event=events.append, max_tasks_per_child=0)
    plan = ["ok", "exit", "ok", "segv", "abort", "raise", "systemexit", "ok", "ok"]
    with executor:
        for i, action in enumerate(plan):
            executor.submit(crash_tasks.CrashTask(f"t{i}-{action}", action, 0.05))
        results = {r["task_id"]: r for r in executor.as_completed()}
    assert sorted(results) == sorted(f"t{i}-{a}" for i, a in enumerate(plan))
    assert {k for k, r in results.items() if r["status"] == "ok"} == {
        "t0-ok", "t2-ok", "t7-ok", "t8-ok"}
    assert results["t1-exit"]["error"] == "worker process exited unexpectedly with code 3"
    assert results["t3-segv"]["error"] == "worker process was killed by SIGSEGV"
    assert results["t4-abort"]["error"] == "worker process was killed by SIGABRT"
    assert results["t5-raise"]["error"] == "RuntimeError: task t5-raise broke"
    assert results["t6-systemexit"]["error"] == "SystemExit: 5"
    assert sorted(e.task_id for e in events if e.kind == "lost") == [
        "t1-exit", "t3-segv", "t4-abort"]
    started = {e.pid for e in events if e.kind == "ready"}
    # Three workers died, each running a crash task, and a fourth ran the last tasks; the
    # replacement started after the last crash may be stopped before it reports ready
    # when the surviving worker has already run the rest (the pool is shut down then).
    assert len(started) >= 4
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# ----------------------------------------------------------------------------- disk full
@pytest.fixture
def small_filesystem(tmp_path):
    """A 2 MB tmpfs (room for one exposure's products, not two); None where mount is refused."""
    with mounted_tmpfs(tmp_path / "fs", "2m") as mount:
        yield mount


def _limit_file_size():
    # Substitute for a full disk where tmpfs cannot be mounted: writes beyond 700 kB
    # fail with EFBIG (SIGXFSZ ignored so the write returns the error instead).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (700_000, 700_000))


def test_disk_full(sim, reference, small_filesystem, tmp_path, no_leftover_processes):
    """ENOSPC on a 2 MB tmpfs: finished tasks stay valid, the rest fail saying the disk is full;
    after space is freed a re-run completes them (fallback: RLIMIT_FSIZE, EFBIG)."""
    inputs = sim.rate_files[:2]
    if small_filesystem is not None:
        outdir = small_filesystem / "out"
        run = Run(image2_args(sim, outdir, *inputs), tmp_path, name="full")
    else:
        outdir = tmp_path / "out"
        run = Run(image2_args(sim, outdir, *inputs), tmp_path, name="full",
                  preexec_fn=_limit_file_size)
    no_leftover_processes.append(run.pid)
    code = run.wait()
    assert code == 1, run.stderr[-3000:]
    assert_no_traceback(run.stderr)
    if small_filesystem is not None:
        assert "disk full while writing" in run.stderr or "the disk is full" in run.stderr
    else:
        assert os.strerror(errno.EFBIG) in run.stderr
    assert_nothing_half_written(outdir)
    if small_filesystem is not None:
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_filesystem)], check=True)
    summary = _resume(sim, outdir, tmp_path, *inputs)
    assert summary["counts"]["failed"] == 0
    assert_same_products(outdir, reference["outdir"],
                         names=[p.name.removesuffix("_rate.fits") for p in inputs])


# ----------------------------------------------------------------------------- unwritable
@pytest.mark.skipif(not can_drop_dac_override(), reason="cannot drop CAP_DAC_OVERRIDE here")
def test_outdir_becomes_unwritable(sim, reference, tmp_path, no_leftover_processes):
    """chmod -R a-w OUTDIR while a task runs.  The run is a root process without
    CAP_DAC_OVERRIDE (root otherwise ignores file modes): it stops with a clear error,
    leaves nothing half-written, and a re-run after chmod u+w completes."""
    outdir = tmp_path / "out"
    logs = outdir / "logs"
    inputs = sim.rate_files[:2]
    run = Run(image2_args(sim, outdir, *inputs), tmp_path, name="ro",
              preexec_fn=drop_dac_override)
    no_leftover_processes.append(run.pid)
    assert run.wait_for(lambda: any(_open_logs(p, logs) for p in worker_pids(run.pid))), (
        run.stderr)
    subprocess.run(["chmod", "-R", "a-w", str(outdir)], check=True)
    try:
        code = run.wait()
        assert code == 1, run.stderr[-3000:]
        assert_no_traceback(run.stderr)
        # the parent stops at the first manifest write it cannot do, and says why
        assert (f"Error: {outdir}/jwstrun-manifest.json: cannot write the run manifest "
                "(Permission denied). Free space or restore write permission") in run.stderr
        assert_nothing_half_written(outdir)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(outdir)], check=True)
    summary = _resume(sim, outdir, tmp_path, *inputs)
    assert summary["counts"]["failed"] == 0
    assert_same_products(outdir, reference["outdir"],
                         names=[p.name.removesuffix("_rate.fits") for p in inputs])


# ----------------------------------------------------------------------------- CRDS cache
def test_crds_cache_missing_a_reference(sim, reference, tmp_path, no_leftover_processes):
    """A CRDS cache that lost a reference file, with an unreachable (serverless) server:
    refused at prefetch, before any pipeline runs, naming the file and the fix; the
    password in CRDS_SERVER_URL is never shown.  After the file is back, a re-run works."""
    from jwstrun.refs import SERVERLESS_URL, read_env_file

    cache = copy_tree_linked(Path(sim.crds_path), tmp_path / "crds_cache")
    (flat,) = cache.glob("references/jwst/nircam/*_flat_*.fits")
    flat.unlink()
    env = dict(os.environ)
    env.update(read_env_file(sim.env_file))
    env["CRDS_PATH"] = str(cache)
    env["CRDS_SERVER_URL"] = SERVERLESS_URL.replace("://", "://alice:hunter2pw@")
    outdir = tmp_path / "out"
    args = ["image2", sim.rate_files[0], "-o", outdir, "-j", "2", "--no-progress"]
    run = Run(args, tmp_path, env=env, name="missing")
    no_leftover_processes.append(run.pid)
    code = run.wait()
    assert code == 1, run.stderr
    assert_no_traceback(run.stderr)
    assert run.stderr[run.stderr.index("Error: "):] == (
        f"Error: 1 reference file(s) are not in the CRDS cache {cache} and the CRDS server "
        "cannot be reached (https://***@jwst-serverless-mode.stsci.edu (serverless mode: crds "
        f"never contacts a server)):\n  {flat.name} (flat; needed by {sim.rate_files[0]})\n"
        "To fix: run `jwstrun refs prefetch` with the same inputs and CRDS_SERVER_URL="
        "https://jwst-crds.stsci.edu on a node with network, or set CRDS_PATH to a cache that "
        "has them.\n"
    )
    assert "hunter2pw" not in run.stderr + run.stdout
    assert SERVERLESS_URL.replace("://", "://***@") in run.stderr
    assert_nothing_half_written(outdir)
    assert not list(outdir.glob("*.fits")) and not (outdir / "logs").exists()
    assert not (outdir / ".jwstrun.lock").exists()

    os.link(Path(sim.crds_path) / flat.relative_to(cache), flat)
    rerun = subprocess.run(jwstrun_command(*args), env=env, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_products(outdir, reference["outdir"],
                         names=[sim.rate_files[0].name.removesuffix("_rate.fits")])
