"""``jwstrun image3 --tile-size``: the tiled Stage 3 (issue 22; docs/workflows/tiles.md).

One simulated NIRCam SUB320 program of two dithers (no pointing error: the mosaic
sits on the truth; tweakreg skipped in both runs), reduced by ``jwstrun image2``; its Level-3 association is given
to ``jwstrun image3 --tile-size --grid`` (2 x 3 tiles; the grid has the pixels of the
one ``jwstrun grid`` makes of the _cal files, placed so that the tile boundaries pass
through truth sources and the third column of tiles lies beyond the data) and, at the same time, to ``strun calwebb_image3`` with
resample's ``output_wcs`` that grid: the single-shot mosaic on the same grid.  The tiles beyond the data write nothing
and are recorded as empty; every other tile's SCI/ERR/WHT/CON must equal the same pixels of the single-shot mosaic; every bright truth source (that the
single-shot catalogue finds once) must be in the union of the tile catalogues once.
"""

from __future__ import annotations

import json
import os
import re
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
BRIGHT = 20.0  # truth SNR of the sources every tile catalogue must find
MATCH = 0.15  # arcsec (galaxies' centroids)
#: no pointing error is simulated: tweakreg has nothing to do (and two dithers may give it
#: too few matches)
SETS = ("--set", "steps.tweakreg.skip=true")
EMPTY_GAP = 40  # pixels between the data and the margin of the empty tiles


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from jwstrun.simulate import simulate_program

    outdir = tmp_path_factory.mktemp("tiles") / "sim"
    return simulate_program(outdir, subarray="SUB320", n_dithers=2, seed=7, source_density=3.0,
                            pointing_error=0.0)


