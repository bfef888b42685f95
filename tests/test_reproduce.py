"""``jwstrun reproduce`` and ``jwstrun export`` on a real run.

One simulated NIRCam SUB160 program (two dithers) reduced once by image2 (its own
mosaic skipped) and image3 into ``a/``, and reproduced once into ``again/``.  The
refusals are shown on copies of ``a/``'s manifest crafted to record another input,
jwst version or context (never by changing what is installed).  The variant with one
parameter changed and the bundle run by strun alone are each one more pipeline run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from jwstrun.cli import cli

STEM = "jw01234-o001_t001_nircam_clear-f200w-sub160"
IMAGE3 = f"image3-{STEM}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small_reduced_run):
    return {**small_reduced_run, "root": tmp_path_factory.mktemp("reproduce")}


@pytest.fixture(scope="module")
def again(runs):
    """a/ reproduced into again/ (image2 then image3 again)."""
    from jwstrun.reproduce import reproduce_run

    summary = reproduce_run(runs["a"], runs["root"] / "again", jobs=2)
    assert not summary.failed, [r.error for r in summary.failed]
    return summary.outdir


def _cli(*args):
    return CliRunner().invoke(cli, [*map(str, args)], catch_exceptions=False)


def _manifest(path: Path) -> dict:
    return json.loads((path / "jwstrun-manifest.json").read_text())


def _crafted(runs, tmp_path, change) -> Path:
    """A copy of a/'s manifest (alone in a new directory) changed by ``change(data)``."""
    data = _manifest(runs["a"])
    change(data)
    copy = tmp_path / "crafted"
    copy.mkdir(parents=True)
    (copy / "jwstrun-manifest.json").write_text(json.dumps(data))
    return copy


def test_reproduced_run_is_identical(runs, again):
    result = _cli("diff", runs["a"], again)
    assert result.exit_code == 0, result.output
    assert "identical; 7 product(s) compared, 0 differ" in result.stdout
    manifest = _manifest(again)
    assert manifest["reproduced_from"] == {"source": str(runs["a"].resolve()),
                                           "differences": [], "overrides": [], "left_out": []}
    assert [r["stage"] for r in manifest["runs"]] == ["image2", "image3"]
    assert {r["command"] for r in manifest["runs"]} == {f"jwstrun reproduce {runs['a']}"}
    assert manifest["runs"][0]["crds"]["CRDS_CONTEXT"] == "jwst_0001.pmap"
    # the image3 association is the recorded one, its members the reproduced _cal files
    asn = f"{STEM}_image3_asn.json"
    assert (again / asn).read_text() == (runs["a"] / asn).read_text()
    assert manifest["tasks"][IMAGE3]["input"] == str(again / asn)


