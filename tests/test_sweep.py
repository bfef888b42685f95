"""``--sweep``: one variant of every task per value, as ordinary runner tasks.

The default tests sweep image2's resample pixfrac over one SUB160 exposure (2 tasks,
-j 2) through the CLI; the slow one sweeps image3's
outlier_detection snr over three values on three dithers and checks the table
against numbers recomputed here from the products and the simulator's truth.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from jwstrun.cli import cli

STEM = "jw01234-o001_t001_nircam_clear-f200w-sub160"


def _cli(*args):
    return CliRunner().invoke(cli, [*map(str, args)], catch_exceptions=False)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from jwstrun.simulate import simulate_program

    return simulate_program(tmp_path_factory.mktemp("sweep") / "sim", subarray="SUB160",
                            n_dithers=1, seed=11)


@pytest.fixture(scope="module")
def image2_sweep(sim, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep2") / "out"
    args = ["image2", *sim.rate_files, "-o", out, "-j", "2", "--crds-env", sim.env_file,
            "--sweep", "steps.resample.pixfrac=1.0,0.5", "--no-progress"]
    first = _cli(*args, "--json")
    assert first.exit_code == 0, first.output
    again = _cli(*args)
    return {"out": out, "json": json.loads(first.stdout), "again": again}


def test_image2_sweep_runs_one_task_per_exposure_and_value(sim, image2_sweep):
    out, data = image2_sweep["out"], image2_sweep["json"]
    manifest = json.loads((out / "jwstrun-manifest.json").read_text())
    tasks = manifest["tasks"]
    assert len(tasks) == 2 and data["counts"] == {"total": 2, "ok": 2, "skipped": 0, "failed": 0}
    for value in ("1.0", "0.5"):
        folder = out / "sweep" / f"resample.pixfrac={value}"
        mine = {k: t for k, t in tasks.items() if k.endswith(f"-resample.pixfrac-{value}")}
        assert len(mine) == 1
        for record in mine.values():
            assert record["parameters"]["steps"]["resample"]["pixfrac"] == float(value)
            assert sorted(record["outputs"]) == sorted(
                f"sweep/resample.pixfrac={value}/{record['product']}_{s}.fits"
                for s in ("cal", "i2d"))
            assert all((out / name).is_file() for name in record["outputs"])
        assert len(list(folder.glob("*_cal.fits"))) == len(list(folder.glob("*_i2d.fits"))) == 1
    assert not list(out.glob("*.fits"))  # only the variants' folders
    # the parameter reached each task: same _cal, other mosaics
    from astropy.io import fits

    name = sorted((out / "sweep" / "resample.pixfrac=1.0").glob("*_i2d.fits"))[0].name
    with fits.open(out / "sweep" / "resample.pixfrac=1.0" / name) as a, \
            fits.open(out / "sweep" / "resample.pixfrac=0.5" / name) as b:
        assert not np.array_equal(a["SCI"].data, b["SCI"].data, equal_nan=True)
    rows = data["sweep"]
    assert [(r["variant"], r["values"], r["tasks_ok"]) for r in rows] == [
        ("resample.pixfrac=1.0", {"steps.resample.pixfrac": "1.0"}, 1),
        ("resample.pixfrac=0.5", {"steps.resample.pixfrac": "0.5"}, 1)]
    assert rows[0]["outlier_fraction"] is None  # image2: no _crf
    from astropy.table import Table

    table = Table.read(out / "sweep.ecsv", format="ascii.ecsv")
    assert list(table["variant"]) == ["resample.pixfrac=1.0", "resample.pixfrac=0.5"]
    assert list(table["tasks_ok"]) == [1, 1]


def test_a_sweep_resumes(image2_sweep):
    again = image2_sweep["again"]
    assert again.exit_code == 0, again.output
    assert "2 task(s): 0 ok, 2 up to date (skipped), 0 failed" in again.stdout
    assert "resample.pixfrac=0.5" in again.stdout  # the table, printed


def test_sweep_bad_input(sim, tmp_path):
    base = ["image2", *sim.rate_files, "-o", tmp_path / "out", "--crds-env", sim.env_file]
    cases = {
        "steps.resample.pixfrac": "Error: --sweep steps.resample.pixfrac: expected KEY=V1,V2,... "
        "(e.g. steps.outlier_detection.snr=\"5.0 4.0,4.0 3.0\").\n",
        "steps.resample.pixfrac=1.0,,0.5": "Error: --sweep steps.resample.pixfrac=1.0,,0.5: an "
        "empty value; separate the values with single commas.\n",
        "steps.resample.pixfrac=1,1": "Error: --sweep steps.resample.pixfrac=1,1: a value is "
        "given twice.\n",
        "steps.resample.kernel=square,disc": "Error: --sweep steps.resample.kernel=disc: "
        "'disc' is not an allowed value; choose one of 'square', ",
    }
    for sweep, message in cases.items():
        result = _cli(*base, "--sweep", sweep)
        assert result.exit_code != 0
        assert result.stderr.startswith(message), (sweep, result.stderr)
    result = _cli(*base, "--sweep", "steps.resample.pixfrac=1.0", "--sweep",
                  "steps.resample.pixfrac=0.5")
    assert result.stderr == ("Error: --sweep steps.resample.pixfrac: given twice; list all its "
                             "values in one --sweep, separated by commas.\n")
    result = _cli(*base, "--truth", sim.truth_file)
    assert result.stderr == ("Error: --truth is for a sweep's table (--sweep); for a run's "
                             "catalog against a truth, use 'jwstrun report OUTDIR --truth "
                             "FILE'.\n")
    assert not (tmp_path / "out").exists()  # refused before OUTDIR was made


def test_variant_folders_and_combinations():
    from jwstrun.errors import ConfigError
    from jwstrun.runner._sweep import plan_variants, variant_folder

    assert variant_folder({"steps.outlier_detection.snr": "5.0 4.0"}) == \
        "outlier_detection.snr=5.0_4.0"
    assert variant_folder({"in_memory": "false", "steps.resample.pixfrac": "0.5"}) == \
        "in_memory=false,resample.pixfrac=0.5"
    variants = plan_variants("image3", ["steps.resample.pixfrac=1.0,0.5",
                                        "steps.outlier_detection.snr=5.0 4.0,3.0 2.0"],
                             sets=["steps.resample.kernel=square"])
    assert [v.folder for v in variants] == [
        "resample.pixfrac=1.0,outlier_detection.snr=5.0_4.0",
        "resample.pixfrac=1.0,outlier_detection.snr=3.0_2.0",
        "resample.pixfrac=0.5,outlier_detection.snr=5.0_4.0",
        "resample.pixfrac=0.5,outlier_detection.snr=3.0_2.0"]
    with pytest.raises(ConfigError) as info:
        plan_variants("image3", ["steps.outlier_detection.snr=5.0 4.0,5.0/4.0"])
    assert str(info.value) == (
        "--sweep: steps.outlier_detection.snr='5.0 4.0' and steps.outlier_detection.snr="
        "'5.0/4.0' would share the folder sweep/outlier_detection.snr=5.0_4.0 (characters "
        "other than letters, digits and ._+- become _); sweep values that differ in those "
        "characters.")
    steps = variants[3].parameters["steps"]
    assert steps["resample"] == {"pixfrac": 0.5, "kernel": "square"}
    assert steps["outlier_detection"] == {"snr": "3.0 2.0"}


@pytest.mark.slow
def test_image3_sweep_against_the_truth(tmp_path):
    """Three snr values on SUB160 x 3, -j 2: three tasks, two at once, and a table whose
    numbers are recomputed here from the products and the simulator's truth."""
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.table import Table

    from jwstrun.runner import run_image2
    from jwstrun.simulate import simulate_program

    sim = simulate_program(tmp_path / "sim", subarray="SUB160", n_dithers=3, seed=7)
    summary = run_image2(sim.rate_files, tmp_path / "cal", jobs=2, crds_env_file=str(sim.env_file),
                         sets=["steps.resample.skip=true"])
    assert not summary.failed
    out = tmp_path / "out"
    truth = sim.outdir / "truth_sources.ecsv"
    result = _cli("image3", *sorted((tmp_path / "cal").glob("*_cal.fits")), "-o", out, "-j", "2",
                  "--crds-env", sim.env_file, "--truth", truth, "--json", "--sweep",
                  "steps.outlier_detection.snr=5.0 4.0,4.0 3.0,3.0 2.0")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    tasks = json.loads((out / "jwstrun-manifest.json").read_text())["tasks"]
    assert len(tasks) == 3
    spans = sorted((t["start"], t["end"]) for t in tasks.values())
    assert spans[1][0] < spans[0][1]  # the second started before the first ended
    rows = {r["values"]["steps.outlier_detection.snr"]: r for r in data["sweep"]}
    truth_table = Table.read(truth, format="ascii.ecsv")
    truth_pos = SkyCoord(truth_table["ra"], truth_table["dec"], unit="deg")
    crs = Table.read(sim.outdir / "truth_cosmic_rays.ecsv", format="ascii.ecsv")
    fractions, recalls = [], []
    for snr in ("5.0 4.0", "4.0 3.0", "3.0 2.0"):
        folder = out / "sweep" / f"outlier_detection.snr={snr.replace(' ', '_')}"
        flagged = valid = hit = 0
        for crf in sorted(folder.glob("*_crf.fits")):
            dq = fits.getdata(crf, "DQ").astype(np.uint32)
            outlier = (dq & 16) != 0
            flagged += outlier.sum()
            valid += (((dq & 1) == 0) | outlier).sum()
            exposure = crf.name.split("_o001_crf")[0]
            mine = crs[[str(f).startswith(exposure) for f in crs["file"]]]
            hit += outlier[np.asarray(mine["y"], int), np.asarray(mine["x"], int)].sum()
        cat = Table.read(folder / f"{STEM}_cat.ecsv", format="ascii.ecsv")
        idx, sep, _ = cat["sky_centroid"].match_to_catalog_sky(truth_pos)
        near = sep.arcsec <= 0.25
        # offsets from the injected positions (east, north), the common one taken out
        dra = ((cat["sky_centroid"].ra - truth_pos[idx].ra).wrap_at("180d").arcsec
               * np.cos(truth_pos[idx].dec.radian))[near]
        ddec = (cat["sky_centroid"].dec - truth_pos[idx].dec).arcsec[near]
        rms = np.sqrt(np.mean((dra - np.median(dra)) ** 2 + (ddec - np.median(ddec)) ** 2))
        row = rows[snr]
        assert row["n_outliers"] == flagged and row["n_valid"] == valid
        assert row["outlier_fraction"] == pytest.approx(flagged / valid)
        assert row["n_sources"] == len(cat) > 0
        assert row["n_matched"] == int(near.sum()) > 1
        assert row["alignment_rms_arcsec"] == pytest.approx(rms, rel=1e-3, abs=1e-4)
        fractions.append(flagged / valid)
        recalls.append(hit)
    # a lower threshold flags more pixels, and more of the injected cosmic rays
    assert fractions[0] < fractions[1] < fractions[2]
    assert recalls[0] <= recalls[1] <= recalls[2] and recalls[2] > 0
    table = Table.read(out / "sweep.ecsv", format="ascii.ecsv")
    assert list(table["steps.outlier_detection.snr"]) == ["5.0 4.0", "4.0 3.0", "3.0 2.0"]
    assert list(table["n_outliers"]) == [rows[s]["n_outliers"] for s in table[
        "steps.outlier_detection.snr"]]


