"""Planning stands no task in for another (issue 21, items 1-4 and the smaller ones): task
ids unique per product, inputs judged by their headers and not their names alone, no
product replacing another task's, the same exposure never mosaicked twice, and parameters
that would do nothing or fail late refused up front."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from jwstrun.cli import cli

from ._helpers import (
    Run,
    assert_no_traceback,
    assert_nothing_half_written,
    jwstrun_command,
    read_manifest,
    tree_digest,
    worker_pids,
)


# ----------------------------------------------------------------------------- helpers
def _jwstrun(*args, timeout=600) -> subprocess.CompletedProcess:
    """A real ``python -m jwstrun`` run."""
    return subprocess.run(jwstrun_command(*args), capture_output=True, text=True,
                          timeout=timeout)


def _image2(sim, outdir, *inputs, jobs="2", extra=()):
    return _jwstrun("image2", *inputs, "-o", outdir, "-j", jobs, "--crds-env", sim.env_file,
                    "--no-progress", *extra)


def _image3(sim, outdir, *inputs, extra=()):
    return _jwstrun("image3", *inputs, "-o", outdir, "-j", "1", "--crds-env", sim.env_file,
                    "--no-progress", *extra)


def _refused(args, tmp_path) -> str:
    """Run the CLI on ``args`` (OUTDIR tmp_path/out): exit 1, one Error line, no OUTDIR."""
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [*map(str, args), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert_no_traceback(result.output)
    text = result.output.strip()
    assert text.startswith("Error: ") and "\n" not in text, text
    assert not out.exists(), "OUTDIR was created for a refused run"
    return text


def _same_data(product: Path, reference: Path) -> None:
    """SCI, ERR and DQ of ``product`` equal those of ``reference``."""
    from astropy.io import fits

    with fits.open(product) as a, fits.open(reference) as b:
        for ext in ("SCI", "ERR", "DQ"):
            np.testing.assert_array_equal(a[ext].data, b[ext].data, err_msg=f"{product.name}[{ext}]")


def _statuses(outdir: Path) -> dict[str, str]:
    return {k: r["status"] for k, r in read_manifest(outdir)["tasks"].items()}


def _rate(sim, n: int) -> Path:
    return next(p for p in sim.rate_files if f"_0000{n}_" in p.name)


def _cal(cal_files, n: int) -> Path:
    return next(p for p in cal_files if f"_0000{n}_" in p.name)


# ----------------------------------------------------------------------------- item 1
def test_loose_files_differing_in_punctuation_get_their_own_tasks(sim, reference, tmp_path):
    """Loose '..._nrcb1 v2_rate.fits' (exposure 1) and '..._nrcb1_v2_rate.fits' (exposure 2)
    with -j 2: two task ids, both ok, each product calibrated from its own exposure, and a
    re-run skips both."""
    data = tmp_path / "in"
    data.mkdir()
    stem = _rate(sim, 1).name.removesuffix("_rate.fits")
    spaced, plain = data / f"{stem} v2_rate.fits", data / f"{stem}_v2_rate.fits"
    shutil.copy(_rate(sim, 1), spaced)
    shutil.copy(_rate(sim, 2), plain)
    outdir = tmp_path / "out"
    run = _image2(sim, outdir, spaced, plain)
    assert run.returncode == 0, run.stderr[-3000:]
    statuses = _statuses(outdir)
    assert sorted(statuses.values()) == ["ok", "ok"], statuses
    assert len({Path(r["log_file"]).name for r in read_manifest(outdir)["tasks"].values()}) == 2
    assert_nothing_half_written(outdir)
    ref = reference["outdir"]
    _same_data(outdir / f"{stem} v2_cal.fits", ref / _rate(sim, 1).name.replace("_rate", "_cal"))
    _same_data(outdir / f"{stem}_v2_cal.fits", ref / _rate(sim, 2).name.replace("_rate", "_cal"))
    again = _image2(sim, outdir, spaced, plain)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 ok, 2 up to date (skipped), 0 failed" in again.stdout + again.stderr


def test_association_products_differing_in_punctuation_get_their_own_tasks(
    sim, reference, tmp_path
):
    """A Level-2 association with products 'evil a' (exposure 1) and 'evil_a' (exposure 2),
    -j 2: both ok, each from its own exposure, and a re-run skips both."""
    data = tmp_path / "in"
    data.mkdir()
    for n in (1, 2):
        shutil.copy(_rate(sim, n), data / _rate(sim, n).name)
    asn = data / "evil_asn.json"
    asn.write_text(json.dumps({
        "asn_type": "image2", "asn_rule": "Asn_Lv2Image", "asn_id": "o001", "asn_pool": "none",
        "program": "01234",
        "products": [{"name": name, "members": [{"expname": _rate(sim, n).name,
                                                 "exptype": "science"}]}
                     for name, n in (("evil a", 1), ("evil_a", 2))],
    }))
    outdir = tmp_path / "out"
    run = _image2(sim, outdir, asn)
    assert run.returncode == 0, run.stderr[-3000:]
    records = read_manifest(outdir)["tasks"]
    assert sorted((r["product"], r["status"]) for r in records.values()) == [
        ("evil a", "ok"), ("evil_a", "ok")]
    assert_nothing_half_written(outdir)
    ref = reference["outdir"]
    _same_data(outdir / "evil a_cal.fits", ref / _rate(sim, 1).name.replace("_rate", "_cal"))
    _same_data(outdir / "evil_a_cal.fits", ref / _rate(sim, 2).name.replace("_rate", "_cal"))
    again = _image2(sim, outdir, asn)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 ok, 2 up to date (skipped), 0 failed" in again.stdout + again.stderr
    # A manifest of before this fix kept 'evil a' under the id 'image2-evil_a' (the last
    # record written there): that record is the product's own, not another task's whose
    # files would be replaced, so both tasks simply run again.
    manifest = read_manifest(outdir)
    old = next(k for k, r in manifest["tasks"].items() if r["product"] == "evil a")
    manifest["tasks"]["image2-evil_a"] = dict(manifest["tasks"].pop(old), task_id="image2-evil_a")
    (outdir / "jwstrun-manifest.json").write_text(json.dumps(manifest))
    again = _image2(sim, outdir, asn)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 ok, 0 up to date (skipped), 0 failed" in again.stdout + again.stderr
    _same_data(outdir / "evil a_cal.fits", ref / _rate(sim, 1).name.replace("_rate", "_cal"))


def test_task_ids_stay_readable_stable_and_distinct():
    """Ids of plain names are unchanged (old manifests resume); a sanitised name gets a
    hash of the exact name; a name crafted to equal another's id is refused naming both."""
    from jwstrun.errors import InputError
    from jwstrun.runner.plan import Planned, _check_unique_products, _safe_id

    assert _safe_id("jw01234001001_02101_00001_nrcb1") == "jw01234001001_02101_00001_nrcb1"
    assert _safe_id("evil a") == _safe_id("evil a") != _safe_id("evil_a") == "evil_a"
    assert _safe_id("evil a").startswith("evil_a-")
    assert _safe_id("evil/a") != _safe_id("evil a")
    crafted = [Planned("image2", name, Path(f"{i}_rate.fits"), [Path(f"{i}_rate.fits")],
                       ["science"]) for i, name in enumerate(("evil a", _safe_id("evil a")))]
    with pytest.raises(InputError, match="would share task id image2-evil_a-"):
        _check_unique_products(crafted)


