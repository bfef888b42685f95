"""Two runs on one OUTDIR: the second refuses (naming the holder's pid, host, start and
command), never interleaves its outputs; stale locks are taken over (see also
test_faults.test_ctrl_c_then_kill_9_then_resume, where a real kill -9 leaves one)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

from click.testing import CliRunner

from jwstrun.cli import cli
from jwstrun.locking import LOCK_NAME

from ._helpers import assert_no_traceback, assert_nothing_half_written, read_manifest


def test_second_run_while_the_first_runs_is_refused(reference):
    """A second 'jwstrun image2 --force' on the OUTDIR of a running run: refused, naming the
    holder's pid, host, start time and command."""
    holder, second = reference["holder"], reference["second"]
    assert reference["second_while_running"], "the first run ended before the second tried"
    assert second.returncode == 1
    assert_no_traceback(second.stderr)
    outdir = reference["outdir"]
    assert (
        f"Error: {outdir} is in use by another jwstrun run (pid {holder['pid']} on "
        f"{holder['host']}, started {holder['started']}: jwstrun image2 "
    ) in second.stderr
    assert f"Wait for it to finish or use another -o OUTDIR. If that run is dead, delete " \
           f"{outdir / LOCK_NAME}." in second.stderr
    assert holder["host"] == socket.gethostname() and holder["pid"] == reference["run"].pid


def test_outputs_never_interleaved(reference, sim):
    """Only the first run wrote: one run entry, its products only, every one valid."""
    outdir = reference["outdir"]
    manifest = read_manifest(outdir)
    assert [run["pid"] for run in manifest["runs"]] == [reference["holder"]["pid"]]
    assert not manifest["runs"][0]["interrupted"]
    products = assert_nothing_half_written(outdir)
    bases = [p.name.removesuffix("_rate.fits") for p in sim.rate_files]
    assert sorted(p.name for p in products) == sorted(
        f"{b}_{s}.fits" for b in bases for s in ("cal", "i2d"))
    assert {t["status"] for t in manifest["tasks"].values()} == {"ok"}
    assert not (outdir / LOCK_NAME).exists()


def test_lock_race_has_exactly_one_winner(tmp_path):
    """Eight processes take the lock of one directory at the same instant."""
    start = time.time() + 1.5
    script = textwrap.dedent(f"""
        import sys, time
        from jwstrun.errors import OutputError
        from jwstrun.locking import OutdirLock
        time.sleep(max(0, {start} - time.time()))
        try:
            with OutdirLock({str(tmp_path)!r}, command="racer"):
                print("WON", flush=True)
                time.sleep(2)
        except OutputError as exc:
            print("REFUSED", exc, flush=True)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outcomes = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outcomes
    winners = [pid for pid, (out, _err) in zip((p.pid for p in procs), outcomes, strict=True)
               if out.startswith("WON")]
    assert len(winners) == 1, outcomes
    for out, _err in outcomes:
        if out.startswith("REFUSED"):
            assert f"pid {winners[0]} on {socket.gethostname()}" in out
    assert not (tmp_path / LOCK_NAME).exists()
    assert not [p for p in tmp_path.iterdir()]  # no private lock files left behind


def _lock(outdir, **info):
    outdir.mkdir(parents=True, exist_ok=True)
    base = {"pid": os.getpid(), "host": socket.gethostname(), "started": "2026-01-01T00:00:00",
            "command": "jwstrun image2 elsewhere"}
    (outdir / LOCK_NAME).write_text(json.dumps({**base, **info}))


def test_lock_held_elsewhere_is_never_taken_over(sim, tmp_path):
    """A live holder on this host, or a holder on another host with a recent heartbeat,
    refuses the run before anything is written."""
    import re

    for info in ({}, {"host": "node042.cluster", "pid": 1}):
        outdir = tmp_path / "out"
        _lock(outdir, **info)
        before = (outdir / LOCK_NAME).read_text()
        result = CliRunner().invoke(cli, ["image2", str(sim.rate_files[0]), "-o", str(outdir),
                                          "--crds-env", str(sim.env_file)])
        assert result.exit_code == 1
        assert_no_traceback(result.output)
        host = info.get("host", socket.gethostname())
        held = re.escape(
            f"Error: {outdir} is in use by another jwstrun run (pid "
            f"{info.get('pid', os.getpid())} on {host}, started 2026-01-01T00:00:00: jwstrun "
            "image2 elsewhere). Wait for it to finish or use another -o OUTDIR. If that run is "
            f"dead, delete {outdir / LOCK_NAME}."
        )
        if info:  # another host: how long since its heartbeat, and when it is taken over
            held += (r" Its last heartbeat was \d+ s ago; a lock from another host is taken "
                     r"over after 600 s without one \(JWSTRUN_LOCK_STALE_SECONDS\)\.")
        assert re.fullmatch(held + "\n", result.output), result.output
        assert (outdir / LOCK_NAME).read_text() == before
        assert sorted(p.name for p in outdir.iterdir()) == [LOCK_NAME]


def test_unreadable_lock_is_not_taken_over(sim, tmp_path):
    """A corrupt lock file is reported, never removed silently."""
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / LOCK_NAME).write_text('{"pid": 12')
    result = CliRunner().invoke(cli, ["image2", str(sim.rate_files[0]), "-o", str(outdir),
                                      "--crds-env", str(sim.env_file)])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {outdir} is locked by {outdir / LOCK_NAME}, which cannot be read. If no jwstrun "
        f"run is using this directory, delete {outdir / LOCK_NAME} and retry.\n"
    )
    assert_nothing_half_written(outdir)
