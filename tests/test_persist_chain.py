"""detector1 -> image2 with snowblind's ``persist``: the correction finds the ``_jump``
files ``jwstrun detector1`` kept in OUTDIR/intermediate/.

The whole chain (slow: detector1 and image2 with nircam-clean on a simulated NIRCam
SUB64P program of two exposures, _uncal ramps of 4 groups) runs
``jwstrun image2 --from uncal --profile nircam-clean``: detector1 saves the _jump files
itself because persist reads them, image2 finds them in OUTDIR's intermediate/ folder,
and the products record persist COMPLETE although calwebb_detector1's own
``persistence`` step wrote SKIPPED under the same keyword (S_PERSIS).  The default suite
checks the lookup, the chain's parameter and the refusal on the _rate files of the
session's simulated program.
"""

from __future__ import annotations

import json
import shutil

import pytest
from astropy.io import fits
from click.testing import CliRunner

from jwstrun.cli import cli


def _base(path) -> str:
    return path.name.rpartition("_")[0]


@pytest.fixture(scope="module")
def rates(small_reduced_run):
    """Two simulated SUB160 _rate exposures of one detector and their folder (the session's
    simulated program, tests/conftest.py; nothing here runs a pipeline)."""
    return small_reduced_run["sim"]


def test_jump_files_found_beside_or_in_detector1s_intermediate_folder(rates, tmp_path):
    from jwstrun.runner._corrections import find_jump

    first, second = sorted(rates.rate_files)
    for rate in (first, second):
        shutil.copy(rate, tmp_path / rate.name)
    kept = tmp_path / "intermediate" / f"detector1-{_base(first)}" / f"{_base(first)}_jump.fits"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"")
    beside = tmp_path / f"{_base(second)}_jump.fits"
    beside.write_bytes(b"")
    assert find_jump(tmp_path / first.name) == kept
    assert find_jump(tmp_path / second.name) == beside
    kept.unlink()
    assert find_jump(tmp_path / first.name) is None


def test_a_simulated_folder_gives_its_exposures_not_its_truth(rates):
    """``jwstrun image2 SIMDIR/``: the folder contributes its _rate files only; the truth
    catalogues, simulation.json, crds.env and the CRDS cache beside them are not inputs."""
    from jwstrun.runner._stage_inputs import stage_inputs
    from jwstrun.stages import get_stage

    assert {p.name for p in rates.outdir.iterdir()} >= {
        "simulation.json", "truth_sources.ecsv", "crds.env", "crds_cache"}
    assert stage_inputs(get_stage("image2"), [rates.outdir]) == sorted(rates.rate_files)


def test_from_uncal_asks_detector1_for_the_jump_files_persist_reads():
    from jwstrun.runner._chain import _jumps_kept

    assert _jumps_kept(["nircam-clean"], []) == ["detector1.steps.jump.save_results=true"]
    assert _jumps_kept(["nircam-clean"], ["detector1.steps.jump.save_results=false"]) == []
    assert _jumps_kept([], []) == []


def test_missing_jump_files_are_refused_with_what_to_run(rates, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for rate in rates.rate_files:
        shutil.copy(rate, bare / rate.name)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "image2", str(bare), "-o", str(out), "--profile", "nircam-clean", "--crds-env",
        str(rates.env_file), "--no-progress", "--no-report"])
    assert result.exit_code == 1
    first = _base(sorted(rates.rate_files)[0])
    assert result.stderr.splitlines() == [
        f"Error: {bare / first}_jump.fits: not found. persist (in image2.before) reads the "
        f"_jump file of every exposure: make them with 'jwstrun detector1 UNCAL_FILES -o "
        f"{bare} --set steps.jump.save_results=true' (persist finds them in its intermediate/ "
        "folder; 'jwstrun image2 --from uncal' saves them itself), put strun "
        "calwebb_detector1's _jump files beside the _rate files, or take persist out of the "
        "profile."]
    assert not out.exists()


@pytest.mark.slow
def test_detector1_then_image2_with_persist(tmp_path):
    from stdatamodels.jwst.datamodels import dqflags

    from jwstrun.simulate import simulate_program

    sim = simulate_program(tmp_path / "sim", detectors=["NRCB1"], filters=["F200W"],
                           subarray="SUB64P", n_dithers=2, uncal=True, ngroups=4,
                           uncal_nints=1, seed=7)
    outdir = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "image2", "--from", "uncal", str(sim.outdir), "-o", str(outdir), "--profile",
        "nircam-clean", "--crds-env", str(sim.env_file), "--no-progress", "--no-report",
        "--json", "--set", "steps.resample.skip=true"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["before"]["counts"]["ok"] == 2
    assert summary["counts"] == {"total": 2, "ok": 2, "skipped": 0, "failed": 0}
    manifest = json.loads((outdir / "jwstrun-manifest.json").read_text())
    first, second = sorted(_base(p) for p in sim.uncal_files)
    for base in (first, second):  # jump's product: an intermediate of the exposure's task
        assert (outdir / "intermediate" / f"detector1-{base}" / f"{base}_jump.fits").is_file()
        record = manifest["tasks"][f"detector1-{base}"]
        assert record["parameters"]["steps"]["jump"]["save_results"] is True
        with fits.open(outdir / f"{base}_cal.fits") as hdul:
            header = hdul[0].header
        # calwebb_detector1's persistence step wrote SKIPPED under persist's keyword
        assert header["S_PERSIS"] == "SKIPPED" and header["S_SNOWBL"] == "COMPLETE"
        assert "PersistenceFlagStep: COMPLETE" in str(header["HISTORY"])
        steps = {c["step"]: c for c in manifest["tasks"][f"image2-{base}"]["corrections"]}
        assert steps["persist"]["exposures"] == 1
    # the second exposure was flagged from the first one's saturated pixels
    with fits.open(outdir / f"{second}_cal.fits") as hdul:
        assert (hdul["DQ"].data & dqflags.pixel["PERSISTENCE"] > 0).sum() > 0
