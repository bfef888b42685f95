"""``jwstrun image2`` / ``image3`` end to end on simulated data with the real pipelines.

One module-scoped simulation (NIRCam SUB320, two dithers) and one jwstrun
image2 run serve many small asserts: products, manifest, logs, resume, a
failing exposure that does not stop the other, untouched inputs, and equality
with ``strun calwebb_image2`` on the same files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from jwstrun.cli import cli

VENV_BIN = Path(sys.executable).parent
STRUN = shutil.which("strun", path=str(VENV_BIN)) or shutil.which("strun")
JWSTRUN = shutil.which("jwstrun", path=str(VENV_BIN)) or shutil.which("jwstrun")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def crds_env(sim: Path) -> dict:
    from jwstrun.refs import read_env_file

    env = dict(os.environ)
    env.update(read_env_file(sim / "crds.env"))
    return env


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from jwstrun.simulate import simulate_program

    outdir = tmp_path_factory.mktemp("run") / "sim"
    result = simulate_program(outdir, subarray="SUB320", n_dithers=2, seed=3)
    return result


@pytest.fixture(scope="module")
def broken(sim):
    """A _rate file that passes jwstrun's input checks (headers, SCI and ASDF present) but
    lacks the ERR extension its ASDF tree points at: fails inside the pipeline.
    (A file without SCI or ASDF is refused before the run: tests/reliability.)"""
    from astropy.io import fits

    source = sim.rate_files[0]
    path = source.with_name(source.name.replace("_00001_", "_00009_"))
    with fits.open(source) as hdul:
        kept = fits.HDUList([hdu.copy() for hdu in hdul if hdu.name != "ERR"])
    kept[0].header["EXPOSURE"] = 9
    kept[0].header["FILENAME"] = path.name
    kept.writeto(path)
    return path


@pytest.fixture(scope="module")
def image2(sim, broken, tmp_path_factory):
    """jwstrun image2 on both exposures plus the broken one, -j 2, and checksums around it."""
    inputs = [*sim.rate_files, broken]
    before = {p: sha256(p) for p in inputs}
    outdir = tmp_path_factory.mktemp("image2") / "out"
    runner = CliRunner()
    args = ["image2", *map(str, inputs), "-o", str(outdir), "-j", "2",
            "--crds-env", str(sim.env_file), "--no-progress"]
    result = runner.invoke(cli, args)
    after = {p: sha256(p) for p in inputs}
    return {"result": result, "outdir": outdir, "args": args, "before": before, "after": after,
            "inputs": inputs}


@pytest.fixture(scope="module")
def manifest(image2):
    return json.loads((image2["outdir"] / "jwstrun-manifest.json").read_text())


def _task(manifest, name_part):
    return next(v for k, v in manifest["tasks"].items() if name_part in k)


def test_image2_exit_code_and_summary_name_the_failure(image2, broken):
    result = image2["result"]
    assert result.exit_code == 1, result.output
    assert "2 ok" in result.output and "1 failed" in result.output
    assert "FAILED image2-" + broken.name.removesuffix("_rate.fits") in result.output
    log_name = f"image2-{broken.name.removesuffix('_rate.fits')}.log"
    assert f"log: {image2['outdir'] / 'logs' / log_name}" in result.output
    assert "Error: 1 of 3 task(s) failed" in result.output


def test_image2_products_in_outdir_only(image2, sim, broken):
    names = sorted(p.name for p in image2["outdir"].iterdir())
    expected = []
    for rate in sim.rate_files:
        base = rate.name.removesuffix("_rate.fits")
        expected += [f"{base}_cal.fits", f"{base}_i2d.fits"]
    # no report (nor previews) unless --report is given
    assert names == sorted([*expected, "jwstrun-manifest.json", "logs"])
    # the failed exposure left nothing that looks like a product, and no temp dir
    assert not list(image2["outdir"].glob(broken.name.replace("_rate.fits", "*")))


def test_inputs_never_modified(image2):
    assert image2["before"] == image2["after"]


def test_manifest_records_what_ran(manifest, sim):
    task = _task(manifest, sim.rate_files[0].name.removesuffix("_rate.fits"))
    assert task["status"] == "ok"
    assert task["inputs"][0]["sha256"] == sha256(sim.rate_files[0])
    assert task["versions"]["jwst"] and task["versions"]["stpipe"] and task["versions"]["crds"]
    assert task["crds_context"] == sim.crds_context
    refs = task["references"][task["outputs"][0]]
    assert refs["R_FLAT"].startswith("crds://") and refs["R_DISTOR"].startswith("crds://")
    assert task["peak_rss_mb"] > 100 and task["wall_s"] > 0
    assert task["start"] < task["end"]
    assert task["resolved_parameters"]["steps"]["resample"]["skip"] is False
    assert set(task["step_times"]) >= {"assign_wcs", "flat_field", "photom", "resample"}
    assert len(task["fingerprint"]) == 64
    assert task["log_file"].startswith("logs/")


def test_step_watcher_follows_the_real_pipeline(manifest, broken):
    """The runner follows stpipe's log records (jwstrun.runner._task_logging._StepWatcher): in a
    real image2 run every step that ran comes back in the manifest with a time and a
    status, the resolved parameters of every step are there, and a failure names its
    step. A change in how stpipe logs breaks this test instead of the report."""
    from jwstrun.manifest import TaskRecord, check_manifest
    from jwstrun.stages import get_stage

    clean, problems = check_manifest(manifest)
    assert problems == []
    stage = get_stage("image2")
    steps = set(stage.load_class().step_defs)
    # bkg_subtract runs only for exposures with background members (none here)
    ran = {stage.class_name, *steps} - {"bkg_subtract"}
    records = [TaskRecord.from_dict(r) for r in clean["tasks"].values()]
    ok = [r for r in records if r.status == "ok"]
    assert len(ok) == 2
    for record in ok:
        assert set(record.step_times) == ran, record.task_id
        assert all(isinstance(t, float) and t >= 0 for t in record.step_times.values())
        assert record.step_times[stage.class_name] >= sum(
            t for name, t in record.step_times.items() if name != stage.class_name)
        assert record.step_status == dict.fromkeys(ran, "done"), record.task_id
        parameters = record.resolved_parameters
        assert parameters and "_text" not in parameters
        assert set(parameters["steps"]) == steps
        assert all(parameters["steps"][name] for name in steps)
        assert parameters["steps"]["resample"]["skip"] is False
        assert parameters["save_results"] is True
    failed = next(r for r in records if broken.name.removesuffix("_rate.fits") in r.task_id)
    assert failed.status == "failed" and failed.failed_step
    assert failed.step_status[failed.failed_step] == "failed"


def test_image2_on_a_directory_takes_its_rate_files(image2, sim, tmp_path):
    """A directory given to image2 means the _rate/_rateints files in it (not its _cal
    files nor anything else): here the two exposures of the first run, up to date."""
    data = tmp_path / "data"
    data.mkdir()
    for rate in sim.rate_files:
        os.link(rate, data / rate.name)
    cal = next(image2["outdir"].glob("*_cal.fits"))
    shutil.copy(cal, data / cal.name)
    (data / "notes.txt").write_text("not an input")
    outdir = tmp_path / "out"
    shutil.copytree(image2["outdir"], outdir)
    result = CliRunner().invoke(cli, ["image2", str(data), "-o", str(outdir), "--crds-env",
                                      str(sim.env_file), "--no-progress", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"total": 2, "ok": 0, "skipped": 2, "failed": 0}
    assert sorted(t["task_id"] for t in summary["tasks"]) == sorted(
        "image2-" + p.name.removesuffix("_rate.fits") for p in sim.rate_files)


def test_a_mast_folder_through_image2_and_image3(mast_folder, tmp_path):
    """A folder as MAST delivers it (two science dithers, a dedicated background, a target
    acquisition, a grism exposure, an _uncal): 'jwstrun image2 mast/' reduces the science
    exposures with the background in their background step (S_BKDSUB COMPLETE; the
    background never a product), says in one line what it left out and in one line that it
    used the background, exits 0, and --json lists them; 'jwstrun image3 out/*_cal.fits'
    then makes the observation's mosaic from the science exposures alone."""
    from jwstrun.products import read_exposure_info

    outdir = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "image2", str(mast_folder.outdir), "-o", str(outdir), "-j", "1", "--no-progress",
        "--crds-env", str(mast_folder.env_file), "--json"])
    assert result.exit_code == 0, result.output
    assert [line for line in result.stderr.splitlines()
            if "Left out" in line or "BKGDTARG" in line] == [
        "WARNING Left out 3 of 6 files: 2 not direct imaging (1 NRC_TACQ, 1 NRC_WFSS; jwstrun "
        "image2 takes NRC_IMAGE, MIR_IMAGE, NIS_IMAGE, FGS_IMAGE exposures); 1 _uncal (raw "
        "ramps: run 'jwstrun detector1' on it, then give the _rate file it writes to "
        "jwstrun image2).",
        "INFO Using 1 dedicated background exposure (BKGDTARG=T) for the background step of "
        "2 science exposures; it is not reduced as science.",
    ]
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"total": 2, "ok": 2, "skipped": 0, "failed": 0}
    (background,) = mast_folder.background_files
    assert [t["backgrounds"] for t in summary["tasks"]] == [[background.name]] * 2
    ta, grism, uncal = mast_folder.extra_files
    assert [(i["path"], i["exp_type"], i["product_type"], i["reason"])
            for i in summary["left_out"]] == [
        (str(ta), "NRC_TACQ", "rate", "not_imaging"),  # in the directory's (name) order
        (str(uncal), "NRC_IMAGE", "uncal", "earlier_stage"),
        (str(grism), "NRC_WFSS", "rate", "not_imaging"),
    ]
    stems = [p.name.removesuffix("_rate.fits") for p in mast_folder.rate_files]
    assert sorted(p.name for p in outdir.glob("*.fits")) == sorted(
        f"{stem}_{suffix}.fits" for stem in stems for suffix in ("cal", "i2d"))
    for stem in stems:
        status = read_exposure_info(outdir / f"{stem}_cal.fits").step_status
        assert status["S_BKDSUB"] == "COMPLETE"

    stage3 = CliRunner().invoke(cli, [
        "image3", str(outdir / "*_cal.fits"), "-o", str(outdir), "--no-progress",
        "--crds-env", str(mast_folder.env_file), "--no-report", "--json"])
    assert stage3.exit_code == 0, stage3.output
    assert json.loads(stage3.stdout)["counts"] == {"total": 1, "ok": 1, "skipped": 0,
                                                   "failed": 0}
    assert "Left out" not in stage3.stderr
    product = "jw01234-o001_t001_nircam_clear-f200w-sub64p"
    assert sorted(p.name for p in outdir.glob("jw01234-*")) == [
        f"{product}_cat.ecsv", f"{product}_i2d.fits", f"{product}_image3_asn.json",
        f"{product}_segm.fits"]
    assert sorted(p.name for p in outdir.glob("*_crf.fits")) == [
        f"{stem}_o001_crf.fits" for stem in stems]
    background_stem = background.name.removesuffix("_rate.fits")
    assert not [p for p in outdir.rglob("*") if p.name.startswith(background_stem)]


