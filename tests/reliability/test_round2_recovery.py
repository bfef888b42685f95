"""Recovery, round two (issue 21): a stale lock taken over by several starters at once has
exactly one winner; a hand-edited manifest of the wrong shape is set aside and rebuilt;
read-only OUTDIRs, full disks and refused runs leave clear errors and no debris."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from jwstrun.locking import LOCK_NAME

from ._helpers import (
    assert_no_traceback,
    assert_nothing_half_written,
    assert_same_products,
    can_drop_dac_override,
    drop_dac_override,
    image2_args,
    jwstrun_command,
    mounted_tmpfs,
    read_manifest,
    tree_digest,
)

RACE_TRIALS = 800
RACE_PROCESSES = 4


def _dead_process() -> tuple[int, str]:
    """Pid and start time of a process of this host that has ended (and been reaped): the
    start time keeps the lock stale even if the pid is reused meanwhile."""
    from jwstrun.locking import _process_start_ticks

    proc = subprocess.Popen(["sleep", "60"])
    start = _process_start_ticks(proc.pid)
    proc.kill()
    proc.wait()
    return proc.pid, start


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
    dead, start = _dead_process()
    stale = {"pid": dead, "proc_start": start, "host": socket.gethostname(),
             "started": "2026-01-01T00:00:00", "command": "jwstrun image2 killed"}
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


# ----------------------------------------------------------------------------- manifest shape
def _ids(data):
    return sorted(data["tasks"])


def _record_is_a_string(data, out, ref):
    data["tasks"][_ids(data)[0]] = "ok"
    return _ids(data)[:1]


def _runs_is_an_object(data, out, ref):
    data["runs"] = {"0": data["runs"][0]}
    return []


def _outputs_is_a_number(data, out, ref):
    data["tasks"][_ids(data)[0]]["outputs"] = 5
    return _ids(data)[:1]


def _inputs_are_strings(data, out, ref):
    data["tasks"][_ids(data)[1]]["inputs"] = ["x"]
    return _ids(data)[1:2]


def _nested_100000_deep(data, out, ref):
    data["tasks"][_ids(data)[0]]["parameters"] = "NESTED"
    return _ids(data)


def _outputs_outside(data, out, ref):
    """/etc/passwd and a '..' path to the reference's own product, both existing files;
    the tasks' real products are deleted, so only a re-run brings them back."""
    first, second = (data["tasks"][i] for i in _ids(data)[:2])
    for record in (first, second):
        for name in record["outputs"]:
            (out / name).unlink()
    first["outputs"], first["output_sizes"] = ["/etc/passwd"], {}
    name = second["outputs"][0]
    second["outputs"] = [os.path.relpath(ref / name, out)]
    second["output_sizes"] = {second["outputs"][0]: (ref / name).stat().st_size}
    return _ids(data)[:2]


def _report_fields_of_wrong_type(data, out, ref):
    first, second, third = (data["tasks"][i] for i in _ids(data))
    first["fingerprint"] = 5
    second["start"] = "yesterday"
    third["memory"] = {"mosaic": {"shape": 5}, "estimate_mb": "a lot"}
    return _ids(data)


def _parameters_500_deep(data, out, ref):
    data["tasks"][_ids(data)[0]]["parameters"] = json.loads("[" * 500 + "]" * 500)
    return _ids(data)[:1]


BAD_MANIFESTS = [_record_is_a_string, _runs_is_an_object, _outputs_is_a_number,
                 _inputs_are_strings, _nested_100000_deep, _outputs_outside,
                 _report_fields_of_wrong_type, _parameters_500_deep]
#: Shapes whose report-and-re-run is in the slow suite only: a record field of the wrong
#: type like _record_is_a_string's and _outputs_outside's, which the default suite re-runs;
#: test_every_wrong_shape_is_found_and_only_its_records_dropped checks each one's records.
RERUN_SLOW = {_outputs_is_a_number, _inputs_are_strings, _report_fields_of_wrong_type,
              _parameters_500_deep}