def test_tweakreg_rmse_read_from_the_task_logs(tmp_path):
    from jwstrun.compare.sweep import tweakreg_rmse

    log = tmp_path / "task.log"
    log.write_text(  # the lines tweakwcs logs for each alignment group
        "2026-12-03 12:38:22,615 - tweakwcs.wcsimage - INFO - Computed 'rshift' fit for "
        "'GROUP ID: jw01234001001_02101_00002':\n"
        "2026-12-03 12:38:22,615 - tweakwcs.wcsimage - INFO - FIT RMSE: 0.0186643   FIT MAE: "
        "0.0167308\n"
        "2026-12-03 12:38:22,704 - tweakwcs.wcsimage - INFO - FIT RMSE: 0.0187421   FIT MAE: "
        "0.0171593\n")
    assert tweakreg_rmse([log]) == 0.0187421
    log.write_text("2026-12-03 - jwst.tweakreg.tweakreg_step - INFO - Detected 1 sources\n")
    assert tweakreg_rmse([log, tmp_path / "missing.log"]) is None


def test_each_variant_task_gets_its_parameters_and_folder(tmp_path):
    """make_tasks gives each variant's task its own parameters (with the memory plan's
    on-disk override on top), its folder and its values; the tasks pickle (Dask)."""
    import pickle

    from jwstrun.runner._sweep import expand_planned, plan_variants
    from jwstrun.runner.plan import Planned, make_tasks

    class OnDisk:  # the memory plan's part make_tasks reads (jwstrun.mosaic.MemoryPlan)
        def call_overrides(self):
            return {"in_memory": False}

        def to_dict(self):
            return {"mode": "on_disk"}

    asn = tmp_path / "x_image3_asn.json"
    asn.write_text("{}")
    planned = [Planned("image3", "x", asn, [asn], ["association"], memory=OnDisk())]
    variants = plan_variants("image3", ["steps.outlier_detection.snr=5.0 4.0,3.0 2.0"],
                             sets=["steps.resample.pixfrac=0.5"])
    tasks = make_tasks(expand_planned(planned, variants), tmp_path, {"steps": {}}, True, True)
    assert [t.task_id for t in tasks] == ["image3-x-outlier_detection.snr-5.0_4.0",
                                          "image3-x-outlier_detection.snr-3.0_2.0"]
    for task, snr in zip(tasks, ("5.0 4.0", "3.0 2.0"), strict=True):
        task = pickle.loads(pickle.dumps(task))
        assert task.parameters == {"in_memory": False, "steps": {
            "resample": {"pixfrac": 0.5}, "outlier_detection": {"snr": snr}}}
        assert task.subdir == f"sweep/outlier_detection.snr={snr.replace(' ', '_')}"
        assert task.sweep == {"steps.outlier_detection.snr": snr}
