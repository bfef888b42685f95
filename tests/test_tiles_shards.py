"""A tiled image3 with ``--shard``: the tiles of ONE association spread over every shard
(issue 22; jwstrun/runner/_tile_shards.py, docs/workflows/tiles.md).

The _cal files of the session's small reduced run (NIRCam SUB160, two dithers) are tiled
with ``--tile-size 128`` (2 x 2 tiles) three times: unsharded, and as ``--shard 1/2`` and
``--shard 2/2`` started at the same time as two processes into one OUTDIR (shard 1 aligns,
shard 2 waits for it; each runs two tiles).  The union of the shards' tiles must be the
unsharded run's, bit for bit; resume, ``jwstrun status`` and the report's tile map read the
shared OUTDIR.  The errors (a wait that times out, an align another shard failed,
``--phase tiles`` before the aligns) run no pipeline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

PRODUCT = "jw01234-o001_t001_nircam_clear-f200w-sub160"
ALIGN = f"image3-align-{PRODUCT}"
TILES = [f"image3-tile-{PRODUCT}_{t}" for t in ("t000000", "t000001", "t001000", "t001001")]
SETS = ["--set", "steps.tweakreg.skip=true", "--set", "steps.source_catalog.skip=true"]


def jwstrun(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jwstrun", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})


def invoke(args, monkeypatch, **env):
    """``jwstrun ARGS`` in this process (the error cases: no pipeline runs)."""
    from click.testing import CliRunner

    from jwstrun.cli import cli

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return CliRunner().invoke(cli, [str(a) for a in args])


def image3_args(cal: Path, outdir: Path, env_file) -> list:
    return ["image3", *sorted(cal.glob("*_cal.fits")), "-o", outdir, "--tile-size", "128",
            "-j", "1", "--crds-env", env_file, "--no-progress", "--no-report", *SETS]


@pytest.fixture(scope="module")
def cal(small_reduced_run, tmp_path_factory):
    """The reduced run's _cal files, in a directory of their own."""
    directory = tmp_path_factory.mktemp("shard-tiles-cal")
    for path in small_reduced_run["a"].glob("*_cal.fits"):
        (directory / path.name).symlink_to(path)
    return directory


@pytest.fixture(scope="module")
def runs(cal, small_reduced_run, tmp_path_factory):
    """(unsharded OUTDIR, sharded OUTDIR, {shard: its output}): the two shards and the
    unsharded run, all three at the same time."""
    base = tmp_path_factory.mktemp("shard-tiles")
    env_file = small_reduced_run["sim"].env_file
    shards = {k: jwstrun(*image3_args(cal, base / "sharded", env_file), "--shard", f"{k}/2")
              for k in (1, 2)}
    whole = jwstrun(*image3_args(cal, base / "whole", env_file))
    outputs = {k: p.communicate(timeout=600)[0] for k, p in shards.items()}
    text = whole.communicate(timeout=600)[0]
    assert whole.returncode == 0, text
    for k, p in shards.items():
        assert p.returncode == 0, outputs[k]
    return base / "whole", base / "sharded", outputs


@pytest.mark.slow  # three tiled runs of one association (~1 min on 2 idle cores)
def test_both_shards_ran_tiles_of_the_one_association(runs):
    _, sharded, outputs = runs
    ran = {k: {t for t in TILES if f"ok      {t} " in out} for k, out in outputs.items()}
    assert ran[1] and ran[2], outputs
    assert ran[1] | ran[2] == set(TILES) and not ran[1] & ran[2], ran
    assert f"ok      {ALIGN} " in outputs[1] and ALIGN not in outputs[2].replace(
        "waiting for 1 align task(s)", "")
    assert "INFO shard 2/2: waiting for 1 align task(s) of other shards" in outputs[2]
    manifest = json.loads((sharded / "jwstrun-manifest.json").read_text())
    plan = manifest["plans"]["image3-tile"]
    assert plan["shards"] == 2 and plan["tasks"] == {t: i % 2 + 1 for i, t in enumerate(TILES)}
    assert {t: k for k, ids in ran.items() for t in ids} == plan["tasks"]
    assert manifest["plans"]["image3-align"]["tasks"] == {ALIGN: 1}


@pytest.mark.slow  # three tiled runs of one association (~1 min on 2 idle cores)
def test_union_of_the_shards_equals_the_unsharded_run(runs):
    from astropy.io import fits

    whole, sharded, _ = runs
    names = sorted(p.name for p in whole.glob("*_i2d.fits"))
    assert len(names) == 4
    assert sorted(p.name for p in sharded.glob("*_i2d.fits")) == names
    for name in names:
        with fits.open(whole / name) as a, fits.open(sharded / name) as b:
            for ext in ("SCI", "ERR", "WHT", "CON"):
                np.testing.assert_array_equal(a[ext].data, b[ext].data, err_msg=f"{name}[{ext}]")


