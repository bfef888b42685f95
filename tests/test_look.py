"""``jwstrun preview``, ``report`` and ``view`` on products of a real pipeline run.

One module-scoped run (simulated NIRCam SUB640, two dithers; ``jwstrun image2``
then ``jwstrun image3`` through the CLI) serves every test: the report that
image3 writes by itself is rendered in headless Chromium, previews are drawn
from its products, the i2d is opened with astropy / stdatamodels / photutils
and loaded through ginga's own API.
"""

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

REAL = Path(__file__).parent / "data" / "real"
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_simulation):
    """simulate -> jwstrun image2 -> jwstrun image3 (which writes the report)."""
    from conftest import SUB640_TWO

    root = tmp_path_factory.mktemp("look")
    sim = shared_simulation(**SUB640_TWO)
    out = root / "out"
    runner = CliRunner()
    common = ["-o", str(out), "--crds-env", str(sim.env_file), "--no-progress"]
    image2 = runner.invoke(cli, ["image2", *map(str, sim.rate_files), "-j", "2", "--report", *common],
                           catch_exceptions=False)
    assert image2.exit_code == 0, image2.output
    cals = sorted(out.glob("*_cal.fits"))
    image3 = runner.invoke(cli, ["image3", *map(str, cals), *common, "--json"],
                           catch_exceptions=False)
    assert image3.exit_code == 0, image3.output
    summary = json.loads(image3.stdout)
    (task,) = summary["tasks"]
    outputs = {name.rsplit("_", 1)[1]: out / name for name in task["outputs"]}
    return {
        "root": root, "sim": sim, "out": out, "image3": image3, "task": task,
        "i2d": outputs["i2d.fits"], "cat": outputs["cat.ecsv"], "cals": cals,
        "crfs": sorted(out.glob("*_crf.fits")),
    }


# --------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------
def test_image3_writes_the_report_itself(run):
    report = run["out"] / "jwstrun-report.html"
    assert report.is_file()
    assert f"report: {report.resolve()}" in run["image3"].stderr
    assert "report:" not in run["image3"].stdout  # --json stdout stays pure JSON


def test_report_is_self_contained(run):
    page = (run["out"] / "jwstrun-report.html").read_text()
    # no network resources and no scripts at all
    assert not re.search(r"""(?:src|href)\s*=\s*['"]?(?:https?:)?//""", page)
    assert "<script" not in page.lower()
    # every relative link and image resolves inside OUTDIR
    targets = re.findall(r"""(?:src|href)='([^']+)'""", page)
    relative = [t for t in targets if not t.startswith("data:")]
    assert relative, "thumbnails must link to full previews"
    from urllib.parse import unquote

    for target in relative:
        path = (run["out"] / unquote(target)).resolve()
        assert path.is_file(), target
        assert run["out"].resolve() in path.parents
    embedded = [t for t in targets if t.startswith("data:image/")]
    assert len(embedded) >= 2 + 2 + 2 + 1  # thumbnails of 2 cal, 2 crf, 2+1 i2d, plots


def test_report_content(run):
    page = (run["out"] / "jwstrun-report.html").read_text()
    manifest = json.loads((run["out"] / "jwstrun-manifest.json").read_text())
    for task_id, record in manifest["tasks"].items():
        assert task_id in page
        assert f"{record['peak_rss_mb']:.0f} MB" in page
        assert record["crds_context"] in page
    assert "resolved parameters" in page and "snr_threshold" in page  # tweakreg's, resolved
    assert "crds://jwst_nircam_distortion_sim-nrcb1.asdf" in page
    # tweakreg, from the cal and crf WCS: the reference stays, the other exposure moved by
    # about the simulated pointing error (~0.1 arcsec; test_tweakreg_shifts_... checks it)
    rows = re.findall(r"<tr class='tweakreg'>(.*?)</tr>", page)
    assert len(rows) == 2
    moved = sorted(float(re.findall(r"<td class='num'>([-0-9.]+)</td>", row)[2]) for row in rows)
    assert moved[0] < 0.001 and 0.05 < moved[1] < 0.5
    assert all("<td>COMPLETE</td>" in row for row in rows)
    # skymatch: one level per exposure from the crf headers, the lowest 0 ('match')
    sky_rows = re.findall(r"<tr class='skymatch'>(.*?)</tr>", page)
    assert len(sky_rows) == 2
    levels = sorted(float(re.search(r"<td class='num'>([^<]+)</td>", row).group(1))
                    for row in sky_rows)
    assert levels[0] == 0 and levels[1] > 0
    # catalog: without a truth catalog, magnitudes only; with the simulator's, compared
    assert "sources matched to" not in page
    result = CliRunner().invoke(cli, ["report", str(run["out"]), "--truth",
                                      str(run["sim"].truth_file)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    page = (run["out"] / "jwstrun-report.html").read_text()
    assert re.search(r"\d+ sources matched to truth_sources.ecsv", page)
    delta = float(re.search(r"median measured − injected = ([-+0-9.]+) mag", page).group(1))
    assert abs(delta) < 0.15


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs "
                    "Debian's 'chromium'); the report is not rendered in a browser here")
def test_report_renders_in_headless_chromium(run, tmp_path):
    report = run["out"] / "jwstrun-report.html"
    # A copy next to the original (so relative links resolve) with a probe that
    # writes what the browser loaded into the DOM; the report itself has no script.
    probe = run["out"] / "probe-report.html"
    probe.write_text(report.read_text().replace(
        "</body>",
        "<script>window.addEventListener('load',()=>{const i=[...document.images];"
        "const p=document.createElement('pre');p.id='probe';p.textContent=JSON.stringify({"
        "images:i.length,loaded:i.filter(x=>x.complete&&x.naturalWidth>0).length,"
        "tasks:document.querySelectorAll('#tasks tr.task').length,"
        "thumbs:document.querySelectorAll('img.thumb').length});"
        "document.body.appendChild(p)});</script></body>"))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    try:
        dom = subprocess.run(
            [*flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout
    finally:
        probe.unlink()
    found = json.loads(re.search(r"<pre id=\"probe\">(.*?)</pre>", dom).group(1))
    assert found["tasks"] == 3  # 2 image2 + 1 image3
    assert found["thumbs"] >= 7
    assert found["images"] >= found["thumbs"] + 2  # plus the alignment and magnitude plots
    assert found["loaded"] == found["images"], found

    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri()],
        capture_output=True, timeout=60, check=True,
    )
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2000, 1280)
    # The thumbnails are dark sky with stars: a page of text on white has no such block.
    dark_rows = (pixels < 60).mean(axis=1) > 0.3
    assert dark_rows.sum() > 150
    shutil.copy(shot, run["root"] / "report-screenshot.png")  # for a human to look at