# ----------------------------------------------------------------------------- item 2
@pytest.fixture(scope="module")
def renamed(sim, cal_files, tmp_path_factory):
    """A _cal renamed *_rate.fits, the same with its step statuses removed (only SCI BUNIT
    MJy/sr left to tell), a _rate renamed *_cal.fits, and a Level-2 association of the first."""
    from astropy.io import fits

    root = tmp_path_factory.mktemp("renamed")
    stem = "jw01234001001_02101_00011_nrcb1"  # names no real exposure has
    cal_as_rate = root / f"{stem}_rate.fits"
    shutil.copy(_cal(cal_files, 1), cal_as_rate)
    stripped = root / "jw01234001001_02101_00012_nrcb1_rate.fits"
    shutil.copy(_cal(cal_files, 2), stripped)
    with fits.open(stripped, mode="update") as hdul:
        for key in ("S_WCS", "S_FLAT", "S_PHOTOM"):
            del hdul[0].header[key]
    rate_as_cal = root / "jw01234001001_02101_00013_nrcb1_cal.fits"
    shutil.copy(_rate(sim, 3), rate_as_cal)
    asn = root / "l2_asn.json"
    asn.write_text(json.dumps({
        "asn_type": "image2", "asn_rule": "Asn_Lv2Image", "asn_id": "o001", "asn_pool": "none",
        "products": [{"name": stem, "members": [{"expname": cal_as_rate.name,
                                                 "exptype": "science"}]}],
    }))
    return {"root": root, "cal_as_rate": cal_as_rate, "stripped": stripped,
            "rate_as_cal": rate_as_cal, "asn": asn, "before": tree_digest(root)}


