"""Dedicated background exposures end to end: docs/workflows/background.md, run for real.

The page's blocks marked to run are run as tests/test_docs_run.py runs them (one
directory, ``bash -e``, the installed ``jwstrun`` and ``strun`` on PATH), and their
products are checked:

1. ``jwstrun simulate`` writes two science dithers and one dedicated background
   (BKGDTARG=T, NIRCam SUB160); ``jwstrun image2 sim/`` takes the directory, finds the
   background by its header and runs each science exposure with it as a background
   member (one line says so; S_BKDSUB COMPLETE, sky removed, no ``_cal`` of the
   background; the manifest and ``--json`` list it as a member); ``jwstrun validate
   --background`` passes;
2. ``jwstrun asn sim/`` (no ``-b``) writes the same association, ``asn --check`` passes
   and ``strun calwebb_image2`` on it gives the products of ``jwstrun image2 sim/``.

The real-data block (``not run`` by test_docs_run: it needs folders of real data) runs
here on the same exposures laid out as ``data/science/`` and ``data/background/``, with
the simulated CRDS cache in the environment (marked slow: image2 again on the same
exposures, then image3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _docs import ROOT, code_blocks
from click.testing import CliRunner
from test_docs_run import chains, run_chain

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


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """The page's chain of run blocks (simulate, image2, validate; asn, check, strun)."""
    (chain,) = chains(PAGE)
    assert [b.marker for b in chain] == ["run: fresh", "run"]
    work = tmp_path_factory.mktemp("background_page")
    run, association = run_chain(chain, work)
    from jwstrun.products import read_exposure_info

    rate = sorted((work / "sim").glob("*_rate.fits"))
    background = [p for p in rate if read_exposure_info(p).background_target]
    assert len(rate) == 3 and len(background) == 1
    return {"run": run, "asn": association, "work": work, "out": work / "out",
            "background": background[0], "science": [p for p in rate if p not in background]}


def test_image2_says_it_uses_the_background_in_one_line(simulated):
    stderr = simulated["run"].stderr
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


def test_run_leaves_callers_crds_settings_alone(rerun, simulated):
    """A run applies its crds.env (CRDS_PATH, CRDS_CONTEXT...) only while it runs (crds may
    export its own defaults into os.environ when a run configures it: not the run's)."""
    from jwstrun.refs import read_env_file

    applied = read_env_file(simulated["work"] / "sim" / "crds.env")
    assert applied
    left = {k: v for k, v in applied.items()
            if rerun["after"].get(k) == v and rerun["before"].get(k) != v}
    assert not left


def test_association_and_strun(simulated):
    """`jwstrun asn sim/` without -b finds the background (the same one line), and strun on
    that association gives the products that `jwstrun image2 sim/` gave."""
    from astropy.io import fits

    assert simulated["asn"].stderr.startswith(ONE_LINE)
    asn = json.loads((simulated["work"] / "sim" / "l2_asn.json").read_text())
    background = simulated["background"].name
    assert sorted((m["expname"], m["exptype"]) for p in asn["products"] for m in p["members"]) \
        == sorted([*((p.name, "science") for p in simulated["science"]),
                   (background, "background"), (background, "background")])
    theirs = sorted((simulated["work"] / "out_strun").glob("*.fits"))
    assert [p.name for p in theirs] == sorted(
        p.name.replace("_rate", s) for p in simulated["science"] for s in ("_cal", "_i2d"))
    for path in theirs:
        with fits.open(simulated["out"] / path.name) as a, fits.open(path) as b:
            assert a[0].header["S_BKDSUB"] == b[0].header["S_BKDSUB"] == "COMPLETE"
            for ext in ("SCI", "ERR", "DQ", "WHT", "CON"):
                if ext in a or ext in b:
                    np.testing.assert_array_equal(a[ext].data, b[ext].data,
                                                  err_msg=f"{path.name}[{ext}]")


@pytest.mark.slow  # image2 again on the same exposures as the run blocks, and image3
def test_real_data_block(simulated, tmp_path):
    """The page's real-data block on the simulated exposures as MAST delivers them (in
    two folders), the simulated CRDS cache in the environment: image2 on the two folders,
    image3, and the association written into the folders' parent."""
    from jwstrun.products import read_exposure_info
    from jwstrun.refs import read_env_file

    (block,) = [b for b in code_blocks(PAGE) if b.marker == "not run" and "data/science/" in b.text]
    for folder, files in (("science", simulated["science"]),
                          ("background", [simulated["background"]])):
        (tmp_path / "data" / folder).mkdir(parents=True)
        for path in files:
            os.link(path, tmp_path / "data" / folder / path.name)
    env = shell_env(read_env_file(simulated["work"] / "sim" / "crds.env"))
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stderr.count(ONE_LINE) == 2  # image2, then asn
    cal = sorted((tmp_path / "out").glob("*_cal.fits"))
    assert [p.name for p in cal] == sorted(
        p.name.replace("_rate", "_cal") for p in simulated["science"])
    assert all(read_exposure_info(p).step_status["S_BKDSUB"] == "COMPLETE" for p in cal)
    assert len(list((tmp_path / "out").glob("jw01234-o001_*_i2d.fits"))) == 1  # image3's
    asn = json.loads((tmp_path / "data" / "l2_asn.json").read_text())
    assert {m["expname"].split("/")[0] for p in asn["products"] for m in p["members"]} == {
        "science", "background"}