def test_report_on_demo_layout_and_without_previews(run, tmp_path):
    """OUTDIR with out/ (the demo layout) works; --no-previews draws nothing."""
    from jwstrun.look import write_report

    path = write_report(run["root"], previews=False)
    assert path == run["root"].resolve() / "jwstrun-report.html"
    page = path.read_text()
    assert "id='tasks'" in page and "img class='thumb'" not in page
    assert "href='out/logs/" in page  # links relative to the page


def _stat_all(directory: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in directory.iterdir()}


def _entries(out: Path) -> dict:
    """Product name -> the previews entry of its task's manifest record."""
    manifest = json.loads((out / "jwstrun-manifest.json").read_text())
    return {name: entry for record in manifest["tasks"].values()
            for name, entry in (record.get("previews") or {}).items()}


def test_workers_drew_the_report_previews(run):
    """Each task drew its products' previews on the worker side (jwstrun.look._worker); its
    manifest record lists them relative to OUTDIR with the product's size and mtime."""
    from astropy.table import Table

    from jwstrun._system import cpu_count

    manifest = json.loads((run["out"] / "jwstrun-manifest.json").read_text())
    assert len(manifest["tasks"]) == 3
    for record in manifest["tasks"].values():
        images = [n for n in record["outputs"] if n.endswith(("_cal.fits", "_crf.fits", "_i2d.fits"))]
        assert images and sorted(record["previews"]) == sorted(images), record["task_id"]
    entries = _entries(run["out"])
    for name, entry in entries.items():
        stat = (run["out"] / name).stat()
        assert (entry["product_size"], entry["product_mtime_ns"]) == (stat.st_size, stat.st_mtime_ns)
        for rel in (*entry["files"], entry["thumbnail"]):
            assert rel.startswith("previews/"), rel
            assert (run["out"] / rel).stat().st_mtime_ns >= stat.st_mtime_ns  # drawn after it
    stem = run["i2d"].name.removesuffix(".fits")
    mosaic = entries[run["i2d"].name]
    assert mosaic["files"] == [f"previews/{stem}{s}.png" for s in ("", "_wht", "_con")]
    assert mosaic["n_catalog_sources"] == len(Table.read(run["cat"]))
    for crf in run["crfs"]:
        assert entries[crf.name]["dq"] and entries[crf.name]["dq_counts"]["DO_NOT_USE"] > 0
    # One association on more than one CPU: a helper process drew the image3 task's previews
    # (the crf while resample and source_catalog ran), not the worker after the pipeline.
    if cpu_count() > 1:
        assert {entries[n]["by"] for n in run["task"]["outputs"] if n in entries} == {"helper"}
    # nothing left of the helper or the temporary directories
    assert not (run["out"] / ".jwstrun-tmp").exists()
    assert not list((run["out"] / "previews").glob("*.json"))


def test_helper_draws_each_product_when_its_step_is_done(run, tmp_path):
    """The helper process draws what a step event finds complete (the crf, the mosaic's
    maps) and the rest when the task ends; the worker publishes one entry per product."""
    from jwstrun.look._worker import TaskPreviews

    work, outdir = tmp_path / "task", tmp_path / "outdir"
    (work / "out").mkdir(parents=True)
    outdir.mkdir()
    products = [shutil.copy2(p, work / "out") for p in (*run["crfs"], run["i2d"], run["cat"])]
    products = [Path(p) for p in products]
    cals = [{"path": str(cal), "name": cal.name} for cal in run["cals"]]  # the task's inputs
    previews = TaskPreviews(work, helper=True, inputs=cals, name="image3-x")
    try:
        step_event = previews.watch(work / "out", None)
        step_event("image3-x", "source_catalog")  # what the runner calls as a step starts
        previews.finish(products)
    finally:
        previews.close()
    drawn = sorted(p.name for p in previews.directory.glob("*.json")
                   if not p.name.startswith("science-"))
    # the report's figures too: alignment and sky levels of the crf, the catalog's
    assert sorted(previews.science) == ["alignment", "catalogs", "skymatch"]
    assert {previews.science["alignment"]["by"], previews.science["skymatch"]["by"],
            previews.science["catalogs"][run["cat"].name]["by"]} == {"helper"}
    i2d = run["i2d"].name
    assert drawn == sorted([*(f"{c.name}.all.json" for c in run["crfs"]),
                            f"{i2d}.maps.json", f"{i2d}.image.json"])
    entries = previews.publish(outdir)
    assert sorted(entries) == sorted([*(c.name for c in run["crfs"]), i2d])
    assert {e["by"] for e in entries.values()} == {"helper"}
    stem = i2d.removesuffix(".fits")
    assert entries[i2d]["files"] == [f"previews/{stem}{s}.png" for s in ("", "_wht", "_con")]
    for entry in entries.values():
        for rel in (*entry["files"], entry["thumbnail"]):
            assert (outdir / rel).is_file()
    assert (outdir / previews.science["catalogs"][run["cat"].name]["plot"]).is_file()
    assert previews.science["alignment"]["plot"] == "previews/image3-x_alignment.png"
    assert (outdir / previews.science["alignment"]["plot"]).is_file()


