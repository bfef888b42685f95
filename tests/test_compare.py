"""``jwstrun diff`` on real runs.

One simulated NIRCam SUB160 program (two dithers) reduced once by image2 (its own
mosaic skipped) and image3 into ``a/``; ``a2/`` is a copy of it; ``b/`` is a copy
whose image3 was re-run with ``steps.resample.pixfrac=0.5`` (only the mosaic and
what is measured on it change; the image2 products and the crf stay the same).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from jwstrun.cli import cli

STEM = "jw01234-o001_t001_nircam_clear-f200w-sub160"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from jwstrun.runner import run_image2, run_image3
    from jwstrun.simulate import simulate_program

    root = tmp_path_factory.mktemp("compare")
    sim = simulate_program(root / "sim", subarray="SUB160", n_dithers=2, seed=7)
    env = str(sim.env_file)
    a = root / "a"
    summary = run_image2([str(p) for p in sim.rate_files], a, jobs=2, crds_env_file=env,
                         sets=["steps.resample.skip=true"])
    assert not summary.failed, [r.error for r in summary.failed]
    summary = run_image3(sorted(str(p) for p in a.glob("*_cal.fits")), a, jobs=1,
                         crds_env_file=env)
    assert not summary.failed, [r.error for r in summary.failed]
    shutil.copytree(a, root / "a2")
    b = root / "b"
    shutil.copytree(a, b)
    summary = run_image3(sorted(str(p) for p in b.glob("*_cal.fits")), b, jobs=1,
                         crds_env_file=env, sets=["steps.resample.pixfrac=0.5"])
    assert not summary.failed, [r.error for r in summary.failed]
    return {"root": root, "sim": sim, "a": a, "a2": root / "a2", "b": b}


def _diff(*args):
    return CliRunner().invoke(cli, ["diff", *map(str, args)], catch_exceptions=False)


def test_a_run_and_its_copy_are_identical(runs):
    result = _diff(runs["a"], runs["a2"])
    assert result.exit_code == 0, result.output
    assert (f"{runs['a']} vs {runs['a2']}: identical; 7 product(s) compared, 0 differ, "
            "0 only in A, 0 only in B; 0 setting(s) differ") in result.stdout
    data = json.loads(_diff(runs["a"], runs["a2"], "--json", "--all").stdout)
    assert data["identical"] is True
    names = {p["name"]: p for p in data["products"]}
    assert len(names) == 7
    i2d = names[f"{STEM}_i2d.fits"]
    assert i2d["wcs"]["max_offset_arcsec"] == 0.0 and i2d["wcs"]["pixel_arcsec"] > 0.02
    assert set(i2d["arrays"]) == {"SCI", "ERR", "WHT", "CON"}
    cal = next(p for n, p in names.items() if n.endswith("_cal.fits"))
    assert {"SCI", "ERR", "DQ"} <= set(cal["arrays"])
    cat = names[f"{STEM}_cat.ecsv"]["catalog"]
    assert cat["n_a"] == cat["n_b"] == cat["n_matched"] > 0
    assert cat["median_flux_ratio"] == 1.0


def test_a_changed_parameter_is_named_with_the_products_it_changed(runs):
    result = _diff(runs["a"], runs["b"])
    assert result.exit_code == 1, result.output
    task = f"image3-{STEM}"
    assert f"{task}  parameter  steps.resample.pixfrac  1.0  0.5" in result.stdout
    assert "3 differ" in result.stdout
    data = json.loads(_diff(runs["a"], runs["b"], "--json").stdout)
    assert data["identical"] is False
    assert data["settings"] == [{"task": task, "kind": "parameter",
                                 "name": "steps.resample.pixfrac", "a": 1.0, "b": 0.5}]
    changed = {p["name"]: p for p in data["products"]}
    # the mosaic and what is measured on it; image2's products and the crf are the same
    assert set(changed) == {f"{STEM}_i2d.fits", f"{STEM}_segm.fits", f"{STEM}_cat.ecsv"}
    sci = changed[f"{STEM}_i2d.fits"]["arrays"]["SCI"]
    assert sci["differs"] and 0 < sci["n_differ"] <= sci["n_pixels"]
    assert sci["max_abs_diff"] > 0
    assert changed[f"{STEM}_i2d.fits"]["wcs"]["max_offset_arcsec"] == 0.0  # same output grid
    assert f"{STEM}_i2d.fits   SCI" in result.stdout


def test_tolerance_and_what_is_only_in_one_run(runs, tmp_path):
    from jwstrun.compare import diff_runs

    loose = diff_runs(runs["a"], runs["b"], tolerance=1e9)
    # within any relative tolerance: the segmentation labels; not pixels that became
    # NaN (the i2d's edges) nor a source found in one catalog only
    loose_names = {p["name"] for p in loose.changed_products}
    assert loose_names == {f"{STEM}_i2d.fits", f"{STEM}_cat.ecsv"}
    i2d = next(p for p in loose.changed_products if p["name"].endswith("_i2d.fits"))
    assert i2d["arrays"]["SCI"]["n_differ"] == i2d["arrays"]["SCI"]["n_nan_mismatch"] > 0
    assert [s["name"] for s in loose.settings] == ["steps.resample.pixfrac"]
    # a run without the image3 task: its products are listed as only in A
    c = tmp_path / "c"
    shutil.copytree(runs["a"], c)
    manifest = json.loads((c / "jwstrun-manifest.json").read_text())
    del manifest["tasks"][f"image3-{STEM}"]
    (c / "jwstrun-manifest.json").write_text(json.dumps(manifest))
    cal = sorted(c.glob("*_cal.fits"))[0]
    cal.unlink()  # recorded but gone: a difference, said
    result = _diff(runs["a"], c)
    assert result.exit_code == 1
    assert f"only in A: {STEM}_i2d.fits" in result.stdout
    assert f"tasks only in A: image3-{STEM}" in result.stdout
    assert f"{cal.name}  file  missing: {cal}" in result.stdout


def test_bad_input(runs, tmp_path):
    missing = tmp_path / "nope"
    result = _diff(runs["a"], missing)
    assert result.exit_code == 2
    assert result.stderr == (f"Error: {missing}: no such directory. Give the -o directory of "
                             "a jwstrun run (image2, image3, step or demo).\n")
    result = _diff(runs["sim"].outdir, runs["a"])  # simulated exposures: no manifest
    assert result.exit_code == 2
    assert result.stderr == (f"Error: {runs['sim'].outdir}: not a jwstrun output directory (no "
                             "jwstrun-manifest.json). Give the -o directory of a jwstrun run "
                             "(image2, image3, step or demo).\n")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "jwstrun-manifest.json").write_text("{not json")
    result = _diff(broken, runs["a"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {broken / 'jwstrun-manifest.json'}: unreadable "
                                    "manifest (")
    assert _diff(runs["a"], runs["b"], "--tolerance", "-1").stderr == \
        "Error: --tolerance -1.0: must be 0 or more (relative).\n"


def test_dq_bits_named():
    from jwstrun.compare._products import array_difference, dq_difference

    a = np.array([[0, 1], [16, 0]], dtype=np.uint32)
    b = np.array([[0, 17], [0, 1 << 20]], dtype=np.uint32)
    stats = dq_difference(a, b)
    assert stats["n_differ"] == 3
    assert [(x["name"], x["gained"], x["lost"]) for x in stats["bits"]] == [
        ("OUTLIER", 1, 1), ("bit 20", 1, 0)]
    x = np.array([1.0, 2.0, np.nan, 4.0])
    y = np.array([1.0, 2.0 * (1 + 1e-7), 3.0, 4.0])
    exact = array_difference(x, y, 0.0)
    assert exact["n_differ"] == 2 and exact["n_nan_mismatch"] == 1
    assert array_difference(x, y, 1e-6)["n_differ"] == 1
