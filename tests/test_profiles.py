"""Step-parameter profiles: loading, validation, layering, coercion, export to strun.

Everything here checks against the installed jwst pipelines' own specs (the
~3 s ``import jwst.pipeline`` happens once per test session, or never when
the spec cache is warm).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jwstrun import profiles as P
from jwstrun.cli import cli
from jwstrun.errors import ConfigError
from jwstrun.stages import STAGES, get_stage

STRUN = str(Path(sys.executable).with_name("strun"))
REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def error_of(path) -> str:
    with pytest.raises(ConfigError) as info:
        P.load_profile(path)
    return str(info.value)


# --------------------------------------------------------------------------
# shipped profiles
# --------------------------------------------------------------------------


def test_builtin_profiles_found_in_checkout():
    assert P.builtin_profiles_dir() == REPO / "configs"
    assert P.builtin_profile_names()[0] == "default"
    assert {"default", "fast", "deep", "crowded"} <= set(P.builtin_profile_names())


@pytest.mark.parametrize("name", ["default", "fast", "deep", "crowded", "nircam-clean"])
def test_shipped_profiles_validate_and_explain_every_setting(name):
    profile = P.load_profile(name)
    assert profile.kind == "builtin"
    assert len(profile.description) > 20
    for section in profile.sections.values():
        for step, key, setting in section.items():
            assert setting.why, f"{name}: {step}.{key} has no why"
            assert setting.origin.kind == "builtin" and setting.origin.line
        for correction in section.before or ():
            assert correction.why, f"{name}: before {correction.step} has no why"
            assert all(s.why and s.origin.line for s in correction.params.values())


def test_default_profile_sets_nothing_so_crds_pars_still_apply():
    profile = P.load_profile("default")
    assert all(profile.section(p).is_empty() for p in STAGES)
    assert P.build_call_parameters("image2", ["default"]) == {}


def test_shipped_profiles_make_the_promised_settings():
    assert P.build_call_parameters("image2", ["fast"]) == {"steps": {"resample": {"skip": True}}}
    deep = P.build_call_parameters("image3", ["deep"])
    assert deep["steps"]["skymatch"]["skymethod"] == "global+match"
    assert "outlier_detection" in deep["steps"] and deep["in_memory"] is False
    crowded = P.build_call_parameters("image3", ["crowded"])
    assert {"tweakreg", "source_catalog"} <= set(crowded["steps"])


def test_every_yaml_in_configs_passes_cli_check():
    files = sorted(str(p) for p in (REPO / "configs").glob("*.yaml"))
    result = CliRunner().invoke(cli, ["profiles", "check", *files], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.count("ok ") == len(files)


# --------------------------------------------------------------------------
# layering and provenance
# --------------------------------------------------------------------------


def test_layering_builtin_then_files_then_set(tmp_path):
    first = write(
        tmp_path,
        """
        image3:
          steps:
            tweakreg:
              snr_threshold: 30
              brightest: 50
        """,
        "first.yaml",
    )
    second = write(
        tmp_path,
        """
        image3:
          steps:
            tweakreg:
              snr_threshold: 40
        """,
        "second.yaml",
    )
    # Built-in names layer below files even when given after them.
    layers = [
        *P.load_profiles([str(first), "crowded", str(second)]),
        P.parse_sets(["steps.tweakreg.searchrad=0.25"], "image3"),
    ]
    assert [layer.name for layer in layers] == ["crowded", "first", "second", "--set"]
    merged = P.merge_layers("image3", layers)
    tweak = merged.steps["tweakreg"]
    assert tweak["snr_threshold"].value == 40.0
    assert tweak["snr_threshold"].origin == P.Origin("file", "second", str(second), 4)
    assert tweak["brightest"].value == 50
    assert str(tweak["brightest"].origin) == f"{first}:5"
    assert tweak["separation"].value == 0.5 and tweak["separation"].origin.kind == "builtin"
    assert tweak["searchrad"].value == 0.25
    assert str(tweak["searchrad"].origin) == "--set steps.tweakreg.searchrad=0.25"


def test_resolve_parameters_spec_then_crds_then_layers():
    crds = {
        "class": "jwst.pipeline.calwebb_image3.Image3Pipeline",  # carried by CRDS files
        "name": "Image3Pipeline",
        "steps": {
            "tweakreg": {"snr_threshold": "15", "brightest": 300, "class": "x"},
            "skymatch": {"skymethod": "local"},
        },
    }
    resolved = P.resolve_parameters(
        "image3",
        [P.load_profile("deep"), P.parse_sets(["steps.tweakreg.brightest=99"], "image3")],
        crds_pars=crds,
    )
    tweak = resolved.steps["tweakreg"]
    assert (tweak["snr_threshold"].value, str(tweak["snr_threshold"].origin)) == (
        15.0,
        "crds pars-tweakregstep",
    )
    assert (tweak["brightest"].value, tweak["brightest"].origin.kind) == (99, "set")
    assert (tweak["minobj"].value, str(tweak["minobj"].origin)) == (15, "spec default")
    sky = resolved.steps["skymatch"]["skymethod"]
    assert (sky.value, sky.origin.kind) == ("global+match", "builtin")
    assert "class" not in tweak and "name" not in resolved.params
    # Every spec parameter of every step is present.
    spec = P.pipeline_spec("image3")
    for step, step_spec in spec.steps.items():
        assert set(resolved.steps[step]) == set(step_spec.params) - {"class", "name", "config_file"}
    # JSON form for manifests carries the source of each value.
    data = json.loads(json.dumps(resolved.to_dict()))
    assert data["steps"]["tweakreg"]["brightest"]["source"] == "--set steps.tweakreg.brightest=99"


def test_build_call_parameters_is_accepted_by_the_pipeline_itself():
    from jwst.pipeline import Image2Pipeline, Image3Pipeline

    kwargs = P.build_call_parameters(
        "image2", ["fast"], ["save_bsub=true", "steps.resample.output_shape=100,200"]
    )
    assert kwargs == {
        "save_bsub": True,
        "steps": {"resample": {"skip": True, "output_shape": [100, 200]}},
    }
    pipe = Image2Pipeline(**kwargs)
    assert pipe.resample.skip is True and pipe.save_bsub is True
    assert pipe.resample.output_shape == [100, 200]

    kwargs3 = P.build_call_parameters("image3", ["crowded", "deep"])
    pipe3 = Image3Pipeline(**kwargs3)
    resolved = P.resolve_parameters("image3", P.load_profiles(["crowded", "deep"]))
    pars = pipe3.get_pars()
    for step, key, setting in resolved.items():
        got = pars if step is None else pars["steps"][step]
        if key in got and key != "input_dir":  # stpipe fills input_dir at run time
            assert got[key] == setting.value, (step, key)


def test_set_prefixed_for_other_pipeline_is_ignored():
    sets = ["image3.steps.tweakreg.snr_threshold=5", "image2.steps.resample.skip=true"]
    assert P.build_call_parameters("image2", [], sets) == {"steps": {"resample": {"skip": True}}}
    assert P.build_call_parameters("image3", [], sets) == {
        "steps": {"tweakreg": {"snr_threshold": 5.0}}
    }


def test_crds_steppars_environ():
    assert P.crds_steppars_environ(True) == {"STPIPE_DISABLE_CRDS_STEPPARS": "True"}
    assert P.crds_steppars_environ(False) == {}
    from stpipe.step import get_disable_crds_steppars

    os.environ.update(P.crds_steppars_environ(True))
    try:
        assert get_disable_crds_steppars() is True
    finally:
        del os.environ["STPIPE_DISABLE_CRDS_STEPPARS"]


# --------------------------------------------------------------------------
# coercion by the spec
# --------------------------------------------------------------------------


def test_yaml_values_coerced_like_strun_text(tmp_path):
    path = write(
        tmp_path,
        """
        image2:
          save_bsub: yes
          steps:
            resample:
              pixfrac: 1            # int -> float
              fillval: 0            # string parameter: the text '0', as in a .cfg file
              output_shape: [2048, 1024]
              kernel: "square"
              pixel_scale: null
        image3:
          steps:
            tweakreg:
              connectivity: 4       # option(4, 8): strun passes the text '4'
              kron_params: [2.5, 1.4]
            outlier_detection:
              snr: 5.0 4.0
              good_bits: "~DO_NOT_USE"
        """,
    )
    profile = P.load_profile(path)
    image2 = profile.section("image2").to_call_kwargs()
    assert image2 == {
        "save_bsub": True,
        "steps": {
            "resample": {
                "pixfrac": 1.0,
                "fillval": "0",
                "output_shape": [2048, 1024],
                "kernel": "square",
                "pixel_scale": None,
            }
        },
    }
    assert isinstance(image2["steps"]["resample"]["pixfrac"], float)
    image3 = profile.section("image3").to_call_kwargs()["steps"]
    assert image3["tweakreg"] == {"connectivity": "4", "kron_params": [2.5, 1.4]}
    assert image3["outlier_detection"] == {"snr": "5.0 4.0", "good_bits": "~DO_NOT_USE"}
    # The same text on the command line gives the same values.
    via_set = P.parse_sets(
        ["steps.tweakreg.connectivity=4", "steps.tweakreg.kron_params=2.5,1.4"], "image3"
    ).section("image3")
    assert via_set.to_call_kwargs()["steps"]["tweakreg"] == image3["tweakreg"]


def test_set_none_and_quoted_values():
    s3 = P.parse_sets(
        ["steps.resample.pixel_scale=None", "steps.skymatch.dqbits='~DO_NOT_USE,NON_SCIENCE'"],
        "image3",
    ).section("image3")
    assert s3.steps["resample"]["pixel_scale"].value is None
    assert s3.steps["skymatch"]["dqbits"].value == "~DO_NOT_USE,NON_SCIENCE"
    s2 = P.parse_sets(["steps.bkg_subtract.bkg_list=a.fits,b.fits"], "image2").section("image2")
    assert s2.steps["bkg_subtract"]["bkg_list"].value == ["a.fits", "b.fits"]


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=finite)
def test_float_parameters_same_from_yaml_and_set(tmp_path, value):
    text = repr(value)
    path = write(tmp_path, f"image3:\n  steps:\n    tweakreg:\n      searchrad: {text}\n")
    from_yaml = P.load_profile(path).section("image3").steps["tweakreg"]["searchrad"].value
    from_set = (
        P.parse_sets([f"steps.tweakreg.searchrad={text}"], "image3")
        .section("image3")
        .steps["tweakreg"]["searchrad"]
        .value
    )
    assert from_yaml == from_set == value
    assert isinstance(from_yaml, float)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.integers(min_value=-(10**12), max_value=10**12))
def test_integer_parameters_same_from_yaml_and_set(tmp_path, value):
    path = write(tmp_path, f"image3:\n  steps:\n    tweakreg:\n      brightest: {value}\n")
    from_yaml = P.load_profile(path).section("image3").steps["tweakreg"]["brightest"].value
    from_set = P.build_call_parameters("image3", [], [f"steps.tweakreg.brightest={value}"])
    assert from_yaml == from_set["steps"]["tweakreg"]["brightest"] == value


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    word=st.sampled_from(["true", "false", "yes", "no", "on", "off", "True", "FALSE"]),
)
def test_boolean_spellings(tmp_path, word):
    expected = word.lower() in ("true", "yes", "on")
    path = write(tmp_path, f"image2:\n  steps:\n    resample:\n      skip: {word}\n")
    assert P.load_profile(path).section("image2").steps["resample"]["skip"].value is expected
    via_set = P.build_call_parameters("image2", [], [f"steps.resample.skip={word}"])
    assert via_set["steps"]["resample"]["skip"] is expected


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(
        st.tuples(st.sampled_from(["snr_threshold", "brightest", "searchrad"]), st.integers(1, 500)),
        min_size=1,
        max_size=8,
    )
)
def test_last_set_wins(values):
    sets = [f"steps.tweakreg.{key}={value}" for key, value in values]
    got = P.build_call_parameters("image3", ["crowded"], sets)["steps"]["tweakreg"]
    expected = {}
    for key, value in values:
        expected[key] = value
    for key, value in expected.items():
        assert got[key] == value


# --------------------------------------------------------------------------
# validation errors: file, line, suggestion
# --------------------------------------------------------------------------


def test_unknown_step_names_file_line_and_suggestion(tmp_path):
    path = write(
        tmp_path,
        """
        description: typo
        image3:
          steps:
            tweakrg:
              snr_threshold: 5
        """,
    )
    assert error_of(path) == (
        f"{path}:4: unknown step 'tweakrg' in image3 (calwebb_image3); did you mean "
        "'tweakreg'? Valid: assign_mtwcs, tweakreg, skymatch, outlier_detection, "
        "resample, source_catalog."
    )


def test_unknown_parameter_suggests_closest(tmp_path):
    path = write(tmp_path, "image3:\n  steps:\n    tweakreg:\n      snr_treshold: 5\n")
    assert error_of(path) == (
        f"{path}:4: unknown parameter 'snr_treshold' for step tweakreg (TweakRegStep) in "
        "image3; did you mean 'snr_threshold'?"
    )


def test_step_parameter_at_pipeline_level_is_pointed_at_its_step(tmp_path):
    path = write(tmp_path, "image3:\n  skymethod: match\n")
    message = error_of(path)
    assert message.startswith(f"{path}:2: unknown parameter 'skymethod' for calwebb_image3")
    assert "is a parameter of step skymatch: put it under steps:" in message


def test_step_without_steps_key(tmp_path):
    path = write(tmp_path, "image2:\n  resample:\n    skip: true\n")
    assert error_of(path) == (
        f"{path}:2: 'resample' is a step of image2; put it under 'steps:' "
        "(image2: steps: resample: ...)"
    )


def test_unknown_pipeline_and_misplaced_step(tmp_path):
    path = write(
        tmp_path,
        """
        calwebb_image3:
          in_memory: false
        tweakreg:
          brightest: 10
        image4: {}
        """,
    )
    assert error_of(path) == (
        "3 problems:\n"
        f"  {path}:1: unknown top-level key 'calwebb_image3'; did you mean 'image3'?\n"
        f"  {path}:3: unknown top-level key 'tweakreg'; 'tweakreg' is a step of image3: "
        "write it as image3: steps: tweakreg: ...\n"
        f"  {path}:5: unknown top-level key 'image4'; did you mean 'image3' or 'image2'? "
        "Valid: description, why, detector1, image2, image3."
    )


def test_wrong_type_bad_option_and_range_all_reported_with_lines(tmp_path):
    path = write(
        tmp_path,
        """
        image2:
          steps:
            resample:
              kernel: sqare
              pixfrac: 1.5
              output_shape: [100]
        image3:
          steps:
            tweakreg:
              brightest: many
              nclip: true
            skymatch:
              skymethod: global_match
            source_catalog:
              snr_threshold: null
        """,
    )
    assert error_of(path) == (
        "7 problems:\n"
        f"  {path}:4: image2.steps.resample.kernel: 'sqare' is not an allowed value; choose "
        "one of 'square', 'gaussian', 'point', 'turbo', 'lanczos2', 'lanczos3'; did you mean "
        "'square'?\n"
        f"  {path}:5: image2.steps.resample.pixfrac: 1.5 is out of range: the value \"1.5\" "
        "is too big. (spec: float(min=0.0, max=1.0, default=1.0))\n"
        f"  {path}:6: image2.steps.resample.output_shape: [100] is out of range: the value "
        "\"[100]\" is too short. (spec: int_list(min=2, max=2, default=None))\n"
        f"  {path}:10: image3.steps.tweakreg.brightest: 'many' is not an integer (spec: "
        "integer(default=200))\n"
        f"  {path}:11: image3.steps.tweakreg.nclip: True is not an integer (spec: "
        "integer(min=0, default=3))\n"
        f"  {path}:13: image3.steps.skymatch.skymethod: 'global_match' is not an allowed "
        "value; choose one of 'local', 'global', 'match', 'global+match', 'user'; did you "
        "mean 'global+match' or 'global'?\n"
        f"  {path}:15: image3.steps.source_catalog.snr_threshold: null is not allowed (spec: "
        "float(default=3.0)); leave the parameter out to keep the default 3.0"
    )


def test_structure_errors(tmp_path):
    path = write(
        tmp_path,
        """
        description: [not, text]
        image2:
          steps:
            resample:
              skip: true
              skip: false
              kernel: {a: 1}
        image3: [1, 2]
        """,
    )
    assert error_of(path) == (
        "4 problems:\n"
        f"  {path}:1: description must be a string\n"
        f"  {path}:6: 'skip' appears twice in image2.steps.resample (first on line 5)\n"
        f"  {path}:7: image2.steps.resample.kernel: expected a value or a list, not a mapping\n"
        f"  {path}:8: image3 must be a mapping (key: value lines)"
    )


def test_why_must_explain_a_real_setting(tmp_path):
    path = write(
        tmp_path,
        """
        why:
          image2.steps.resample.skp: typo
        image2:
          steps:
            resample:
              skip: true
        """,
    )
    assert error_of(path) == (
        f"{path}:2: why: 'image2.steps.resample.skp' explains a setting this profile does "
        "not make; did you mean 'image2.steps.resample.skip' or 'image2.steps.resample'? "
        "Valid: image2, image2.steps.resample, image2.steps.resample.skip."
    )


def test_not_yaml_reports_line(tmp_path):
    path = write(tmp_path, "image2:\n  steps:\n    resample: {skip: true\n")
    assert error_of(path).startswith(f"{path}:4: not valid YAML: ")
    two = write(tmp_path, "image2: {}\n---\nimage3: {}\n", "two.yaml")
    assert error_of(two).startswith(f"{two}:")
    assert error_of(two) == (
        f"{two}:2: not valid YAML: expected a single document in the stream, "
        "but found another document"
    )


def test_unknown_profile_and_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        P.load_profile("fats")
    assert str(info.value) == (
        "unknown profile 'fats'; did you mean 'fast'? Valid: default, crowded, deep, fast, "
        "nircam-clean. "
        "(a file path must end in .yaml or contain a '/')"
    )
    with pytest.raises(ConfigError) as info:
        P.load_profile(tmp_path / "nope.yaml")
    assert str(info.value).startswith(f"{tmp_path / 'nope.yaml'}: profile file not found;")


def test_set_errors():
    with pytest.raises(ConfigError) as info:
        P.parse_sets(
            [
                "steps.tweakreg.snr_treshold=10",
                "steps.tweakrg.brightest=1",
                "brightest",
                "tweakreg.brightest=3",
                "steps.resample.kernel=sq",
                "steps.tweakreg.brightest=1.5",
                "tweakreg=1",
            ],
            "image3",
        )
    assert str(info.value) == (
        "7 problems:\n"
        "  --set steps.tweakreg.snr_treshold=10: unknown parameter 'snr_treshold' for step "
        "tweakreg in image3; did you mean 'snr_threshold'?\n"
        "  --set steps.tweakrg.brightest=1: unknown step 'tweakrg' in image3 (calwebb_image3); "
        "did you mean 'tweakreg'? Valid: assign_mtwcs, tweakreg, skymatch, outlier_detection, "
        "resample, source_catalog.\n"
        "  --set brightest: expected KEY=VALUE, e.g. steps.tweakreg.snr_threshold=10 or "
        "save_bsub=true\n"
        "  --set tweakreg.brightest=3: cannot read key 'tweakreg.brightest'; did you mean "
        "steps.tweakreg.brightest?\n"
        "  --set steps.resample.kernel=sq: 'sq' is not an allowed value; choose one of "
        "'square', 'gaussian', 'point', 'turbo', 'lanczos2', 'lanczos3'\n"
        "  --set steps.tweakreg.brightest=1.5: '1.5' is not an integer (spec: "
        "integer(default=200))\n"
        "  --set tweakreg=1: 'tweakreg' is a step; write steps.tweakreg.PARAM=VALUE"
    )


def test_set_for_the_other_pipeline_says_so():
    with pytest.raises(ConfigError) as info:
        P.parse_sets(["in_memory=false"], "image2")
    assert str(info.value) == (
        "--set in_memory=false: unknown parameter 'in_memory' for calwebb_image2 in image2 "
        "(it belongs to image3: prefix the key with 'image3.')"
    )


def test_unknown_pipeline_name():
    with pytest.raises(ConfigError) as info:
        P.pipeline_spec("calwebb_image2")
    assert str(info.value) == "unknown pipeline 'calwebb_image2'; did you mean 'image2'?"


def test_set_with_a_stage_prefix_and_nothing_after_it():
    with pytest.raises(ConfigError) as info:
        P.parse_sets(["calwebb_image3=1"], "image3")
    assert str(info.value) == (
        "--set calwebb_image3=1: cannot read key 'calwebb_image3'; write "
        "calwebb_image3.PARAM=VALUE or calwebb_image3.steps.STEP.PARAM=VALUE"
    )
    assert P.parse_sets(["image2=1", "calwebb_image2.save_bsub=true"], "image3").section(
        "image3"
    ).is_empty()  # prefixed for the other stage: not this one's business


def test_profile_sections_are_the_stage_names(tmp_path):
    path = write(tmp_path, "stage2:\n  steps:\n    resample:\n      skip: true\n")
    assert error_of(path) == f"{path}:1: unknown top-level key 'stage2'; did you mean 'image2'?"
    assert P.parse_sets(["stage2.steps.resample.skip=true"], "image2").section(
        "image2"
    ).get("resample", "skip").value is True


# --------------------------------------------------------------------------
# a profile can never import code
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, line, key",
    [
        ("class: jwst.pipeline.Image2Pipeline\n", 1, "class"),
        ("image2:\n  class: os.system\n", 2, "class"),
        ("image2:\n  steps:\n    resample:\n      class: evil.Step\n", 4, "class"),
        ("image2:\n  steps:\n    resample:\n      name: evil\n", 4, "name"),
        ("image2:\n  steps:\n    resample:\n      config_file: other.asdf\n", 4, "config_file"),
        ("image3:\n  pre_hooks: [os.system]\n", 2, "pre_hooks"),
        ("image3:\n  steps:\n    tweakreg:\n      post_hooks: ['evil.Hook']\n", 4, "post_hooks"),
        ("image2:\n  steps:\n    class: {x: 1}\n", 3, "class"),
    ],
)
def test_keys_naming_python_classes_are_refused(tmp_path, text, line, key):
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(f"{path}:{line}: {key!r} is refused: ")
    assert message.endswith("Profiles only set parameters of the pipeline's own steps")


def test_set_cannot_name_classes():
    with pytest.raises(ConfigError) as info:
        P.parse_sets(["steps.tweakreg.class=evil.Step"], "image3")
    assert str(info.value).startswith("--set steps.tweakreg.class=evil.Step: 'class' is refused: ")


def test_python_yaml_tags_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = write(
        tmp_path,
        f"""
        image2:
          steps:
            resample:
              fillval: !!python/object/apply:os.system ["touch {marker}"]
        """,
    )
    assert error_of(path) == (
        f"{path}:4: YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not "
        "allowed: profiles hold plain values (strings, numbers, true/false, null, lists, "
        "mappings) and never build Python objects; remove the tag (quote dates and other "
        "special values)"
    )
    assert not marker.exists()


@pytest.mark.parametrize(
    "value, tag",
    [
        ("!custom 3", "!custom"),
        ("!!binary aGVsbG8=", "tag:yaml.org,2002:binary"),
        ("2024-01-01", "tag:yaml.org,2002:timestamp"),
        ("!!python/name:os.system ''", "tag:yaml.org,2002:python/name:os.system"),
    ],
)
def test_other_tags_are_refused(tmp_path, value, tag):
    path = write(tmp_path, f"image2:\n  steps:\n    resample:\n      fillval: {value}\n")
    assert error_of(path).startswith(f"{path}:4: YAML tag {tag!r} is not allowed")


def test_alias_bomb_is_refused_quickly(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    lines.append("image2: *a8")
    path = write(tmp_path, "\n".join(lines) + "\n")
    start = time.perf_counter()
    message = error_of(path)
    assert time.perf_counter() - start < 2
    assert "expands to more than 10000 YAML nodes" in message


def test_recursive_alias_is_refused(tmp_path):
    path = write(tmp_path, "image2: &loop\n  steps: *loop\n")
    assert "nested too deeply" in error_of(path)


def test_merge_keys_are_refused(tmp_path):
    path = write(
        tmp_path,
        """
        base: &base {skip: true}
        image2:
          steps:
            resample:
              <<: *base
        """,
    )
    assert error_of(path) == (
        f"{path}:5: YAML merge keys ('<<') are not supported in profiles; write the "
        "parameters out"
    )


def test_huge_file_is_refused(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * (P.MAX_FILE_BYTES + 10) + "\n")
    assert "is too large for a profile" in error_of(path)


# --------------------------------------------------------------------------
# export for strun
# --------------------------------------------------------------------------


def _compare_with_resolved(pars: dict, resolved: P.ParameterSet) -> int:
    compared = 0
    for step, key, setting in resolved.items():
        got = pars if step is None else pars["steps"][step]
        if key in got and key != "input_dir":  # stpipe fills input_dir at run time
            assert got[key] == setting.value, (step, key, got[key], setting.value)
            compared += 1
    return compared


@pytest.mark.parametrize("pipeline", ["image2", "image3"])
def test_export_round_trip_through_stpipe(tmp_path, pipeline):
    from stpipe import Step

    layers = [
        *P.load_profiles(["fast", "crowded"]),
        P.parse_sets(["steps.resample.pixfrac=0.75"], pipeline),
    ]
    path = P.export_parameter_file(pipeline, layers, tmp_path / "params.asdf")
    assert sorted(os.listdir(tmp_path)) == ["params.asdf"]  # no temporary left behind
    pipe = Step.from_config_file(str(path))
    assert type(pipe).__name__ == get_stage(pipeline).class_name
    resolved = P.resolve_parameters(pipeline, layers)
    assert _compare_with_resolved(pipe.get_pars(), resolved) > 100
    assert pipe.resample.pixfrac == 0.75


def test_export_only_writes_profile_settings_unless_full(tmp_path):
    import asdf

    layers = P.load_profiles(["fast"])
    small = P.export_parameter_file("image2", layers, tmp_path / "small.asdf")
    full = P.export_parameter_file("image2", layers, tmp_path / "full.asdf", full=True)
    with asdf.open(small) as af:
        assert af.tree["class"] == "jwst.pipeline.calwebb_image2.Image2Pipeline"
        assert af.tree["parameters"] == {}
        steps = {s["name"]: s["parameters"] for s in af.tree["steps"]}
        assert steps == {
            "bkg_subtract": {},
            "assign_wcs": {},
            "flat_field": {},
            "photom": {},
            "resample": {"skip": True},
        }
    with asdf.open(full) as af:
        steps = {s["name"]: s["parameters"] for s in af.tree["steps"]}
        assert steps["resample"]["skip"] is True
        assert steps["resample"]["pixfrac"] == 1.0  # spec default frozen in


def test_strun_resolves_the_exported_parameters(tmp_path):
    """The real strun reads the exported file; --save-parameters shows what it resolved.

    strun writes the parameters it built before running; with no input the run
    then fails (exit 1) on the missing argument, which is all it can do here.
    """
    from stpipe import Step

    layers = [*P.load_profiles(["crowded", "deep"]), P.parse_sets(["steps.tweakreg.brightest=77"], "image3")]
    exported = P.export_parameter_file("image3", layers, tmp_path / "crowded_deep.asdf")
    saved = tmp_path / "saved.asdf"
    proc = subprocess.run(
        [STRUN, str(exported), "--disable-crds-steppars", "--save-parameters", str(saved)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "missing 1 required positional argument: 'input_data'" in proc.stderr
    pipe = Step.from_config_file(str(saved))
    assert pipe.tweakreg.brightest == 77 and pipe.skymatch.skymethod == "global+match"
    assert _compare_with_resolved(pipe.get_pars(), P.resolve_parameters("image3", layers)) > 100


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def test_cli_list_json():
    result = CliRunner().invoke(cli, ["profiles", "list", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [d["name"] for d in data][:1] == ["default"]
    assert all(d["description"] for d in data)


def test_cli_show_text_and_json():
    runner = CliRunner()
    result = runner.invoke(cli, ["profiles", "show", "fast", "--pipeline", "image2"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "steps.resample.skip = true" in result.output
    assert "profile fast (fast.yaml:" in result.output

    result = runner.invoke(
        cli,
        ["profiles", "show", "crowded", "--pipeline", "image3", "--resolved", "--json",
         "--set", "steps.tweakreg.brightest=5"],
         catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["pipelines"]["image3"]
    tweak = data["steps"]["tweakreg"]
    assert tweak["brightest"]["value"] == 5
    assert tweak["brightest"]["origin"]["kind"] == "set"
    assert tweak["separation"]["origin"]["kind"] == "builtin"
    assert tweak["minobj"]["source"] == "spec default"


def test_cli_check_reports_and_fails(tmp_path):
    good = write(tmp_path, "image2:\n  steps:\n    resample:\n      skip: true\n", "good.yaml")
    bad = write(tmp_path, "image2:\n  steps:\n    resample:\n      skp: true\n", "bad.yaml")
    result = CliRunner().invoke(cli, ["profiles", "check", str(good), str(bad)])
    assert result.exit_code == 1
    assert result.stdout == f"ok {good} (1 settings)\n"
    assert result.stderr == (
        f"Error: {bad}:4: unknown parameter 'skp' for step resample (ResampleStep) in image2; "
        "did you mean 'skip'?\n"
    )


def test_cli_show_unknown_profile_is_one_line_error():
    result = CliRunner().invoke(cli, ["profiles", "show", "crowdd"])
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: unknown profile 'crowdd'; did you mean 'crowded'? Valid: default, crowded, deep, "
        "fast, nircam-clean. (a file path must end in .yaml or contain a '/')\n"
    )
    assert "Traceback" not in result.output


def test_cli_export_directory_and_file(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["profiles", "export", "deep", "-o", str(tmp_path / "out")],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "out")) == [
        "deep_calwebb_detector1.asdf",
        "deep_calwebb_image2.asdf",
        "deep_calwebb_image3.asdf",
    ]
    one = tmp_path / "one.asdf"
    result = runner.invoke(
        cli, ["profiles", "export", "fast", "--pipeline", "image2", "-o", str(one)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert one.is_file()
    result = runner.invoke(cli, ["profiles", "export", "fast", "-o", str(tmp_path / "x.asdf")])
    assert result.exit_code == 2
    assert "-o FILE.asdf needs --pipeline detector1|image2|image3" in result.output


# --------------------------------------------------------------------------
# speed: no jwst import at module import, spec cache
# --------------------------------------------------------------------------


def test_spec_cache_avoids_importing_jwst(tmp_path):
    profile = write(tmp_path, "image3:\n  steps:\n    tweakreg:\n      brightest: 10\n")
    code = (
        "import sys, jwstrun.profiles as P, jwstrun.cli\n"
        "pipelines = lambda: any(m.startswith('jwst.pipeline') for m in sys.modules)\n"
        "assert not pipelines()\n"
        f"P.load_profile({str(profile)!r})\n"
        "print(pipelines())\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("JWSTRUN_NO_SPEC_CACHE", None)
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "True"  # cold: read the specs from jwst
    assert len(list((tmp_path / "cache" / "jwstrun").glob("pipeline-specs-*.json"))) == 1
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "False"  # warm: jwst never imported


def test_spec_of_a_class_without_class_alias_is_named_by_its_class():
    """Stages may name any stpipe class; one without a class_alias (as another
    package may register) is called by its class name in messages and exports."""
    from jwst.resample import ResampleStep
    from jwst.stpipe import Pipeline

    from jwstrun.profiles.spec import _read_spec

    class PlainPipeline(Pipeline):
        spec = """
            flag = boolean(default=False)  # a pipeline-level switch
        """
        step_defs = {"resample": ResampleStep}

    assert PlainPipeline.class_alias is None
    raw = _read_spec(PlainPipeline)
    assert raw["alias"] == "PlainPipeline"
    assert raw["class_name"].endswith(".PlainPipeline")
    assert raw["params"]["flag"] == {
        "check": "boolean(default=False)",
        "comment": "a pipeline-level switch",
    }
    assert raw["steps"]["resample"]["class_name"] == "jwst.resample.resample_step.ResampleStep"
    assert raw["steps"]["resample"]["params"]["pixfrac"]["check"].startswith("float(")
    json.dumps(raw)  # what the disk cache stores


def test_disk_spec_cache_must_name_todays_stage_classes():
    from jwstrun.profiles.spec import _all_specs, _specs_match_stages

    data = json.loads(json.dumps(_all_specs()))
    assert _specs_match_stages(data)
    assert {name: entry["step_class"] for name, entry in data.items()} == {
        name: stage.step_class for name, stage in STAGES.items()
    }
    data["image2"]["step_class"] = "some.other.Image2Pipeline"
    assert not _specs_match_stages(data)
    del data["image2"]["step_class"]  # a cache written before the stage table
    assert not _specs_match_stages(data)
    assert not _specs_match_stages({"image2": data["image2"]})


def test_clear_caches_forgets_the_specs_this_process_holds():
    first = P.pipeline_spec("image3")
    assert P.pipeline_spec("image3") is first
    P.clear_caches()
    again = P.pipeline_spec("image3")
    assert again is not first and again == first


# --------------------------------------------------------------------------
# end to end: strun with the exported files == jwstrun with the profile
# --------------------------------------------------------------------------

JWSTRUN = str(Path(sys.executable).with_name("jwstrun"))
ASN_FROM_LIST = str(Path(sys.executable).with_name("asn_from_list"))

USER_PROFILE = """
description: fast plus a coarser SIP approximation, so the products show the profile was used
why:
  image2.steps.assign_wcs: A degree-2 SIP differs from the default, visible in the headers.