def test_report_reuses_the_worker_previews(run, tmp_path):
    """write_report reads the workers' previews (none is redrawn) and embeds their
    thumbnails; drawing them itself, as for a run without them, takes longer."""
    import base64
    import time

    from jwstrun.look import write_report

    previews = run["out"] / "previews"
    before = _stat_all(previews)
    start = time.perf_counter()
    page = write_report(run["out"]).read_text()
    reused_s = time.perf_counter() - start
    assert _stat_all(previews) == before  # not one file rewritten or added
    entries = _entries(run["out"])
    for entry in entries.values():
        thumbnail = base64.b64encode((run["out"] / entry["thumbnail"]).read_bytes()).decode()
        assert f"src='data:image/jpeg;base64,{thumbnail}'" in page
    # the same run without the records' previews (a --no-report run reported later)
    copy = tmp_path / "out"
    shutil.copytree(run["out"], copy, ignore=shutil.ignore_patterns("previews", "*.html"))
    manifest = json.loads((copy / "jwstrun-manifest.json").read_text())
    for record in manifest["tasks"].values():
        del record["previews"]
    (copy / "jwstrun-manifest.json").write_text(json.dumps(manifest))
    start = time.perf_counter()
    redrawn = write_report(copy).read_text()
    drawn_s = time.perf_counter() - start
    assert sorted(p.name for p in (copy / "previews").iterdir()) == sorted(
        n for n in before if n.endswith(".png") and not n.endswith(_SCIENCE_PLOTS)
    )  # the same previews (thumbnails embedded only; the science plots embedded only)
    assert redrawn.count("<img class='thumb'") == page.count("<img class='thumb'") == len(entries)
    assert reused_s < 0.6 * drawn_s, (reused_s, drawn_s)


def test_report_redraws_stale_or_missing_previews(run, tmp_path):
    """A preview older than its product, or gone, is drawn again; the others are reused."""
    from jwstrun.look import write_report

    copy = tmp_path / "out"
    shutil.copytree(run["out"], copy)
    previews = copy / "previews"
    entries = _entries(copy)
    crf, cal = run["crfs"][0].name, run["cals"][0].name
    touched = copy / crf
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    (copy / entries[cal]["files"][0]).unlink()
    before = _stat_all(previews)
    write_report(copy)
    after = _stat_all(previews)
    redrawn = {name for name in after if after[name] != before.get(name)}
    assert redrawn == {Path(entries[crf]["files"][0]).name, Path(entries[cal]["files"][0]).name}


_SCIENCE_PLOTS = ("_alignment.png", "_magnitudes.png")


def _science_sections(page: str) -> str:
    """The alignment, sky matching and catalog sections of a report page."""
    return re.search(r"<h2>Alignment \(tweakreg\)</h2>.*?(?=<h2>Runs in this directory)",
                     page, re.S).group(0)


def test_report_reuses_the_workers_science_figures(run, tmp_path, monkeypatch):
    """The image3 task's alignment and sky levels (computed by the helper while resample
    ran) and its catalog's numbers and plot (by the helper after the mosaic, while the
    worker validated the products) are in its manifest record with the size and mtime of the products they come
    from; the report uses them, and computes the same sections itself when they are
    missing or a product changed."""
    from jwstrun._system import cpu_count
    from jwstrun.look import _science, write_report

    manifest = json.loads((run["out"] / "jwstrun-manifest.json").read_text())
    science = manifest["tasks"][run["task"]["task_id"]]["science"]
    assert sorted(science) == ["alignment", "catalogs", "skymatch"]
    assert [r["crf"] for r in science["alignment"]["rows"]] == [c.name for c in run["crfs"]]
    assert [r["name"] for r in science["skymatch"]["rows"]] == [c.name for c in run["crfs"]]
    assert list(science["catalogs"]) == [run["cat"].name]
    stat = run["cat"].stat()
    assert science["catalogs"][run["cat"].name]["sources"] == [
        [run["cat"].name, stat.st_size, stat.st_mtime_ns]]
    plots = [science["alignment"]["plot"], science["catalogs"][run["cat"].name]["plot"]]
    assert all((run["out"] / p).is_file() and p.startswith("previews/") for p in plots)
    if cpu_count() > 1:
        assert {science["alignment"]["by"], science["skymatch"]["by"],
                science["catalogs"][run["cat"].name]["by"]} == {"helper"}

    computed = []
    for name in ("tweakreg_shifts", "skymatch_levels", "catalog_figures"):
        def counted(*args, _f=getattr(_science, name), _name=name, **kwargs):
            computed.append(_name)
            return _f(*args, **kwargs)
        monkeypatch.setattr(_science, name, counted)
    reused = _science_sections(write_report(run["out"]).read_text())
    assert computed == []
    # the same run as a --no-report run or an older jwstrun left it: computed by the report
    copy = tmp_path / "out"
    shutil.copytree(run["out"], copy, ignore=shutil.ignore_patterns("*.html"))
    manifest_path = copy / "jwstrun-manifest.json"
    for record in manifest["tasks"].values():
        record.pop("science", None)
    manifest_path.write_text(json.dumps(manifest))
    assert _science_sections(write_report(copy).read_text()) == reused
    assert computed == ["tweakreg_shifts", "skymatch_levels", "catalog_figures"]
    # a product changed after the worker read it: computed again
    shutil.copy2(run["out"] / "jwstrun-manifest.json", manifest_path)
    crf = copy / run["crfs"][0].name
    os.utime(crf, ns=(crf.stat().st_atime_ns, crf.stat().st_mtime_ns + 10**9))
    computed.clear()
    assert _science_sections(write_report(copy).read_text()) == reused
    assert computed == ["tweakreg_shifts", "skymatch_levels"]


