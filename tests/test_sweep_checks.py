"""``--sweep``: what is checked before anything runs is checked with each variant's own
parameters (the memory estimate, tweakreg's abs_refcat, maximum_cores), not the run's.

The image3 refusals use the session's reduced SUB160 program (tests/conftest.py,
``small_reduced_run``: its _cal files); nothing runs a pipeline here.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from jwstrun.cli import cli
from jwstrun.errors import ConfigError
from jwstrun.runner._sweep import Variant, checked_variants


def _image3(run, outdir, *args):
    cals = sorted(run["a"].glob("*_cal.fits"))
    return CliRunner().invoke(cli, [
        "image3", *map(str, cals), "-o", str(outdir), "--crds-env", str(run["sim"].env_file),
        "--no-progress", "--no-report", *args])


def test_a_variant_that_needs_the_network_is_refused_up_front(small_reduced_run, tmp_path):
    refcat = small_reduced_run["sim"].outdir / "refcat.ecsv"
    out = tmp_path / "out"
    # the file (31 sources, 3 inside the footprints of the two SUB160 dithers) is checked
    # and passes with abs_minobj=3; the catalogue name is refused
    result = _image3(small_reduced_run, out, "--set", "steps.tweakreg.abs_minobj=3", "--sweep",
                     f"steps.tweakreg.abs_refcat={refcat},GAIADR3")
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()  # a warning first: the file's epoch (2016.0)
    assert lines[0].startswith(f"WARNING abs_refcat {refcat}: positions at epoch 2016.0")
    assert lines[1:] == [
        "Error: --sweep steps.tweakreg.abs_refcat=GAIADR3: abs_refcat GAIADR3: tweakreg "
        "fetches this catalogue from https://gsss.stsci.edu/webservices at run time, and this "
        "run is offline (no CRDS server: --offline, --crds-path without CRDS_SERVER_URL, or a "
        "serverless CRDS_SERVER_URL). Download the catalogue where there is network and cut it "
        "to the field: `jwstrun refs refcat CATALOGUE INPUTS -o field.ecsv`, then set "
        "abs_refcat to that file."]
    assert not out.exists()


def test_a_variant_whose_mosaic_is_too_large_is_refused_up_front(small_reduced_run, tmp_path):
    """pixel_scale_ratio 0.25: 16 times the pixels of the run's own mosaic, over the limit
    the run's parameters (ratio 1) stay under."""
    out = tmp_path / "out"
    result = _image3(small_reduced_run, out, "--max-mosaic-pixels", "300000", "--sweep",
                     "steps.resample.pixel_scale_ratio=1.0,0.25")
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1] == (
        "Error: --sweep steps.resample.pixel_scale_ratio=0.25: "
        "jw01234-o001_t001_nircam_clear-f200w-sub160: the mosaic would be 726 x 692 pixels "
        "(5.02e+05 pixels, 2 MB per float32 plane), beyond the limit of 3e+05 pixels "
        "(--max-mosaic-pixels). The footprints form one field, so the mosaic is genuinely this "
        "large: split the association, choose a coarser grid (--set "
        "steps.resample.pixel_scale_ratio=2), or raise --max-mosaic-pixels; nothing was run.")
    assert not list(out.glob("*_i2d.fits"))


def test_checked_variants_checks_each_variants_parameters():
    seen = []

    def check(parameters):
        seen.append(parameters["x"])
        if parameters["x"] == "bad":
            raise ConfigError("x bad: no.")
        return {"x": parameters["x"].upper()}

    variants = [Variant({"steps.a.x": v}, f"a.x={v}", {"x": v}) for v in ("good", "fine")]
    assert checked_variants({"x": "base"}, variants, check) == {"x": "base"}
    assert seen == ["good", "fine"]  # the run's own parameters run no task: not checked
    assert [v.parameters for v in variants] == [{"x": "GOOD"}, {"x": "FINE"}]
    assert checked_variants({"x": "base"}, [], check) == {"x": "BASE"}
    bad = [Variant({"steps.a.x": "bad"}, "a.x=bad", {"x": "bad"})]
    with pytest.raises(ConfigError) as info:
        checked_variants({"x": "base"}, bad, check)
    assert str(info.value) == "--sweep steps.a.x=bad: x bad: no."


def test_maximum_cores_is_checked_per_variant():
    """detector1 takes no --sweep today; the rule holds for any stage with core steps."""
    from jwstrun.runner.run import _Settings, _parallelism
    from jwstrun.stages import get_stage

    settings = _Settings.__new__(_Settings)
    settings.jobs = 2
    sets = [(None, {})]
    assert _parallelism(get_stage("detector1"), [], settings, sets, "local").jobs == 2
    settings.jobs = 2
    variant = Variant({"steps.jump.maximum_cores": "all"}, "jump.maximum_cores=all",
                      {"steps": {"jump": {"maximum_cores": "all"}}})
    with pytest.raises(ConfigError) as info:
        _parallelism(get_stage("detector1"), [], settings, [(None, {}), (variant, {
            "steps": {"jump": {"maximum_cores": "all"}}})], "local")
    assert str(info.value).startswith(
        "--sweep steps.jump.maximum_cores=all: step jump: maximum_cores=all cannot be combined "
        "with jobs=2")
