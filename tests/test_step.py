"""``jwstrun step NAME``: any stpipe step over many files (issue 17, item 1).

One simulated NIRCam SUB64P program (three dithers, the truth-carrying simulator of
jwstrun.simulate) serves every test:

- ``jwstrun step clean_flicker_noise`` with -j 2 against ``strun clean_flicker_noise FILE
  --skip=False`` run on each file: the same files, SCI/DQ/ERR equal to the bit, and the
  one line saying that the step, skipped by default in pipelines, runs;
- ``jwstrun step snowblind`` over the three files with -j 2, then again (resume: nothing
  runs), its S_SNOWBL status and the manifest's snowblind version and parameters;
- ``jwstrun step persist`` over the set with _jump files written here (RampModel with
  SATURATED pixels in the first exposure): one task, in start-time order, the later
  exposures flagged, the first not;
- the errors, by their exact text.
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
from astropy.io import fits
from click.testing import CliRunner

from jwstrun.cli import cli

VENV_BIN = Path(sys.executable).parent
STRUN = shutil.which("strun", path=str(VENV_BIN)) or shutil.which("strun")
JWSTRUN = shutil.which("jwstrun", path=str(VENV_BIN)) or shutil.which("jwstrun")
SKIP_LINE = (
    "clean_flicker_noise: its spec skips it by default (skip = True, for pipelines that "
    "include it); named on its own it runs, as 'strun clean_flicker_noise' runs it (stpipe "
    "sets skip to False for a step run on its own)."
)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from jwstrun.simulate import simulate_program

    root = tmp_path_factory.mktemp("step")
    return simulate_program(root / "sim", subarray="SUB64P", n_dithers=3, seed=5)


def _arrays(path: Path) -> dict:
    with fits.open(path) as hdul:
        return {name: hdul[name].data.copy() for name in ("SCI", "DQ", "ERR")}


@pytest.fixture(scope="module")
def cleaned(sim):
    """jwstrun step clean_flicker_noise (-j 2 over the three files; and with autoparam on
    the last) and strun on the same files with the same parameters, side by side."""
    root = sim.outdir.parent
    ours, auto, theirs, theirs_auto = (root / name for name in
                                       ("clean", "auto", "strun", "strun-auto"))
    for directory in (theirs, theirs_auto):
        directory.mkdir()
    strun = [(sim.rate_files[0], theirs, []), (sim.rate_files[1], theirs, []),
             (sim.rate_files[2], theirs_auto, ["--autoparam=True"])]
    runs = [subprocess.Popen(
        [STRUN, "clean_flicker_noise", str(path), "--skip=False", f"--output_dir={out}", *extra],
        cwd=out, env={**os.environ, **sim.env}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True) for path, out, extra in strun]
    common = ["--crds-env", str(sim.env_file), "--offline", "--no-progress"]
    mine = subprocess.Popen(
        [JWSTRUN, "step", "clean_flicker_noise", *map(str, sim.rate_files), "-o", str(ours),
         "-j", "2", *common], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with_auto = subprocess.run(
        [JWSTRUN, "step", "clean_flicker_noise", str(sim.rate_files[2]), "-o", str(auto),
         "-j", "1", "--set", "autoparam=true", *common], capture_output=True, text=True,
        timeout=600)
    out, err = mine.communicate(timeout=600)
    logs = [run.communicate(timeout=600)[0] for run in runs]
    assert mine.returncode == 0, out[-3000:] + err[-3000:]
    assert with_auto.returncode == 0, with_auto.stdout[-3000:] + with_auto.stderr[-3000:]
    assert all(run.returncode == 0 for run in runs), logs
    return ours, theirs, err, auto, theirs_auto


def _assert_equal(ours: Path, theirs: Path) -> None:
    for path in theirs.glob("*.fits"):
        mine, strun = _arrays(ours / path.name), _arrays(path)
        for name in ("SCI", "DQ", "ERR"):
            assert np.array_equal(mine[name], strun[name], equal_nan=True), (path.name, name)
        with fits.open(ours / path.name) as hdul:
            assert hdul[0].header["S_CLNFNS"] == "COMPLETE"


def test_clean_flicker_noise_products_equal_strun(sim, cleaned):
    ours, theirs, stderr, auto, theirs_auto = cleaned
    names = sorted(p.name for p in ours.glob("*.fits"))
    assert names == sorted(p.name.replace("_rate.fits", "_cleanflickernoisestep.fits")
                           for p in sim.rate_files)
    assert sorted(p.name for p in theirs.glob("*.fits")) == names[:2]
    _assert_equal(ours, theirs)
    # with autoparam (NIRCam imaging parameters chosen from the data and the flat)
    assert [p.name for p in auto.glob("*.fits")] == [p.name for p in theirs_auto.glob("*.fits")]
    _assert_equal(auto, theirs_auto)
    assert not np.array_equal(_arrays(auto / names[2])["SCI"], _arrays(ours / names[2])["SCI"])
    # the step pipelines skip by default ran, and the line says so
    assert SKIP_LINE in stderr
    for path in sim.rate_files:  # never an unchanged copy
        with fits.open(path) as raw, fits.open(
                ours / path.name.replace("_rate", "_cleanflickernoisestep")) as done:
            assert not np.array_equal(raw["SCI"].data, done["SCI"].data)


def test_snowblind_over_several_files_and_resume(sim):
    from jwstrun import run_step

    outdir = sim.outdir.parent / "snow"
    files = [str(p) for p in sim.rate_files]
    first = run_step("snowblind", files, outdir, jobs=2, crds_env_file=str(sim.env_file))
    assert [r.status for r in first.results] == ["ok"] * 3 and first.jobs == 2
    for path in sim.rate_files:
        name = path.name.replace("_rate", "_snowblindstep")
        assert fits.getheader(outdir / name)["S_SNOWBL"] == "COMPLETE"
    record = next(iter(json.loads((outdir / "jwstrun-manifest.json").read_text())
                       ["tasks"].values()))
    assert record["pipeline"] == "snowblind" and record["pipeline_class"] == "SnowblindStep"
    assert record["versions"]["snowblind"] == "1.0.1"
    assert record["resolved_parameters"]["growth_factor"] == 2.0
    again = run_step("snowblind", files, outdir, jobs=2, crds_env_file=str(sim.env_file))
    assert [r.status for r in again.results] == ["skipped"] * 3


def _write_jump_files(folder: Path, rates: list[Path]) -> None:
    """A _jump file beside each rate (RampModel: one integration, two groups); the first
    exposure has SATURATED pixels in a 4x4 box."""
    from stdatamodels.jwst import datamodels

    for index, rate in enumerate(rates):
        shutil.copy(rate, folder / rate.name)
        with datamodels.open(rate) as model:
            ramp = datamodels.RampModel((1, 2, *model.data.shape))
            ramp.update(model, only="PRIMARY")
        ramp.meta.filename = rate.name.replace("_rate", "_jump")
        if index == 0:
            ramp.groupdq[0, :, 10:14, 20:24] = datamodels.dqflags.group["SATURATED"]
        ramp.save(folder / ramp.meta.filename)
        ramp.close()


def test_persist_runs_once_over_the_set_in_time_order(sim):
    from jwstrun import run_step

    folder = sim.outdir.parent / "with_jump"
    folder.mkdir()
    rates = sorted(sim.rate_files, key=lambda p: fits.getheader(p)["EXPSTART"])
    _write_jump_files(folder, rates)
    outdir = sim.outdir.parent / "persist"
    # given latest first: the task takes them in start-time order
    summary = run_step("persist", [str(folder / p.name) for p in rates[::-1]], outdir,
                       crds_env_file=str(sim.env_file))
    (result,) = summary.results
    assert result.status == "ok", result.error
    task = summary.tasks[result.task_id]
    assert [Path(p).name for p in task.call_inputs] == [p.name for p in rates]
    flagged = []
    for rate in rates:
        with fits.open(outdir / rate.name.replace("_rate", "_persistenceflagstep")) as hdul:
            assert hdul[0].header["S_PERSIS"] == "COMPLETE"
            flagged.append(int(((hdul["DQ"].data & 32) > 0)[10:14, 20:24].sum()))
    assert flagged == [0, 16, 16]


# --------------------------------------------------------------------------- errors


def _error(*args) -> str:
    result = CliRunner().invoke(cli, ["step", *args])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_unknown_step_names_the_nearest_aliases(sim, tmp_path):
    assert _error("clean_flicker_nose", str(sim.rate_files[0]), "-o", str(tmp_path / "o")) == (
        "Error: unknown step 'clean_flicker_nose': not a class alias registered with stpipe "
        "nor an import path (package.module.Class). Did you mean clean_flicker_noise? "
        "'stpipe list' lists the aliases.")
    assert not (tmp_path / "o").exists()


def test_import_path_that_is_not_a_step(sim, tmp_path):
    assert _error("jwstrun.stages.Stage", str(sim.rate_files[0]), "-o", str(tmp_path)) == (
        "Error: 'jwstrun.stages.Stage' is not an stpipe Step or Pipeline class (Class Stage "
        "from package jwstrun.stages is not a subclass of Step). Give a class alias such as "
        "clean_flicker_noise or the import path of a Step subclass.")
    assert _error("calwebb_image2", str(sim.rate_files[0]), "-o", str(tmp_path)) == (
        "Error: 'calwebb_image2' is the stage image2: run 'jwstrun image2', which runs it "
        "with jwstrun's associations and checks.")


def test_bad_parameters_are_checked_against_the_steps_spec(sim, tmp_path):
    rate = str(sim.rate_files[0])
    assert _error("clean_flicker_noise", rate, "-o", str(tmp_path), "--set",
                  "fit_method=fast") == (
        "Error: --set fit_method=fast: 'fast' is not an allowed value; choose one of "
        "'fft', 'median'")
    assert _error("snowblind", rate, "-o", str(tmp_path), "--set", "growth=3") == (
        "Error: --set growth=3: unknown parameter 'growth' for snowblind in snowblind; did "
        "you mean 'growth_factor'?")
    assert _error("snowblind", rate, "-o", str(tmp_path), "--growth_factor=3") == (
        "Error: No such option '--growth_factor'. jwstrun takes step parameters as --set "
        "growth_factor=3 (strun's --PARAM=VALUE spelling).")
    assert not list(tmp_path.iterdir())


def test_a_profile_section_named_after_the_step(tmp_path):
    from jwstrun.profiles import build_call_parameters

    profile = tmp_path / "clean.yaml"
    profile.write_text("clean_flicker_noise:\n  fit_method: fft\n  n_sigma: 3\n")
    assert build_call_parameters("clean_flicker_noise", [str(profile)], ["n_sigma=2.5"]) == {
        "fit_method": "fft", "n_sigma": 2.5}
    # an import path of the same class is the same row, named after the alias
    from jwstrun.stages import get_stage, step_stage

    row = step_stage("jwst.step.CleanFlickerNoiseStep")
    assert row.name == "clean_flicker_noise" and get_stage("clean_flicker_noise") == row


def test_a_file_of_the_wrong_product_type(sim, tmp_path):
    cal = tmp_path / sim.rate_files[0].name.replace("_rate", "_cal")
    shutil.copy(sim.rate_files[0], cal)
    with fits.open(cal, mode="update") as hdul:
        hdul[0].header["S_FLAT"] = "COMPLETE"
        hdul[0].header["S_PHOTOM"] = "COMPLETE"
    assert _error("clean_flicker_noise", str(cal), "-o", str(tmp_path / "o"),
                  "--crds-env", str(sim.env_file)) == (
        f"Error: {cal}: is a _cal product; clean_flicker_noise takes _rate/_rateints files. "
        "Give it *_rate.fits or *_rateints.fits files (jwstrun step clean_flicker_noise "
        "FILES -o OUTDIR).")
    assert not (tmp_path / "o").exists()


def test_persist_without_jump_files(sim, tmp_path):
    jump = sim.rate_files[0].parent / sim.rate_files[0].name.replace("_rate", "_jump")
    assert _error("persist", *map(str, sim.rate_files), "-o", str(tmp_path / "o"),
                  "--crds-env", str(sim.env_file)) == (
        f"Error: {jump}: not found; persist reads the _jump file of each input from the "
        "inputs' directory. To make them, run calwebb_detector1 with "
        "steps.jump.save_results=true ('strun calwebb_detector1 FILE_uncal.fits "
        "--steps.jump.save_results=true') and keep the _jump files beside the _rate files.")
    assert not (tmp_path / "o").exists()


def test_image2_names_a_step_product_as_jwst_does():
    """A step's product given to image2: the product name is what jwst's remove_suffix
    leaves (the _cal that calwebb_image2 writes), not the file name's stem."""
    from jwstrun.runner.plan import _exposure_product

    assert _exposure_product(Path("jw01_nrcb1_cleanflickernoisestep.fits")) == "jw01_nrcb1"
    assert _exposure_product(Path("jw01_nrcb1_rate.fits")) == "jw01_nrcb1"
    # a suffix jwst does not know stays, as calwebb_image2 keeps it
    assert _exposure_product(Path("jw01_nrcb1_snowblindstep.fits")) == "jw01_nrcb1_snowblindstep"