def test_manifest_records_the_whole_command_line(image2):
    """runs[].command can be pasted again: the options are in it, not only the inputs;
    run again that way (with --offline), it finds the same work up to date."""
    import shlex

    manifest = json.loads((image2["outdir"] / "jwstrun-manifest.json").read_text())
    words = shlex.split(manifest["runs"][0]["command"])
    assert words[:2] == ["jwstrun", "image2"]
    assert {"--jobs", "2", "--crds-env", "--no-progress", "--output-dir"} <= set(words)
    assert [str(p) for p in image2["inputs"]] == words[-len(image2["inputs"]):]
    good = [w for w in words[1:] if "_00009_" not in w]  # without the broken exposure
    again = CliRunner().invoke(cli, [*good, "--offline", "--json"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["counts"]["skipped"] == 2


def test_manifest_records_the_failure(manifest, broken):
    task = _task(manifest, broken.name.removesuffix("_rate.fits"))
    assert task["status"] == "failed"
    assert task["error"].startswith("calwebb_image2 failed")
    assert broken.name in task["error"]
    assert task["outputs"] == []


def test_log_file_has_the_pipeline_lines(image2, sim):
    base = sim.rate_files[0].name.removesuffix("_rate.fits")
    text = (image2["outdir"] / "logs" / f"image2-{base}.log").read_text()
    assert " - stpipe.step - INFO - Step flat_field running with args" in text
    assert "Step Image2Pipeline done" in text


def test_products_equal_strun(image2, sim, tmp_path_factory):
    """strun calwebb_image2 on the same files gives identical SCI, ERR, DQ (and WHT/CON)."""
    from astropy.io import fits

    outdir = tmp_path_factory.mktemp("strun")
    for rate in sim.rate_files:
        proc = subprocess.run(
            [STRUN, "calwebb_image2", str(rate), "--output_dir", str(outdir)],
            env=crds_env(sim.outdir), capture_output=True, text=True, timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    compared = 0
    for ours in sorted(image2["outdir"].glob("*.fits")):
        theirs = outdir / ours.name
        assert theirs.exists(), ours.name
        with fits.open(ours) as a, fits.open(theirs) as b:
            for ext in ("SCI", "ERR", "DQ", "WHT", "CON"):
                if ext not in a and ext not in b:
                    continue
                np.testing.assert_array_equal(a[ext].data, b[ext].data, err_msg=f"{ours.name}[{ext}]")
                compared += 1
    assert compared == 2 * 3 + 2 * 4  # cal: SCI ERR DQ; i2d: SCI ERR WHT CON


def test_rerun_skips_up_to_date_and_redoes_changed(image2, sim):
    outdir = image2["outdir"]
    runner = CliRunner()
    good = [str(p) for p in sim.rate_files]
    base = ["image2", *good, "-o", str(outdir), "--crds-env", str(sim.env_file),
            "--no-progress", "--json"]
    first = runner.invoke(cli, base, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["counts"] == {"total": 2, "ok": 0, "skipped": 2, "failed": 0}
    # a changed input is redone even without --force
    manifest = json.loads((outdir / "jwstrun-manifest.json").read_text())
    task_id = next(k for k in manifest["tasks"] if sim.rate_files[0].name[:25] in k)
    manifest["tasks"][task_id]["fingerprint"] = "0" * 64
    (outdir / "jwstrun-manifest.json").write_text(json.dumps(manifest))
    second = runner.invoke(cli, [*base, "-j", "1"], catch_exceptions=False)
    assert second.exit_code == 0, second.output
    counts = json.loads(second.stdout)["counts"]
    assert counts == {"total": 2, "ok": 1, "skipped": 1, "failed": 0}


def test_quiet_after_the_command_is_the_same_as_before_it(image2, sim):
    """-q drops the plain progress lines (the summary on stdout stays), after the command too."""
    runner = CliRunner()
    base = ["image2", *map(str, sim.rate_files), "-o", str(image2["outdir"]), "--crds-env",
            str(sim.env_file), "--no-progress"]
    loud = runner.invoke(cli, base, catch_exceptions=False)
    after = runner.invoke(cli, [*base, "-q"], catch_exceptions=False)
    before = runner.invoke(cli, ["-q", *base], catch_exceptions=False)
    assert loud.exit_code == after.exit_code == before.exit_code == 0, loud.output
    assert "image2: 2 task(s), 0 to run, 2 up to date;" in loud.stderr
    assert loud.stderr.count("(up to date)") == 2
    assert after.stderr == before.stderr == ""
    assert "2 task(s): 0 ok, 2 up to date (skipped), 0 failed" in after.stdout


def test_rerun_trusts_unchanged_size_and_mtime_unless_checksum(image2, sim):
    """Resume reads no input whose size and mtime match the manifest (make/rsync's quick
    check); --checksum re-hashes and redoes an exposure edited behind that check's back."""
    outdir = image2["outdir"]
    path = sim.rate_files[1]
    original = path.read_bytes()
    stat = path.stat()
    marker = b"DATE    = '"
    at = original.index(marker) + len(marker)
    edited = original[:at] + (b"1" if original[at:at + 1] != b"1" else b"2") + original[at + 1:]
    runner = CliRunner()
    base = ["image2", *map(str, sim.rate_files), "-o", str(outdir), "--crds-env",
            str(sim.env_file), "--no-progress", "--json", "-j", "1"]
    try:
        path.write_bytes(edited)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime
        quick = runner.invoke(cli, base, catch_exceptions=False)
        assert quick.exit_code == 0, quick.output
        assert json.loads(quick.stdout)["counts"]["skipped"] == 2
        checked = runner.invoke(cli, [*base, "--checksum"], catch_exceptions=False)
        assert checked.exit_code == 0, checked.output
        assert json.loads(checked.stdout)["counts"] == {"total": 2, "ok": 1, "skipped": 1,
                                                        "failed": 0}
        manifest = json.loads((outdir / "jwstrun-manifest.json").read_text())
        task = _task(manifest, path.name[:25])
        assert task["inputs"][0]["sha256"] == hashlib.sha256(edited).hexdigest()
        assert task["inputs"][0]["mtime_ns"] == stat.st_mtime_ns
    finally:
        path.write_bytes(original)  # new mtime: the next run re-hashes and redoes it


def test_wrong_stage_inputs_are_refused_before_anything_runs(image2, sim, tmp_path):
    runner = CliRunner()
    cal = next(image2["outdir"].glob("*_cal.fits"))
    out = tmp_path / "never"
    result = runner.invoke(cli, ["image2", str(cal), "-o", str(out)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {cal}: is a _cal product, already processed by calwebb_image2. Give "
        "_rate/_rateints files to image2, or give this file to 'jwstrun image3'."
    )
    result = runner.invoke(cli, ["image3", str(sim.rate_files[0]), "-o", str(out)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {sim.rate_files[0]}: is a _rate exposure, not yet calibrated. Run 'jwstrun "
        "image2' on it first and give the resulting _cal files to image3."
    )
    assert not out.exists()


def test_missing_inputs_are_one_exact_line(tmp_path):
    runner = CliRunner()
    out = tmp_path / "never"
    for command in ("image2", "image3"):
        missing = tmp_path / f"nope_{command}.fits"
        result = runner.invoke(cli, [command, str(missing), "-o", str(out)])
        assert result.exit_code == 1
        assert result.output == (
            f"Error: {missing}: file not found. Check the path or the glob pattern.\n"
        )
        pattern = str(tmp_path / "nothing*_rate.fits")
        result = runner.invoke(cli, [command, pattern, "-o", str(out)])
        assert result.exit_code == 1
        assert result.output == f"Error: {pattern}: no files match this pattern. Check the path.\n"
    assert not out.exists()


def test_unwritable_outdir_is_refused_before_work(sim, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    # with CRDS set up: an unconfigured CRDS is refused first, also before OUTDIR is made
    result = CliRunner().invoke(cli, ["image2", str(sim.rate_files[0]), "-o", str(blocker / "out"),
                                      "--crds-env", str(sim.env_file)])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {blocker / 'out'}: cannot create the output directory (Not a directory). "
        "Choose a directory you can write to with -o.\n"
    )


def test_second_concurrent_run_is_refused(image2, sim):
    from jwstrun.locking import OutdirLock

    from jwstrun.locking import read_lock

    with OutdirLock(image2["outdir"], command="jwstrun image2 (test holder)") as lock:
        result = CliRunner().invoke(
            cli, ["image2", str(sim.rate_files[0]), "-o", str(image2["outdir"]),
                  "--crds-env", str(sim.env_file)],
        )
        holder = read_lock(lock.path)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {image2['outdir']} is in use by another jwstrun run (pid {holder['pid']} on "
        f"{holder['host']}, started {holder['started']}: jwstrun image2 (test holder)). Wait for "
        f"it to finish or use another -o OUTDIR. If that run is dead, delete {lock.path}.\n"
    )


# Slow: test_look.py's run fixture runs image3 on loose _cal files into image2's OUTDIR with
# --json (one ok task, crf/i2d/cat), and reliability/test_round2_security.py's '$' test finds
# the association image3 built in OUTDIR.
@pytest.mark.slow
def test_image3_on_cal_files(image2, sim):
    outdir = image2["outdir"]
    result = CliRunner().invoke(
        cli, ["image3", *map(str, sorted(outdir.glob("*_cal.fits"))), "-o", str(outdir),
              "--crds-env", str(sim.env_file), "--no-progress", "--json",
              # a SUB320 field has too few stars for tweakreg's 15 matches
              "--set", "steps.tweakreg.skip=true"],
              catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    (task,) = summary["tasks"]
    assert task["status"] == "ok"
    suffixes = sorted(name.rsplit("_", 1)[1] for name in task["outputs"])
    assert suffixes.count("crf.fits") == 2
    assert "i2d.fits" in suffixes
    assert list(outdir.glob("*_image3_asn.json"))  # the association it built, for the record


# Slow: reliability/test_faults.py::test_ctrl_c_then_kill_9_then_resume[11] kills a running
# image2 with -9 (its workers die with it), finds nothing half-written and resumes it.
@pytest.mark.slow
def test_kill_minus_9_leaves_no_half_product(sim, tmp_path):
    """Kill the whole run mid-way: everything in OUTDIR is complete, a re-run finishes."""
    outdir = tmp_path / "killed"
    args = [JWSTRUN, "image2", *map(str, sim.rate_files), "-o", str(outdir), "-j", "2",
            "--crds-env", str(sim.env_file), "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    tmp = outdir / ".jwstrun-tmp"
    # wait until a pipeline is writing its products into the temporary directory
    while time.monotonic() < deadline and proc.poll() is None:
        if tmp.exists() and any(tmp.glob("*/out/*")):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # parent and workers, like a node crash
    proc.wait()
    from jwstrun.validate import validate_file

    for product in outdir.glob("*.fits"):
        assert validate_file(product).ok, product
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len(list(outdir.glob("*_cal.fits"))) == len(sim.rate_files)
    assert not tmp.exists()


@pytest.mark.slow
def test_demo_passes_its_science_checks(tmp_path):
    result = CliRunner().invoke(cli, ["demo", str(tmp_path / "demo"), "--no-progress", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and len(report["checks"]) == 4
    assert [s["name"] for s in report["stages"]] == [
        "simulate", "associations", "image2", "image3", "validate", "science checks"]


def test_library_errors_are_said_with_the_cli_flags(image2, sim, tmp_path):
    """The runner names its parameters (low_memory=True, sets, jobs=2); the command line
    says the same refusal with its own flags. Refused before anything runs."""
    from jwstrun.errors import ConfigError
    from jwstrun.runner import run_image3

    cal = sorted(str(p) for p in image2["outdir"].glob("*_cal.fits"))
    with pytest.raises(ConfigError) as err:
        run_image3(cal, tmp_path / "api", low_memory=True, sets=["in_memory=true"],
                   crds_env_file=str(sim.env_file))
    assert str(err.value) == ("low_memory=True asks for the pipeline's on-disk mode but "
                              "in_memory=true is set (profile or sets); drop one of them.")
    result = CliRunner().invoke(cli, ["image3", *cal, "-o", str(tmp_path / "cli"),
                                      "--low-memory", "--set", "in_memory=true",
                                      "--crds-env", str(sim.env_file), "--no-progress",
                                      "--no-report"])
    assert result.exit_code == 1
    assert result.output.endswith(
        "Error: --low-memory asks for the pipeline's on-disk mode but in_memory=true is set "
        "(profile or --set); drop one of them.\n"), result.output
