"""Shards sharing one OUTDIR: the shard spec, which tasks a shard takes, task locks, the
manifest merged under concurrent writers, and the refusals between whole runs and shards.

No pipeline runs here (cheap); tests/test_slurm.py runs shards of image2 as a real SLURM
job array.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from jwstrun.cli import cli
from jwstrun.errors import ConfigError, OutputError
from jwstrun.runner.shard import Shard, parse_shard

USAGE = "give K/N with 1 <= K <= N, e.g. --shard 2/4, or --shard slurm in a SLURM array job."


@pytest.mark.parametrize(("spec", "message"), [
    ("5/4", f"Error: --shard 5/4: K must be between 1 and 4; {USAGE}"),
    ("0/0", f"Error: --shard 0/0: N must be at least 1; {USAGE}"),
    ("0/4", f"Error: --shard 0/4: K must be between 1 and 4; {USAGE}"),
    ("two", f"Error: --shard two: not a shard; {USAGE}"),
    ("slurm", "Error: --shard slurm: SLURM_ARRAY_TASK_ID is not set, so this is not a SLURM "
     "array task. Submit the script with sbatch --array=1-N, or give --shard K/N."),
])
def test_bad_shard_is_one_error_line_and_nothing_is_written(spec, message, tmp_path,
                                                            monkeypatch):
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    (tmp_path / "in_rate.fits").write_bytes(b"")
    outdir = tmp_path / "out"
    result = CliRunner().invoke(cli, ["image2", str(tmp_path / "in_rate.fits"), "-o",
                                      str(outdir), "--shard", spec])
    assert result.exit_code == 1
    assert result.output == message + "\n"
    assert not outdir.exists()


@pytest.mark.parametrize(("env", "expected"), [
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "3",
      "SLURM_ARRAY_TASK_COUNT": "4"}, Shard(1, 4)),
    ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "4",
      "SLURM_ARRAY_TASK_COUNT": "4"}, Shard(4, 4)),
    ({"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_MIN": "2", "SLURM_ARRAY_TASK_MAX": "8",
      "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_STEP": "2"}, Shard(3, 4)),
    # one task of an array submitted again alone (sbatch --array=2): the whole plan
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "2", "SLURM_ARRAY_TASK_MAX": "2",
      "SLURM_ARRAY_TASK_COUNT": "1"}, Shard(1, 1)),
])
def test_shard_from_the_slurm_array_task(env, expected):
    assert parse_shard("slurm", env) == expected


def test_an_array_with_gaps_is_refused():
    env = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "7",
           "SLURM_ARRAY_TASK_COUNT": "3"}
    with pytest.raises(ConfigError) as info:
        parse_shard("slurm", env)
    assert str(info.value) == (
        "shard='slurm': the array's task ids are not a range (1 to 7, 3 tasks); submit with "
        "sbatch --array=1-N (optionally %M to limit how many run at once).")


def test_shards_split_the_tasks_once_each_whatever_the_order():
    ids = [f"image2-jw0{i:03d}" for i in range(11)]
    parts = [Shard(k, 4).select(list(reversed(ids)), key=str) for k in range(1, 5)]
    assert sorted(sum(parts, [])) == sorted(ids)  # every task once
    assert [len(p) for p in parts] == [3, 3, 3, 2]  # balanced
    assert parts == [Shard(k, 4).select(ids, key=str) for k in range(1, 5)]  # stable
    owner = Shard(1, 4).of(ids, key=str)
    assert all(owner[i] == k for k, part in enumerate(parts, 1) for i in part)


_WRITER = """
import sys
from jwstrun.manifest import Manifest
outdir, shard = sys.argv[1], int(sys.argv[2])
manifest = Manifest.load(outdir, shared=True)
for i in range(25):
    manifest.record({"task_id": f"t{shard}-{i}", "status": "ok"})
