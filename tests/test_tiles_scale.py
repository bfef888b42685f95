"""Scale (issue 22): a program whose single-shot mosaic is estimated at more than 4x
``--max-memory`` completes as tiles, each task's measured peak within its share.

One simulated NIRCam SUB320 program of two dithers (reduced by ``jwstrun image2``)
mosaicked at a twelfth of its pixel scale (``pixel_scale_ratio=0.08``: a mosaic of
about 4300 x 4300 pixels from small inputs, so the test stays minutes long) with
``--max-memory 400MB -j 1`` and no ``--tile-size``: the single-shot image3 does not
fit, so the run is tiled with the tile size the budget allows.  Slow: run with
``-m slow``.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from jwstrun.cli import cli

pytestmark = pytest.mark.slow

BUDGET = 400_000_000
SETS = ("--set", "steps.resample.pixel_scale_ratio=0.08", "--set", "steps.tweakreg.skip=true")


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    from jwstrun.asn import make_associations
    from jwstrun.simulate import simulate_program

    root = tmp_path_factory.mktemp("tiles_scale")
    sim = simulate_program(root / "sim", subarray="SUB320", n_dithers=2, seed=12,
                           pointing_error=0.0)
    caldir = root / "cal"
    result = CliRunner().invoke(cli, [
        "image2", *map(str, sim.rate_files), "-o", str(caldir), "-j", "2", "--crds-env",
        str(sim.env_file), "--no-progress", "--no-report"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (asn,) = make_associations(sorted(caldir.glob("*_cal.fits")), caldir / "l3_asn.json",
                               level=3).associations
    return sim, asn.path, root


def test_a_mosaic_4x_beyond_the_budget_completes_as_tiles_within_it(program):
    from jwstrun.mosaic import estimate_association

    sim, asn, root = program
    members = sorted((root / "cal").glob("*_cal.fits"))
    single = estimate_association("x", members, {"steps": {"resample": {
        "pixel_scale_ratio": 0.08}}})
    assert min(single.in_memory_bytes, single.on_disk_bytes) > 4 * BUDGET, single
    out = root / "out"
    result = CliRunner().invoke(cli, [
        "image3", str(asn), "-o", str(out), "--max-memory", str(BUDGET), "-j", "1",
        "--crds-env", str(sim.env_file), "--no-progress", "--no-report", "--json", *SETS],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    tasks = json.loads(result.stdout)["tasks"]
    assert {t["status"] for t in tasks} <= {"ok", "empty"}, tasks  # empty: no exposure
    tiles = [t for t in tasks if t["task_id"].startswith("image3-tile-") and t["status"] == "ok"]
    (align,) = [t for t in tasks if t["task_id"].startswith("image3-align-")]
    assert len(tiles) >= 4
    tiling = tiles[0]["memory"]["tiling"]
    assert tiling["tile_size_from"] == "--max-memory"
    assert tiling["share_bytes"] == BUDGET  # -j 1: one task at a time has the whole budget
    for task in [align, *tiles]:
        # the task's measured peak (the worker's RSS; with -j 1 one worker runs them all)
        assert task["peak_rss_mb"] * 1e6 <= task["memory"]["share_bytes"], task["task_id"]
