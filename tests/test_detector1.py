"""``jwstrun detector1``: calwebb_detector1 over _uncal ramps through the stage table.

One simulated NIRCam SUB160 exposure (5 groups, the simulator's ramps and Stage-1
references: bias, dark, non-linearity, saturation, cosmic rays) is reduced by
``jwstrun detector1`` with jwstrun's own choice of parallelism and, at the same time,
by ``strun calwebb_detector1`` with the same parameters: the _rate and _rateints
arrays are identical, and so are their step statuses.  With one exposure and more
than one CPU, jwstrun runs it with jump and ramp_fit on every core (the manifest
says so) -- a choice that must not change a pixel.  The same module checks the
validation, resume, ``jwstrun image2 --from uncal`` and the error texts; the choice
of parallelism itself is checked without a pipeline run.
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

from jwstrun.cli import cli
from jwstrun.errors import ConfigError
from jwstrun.stages import get_stage

VENV_BIN = Path(sys.executable).parent
STRUN = shutil.which("strun", path=str(VENV_BIN)) or shutil.which("strun")
JWSTRUN = shutil.which("jwstrun", path=str(VENV_BIN)) or shutil.which("jwstrun")
#: one parameter set on both sides, as --set and as strun's --steps.
PARAMETER = ("steps.jump.rejection_threshold", "5")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from jwstrun.simulate import simulate_program

    outdir = tmp_path_factory.mktemp("detector1") / "sim"
    return simulate_program(outdir, detectors=["NRCB1"], filters=["F200W"], subarray="SUB160",
                            n_dithers=1, uncal=True, ngroups=5, uncal_nints=1, seed=5)


@pytest.fixture(scope="module")
def runs(sim):
    """``jwstrun detector1`` (its default -j) and ``strun calwebb_detector1``, side by side."""
    root = sim.outdir.parent
    ours, theirs = root / "jwstrun", root / "strun"
    theirs.mkdir()
    key, value = PARAMETER
    strun = subprocess.Popen(
        [STRUN, "calwebb_detector1", str(sim.uncal_files[0]), f"--output_dir={theirs}",
         f"--{key}={value}"],
        env={**os.environ, **sim.env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    mine = subprocess.run(
        [JWSTRUN, "detector1", str(sim.outdir), "-o", str(ours), "--crds-env", str(sim.env_file),
         "--no-progress", "--json", "--set", f"{key}={value}"],
        capture_output=True, text=True, timeout=600)
    log, _ = strun.communicate(timeout=600)
    assert mine.returncode == 0, mine.stdout[-3000:] + mine.stderr[-3000:]
    assert strun.returncode == 0, log[-3000:]
    return ours, theirs, json.loads(mine.stdout)


def _status(header) -> dict:
    return {k: v for k, v in header.items() if k.startswith("S_")}


def test_rate_products_equal_strun(sim, runs):
    from astropy.io import fits

    ours, theirs, summary = runs
    base = sim.uncal_files[0].name.removesuffix("_uncal.fits")
    names = [f"{base}_rate.fits", f"{base}_rateints.fits"]
    assert sorted(p.name for p in ours.glob("*.fits")) == names
    assert sorted(p.name for p in theirs.glob("*.fits")) == names
    (task,) = summary["tasks"]
    assert task["status"] == "ok" and sorted(task["outputs"]) == names
    for name in names:
        with fits.open(ours / name) as a, fits.open(theirs / name) as b:
            for ext in ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE"):
                np.testing.assert_array_equal(a[ext].data, b[ext].data, err_msg=f"{name}[{ext}]")
            assert _status(a[0].header) == _status(b[0].header)
            assert a[0].header["S_RAMP"] == "COMPLETE" and a[0].header["S_JUMP"] == "COMPLETE"
            assert a["SCI"].header["BUNIT"] == b["SCI"].header["BUNIT"] == "DN/s"


def test_products_valid_and_parallelism_recorded(runs):
    from jwstrun._system import cpu_count
    from jwstrun.validate import validate_file

    ours, _theirs, summary = runs
    for path in ours.glob("*.fits"):
        report = validate_file(path)
        assert report.ok and report.findings == [], [f.message for f in report.findings]
    manifest = json.loads((ours / "jwstrun-manifest.json").read_text())
    recorded = manifest["runs"][-1]["parallelism"]
    assert recorded == summary["parallelism"]
    if cpu_count() > 1:  # one exposure, several cores: inside jump and ramp_fit
        assert recorded == {
            "mode": "in_step", "jobs": 1, "maximum_cores": str(cpu_count()),
            "steps": ["jump", "ramp_fit"],
            "reason": f"1 exposure for {cpu_count()} CPUs: jump and ramp_fit use "
                      f"{cpu_count()} cores"}
        log = next((ours / "logs").glob("detector1-*.log")).read_text()
        assert f"Creating {cpu_count()} processes for jump detection" in log
    # the choice is not a parameter of the products: not in the record, nor its fingerprint
    (record,) = manifest["tasks"].values()
    assert record["parameters"] == {"steps": {"jump": {"rejection_threshold": 5.0}}}


def test_rerun_serially_is_up_to_date(sim, runs):
    ours, _theirs, _summary = runs
    key, value = PARAMETER
    result = CliRunner().invoke(cli, [
        "detector1", str(sim.uncal_files[0]), "-o", str(ours), "-j", "1", "--crds-env",
        str(sim.env_file), "--no-progress", "--json", "--set", f"{key}={value}"],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"total": 1, "ok": 0, "skipped": 1, "failed": 0}
    assert summary["parallelism"]["mode"] == "serial"


def test_image2_from_uncal_runs_detector1_first(sim, runs):
    """detector1 (up to date from the fixture: the same parameters; one --set list serves
    both stages, each key going to the stage that has its step) then image2, both in
    OUTDIR's manifest."""
    ours, _theirs, _summary = runs
    key, value = PARAMETER
    result = CliRunner().invoke(cli, [
        "image2", "--from", "uncal", str(sim.uncal_files[0]), "-o", str(ours), "-j", "1",
        "--crds-env", str(sim.env_file), "--no-progress", "--json", "--set",
        f"{key}={value}", "--set", "steps.resample.skip=true"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["pipeline"] == "image2" and summary["before"]["pipeline"] == "detector1"
    assert summary["before"]["counts"]["skipped"] == 1
    assert summary["counts"] == {"total": 1, "ok": 1, "skipped": 0, "failed": 0}
    base = sim.uncal_files[0].name.removesuffix("_uncal.fits")
    assert (ours / f"{base}_cal.fits").is_file()
    manifest = json.loads((ours / "jwstrun-manifest.json").read_text())
    assert sorted(manifest["tasks"]) == [f"detector1-{base}", f"image2-{base}"]


def test_image2_given_uncal_says_to_run_detector1(sim, tmp_path):
    uncal = sim.uncal_files[0]
    result = CliRunner().invoke(cli, ["image2", str(uncal), "-o", str(tmp_path / "out"),
                                      "--crds-env", str(sim.env_file)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: {uncal}: is an _uncal file (raw ramps, Stage 0): run 'jwstrun detector1 "
        f"{uncal} -o OUTDIR' first, then give the _rate file it writes to jwstrun image2 "
        "('jwstrun image2 --from uncal' runs both)."]
    assert not (tmp_path / "out").exists()


def test_workers_and_maximum_cores_together_are_refused(sim, tmp_path):
    result = CliRunner().invoke(cli, [
        "detector1", str(sim.uncal_files[0]), "-o", str(tmp_path / "out"), "-j", "2",
        "--crds-env", str(sim.env_file), "--set", "steps.jump.maximum_cores=all"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: step jump: maximum_cores=all cannot be combined with -j 2: each of the 2 "
        "workers would start its own processes and overload the machine (jwst issues 8383, "
        "8743). Use -j 1 to let the step use several cores, or drop the maximum_cores "
        "setting."]
    assert not (tmp_path / "out").exists()


def test_detector1_given_a_rate_file_says_where_it_goes(sim, tmp_path):
    (rate,) = sim.rate_files
    result = CliRunner().invoke(cli, ["detector1", str(rate), "-o", str(tmp_path / "out"),
                                      "--crds-env", str(sim.env_file)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: {rate}: is a _rate product, already processed by calwebb_detector1. Give "
        "_uncal files to detector1, or give this file to 'jwstrun image2'."]


# ----------------------------------------------------------------- the choice, no pipeline


def _choice(n_tasks, jobs=None, sets=None, cpus=4, executor="local"):
    from jwstrun.runner._cores import choose_parallelism

    parameters = {"steps": {step: {"maximum_cores": value}
                            for step, value in (sets or {}).items()}} if sets else {}
    return choose_parallelism(get_stage("detector1"), n_tasks, jobs, parameters, 0.0,
                              cpus=cpus, executor=executor)


def test_parallelism_across_exposures_when_there_are_enough():
    choice = _choice(4)
    assert (choice.mode, choice.jobs, choice.maximum_cores) == ("exposures", 4, None)
    assert choice.reason == "4 exposures for 4 CPUs; 4 workers (4 CPUs)"
    assert _choice(9).jobs == 4
    assert _choice(2, jobs=2).mode == "exposures"


def test_parallelism_inside_the_steps_when_exposures_are_fewer_than_cores():
    choice = _choice(3)
    assert (choice.mode, choice.jobs, choice.maximum_cores) == ("in_step", 1, "4")
    assert choice.reason == "3 exposures for 4 CPUs: jump and ramp_fit use 4 cores"
    assert choice.threads_limited
    # the user's own maximum_cores, without -j: one worker, the user's value
    mine = _choice(8, sets={"ramp_fit": "half"})
    assert (mine.mode, mine.jobs, mine.maximum_cores) == ("in_step", 1, None)
    assert mine.reason == "steps.ramp_fit.maximum_cores=half set"
    serial = _choice(3, jobs=1)
    assert (serial.mode, serial.jobs, serial.threads_limited) == ("serial", 1, False)
    assert _choice(1, cpus=1).mode == "serial"


def test_parallelism_refuses_oversubscription_and_leaves_other_stages_alone():
    with pytest.raises(ConfigError) as info:
        _choice(4, jobs=2, sets={"jump": "all"})
    assert str(info.value) == (
        "step jump: maximum_cores=all cannot be combined with jobs=2: each of the 2 workers "
        "would start its own processes and overload the machine (jwst issues 8383, 8743). "
        "Use jobs=1 to let the step use several cores, or drop the maximum_cores setting.")
    assert _choice(4, jobs=1, sets={"jump": "1"}).mode == "serial"  # one core is no conflict
    assert _choice(4, executor="dask") is None  # Dask workers are pool workers
    from jwstrun.runner._cores import choose_parallelism

    assert choose_parallelism(get_stage("image2"), 1, None, {}, 0.0) is None


def test_worker_gives_the_core_steps_the_chosen_cores():
    """In a task of the in-step mode, jump and ramp_fit get maximum_cores (unless the user
    set it); in a pool, '1'; with one worker and one core the worker limits nothing."""
    from jwst.pipeline import Detector1Pipeline

    from jwstrun.runner._parent import worker_env
    from jwstrun.runner.task import _pool_parameters

    given = {"steps": {"jump": {"maximum_cores": "3"}}}
    assert _pool_parameters(Detector1Pipeline, given, "4")["steps"] == {
        "jump": {"maximum_cores": "3"}, "ramp_fit": {"maximum_cores": "4"}}
    assert _pool_parameters(Detector1Pipeline, {})["steps"] == {
        "jump": {"maximum_cores": "1"}, "ramp_fit": {"maximum_cores": "1"}}
    env = worker_env({}, None, None, True)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        assert env[var] == os.environ.get(var, "1")


def test_strun_spelling_gets_the_set_hint(tmp_path):
    result = CliRunner().invoke(cli, ["detector1", "x_uncal.fits", "-o", str(tmp_path / "out"),
                                      "--steps.jump.rejection_threshold=5"])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        "Error: No such option '--steps.jump.rejection_threshold'. jwstrun takes step "
        "parameters as --set steps.jump.rejection_threshold=5 (strun's "
        "--steps.STEP.PARAM=VALUE spelling).")