@pytest.fixture(scope="module")
def cal_asn(sim, tmp_path_factory):
    from jwstrun.asn import make_associations

    caldir = tmp_path_factory.mktemp("tiles_cal")
    result = CliRunner().invoke(cli, [
        "image2", *map(str, sim.rate_files), "-o", str(caldir), "-j", "2",
        "--crds-env", str(sim.env_file), "--no-progress",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    built = make_associations(sorted(caldir.glob("*_cal.fits")), caldir / "l3_asn.json", level=3)
    (written,) = built.associations
    return written.path


def _truth_pixels(sim, grid):
    """Bright sources of the truth (stars and galaxies) and their grid pixel positions."""
    from astropy.table import Table

    truth = Table.read(sim.truth_file)
    snr = next(truth[c] for c in truth.colnames if c.startswith("snr_"))
    truth = truth[np.asarray(snr) > BRIGHT]
    x, y = grid.sky_to_pixel(np.asarray(truth["ra"]), np.asarray(truth["dec"]))
    return truth, np.asarray(x), np.asarray(y)


def _grid_through_sources(sim, cal_files):
    """A grid of the pixels of the one ``jwstrun grid`` makes of ``cal_files`` (cut out
    of it padded, still covering every input: jwstrun refuses a grid that does not),
    placed so that 2 x 3 tiles have their vertical boundary through one bright truth
    source and their horizontal one through another (within half a pixel), and their
    third column beyond the data (empty tiles): (grid, tile size, sources within 3
    pixels of a boundary)."""
    from jwstrun.mosaic.gridfile import make_grid

    ny, nx = make_grid(cal_files).shape
    pad = max(ny, nx) + 50
    padded = make_grid(cal_files, padding=pad)  # the data: rows and columns pad to pad + n
    _, x, y = _truth_pixels(sim, padded)
    inside = (x > pad + 20) & (x < pad + nx - 20) & (y > pad + 20) & (y < pad + ny - 20)
    best = (0, 0, 0, 0, 0)
    for size in range(ny // 2 + 1, ny - 20):
        for a in np.flatnonzero(inside):
            x0 = int(round(x[a] - (size - 0.5)))
            if x0 > pad - 1 or pad + nx - x0 + 2 >= 2 * size - EMPTY_GAP:
                continue  # the grid must hold the data's first column; the third is empty
            for b in np.flatnonzero(inside):
                y0 = int(round(y[b] - (size - 0.5)))
                height = pad + ny + 1 - y0  # the data's last row, and one more
                if a == b or not (0 <= y0 <= pad - 1 and size < height <= 2 * size):
                    continue
                line = size - 0.5
                near = int(np.sum(inside & ((np.abs(x - x0 - line) < 3)
                                            | (np.abs(y - y0 - line) < 3))))
                best = max(best, (near, size, y0, x0, height))
    near, size, y0, x0, height = best
    assert near >= 2, "no grid puts tile boundaries through two truth sources"
    return padded.sub_grid(y0, y0 + height, x0, x0 + 2 * size + 40), size, near


@pytest.fixture(scope="module")
def runs(sim, cal_asn, tmp_path_factory):
    """The tiled run (in-process) and the single-shot strun on the same grid (a
    subprocess, at the same time)."""
    from jwstrun.refs import read_env_file

    base = tmp_path_factory.mktemp("tiles_runs")
    grid, size, crossed = _grid_through_sources(sim, sorted(cal_asn.parent.glob("*_cal.fits")))
    grid.write(base / "grid.asdf")
    env = dict(os.environ)
    env.update(read_env_file(sim.env_file))
    single = subprocess.Popen(
        [STRUN, "calwebb_image3", str(cal_asn), "--output_dir", str(base / "single"),
         f"--steps.resample.output_wcs={base / 'grid.asdf'}", "--steps.tweakreg.skip=true"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    (base / "single").mkdir()
    try:
        result = CliRunner().invoke(cli, [
            "image3", str(cal_asn), "-o", str(base / "tiles"), "--tile-size", str(size),
            "--grid", str(base / "grid.asdf"), "-j", "2", "--crds-env", str(sim.env_file),
            "--no-progress", "--no-report", "--json", *SETS])
    finally:
        log, _ = single.communicate(timeout=900)
    assert single.returncode == 0, log[-3000:]
    assert result.exit_code == 0, result.output
    truth, _, _ = _truth_pixels(sim, grid)
    return {"summary": json.loads(result.stdout), "grid": grid, "size": size,
            "crossed": crossed, "truth": truth, "single": base / "single",
            "tiles": base / "tiles"}


def test_tiles_equal_the_single_shot_mosaic_on_the_same_grid(runs):
    from astropy.io import fits

    summary, tiles = runs["summary"], runs["tiles"]
    states = {t["task_id"].rsplit("_", 1)[-1] if "tile" in t["task_id"] else "align":
              t["status"] for t in summary["tasks"]}
    assert states == {"align": "ok", "t000000": "ok", "t000001": "ok", "t001000": "ok",
                      "t001001": "ok", "t000002": "empty", "t001002": "empty"}, states
    (single,) = runs["single"].glob("*_i2d.fits")
    i2ds = sorted(tiles.glob("*_t0*_i2d.fits"))
    assert len(i2ds) == 4  # nothing for the empty tiles
    covered = 0
    with fits.open(single) as whole:
        for path in i2ds:
            with fits.open(path) as tile:
                header = tile[0].header
                y0, x0 = header["TILEY0"], header["TILEX0"]
                ny, nx = header["TILENY"], header["TILENX"]
                assert path.name.endswith(f"_{header['TILEID']}_i2d.fits")
                assert header["TILESIZE"] == runs["size"]
                for ext in ("SCI", "ERR", "WHT", "CON"):
                    expected = whole[ext].data[..., y0:y0 + ny, x0:x0 + nx]
                    np.testing.assert_allclose(tile[ext].data, expected, rtol=1e-5, atol=0,
                                               equal_nan=True, err_msg=f"{path.name} {ext}")
                covered += ny * nx
                assert tile["SCI"].header["CRPIX1"] == pytest.approx(
                    whole["SCI"].header["CRPIX1"] - x0, abs=1e-9)
        # the empty tiles' column holds no data in the single-shot mosaic either
        size = runs["size"]
        assert not whole["WHT"].data[:, 2 * size:].any()
        assert covered == whole["SCI"].data[:, :2 * size].size
    # each tile resampled cut-outs of the _crf files (the tile logs), and the exposures
    # crossing the grid's edge whole, over their footprint (mosaic.cutout.edge_box)
    logs = "\n".join(p.read_text() for p in sorted((tiles / "logs").glob("image3-tile-*.log")))
    assert re.search(r"_crf\.fits: rows \d+:\d+, columns \d+:\d+ reach tile t\d{6}", logs)
    assert re.search(r"_crf\.fits crosses the grid's edge: used whole, tile t\d{6}", logs)
    status = CliRunner().invoke(cli, ["status", str(tiles), "--json"])
    report = json.loads(status.stdout)
    assert report["counts"]["empty"] == 2 and report["counts"]["done"] == 5, report["counts"]
    assert report["complete"] is True


def test_a_cut_out_resamples_to_the_same_pixels_as_the_whole_exposure(runs, tmp_path):
    """mosaic.cutout: an aligned _crf of the tiled run cut to the rows and columns that
    can reach a 60 x 60 part of the grid inside the data (a real cut, smaller than the
    exposure), and the whole _crf, each resampled by jwst's ResampleStep onto that part:
    the same SCI/ERR/WHT/CON, bit for bit."""
    from jwst.datamodels import ModelLibrary
    from jwst.resample.resample_step import ResampleStep
    from stdatamodels.jwst import datamodels

    from jwstrun.mosaic.cutout import cutout, input_box

    crf = sorted(runs["tiles"].glob("*_crf.fits"))[0]
    with datamodels.open(crf) as model:
        ny, nx = model.data.shape
        x, y = runs["grid"].wcs.backward_transform(*model.meta.wcs(nx / 2, ny / 2))
    box = (int(y) - 30, int(y) + 30, int(x) - 30, int(x) + 30)
    runs["grid"].sub_grid(*box).write(tmp_path / "part.asdf")
    results = []
    for cut in (False, True):
        model = datamodels.open(crf)
        if cut:
            inner = input_box(model.meta.wcs, model.data.shape, runs["grid"].wcs, box)
            assert (inner[1] - inner[0]) * (inner[3] - inner[2]) < ny * nx / 2, inner
            cutout(model, inner)
        step = ResampleStep(output_wcs=str(tmp_path / "part.asdf"))
        with step.run(ModelLibrary([model], on_disk=False)) as result:
            results.append([np.array(a) for a in (result.data, result.err, result.wht,
                                                  result.con)])
    for whole, part, name in zip(*results, ("SCI", "ERR", "WHT", "CON"), strict=True):
        np.testing.assert_array_equal(part, whole, err_msg=name)
    assert np.isfinite(results[0][0]).all()


def test_each_truth_source_is_in_one_tile_catalogue_once(runs):
    """Sources on tile boundaries are neither lost nor counted twice."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.table import Table, vstack

    assert runs["crossed"] >= 2, "the tile boundaries cross too few truth sources"
    cats = [Table.read(p, format="ascii.ecsv") for p in sorted(runs["tiles"].glob("*_cat.ecsv"))]
    # a tile where source_catalog finds nothing has no catalogue, as calwebb_image3 writes
    # none for such a mosaic
    assert len(cats) >= 2 and all("rule" in c.meta["jwstrun_tile"] for c in cats)
    union = vstack(cats, metadata_conflicts="silent")
    found = SkyCoord(union["sky_centroid"].ra, union["sky_centroid"].dec)
    truth = runs["truth"]
    sky = SkyCoord(np.asarray(truth["ra"]) * u.deg, np.asarray(truth["dec"]) * u.deg)
    # the truth sources well inside the mosaic (covered 10 pixels around, but for a few
    # pixels outlier_detection flagged)
    (single,) = runs["single"].glob("*_i2d.fits")
    wht = fits.getdata(single, "WHT")
    x, y = runs["grid"].sky_to_pixel(sky.ra.deg, sky.dec.deg)
    inside = [(10 <= yi < wht.shape[0] - 10 and 10 <= xi < wht.shape[1] - 10
               and (wht[yi - 10:yi + 11, xi - 10:xi + 11] > 0).mean() > 0.95)
              for xi, yi in zip(np.round(x).astype(int), np.round(y).astype(int), strict=True)]
    # ... that the single-shot catalogue finds once (not split by deblending)
    (single_cat,) = runs["single"].glob("*_cat.ecsv")
    whole = Table.read(single_cat, format="ascii.ecsv")["sky_centroid"]
    once = [int(np.sum(s.separation(whole).arcsec < MATCH)) == 1 for s in sky]
    considered = sky[np.array(inside) & np.array(once)]
    assert len(considered) >= 8, (len(sky), sum(inside), sum(once))
    counts = [int(np.sum(s.separation(found).arcsec < MATCH)) for s in considered]
    assert counts == [1] * len(considered), counts
    # and no source twice in the union, truth or not
    _, sep, _ = found.match_to_catalog_sky(found, nthneighbor=2)
    assert sep.arcsec.min() > MATCH


@pytest.mark.parametrize(("size", "message"), [
    ("0.001arcsec", "tile_size=0.001arcsec: a tile must be at least 1 pixel of the grid. "),
    ("100000", "tile_size=100000 is 100000 pixels, larger than the grid ({nx} x {ny} pixels). "
               "Give a smaller tile size, or run without one."),
], ids=["below-a-pixel", "above-the-grid"])
def test_tile_size_below_a_pixel_or_above_the_grid_is_refused(cal_asn, sim, tmp_path, size,
                                                              message):
    """One Error line, nothing written, with --grid (checked before the inputs) and
    without (checked against the grid made of the inputs -- the one jwstrun grid
    --padding 1arcsec makes, whose size the message gives --, before anything runs)."""
    from jwstrun.mosaic.gridfile import make_grid

    cal_files = sorted(cal_asn.parent.glob("*_cal.fits"))
    make_grid(cal_files).write(tmp_path / "grid.asdf")
    for extra in (["--grid", str(tmp_path / "grid.asdf")], []):
        ny, nx = make_grid(cal_files, padding=0 if extra else "1arcsec").shape
        expected = "Error: " + message.replace("tile_size=", "--tile-size ").format(nx=nx,
                                                                                   ny=ny)
        if "at least" in message:
            expected += "Give a larger tile size."
        outdir = tmp_path / ("with" if extra else "without")
        result = CliRunner().invoke(cli, [
            "image3", str(cal_asn), "-o", str(outdir), "--tile-size", size, *extra,
            "--crds-env", str(sim.env_file), "--no-progress", "--no-report"])
        assert result.exit_code == 1
        lines = result.output.splitlines()
        if extra:  # refused before any input is read
            assert lines == [expected], result.output
        else:  # after the associations' memory plan (an INFO line), before anything runs
            assert lines[-1] == expected and len(lines) <= 2, result.output
            assert "Traceback" not in result.output
        assert not outdir.exists() or not [p.name for p in outdir.iterdir()]


# --------------------------------------------------------------------------
# --assemble and the tiles' memory plan (runner._tile_memory)
# --------------------------------------------------------------------------
def test_tile_tasks_record_their_memory_estimate(runs):
    tiles = [t for t in runs["summary"]["tasks"] if t["task_id"].startswith("image3-tile-")
             and t["status"] == "ok"]  # an empty tile runs nothing and has no estimate
    assert tiles
    for task in tiles:
        memory = task["memory"]
        assert memory["mode"] == "tile"
        assert memory["tiling"]["tile_size"] == runs["size"]
        assert memory["tiling"]["tile_size_from"] == "--tile-size"
        # the estimate is above the measured peak, and not by more than 2x
        assert task["peak_rss_mb"] <= memory["estimate_mb"] <= 2 * task["peak_rss_mb"]


def test_tiles_that_cannot_fit_the_budget_are_refused_before_anything_runs(cal_asn, sim,
                                                                         tmp_path):
    """--tile-size 64 with --max-memory 200MB: one Error line naming the worst tile,
    nothing run or written; without --tile-size no tile size fits either, and the
    single-shot refusal stands; --assemble alone is refused."""
    import re

    product = json.loads(cal_asn.read_text())["products"][0]["name"]
    common = ["--crds-env", str(sim.env_file), "--no-progress", "--no-report", "-j", "1", *SETS]
    outdir = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "image3", str(cal_asn), "-o", str(outdir), "--tile-size", "64", "--max-memory",
        "200MB", *common])
    assert result.exit_code == 1
    *info, line = result.output.splitlines()  # the INFO lines of the align task's plan
    assert all(text.startswith("INFO ") for text in info), info
    assert re.fullmatch(
        f"Error: {re.escape(product)}: with tiles of 64 pixels, tile t\\d{{6}} overlaps [12] "
        r"exposures? and needs an estimated \d+ MB, beyond the share of the budget 200 MB; the "
        r"budget is --max-memory 200 MB\. Give a smaller --tile-size, or leave it out to let "
        r"--max-memory choose one\. Nothing was run\.", line), line
    assert not list(outdir.glob("logs/*.log")) and not list(outdir.glob("*.fits"))
    assert not list(outdir.glob("*_grid.asdf"))
    auto = CliRunner().invoke(cli, [
        "image3", str(cal_asn), "-o", str(tmp_path / "auto"), "--max-memory", "200MB", *common])
    assert auto.exit_code == 1
    assert auto.output.splitlines()[-1].startswith(
        f"Error: {product}: does not fit in memory even in the pipeline's on-disk mode: ")
    assert not list((tmp_path / "auto").glob("*.fits"))
    alone = CliRunner().invoke(cli, [
        "image3", str(cal_asn), "-o", str(tmp_path / "alone"), "--assemble",
        "--crds-env", str(sim.env_file), "--no-progress", "--no-report"])
    assert alone.exit_code == 1
    assert alone.output.splitlines() == [
        "Error: --assemble copies the tiles of a tiled image3 into one mosaic: give "
        "--tile-size (or a --max-memory the single-shot image3 does not fit), or drop "
        "--assemble."]
    assert not (tmp_path / "alone").exists()


def test_assembled_mosaic_equals_the_single_shot_one(runs, sim, cal_asn):
    """``--assemble`` on the tiled run, in its own OUTDIR (its tasks up to date: only the
    assembly runs; a copy elsewhere would re-run the tiles, whose associations name the
    grid file by its path; this module's last test, as it adds the mosaic there): one
    ``<product>_i2d.fits`` equal to the single-shot mosaic on the same grid, read by
    datamodels as an ImageModel with the grid's WCS; an ``image3-assemble`` record."""
    from astropy.io import fits
    from stdatamodels.jwst import datamodels

    outdir = runs["tiles"]
    result = CliRunner().invoke(cli, [
        "image3", str(cal_asn), "-o", str(outdir), "--tile-size", str(runs["size"]),
        "--grid", str(outdir.parent / "grid.asdf"), "--assemble", "-j", "1", "--crds-env",
        str(sim.env_file), "--no-progress", "--no-report", "--json", *SETS])
    assert result.exit_code == 0, result.output
    tasks = json.loads(result.stdout)["tasks"]
    assert {t["status"] for t in tasks if "assemble" not in t["task_id"]} <= {"skipped", "empty"}
    (assembled_task,) = [t for t in tasks if t["task_id"].startswith("image3-assemble-")]
    assert assembled_task["status"] == "ok"
    (single,) = runs["single"].glob("*_i2d.fits")
    product = assembled_task["task_id"].removeprefix("image3-assemble-")
    mosaic = outdir / f"{product}_i2d.fits"
    assert assembled_task["outputs"] == [mosaic.name]
    with fits.open(single) as whole, fits.open(mosaic) as assembled:
        for ext in ("SCI", "ERR", "WHT", "CON", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"):
            np.testing.assert_allclose(assembled[ext].data, whole[ext].data, rtol=1e-5, atol=0,
                                       equal_nan=True, err_msg=ext)
        for key in ("CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "PC1_1", "PC1_2", "CDELT1"):
            assert assembled["SCI"].header[key] == pytest.approx(whole["SCI"].header[key],
                                                                 rel=1e-12, abs=1e-12), key
    with datamodels.open(mosaic) as model:
        assert isinstance(model, datamodels.ImageModel)
        x, y = np.array([0.0, 50.0]), np.array([0.0, 70.0])
        np.testing.assert_allclose(model.meta.wcs(x, y), runs["grid"].wcs(x, y), atol=1e-12)
    manifest = json.loads((outdir / "jwstrun-manifest.json").read_text())["tasks"]
    assert manifest[assembled_task["task_id"]]["pipeline"] == "image3-assemble"
    again = CliRunner().invoke(cli, [
        "image3", str(cal_asn), "-o", str(outdir), "--tile-size", str(runs["size"]),
        "--grid", str(outdir.parent / "grid.asdf"), "--assemble", "-j", "1", "--crds-env",
        str(sim.env_file), "--no-progress", "--no-report", "--json", *SETS])
    statuses = [t["status"] for t in json.loads(again.stdout)["tasks"]]
    assert set(statuses) <= {"skipped", "empty"} and statuses[-1] == "skipped", statuses


def test_exposures_at_the_grid_edge_are_named_and_the_default_grid_has_none(cal_asn, caplog):
    """On resample's tight grid every exposure reaches an edge (the tiles on it would take
    them whole); the grid a tiled run makes without --grid (1 arcsec of room) has none."""
    import logging

    from jwstrun.mosaic.grid import read_footprint
    from jwstrun.mosaic.gridfile import make_grid
    from jwstrun.mosaic.tile_plan import crossing_edge, footprint_boxes
    from jwstrun.mosaic.tiles import GRID_PADDING
    from jwstrun.runner._tiles import _note_edge_crossing

    cal_files = sorted(cal_asn.parent.glob("*_cal.fits"))
    footprints = [read_footprint(p) for p in cal_files]
    tight, roomy = make_grid(cal_files), make_grid(cal_files, padding=GRID_PADDING)
    assert crossing_edge(footprint_boxes(footprints, tight), tight.shape).all()
    assert not crossing_edge(footprint_boxes(footprints, roomy), roomy.shape).any()
    with caplog.at_level(logging.INFO, logger="jwstrun.runner._tiles"):
        _note_edge_crossing("/data/grid.asdf", "jw01234-o001", tight, footprints)
        _note_edge_crossing("/data/roomy.asdf", "jw01234-o001", roomy, footprints)
    assert caplog.messages == [
        "jw01234-o001: 2 of 2 exposures reach the edge of grid.asdf; the tiles on that edge "
        "resample them whole (slower; a grid with room around the data, such as 'jwstrun "
        "grid --padding 1arcsec', avoids it)"]