def test_calibrated_file_renamed_rate_is_refused_by_image2(renamed, sim, tmp_path):
    """A _cal renamed *_rate.fits (flat and photom would be applied twice), also with its
    S_WCS/S_FLAT/S_PHOTOM removed (SCI BUNIT MJy/sr tells), alone or among real _rate files:
    image2 refuses it with the message it gives for a _cal."""
    for path in (renamed["cal_as_rate"], renamed["stripped"]):
        text = _refused(["image2", *sim.rate_files, path], tmp_path)
        assert text == (
            f"Error: {path}: its header says it is a _cal product, already processed by "
            "calwebb_image2. Give _rate/_rateints files to image2, or give this file to "
            "'jwstrun image3'."
        )
    text = _refused(["image2", renamed["asn"]], tmp_path)
    assert text == (
        f"Error: {renamed['asn']}: {renamed['cal_as_rate'].name}: is a 'cal' product; a Level-2 "
        "association takes rate/rateints files."
    )
    assert tree_digest(renamed["root"]) == renamed["before"]


def test_rate_file_renamed_cal_is_refused_by_image3(renamed, cal_files, tmp_path):
    """A _rate renamed *_cal.fits, among real _cal files: image3 refuses it with the message
    it gives for a _rate."""
    path = renamed["rate_as_cal"]
    text = _refused(["image3", *cal_files[:2], path], tmp_path)
    assert text == (
        f"Error: {path}: its header says it is a _rate exposure, not yet calibrated. Run "
        "'jwstrun image2' on it first and give the resulting _cal files to image3."
    )
    assert tree_digest(renamed["root"]) == renamed["before"]


# ----------------------------------------------------------------------------- item 3
def _level3(path: Path, product: str, members, asn_id="o001") -> Path:
    path.write_text(json.dumps({
        "asn_type": "image3", "asn_rule": "Asn_Lv3Image", "asn_id": asn_id, "asn_pool": "none",
        "program": "01234",
        "products": [{"name": product, "members": [{"expname": m.name, "exptype": "science"}
                                                   for m in members]}],
    }))
    return path


@pytest.fixture(scope="module")
def cal_dir(cal_files, tmp_path_factory):
    """Copies of the reference _cal files, next to which associations are written."""
    root = tmp_path_factory.mktemp("cal_dir")
    for cal in cal_files:
        shutil.copy(cal, root / cal.name)
    return root