manifest.add_run({"command": f"shard {shard}", "shard": f"{shard}/4"})
"""


def test_four_concurrent_shards_lose_no_manifest_record(tmp_path):
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(k)])
               for k in range(1, 5)]
    assert [w.wait(timeout=60) for w in writers] == [0] * 4
    data = json.loads((tmp_path / "jwstrun-manifest.json").read_text())
    assert sorted(data["tasks"]) == sorted(f"t{k}-{i}" for k in range(1, 5) for i in range(25))
    assert sorted(r["shard"] for r in data["runs"]) == ["1/4", "2/4", "3/4", "4/4"]


def test_task_locks_leave_live_claims_and_take_over_dead_ones(tmp_path):
    from jwstrun.locking import LOCKS_DIRNAME, TaskLocks

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        other = TaskLocks(tmp_path, {"pid": sleeper.pid, "host": os.uname().nodename,
                                     "shard": "2/4"})
        # a lock written as the live process 'sleeper' would have written it
        other.directory.mkdir()
        other.path("t-live").write_text(json.dumps({"pid": sleeper.pid, "shard": "2/4",
                                                     "host": os.uname().nodename}))
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout.strip()
        other.path("t-dead").write_text(json.dumps({"pid": int(dead), "shard": "3/4",
                                                     "host": os.uname().nodename}))
        mine = TaskLocks(tmp_path, {"pid": os.getpid(), "host": os.uname().nodename,
                                    "shard": "1/4"})
        assert mine.claim("t-live")["shard"] == "2/4"
        assert mine.claim("t-dead") is None
        assert mine.claim("t-new") is None
        assert mine.held == {"t-dead", "t-new"}
        mine.release("t-new")
        assert not mine.path("t-new").exists()
        mine.close()
        assert sorted(p.name for p in (tmp_path / LOCKS_DIRNAME).iterdir()) == ["t-live.lock"]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_whole_runs_and_shards_refuse_each_other(tmp_path):
    from jwstrun.locking import OutdirLock

    with OutdirLock(tmp_path, command="jwstrun image2 a", shard="1/4"):
        with OutdirLock(tmp_path, command="jwstrun image2 b", shard="2/4"):
            with pytest.raises(OutputError) as info:
                OutdirLock(tmp_path, command="jwstrun image2 whole").acquire()
    assert str(info.value).startswith(f"{tmp_path} is in use by jwstrun shard runs (shard 1/4: ")
    assert str(info.value).endswith(
        f"Wait for them to finish ('jwstrun status {tmp_path}' shows them), or run this one "
        "with --shard too.")
    with OutdirLock(tmp_path, command="jwstrun image2 whole"):
        with pytest.raises(OutputError) as info:
            OutdirLock(tmp_path, command="jwstrun image2 a", shard="1/4").acquire()
    assert str(info.value).startswith(f"{tmp_path} is in use by another jwstrun run (pid ")
    assert not (tmp_path / ".jwstrun-locks").exists()
    assert not (tmp_path / ".jwstrun.lock").exists()


def test_status_of_an_outdir_without_a_manifest(tmp_path):
    result = CliRunner().invoke(cli, ["status", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {tmp_path}: no jwstrun-manifest.json here, so no jwstrun run has recorded "
        "anything yet. Give the -o OUTDIR of a jwstrun image2/image3 run.\n")


def test_status_says_done_failed_running_and_missing(tmp_path):
    """Each state from what OUTDIR holds: records, products, the plan, live claims."""
    from jwstrun.locking import LOCK_NAME, TaskLocks
    from jwstrun.manifest import Manifest
    from jwstrun.runner.status import outdir_status

    manifest = Manifest(tmp_path, shared=True)
    manifest.set_plan("image2", {"t1": 1, "t2": 2, "t3": 1, "t4": 2, "t5": 1}, 2)
    (tmp_path / "a_cal.fits").write_bytes(b"x")
    manifest.record({"task_id": "t1", "status": "ok", "outputs": ["a_cal.fits"], "end": 1.0})
    manifest.record({"task_id": "t2", "status": "failed", "error": "t2: bad", "end": 1.0})
    manifest.record({"task_id": "t3", "status": "ok", "outputs": ["gone_cal.fits"]})
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        locks = TaskLocks(tmp_path, {})
        locks.directory.mkdir(exist_ok=True)
        locks.path("t4").write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename,
                                                 "shard": "2/2", "batch_job_id": "7_2"}))
        status = outdir_status(tmp_path)
        states = {t.task_id: (t.state, t.shard, t.detail) for t in status.tasks}
        assert states == {
            "t1": ("done", 1, None),
            "t2": ("failed", 2, "t2: bad"),
            "t3": ("missing", 1, "products gone: gone_cal.fits"),
            "t4": ("running", 2, f"shard 2/2, pid {sleeper.pid} on {os.uname().nodename}, "
                   "job 7_2"),
            "t5": ("missing", 1, None),
        }
        assert status.counts == {"done": 1, "failed": 1, "running": 1, "missing": 2}
        assert not status.complete
        result = CliRunner().invoke(cli, ["status", str(tmp_path)])
        assert result.exit_code == 0
        assert result.output.rstrip().endswith(
            "5 task(s): 1 done, 1 failed, 1 running, 2 missing")
        # a whole run holding OUTDIR that planned the tasks: those it has not recorded
        # since it started are running
        (tmp_path / LOCK_NAME).write_text(json.dumps({
            "pid": os.getpid(), "host": os.uname().nodename,
            "started": "2030-01-01T00:00:00+0000", "command": "jwstrun image2"}))
        states = {t.task_id: t.state for t in outdir_status(tmp_path).tasks}
        assert states["t1"] == states["t5"] == "running"
    finally:
        sleeper.kill()
        sleeper.wait()
