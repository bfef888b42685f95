"""Dedicated background exposures end to end: docs/workflows/background.md, run for real.

The page's shell blocks run as a user pastes them (``bash -e``, the installed
``jwstrun`` and ``strun`` on PATH), in a scratch directory:

1. the simulated block: ``jwstrun simulate`` writes two science dithers and one
   dedicated background (BKGDTARG=T, NIRCam SUB160), ``jwstrun image2 sim/`` takes
   the directory, finds the background by its header and runs each science exposure
   with it as a background member (S_BKDSUB COMPLETE, sky removed, no ``_cal`` of the
   background), and ``jwstrun validate --background`` passes;
2. the real-data blocks, on the same exposures laid out as ``data/science/`` and
   ``data/background/`` with the simulated CRDS cache in the environment (what the
   user's CRDS set-up would be): ``jwstrun asn`` (no ``-b``), ``asn --check`` and
   ``strun calwebb_image2`` on that association, whose products equal those of
   ``jwstrun image2 sim/``; and (marked slow: image2 again on the same exposures)
   ``jwstrun image2`` on the two folders, then ``jwstrun image3``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_docs_commands import ROOT, shell_blocks

from jwstrun.cli import cli

PAGE = ROOT / "docs" / "workflows" / "background.md"
VENV_BIN = Path(sys.executable).parent
ONE_LINE = ("INFO Using 1 dedicated background exposure (BKGDTARG=T) for the background step "
            "of 2 science exposures; it is not reduced as science.\n")


def shell_env(extra: dict | None = None) -> dict:
    """A user's shell: the venv's commands on PATH, no CRDS settings but ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