def test_level3_product_named_like_an_exposure_does_not_replace_image2_products(
    sim, reference, cal_files, cal_dir, tmp_path
):
    """A Level-3 association whose product name is exposure 1's basename, run into image2's
    OUTDIR, would write its _i2d over image2's: refused before anything runs, naming the
    file and the owner task; the other way round (image2 after that image3) too."""
    stem = _rate(sim, 1).name.removesuffix("_rate.fits")
    asn = _level3(cal_dir / "clash_asn.json", stem, sorted(cal_dir.glob("*_cal.fits")))
    outdir = tmp_path / "image2_out"
    shutil.copytree(reference["outdir"], outdir)
    before = tree_digest(outdir)
    run = _image3(sim, outdir, asn)
    assert run.returncode == 1, run.stderr[-3000:]
    assert_no_traceback(run.stderr)
    assert run.stderr.strip().splitlines()[-1] == (
        f"Error: {outdir / stem}_i2d.fits: task image3-{stem} ({asn}) would replace this "
        f"product of task image2-{stem}. Give the product another name (for an association: "
        "its product name, or asn_id for _crf files) or use another -o OUTDIR; nothing was run."
    )
    assert tree_digest(outdir) == before
    assert not (outdir / ".jwstrun-tmp").exists()

    # image3 first, then image2 on the exposure whose name the mosaic took
    outdir = tmp_path / "image3_out"
    first = _image3(sim, outdir, asn)
    assert first.returncode == 0, first.stderr[-3000:]
    before = tree_digest(outdir)
    run = _image2(sim, outdir, _rate(sim, 1))
    assert run.returncode == 1, run.stderr[-3000:]
    assert run.stderr.strip().splitlines()[-1].startswith(
        f"Error: {outdir / stem}_i2d.fits: task image2-{stem} ({_rate(sim, 1)}) would replace "
        f"this product of task image3-{stem}."
    )
    assert tree_digest(outdir) == before
    assert _statuses(outdir) == {f"image3-{stem}": "ok"}


def test_two_mosaics_sharing_an_exposure_do_not_replace_each_others_crf(sim, cal_dir, tmp_path):
    """Two Level-3 associations with one member and the asn_id in common would both write
    that member's _crf file: refused before anything runs, naming the file."""
    cals = sorted(cal_dir.glob("*_cal.fits"))
    a = _level3(cal_dir / "a_asn.json", "mosaic_a", cals[:2])
    b = _level3(cal_dir / "b_asn.json", "mosaic_b", cals[1:])
    crf = cals[1].name.replace("_cal.fits", "_o001_crf.fits")
    outdir = tmp_path / "out"
    run = _image3(sim, outdir, a, b)
    assert run.returncode == 1, run.stderr[-3000:]
    assert run.stderr.strip().splitlines()[-1].startswith(
        f"Error: {outdir / crf}: task image3-mosaic_b ({b}) would replace this product of "
        "task image3-mosaic_a."
    )
    assert_no_traceback(run.stderr)
    assert sorted(p.name for p in outdir.iterdir()) == []


# ----------------------------------------------------------------------------- item 4
@pytest.fixture(scope="module")
def repeated(cal_files, tmp_path_factory):
    """Three _cal files plus each again: exposure 1 as a symlink, exposure 2 as a hard link,
    exposure 3 as a copy in a subdirectory, each under another exposure's name; and a
    Level-3 association listing all six."""
    root = tmp_path_factory.mktemp("repeated")
    (root / "sub").mkdir()
    for cal in cal_files:
        shutil.copy(cal, root / cal.name)
    names = {n: _cal(cal_files, n).name for n in (1, 2, 3)}
    symlink = root / names[1].replace("_00001_", "_00004_")
    symlink.symlink_to(names[1])
    hardlink = root / names[2].replace("_00002_", "_00005_")
    os.link(root / names[2], hardlink)
    copy = root / "sub" / names[3].replace("_00003_", "_00006_")
    shutil.copy(root / names[3], copy)
    unique = [root / names[n] for n in (1, 2, 3)]
    asn = _level3(root / "repeat_asn.json", "repeat", [*unique, symlink, hardlink])
    data = json.loads(asn.read_text())
    data["products"][0]["members"].append({"expname": f"sub/{copy.name}", "exptype": "science"})
    asn.write_text(json.dumps(data))
    # (the repeat, why, the one kept)
    warnings = [
        (symlink.name, "is the same file as", names[1]),
        (hardlink.name, "is the same file as", names[2]),
        (copy.name, "is the same exposure (OBS_ID V01234001001P000000002101, EXPOSURE 3, "
         "DETECTOR NRCB1) as", names[3]),
    ]
    return {"root": root, "unique": unique, "repeats": [symlink, hardlink, copy], "asn": asn,
            "warnings": warnings, "before": tree_digest(root)}