def test_refusals(runs, tmp_path):
    rate = runs["sim"].rate_files[0]
    changed = tmp_path / "changed" / rate.name
    changed.parent.mkdir()
    shutil.copyfile(rate, changed)
    with open(changed, "r+b") as handle:  # one byte of the data, past the headers
        handle.seek(-10, os.SEEK_END)
        handle.write(b"\x01")
    from jwstrun.runner import file_sha256

    old, new = file_sha256(rate)[:12], file_sha256(changed)[:12]

    def other_input(data):
        for record in data["tasks"].values():
            for entry in record["inputs"]:
                if entry["path"] == str(rate):
                    entry["path"] = str(changed)
    out = tmp_path / "out"
    result = _cli("reproduce", _crafted(runs, tmp_path / "1", other_input), "-o", out)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {changed}: changed since the run (sha256 {new}... instead "
                             f"of the recorded {old}...). Restore the file the run read, or "
                             "pass --go-on to reproduce with it as it is now.\n")
    assert not out.exists()

    def old_jwst(data):
        for record in data["tasks"].values():
            record["versions"]["jwst"] = "1.12.5"
    from importlib.metadata import version

    jwst = version("jwst")
    result = _cli("reproduce", _crafted(runs, tmp_path / "2", old_jwst), "-o", out)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: jwst {jwst} is installed but the run used jwst 1.12.5. "
                             "Install it (pip install 'jwst==1.12.5') or pass --go-on to "
                             f"reproduce with jwst {jwst}.\n")

    def other_context(data):
        for record in data["tasks"].values():
            record["crds_context"] = "jwst_9999.pmap"
    cache = runs["sim"].crds_path
    result = _cli("reproduce", _crafted(runs, tmp_path / "3", other_context), "-o", out)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: CRDS context jwst_9999.pmap is not in the local cache "
                             f"{cache}. Fetch it (jwstrun refs prefetch INPUTS --context "
                             "jwst_9999.pmap), give a cache that has it (--crds-path DIR), or "
                             "pass --go-on to use the cache's own context.\n")

    def older_jwstrun(data):  # no record of --no-crds-steppars; an input gone too
        for run in data["runs"]:
            del run["environment"]
        data["tasks"][IMAGE3]["inputs"][1]["path"] = str(tmp_path / "gone_cal.fits")
    crafted = _crafted(runs, tmp_path / "4", older_jwstrun)
    result = _cli("reproduce", crafted, "-o", out)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {tmp_path / 'gone_cal.fits'}: missing (task {IMAGE3} read it). Restore it, or "
        "pass --go-on to reproduce the other tasks without it. (2 more difference(s): image2: "
        "--no-crds-steppars not recorded; image3: --no-crds-steppars not recorded)\n")
    result = _cli("reproduce", runs["a"], "-o", runs["a"])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {runs['a']}: is the run to reproduce. Give a new "
                             "directory with -o.\n")
    taken = tmp_path / "taken"
    taken.mkdir()
    shutil.copyfile(runs["a"] / "jwstrun-manifest.json", taken / "jwstrun-manifest.json")
    result = _cli("reproduce", runs["a"], "-o", taken)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {taken}: already holds a jwstrun run "
                             "(jwstrun-manifest.json). Give a new or empty directory with -o.\n")
    result = _cli("reproduce", runs["sim"].outdir, "-o", out)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {runs['sim'].outdir}: no jwstrun-manifest.json in it. "
                             "Give the -o directory of a jwstrun run (image2, image3, step or "
                             "demo) or its jwstrun-manifest.json.\n")


