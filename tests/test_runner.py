"""Runner building blocks: lock, manifest, fingerprints, worker pool, input checks.

The end-to-end pipeline runs (real calwebb_image2/image3 on simulated data) are
in tests/test_cli_run.py; everything here runs in seconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import pool_tasks
from jwstrun._system import default_jobs
from jwstrun.errors import InputError, OutputError
from jwstrun.executors import LocalExecutor
from jwstrun.locking import LOCK_NAME, OutdirLock, lock_age, lock_is_stale, read_lock
from jwstrun.manifest import MANIFEST_NAME, Manifest, write_json_atomic
from jwstrun.runner import (
    can_skip,
    compute_fingerprint,
    file_sha256,
    plan_image2,
    prepare_outdir,
    stage_inputs,
)
from jwstrun.runner.plan import check_maximum_cores
from jwstrun.stages import get_stage
from reliability._helpers import stop_worker_while_importing


def write_fits(path: Path, **cards) -> Path:
    """A minimal primary-header-only FITS file with the given cards."""
    from astropy.io import fits

    header = fits.Header()
    header["DATAMODL"] = cards.pop("DATAMODL", "ImageModel")
    header["INSTRUME"] = "NIRCAM"
    header["EXP_TYPE"] = "NRC_IMAGE"
    for key, value in cards.items():
        header[key] = value
    fits.PrimaryHDU(header=header).writeto(path)
    return path


# --------------------------------------------------------------------------- lock
def test_lock_refuses_second_holder_and_names_it(tmp_path):
    with OutdirLock(tmp_path, command="jwstrun image2 a"):
        info = read_lock(tmp_path / LOCK_NAME)
        assert info["pid"] == os.getpid()
        assert info["host"] == socket.gethostname()
        with pytest.raises(OutputError) as err:
            OutdirLock(tmp_path, command="second").acquire()
        text = str(err.value)
        assert f"pid {os.getpid()}" in text
        assert "jwstrun image2 a" in text
        assert "use another -o OUTDIR" in text
    assert not (tmp_path / LOCK_NAME).exists()


def test_stale_lock_of_dead_process_is_taken_over(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    (tmp_path / LOCK_NAME).write_text(
        json.dumps({"pid": proc.pid, "host": socket.gethostname(), "command": "old"})
    )
    assert lock_is_stale(read_lock(tmp_path / LOCK_NAME))
    with OutdirLock(tmp_path) as lock:
        assert read_lock(lock.path)["pid"] == os.getpid()


def test_lock_from_other_host_or_reused_pid(tmp_path):
    other = {"pid": os.getpid(), "host": "elsewhere.example", "command": "x"}
    assert not lock_is_stale(other)
    reused = {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": "1"}
    assert lock_is_stale(reused)  # same pid, different start time: pid was recycled
    (tmp_path / LOCK_NAME).write_text(json.dumps(other))
    with pytest.raises(OutputError, match="in use by another jwstrun run"):
        OutdirLock(tmp_path).acquire()


def test_lock_from_another_host_is_taken_over_after_its_heartbeat_stops(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("JWSTRUN_LOCK_STALE_SECONDS", raising=False)
    path = tmp_path / LOCK_NAME
    path.write_text(json.dumps({"pid": 1234, "host": "node17.example", "command": "jwstrun image2 x"}))
    with pytest.raises(OutputError, match=r"last heartbeat was \d+ s ago.*600 s"):
        OutdirLock(tmp_path).acquire()
    assert path.exists()
    old = time.time() - 601
    os.utime(path, (old, old))  # the job on node17 died ten minutes ago
    with caplog.at_level("WARNING", logger="jwstrun.locking"), OutdirLock(tmp_path) as lock:
        assert read_lock(lock.path)["pid"] == os.getpid()
    assert "node17.example, silent for 10 minutes" in caplog.text
    monkeypatch.setenv("JWSTRUN_LOCK_STALE_SECONDS", "3600")
    path.write_text(json.dumps({"pid": 1234, "host": "node17.example"}))
    os.utime(path, (old, old))
    with pytest.raises(OutputError, match="in use by another jwstrun run"):
        OutdirLock(tmp_path).acquire()


def test_the_holder_keeps_its_lock_fresh(tmp_path):
    with OutdirLock(tmp_path, heartbeat=0.05) as lock:
        old = time.time() - 1000
        os.utime(lock.path, (old, old))
        deadline = time.time() + 5
        while lock_age(lock.path) > 500 and time.time() < deadline:
            time.sleep(0.02)
        assert lock_age(lock.path) < 5
        assert read_lock(lock.path)["heartbeat_s"] == 0.05
    assert not lock.path.exists()
    assert not any(t.name == "jwstrun-lock-heartbeat" for t in threading.enumerate())


def test_corrupt_lock_is_not_removed_silently(tmp_path):
    (tmp_path / LOCK_NAME).write_text("{not json")
    with pytest.raises(OutputError, match="cannot be read"):
        OutdirLock(tmp_path).acquire()
    assert (tmp_path / LOCK_NAME).exists()


# --------------------------------------------------------------------------- manifest
def test_manifest_roundtrip_and_replace(tmp_path):
    manifest = Manifest.load(tmp_path)
    manifest.record({"task_id": "image2-a", "status": "failed"})
    manifest.record({"task_id": "image2-a", "status": "ok", "outputs": ["a_cal.fits"]})
    manifest.add_run({"command": "x"})
    again = Manifest.load(tmp_path)
    assert again.get("image2-a")["status"] == "ok"
    assert len(again.tasks) == 1
    assert again.data["runs"] == [{"command": "x"}]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_manifest_is_set_aside(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text('{"tasks": {"a": ')
    manifest = Manifest.load(tmp_path)
    assert manifest.tasks == {}
    assert len(list(tmp_path.glob(f"{MANIFEST_NAME}.corrupt-*"))) == 1


def test_atomic_write_keeps_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "m.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": 1, "b": object.__new__(type("X", (), {"__str__": None}))})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_task_record_is_the_one_schema_written_and_read(tmp_path):
    """The runner writes TaskRecord.to_dict(); check_manifest checks records against the
    same dataclass; read_manifest gives the report TaskRecords back. Records of an older
    jwstrun (fewer fields) and of a newer one (unknown fields) are read too."""
    from jwstrun.manifest import TaskRecord, TaskResult, check_manifest, read_manifest

    result = TaskResult("image2-a", "ok", outputs=["a_cal.fits"], start=1.0e9, end=1.0e9 + 5,
                        step_times={"flat_field": 1.5}, step_status={"flat_field": "done"})
    record = TaskRecord.from_result(result, pipeline="image2", pipeline_class="Image2Pipeline",
                                    input="a_rate.fits", product="a", fingerprint="f" * 64)
    assert record.start_iso and record.end_iso
    data = json.loads(json.dumps(record.to_dict()))
    old = {k: v for k, v in data.items() if k not in ("step_status", "previews", "memory")}
    newer = dict(data, task_id="image2-b", made_by_a_newer_jwstrun=1)
    wrong = dict(data, task_id="image2-c", step_status=["done"])
    clean, problems = check_manifest(
        {"tasks": {"image2-a": old, "image2-b": newer, "image2-c": wrong}, "runs": []})
    assert problems == ["record 'image2-c': 'step_status' is not an object"]
    assert TaskRecord.from_dict(clean["tasks"]["image2-a"]) == TaskRecord.from_dict(old)
    assert TaskRecord.from_dict(old).step_status == {}
    manifest = Manifest(tmp_path)
    manifest.record(record.to_dict())
    read = read_manifest(tmp_path)
    assert read.tasks == {"image2-a": record} and read.problems == []
    (tmp_path / MANIFEST_NAME).write_text("{")
    with pytest.raises(InputError, match="unreadable manifest"):
        read_manifest(tmp_path / MANIFEST_NAME)


# --------------------------------------------------------------------------- fingerprints
VERSIONS = {"jwst": "3.0.0", "stpipe": "1.1.0", "crds": "14", "jwstrun": "0.1"}
INPUTS = [{"name": "a_rate.fits", "sha256": "11"}]


def test_fingerprint_changes_with_each_ingredient():
    base = compute_fingerprint("image2", INPUTS, {}, VERSIONS, "jwst_0001.pmap")
    assert base == compute_fingerprint("image2", INPUTS, {}, VERSIONS, "jwst_0001.pmap")
    changed = [
        compute_fingerprint("image2", [{"name": "a_rate.fits", "sha256": "12"}], {}, VERSIONS,
                            "jwst_0001.pmap"),
        compute_fingerprint("image2", INPUTS, {"steps": {"resample": {"skip": True}}}, VERSIONS,
                            "jwst_0001.pmap"),
        compute_fingerprint("image2", INPUTS, {}, dict(VERSIONS, jwst="3.0.1"), "jwst_0001.pmap"),
        compute_fingerprint("image2", INPUTS, {}, VERSIONS, "jwst_0002.pmap"),
        compute_fingerprint("image3", INPUTS, {}, VERSIONS, "jwst_0001.pmap"),
    ]
    assert base not in changed and len(set(changed)) == len(changed)
    # a jwstrun upgrade alone does not redo work
    assert base == compute_fingerprint("image2", INPUTS, {}, dict(VERSIONS, jwstrun="9"),
                                       "jwst_0001.pmap")


def test_file_sha256(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


class _T:
    fingerprint = "f"


def test_can_skip_needs_matching_fingerprint_and_intact_outputs(tmp_path):
    (tmp_path / "a_cal.fits").write_bytes(b"12345")
    record = {"status": "ok", "fingerprint": "f", "outputs": ["a_cal.fits"],
              "output_sizes": {"a_cal.fits": 5}}
    assert can_skip(_T(), record, tmp_path)
    assert not can_skip(_T(), dict(record, fingerprint="g"), tmp_path)
    assert not can_skip(_T(), dict(record, status="failed"), tmp_path)
    assert not can_skip(_T(), None, tmp_path)
    (tmp_path / "a_cal.fits").write_bytes(b"123")  # truncated / replaced
    assert not can_skip(_T(), record, tmp_path)
    (tmp_path / "a_cal.fits").unlink()
    assert not can_skip(_T(), record, tmp_path)


# --------------------------------------------------------------------------- inputs / outdir
def test_stage_inputs_globs_directories_and_errors(tmp_path):
    """A directory given to a stage means the files in it of the types the stage takes
    and does not write itself: image2 its _rate/_rateints files, image3 its _cal files
    (not the _crf files of its own last run)."""
    image2, image3 = get_stage("image2"), get_stage("image3")
    a = write_fits(tmp_path / "jw1_nrcb1_rate.fits")
    b = write_fits(tmp_path / "jw2_nrcb1_rateints.fits")
    cal = write_fits(tmp_path / "jw1_nrcb1_cal.fits")
    write_fits(tmp_path / "jw1_nrcb1_o001_crf.fits")
    assert stage_inputs(image2, [str(tmp_path / "*_rate.fits"), str(a)]) == [a.resolve()]
    assert stage_inputs(image2, [tmp_path]) == [a.resolve(), b.resolve()]
    assert stage_inputs(image3, [tmp_path]) == [cal.resolve()]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"is a directory with no \*_rate.fits, \*_rateints"):
        stage_inputs(image2, [empty])
    with pytest.raises(InputError, match=r"no files match this pattern"):
        stage_inputs(image2, [str(tmp_path / "*_i2d.fits")])
    with pytest.raises(InputError, match=r"nothing\.fits: file not found"):
        stage_inputs(image2, [str(tmp_path / "nothing.fits")])


def test_plan_image2_refuses_cal_and_broken_files(tmp_path):
    rate = write_fits(tmp_path / "jw1_nrcb1_rate.fits")
    cal = write_fits(tmp_path / "jw1_nrcb1_cal.fits", S_PHOTOM="COMPLETE")
    empty = tmp_path / "jw3_nrcb1_rate.fits"
    empty.write_bytes(b"")
    planned = plan_image2([rate])
    assert [p.product for p in planned] == ["jw1_nrcb1"]
    with pytest.raises(InputError) as err:
        plan_image2([rate, cal])
    assert str(err.value) == (
        f"{cal}: is a _cal product, already processed by calwebb_image2. Give _rate/_rateints "
        "files to image2, or give this file to 'jwstrun image3'."
    )
    with pytest.raises(InputError, match="file is empty"):
        plan_image2([empty])


# --------------------------------------------------------------------------- mixed inputs
#: what image2 and image3 say about the imaging EXP_TYPEs they take
TAKES = "takes NRC_IMAGE, MIR_IMAGE, NIS_IMAGE, FGS_IMAGE exposures"


def test_select_files_leaves_out_other_exposures_and_uncal(tmp_path, caplog):
    """A MAST folder: imaging, target acquisition, grism and _uncal side by side. image2
    keeps the imaging exposure (and associations, for its own checks), leaves the others
    out with one line, and a directory given to it lists the _uncal files too."""
    from jwstrun.selection import select_files

    image2 = get_stage("image2")
    rate = write_fits(tmp_path / "jw01_nrcb1_rate.fits")
    ta = write_fits(tmp_path / "jw02_nrcb1_rate.fits", EXP_TYPE="NRC_TACQ")
    wfss = write_fits(tmp_path / "jw03_nrcblong_rate.fits", EXP_TYPE="NRC_WFSS")
    uncal = write_fits(tmp_path / "jw01_nrcb1_uncal.fits", DATAMODL="Level1bModel")
    asn = tmp_path / "l2_asn.json"
    asn.write_text("{}")
    listed = stage_inputs(image2, [tmp_path])
    assert listed == [rate.resolve(), uncal.resolve(), ta.resolve(), wfss.resolve()]
    with caplog.at_level("WARNING", logger="jwstrun.selection"):
        selection = select_files(image2, [*listed, asn])
    assert selection.kept == [rate.resolve(), asn]
    assert [item.to_dict() for item in selection.left_out] == [
        {"path": str(uncal.resolve()), "exp_type": "NRC_IMAGE", "product_type": "uncal",
         "reason": "earlier_stage"},
        {"path": str(ta.resolve()), "exp_type": "NRC_TACQ", "product_type": "rate",
         "reason": "not_imaging"},
        {"path": str(wfss.resolve()), "exp_type": "NRC_WFSS", "product_type": "rate",
         "reason": "not_imaging"},
    ]
    assert caplog.messages == [
        f"Left out 3 of 5 files: 2 not direct imaging (1 NRC_TACQ, 1 NRC_WFSS; jwstrun image2 "
        f"{TAKES}); 1 _uncal (raw ramps: run 'jwstrun detector1' on it, then give the "
        "_rate file it writes to jwstrun image2)."
    ]


def test_select_files_image3_leaves_out_grism_cal_and_refuses_a_misnamed_file(tmp_path, caplog):
    """A grism _cal is a MultiSlitModel: left out for its EXP_TYPE, not refused for its
    DATAMODL. An ImageModel named _uncal, a CubeModel named _rate are refused, naming the
    file, the suffix and the DATAMODL."""
    from jwstrun.selection import select_files

    image3 = get_stage("image3")
    cal = write_fits(tmp_path / "jw01_nrcb1_cal.fits", S_PHOTOM="COMPLETE")
    wfss = write_fits(tmp_path / "jw03_nrcblong_cal.fits", EXP_TYPE="NRC_WFSS",
                      DATAMODL="MultiSlitModel")
    uncal = write_fits(tmp_path / "jw02_nrcb1_uncal.fits", DATAMODL="RampModel")
    with caplog.at_level("WARNING", logger="jwstrun.selection"):
        selection = select_files(image3, [cal, wfss, uncal])
    assert selection.kept == [cal]
    assert caplog.messages == [
        f"Left out 2 of 3 files: 1 not direct imaging (1 NRC_WFSS; jwstrun image3 {TAKES}); "
        "1 _uncal (raw ramps: run 'jwstrun detector1' on it, then run 'jwstrun image2' "
        "on the _rate file it writes and give the _cal file to jwstrun image3)."
    ]
    misnamed = write_fits(tmp_path / "jw04_nrcb1_uncal.fits")
    with pytest.raises(InputError) as err:
        select_files(get_stage("image2"), [cal, misnamed])
    assert str(err.value) == (
        f"{misnamed}: is named _uncal, but its DATAMODL is ImageModel (an _uncal file is a "
        "Level1bModel or RampModel); its header says it is a _rate product: rename it to end "
        "in _rate.fits, or re-create it."
    )
    cube = write_fits(tmp_path / "jw05_nrcb1_rate.fits", DATAMODL="CubeModel", NINTS=3)
    with pytest.raises(InputError) as err:
        select_files(get_stage("image2"), [cube])
    assert str(err.value) == (
        f"{cube}: is named _rate, but its DATAMODL is CubeModel (a _rate file is an "
        "ImageModel or IFUImageModel); its header says it is a _rateints product: rename it "
        "to end in _rateints.fits, or re-create it."
    )


def test_prepare_outdir_errors(tmp_path):
    assert prepare_outdir(tmp_path / "new" / "out").is_dir()
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        prepare_outdir(afile)
    with pytest.raises(OutputError, match="cannot create the output directory"):
        prepare_outdir(afile / "sub")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_prepare_outdir_read_only(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="cannot write to the output directory"):
            prepare_outdir(ro)
    finally:
        ro.chmod(0o700)


def test_maximum_cores_refused_with_pool():
    pars = {"steps": {"jump": {"maximum_cores": "all"}}}
    check_maximum_cores(pars, 1)  # one worker: the step may use the cores
    check_maximum_cores({"steps": {"jump": {"maximum_cores": "1"}}}, 4)
    with pytest.raises(Exception, match="maximum_cores=all cannot be combined with jobs=2"):
        check_maximum_cores(pars, 2)


def test_default_jobs_respects_tasks_and_memory():
    jobs, reason = default_jobs(1, 1e9)
    assert jobs == 1 and reason == "1 task"
    jobs, _ = default_jobs(100, 1e18)  # more memory per worker than any machine has
    assert jobs == 1


# --------------------------------------------------------------------------- pool
@pytest.fixture(scope="module")
def pool_results():
    pool_tasks.PARENT_MARK = True  # a forked worker would inherit this
    events = []
    executor = LocalExecutor(
        2, pool_tasks.run_pool_task, pool_tasks.lost_result,
        env={"JWSTRUN_TEST_ENV": "set"}, warm=("json.tool",), max_tasks_per_child=2,
        on_event=events.append,
    )
    with executor:
        for i in range(5):
            executor.submit(pool_tasks.PoolTask(f"t{i}", seconds=0.05))
        executor.submit(pool_tasks.PoolTask("dies", "die"))
        executor.submit(pool_tasks.PoolTask("raises", "raise"))
        executor.submit(pool_tasks.PoolTask("after", seconds=0.05))
        results = {r["task_id"]: r for r in executor.as_completed()}
    pool_tasks.PARENT_MARK = False
    return results, events


def test_pool_runs_every_task_once(pool_results):
    results, _ = pool_results
    assert sorted(results) == sorted(["t0", "t1", "t2", "t3", "t4", "dies", "raises", "after"])


def test_pool_workers_are_spawned_warm_and_get_env(pool_results):
    results, _ = pool_results
    ok = [r for r in results.values() if r["status"] == "ok"]
    assert len(ok) == 6
    assert all(r["env"] == "set" and r["warm_imported"] for r in ok)
    assert not any(r["parent_mark"] for r in ok)  # spawn, not fork


def test_pool_recycles_workers(pool_results):
    results, events = pool_results
    ok = [r for r in results.values() if r["status"] == "ok"]
    per_pid = {}
    for r in ok:
        per_pid[r["pid"]] = per_pid.get(r["pid"], 0) + 1
    assert max(per_pid.values()) <= 2
    assert any(e.kind == "retire" for e in events)


def test_pool_dead_worker_fails_only_its_task(pool_results):
    results, events = pool_results
    assert results["dies"]["status"] == "failed"
    assert "killed by SIGKILL" in results["dies"]["error"]
    assert "try fewer jobs with -j" in results["dies"]["error"]
    assert results["after"]["status"] == "ok"
    assert [e.task_id for e in events if e.kind == "lost"] == ["dies"]


def test_pool_task_exception_is_a_failed_result(pool_results):
    results, _ = pool_results
    assert results["raises"] == {
        "task_id": "raises", "status": "failed", "error": "ValueError: bad task raises"
    }


def test_pool_reports_steps(pool_results):
    _, events = pool_results
    steps = [(e.task_id, e.step) for e in events if e.kind == "step" and e.task_id == "t0"]
    assert steps == [("t0", "first"), ("t0", "second")]


def test_pool_shutdown_cancel_kills_running_task():
    executor = LocalExecutor(1, pool_tasks.run_pool_task, pool_tasks.lost_result)
    executor.submit(pool_tasks.PoolTask("slow", seconds=60))
    executor.start()
    started = time.monotonic()
    stream = executor.as_completed()
    # wait until the task is in the worker, then cancel
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(w.task for w in executor._workers.values()):
        executor._dispatch()
        for worker in list(executor._workers.values()):
            list(executor._drain(worker))
        time.sleep(0.05)
    pids = [w.process.pid for w in executor._workers.values()]
    executor.shutdown(cancel=True)
    assert time.monotonic() - started < 30
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    del stream


def test_worker_stopped_inside_set_name_says_nothing(tmp_path):
    """A run stopped while its workers import jwst (the parent's shutdown sends SIGTERM) at the
    moment a class body's ``__set_name__`` runs, where Python 3.11 wraps the exception into
    "Error calling __set_name__": the worker leaves at once with 143 and prints nothing (it
    used to warn "worker could not import ..." and run on until killed 10 s later)."""
    (tmp_path / "slow_set_name_module.py").write_text(
        "import pathlib, time\n"
        "class Descriptor:\n"
        "    def __set_name__(self, owner, name):\n"
        "        pathlib.Path(__file__).with_suffix('.inside').touch()\n"
        "        time.sleep(5)\n"
        "class Owner:\n"
        "    attribute = Descriptor()\n"
    )
    stop_worker_while_importing(tmp_path, "slow_set_name_module")


def test_ctrl_c_while_a_worker_starts_prints_no_traceback(tmp_path):
    """Ctrl-C in a terminal signals the whole process group: a worker still starting (here
    importing a slow task module, before it can ignore SIGINT itself) prints no
    KeyboardInterrupt traceback; the parent stops it as usual."""
    (tmp_path / "slow_import_tasks.py").write_text(
        "import os, pathlib, time\n"
        "if os.environ.get('SLOW_IMPORT'):\n"
        "    pathlib.Path(__file__).with_suffix('.inside').touch()\n"
        "    time.sleep(3)\n"
        "def run(task, progress):\n"
        "    return task\n"
        "def lost(task, reason):\n"
        "    return reason\n"
    )
    (tmp_path / "parent.py").write_text(
        "import os, pathlib, signal, sys, time\n"
        "if __name__ == '__main__':\n"
        "    got = []\n"
        "    signal.signal(signal.SIGINT, lambda *_: got.append(1))\n"
        "    from jwstrun.executors import LocalExecutor\n"
        "    import slow_import_tasks\n"
        "    os.environ['SLOW_IMPORT'] = '1'\n"
        "    pool = LocalExecutor(1, slow_import_tasks.run, slow_import_tasks.lost).start()\n"
        "    inside = pathlib.Path(sys.argv[1]) / 'slow_import_tasks.inside'\n"
        "    while not inside.exists():\n"
        "        time.sleep(0.01)\n"
        "    print('inside', flush=True)\n"
        "    while not got:\n"
        "        time.sleep(0.01)\n"
        "    time.sleep(0.5)  # where a worker hit by the SIGINT would print its traceback\n"
        "    pool.shutdown(cancel=True)\n"
        "    print('stopped', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, str(tmp_path / "parent.py"), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, start_new_session=True)
    try:
        assert proc.stdout.readline() == "inside\n"
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out == "stopped\n"
    assert err == ""


def test_pool_started_early_is_resized_before_work():
    """A pool started while the caller still plans shrinks to the -j the plan asks for
    (idle workers stopped) and grows again with the new environment for new workers."""
    executor = LocalExecutor(3, pool_tasks.run_pool_task, pool_tasks.lost_result,
                             env={"JWSTRUN_TEST_ENV": "early"})
    with executor:
        executor.start()
        first = [w.process for w in executor._workers.values()]
        executor.resize(1)
        assert len(executor._workers) == 1
        assert sum(p.is_alive() for p in first) == 1
        executor.submit(pool_tasks.PoolTask("a", seconds=0.05))
        executor.submit(pool_tasks.PoolTask("b", seconds=0.05))
        results = list(executor.as_completed())
        assert len({r["pid"] for r in results}) == 1
        executor.resize(2, env={"JWSTRUN_TEST_ENV": "late"})
        assert len(executor._workers) == 2
        for i in range(4):
            executor.submit(pool_tasks.PoolTask(f"c{i}", seconds=1.0))
        envs = {r["pid"]: r["env"] for r in executor.as_completed()}
    assert sorted(envs.values()) == ["early", "late"]


def test_checksums_shared_between_tasks_and_unreadable_inputs(tmp_path):
    """One path -> digest table per run: an input of several tasks (a shared background)
    is hashed once; strict hashing raises for a missing file, the background hasher
    records None instead (the task's fingerprint then never matches)."""
    from types import SimpleNamespace

    from jwstrun.runner.resume import _fill_checksums

    shared = tmp_path / "bkg_rate.fits"
    shared.write_bytes(b"background")
    own = [tmp_path / f"sci{i}_rate.fits" for i in range(2)]
    for i, path in enumerate(own):
        path.write_bytes(f"science {i}".encode())
    tasks = [SimpleNamespace(inputs=[{"path": str(p), "sha256": None},
                                     {"path": str(shared), "sha256": None}]) for p in own]
    known: dict = {}
    for task in tasks:
        _fill_checksums(task, known)
    assert len(known) == 3
    assert {t.inputs[1]["sha256"] for t in tasks} == {file_sha256(shared)}
    gone = SimpleNamespace(inputs=[{"path": str(tmp_path / "gone.fits"), "sha256": None}])
    with pytest.raises(OSError):
        _fill_checksums(gone, known)
    _fill_checksums(gone, known, strict=False)
    assert gone.inputs[0]["sha256"] is None


def test_a_rateints_beside_its_rate_is_left_out(tmp_path, caplog):
    """A calwebb_detector1 OUTDIR holds each exposure's _rate and _rateints: image2 given
    the folder takes the _rate and says in one line that it left the _rateints out; a
    _rateints given alone (another exposure) is kept."""
    from jwstrun.selection import select_files
    from jwstrun.stages import get_stage

    rate = write_fits(tmp_path / "jw1_nrcb1_rate.fits")
    twin = write_fits(tmp_path / "jw1_nrcb1_rateints.fits", DATAMODL="CubeModel")
    alone = write_fits(tmp_path / "jw2_nrcb1_rateints.fits", DATAMODL="CubeModel")
    with caplog.at_level("WARNING", logger="jwstrun.selection"):
        selection = select_files(get_stage("image2"), [rate, twin, alone])
    assert selection.kept == [rate, alone]
    assert [item.path for item in selection.left_out] == [str(twin)]
    assert [r.getMessage() for r in caplog.records] == [
        "Left out 1 of 3 files: 1 _rateints beside the _rate of the same exposure (jwstrun "
        "image2 takes the _rate; give a _rateints file alone to reduce it per integration)."]