def _warned(stderr: str, warnings, prefix="") -> None:
    """One warning line per repeat, naming it, why, and the one kept, in that order."""
    lines = [line for line in stderr.splitlines() if line.endswith("; using it once.")]
    assert len(lines) == len(warnings), stderr[-3000:]
    for repeat, why, kept in warnings:
        pattern = rf"^WARNING {prefix}.*{re.escape(repeat)}:? {re.escape(why)} .*{re.escape(kept)};"
        assert any(re.search(pattern, line) for line in lines), (pattern, lines)


def test_same_exposure_twice_is_mosaicked_once(sim, repeated, tmp_path):
    """A hand-written Level-3 association and loose _cal files that list exposures again (a
    symlink, a hard link, a copy under another name): each exposure is mosaicked once, with
    a warning naming both, and both give the same mosaic."""
    outdir = tmp_path / "asn_out"
    run = _image3(sim, outdir, repeated["asn"])
    assert run.returncode == 0, run.stderr[-3000:]
    _warned(run.stderr, repeated["warnings"], prefix=re.escape(f"{repeated['asn']}: member "))
    (record,) = read_manifest(outdir)["tasks"].values()
    assert sorted(e["name"] for e in record["inputs"]) == sorted(
        [repeated["asn"].name, *(p.name for p in repeated["unique"])])
    assert len(list(outdir.glob("*_crf.fits"))) == 3

    loose = tmp_path / "loose_out"
    run = _image3(sim, loose, *repeated["unique"], *repeated["repeats"])
    assert run.returncode == 0, run.stderr[-3000:]
    _warned(run.stderr, repeated["warnings"])
    (built,) = loose.glob("*_image3_asn.json")
    members = json.loads(built.read_text())["products"][0]["members"]
    assert sorted(Path(m["expname"]).name for m in members) == sorted(
        p.name for p in repeated["unique"])
    (a,), (b,) = outdir.glob("*_i2d.fits"), loose.glob("*_i2d.fits")
    from astropy.io import fits

    with fits.open(a) as ha, fits.open(b) as hb:
        np.testing.assert_array_equal(ha["SCI"].data, hb["SCI"].data)
        np.testing.assert_array_equal(ha["WHT"].data, hb["WHT"].data)
    assert tree_digest(repeated["root"]) == repeated["before"]


def test_jwstrun_asn_lists_each_exposure_once(repeated, tmp_path):
    """'jwstrun asn' given an exposure again (a symlink, a hard link, a copy under another
    name): the association lists each exposure once, with a warning naming both."""
    for out, extra in ((tmp_path / "l3_asn.json", ()), (tmp_path / "grouped", ("--group-by",
                                                                             "default"))):
        run = _jwstrun("asn", *repeated["unique"], *repeated["repeats"], "-o", out,
                       "--allow-outside", *extra)
        assert run.returncode == 0, run.stderr[-3000:]
        _warned(run.stderr, repeated["warnings"])
        (written,) = [out] if out.is_file() else out.glob("*_asn.json")
        members = json.loads(written.read_text())["products"][0]["members"]
        assert sorted(Path(m["expname"]).name for m in members) == sorted(
            p.name for p in repeated["unique"])
    assert tree_digest(repeated["root"]) == repeated["before"]


# ----------------------------------------------------------------------------- smaller items
def test_pipeline_level_skip_is_refused(sim, tmp_path):
    """--set skip=true (and 'skip: true' at pipeline level in a profile), which stpipe
    ignores for a pipeline run on its own: refused before anything runs; skip=false and a
    step's skip are accepted."""
    rate = sim.rate_files[0]
    why = ("true is refused at pipeline level: stpipe ignores it for a pipeline run on its "
           "own, which would run anyway. Skip steps with steps.STEP.skip=true, or do not run "
           "the pipeline")
    assert _refused(["image2", rate, "--set", "skip=true"], tmp_path) == (
        f"Error: --set skip=true: skip: {why}")
    profile = tmp_path / "skip.yaml"
    profile.write_text("image2:\n  skip: true\n")
    assert _refused(["image2", rate, "--profile", profile], tmp_path) == (
        f"Error: {profile}:2: image2.skip: {why}")
    from jwstrun.profiles import parse_sets

    parse_sets(["skip=false", "steps.resample.skip=true"], "image2")