@pytest.mark.slow  # three tiled runs of one association (~1 min on 2 idle cores)
def test_status_report_and_resume_read_the_shared_outdir(runs, cal, small_reduced_run):
    from jwstrun.look._tiles import tile_map_section
    from jwstrun.manifest import read_manifest
    from jwstrun.runner.status import outdir_status

    _, sharded, _ = runs
    report = outdir_status(sharded)
    assert report.complete
    assert sorted((t.task_id, t.state, t.shard) for t in report.tasks) == sorted(
        [(ALIGN, "done", 1)] + [(t, "done", i % 2 + 1) for i, t in enumerate(TILES)])
    records = read_manifest(sharded).tasks.values()
    assert "<p>4 tiles: 4 ran</p>" in tile_map_section(records)
    # a shard re-run, then a whole run: everything is up to date
    env_file = small_reduced_run["sim"].env_file
    again = jwstrun(*image3_args(cal, sharded, env_file), "--shard", "2/2")
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0, out
    assert "2 task(s): 0 ok, 2 up to date (skipped), 0 failed" in out, out
    tiles = jwstrun(*image3_args(cal, sharded, env_file), "--shard", "1/2", "--phase", "tiles")
    out = tiles.communicate(timeout=300)[0]
    assert tiles.returncode == 0, out  # the align is done: the tiles phase may run
    assert "2 task(s): 0 ok, 2 up to date (skipped), 0 failed" in out, out
    whole = jwstrun(*image3_args(cal, sharded, env_file))
    out = whole.communicate(timeout=300)[0]
    assert whole.returncode == 0, out
    assert "5 task(s): 0 ok, 5 up to date (skipped), 0 failed" in out, out


def _error(result) -> str:
    assert result.exit_code == 1, result.output
    return [line for line in result.output.splitlines() if line.startswith("Error:")][-1]


def test_a_shard_waits_for_its_align_a_bounded_time(cal, small_reduced_run, tmp_path,
                                                    monkeypatch):
    outdir = tmp_path / "out"
    started = time.monotonic()
    error = _error(invoke([*image3_args(cal, outdir, small_reduced_run["sim"].env_file),
                           "--shard", "2/2"], monkeypatch, JWSTRUN_ALIGN_WAIT_SECONDS="3"))
    assert error == (
        f"Error: {ALIGN}: not done after waiting 3 s (JWSTRUN_ALIGN_WAIT_SECONDS); 2 tile(s) "
        "of shard 2/2 need its _crf files and shard 1/2 aligns it. See `jwstrun status "
        f"{outdir}`: submit that shard again if it is missing, then this one; or run the two "
        "phases as two job arrays (--phase align, then --phase tiles).")
    assert time.monotonic() - started < 120
    assert not list(outdir.glob("*_i2d.fits"))


def test_tiles_of_an_align_another_shard_failed_fail_at_once(cal, small_reduced_run,
                                                             tmp_path, monkeypatch):
    """The record shard 1/2 writes when its align fails (written here: the pipeline's
    failure itself is tested elsewhere); shard 2/2 started after it does not wait."""
    from jwstrun.manifest import Manifest

    outdir = tmp_path / "out"
    outdir.mkdir()
    manifest = Manifest.load(outdir, shared=True)
    now = time.time() + 5
    manifest.record({"task_id": ALIGN, "status": "failed", "pipeline": "image3-align",
                     "product": PRODUCT, "error": "outlier_detection: boom",
                     "log_file": f"logs/{ALIGN}.log", "batch_job_id": "1234_1",
                     "start": now - 1, "end": now})
    result = invoke([*image3_args(cal, outdir, small_reduced_run["sim"].env_file),
                     "--shard", "2/2"], monkeypatch, JWSTRUN_ALIGN_WAIT_SECONDS="60")
    out = result.output
    assert result.exit_code == 1, out
    assert (f"FAILED {ALIGN}: the alignment failed in another shard (job 1234_1): "
            "outlier_detection: boom; the 2 tile(s) of shard 2/2 that need its _crf files "
            "were not run") in out
    assert f"       log: {outdir / 'logs' / (ALIGN + '.log')}" in out
    assert not list(outdir.glob("*_i2d.fits"))


def test_phase_tiles_before_the_aligns_refuses(cal, small_reduced_run, tmp_path,
                                               monkeypatch):
    outdir = tmp_path / "out"
    args = image3_args(cal, outdir, small_reduced_run["sim"].env_file)
    error = _error(invoke([*args, "--phase", "tiles"], monkeypatch))
    command = error.split("Run the align phase first: ")[1]
    assert error == (f"Error: --phase tiles: {ALIGN} is not done in {outdir} (pending); its "
                     f"tiles need its _crf files. Run the align phase first: {command}")
    assert command.startswith("jwstrun image3 ") and " --phase align " in command
    assert "--phase tiles" not in command
    assert not list(outdir.glob("*_i2d.fits")) and not list(outdir.glob("*_grid.asdf"))
    assert _error(invoke(["image3", sorted(cal.glob("*_cal.fits"))[0], "-o", outdir,
                          "--phase", "align"], monkeypatch)) == ("Error: --phase align runs one phase of a tiled "
                                        "image3: give --tile-size too, or drop --phase.")
