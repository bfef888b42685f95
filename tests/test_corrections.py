"""Corrections before a stage (a profile's ``before:``): the products equal strun's chain.

One simulated NIRCam SUB160 program of two exposures, with a small ``_jump`` file
beside each _rate file (a RampModel whose last group marks a block SATURATED in the
first exposure: the pixels persist must flag in the second).  ``jwstrun image2`` with
clean_flicker_noise (autoparam) + snowblind + persist before calwebb_image2 runs once
(in-process) while strun runs the same chain on the second exposure (subprocesses:
``strun clean_flicker_noise`` -> ``strun snowblind`` -> ``strun persist`` over the set
-> ``strun calwebb_image2``); their SCI, ERR and DQ arrays must be identical.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from jwstrun.cli import cli

VENV_BIN = Path(sys.executable).parent
STRUN = shutil.which("strun", path=str(VENV_BIN)) or shutil.which("strun")

#: The block saturated in the first exposure's ramp (rows, columns).
SATURATED_BLOCK = (slice(40, 46), slice(70, 78))

PROFILE = """
    image2:
      before:
        - step: clean_flicker_noise
          autoparam: true
        - step: snowblind
        - step: persist
"""


def write_jump(rate: Path, saturated: bool) -> Path:
    """A ``_jump`` file beside ``rate``: one integration of two groups, the last group's
    SATURATED flag set on :data:`SATURATED_BLOCK` when ``saturated``."""
    from stdatamodels.jwst import datamodels

    with datamodels.open(rate) as model:
        shape = model.data.shape
        jump = datamodels.RampModel(data=np.zeros((1, 2, *shape), np.float32))
        jump.update(model)
    groupdq = np.zeros((1, 2, *shape), np.uint8)
    if saturated:
        groupdq[0, 1][SATURATED_BLOCK] = datamodels.dqflags.group["SATURATED"]
    jump.groupdq = groupdq
    path = rate.with_name(rate.name.replace("_rate", "_jump"))
    jump.save(path)
    jump.close()
    return path


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from jwstrun.simulate import simulate_program

    result = simulate_program(tmp_path_factory.mktemp("corrections") / "sim", subarray="SUB160",
                              n_dithers=2, seed=3)
    for number, rate in enumerate(result.rate_files):
        write_jump(rate, saturated=number == 0)
    return result


def _strun(env, *args, cwd=None):
    done = subprocess.run([STRUN, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=600, cwd=cwd)
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])


def _only(directory: Path, pattern: str) -> Path:
    (found,) = sorted(directory.glob(pattern))
    return found


def strun_chain(sim, root: Path) -> Path:
    """The second exposure through strun: clean_flicker_noise, snowblind, persist over the
    set (the first exposure and the second, their _jump files beside them), calwebb_image2."""
    from jwstrun.refs import read_env_file

    env = {**os.environ, **read_env_file(sim.env_file)}
    first, second = sim.rate_files
    for step in ("clean", "snowblind", "set", "persist", "cal"):
        (root / step).mkdir(parents=True)
    _strun(env, "clean_flicker_noise", second, "--skip=False", "--autoparam=True",
           f"--output_dir={root / 'clean'}")
    _strun(env, "snowblind", _only(root / "clean", "*.fits"), f"--output_dir={root / 'snowblind'}")
    # persist reads the _jump files from the association's directory
    for path in (first, first.with_name(first.name.replace("_rate", "_jump")),
                 second.with_name(second.name.replace("_rate", "_jump")),
                 _only(root / "snowblind", "*.fits")):
        shutil.copy(path, root / "set" / path.name)
    members = [{"expname": p.name, "exptype": "science"}
               for p in sorted((root / "set").glob("*.fits")) if "_jump" not in p.name]
    asn = root / "set" / "set_asn.json"
    asn.write_text(json.dumps({"asn_type": "image3", "asn_pool": "none", "products": [
        {"name": "set", "members": members}]}))
    _strun(env, "persist", asn, f"--output_dir={root / 'persist'}")
    _strun(env, "calwebb_image2", _only(root / "persist", "*00002*.fits"),
           f"--output_dir={root / 'cal'}")
    return _only(root / "cal", "*_cal.fits")


@pytest.fixture(scope="module")
def runs(sim, tmp_path_factory):
    """``jwstrun image2 --profile`` (in-process) and strun's chain (a thread of
    subprocesses), at the same time."""
    root = tmp_path_factory.mktemp("corrections_runs")
    profile = root / "clean.yaml"
    profile.write_text(textwrap.dedent(PROFILE))
    theirs: dict = {}

    def reference():
        try:
            theirs["cal"] = strun_chain(sim, root / "strun")
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            theirs["error"] = exc

    thread = threading.Thread(target=reference)
    thread.start()
    result = CliRunner().invoke(cli, [
        "image2", *map(str, sim.rate_files), "-o", str(root / "ours"), "-j", "1",
        "--profile", str(profile), "--crds-env", str(sim.env_file), "--no-progress",
        "--no-report", "--json"])
    thread.join()
    assert result.exit_code == 0, result.output
    if "error" in theirs:
        raise theirs["error"]
    return {"ours": root / "ours", "theirs": theirs["cal"], "profile": profile,
            "summary": json.loads(result.stdout)}


def test_products_equal_strun_chain(runs):
    from astropy.io import fits

    ours = runs["ours"] / "jw01234001001_02101_00002_nrcb1_cal.fits"
    with fits.open(ours) as mine, fits.open(runs["theirs"]) as reference:
        for name in ("SCI", "ERR", "DQ"):
            np.testing.assert_array_equal(mine[name].data, reference[name].data, err_msg=name)
        for key in ("S_CLNFNS", "S_SNOWBL", "S_PERSIS"):
            assert mine[0].header[key] == reference[0].header[key] == "COMPLETE", key
        # the products keep the input's name
        assert mine[0].header["FILENAME"] == ours.name


def test_persist_flags_the_afterimage_in_the_later_exposure_only(runs):
    from astropy.io import fits

    from jwstrun.products import DQ_FLAGS

    flag = DQ_FLAGS["PERSISTENCE"]
    first, second = (fits.getdata(runs["ours"] / f"jw01234001001_02101_0000{n}_nrcb1_cal.fits",
                                  "DQ") for n in (1, 2))
    assert ((second[SATURATED_BLOCK] & flag) != 0).all()
    assert ((first & flag) == 0).all()
    outside = np.ones(second.shape, bool)
    outside[SATURATED_BLOCK] = False
    assert ((second[outside] & flag) == 0).all()


def test_manifest_records_each_correction(runs):
    from jwstrun.manifest import read_manifest

    records = read_manifest(runs["ours"]).tasks
    assert len(records) == 2
    for record in records.values():
        steps = [(c["step"], c["class"], c["package"], c["status_keyword"], c["exposures"])
                 for c in record.corrections]
        assert steps == [
            ("clean_flicker_noise", "jwst.step.CleanFlickerNoiseStep", "jwst", "S_CLNFNS", 1),
            ("snowblind", "snowblind.SnowblindStep", "snowblind", "S_SNOWBL", 1),
            ("persist", "snowblind.PersistenceFlagStep", "snowblind", "S_PERSIS", 1)]
        clean, snowblind, persist = record.corrections
        assert clean["parameters"]["autoparam"] is True and clean["parameters"]["skip"] is False
        assert snowblind["parameters"]["min_radius"] == 4  # resolved: the spec default
        assert persist["parameters"]["time"] == 2500.0
        assert all(c["version"] and c["wall_s"] > 0 for c in record.corrections)


def test_rerun_is_up_to_date_and_a_changed_correction_is_not(runs, sim):
    """Unchanged: nothing runs.  A correction's parameter changed: the fingerprint changes
    (the tasks are fingerprinted as the runner does, without running them)."""
    result = CliRunner().invoke(cli, [
        "image2", *map(str, sim.rate_files), "-o", str(runs["ours"]),
        "--profile", str(runs["profile"]), "--crds-env", str(sim.env_file), "--no-progress",
        "--no-report", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["skipped"] == 2

    from jwstrun.runner._corrections import correction_fingerprint
    from jwstrun.runner.task import Task

    record = json.loads((runs["ours"] / "jwstrun-manifest.json").read_text())["tasks"]
    first = next(iter(record.values()))
    task = Task(task_id="t", pipeline="image2", input="x", product="x", inputs=[], outdir="o",
                workdir="w", log_file="l", parameters={}, fingerprint="",
                corrections=[{"step": "snowblind", "class": "snowblind.SnowblindStep",
                              "parameters": {}}])
    before = json.dumps(correction_fingerprint(task))
    task.corrections[0]["parameters"]["min_radius"] = 5
    assert json.dumps(correction_fingerprint(task)) != before
    assert first["fingerprint"] and first["corrections"]


def test_validate_requires_the_status_keywords(runs, tmp_path):
    from astropy.io import fits

    from jwstrun.validate import validate_file

    source = runs["ours"] / "jw01234001001_02101_00001_nrcb1_cal.fits"
    required = {"S_SNOWBL": "snowblind", "S_CLNFNS": "clean_flicker_noise"}
    assert not validate_file(source, required_status=required).errors
    copy = tmp_path / source.name
    shutil.copy(source, copy)
    with fits.open(copy, mode="update") as hdul:
        del hdul[0].header["S_SNOWBL"]
    messages = [f.message for f in validate_file(copy, required_status=required).errors]
    assert messages == ["S_SNOWBL (snowblind) is not set: snowblind runs on the exposures "
                        "before the stage (a profile's before:), so it must read COMPLETE. "
                        "See the step log."]


def test_persist_without_jump_files_is_refused_up_front(sim, tmp_path, runs):
    bare = tmp_path / "bare"
    bare.mkdir()
    for rate in sim.rate_files:
        shutil.copy(rate, bare / rate.name)
    outdir = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "image2", str(bare), "-o", str(outdir), "--profile", str(runs["profile"]),
        "--crds-env", str(sim.env_file), "--no-progress", "--no-report"])
    assert result.exit_code == 1
    jump = bare / "jw01234001001_02101_00001_nrcb1_jump.fits"
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {jump}: not found. persist (in image2.before) reads the _jump file of every "
        f"exposure: make them with 'jwstrun detector1 UNCAL_FILES -o {bare} --set "
        "steps.jump.save_results=true' (persist finds them in its intermediate/ folder; "
        "'jwstrun image2 --from uncal' saves them itself), put strun calwebb_detector1's _jump "
        "files beside the _rate files, or take persist out of the profile.")
    assert not outdir.exists()


def test_profile_errors_name_the_step_and_line(tmp_path):
    from jwstrun import profiles as P
    from jwstrun.errors import ConfigError

    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent("""
        image2:
          before:
            - step: snowbind
            - step: clean_flicker_noise
              n_sigma: many
            - step: persist
              input_dir: /data
    """).lstrip())
    with pytest.raises(ConfigError) as info:
        P.load_profile(path)
    assert str(info.value).splitlines()[1:] == [
        f"  {path}:3: unknown step 'snowbind' in image2.before; did you mean 'snowblind'? "
        "(a step is named by its stpipe alias: 'stpipe list --steps-only' lists them)",
        f"  {path}:5: image2.before.clean_flicker_noise.n_sigma: 'many' is not a number "
        "(spec: float(default=2.0))",
        f"  {path}:7: image2.before.persist.input_dir is refused: jwstrun gives each step "
        "the files it reads (persist: the _jump files beside the exposures)",
    ]


def test_nircam_clean_is_listed_and_shown():
    listed = CliRunner().invoke(cli, ["profiles", "list", "--json"])
    assert "nircam-clean" in [p["name"] for p in json.loads(listed.output)]
    shown = CliRunner().invoke(cli, ["profiles", "show", "nircam-clean", "--json"])
    before = json.loads(shown.output)["pipelines"]["image2"]["before"]
    assert [(c["step"], c["class"]) for c in before] == [
        ("clean_flicker_noise", "jwst.step.CleanFlickerNoiseStep"),
        ("snowblind", "snowblind.SnowblindStep"), ("persist", "snowblind.PersistenceFlagStep")]
    assert before[0]["parameters"]["autoparam"]["value"] is True
    assert all(c["why"] for c in before)


# --------------------------------------------------------------------------
# Associations: corrected members written under their own names (image3, and image2
# with a dedicated background)
# --------------------------------------------------------------------------

IMAGE3_PROFILE = """
    image3:
      before:
        - step: snowblind
      steps:
        tweakreg:
          skip: true   # two SUB160 dithers: too few stars to align