def test_a_product_never_replaces_its_input(sim, cleaned):
    ours = cleaned[0]
    product = sorted(ours.glob("*_cleanflickernoisestep.fits"))[0]
    before = product.stat().st_mtime_ns
    assert _error("clean_flicker_noise", str(product), "-o", str(ours),
                  "--crds-env", str(sim.env_file)) == (
        f"Error: {product}: is an input, and clean_flicker_noise would write its product of "
        "the same name over it. Choose another -o OUTDIR.")
    assert product.stat().st_mtime_ns == before


def test_reference_types_of_a_step_on_its_own():
    from jwstrun import refs

    assert refs.reftypes_for("clean_flicker_noise") == [
        "flat", "pastasoss", "pars-cleanflickernoisestep"]
    assert refs.reftypes_for("snowblind", pars=False) == []


def test_a_step_that_gives_up_writes_no_unchanged_copy(sim):
    """fit_method=fft cannot be applied to NIRCam imaging: jwst records S_CLNFNS FAILED and
    saves its input unchanged; the task fails and OUTDIR gets no product."""
    from jwstrun import run_step

    outdir = sim.outdir.parent / "fft"
    summary = run_step("clean_flicker_noise", [str(sim.rate_files[0])], outdir, jobs=1,
                       sets=["fit_method=fft"], crds_env_file=str(sim.env_file))
    (result,) = summary.results
    name = sim.rate_files[0].name.replace("_rate", "_cleanflickernoisestep")
    assert result.status == "failed"
    assert result.error == (
        f"{result.task_id}: products failed validation: {name}: S_CLNFNS is FAILED: "
        "clean_flicker_noise did not process this file (the task's log says why); its "
        "product is not written.")
    assert not list(outdir.glob("*.fits"))
