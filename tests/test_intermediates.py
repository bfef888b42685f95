"""Intermediate files and ``--keep-temp`` (issue 23, item 9).

``steps.tweakreg.save_catalogs=true`` and
``steps.outlier_detection.save_intermediate_results=true`` make calwebb_image3 write
files that are not its products: tweakreg's source catalogs (into the step's own
output_dir, the current directory under strun) and outlier_detection's ``_outlier_i2d``
(no CON extension), ``_median`` and ``_blot`` images.  jwstrun puts them, under strun's
names, in ``OUTDIR/intermediate/<task-id>/``, lists them in the manifest, and neither
validates them nor takes them for products on resume.

One simulated NIRCam SUB160 program (two dithers), reduced once by image2; one
Level-3 association given at the same time to ``jwstrun image3`` with both parameters
and ``--keep-temp`` and to ``strun calwebb_image3`` with the same parameters, each in a
working directory of its own.  Then ``jwstrun image3`` again on the same OUTDIR (resume,
with the report) and ``jwstrun validate OUTDIR``.
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

VENV_BIN = Path(sys.executable).parent
STRUN = shutil.which("strun", path=str(VENV_BIN)) or shutil.which("strun")
JWSTRUN = shutil.which("jwstrun", path=str(VENV_BIN)) or shutil.which("jwstrun")
SAVE = ["steps.tweakreg.save_catalogs=true",
        "steps.outlier_detection.save_intermediate_results=true"]
PRODUCT_ENDS = ("_crf.fits", "_i2d.fits", "_segm.fits", "_cat.ecsv")


@pytest.fixture(scope="module")
def cal_asn(tmp_path_factory, small_reduced_run):
    from jwstrun.asn import make_associations

    root = tmp_path_factory.mktemp("intermediates")
    sim = small_reduced_run["sim"]
    # only the _cal files are needed: those of the shared run's image2 (its mosaic skipped)
    (root / "cal").mkdir()
    for cal in small_reduced_run["a"].glob("*_cal.fits"):
        os.link(cal, root / "cal" / cal.name)
    cal_files = sorted((root / "cal").glob("*_cal.fits"))
    assert len(cal_files) == len(sim.rate_files)
    (written,) = make_associations(cal_files, root / "cal" / "l3_asn.json",
                                   level=3).associations
    return root, sim, written.path


def _jwstrun_image3(asn, outdir, env_file, *extra, cwd):
    sets = [arg for item in SAVE for arg in ("--set", item)]
    return subprocess.Popen(
        [JWSTRUN, "image3", str(asn), "-o", str(outdir), "-j", "1", "--crds-env",
         str(env_file), "--no-progress", *sets, *extra],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.fixture(scope="module")
def first(cal_asn):
    """jwstrun image3 (both parameters, --keep-temp) and strun with the same parameters,
    side by side; what the kept temporary directory held before any other run."""
    root, sim, asn = cal_asn
    ours, theirs = root / "ours", root / "theirs"
    ours_cwd, theirs_cwd = root / "ours_cwd", root / "theirs_cwd"
    for directory in (ours_cwd, theirs_cwd):
        directory.mkdir()
    strun = subprocess.Popen(
        [STRUN, "calwebb_image3", str(asn), "--output_dir", str(theirs),
         *[f"--{item}" for item in SAVE]],
        cwd=theirs_cwd, env={**os.environ, **sim.env}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    proc = None
    try:
        proc = _jwstrun_image3(asn, ours, sim.env_file, "--keep-temp", "--no-report",
                               cwd=ours_cwd)
        out, err = proc.communicate(timeout=600)
        strun_log, _ = strun.communicate(timeout=600)
    finally:
        for child in (strun, proc):
            if child is not None and child.poll() is None:
                child.kill()
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    assert strun.returncode == 0, strun_log[-3000:]
    manifest = json.loads((ours / "jwstrun-manifest.json").read_text())
    (task_id, record), = manifest["tasks"].items()
    kept = ours / record["temp_dir"]
    return {
        "root": root, "sim": sim, "asn": asn, "ours": ours, "theirs": theirs,
        "ours_cwd": ours_cwd, "theirs_cwd": theirs_cwd, "stdout": out, "task_id": task_id,
        "record": record, "kept_is_dir": kept.is_dir(),
        "kept_entries": sorted(p.name for p in kept.iterdir()) if kept.is_dir() else [],
    }


@pytest.fixture(scope="module")
def again(first):
    """The same command on the same OUTDIR (without --keep-temp, with the report)."""
    proc = _jwstrun_image3(first["asn"], first["ours"], first["sim"].env_file,
                           cwd=first["ours_cwd"])
    out, err = proc.communicate(timeout=600)
    return {"code": proc.returncode, "stdout": out, "stderr": err}


def test_intermediates_have_strun_names_in_their_task_folder(first):
    folder = first["ours"] / "intermediate" / first["task_id"]
    ours = sorted(p.name for p in folder.iterdir())
    # strun: outlier_detection's files beside the products, tweakreg's catalogs in its cwd
    theirs = sorted([p.name for p in first["theirs"].iterdir()
                     if not p.name.endswith(PRODUCT_ENDS) or p.name.endswith("_outlier_i2d.fits")]
                    + [p.name for p in first["theirs_cwd"].glob("*_cat.ecsv")])
    assert ours == theirs
    members = [p.name.removesuffix(".fits") for p in first["theirs"].glob("*_crf.fits")]
    assert len(members) == 2
    assert sum(n.endswith("_cal_cat.ecsv") for n in ours) == 2  # tweakreg, one per member
    assert sum(n.endswith("_blot.fits") for n in ours) == 2
    assert sum(n.endswith("_outlier_i2d.fits") for n in ours) == 2
    assert sum(n.endswith("_median.fits") for n in ours) == 1
    # nothing in the working directory jwstrun was started from
    assert list(first["ours_cwd"].iterdir()) == []


def test_products_are_the_stage_products_and_equal_strun(first):
    from astropy.io import fits

    ours = sorted(p.name for p in first["ours"].iterdir()
                  if p.is_file() and p.name != "jwstrun-manifest.json")
    theirs = sorted(p.name for p in first["theirs"].iterdir()
                    if p.name.endswith(PRODUCT_ENDS) and "_outlier_" not in p.name)
    assert ours == theirs and len(ours) == 5
    assert sorted(p.name for p in first["ours"].iterdir() if p.is_dir()) == \
        [".jwstrun-tmp", "intermediate", "logs"]
    for name in ours:
        if name.endswith(".fits"):
            with fits.open(first["ours"] / name) as a, fits.open(first["theirs"] / name) as b:
                np.testing.assert_array_equal(a[1].data, b[1].data, err_msg=name)


def test_manifest_lists_intermediates_apart_from_products(first):
    record, task_id = first["record"], first["task_id"]
    assert record["status"] == "ok"
    folder = first["ours"] / "intermediate" / task_id
    assert record["intermediates"] == sorted(
        f"intermediate/{task_id}/{p.name}" for p in folder.iterdir())
    assert not set(record["outputs"]) & {Path(p).name for p in record["intermediates"]}
    # only the products were validated: the _outlier_i2d files have no CON
    assert sorted(record["validation"]["files"]) == sorted(record["outputs"])
    assert record["validation"]["errors"] == []
    from jwstrun.manifest import read_manifest

    contents = read_manifest(first["ours"])
    assert contents.problems == []
    assert contents.tasks[task_id].intermediates == record["intermediates"]


def test_summary_says_where_intermediates_and_the_kept_directory_are(first):
    ours, task_id = first["ours"], first["task_id"]
    n = len(first["record"]["intermediates"])
    lines = first["stdout"].splitlines()
    assert f"{n} intermediate file(s), not products, in {ours}/intermediate/<task-id>/" in lines
    assert f"temporary directory kept (--keep-temp): {ours}/.jwstrun-tmp/{task_id}" in lines


def test_keep_temp_keeps_the_task_directory_until_the_next_run(first, again):
    assert first["record"]["temp_dir"] == f".jwstrun-tmp/{first['task_id']}"
    assert first["kept_is_dir"]
    assert "out" in first["kept_entries"]  # the pipeline's output directory, now moved out
    # the next run in OUTDIR removes it (and keeps nothing without --keep-temp)
    assert again["code"] == 0
    assert not (first["ours"] / ".jwstrun-tmp").exists()


def test_resume_takes_the_run_as_complete(first, again):
    assert again["code"] == 0, again["stdout"][-3000:] + again["stderr"][-3000:]
    assert "1 task(s): 0 ok, 1 up to date (skipped), 0 failed" in again["stdout"]
    n = len(first["record"]["intermediates"])
    assert (f"{n} intermediate file(s), not products, in {first['ours']}/intermediate/"
            "<task-id>/") in again["stdout"].splitlines()
    manifest = json.loads((first["ours"] / "jwstrun-manifest.json").read_text())
    assert manifest["tasks"][first["task_id"]]["intermediates"] == first["record"]["intermediates"]
    for name in first["record"]["intermediates"]:
        assert (first["ours"] / name).is_file()


def test_report_lists_the_intermediates(first, again):
    html = (first["ours"] / "jwstrun-report.html").read_text()
    assert "Intermediate files</b> (not products)" in html
    for name in first["record"]["intermediates"]:
        assert f"href='{name}'" in html


def test_validate_outdir_checks_only_products(first, again):
    result = CliRunner().invoke(cli, ["validate", str(first["ours"]), "--json"])
    assert result.exit_code == 0, result.output
    checked = sorted(Path(r["path"]).name for r in json.loads(result.stdout)["files"])
    assert checked == sorted(first["record"]["outputs"])


# ----------------------------------------------------------------------------- no pipeline
def test_steps_asked_to_save_get_the_task_output_dir():
    from jwstrun.runner._intermediates import step_output_dirs

    parameters = {"steps": {
        "tweakreg": {"save_catalogs": "True", "snr_threshold": 10},
        "outlier_detection": {"save_intermediate_results": True, "output_dir": "/mine"},
        "skymatch": {"skip": True},
        "resample": {"save_results": False},
    }}
    result = step_output_dirs(parameters, "/tmp/task/out")
    assert result["steps"]["tweakreg"] == {"save_catalogs": "True", "snr_threshold": 10,
                                           "output_dir": "/tmp/task/out"}
    assert result["steps"]["outlier_detection"]["output_dir"] == "/mine"  # the user's kept
    assert "output_dir" not in result["steps"]["skymatch"]
    assert "output_dir" not in result["steps"]["resample"]
    assert "output_dir" not in parameters["steps"]["tweakreg"]  # the task's left as recorded
    assert step_output_dirs({}, "/x") == {}


def test_manifest_records_without_intermediates_still_load_and_bad_paths_are_refused():
    from jwstrun.manifest import TaskRecord, check_manifest

    old = {"task_id": "image3-a", "status": "ok", "outputs": ["a_i2d.fits"]}
    assert TaskRecord.from_dict(old).intermediates == []
    assert TaskRecord.from_dict(old).temp_dir is None
    bad = {"tasks": {
        "up": {**old, "intermediates": ["intermediate/image3-a/../../../etc/passwd"]},
        "abs": {**old, "intermediates": ["/etc/passwd"]},
        "tmp": {**old, "temp_dir": "../elsewhere"},
        "good": {**old, "intermediates": ["intermediate/image3-a/a_cal_cat.ecsv"],
                 "temp_dir": ".jwstrun-tmp/image3-a"},
    }, "runs": []}
    clean, problems = check_manifest(bad)
    assert sorted(clean["tasks"]) == ["good"]
    assert problems == [
        "record 'up': intermediate file 'intermediate/image3-a/../../../etc/passwd' is "
        "outside the output directory",
        "record 'abs': intermediate file '/etc/passwd' is outside the output directory",
        "record 'tmp': temporary directory '../elsewhere' is outside the output directory",
    ]
