"""``simulate --effect``: 1/f noise, snowballs and persistence with their truth, and the
real correction steps (jwst's clean_flicker_noise, snowblind's snowblind and persist)
judged against that truth on the cal products of image2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner

from jwstrun.cli import cli
from jwstrun.errors import InputError
from jwstrun.simulate import simulate_program
from jwstrun.simulate import effects as fx
from jwstrun.simulate.effect_checks import (
    correction_checks,
    flag_checks,
    flicker_checks,
    row_noise_power,
)

SMALL = dict(subarray="SUB64P", n_dithers=2, seed=4)


@pytest.fixture(scope="module")
def plain_and_effects(tmp_path_factory):
    root = tmp_path_factory.mktemp("fx")
    plain = simulate_program(root / "plain", **SMALL)
    injected = simulate_program(root / "fx", effects=["flicker,snowballs"], **SMALL)
    return plain, injected


def test_without_effects_the_program_is_as_it_was(plain_and_effects):
    plain, injected = plain_and_effects
    summary = json.loads((plain.outdir / "simulation.json").read_text())
    assert "effect_files" not in summary and "effects" not in summary["options"]
    assert plain.effect_files == []
    assert not list(plain.outdir.glob("*_jump.fits"))
    assert not list(plain.outdir.glob("truth_flicker*")) + list(plain.outdir.glob("truth_snow*"))
    assert injected.options["effects"] == ["flicker", "snowballs"]
    names = {p.name for p in injected.effect_files}
    assert names == {fx.FLICKER_FILE, fx.SNOWBALL_FILE, fx.SNOWBALL_TABLE}
    from jwstrun.simulate import load_simulation

    assert load_simulation(injected.outdir, effects=["flicker", "snowballs"]) is not None
    assert load_simulation(injected.outdir, effects=[]) is None
    assert load_simulation(plain.outdir, effects=[]) is not None


def test_injected_is_exactly_the_truth(plain_and_effects):
    """effects minus plain = the truth stripes, plus a halo bias on the truth halo only;
    the truth cores, and only they, gain JUMP_DET."""
    plain, injected = plain_and_effects
    events = Table.read(injected.outdir / fx.SNOWBALL_TABLE, format="ascii.ecsv")
    assert len(events) >= len(injected.rate_files)  # at least one per file
    for a, b in zip(plain.rate_files, injected.rate_files, strict=True):
        key = a.name.rsplit("_", 1)[0].upper()
        stripes = fits.getdata(injected.outdir / fx.FLICKER_FILE, key)
        mask = fits.getdata(injected.outdir / fx.SNOWBALL_FILE, key)
        assert stripes.shape == (64, 1)  # a subarray: one amplifier
        diff = fits.getdata(b, "SCI").astype(float) - fits.getdata(a, "SCI") - stripes
        np.testing.assert_allclose(diff[mask != 2], 0, atol=1e-4)
        assert np.all(diff[mask == 2] > -1e-4) and diff[mask == 2].mean() > 0.05 * stripes.std()
        jump = (fits.getdata(b, "DQ") & fx.JUMP_DET) > 0
        assert np.array_equal(jump & ~((fits.getdata(a, "DQ") & fx.JUMP_DET) > 0), mask == 1)
    stripes = fits.getdata(injected.outdir / fx.FLICKER_FILE, 1)
    noise = np.median(fits.getdata(injected.rate_files[0], "ERR"))
    assert 0.4 < np.std(stripes) / noise < 0.8


def test_full_frame_stripes_are_per_amplifier():
    """4 outputs of 512 columns; 1/f: the low row frequencies carry most of the power."""
    from jwstrun.simulate.effects import _Truth, _flicker

    class Model:
        data = np.zeros((2048, 2048), np.float32)
        err = np.ones((2048, 2048), np.float32)
        dq = np.zeros((2048, 2048), np.uint32)

    truth = _Truth()
    _flicker(Model, "jw01234001001_02101_00001_nrcb1_rate.fits", np.random.default_rng(1), truth)
    stripes = truth.flicker["jw01234001001_02101_00001_nrcb1"]
    assert stripes.shape == (2048, 4)
    np.testing.assert_allclose(Model.data[:, 511], stripes[:, 0])
    np.testing.assert_allclose(Model.data[:, 512], stripes[:, 1])
    assert not np.allclose(stripes[:, 0], stripes[:, 1])
    power = np.abs(np.fft.rfft(stripes, axis=0)) ** 2
    assert power[1:11].mean() > 20 * power[500:1000].mean()


def test_bad_effects_are_refused(tmp_path):
    with pytest.raises(InputError) as err:
        simulate_program(tmp_path / "x", effects=["flicker", "crosstalk"])
    assert str(err.value) == ("unknown effect 'crosstalk'; choose from flicker, snowballs, "
                              "persistence.")
    with pytest.raises(InputError) as err:
        simulate_program(tmp_path / "x", effects=["flicker"], rateints=True)
    assert str(err.value) == "--effect injects into _rate products; leave out --rateints."
    with pytest.raises(InputError) as err:
        simulate_program(tmp_path / "x", instrument="MIRI", effects=["snowballs", "flicker"])
    assert str(err.value) == ("--effect flicker is NIRCam's 1/f noise and the program has no "
                              "NIRCam detector; leave it out.")
    assert not (tmp_path / "x").exists()
    result = CliRunner().invoke(cli, ["simulate", str(tmp_path / "y"), "--effect", "halo"])
    assert result.exit_code == 2
    assert "Invalid value for '--effect': 'halo' is not one of 'flicker', 'snowballs', " \
        "'persistence'." in result.output
    result = CliRunner().invoke(cli, ["simulate", str(tmp_path / "y"), "--effect", "flicker",
                                      "--rateints"])
    assert result.exit_code == 1
    assert result.output == "Error: --effect injects into _rate products; leave out --rateints.\n"
    assert not (tmp_path / "y").exists()


# --- the real steps against the truth ---------------------------------------------------

@pytest.fixture(scope="module")
def corrected(tmp_path_factory):
    """One SUB320 program with all three effects; the corrections of the nircam-clean
    chain (clean_flicker_noise autoparam, snowblind, then persist over the set, ordered by
    start time), and image2 (no resample) on exposures 2 and 3 with and without them."""
    from jwstrun.refs.env import applied_crds_environment

    root = tmp_path_factory.mktemp("fxrun")
    sim = simulate_program(root / "sim", subarray="SUB320", n_dithers=4, seed=3,
                           effects=["flicker", "snowballs", "persistence"])
    (root / "corr").mkdir()
    (root / "plain").mkdir()
    with applied_crds_environment(sim.env):
        from jwst.clean_flicker_noise import CleanFlickerNoiseStep
        from jwst.pipeline import Image2Pipeline
        from snowblind import PersistenceFlagStep, SnowblindStep

        cleaned = [SnowblindStep.call(CleanFlickerNoiseStep.call(
            str(p), skip=False, autoparam=True)) for p in sim.rate_files]
        flagged = PersistenceFlagStep.call(cleaned, input_dir=str(sim.outdir))
        rates = []
        for model in flagged:
            rates.append(root / "corr" / model.meta.filename)
            model.save(rates[-1])
        for path, out in [*((p, "corr") for p in rates[1:3]),
                          *((p, "plain") for p in sim.rate_files[1:3])]:
            Image2Pipeline.call(str(path), output_dir=str(root / out), save_results=True,
                                steps={"resample": {"skip": True}})
    cals = {k: sorted((root / k).glob("*_cal.fits")) for k in ("corr", "plain")}
    return sim, rates, cals


def test_persistence_inputs_are_what_persist_reads(corrected):
    from stdatamodels.jwst import datamodels

    sim, _, _ = corrected
    starts = []
    for rate in sim.rate_files:
        jump = rate.with_name(fx.jump_name(rate.name))
        with datamodels.open(jump) as model:
            assert type(model).__name__ == "RampModel"
            assert model.groupdq.shape == (1, fx.JUMP_GROUPS, 320, 320)
        starts.append(fits.getval(rate, "EXPSTART"))
    assert starts == sorted(starts) and (starts[-1] - starts[0]) * 86400 < 2500
    truth = Table.read(sim.outdir / fx.PERSISTENCE_TABLE, format="ascii.ecsv")
    assert len(truth) == 6 and min(truth["n_pixels"]) > 20  # each later exposure, each earlier


def test_clean_flicker_noise_removes_the_stripes(corrected):
    sim, rates, cals = corrected
    checks = flicker_checks(cals["corr"], cals["plain"], sim.outdir)
    print("1/f on cal:", checks.to_dict())
    assert checks.exposures == 2
    assert checks.power_ratio >= 5
    assert checks.stripe_correlation_before > 0.9
    assert checks.sources >= 5 and checks.flux_change_median < 0.01
    assert abs(checks.flux_ratio_median - 1) < 0.01
    on_rate = flicker_checks(rates, sim.rate_files, sim.outdir)
    print("1/f on rate:", on_rate.to_dict())
    assert on_rate.exposures == 4 and on_rate.power_ratio >= 5
    assert on_rate.sources >= 10 and on_rate.flux_change_median < 0.01
    assert row_noise_power(sim.rate_files[0]) > 5 * row_noise_power(rates[0])


@pytest.mark.parametrize("effect", ["snowballs", "persistence"])
def test_flags_cover_the_truth(corrected, effect):
    sim, rates, cals = corrected
    on_cal = flag_checks(effect, cals["corr"], cals["plain"], sim.outdir)
    on_rate = flag_checks(effect, rates, sim.rate_files, sim.outdir)
    print(effect, "on cal:", on_cal.to_dict(), "on rate:", on_rate.to_dict())
    assert on_cal.exposures == 2 and on_rate.exposures == 4
    for checks in (on_cal, on_rate):
        assert checks.truth_flagged >= 0.9
        assert checks.truth_flagged_before < 0.5  # what the correction added
        assert checks.other_flagged < 0.01


def test_correction_checks_judge_every_effect(corrected):
    sim, _, cals = corrected
    result = correction_checks(cals["corr"], cals["plain"], sim.outdir)
    assert [c["name"] for c in result["checks"]] == [
        "1/f row noise power before / after", "point-source flux change (median)",
        "snowballs: truth pixels flagged", "snowballs: other pixels newly flagged",
        "persistence: truth pixels flagged", "persistence: other pixels newly flagged"]
    assert all(c["passed"] for c in result["checks"]), result["checks"]
    # the uncorrected products against themselves: the flags check fails as it must
    same = correction_checks(cals["plain"][:1], cals["plain"][:1], sim.outdir)
    failed = {c["name"] for c in same["checks"] if not c["passed"]}
    assert {"1/f row noise power before / after", "snowballs: truth pixels flagged",
            "persistence: truth pixels flagged"} <= failed