image2:
  steps:
    resample:
      skip: true
    assign_wcs:
      sip_degree: 2
      sip_npoints: 16
"""


@pytest.fixture(scope="module")
def simulated(tmp_path_factory, shared_simulation):
    from conftest import SUB160_TWO

    root = tmp_path_factory.mktemp("profiles_e2e")
    sim = shared_simulation(**SUB160_TWO)
    profile = root / "mine.yaml"
    profile.write_text(USER_PROFILE)
    return root, sim, profile


def _run(args, cwd, env=None):
    proc = subprocess.run(
        args, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _assert_same_products(a_dir: Path, b_dir: Path, names: list[str]) -> None:
    import numpy as np
    from astropy.io import fits

    for name in names:
        with fits.open(a_dir / name) as a, fits.open(b_dir / name) as b:
            assert [h.name for h in a] == [h.name for h in b], name
            for hdu_a, hdu_b in zip(a, b):
                if hdu_a.name == "ASDF" or hdu_a.data is None:
                    continue
                if isinstance(hdu_a, fits.BinTableHDU):
                    continue  # HDRTAB and friends carry file names and dates
                assert np.array_equal(hdu_a.data, hdu_b.data, equal_nan=True), (name, hdu_a.name)
            for key in [k for k in a[0].header if k.startswith("S_")]:
                assert a[0].header[key] == b[0].header[key], (name, key)
            if "SCI" in a:
                for key in ("CTYPE1", "A_ORDER", "B_ORDER", "CRVAL1", "CRVAL2"):
                    assert a["SCI"].header.get(key) == b["SCI"].header.get(key), (name, key)


def test_strun_with_exported_image2_file_gives_jwstrun_products(simulated):
    root, sim, profile = simulated
    sets = ["--set", "steps.photom.apply_time_correction=false"]
    _run(
        [JWSTRUN, "profiles", "export", str(profile), "--pipeline", "image2",
         "-o", str(root / "image2.asdf"), *sets],
        cwd=root,
    )
    rate = sim.rate_files[0]
    _run(
        [JWSTRUN, "image2", str(rate), "-o", str(root / "jwstrun"), "-j", "1",
         "--crds-env", str(sim.env_file), "--profile", str(profile), *sets],
        cwd=root,
    )
    (root / "strun").mkdir()
    _run([STRUN, str(root / "image2.asdf"), str(rate)], cwd=root / "strun", env=sim.env)

    cal = rate.name.replace("_rate.fits", "_cal.fits")
    products = sorted(p.name for p in (root / "jwstrun").glob("*.fits"))
    assert products == sorted(p.name for p in (root / "strun").glob("*.fits")) == [cal]
    _assert_same_products(root / "jwstrun", root / "strun", [cal])
    from astropy.io import fits

    assert fits.getval(root / "strun" / cal, "A_ORDER", "SCI") == 2  # the profile was used
    assert fits.getval(root / "strun" / cal, "S_RESAMP") == "SKIPPED"


@pytest.mark.slow
def test_strun_with_exported_image3_file_gives_jwstrun_products(tmp_path):
    from jwstrun.simulate import simulate_program

    # tweakreg needs enough stars in common: four SUB640 dithers (as the strun smoke test).
    root = tmp_path
    sim = simulate_program(root / "sim", subarray="SUB640", n_dithers=4, seed=3)
    cal_dir = root / "cal"
    _run(
        [JWSTRUN, "image2", *map(str, sim.rate_files), "-o", str(cal_dir), "-j", "1",
         "--crds-env", str(sim.env_file), "--profile", "fast"],
        cwd=root,
    )
    _run([JWSTRUN, "profiles", "export", "fast", "-o", str(root / "params")], cwd=root)
    cals = sorted(p.name for p in cal_dir.glob("*_cal.fits"))
    strun_dir = root / "strun3"
    strun_dir.mkdir()
    for name in cals:
        (strun_dir / name).write_bytes((cal_dir / name).read_bytes())
    _run([ASN_FROM_LIST, "-o", "l3_asn.json", "--product-name", "mosaic", *cals], cwd=strun_dir)
    _run([STRUN, str(root / "params" / "fast_calwebb_image3.asdf"), "l3_asn.json"],
         cwd=strun_dir, env=sim.env)
    (strun_dir / "l3_asn.json").rename(root / "l3_asn.json")
    jwst3 = root / "jwstrun3"
    jwst3.mkdir()
    for name in cals:
        (jwst3 / name).write_bytes((cal_dir / name).read_bytes())
    (jwst3 / "l3_asn.json").write_bytes((root / "l3_asn.json").read_bytes())
    _run(
        [JWSTRUN, "image3", "l3_asn.json", "-o", str(jwst3), "-j", "1",
         "--crds-env", str(sim.env_file), "--profile", "fast"],
        cwd=jwst3,
    )
    assert (strun_dir / "mosaic_i2d.fits").is_file()
    _assert_same_products(jwst3, strun_dir, ["mosaic_i2d.fits"])


def test_tweakreg_separation_tolerance_pair_checked_before_running(tmp_path):
    """stpipe accepts each value alone; stcal's tweakreg refuses separation <= sqrt(2) x
    tolerance at run time (FAILED, nothing aligned): refused in the profile, with its line,
    and in the merged layers (a --set against a profile or the spec default)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("image3:\n  steps:\n    tweakreg:\n      separation: 0.5\n      tolerance: 0.4\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:4: image3.steps.tweakreg: separation 0.5"):
        P.load_profile(bad)
    with pytest.raises(ConfigError, match=r"separation 0.5 \(profile crowded.*tolerance 0.4 "
                                          r"\(--set steps.tweakreg.tolerance=0.4\)"):
        P.build_call_parameters("image3", ["crowded"], ["steps.tweakreg.tolerance=0.4"])
    with pytest.raises(ConfigError, match=r"abs_separation 0.1 .*abs_tolerance 0.7 \(spec default\)"):
        P.build_call_parameters("image3", [], ["steps.tweakreg.abs_separation=0.1"])
    ok = P.build_call_parameters("image3", ["crowded"], ["steps.tweakreg.tolerance=0.35"])
    assert ok["steps"]["tweakreg"]["tolerance"] == 0.35