"""


def _strun_corrected(env, files, directory: Path) -> None:
    """``strun snowblind`` on each file, the output renamed to the file's own name."""
    for path in files:
        raw = directory / "raw" / path.stem
        _strun(env, "snowblind", path, f"--output_dir={raw}")
        _only(raw, "*.fits").rename(directory / path.name)


@pytest.mark.slow  # ~40 s: image3 twice; the in-memory image2 path above covers the chain
def test_image3_members_corrected_equal_strun(runs, sim, tmp_path):
    """image3 with snowblind before it gives the products strun calwebb_image3 gives on
    the association of the members corrected by strun snowblind (same names)."""
    from astropy.io import fits

    from jwstrun.refs import read_env_file

    profile = tmp_path / "i3.yaml"
    profile.write_text(textwrap.dedent(IMAGE3_PROFILE))
    cals = sorted(runs["ours"].glob("*_cal.fits"))
    ours = tmp_path / "ours"
    result = CliRunner().invoke(cli, [
        "image3", *map(str, cals), "-o", str(ours), "-j", "1", "--profile", str(profile),
        "--crds-env", str(sim.env_file), "--no-progress", "--no-report", "--json"])
    assert result.exit_code == 0, result.output
    (record,) = json.loads((ours / "jwstrun-manifest.json").read_text())["tasks"].values()
    assert [(c["step"], c["exposures"]) for c in record["corrections"]] == [("snowblind", 2)]

    env = {**os.environ, **read_env_file(sim.env_file)}
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    _strun_corrected(env, cals, theirs)
    (asn,) = ours.glob("*_asn.json")
    data = json.loads(asn.read_text())
    for member in data["products"][0]["members"]:
        member["expname"] = Path(member["expname"]).name
    (theirs / asn.name).write_text(json.dumps(data))
    _strun(env, "calwebb_image3", theirs / asn.name, "--steps.tweakreg.skip=True",
           f"--output_dir={theirs}")
    products = sorted(p.name for p in ours.glob("*.fits"))
    assert len(products) == 4  # two _crf, _i2d, _segm
    for name in products:
        with fits.open(ours / name) as mine, fits.open(theirs / name) as reference:
            for hdu in ("SCI", "ERR", "DQ"):
                if hdu in mine:
                    np.testing.assert_array_equal(mine[hdu].data, reference[hdu].data,
                                                  err_msg=f"{name} {hdu}")
    for name in [p for p in products if p.endswith("_crf.fits")]:
        assert fits.getval(ours / name, "S_SNOWBL") == "COMPLETE"