def test_nan_parameters_are_refused(sim, cal_files, tmp_path):
    """--set steps.resample.pixfrac=nan (range 0-1, where inf is refused), nan in a list,
    in an unbounded float and '.nan' in a profile: refused before anything runs."""
    assert _refused(["image3", *cal_files, "--set", "steps.resample.pixfrac=nan"], tmp_path) == (
        "Error: --set steps.resample.pixfrac=nan: 'nan' is not a number (NaN); give a finite "
        "value (spec: float(min=0.0, max=1.0, default=1.0))")
    assert _refused(["image3", *cal_files, "--set", "steps.resample.pixfrac=inf"], tmp_path) == (
        "Error: --set steps.resample.pixfrac=inf: 'inf' is out of range: the value \"inf\" is "
        "too big. (spec: float(min=0.0, max=1.0, default=1.0))")
    for setting in ("steps.resample.crval=1,NaN", "steps.tweakreg.searchrad=nan"):
        assert "is not a number (NaN)" in _refused(["image3", *cal_files, "--set", setting],
                                                    tmp_path)
    profile = tmp_path / "nan.yaml"
    profile.write_text("image2:\n  steps:\n    resample:\n      pixfrac: .nan\n")
    assert _refused(["image2", sim.rate_files[0], "--profile", profile], tmp_path) == (
        f"Error: {profile}:4: image2.steps.resample.pixfrac: nan is not a number (NaN); give a "
        "finite value (spec: float(min=0.0, max=1.0, default=1.0))")


def _limit_address_space():
    """preexec_fn: 6 GB of address space, so a 95 GB allocation fails with MemoryError."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


def test_out_of_memory_at_one_job_does_not_advise_fewer_jobs(sim, tmp_path):
    """A real MemoryError at -j 1 (resample asked for a 95 GB mosaic, address space limited to
    6 GB): the reason says to give it more memory or smaller inputs, not to use fewer jobs."""
    outdir = tmp_path / "out"
    run = subprocess.run(
        jwstrun_command("image2", sim.rate_files[0], "-o", outdir, "-j", "1", "--crds-env",
                        sim.env_file, "--no-progress", "--set",
                        "steps.resample.pixel_scale_ratio=0.001"),
        capture_output=True, text=True, timeout=600, preexec_fn=_limit_address_space,
    )
    assert run.returncode == 1, run.stderr[-3000:]
    assert_no_traceback(run.stderr)
    (record,) = read_manifest(outdir)["tasks"].values()
    assert record["error"].endswith(
        f"failed in step resample on {sim.rate_files[0].name}: out of memory with a single "
        "job (-j 1). Run it with more memory available, or on smaller inputs (and check "
        "parameters that enlarge the products, such as resample's pixel_scale_ratio)."
    ), record["error"]
    assert "fewer parallel jobs" not in run.stdout + run.stderr


def _holds_a_log(pid: int, logs: Path) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(logs))
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def test_worker_killed_at_one_job_does_not_advise_fewer_jobs(sim, tmp_path,
                                                             no_leftover_processes):
    """The only worker of a -j 1 run SIGKILLed mid-task (as by the OOM killer): the reason
    does not advise fewer jobs."""
    outdir = tmp_path / "out"
    run = Run(["image2", sim.rate_files[0], "-o", outdir, "-j", "1", "--crds-env",
               sim.env_file, "--no-progress"], tmp_path / "logs", name="run")
    no_leftover_processes.append(run.pid)
    busy: list[int] = []

    def the_worker_is_busy():
        busy[:] = [pid for pid in worker_pids(run.pid) if _holds_a_log(pid, outdir / "logs")]
        return bool(busy)

    assert run.wait_for(the_worker_is_busy), run.stderr
    os.kill(busy[0], 9)
    assert run.wait() == 1, run.stderr[-3000:]
    assert_no_traceback(run.stderr, worker_killed=True)
    assert ("worker process was killed by SIGKILL (out of memory? with a single job already: "
            "run it with more memory available, or with --low-memory for image3)") in run.stderr
    assert "fewer jobs" not in run.stderr