# --------------------------------------------------------------------------
# strun habits (issue 23, item 8): one --set list for both stages; --changed
# --------------------------------------------------------------------------


def test_unprefixed_set_keys_go_to_the_stages_that_have_the_step():
    sets = ["steps.tweakreg.snr_threshold=8", "steps.resample.pixfrac=0.5", "save_bsub=true",
            "in_memory=false"]
    both = ["image2", "image3"]
    image2 = P.parse_sets(sets, "image2", pipelines=both).section("image2")
    image3 = P.parse_sets(sets, "image3", pipelines=both).section("image3")
    assert image2.to_call_kwargs() == {"save_bsub": True, "steps": {"resample": {"pixfrac": 0.5}}}
    assert image3.to_call_kwargs() == {
        "in_memory": False,
        "steps": {"tweakreg": {"snr_threshold": 8.0}, "resample": {"pixfrac": 0.5}},
    }
    # a command running one stage still says where a key of the other one belongs
    with pytest.raises(ConfigError) as info:
        P.parse_sets(["steps.tweakreg.snr_threshold=8"], "image2")
    assert str(info.value).endswith("(it belongs to image3: prefix the key with 'image3.')")


def test_set_key_in_neither_stage_is_an_error_naming_both():
    both = ["image2", "image3"]
    with pytest.raises(ConfigError) as info:
        P.parse_sets(["steps.tweakrg.brightest=5", "in_memry=false",
                      "steps.tweakreg.brightes=5"], "image2", pipelines=both)
    assert str(info.value) == (
        "2 problems:\n"
        "  --set steps.tweakrg.brightest=5: unknown step 'tweakrg' in image2 or image3; did you "
        "mean 'tweakreg'? Valid: bkg_subtract, assign_wcs, flat_field, photom, resample, "
        "assign_mtwcs, tweakreg, skymatch, outlier_detection, source_catalog.\n"
        "  --set in_memry=false: unknown parameter 'in_memry' for the pipelines image2 or "
        "image3; did you mean 'in_memory'?"
    )  # steps.tweakreg.brightes is image3's to check:
    with pytest.raises(ConfigError) as info:
        P.parse_sets(["steps.tweakreg.brightes=5"], "image3", pipelines=both)
    assert str(info.value) == (
        "--set steps.tweakreg.brightes=5: unknown parameter 'brightes' for step tweakreg in "
        "image3; did you mean 'brightest'?"
    )