def test_every_wrong_shape_is_found_and_only_its_records_dropped(reference, tmp_path):
    """Each hand-edited shape that JSON can read (all but 100,000 deep): check_manifest, which
    the report and the re-run take the manifest through, names a problem and keeps exactly
    the records the re-run keeps (the others it redoes)."""
    from jwstrun.manifest import check_manifest

    ref = reference["outdir"]
    for spoil in BAD_MANIFESTS:
        if spoil is _nested_100000_deep:
            continue
        out = tmp_path / spoil.__name__
        shutil.copytree(ref, out)
        data = read_manifest(out)
        remade = spoil(data, out, ref)
        clean, problems = check_manifest(data)
        assert problems, spoil.__name__
        assert sorted(clean["tasks"]) == sorted(set(_ids(read_manifest(ref))) - set(remade)), (
            spoil.__name__, problems)


@pytest.mark.parametrize("spoil", [
    pytest.param(spoil, marks=[pytest.mark.slow] if spoil in RERUN_SLOW else [])
    for spoil in BAD_MANIFESTS], ids=lambda f: f.__name__.strip("_"))
def test_manifest_of_the_wrong_shape_is_set_aside_and_rebuilt(sim, reference, tmp_path, spoil):
    """A finished OUTDIR's manifest hand-edited into a wrong shape (a record that is a string,
    'runs' an object, 'outputs: 5', 'inputs: ["x"]', JSON 100,000 deep, outputs '/etc/passwd'
    and '../', report fields of the wrong type, parameters 500 deep): 'jwstrun report' warns
    and leaves it out (exit 0; an unparseable file is one Error line), a re-run sets it aside
    with a warning, keeps the valid records and remakes the rest, identical to the reference."""
    from jwstrun.manifest import MANIFEST_NAME

    ref = reference["outdir"]
    out = tmp_path / "out"
    shutil.copytree(ref, out)
    manifest = out / MANIFEST_NAME
    data = read_manifest(out)
    remade = spoil(data, out, ref)
    text = json.dumps(data).replace('"NESTED"', "[" * 100_000 + "]" * 100_000)
    manifest.write_text(text)

    report = subprocess.run(jwstrun_command("report", out, "--no-previews"),
                            capture_output=True, text=True, timeout=300)
    assert_no_traceback(report.stderr)
    if spoil is _nested_100000_deep:
        assert report.returncode == 1
        assert report.stderr.startswith(f"Error: {manifest}: unreadable manifest (maximum "
                                         "recursion depth exceeded"), report.stderr
        assert report.stderr.endswith("Re-run the pipeline command to rewrite it.\n")
    else:
        assert report.returncode == 0, report.stderr
        assert f"{manifest} is not a valid manifest (" in report.stderr
        assert "the report leaves that out. Re-run the pipeline command to rebuild it." \
            in report.stderr
    assert manifest.read_text() == text  # the report changes nothing

    run = subprocess.run(jwstrun_command(*image2_args(sim, out)), capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert_no_traceback(run.stderr)
    assert f"WARNING {manifest} is not a valid manifest (" in run.stderr
    assert f"moved it to {MANIFEST_NAME}.corrupt-" in run.stderr
    assert f"kept the {3 - len(remade)} valid task record(s) and will redo the other tasks." \
        in run.stderr
    (aside,) = out.glob(f"{MANIFEST_NAME}.corrupt-*")
    assert aside.read_text() == text
    rebuilt = read_manifest(out)
    from jwstrun.manifest import check_manifest  # (not in the code before the fix)

    assert check_manifest(rebuilt)[1] == []
    assert rebuilt["runs"][-1]["counts"] == {"ok": len(remade), "skipped": 3 - len(remade),
                                             "failed": 0}
    for task_id, record in rebuilt["tasks"].items():
        assert record["status"] == "ok"
        if task_id in remade:  # ran again in this run, not taken as up to date
            assert record["start"] > aside.stat().st_mtime - 1
        assert all("/" not in name for name in record["outputs"])
    aside.unlink()  # the user's file, kept for them to look at: not a product
    assert_nothing_half_written(out)
    assert_same_products(out, ref)


# ----------------------------------------------------------------------------- smaller
@pytest.mark.skipif(not can_drop_dac_override(), reason="cannot drop CAP_DAC_OVERRIDE here")
def test_report_on_a_read_only_outdir(reference, tmp_path):
    """'jwstrun report' on a finished OUTDIR made read-only (run without CAP_DAC_OVERRIDE, so
    the modes hold for root too): one Error line naming OUTDIR, exit 1, nothing written."""
    out = tmp_path / "out"
    shutil.copytree(reference["outdir"], out)
    before, names = tree_digest(out), sorted(p.name for p in out.iterdir())
    subprocess.run(["chmod", "-R", "a-w", str(out)], check=True)
    try:
        for extra in ([], ["--no-previews"]):
            report = subprocess.run(jwstrun_command("report", out, *extra), capture_output=True,
                                    text=True, timeout=300, preexec_fn=drop_dac_override)
            assert report.returncode == 1
            assert report.stderr == (
                f"Error: {out}: cannot write the report there (Permission denied). Make the "
                "directory writable (or free space), or run 'jwstrun report' on a writable "
                "copy of it.\n")
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(out)], check=True)
    assert tree_digest(out) == before
    assert sorted(p.name for p in out.iterdir()) == names  # no report, no previews/