@pytest.fixture(scope="module")
def with_background(tmp_path_factory):
    from jwstrun.simulate import simulate_program

    return simulate_program(tmp_path_factory.mktemp("corrections_bkg") / "sim",
                            subarray="SUB64P", n_dithers=1, n_background=1, seed=5)


@pytest.mark.slow  # ~30 s: image2 twice on a second simulated program
def test_background_members_are_corrected_too(with_background, tmp_path):
    """image2 of a science exposure with a dedicated background: both are corrected
    (the background's level is subtracted from the science), and the products equal
    strun calwebb_image2 on the association of the exposures corrected by strun."""
    from astropy.io import fits

    from jwstrun.refs import read_env_file

    sim = with_background
    profile = tmp_path / "snow.yaml"
    profile.write_text("image2:\n  before:\n    - step: snowblind\n")
    ours = tmp_path / "ours"
    result = CliRunner().invoke(cli, [
        "image2", str(sim.outdir), "-o", str(ours), "-j", "1", "--profile", str(profile),
        "--crds-env", str(sim.env_file), "--no-progress", "--no-report", "--json"])
    assert result.exit_code == 0, result.output
    (record,) = json.loads((ours / "jwstrun-manifest.json").read_text())["tasks"].values()
    assert [(c["step"], c["exposures"]) for c in record["corrections"]] == [("snowblind", 2)]

    env = {**os.environ, **read_env_file(sim.env_file)}
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    _strun_corrected(env, [*sim.rate_files, *sim.background_files], theirs)
    built = CliRunner().invoke(cli, ["asn", str(theirs), "-o", str(theirs / "l2_asn.json")])
    assert built.exit_code == 0, built.output
    # calwebb_image2 opens the members relative to the working directory (jwst issue 5950)
    _strun(env, "calwebb_image2", "l2_asn.json", f"--output_dir={theirs}", cwd=theirs)
    (cal,) = [p.name for p in ours.glob("*_cal.fits")]
    with fits.open(ours / cal) as mine, fits.open(theirs / cal) as reference:
        for hdu in ("SCI", "ERR", "DQ"):
            np.testing.assert_array_equal(mine[hdu].data, reference[hdu].data, err_msg=hdu)
        assert mine[0].header["S_SNOWBL"] == mine[0].header["S_BKDSUB"] == "COMPLETE"