def test_no_report_run_draws_no_previews_and_a_later_report_does(run, tmp_path):
    from jwstrun.look import write_report

    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "image2", str(run["sim"].rate_files[0]), "-o", str(out), "--crds-env",
        str(run["sim"].env_file), "--no-progress", "--no-report"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert not (out / "jwstrun-report.html").exists() and not (out / "previews").exists()
    (record,) = json.loads((out / "jwstrun-manifest.json").read_text())["tasks"].values()
    assert record["previews"] == {}
    page = write_report(out).read_text()  # draws them itself
    assert sorted(p.name for p in (out / "previews").iterdir()) == sorted(
        n.replace(".fits", ".png") for n in record["outputs"])
    assert page.count("<img class='thumb'") == 2


# --------------------------------------------------------------------------
# What the preview PNGs look like
# --------------------------------------------------------------------------
def _rgb(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _runs(flags, gap: int = 0) -> list[tuple[int, int]]:
    """(first, last) index of each run of True in a 1-D boolean array; runs less than
    ``gap`` apart are one (the letters of a word)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(int), [0]])))
    runs = [[a, b - 1] for a, b in zip(edges[::2], edges[1::2])]
    merged = runs[:1]
    for a, b in runs[1:]:
        if a - merged[-1][1] <= gap:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    return [tuple(r) for r in merged]


def _colour_bar(rgb):
    """The colour bar of a preview: its colours bottom to top, and the text to its right.

    The bar is the widest run of columns in the right third whose brightness rises
    steadily from bottom to top over more than half of the height; the text is the
    dark pixels between the bar and the right edge, as clusters of columns
    (x0, x1, y0, y1, number of separate lines of text).
    """
    height, width, _ = rgb.shape
    grey = rgb @ np.array([0.299, 0.587, 0.114])  # luminance: rises along gray and viridis

    def rising_run(x):
        column = grey[::-1, x]  # bottom to top
        a, b = max(_runs(np.diff(column) >= -1), key=lambda r: r[1] - r[0])
        return a, b + 1, np.ptp(column[a:b + 2])

    steady = np.zeros(width, bool)
    for x in range(2 * width // 3, width):
        a, b, span = rising_run(x)
        steady[x] = b - a > height / 2 and span > 150
    x0, x1 = max(_runs(steady), key=lambda r: r[1] - r[0])
    a, b, _span = rising_run((x0 + x1) // 2)
    colours = rgb[::-1, (x0 + x1) // 2][a + 2:b - 1]  # without the frame
    dark = grey[:, x1 + 3:] < 110  # past the bar's frame
    clusters = []
    for a, b in _runs(dark.any(axis=0), gap=3):
        lines = _runs(dark[:, a:b + 1].any(axis=1), gap=2)
        clusters.append((x1 + 3 + a, x1 + 3 + b, lines[0][0], lines[-1][1], len(lines)))
    return colours, clusters


def test_preview_colour_bar_is_readable(run):
    """The worker-made previews: the colour bar spans its colormap, every tick has its
    label, the BUNIT / weight label is there, and nothing is cut off at the edge."""
    from matplotlib import colormaps

    previews = run["out"] / "previews"
    crf = previews / run["crfs"][0].name.replace(".fits", ".png")
    wht = previews / run["i2d"].name.replace(".fits", "_wht.png")
    for png, cmap, min_ticks in ((crf, "gray", 7), (wht, "viridis", 4)):
        rgb = _rgb(png)
        colours, clusters = _colour_bar(rgb)
        ends = (np.asarray(colormaps[cmap](0.0)[:3]) * 255, np.asarray(colormaps[cmap](1.0)[:3]) * 255)
        assert np.abs(colours[0] - ends[0]).max() < 12, (png.name, colours[0])
        assert np.abs(colours[-1] - ends[1]).max() < 12, (png.name, colours[-1])
        assert len({tuple(c) for c in colours}) > 60  # a gradient, not a few bands
        # tick marks, the tick labels (a line of text per tick), then the label: one or two
        # words turned on their side (BUNIT, the weight type), not cut off at the edge
        *_marks, tick_labels, label = clusters
        assert tick_labels[1] - tick_labels[0] >= 10 and tick_labels[4] >= min_ticks, (
            png.name, clusters)
        assert 20 < label[3] - label[2] < 200, (png.name, clusters)
        assert label[3] - label[2] > 2 * (label[1] - label[0]), (png.name, clusters)
        assert label[1] < rgb.shape[1] - 3


def test_preview_nan_colour_is_the_documented_one(run, tmp_path):
    """A block of NaN in a product is drawn in the NaN colour docs/look.md gives, in the
    preview PNG and in the report's JPEG thumbnail."""
    import io

    from astropy.io import fits
    from PIL import Image

    from jwstrun.look import NAN_COLOUR, preview_file

    documented = re.search(r"Not-a-number pixels \(no data\) are slate blue, `(#[0-9a-f]{6})`",
                           (Path(__file__).parents[1] / "docs" / "look.md").read_text()).group(1)
    assert NAN_COLOUR == documented
    slate = np.array([int(documented[i:i + 2], 16) for i in (1, 3, 5)])
    source = run["cals"][0]
    holed = tmp_path / source.name
    rows, cols = slice(100, 260), slice(300, 500)  # 160 x 200 pixels
    with fits.open(source) as hdul:
        hdul["SCI"].data[rows, cols] = np.nan
        hdul.writeto(holed)
    plain = preview_file(source, tmp_path / "plain")
    with_nan = preview_file(holed, tmp_path / "nan")
    is_slate = [(_rgb(p.files[0]) == slate).all(axis=2) for p in (plain, with_nan)]
    new = is_slate[1] & ~is_slate[0]  # the cal's own NaN pixels are slate in both
    ys, xs = np.nonzero(new)
    box_h, box_w = np.ptp(ys) + 1, np.ptp(xs) + 1
    assert box_w > 100 and new[ys.min():ys.max() + 1, xs.min():xs.max() + 1].mean() > 0.95
    assert box_w / box_h == pytest.approx(200 / 160, rel=0.08)
    # the thumbnail (row 0 at the top: the image's last row) at the block's centre
    thumb = np.asarray(Image.open(io.BytesIO(with_nan.thumbnail)).convert("RGB")).astype(float)
    scale = thumb.shape[0] / fits.getval(source, "NAXIS2", "SCI")
    y, x = thumb.shape[0] - 1 - round(180 * scale), round(400 * scale)
    assert np.abs(thumb[y - 5:y + 5, x - 5:x + 5].mean(axis=(0, 1)) - slate).max() < 8
    assert np.ptp(thumb[5:15, 5:15].mean(axis=(0, 1))) < 12  # the sky there: grey, not slate


def _tiny_product(path: Path, sci, *, bunit="MJy/sr", wht=None) -> Path:
    """A small product written by stdatamodels (an ImageModel; an i2d with WHT and CON)."""
    from stdatamodels.jwst.datamodels import ImageModel

    model = ImageModel(sci.shape)
    model.data = sci.astype("f4")
    model.meta.bunit_data = bunit
    instrument = model.meta.instrument
    instrument.name, instrument.detector, instrument.filter, instrument.pupil = (
        "NIRCAM", "NRCB1", "F200W", "CLEAR")
    if wht is not None:
        model.wht = wht.astype("f4")
        model.con = np.ones((1, *sci.shape), "i4")
        model.con[0, :, : sci.shape[1] // 2] = 3  # bits 0 and 1: two exposures on the left
    model.save(path)
    model.close()
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 64 x 80 cal and i2d with a 20 x 30 block of NaN, valued so that the colour-bar
    tick labels are as wide as they get ("-0.000123"): where a fixed margin cut the
    colour bar's label off at the right edge."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(5)
    sci = rng.normal(-2e-5, 1e-4, (64, 80))
    sci[10:30, 40:70] = np.nan  # rows 10-29, columns 40-69
    wht = np.full(sci.shape, 1.5e6)
    wht[10:30, 40:70] = np.nan
    return {"sci": sci,
            "cal": _tiny_product(root / "jw01234001001_02101_00001_nrcb1_cal.fits", sci),
            "i2d": _tiny_product(root / "jw01234-o001_t001_nircam_clear-f200w_i2d.fits", sci,
                                 wht=wht)}


def _slate() -> np.ndarray:
    from jwstrun.look import NAN_COLOUR

    return np.array([int(NAN_COLOUR[i:i + 2], 16) for i in (1, 3, 5)])


def test_tiny_previews_nan_colour_and_labels_inside_the_png(tiny, tmp_path):
    """Rendered PNGs of small products: the NaN block is the documented colour (the image,
    the WHT map, and the report's JPEG thumbnail, drawn without a figure), and every colour
    bar's label lies inside the figure: the rightmost columns are the white background,
    the label cluster ends before them."""
    import io

    from PIL import Image

    from jwstrun.look import preview_file

    slate = _slate()
    cal = preview_file(tiny["cal"], tmp_path / "cal")
    i2d = preview_file(tiny["i2d"], tmp_path / "i2d", catalog=False)
    main, wht, con = i2d.files
    for png in (cal.files[0], main, wht):
        rgb = _rgb(png)
        nan = (rgb == slate).all(axis=2)
        assert nan.sum() > 20_000, png.name  # 600 data pixels of about 7 x 7 PNG pixels
        ys, xs = np.nonzero(nan)
        box = nan[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        assert box.mean() > 0.97, png.name  # one solid block, nothing else in that colour
        assert (np.ptp(xs) + 1) / (np.ptp(ys) + 1) == pytest.approx(30 / 20, rel=0.05)
    for png in (cal.files[0], main, wht, con):
        rgb = _rgb(png)
        assert (rgb[:, -4:] == 255).all(), png.name  # nothing drawn up to the right edge
        _colours, clusters = _colour_bar(rgb)
        *_marks, tick_labels, label = clusters
        assert tick_labels[4] >= 3, (png.name, clusters)  # several tick labels ...
        assert label[3] - label[2] > 2 * (label[1] - label[0]) > 10, (png.name, clusters)
        assert label[1] < rgb.shape[1] - 4, (png.name, clusters)  # ... and the label whole
    # the thumbnail keeps every pixel of so small an image; row 0 is the image's last row
    thumb = np.asarray(Image.open(io.BytesIO(cal.thumbnail)).convert("RGB")).astype(float)
    assert thumb.shape[:2] == tiny["sci"].shape
    assert np.abs(thumb[::-1][14:26, 45:65].mean(axis=(0, 1)) - slate).max() < 6
    assert np.abs(thumb[::-1][40:60, 5:30].mean(axis=(0, 1)) - slate).max() > 40  # the sky


def test_no_report_option(run):
    report = run["out"] / "jwstrun-report.html"
    saved = report.read_bytes()
    report.unlink()
    try:
        result = CliRunner().invoke(cli, [
            "image3", *map(str, run["cals"]), "-o", str(run["out"]),
            "--crds-env", str(run["sim"].env_file), "--no-progress", "--no-report",
        ], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert not report.exists()
    finally:
        report.write_bytes(saved)


@pytest.mark.parametrize("setup, message", [
    ("missing", "Error: {d}: directory not found. Give the -o OUTDIR of a jwstrun run.\n"),
    ("empty", "Error: {d}: has no jwstrun-manifest.json (nor out/jwstrun-manifest.json). Give "
              "the output directory of 'jwstrun image2', 'jwstrun image3' or 'jwstrun demo'.\n"),
])
def test_report_bad_outdir(tmp_path, setup, message):
    target = tmp_path / "x"
    if setup == "empty":
        target.mkdir()
    result = CliRunner().invoke(cli, ["report", str(target)])
    assert result.exit_code == 1
    assert result.stderr == message.format(d=target)
    assert not (target / "jwstrun-report.html").exists()


def test_report_broken_manifest(tmp_path):
    (tmp_path / "jwstrun-manifest.json").write_text("{ not json")
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {tmp_path / 'jwstrun-manifest.json'}: unreadable manifest (")
    assert result.stderr.endswith("Re-run the pipeline command to rewrite it.\n")
    assert (tmp_path / "jwstrun-manifest.json").read_text() == "{ not json"  # left untouched


def test_tweakreg_shifts_match_the_injected_pointing_errors(run):
    """How far tweakreg moved each exposure, read from its cal and crf WCS, is the
    difference of the pointing errors the simulator injected (tweakreg aligns the
    exposures to one another, so the reference stays put)."""
    from astropy.table import Table

    from jwstrun.look import tweakreg_shifts
    from jwstrun.manifest import TaskRecord
    from jwstrun.products import product_basename

    crfs = {product_basename(c.name).rsplit("_o", 1)[0]: c for c in run["crfs"]}
    pairs = [(cal, crfs[product_basename(cal.name)]) for cal in run["cals"]]
    shifts = tweakreg_shifts(pairs)
    assert [r["status"] for r in shifts] == ["COMPLETE", "COMPLETE"]
    truth = {product_basename(str(row["file"])): row
             for row in Table.read(run["sim"].pointing_file, format="ascii.ecsv")}
    error = {product_basename(r["cal"]): (truth[product_basename(r["cal"])]["error_xi_arcsec"],
                                          truth[product_basename(r["cal"])]["error_eta_arcsec"])
             for r in shifts}
    still = [r for r in shifts if r["shift_arcsec"] < 0.001]
    (reference,) = still
    (moved,) = [r for r in shifts if r is not reference]
    ref_error, moved_error = error[product_basename(reference["cal"])], error[product_basename(moved["cal"])]
    expected = (moved_error[0] - ref_error[0], moved_error[1] - ref_error[1])
    assert (moved["dra_arcsec"], moved["ddec_arcsec"]) == pytest.approx(expected, abs=0.02)
    assert moved["shift_arcsec"] == pytest.approx(np.hypot(*expected), abs=0.02)
    assert abs(moved["rotation_deg"]) < 0.01


def test_skymatch_levels_match_the_injected_sky(run):
    """The crf headers' BKGLEVEL (skymatch 'match': relative to the lowest) differ as
    the sky the simulator put in each exposure, converted to MJy/sr by PHOTMJSR."""
    from astropy.io import fits
    from astropy.table import Table

    from jwstrun.look import skymatch_levels
    from jwstrun.products import product_basename

    rows = skymatch_levels(run["crfs"])
    assert [(r["status"], r["method"], r["subtracted"]) for r in rows] == [
        ("COMPLETE", "match", False)] * 2
    truth = {product_basename(str(row["file"])): row["sky_dn_s"]
             for row in Table.read(run["sim"].pointing_file, format="ascii.ecsv")}
    sky = [truth[product_basename(r["name"]).rsplit("_o", 1)[0]] for r in rows]
    photmjsr = fits.getval(run["crfs"][0], "PHOTMJSR", "SCI")
    levels = [r["level"] for r in rows]
    assert min(levels) == 0
    assert levels[1] - levels[0] == pytest.approx((sky[1] - sky[0]) * photmjsr, rel=0.05)


# --------------------------------------------------------------------------
# Previews
# --------------------------------------------------------------------------
def test_preview_i2d_with_catalog_and_maps(run, tmp_path):
    from astropy.table import Table

    result = CliRunner().invoke(cli, ["preview", str(run["i2d"]), "-o", str(tmp_path), "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    stem = run["i2d"].name.removesuffix(".fits")
    assert payload["files"] == [str(tmp_path / f"{stem}{s}.png") for s in ("", "_wht", "_con")]
    for name in payload["files"]:
        width, height = _png_size(Path(name))
        assert width >= 600 and height >= 400
    (preview,) = payload["previews"]
    assert preview["bunit"] == "MJy/sr"
    assert preview["n_catalog_sources"] == len(Table.read(run["cat"])) > 10


def test_preview_dq_counts_match_the_dq_array(run, tmp_path):
    from astropy.io import fits

    crf = run["crfs"][0]
    result = CliRunner().invoke(cli, ["preview", str(crf), "-o", str(tmp_path), "--dq", "--json",
                                      "--stretch", "zscale"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (preview,) = json.loads(result.stdout)["previews"]
    dq = fits.getdata(crf, "DQ").astype(np.uint32)
    outlier = (dq & 16) > 0
    expected = {"OUTLIER": int(outlier.sum()), "DO_NOT_USE": int((((dq & 1) > 0) & ~outlier).sum()),
                "other flags": int(((dq > 0) & ((dq & 17) == 0)).sum())}
    assert preview["dq_counts"] == expected
    assert expected["DO_NOT_USE"] > 0  # the simulated detector has bad pixels
    # the overlay is drawn: the DQ preview differs from the plain one
    plain = CliRunner().invoke(cli, ["preview", str(crf), "-o", str(tmp_path / "plain"),
                                     "--stretch", "zscale"], catch_exceptions=False)
    assert plain.exit_code == 0
    name = crf.name.replace(".fits", ".png")
    assert (tmp_path / name).read_bytes() != (tmp_path / "plain" / name).read_bytes()


def test_preview_rate_and_cal_units(run, tmp_path):
    from jwstrun.look import preview_files

    previews = preview_files([run["sim"].rate_files[0], run["cals"][0]], tmp_path)
    assert [p.bunit for p in previews] == ["DN/s", "MJy/sr"]
    assert [p.product_type for p in previews] == ["rate", "cal"]
    assert all(len(p.files) == 1 and p.files[0].is_file() for p in previews)


def test_preview_real_miri_i2d(tmp_path):
    """A real archive i2d (jwst 1.8.2) is drawn like ours: SCI, WHT and CON."""
    from jwstrun.look import preview_file

    preview = preview_file(REAL / "jw01288015001_04101_00001_mirimage_i2d.fits", tmp_path)
    assert [p.name for p in preview.files] == [
        "jw01288015001_04101_00001_mirimage_i2d.png",
        "jw01288015001_04101_00001_mirimage_i2d_wht.png",
        "jw01288015001_04101_00001_mirimage_i2d_con.png",
    ]
    assert preview.bunit == "MJy/sr" and preview.n_catalog_sources is None


@pytest.fixture(scope="module")
def rateints(run, tmp_path_factory):
    """A 3-integration _rateints made from a simulated _rate (integration k scaled by k)."""
    from astropy.io import fits

    rate = run["sim"].rate_files[0]
    path = tmp_path_factory.mktemp("ints") / rate.name.replace("_rate.fits", "_rateints.fits")
    with fits.open(rate) as hdul:
        hdul[0].header["DATAMODL"] = "CubeModel"
        hdul[0].header["NINTS"] = 3
        for name in ("SCI", "ERR", "DQ"):
            hdul[name].data = np.stack([hdul[name].data * (k if name != "DQ" else 1)
                                        for k in (1, 2, 3)])
        hdul.writeto(path)
    return path


def test_preview_rateints_integration(rateints, tmp_path):
    runner = CliRunner()
    first = runner.invoke(cli, ["preview", str(rateints), "-o", str(tmp_path), "--json"],
                          catch_exceptions=False)
    assert first.exit_code == 0, first.output
    second = runner.invoke(cli, ["preview", str(rateints), "-o", str(tmp_path), "--json",
                                 "--integration", "3", "--dq"], catch_exceptions=False)
    assert second.exit_code == 0, second.output
    one, three = (json.loads(r.stdout)["previews"][0] for r in (first, second))
    stem = rateints.name.removesuffix(".fits")
    assert one["files"] == [str(tmp_path / f"{stem}_int1.png")] and one["integration"] == 1
    assert three["files"] == [str(tmp_path / f"{stem}_int3.png")] and three["integration"] == 3
    too_far = runner.invoke(cli, ["preview", str(rateints), "-o", str(tmp_path / "no"),
                                  "--integration", "4"])
    assert too_far.exit_code == 1
    assert too_far.stderr == (f"Error: {rateints}: has 3 integration(s); --integration must be "
                              "between 1 and 3.\n")
    assert not (tmp_path / "no").exists()


def test_preview_bad_inputs_name_the_file(run, tmp_path):
    runner = CliRunner()
    out = tmp_path / "png"
    junk = tmp_path / "junk_cal.fits"
    junk.write_text("not a fits file")
    truncated = tmp_path / "cut_cal.fits"
    truncated.write_bytes(run["cals"][0].read_bytes()[:2880 * 3 + 100])
    cases = [
        ([str(tmp_path / "nope_cal.fits")],
         f"Error: {tmp_path / 'nope_cal.fits'}: file not found. Check the path or the glob pattern.\n"),
        ([str(run["cat"])],
         f"Error: {run['cat']}: is a _cat product; preview draws rate, rateints, cal, calints, crf "
         "and i2d images. Give those files (catalogs are drawn on their _i2d).\n"),
        ([str(junk)],
         f"Error: {junk}: is not a FITS file (no SIMPLE card at the start). Give JWST products "
         "such as *_rate.fits or *_cal.fits.\n"),
        ([str(truncated)],
         f"Error: {truncated}: is truncated ({2880 * 3 + 100} bytes is not a whole number of "
         "2880-byte FITS blocks). The file was not completely written or downloaded; re-create it.\n"),
        # a good file first: nothing is drawn when a later one is bad
        ([str(run["cals"][0]), str(junk)],
         f"Error: {junk}: is not a FITS file (no SIMPLE card at the start). Give JWST products "
         "such as *_rate.fits or *_cal.fits.\n"),
    ]
    for args, message in cases:
        result = runner.invoke(cli, ["preview", *args, "-o", str(out)])
        assert result.exit_code == 1, result.output
        assert result.stderr == message
        assert "Traceback" not in result.output
    assert not out.exists()


# --------------------------------------------------------------------------
# The products stay standard
# --------------------------------------------------------------------------
def test_i2d_opens_with_astropy_gwcs_and_photutils(run):
    from astropy.io import fits
    from astropy.stats import sigma_clipped_stats
    from astropy.table import Table
    from astropy.wcs import WCS
    from photutils.detection import DAOStarFinder
    from stdatamodels.jwst.datamodels import ImageModel

    with fits.open(run["i2d"]) as hdul:
        assert [h.name for h in hdul][:5] == ["PRIMARY", "SCI", "ERR", "CON", "WHT"]
        data = hdul["SCI"].data.astype(float)
        fits_wcs = WCS(hdul["SCI"].header)
    with ImageModel(run["i2d"]) as model:
        gwcs = model.meta.wcs
        ny, nx = model.data.shape
        ra, dec = gwcs(nx / 2, ny / 2)
        x_back, y_back = gwcs.invert(ra, dec)
    assert (x_back, y_back) == pytest.approx((nx / 2, ny / 2), abs=1e-3)
    sky = fits_wcs.pixel_to_world(nx / 2, ny / 2)
    assert abs(sky.ra.deg - ra) * np.cos(np.radians(dec)) * 3600 < 0.01
    assert abs(sky.dec.deg - dec) * 3600 < 0.01
    assert (ra, dec) == pytest.approx((53.1625, -27.7914), abs=0.01)  # the simulated pointing

    finite = np.where(np.isfinite(data), data, 0.0)
    _mean, median, std = sigma_clipped_stats(finite[np.isfinite(data)], sigma=3.0)
    found = DAOStarFinder(threshold=10 * std, fwhm=2.5)(finite - median)
    assert found is not None and len(found) >= 20
    # photutils recovers the pipeline's own catalog: the 20 brightest point sources
    # of the _cat.ecsv each have a DAOStarFinder detection within 1 pixel.
    catalog = Table.read(run["cat"])
    points = catalog[~np.asarray(catalog["is_extended"], bool)]
    points.sort("aper_total_flux", reverse=True)
    bright = points[:20]
    x_name = "x_centroid" if "x_centroid" in found.colnames else "xcentroid"
    y_name = "y_centroid" if "y_centroid" in found.colnames else "ycentroid"
    dist = np.hypot(np.asarray(found[x_name])[:, None] - np.asarray(bright["xcentroid"])[None, :],
                    np.asarray(found[y_name])[:, None] - np.asarray(bright["ycentroid"])[None, :])
    assert (dist.min(axis=0) < 1.0).all(), dist.min(axis=0)


# --------------------------------------------------------------------------
# Viewers
# --------------------------------------------------------------------------
def test_view_check_loads_the_i2d_in_ginga(run):
    pytest.importorskip("ginga", reason="ginga is not installed (pip install ginga; it is in "
                        "the 'test' extra)")
    from astropy.io import fits
    from astropy.wcs import WCS

    result = CliRunner().invoke(cli, ["view", str(run["i2d"]), "--with", "ginga", "--check",
                                      "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    header = fits.getheader(run["i2d"], "SCI")
    assert info["shape"] == [header["NAXIS2"], header["NAXIS1"]]
    assert info["bunit"] == "MJy/sr"
    # ginga's WCS and astropy's agree on the sky position of the centre pixel
    ny, nx = info["shape"]
    sky = WCS(header).pixel_to_world(nx / 2, ny / 2)
    assert info["center_radec"] == pytest.approx([sky.ra.deg, sky.dec.deg], abs=1e-5)


def test_view_missing_viewer_gives_install_hint(run):
    if shutil.which("ds9"):
        pytest.skip("ds9 is installed here")
    result = CliRunner().invoke(cli, ["view", str(run["i2d"]), "--with", "ds9"])
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: ds9 is not installed; install SAOImage DS9 (Debian/Ubuntu: 'apt-get install "
        "saods9'; others: https://sites.google.com/cfa.harvard.edu/saoimageds9). Or make PNG "
        "quick looks with 'jwstrun preview'.\n")


def test_view_glue_hint_or_load(run):
    import importlib.util

    if importlib.util.find_spec("glue") is not None:
        from jwstrun.look import load_in_viewer

        info = load_in_viewer(run["i2d"], "glue")
        assert info["shape"]
        return
    result = CliRunner().invoke(cli, ["view", str(run["i2d"]), "--with", "glue", "--check"])
    assert result.exit_code == 1
    assert result.stderr == ("Error: glue is not installed; install it with 'pip install "
                             "glue-qt'. Or make PNG quick looks with 'jwstrun preview'.\n")


def test_view_without_display_or_qt_is_clear(run, monkeypatch):
    """Opening a window needs Qt and a display; either missing gives one clear line."""
    from jwstrun.look import viewer_status

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    status = viewer_status("ginga")
    result = CliRunner().invoke(cli, ["view", str(run["i2d"]), "--with", "ginga"])
    assert result.exit_code == 1
    if not status["python_module"]:
        expected = ("Error: ginga is not installed; install it with 'pip install ginga PyQt5'. "
                    "Or make PNG quick looks with 'jwstrun preview'.\n")
    elif not status["qt_binding"]:
        expected = ("Error: ginga is installed but has no Qt binding to open a window; install "
                    f"one with 'pip install PyQt5'. Or load the file without a window: jwstrun "
                    f"view {run['i2d']} --with ginga --check.\n")
    else:
        expected = (f"Error: no display to open ginga on (DISPLAY is not set). Use ssh -X, or "
                    f"make PNG quick looks with 'jwstrun preview {run['i2d']} -o previews/'.\n")
    assert result.stderr == expected


def test_view_bad_file(tmp_path):
    missing = tmp_path / "gone_i2d.fits"
    result = CliRunner().invoke(cli, ["view", str(missing)])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {missing}: file not found. Check the path or the glob pattern.\n"


def test_report_shows_a_failed_task(run, tmp_path):
    """A failed task is listed with its reason; its (absent) products are not drawn."""
    from jwstrun.look import write_report

    manifest = json.loads((run["out"] / "jwstrun-manifest.json").read_text())
    record = dict(next(r for r in manifest["tasks"].values() if r["pipeline"] == "image2"))
    record.update(task_id="image2-broken", status="failed", outputs=["broken_cal.fits"],
                  error="calwebb_image2 failed in step flat_field on broken_rate.fits: "
                  "ValueError: <bad> & data", validation=None, log_file="logs/missing.log")
    manifest["tasks"] = {"image2-broken": record}
    (tmp_path / "jwstrun-manifest.json").write_text(json.dumps(manifest))
    page = write_report(tmp_path).read_text()
    assert "<td class='failed'>failed</td>" in page
    assert "ValueError: &lt;bad&gt; &amp; data" in page  # escaped, not raw HTML
    assert "No image products in this run." in page
    assert "<span class='muted'>not run</span>" in page  # validation


def test_report_says_when_tweakreg_was_skipped(run, tmp_path):
    """A crf that tweakreg skipped keeps its cal's WCS and says SKIPPED (S_TWKREG): the
    report's alignment section says the exposures kept their pointing."""
    from astropy.io import fits

    from jwstrun.look import tweakreg_shifts
    from jwstrun.manifest import TaskRecord
    from jwstrun.look._science import _alignment_block

    pairs = []
    for cal in run["cals"]:
        crf = tmp_path / cal.name.replace("_cal.fits", "_o001_crf.fits")
        with fits.open(cal) as hdul:
            hdul[0].header["S_TWKREG"] = "SKIPPED"
            hdul.writeto(crf)
        pairs.append((cal, crf))
    rows = tweakreg_shifts(pairs)
    assert [(r["status"], r["shift_arcsec"]) for r in rows] == [("SKIPPED", 0.0)] * 2
    block = _alignment_block(TaskRecord(task_id="image3-x", status="ok"), rows)
    assert "tweakreg was skipped: the exposures keep their pointing WCS." in block