@pytest.fixture
def full_filesystem(tmp_path):
    """A 64 kB tmpfs filled to the last byte; None where mounting is refused."""
    with mounted_tmpfs(tmp_path / "fs", "64k") as mount:
        if mount is not None:
            (mount / "out").mkdir()
            fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
            try:
                while os.write(fd, b"\0" * 4096):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
            finally:
                os.close(fd)
        yield mount


def _no_file_writes():
    # Where tmpfs cannot be mounted: every write fails with EFBIG, as on a full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def test_full_disk_leaves_no_write_probe(sim, full_filesystem, tmp_path):
    """image2 into an existing OUTDIR on a full file system (fallback: RLIMIT_FSIZE 0): one
    Error line saying so, exit 1, and the write probe it created is removed."""
    if full_filesystem is not None:
        out, preexec, why = full_filesystem / "out", None, errno.ENOSPC
    else:
        out, preexec, why = tmp_path / "out", _no_file_writes, errno.EFBIG
        out.mkdir()
    run = subprocess.run(jwstrun_command(*image2_args(sim, out)), capture_output=True,
                         text=True, timeout=300, preexec_fn=preexec)
    assert run.returncode == 1
    assert not list(out.iterdir())
    assert run.stderr.endswith(
        f"Error: {out}: cannot write to the output directory ({os.strerror(why)}). Free space "
        "or fix its permissions, or choose another -o OUTDIR; nothing was run.\n"), run.stderr


def test_refused_image3_leaves_no_association(sim, cal_files, tmp_path):
    """image3 on loose _cal files refused by the mosaic preflight (--max-mosaic-pixels 1):
    one Error line, exit 1, and the association it built from them is gone again; an
    association already in OUTDIR before the run stays."""
    out = tmp_path / "out"
    args = ["image3", *cal_files, "-o", out, "--crds-env", sim.env_file, "--no-progress",
            "--max-mosaic-pixels", "1"]
    for attempt in range(2):
        run = subprocess.run(jwstrun_command(*args), capture_output=True, text=True, timeout=300)
        assert run.returncode == 1
        assert_no_traceback(run.stderr)
        errors = [line for line in run.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and "beyond the limit of 1 pixels (--max-mosaic-pixels)" \
            in errors[0], run.stderr
        assert "built jw01234-o001_t001_nircam_clear-f200w-sub160_image3_asn.json" in run.stderr
        if attempt == 0:
            assert not list(out.iterdir())  # no association, no lock, nothing
            # the user's own association of that name, there before the next run
            mine = out / "jw01234-o001_t001_nircam_clear-f200w-sub160_image3_asn.json"
            mine.write_text("{}")
    assert mine.exists()