def test_export_bundle(runs, tmp_path):
    import asdf

    bundle = tmp_path / "bundle"
    result = _cli("export", runs["a"], "-o", bundle, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [Path(p).name for p in data["parameter_files"]] == ["01-image2.asdf",
                                                                "02-image3.asdf"]
    assert data["notes"] == []
    script = (bundle / "run.sh").read_text()
    commands = [line for line in script.splitlines() if line and not line.startswith("#")]
    assert not any("jwstrun" in line or "python" in line for line in commands), commands
    assert [c.split()[1] for c in commands if c.startswith("strun ")] == [
        '"$BUNDLE/parameters/01-image2.asdf"', '"$BUNDLE/parameters/01-image2.asdf"',
        '"$BUNDLE/parameters/02-image3.asdf"']
    assert "export CRDS_CONTEXT=jwst_0001.pmap" in commands
    assert f'export CRDS_PATH="${{CRDS_PATH:-{runs["sim"].crds_path}}}"' in commands
    recorded = _manifest(runs["a"])["tasks"][IMAGE3]["resolved_parameters"]
    with asdf.open(bundle / "parameters" / "02-image3.asdf") as af:
        assert af["class"] == "jwst.pipeline.calwebb_image3.Image3Pipeline"
        steps = {s["name"]: s["parameters"] for s in af["steps"]}
        assert {k: v for k, v in steps["tweakreg"].items() if k != "output_dir"} == {
            k: v for k, v in recorded["steps"]["tweakreg"].items() if k != "output_dir"}
        assert steps["tweakreg"]["output_dir"] is None
    with asdf.open(bundle / "parameters" / "01-image2.asdf") as af:
        assert {s["name"]: s["parameters"] for s in af["steps"]}["resample"]["skip"] is True
    assert (bundle / "associations" / f"{STEM}_image3_asn.json").is_file()
    assert "CRDS_CONTEXT=jwst_0001.pmap" in (bundle / "crds.env").read_text()
    assert _cli("export", runs["a"], "-o", bundle).stderr == (
        f"Error: {bundle}: exists and is not empty. Give a new directory with -o.\n")


@pytest.mark.slow  # one more image3 run (25 s): the default suite's budget
def test_one_parameter_changed_is_named_by_diff(runs, tmp_path):
    """A copy of a/ with its image3 task alone (its image2 records dropped, as if image3 had
    run on _cal files made elsewhere), recorded with another jwst: reproduced with --go-on
    and one parameter changed, only image3 runs; diff names the parameter."""
    a3 = tmp_path / "a3"
    shutil.copytree(runs["a"], a3)
    text = (a3 / "jwstrun-manifest.json").read_text().replace(str(runs["a"]), str(a3))
    data = json.loads(text)
    data["tasks"] = {IMAGE3: data["tasks"][IMAGE3]}
    data["tasks"][IMAGE3]["versions"]["stcal"] = "0.0.1"
    (a3 / "jwstrun-manifest.json").write_text(json.dumps(data))
    variant = tmp_path / "variant"
    result = _cli("reproduce", a3, "-o", variant, "--go-on",
                  "--set", "image3.steps.resample.pixfrac=0.5", "--json")
    assert result.exit_code == 0, result.output
    from importlib.metadata import version

    stcal = version("stcal")
    warning = (f"stcal {stcal} is installed but the run used stcal 0.0.1. Install it (pip "
               f"install 'stcal==0.0.1') or pass --go-on to reproduce with stcal {stcal}.")
    assert warning in result.stderr
    assert [c["stage"] for c in json.loads(result.stdout)["calls"]] == ["image3"]
    origin = _manifest(variant)["reproduced_from"]
    assert origin["overrides"] == ["image3.steps.resample.pixfrac=0.5"]
    assert origin["differences"] == [{"kind": "version", "message": warning}]
    result = _cli("diff", a3, variant)
    assert result.exit_code == 1, result.output
    assert "different; 5 product(s) compared, 3 differ" in result.stdout
    data = json.loads(_cli("diff", a3, variant, "--json").stdout)
    assert data["settings"] == [
        {"task": IMAGE3, "kind": "version", "name": "stcal", "a": "0.0.1", "b": stcal},
        {"task": IMAGE3, "kind": "parameter", "name": "steps.resample.pixfrac", "a": 1.0,
         "b": 0.5}]
    # the mosaic and what is measured on it; the crf files are the same
    assert {p["name"] for p in data["products"]} == {
        f"{STEM}_i2d.fits", f"{STEM}_segm.fits", f"{STEM}_cat.ecsv"}


@pytest.mark.slow
def test_exported_bundle_run_by_strun_alone(runs, tmp_path):
    """run.sh with the venv's strun on PATH and a jwstrun that cannot be imported writes
    products identical to jwstrun's."""
    from jwstrun.compare._products import compare_product

    bundle = tmp_path / "bundle"
    assert _cli("export", runs["a"], "-o", bundle).exit_code == 0
    out = _run_bundle(bundle, runs["sim"].outdir, tmp_path)
    products = {n for r in _manifest(runs["a"])["tasks"].values() for n in r["outputs"]}
    assert len(products) == 7
    for name in sorted(products):
        compared = compare_product(runs["a"] / name, out / name, 0.0)
        assert not compared["differs"], (name, compared)


def test_export_runs_corrections_first(runs, tmp_path):
    """A profile's before: steps become strun commands of those steps, in order, on each
    exposure, the pipeline reading what the last one wrote (a manifest copy recording
    clean_flicker_noise before image2, as tests/test_corrections.py runs it)."""
    import asdf

    def corrected(data):
        for record in data["tasks"].values():
            if record["pipeline"] == "image2":
                record["corrections"] = [{
                    "step": "clean_flicker_noise", "class": "jwst.step.CleanFlickerNoiseStep",
                    "package": "jwst", "version": "3.0.0", "status_keyword": "S_CLNFNS",
                    "parameters": {"output_dir": f"/tmp/{record['task_id']}",
                                   "autoparam": True, "n_sigma": 2.5, "user_mask": None},
                    "exposures": 1, "wall_s": 1.0}]
    bundle = tmp_path / "bundle"
    result = _cli("export", _crafted(runs, tmp_path, corrected), "-o", bundle)
    assert result.exit_code == 0, result.output
    commands = [line for line in (bundle / "run.sh").read_text().splitlines()
                if line.startswith(("strun", "mkdir -p \"$OUTPUT/"))]
    rate = runs["sim"].rate_files[0].name
    folder = "$OUTPUT/before-01-image2-1-clean_flicker_noise"
    assert commands[:3] == [
        f'mkdir -p "{folder}"',
        f'strun "$BUNDLE/parameters/01-image2-before1-clean_flicker_noise.asdf" '
        f'"$INPUT/{rate}" --output_dir "{folder}" --suffix rate',
        f'strun "$BUNDLE/parameters/01-image2.asdf" "{folder}/{rate}" --output_dir "$OUTPUT"']
    assert len([c for c in commands if "clean_flicker_noise.asdf" in c]) == 2  # one call
    with asdf.open(bundle / "parameters" / "01-image2-before1-clean_flicker_noise.asdf") as af:
        assert af["class"] == "jwst.clean_flicker_noise.clean_flicker_noise_step." \
            "CleanFlickerNoiseStep"
        assert af["parameters"]["autoparam"] is True and af["parameters"]["n_sigma"] == 2.5


@pytest.mark.slow
def test_corrections_reproduced_and_exported(runs, tmp_path):
    """image2 with clean_flicker_noise before it (a profile's before:): reproduced, and
    run from the export by strun alone, its products are identical."""
    from jwstrun.compare._products import compare_product
    from jwstrun.reproduce import export_run, reproduce_run
    from jwstrun.runner import run_image2

    profile = tmp_path / "clean.yaml"
    profile.write_text("image2:\n  before:\n    - step: clean_flicker_noise\n"
                       "      autoparam: true\n  steps:\n    resample:\n      skip: true\n")
    c = tmp_path / "c"
    summary = run_image2([str(p) for p in runs["sim"].rate_files], c, jobs=2,
                         crds_env_file=str(runs["sim"].env_file), profiles=[str(profile)])
    assert not summary.failed, [r.error for r in summary.failed]
    again = reproduce_run(c, tmp_path / "again", jobs=2)
    assert [s.pipeline for s in again.summaries] == ["image2"] and not again.failed
    result = _cli("diff", c, tmp_path / "again")
    assert result.exit_code == 0, result.output
    export_run(c, tmp_path / "bundle")
    out = _run_bundle(tmp_path / "bundle", runs["sim"].outdir, tmp_path)
    for name in [n for r in _manifest(c)["tasks"].values() for n in r["outputs"]]:
        assert not compare_product(c / name, out / name, 0.0)["differs"], name


def _run_bundle(bundle: Path, inputs: Path, tmp_path: Path) -> Path:
    """run.sh with the venv's strun on PATH and a jwstrun that cannot be imported."""
    import sys

    poison = tmp_path / "poison" / "jwstrun"
    poison.mkdir(parents=True)
    (poison / "__init__.py").write_text("raise ImportError('the bundle imported jwstrun')\n")
    env = {"HOME": os.environ.get("HOME", str(tmp_path)), "PYTHONPATH": str(poison.parent),
           "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    probe = subprocess.run([sys.executable, "-c", "import jwstrun"], env=env, cwd=tmp_path,
                           capture_output=True, text=True)
    assert "the bundle imported jwstrun" in probe.stderr  # the premise: no jwstrun here
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(bundle / "run.sh"), str(inputs), str(out)],
                          env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return out