def test_a_failing_correction_names_itself_the_stage_and_the_input(sim, tmp_path):
    profile = tmp_path / "bad.yaml"
    profile.write_text("image2:\n  before:\n    - step: clean_flicker_noise\n"
                       "      user_mask: /nonexistent/mask.fits\n")
    first = sim.rate_files[0]
    result = CliRunner().invoke(cli, [
        "image2", str(first), "-o", str(tmp_path / "out"), "-j", "1", "--profile", str(profile),
        "--crds-env", str(sim.env_file), "--no-progress", "--no-report"])
    assert result.exit_code == 1
    task = f"image2-{first.name.replace('_rate.fits', '')}"
    assert f"FAILED {task}: clean_flicker_noise (before calwebb_image2) failed on {first.name}: " \
           "FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent/mask.fits'" \
           in result.output
    (record,) = json.loads((tmp_path / "out" / "jwstrun-manifest.json").read_text())[
        "tasks"].values()
    assert record["failed_step"] == "clean_flicker_noise"
    assert record["step_status"] == {"CleanFlickerNoiseStep": "failed"}
    assert not list((tmp_path / "out").glob("*.fits"))


def test_validate_cli_require(runs, tmp_path):
    """``jwstrun validate --require STEP`` checks a correction's status keyword."""
    from astropy.io import fits

    source = runs["ours"] / "jw01234001001_02101_00002_nrcb1_cal.fits"
    ok = CliRunner().invoke(cli, ["validate", str(source), "--require", "snowblind",
                                  "--require", "persist", "--require", "S_CLNFNS"])
    assert ok.exit_code == 0, ok.output
    copy = tmp_path / source.name
    shutil.copy(source, copy)
    with fits.open(copy, mode="update") as hdul:
        # calwebb_detector1's own persistence step writes SKIPPED over S_PERSIS; the
        # HISTORY line snowblind's PersistenceFlagStep leaves still says persist ran.
        hdul[0].header["S_PERSIS"] = "SKIPPED"
    shared = CliRunner().invoke(cli, ["validate", str(copy), "--require", "persist"])
    assert shared.exit_code == 0, shared.output
    with fits.open(copy, mode="update") as hdul:
        header = hdul[0].header
        kept = [str(text) for text in header["HISTORY"] if "PersistenceFlagStep" not in str(text)]
        assert len(kept) < len(header["HISTORY"])
        del header["HISTORY"]
        for text in kept:
            header.add_history(text)
    bad = CliRunner().invoke(cli, ["validate", str(copy), "--require", "persist", "--json"])
    assert bad.exit_code == 1
    (report,) = json.loads(bad.stdout)["files"]
    assert [f["message"] for f in report["findings"] if f["severity"] == "error"] == [
        "S_PERSIS (persist) is SKIPPED: persist runs on the exposures before the stage (a "
        "profile's before:), so it must read COMPLETE. See the step log."]
    unknown = CliRunner().invoke(cli, ["validate", str(source), "--require", "snowblnd"])
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith(
        "Error: unknown step 'snowblnd' in --require; did you mean 'snowblind'?")


def test_old_manifest_records_read_without_corrections(tmp_path):
    """A record written before ``corrections`` existed reads with an empty list."""
    from jwstrun.manifest import MANIFEST_NAME, read_manifest

    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"format": 1, "runs": [], "tasks": {
        "image2-a": {"task_id": "image2-a", "status": "ok", "outputs": ["a_cal.fits"]}}}))
    contents = read_manifest(tmp_path)
    assert not contents.problems
    assert contents.tasks["image2-a"].corrections == []
