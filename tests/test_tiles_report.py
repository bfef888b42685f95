"""The report's tile map (issue 22): which tiles of a tiled image3 ran, failed, or held
no data, read from the manifest; rendered in headless chromium as tests/test_look.py
does (a manifest written here: no pipeline runs)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
PRODUCT = "jw01234-o001_t001_nircam_clear-f200w"
#: tile -> status: two rows of three tiles
STATES = {"t000000": "ok", "t000001": "failed", "t000002": "empty",
          "t001000": "skipped", "t001001": "ok", "t001002": "empty"}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from jwstrun.look import write_report

    outdir = tmp_path_factory.mktemp("tilemap")
    tasks = {f"image3-align-{PRODUCT}": {"task_id": f"image3-align-{PRODUCT}", "status": "ok",
                                         "pipeline": "image3-align", "product": PRODUCT}}
    for tile, status in STATES.items():
        task_id = f"image3-tile-{PRODUCT}_{tile}"
        tasks[task_id] = {"task_id": task_id, "status": status, "pipeline": "image3-tile",
                          "product": f"{PRODUCT}_{tile}",
                          "error": "boom" if status == "failed" else None}
    (outdir / "jwstrun-manifest.json").write_text(json.dumps(
        {"format": 1, "tasks": tasks, "runs": []}))
    return write_report(outdir, previews=False)


def test_tile_map_marks_each_tile(report):
    page = report.read_text()
    section = page[page.index("<h2 id='tiles'>"):]
    # ok and up to date (skipped) both count as ran
    assert f"<h3><code>{PRODUCT}</code></h3><p>6 tiles: 3 ran, 1 failed, 2 no data (no " \
           "exposure overlaps it)</p>" in section
    cells = re.findall(r"data-tile='(\d+),(\d+)' data-status='(\w+)'", section)
    # row 1 (the top of the mosaic) is drawn first
    assert [(int(y), int(x)) for y, x, _ in cells] == [(1, 0), (1, 1), (1, 2),
                                                       (0, 0), (0, 1), (0, 2)]
    assert {f"t{int(y):03d}{int(x):03d}": s for y, x, s in cells} == STATES


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs "
                    "Debian's 'chromium'); the report is not rendered in a browser here")
def test_tile_map_renders_in_headless_chromium(report, tmp_path):
    probe = report.parent / "probe-report.html"
    probe.write_text(report.read_text().replace(
        "</body>",
        "<script>window.addEventListener('load',()=>{const c=[...document.querySelectorAll("
        "'table.tilemap td')];const p=document.createElement('pre');p.id='probe';"
        "p.textContent=JSON.stringify(c.map(x=>[x.dataset.status,"
        "getComputedStyle(x).backgroundColor,x.getBoundingClientRect().width]));"
        "document.body.appendChild(p)});</script></body>"))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    try:
        dom = subprocess.run([*flags, "--virtual-time-budget=3000", "--dump-dom", probe.as_uri()],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    finally:
        probe.unlink()
    cells = json.loads(re.search(r"<pre id=\"probe\">(.*?)</pre>", dom).group(1))
    colours = {status: colour for status, colour, _ in cells}
    assert colours == {"ok": "rgb(46, 133, 64)", "skipped": "rgb(46, 133, 64)",
                       "failed": "rgb(179, 38, 30)", "empty": "rgb(238, 241, 246)"}
    assert all(width >= 20 for _, _, width in cells)  # drawn as cells, not collapsed