def test_set_with_strun_leading_dashes_says_drop_them():
    with pytest.raises(ConfigError) as info:
        P.parse_sets(["--steps.tweakreg.snr_threshold=10", "-in_memory=false"], "image3")
    assert str(info.value) == (
        "2 problems:\n"
        "  --set --steps.tweakreg.snr_threshold=10: drop the leading --, as in "
        "--set steps.tweakreg.snr_threshold=10\n"
        "  --set -in_memory=false: drop the leading -, as in --set in_memory=false"
    )
    for args in (["--set", "--steps.tweakreg.snr_threshold=10"],
                 ["--set=--steps.tweakreg.snr_threshold=10"]):
        result = CliRunner().invoke(cli, ["profiles", "show", "fast", *args])
        assert result.exit_code == 1
        assert result.stderr == (
            "Error: --set --steps.tweakreg.snr_threshold=10: drop the leading --, as in "
            "--set steps.tweakreg.snr_threshold=10\n"
        )


def test_cli_show_help_example_runs_as_written(tmp_path, monkeypatch):
    """`jwstrun profiles show my.yaml --set steps.tweakreg.snr_threshold=10 --json`, taken
    from the command's own --help: the unprefixed tweakreg key is image3's."""
    import shlex

    help_text = CliRunner().invoke(cli, ["profiles", "show", "--help"]).output
    (example,) = [line.strip() for line in help_text.splitlines() if "my.yaml --set" in line]
    assert example == "jwstrun profiles show my.yaml --set steps.tweakreg.snr_threshold=10 --json"
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "image3:\n  steps:\n    tweakreg:\n      brightest: 50\n", "my.yaml")
    result = CliRunner().invoke(cli, shlex.split(example)[1:], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["pipelines"]
    assert data["image2"] == {"pipeline": "image2", "parameters": {}, "steps": {}}
    tweakreg = data["image3"]["steps"]["tweakreg"]
    assert tweakreg["snr_threshold"]["value"] == 10.0
    assert tweakreg["snr_threshold"]["source"] == "--set steps.tweakreg.snr_threshold=10"
    assert tweakreg["brightest"]["source"] == "my.yaml:4"


SPARSE = """\
description: Sparse field
why:
  image3.steps.tweakreg.brightest: few stars in a sparse field
image3:
  steps:
    tweakreg:
      snr_threshold: 10
      brightest: 50
    resample:
      pixfrac: 1.0
image2:
  steps:
    resample:
      skip: true
"""


def test_cli_show_changed_lists_only_values_that_differ_from_the_spec(tmp_path, monkeypatch):
    """snr_threshold 10 and pixfrac 1.0 are the spec defaults: --changed leaves them out."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path, SPARSE, "my.yaml")
    args = ["profiles", "show", "my.yaml", "--set", "steps.resample.kernel=gaussian"]
    result = CliRunner().invoke(cli, [*args, "--changed"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert [line.rstrip() for line in result.stdout.splitlines()] == [
        "my: Sparse field",
        "my.yaml",
        "detector1: no value differs from the spec defaults",
        "image2",
        "  steps.resample.skip = true    [my.yaml:14]",
        "  steps.resample.kernel = 'gaussian'    [--set steps.resample.kernel=gaussian]",
        "image3",
        "  steps.tweakreg.brightest = 50    [my.yaml:8]",
        "      few stars in a sparse field",
        "  steps.resample.kernel = 'gaussian'    [--set steps.resample.kernel=gaussian]",
    ]
    everything = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert "  steps.tweakreg.snr_threshold = 10.0    [my.yaml:7]" in everything.stdout
    assert "  steps.resample.pixfrac = 1.0    [my.yaml:10]" in everything.stdout

    as_json = CliRunner().invoke(cli, [*args, "--changed", "--resolved", "--json",
                                       "--pipeline", "image3"], catch_exceptions=False)
    data = json.loads(as_json.stdout)
    assert data["changed"] and data["resolved"]
    steps = data["pipelines"]["image3"]["steps"]
    assert {step: sorted(values) for step, values in steps.items()} == {
        "tweakreg": ["brightest"], "resample": ["kernel"]}
    nothing = CliRunner().invoke(cli, ["profiles", "show", "default", "--changed"])
    assert nothing.stdout.splitlines()[-2:] == [
        "image2: no value differs from the spec defaults",
        "image3: no value differs from the spec defaults",
    ]


def test_resolve_parameters_changed_only():
    layer = P.parse_sets(["steps.tweakreg.snr_threshold=10", "steps.tweakreg.brightest=50"],
                         "image3")
    changed = P.resolve_parameters("image3", [layer], changed_only=True)
    assert [(step, key) for step, key, _ in changed.items()] == [("tweakreg", "brightest")]
    crds = {"steps": {"tweakreg": {"snr_threshold": 5}}}
    changed = P.resolve_parameters("image3", [], crds, changed_only=True)
    (setting,) = [s for _, _, s in changed.items()]
    assert (setting.value, str(setting.origin)) == (5.0, "crds pars-tweakregstep")


def test_cli_export_both_stages_with_an_unprefixed_step_key(tmp_path):
    result = CliRunner().invoke(cli, ["profiles", "export", "fast", "-o", str(tmp_path),
                                      "--set", "steps.tweakreg.snr_threshold=8", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    import asdf

    for path in json.loads(result.stdout):
        with asdf.open(path) as af:
            steps = {s["name"]: s["parameters"] for s in af.tree["steps"]}
        assert steps.get("tweakreg", {}).get("snr_threshold") == (8.0 if "image3" in path
                                                                  else None)
