"""Image3 at scale (jwstrun.mosaic): mosaic preflight, memory budget and the on-disk mode.

One simulated NIRCam SUB640 program with four dithers, reduced once by
``jwstrun image2``.  On it:

- the predicted mosaic matches the _i2d that resample writes;
- an association with one exposure whose pointing is wrong by 3 degrees (its
  _rate header edited before image2, so assign_wcs puts it there) is refused
  before any step runs, naming that file;
- a ``--max-memory`` below the in-memory estimate switches to the pipeline's
  on-disk mode, and the products are identical to the default in-memory run;
- with -j 2 each association gets half of the budget.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from jwstrun import mosaic
from jwstrun.cli import cli
from jwstrun.errors import ConfigError, InputError

VENV_BIN = Path(sys.executable).parent
JWSTRUN = shutil.which("jwstrun", path=str(VENV_BIN)) or shutil.which("jwstrun")


# --------------------------------------------------------------------------
# No pipeline
# --------------------------------------------------------------------------
def test_parse_size():
    assert mosaic.parse_size("8GB") == 8_000_000_000
    assert mosaic.parse_size("1.5G") == 1_500_000_000
    assert mosaic.parse_size("512MiB") == 512 * 1024**2
    assert mosaic.parse_size("2e9") == 2_000_000_000
    assert mosaic.parse_size(1000) == 1000
    for bad in ("lots", "-1GB", "0", "8XB"):
        with pytest.raises(ConfigError):
            mosaic.parse_size(bad)


def _square(path, ra, dec, size=0.01):
    vertices = [(ra, dec), (ra + size, dec), (ra + size, dec + size), (ra, dec + size)]
    return mosaic.Footprint(path=path, vertices=vertices, shape=(640, 640),
                            pixel_scale=size / 640, wcsinfo={})


def test_far_inputs_names_the_stray_exposures():
    tiles = [_square(f"tile{i}.fits", 53.0 + 0.009 * i, -27.8) for i in range(6)]
    stray = _square("stray.fits", 56.0, -27.8)
    far = mosaic.far_inputs([*tiles[:3], stray, *tiles[3:]])
    assert [f.path for f, _ in far] == ["stray.fits"]
    assert 2.5 < far[0][1] < 3.0  # degrees from the main group
    assert mosaic.far_inputs(tiles) == []  # a wide survey of neighbouring tiles is one field


def test_decide_modes_and_refusal():
    est = mosaic.MosaicEstimate("p", 4, 4, 4 * 640 * 640, (700, 700), (700, 700),
                                in_memory_bytes=500_000_000, on_disk_bytes=400_000_000)
    assert mosaic.decide(est, 600_000_000, 600_000_000, "x").mode == "in_memory"
    plan = mosaic.decide(est, 450_000_000, 900_000_000, "x", jobs=2)
    assert plan.mode == "on_disk" and plan.call_overrides() == {"in_memory": False}
    assert "500 MB in memory, 400 MB on disk" in plan.reason and "/ 2 concurrent" in plan.reason
    assert mosaic.decide(est, 10**12, 10**12, "x", low_memory=True).mode == "on_disk"
    assert mosaic.decide(est, 10**12, 10**12, "x", user_in_memory=False).mode == "on_disk"
    with pytest.raises(InputError, match="does not fit in memory even in the pipeline's on-disk"):
        mosaic.decide(est, 300_000_000, 300_000_000, "x")


# --------------------------------------------------------------------------
# Simulated data through the real pipelines
# --------------------------------------------------------------------------
def _env(sim) -> dict:
    from jwstrun.refs import read_env_file

    env = dict(os.environ)
    env.update(read_env_file(sim.env_file))
    return env


@pytest.fixture(scope="module")
def sim(shared_simulation):
    from conftest import SUB640_FOUR

    return shared_simulation(**SUB640_FOUR)


@pytest.fixture(scope="module")
def caldir(sim, sub640_cal, tmp_path_factory):
    """image2 on the four exposures (conftest.sub640_cal, hard-linked here), plus a fifth
    whose pointing is 3 degrees off."""
    from astropy.io import fits

    caldir = tmp_path_factory.mktemp("mosaic_cal")
    for cal in sub640_cal.glob("*_cal.fits"):
        os.link(cal, caldir / cal.name)
    rates = sorted(sim.rate_files)
    stray_rate = caldir / "stray" / rates[-1].name.replace("_00004_", "_00005_")
    stray_rate.parent.mkdir()
    shutil.copy(rates[-1], stray_rate)
    with fits.open(stray_rate, mode="update") as hdul:
        for hdu in hdul:
            if "RA_REF" in hdu.header:
                hdu.header["RA_REF"] = hdu.header["RA_REF"] + 3.0
        hdul[0].header["EXPOSURE"] = "5"
    result = CliRunner().invoke(cli, [
        "image2", str(stray_rate), "-o", str(caldir), "-j", "2",
        "--crds-env", str(sim.env_file), "--no-progress",
        "--set", "steps.resample.skip=true",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(list(caldir.glob("*_cal.fits"))) == 5
    return caldir


def _association(caldir: Path, names: list[Path], name: str, product: str | None = None) -> Path:
    from jwstrun.asn import make_associations

    (written,) = make_associations(names, caldir / name, level=3).associations
    if product:
        data = json.loads(written.path.read_text())
        data["products"][0]["name"] = product
        written.path.write_text(json.dumps(data, indent=1))
    return written.path


@pytest.fixture(scope="module")
def good_asn(caldir):
    cal = sorted(p for p in caldir.glob("*_cal.fits") if "_00005_" not in p.name)
    return _association(caldir, cal, "good_asn.json")


def test_stray_pointing_is_refused_before_any_step(sim, caldir, good_asn, tmp_path):
    stray = next(caldir.glob("*_00005_*_cal.fits"))
    asn = _association(caldir, sorted(caldir.glob("*_cal.fits")), "stray_asn.json")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "image3", str(asn), "-o", str(out), "--crds-env", str(sim.env_file), "--no-progress",
        "--no-report",
    ])
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    # the default limit: what the default budget holds (no option was given, none is blamed)
    assert ("beyond the limit of" in message and "pixels, the largest mosaic whose arrays fit "
            "the memory budget (the default, 80% of " in message)
    assert "--max-mosaic-pixels" not in message and "--max-memory " not in message
    assert f"These inputs lie far from the rest: {stray.name} (2." in message
    assert "Traceback" not in result.output
    assert not list(out.glob("logs/*.log"))  # no task started
    assert not list(out.glob("*_i2d.fits")) and not list(out.glob("*_crf.fits"))


def test_predicted_mosaic_is_the_one_resample_makes(default_run):
    from astropy.io import fits

    out, summary = default_run
    (task,) = summary["tasks"]
    predicted = task["memory"]["mosaic"]["shape"]
    actual = fits.getdata(next(out.glob("*_i2d.fits")), "SCI").shape
    # tweakreg moves the exposures by a fraction of a pixel before resample
    assert abs(predicted[0] - actual[0]) <= 8 and abs(predicted[1] - actual[1]) <= 8


@pytest.fixture(scope="module")
def runs(sim, good_asn, tmp_path_factory):
    """The default run and a run with a --max-memory below the in-memory estimate, side by side."""
    estimate = mosaic.estimate_association("x", _members(good_asn), {})
    tight = (estimate.in_memory_bytes + estimate.on_disk_bytes) // 2
    default_out = tmp_path_factory.mktemp("mosaic_default")
    disk_out = tmp_path_factory.mktemp("mosaic_disk")
    disk = subprocess.Popen(
        [JWSTRUN, "image3", str(good_asn), "-o", str(disk_out), "-j", "1", "--max-memory",
         str(tight), "--crds-env", str(sim.env_file), "--no-progress", "--json"],
        env=_env(sim), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        result = CliRunner().invoke(cli, [
            "image3", str(good_asn), "-o", str(default_out), "-j", "1", "--crds-env",
            str(sim.env_file), "--no-progress", "--json", "--no-report",
        ])
        disk_stdout, disk_stderr = disk.communicate(timeout=900)
    finally:
        if disk.poll() is None:
            disk.kill()
    assert result.exit_code == 0, result.output
    assert disk.returncode == 0, disk_stderr[-3000:]
    return {
        "default": (default_out, json.loads(result.stdout)),
        "disk": (disk_out, json.loads(disk_stdout)),
        "estimate": estimate,
        "tight": tight,
    }


def _members(asn: Path) -> list[Path]:
    data = json.loads(asn.read_text())
    return [asn.parent / m["expname"] for m in data["products"][0]["members"]]


@pytest.fixture(scope="module")
def default_run(runs):
    return runs["default"]


def test_tight_budget_switches_to_on_disk_mode(runs):
    out, summary = runs["disk"]
    (task,) = summary["tasks"]
    assert task["status"] == "ok"
    memory = task["memory"]
    assert memory["mode"] == "on_disk"
    assert memory["share_bytes"] == runs["tight"]
    assert memory["estimate_bytes"] == runs["estimate"].on_disk_bytes
    manifest = json.loads((out / "jwstrun-manifest.json").read_text())
    record = manifest["tasks"][task["task_id"]]
    assert record["parameters"]["in_memory"] is False
    assert record["memory"]["mode"] == "on_disk" and record["peak_rss_mb"] > 100
    assert record["resolved_parameters"]["in_memory"] is False  # as stpipe logged it
    # the on-disk temporary files lived in the task's directory, removed with it
    assert not (out / ".jwstrun-tmp").exists()
    report = (out / "jwstrun-report.html").read_text()
    assert "est. " in report and "on disk mode" in report


def test_default_run_stays_in_memory(runs):
    _out, summary = runs["default"]
    (task,) = summary["tasks"]
    assert task["memory"]["mode"] == "in_memory"
    assert "in_memory" not in json.dumps(task.get("parameters") or {})


def test_on_disk_products_are_identical(runs):
    from astropy.io import fits

    default_out, _ = runs["default"]
    disk_out, _ = runs["disk"]
    names = sorted(p.name for p in default_out.glob("*_i2d.fits")) + sorted(
        p.name for p in default_out.glob("*_crf.fits"))
    assert len(names) == 5
    for name in names:
        with fits.open(default_out / name) as ours, fits.open(disk_out / name) as theirs:
            for ext in ("SCI", "ERR", "DQ"):
                if ext == "DQ" and name.endswith("_i2d.fits"):
                    continue  # resample writes no DQ array unless propagate_dq
                a, b = ours[ext].data, theirs[ext].data
                assert a.shape == b.shape, (name, ext)
                assert np.array_equal(a, b, equal_nan=True), (name, ext)


def test_budget_is_split_between_concurrent_associations(caldir, good_asn):
    from jwstrun.runner.plan import plan_image3, plan_memory

    cal = sorted(p for p in caldir.glob("*_cal.fits") if "_00005_" not in p.name)
    other = _association(caldir, cal, "other_asn.json", product="jw01234-o001_t001_other")
    planned = plan_image3([good_asn, other], caldir)
    estimate = mosaic.estimate_association("x", cal, {})
    # one at a time fits in memory; two at a time each get the midpoint: on disk
    budget = estimate.in_memory_bytes + estimate.on_disk_bytes
    plan_memory(planned, {}, 2, "local", max_memory=budget)
    assert [p.memory.mode for p in planned] == ["on_disk", "on_disk"]
    assert {p.memory.share_bytes for p in planned} == {budget // 2}
    plan_memory(planned, {}, 1, "local", max_memory=budget)
    assert [p.memory.mode for p in planned] == ["in_memory", "in_memory"]
    # refused, but only if they have to run (run_tasks raises it after the resume check)
    plan_memory(planned, {}, 2, "local", max_memory=estimate.on_disk_bytes)
    assert all(p.memory is None for p in planned)
    assert all(isinstance(p.refused, mosaic.MosaicRefused) for p in planned)
    assert all(isinstance(p.refused, InputError) for p in planned)
    assert "/ 2 concurrent associations)" in str(planned[0].refused)
    assert "run fewer associations at once (-j)" in str(planned[0].refused)
    assert f"the budget is --max-memory {mosaic.format_bytes(estimate.on_disk_bytes)}." \
        in str(planned[0].refused)


def test_two_associations_side_by_side_each_within_its_share(sim, caldir, tmp_path):
    """-j 2 on two associations (two exposures each): each gets half of the budget and its
    measured peak stays within it (with two exposures the on-disk mode would need more,
    so a share that holds the in-memory estimate is what they get)."""
    cal = sorted(p for p in caldir.glob("*_cal.fits") if "_00005_" not in p.name)
    pairs = [cal[:2], cal[2:]]
    asns = [_association(caldir, pair, f"pair{i}_asn.json", product=f"jw01234-o001_t001_pair{i}")
            for i, pair in enumerate(pairs)]
    estimates = [mosaic.estimate_association("x", pair, {}) for pair in pairs]
    assert all(e.on_disk_bytes > e.in_memory_bytes for e in estimates)
    share = max(e.in_memory_bytes for e in estimates)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "image3", *map(str, asns), "-o", str(out), "-j", "2", "--max-memory", str(2 * share),
        "--crds-env", str(sim.env_file), "--no-progress", "--no-report", "--json",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    tasks = json.loads(result.stdout)["tasks"]
    assert len(tasks) == 2
    for task in tasks:
        assert task["status"] == "ok"
        assert task["memory"]["mode"] == "in_memory"
        assert task["memory"]["share_bytes"] == share
        assert "/ 2 concurrent associations" in task["memory"]["reason"]
        # the estimate is within 25 % of the measured peak (docs/benchmarks.md)
        assert task["peak_rss_mb"] * 1e6 <= 1.25 * share
    assert len(list(out.glob("*_i2d.fits"))) == 2


def test_max_mosaic_pixels_accepts_what_the_docs_write():
    import click

    from jwstrun.cli._run_options import PixelCount

    pixels = PixelCount()
    assert pixels.convert("2e9", None, None) == 2_000_000_000
    assert pixels.convert("2_000_000", None, None) == 2_000_000
    assert pixels.convert("150000000", None, None) == 150_000_000
    for bad in ("2.5", "0", "-3", "lots", "1e-3"):
        with pytest.raises(click.BadParameter):
            pixels.convert(bad, None, None)


def test_spec_bool_reads_booleans_as_stpipe_does():
    from configobj import validate

    from jwstrun.mosaic import spec_bool

    check = validate.Validator()
    for value in (True, False, 1, 0, "True", "false", "YES", "no", "on", "Off", "1", "0"):
        assert spec_bool(value) is check.check("boolean", value)
    for value in (None, "maybe", "", 2, "2"):
        assert spec_bool(value) is None


def test_up_to_date_product_is_not_refused_on_a_tighter_rerun(sim, good_asn, default_run):
    """The preflight refuses only what has to run: a re-run with a --max-memory that
    nothing fits skips the finished association; with --force it is refused, unrecorded."""
    out, _summary = default_run
    manifest = out / "jwstrun-manifest.json"
    runs_before = len(json.loads(manifest.read_text())["runs"])
    products = {p.name: p.stat().st_mtime_ns for p in out.glob("*.fits")}
    args = ["image3", str(good_asn), "-o", str(out), "-j", "1", "--crds-env", str(sim.env_file),
            "--no-progress", "--no-report", "--max-memory", "1MB"]
    again = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["counts"]["skipped"] == 1
    forced = CliRunner().invoke(cli, [*args, "--force"])
    assert forced.exit_code == 1
    message = " ".join(forced.output.split())
    # with 1 MB even the default mosaic-size limit (derived from the budget) refuses, and
    # says so: the option given is --max-memory (tests/reliability/test_bad_input.py: exact)
    assert "the mosaic would be" in message and "nothing was run" in message
    assert "whose arrays fit the memory budget (--max-memory 1 MB)." in message
    assert "--max-mosaic-pixels" not in message
    assert "Traceback" not in forced.output
    assert len(json.loads(manifest.read_text())["runs"]) == runs_before + 1  # the skip run only
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.fits")} == products
    assert not (out / ".jwstrun-tmp").exists()