def run_block(block: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def blocks():
    found = shell_blocks(PAGE.read_text(encoding="utf-8"))
    assert len(found) == 3, found  # simulated; real data: run it; write the association
    return found


@pytest.fixture(scope="module")
def simulated(blocks, tmp_path_factory):
    """The page's simulated block, run as it is."""
    work = tmp_path_factory.mktemp("background_page")
    proc = run_block(blocks[0], work, shell_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from jwstrun.products import read_exposure_info

    rate = sorted((work / "sim").glob("*_rate.fits"))
    background = [p for p in rate if read_exposure_info(p).background_target]
    assert len(rate) == 3 and len(background) == 1
    return {"proc": proc, "work": work, "out": work / "out", "background": background[0],
            "science": [p for p in rate if p not in background]}


def test_image2_says_it_uses_the_background_in_one_line(simulated):
    stderr = simulated["proc"].stderr
    assert ONE_LINE in stderr
    assert stderr.count("BKGDTARG") == 1, stderr


def test_background_is_a_member_never_a_product(simulated):
    out = simulated["out"]
    for suffix in ("cal", "bsub", "i2d"):
        assert sorted(p.name for p in out.glob(f"*_{suffix}.fits")) == sorted(
            p.name.replace("_rate", f"_{suffix}") for p in simulated["science"]), suffix
    stem = simulated["background"].name.removesuffix("_rate.fits")
    assert not list(out.glob(f"{stem}_*"))
    manifest = json.loads((out / "jwstrun-manifest.json").read_text())
    assert sorted(manifest["tasks"]) == sorted(
        "image2-" + p.name.removesuffix("_rate.fits") for p in simulated["science"])
    for task in manifest["tasks"].values():
        assert [(e["name"], e["role"]) for e in task["inputs"]] == [
            (Path(task["product"] + "_rate.fits").name, "science"),
            (simulated["background"].name, "background")]


def test_background_step_complete_and_subtracted(simulated):
    from astropy.io import fits

    for rate in simulated["science"]:
        cal = simulated["out"] / rate.name.replace("_rate", "_cal")
        bsub = simulated["out"] / rate.name.replace("_rate", "_bsub")
        with fits.open(cal) as hdul:
            assert hdul[0].header["S_BKDSUB"] == "COMPLETE"
        with fits.open(bsub) as b, fits.open(rate) as r:
            assert b[0].header["S_BKDSUB"] == "COMPLETE"
            # the simulated sky level was removed: bsub median near zero, rate median not
            good = (b["DQ"].data & 1) == 0
            rate_median = float(np.nanmedian(r["SCI"].data[good]))
            bsub_median = float(np.nanmedian(b["SCI"].data[good]))
            assert rate_median > 0
            assert abs(bsub_median) < 0.2 * rate_median, (rate_median, bsub_median)


@pytest.fixture(scope="module")
def rerun(simulated):
    """The page's image2 line again, in-process with --json: up to date, and the run's
    CRDS settings (its crds.env) applied only while it runs."""
    work = simulated["work"]
    # crds exports its defaults (CRDS_MODE, CRDS_CONFIG_URI ...) into os.environ when it is
    # first imported: that is crds' doing, whichever test imports it first, not the run's.
    import crds  # noqa: F401

    before = {k: v for k, v in os.environ.items() if k.startswith("CRDS_")}
    result = CliRunner().invoke(cli, [
        "image2", str(work / "sim"), "-o", str(work / "out"), "--save-bsub",
        "--crds-env", str(work / "sim" / "crds.env"), "--no-progress", "--json"])
    after = {k: v for k, v in os.environ.items() if k.startswith("CRDS_")}
    return {"result": result, "before": before, "after": after}


def test_json_lists_the_background_as_a_member_and_resumes(rerun, simulated):
    result = rerun["result"]
    assert result.exit_code == 0, result.output
    assert result.stderr.count(ONE_LINE) == 1
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"total": 2, "ok": 0, "skipped": 2, "failed": 0}
    assert [t["backgrounds"] for t in summary["tasks"]] == [[simulated["background"].name]] * 2


def test_run_leaves_callers_crds_settings_alone(rerun):
    """A run applies its crds.env (CRDS_PATH, CRDS_CONTEXT...) only while it runs."""
    assert rerun["after"] == rerun["before"]


@pytest.fixture(scope="module")
def real(simulated):
    """The simulated exposures as MAST delivers them (science and background in separate
    folders) and the simulated CRDS cache in the environment: the real-data blocks'
    working directory and shell."""
    from jwstrun.refs import read_env_file

    work = simulated["work"] / "real"
    for folder, files in (("science", simulated["science"]),
                          ("background", [simulated["background"]])):
        (work / "data" / folder).mkdir(parents=True)
        for path in files:
            os.link(path, work / "data" / folder / path.name)
    return {"work": work, "env": shell_env(read_env_file(simulated["work"] / "sim" / "crds.env"))}


def test_real_data_association_and_strun(real, blocks, simulated):
    """The page's association block: `jwstrun asn` without -b finds the background (the
    same one line), and strun on that association gives the products that `jwstrun image2
    sim/` gave on the same exposures."""
    from astropy.io import fits

    proc = run_block(blocks[2], real["work"], real["env"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stderr.startswith(ONE_LINE)
    asn = json.loads((real["work"] / "data" / "l2_asn.json").read_text())
    background = f"background/{simulated['background'].name}"
    assert sorted((m["expname"], m["exptype"]) for p in asn["products"] for m in p["members"]) \
        == sorted([*((f"science/{p.name}", "science") for p in simulated["science"]),
                   (background, "background"), (background, "background")])
    theirs = sorted((real["work"] / "out_strun").glob("*.fits"))
    assert [p.name for p in theirs] == sorted(
        p.name.replace("_rate", s) for p in simulated["science"] for s in ("_cal", "_i2d"))
    for path in theirs:
        with fits.open(simulated["out"] / path.name) as a, fits.open(path) as b:
            assert a[0].header["S_BKDSUB"] == b[0].header["S_BKDSUB"] == "COMPLETE"
            for ext in ("SCI", "ERR", "DQ", "WHT", "CON"):
                if ext in a or ext in b:
                    np.testing.assert_array_equal(a[ext].data, b[ext].data,
                                                  err_msg=f"{path.name}[{ext}]")


@pytest.mark.slow  # image2 again on the same exposures as the simulated block, and image3
def test_real_data_run(real, blocks, simulated):
    """The page's real-data block: image2 on the two folders, then image3."""
    from jwstrun.products import read_exposure_info

    proc = run_block(blocks[1], real["work"], real["env"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stderr.count("BKGDTARG") == 1 and ONE_LINE in proc.stderr
    out = real["work"] / "out"
    cal = sorted(out.glob("*_cal.fits"))
    assert [p.name for p in cal] == sorted(
        p.name.replace("_rate", "_cal") for p in simulated["science"])
    assert all(read_exposure_info(p).step_status["S_BKDSUB"] == "COMPLETE" for p in cal)
    assert len(list(out.glob("jw01234-o001_*_i2d.fits"))) == 1  # image3's mosaic
