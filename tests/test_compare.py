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
def runs(tmp_path_factory, small_reduced_run):
    from jwstrun.runner import run_image3

    root = tmp_path_factory.mktemp("compare")
    sim, a = small_reduced_run["sim"], small_reduced_run["a"]
    env = str(sim.env_file)
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
    assert set(i2d["arrays"]) == {"SCI", "ERR", "WHT", "CON", "VAR_POISSON", "VAR_RNOISE",
                                  "VAR_FLAT"}
    assert i2d["headers"] == {"differs": False, "keywords": []}
    cal = next(p for n, p in names.items() if n.endswith("_cal.fits"))
    assert {"SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"} <= set(cal["arrays"])
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
    # the variances resampled with the other pixfrac too; the header records it
    assert changed[f"{STEM}_i2d.fits"]["arrays"]["VAR_POISSON"]["n_differ"] > 0
    assert {"hdu": "PRIMARY", "key": "PIXFRAC", "a": 1.0, "b": 0.5} in \
        changed[f"{STEM}_i2d.fits"]["headers"]["keywords"]
    assert "PRIMARY PIXFRAC: 1.0 -> 0.5" in result.stdout
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


def test_headers_and_variances(tmp_path):
    """Keywords that matter are named; the file's date, name and checksums are not."""
    from astropy.io import fits

    from jwstrun.compare._products import IGNORED_KEYWORDS, compare_product

    def write(name, date, gain, var):
        primary = fits.PrimaryHDU()
        primary.header.update(DATE=date, FILENAME=name, CAL_VER="1.0", R_GAIN=gain)
        sci = fits.ImageHDU(np.ones((4, 4), np.float32), name="SCI")
        sci.header["BUNIT"] = "MJy/sr"
        hdul = fits.HDUList([primary, sci, fits.ImageHDU(var, name="VAR_POISSON")])
        hdul.writeto(tmp_path / name, checksum=True)
        return tmp_path / name

    var = np.zeros((4, 4), np.float32)
    a = write("a_rate.fits", "2026-01-01T00:00:00", "crds://gain_1.fits", var)
    b = write("b_rate.fits", "2026-02-02T00:00:00", "crds://gain_2.fits", var + 1e-3)
    assert {"DATE", "FILENAME", "CHECKSUM", "DATASUM"} <= IGNORED_KEYWORDS
    result = compare_product(a, b, 0.0)
    assert result["headers"] == {"differs": True, "keywords": [
        {"hdu": "PRIMARY", "key": "R_GAIN", "a": "crds://gain_1.fits", "b": "crds://gain_2.fits"}]}
    assert result["arrays"]["VAR_POISSON"]["n_differ"] == 16
    assert result["arrays"]["SCI"]["differs"] is False
    same = write("c_rate.fits", "2026-03-03T00:00:00", "crds://gain_1.fits", var)
    result = compare_product(a, same, 0.0)
    assert not result["differs"] and not result["bytes_equal"]


def test_report_compare_section(runs, tmp_path):
    """``jwstrun report A --compare B``: jwstrun diff's result as a section of A's page,
    rendered by a headless browser when one is installed (tests/test_look.py's way)."""
    import re
    import subprocess

    from tests.test_look import CHROMIUM

    report = tmp_path / "a"
    shutil.copytree(runs["a"], report)
    result = CliRunner().invoke(cli, ["report", str(report), "--no-previews", "--compare",
                                      str(runs["b"])], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    page = (report / "jwstrun-report.html").read_text()
    section = page[page.index("<h2 id='compare'>"):]
    assert ("different</b>: 7 product(s) compared, 3 differ, 0 only in A, 0 only in B; "
            "1 setting(s) differ.") in section
    assert "<td><code>steps.resample.pixfrac</code></td><td><code>1.0</code></td>" \
        "<td><code>0.5</code></td>" in section
    assert "PRIMARY PIXFRAC: 1.0 -&gt; 0.5" in section
    for name in ("i2d.fits", "segm.fits", "cat.ecsv"):
        assert f"<code>{STEM}_{name}</code>" in section
    bad = CliRunner().invoke(cli, ["report", str(report), "--compare", str(tmp_path / "nope")])
    assert bad.exit_code == 2
    assert bad.stderr == (f"Error: {tmp_path / 'nope'}: no such directory. Give the -o directory "
                          "of a jwstrun run (image2, image3, step or demo).\n")
    if CHROMIUM is None:
        return
    probe = report / "probe.html"
    probe.write_text(page.replace(
        "</body>", "<script>window.addEventListener('load',()=>{const p=document."
        "createElement('pre');p.id='probe';p.textContent=JSON.stringify({settings:document."
        "querySelectorAll('#compare ~ table.settings tr.setting').length,products:document."
        "querySelectorAll('#compare ~ table.products tr.product').length,shown:document."
        "getElementById('compare').getBoundingClientRect().height>0});document.body."
        "appendChild(p)});</script></body>"))
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000", "--dump-dom",
         probe.as_uri()], capture_output=True, text=True, timeout=60, check=True).stdout
    found = json.loads(re.search(r"<pre id=\"probe\">(.*?)</pre>", dom).group(1))
    assert found["settings"] == 1 and found["shown"] is True
    assert found["products"] == section.count("<tr class='product'>") >= 3


def test_header_numbers_within_the_tolerance(tmp_path):
    from astropy.io import fits

    from jwstrun.compare._products import compare_headers

    for name, value in (("a.fits", 1.0), ("b.fits", 1.0 + 1e-9)):
        hdu = fits.PrimaryHDU()
        hdu.header.update(PIXFRAC=value, FLAG=True, KIND="point")
        hdu.writeto(tmp_path / name)
    exact = compare_headers(tmp_path / "a.fits", tmp_path / "b.fits")
    assert [row["key"] for row in exact["keywords"]] == ["PIXFRAC"]
    assert compare_headers(tmp_path / "a.fits", tmp_path / "b.fits", 1e-6)["differs"] is False
