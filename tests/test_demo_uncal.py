"""``jwstrun demo --from uncal``: simulated raw ramps through detector1, image2 and image3.

The real command (NIRCam SUB640 x 4 dithers, six groups; about 1.7 minutes on 2 cores) is
slow: its parts have default tests of their own (tests/test_detector1.py: detector1
against strun; tests/test_simulate_uncal.py: the ramps' truth; the demo's chain). Every
check must pass, and each is judged from the measured figures in ``science``.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from jwstrun.cli import cli

STAGES = ["simulate", "detector1", "associations", "image2", "image3", "detector1 checks",
          "validate", "science checks"]
CHECKS = ["slopes - truth (median, in ERR; worst exposure)",
          "jumps flagged (recall; worst exposure)",
          "saturated pixels flagged (worst exposure)",
          "alignment residual (max, arcsec)",
          "flux recovery (median measured/true)",
          "point sources recovered"]


@pytest.mark.slow
def test_demo_from_uncal_passes_every_check(tmp_path):
    result = CliRunner().invoke(cli, ["demo", str(tmp_path / "demo"), "--from", "uncal",
                                      "--json", "--no-progress", "--no-report", "-j", "2"])
    assert result.exit_code == 0, result.output[-3000:]
    report = json.loads(result.stdout)
    assert report["ok"] and not report["problems"]
    assert [s["name"] for s in report["stages"]] == STAGES
    assert [c["name"] for c in report["checks"]] == CHECKS
    detector1 = report["science"]["detector1"]
    assert len(detector1) == 4
    for measured in detector1:  # the limits of issue 20, from the figures themselves
        assert abs(measured["median_z"]) < 0.1
        assert measured["jump_recall"] >= 0.95 and measured["jumps_measured"] >= 50
        assert measured["saturated_flagged"] == 1.0 and measured["saturated_pixels"] >= 1
    names = {p.rsplit("/", 1)[-1] for p in report["products"]}
    assert sum(n.endswith("_rate.fits") for n in names) == 4
    assert sum(n.endswith("_cal.fits") for n in names) == 4
    assert any(n.endswith("_i2d.fits") for n in names)


def test_demo_from_uncal_and_corrections_refused():
    result = CliRunner().invoke(cli, ["demo", "--from", "uncal", "--corrections"])
    assert result.exit_code == 2
    assert ("Error: --from uncal and --corrections are two different demos; give one of them."
            in result.output)
