"""Property-based tests: random associations, profiles and --set values never produce a
traceback.  Each is either accepted or refused with a :class:`JwstrunError`; what is
accepted never names a path outside its directory, a path separator in a product name,
or a key that makes stpipe import code or write outside OUTDIR."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jwstrun.errors import JwstrunError

SETTINGS = settings(
    max_examples=int(os.environ.get("JWSTRUN_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

# JSON-like values of every kind, nested a little.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**12) | st.floats(allow_nan=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def asn_dir(sim, cal_files, tmp_path_factory):
    """A directory with real _rate and _cal members (hard links) and a sub-directory."""
    root = tmp_path_factory.mktemp("hyp_asn")
    for path in [*sim.rate_files, *cal_files]:
        os.link(path, root / path.name)
    (root / "sub").mkdir()
    os.link(sim.rate_files[0], root / "sub" / sim.rate_files[0].name)
    (root / "empty_rate.fits").write_bytes(b"")
    return root


def member_names(sim, cal_files):
    real = [p.name for p in [*sim.rate_files, *cal_files]]
    tricky = [
        "missing_rate.fits", f"../{real[0]}", f"sub/../{real[0]}", f"sub/{real[0]}",
        f"./{real[1]}", "/etc/passwd", "/", "", ".", "..", "sub", "empty_rate.fits",
        f"{real[0]}\x00", "a/b/c_rate.fits", "~/x_rate.fits", f"{real[0].upper()}",
    ]
    return st.sampled_from(real + tricky) | st.text(max_size=16)


def associations(names):
    exptypes = st.sampled_from(["science", "background", "SCIENCE", "", "psf"]) | json_values
    member = st.fixed_dictionaries(
        {"expname": names, "exptype": exptypes}, optional={"extra": json_values}
    )
    product_names = st.sampled_from(
        ["jw01_nrcb1", "mosaic", "../../x", "a/b", "", ".hidden", "..", "a\\b", "x" * 300]
    ) | st.text(max_size=12)
    product = st.fixed_dictionaries(
        {"name": product_names, "members": st.lists(member | json_values, max_size=4)},
    )
    asn = st.fixed_dictionaries(
        {"products": st.lists(product | json_values, max_size=3) | json_values},
        optional={
            "asn_type": st.sampled_from(["image2", "image3", "None", "user_built", "spec2"])
            | json_values,
            "asn_rule": st.sampled_from(["Asn_Lv2Image", "Asn_Lv3Image"]) | json_values,
            "asn_pool": json_values, "asn_id": json_values, "program": json_values,
            "version_id": json_values, "code_version": json_values,
        },
    )
    return asn | json_values


def plausible_associations(sim, cal_files):
    """Mostly well-formed associations with one or two things wrong (or nothing)."""
    rate = [p.name for p in sim.rate_files]
    cal = [p.name for p in cal_files]
    tricky = ["missing_rate.fits", f"../{rate[0]}", f"sub/{rate[0]}", f"./{rate[1]}",
              "/etc/passwd", "empty_rate.fits", f"sub/../{rate[2]}"]
    expnames = st.sampled_from(rate * 4 + cal * 2 + tricky)
    member = st.fixed_dictionaries({
        "expname": expnames,
        "exptype": st.sampled_from(["science"] * 6 + ["background", "psf", ""]),
    })
    product = st.fixed_dictionaries({
        "name": st.sampled_from(["jw01_nrcb1", "jw02_nrcb1", "mosaic", "mosaic", "../x", "a/b",
                                 "", "jw01_nrcb1"]),
        "members": st.lists(member, min_size=1, max_size=3),
    })
    return st.fixed_dictionaries({
        "asn_type": st.sampled_from(["image2", "image3", "None", "user_built", "spec2"]),
        "asn_rule": st.sampled_from(["Asn_Lv2Image", "Asn_Lv3Image", "DMSLevel2bBase"]),
        "asn_pool": st.sampled_from(["none", "pool"]),
        "asn_id": st.sampled_from(["o001", "c1000"]),
        "products": st.lists(product, min_size=1, max_size=3),
    }, optional={"program": st.sampled_from(["01234", 1234, None])})


def _inside(path: Path, root: Path) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(root.resolve())
        return True
    except ValueError:
        return False


def test_random_associations_never_crash(sim, cal_files, asn_dir):
    """Random and plausible-but-perturbed associations: accepted (then nothing outside the
    directory, no separator in product names) or an InputError; also what image2/image3
    check before running."""
    from jwstrun.asn import check_association, load_association
    from jwstrun.runner._stage_inputs import load_stage_association
    from jwstrun.stages import STAGES

    stage_of_level = {s.asn_level: s for s in STAGES.values()}

    seen = {"accepted": 0, "refused": 0}

    @SETTINGS
    @given(data=associations(member_names(sim, cal_files)) | plausible_associations(sim, cal_files),
           level=st.sampled_from([2, 3]))
    def run(data, level):
        path = asn_dir / "random_asn.json"
        path.write_text(json.dumps(data))
        try:
            found = load_association(path)
        except JwstrunError as exc:
            assert str(exc).startswith(str(path)), exc
            seen["refused"] += 1
            return
        seen["accepted"] += 1
        for product in found.products:
            assert product.name and not {"/", "\\"} & set(product.name) and ".." not in product.name
            for member in product.members:
                assert _inside(member.path, asn_dir), member.path
        try:
            check_association(path)
            load_stage_association(path, stage_of_level[level])  # what image2 / image3 do
        except JwstrunError:
            pass

    run()
    print(seen)
    assert seen["refused"] and seen["accepted"]


@SETTINGS
@given(text=st.text(alphabet='{}[]",:0123456789.eE-+ \n\tnulltruefalse\\"ab/', max_size=120)
       | st.binary(max_size=120).map(lambda b: b.decode("latin-1")))
def test_random_json_text_never_crashes(text, tmp_path_factory):
    """Random JSON-like text and bytes as an association file."""
    from jwstrun.asn import load_association

    path = tmp_path_factory.getbasetemp() / "text_asn.json"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        load_association(path)
    except JwstrunError:
        pass


# ----------------------------------------------------------------------------- profiles
STEP_NAMES = ["resample", "flat_field", "assign_wcs", "photom", "bkg_subtract", "tweakreg",
              "skymatch", "outlier_detection", "source_catalog", "assign_mtwcs"]
PARAM_NAMES = ["skip", "pixfrac", "kernel", "snr_threshold", "kron_params", "brightest",
               "save_results", "suffix", "output_file", "in_memory", "save_bsub", "maximum_cores",
               "class", "name", "config_file", "pre_hooks", "post_hooks", "output_dir",
               "override_flat", "input_dir", "search_output_file"]
REFUSED = {"class", "name", "config_file", "pre_hooks", "post_hooks", "output_dir"}

scalars = (st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True)
           | st.text(max_size=10) | st.sampled_from(["1.0", "4.0 3.0", "global+match", "none"]))
values = scalars | st.lists(scalars, max_size=3) | st.dictionaries(st.text(max_size=5), scalars,
                                                                    max_size=2)
keys = lambda names: st.sampled_from(names) | st.text(max_size=10)  # noqa: E731
steps = st.dictionaries(keys(STEP_NAMES), st.dictionaries(keys(PARAM_NAMES), values, max_size=4)
                        | values, max_size=3)
section = st.dictionaries(keys(PARAM_NAMES + ["steps"]), values, max_size=3).flatmap(
    lambda d: st.just(d) | steps.map(lambda s: dict(d, steps=s))
)
plausible_sections = st.fixed_dictionaries({}, optional={
    "steps": st.dictionaries(st.sampled_from(STEP_NAMES), st.dictionaries(
        st.sampled_from(PARAM_NAMES), scalars, max_size=2), max_size=2),
    "in_memory": st.booleans(), "save_bsub": st.booleans()})
profile_docs = st.fixed_dictionaries(
    {}, optional={"image2": plausible_sections, "image3": plausible_sections,
                  "description": st.text(max_size=20)},
) | st.fixed_dictionaries(
    {}, optional={"image2": section | values, "image3": section | values,
                  "description": values, "why": st.dictionaries(st.text(max_size=30), values,
                                                                 max_size=2)},
) | st.dictionaries(st.text(max_size=8), values, max_size=2) | values


def _no_refused_keys(obj) -> bool:
    if isinstance(obj, dict):
        return not (REFUSED & set(obj)) and all(_no_refused_keys(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_no_refused_keys(v) for v in obj)
    return True


@pytest.fixture(scope="module")
def profile_dir(tmp_path_factory):
    from jwstrun.profiles import pipeline_spec

    pipeline_spec("image2"), pipeline_spec("image3")  # the spec cache, once
    return tmp_path_factory.mktemp("hyp_profiles")


def test_random_profiles_never_crash(profile_dir):
    """Random profile documents: accepted (then no refused key reaches Pipeline.call) or
    a ConfigError."""
    from jwstrun.profiles import build_call_parameters, load_profile

    seen = {"accepted": 0, "refused": 0}

    @SETTINGS
    @given(doc=profile_docs)
    def run(doc):
        path = profile_dir / "random.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True))
        try:
            load_profile(path)
        except JwstrunError as exc:
            assert str(path) in str(exc), exc
            seen["refused"] += 1
            return
        seen["accepted"] += 1
        for pipeline in ("image2", "image3"):
            kwargs = build_call_parameters(pipeline, [str(path)])
            assert _no_refused_keys(kwargs), kwargs

    run()
    print(seen)
    assert seen["refused"] and seen["accepted"]


YAML_ALPHABET = "ab: -[]{}&*!<>|#'\"\n\t,?%@`\\01.~=image2steps"


def test_random_yaml_text_never_crashes(profile_dir):
    """Random YAML-ish text with anchors, aliases, tags, merge keys, directives."""
    from jwstrun.profiles import load_profile

    sentinel = profile_dir / "PWNED"

    @SETTINGS
    @given(text=st.text(alphabet=YAML_ALPHABET, max_size=150)
           | st.sampled_from([
               f"image2: !!python/object/apply:os.system ['touch {sentinel}']",
               "a: &a [1]\nb: &b [*a, *a]\nc: [*b, *b]",
               "!!binary aGVsbG8=", "image2: !!set {a, b}", "x: 2001-12-14", "? [a]\n: b",
               "image2:\n  <<: {skip: true}", "%YAML 1.1\n---\nimage2: {}", "--- a\n--- b",
           ]))
    def run(text):
        path = profile_dir / "text.yaml"
        path.write_text(text)
        try:
            load_profile(path)
        except JwstrunError:
            pass

    run()
    assert not sentinel.exists()


@SETTINGS
@given(items=st.lists(st.text(max_size=40) | st.builds(
    lambda k, v: f"{k}={v}",
    st.sampled_from(["steps.resample.pixfrac", "steps.x.y", "class", "steps.resample.class",
                     "image3.steps.tweakreg.brightest", "in_memory", "steps..skip", "=",
                     "steps.resample.output_dir", "image2.", "steps.resample"]),
    st.text(max_size=20)), max_size=3), pipeline=st.sampled_from(["image2", "image3"]))
def test_random_set_options_never_crash(items, pipeline):
    """Random --set strings for image2 and image3."""
    from jwstrun.profiles import build_call_parameters

    try:
        kwargs = build_call_parameters(pipeline, [], items)
    except JwstrunError:
        return
    assert _no_refused_keys(kwargs)


def test_cli_refuses_random_association_without_traceback(asn_dir, tmp_path):
    """One end-to-end sample through the real CLI (the library cases above cover the space)."""
    from click.testing import CliRunner

    from jwstrun.cli import cli

    path = asn_dir / "cli_asn.json"
    path.write_text(json.dumps({"asn_type": "image2", "products": [
        {"name": "p", "members": [{"expname": "/etc/passwd", "exptype": "science"}]},
        {"name": 7, "members": None}]}))
    result = CliRunner().invoke(cli, ["image2", str(path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and result.output.startswith("Error: ")
    assert "Traceback" not in result.output
    shutil.rmtree(tmp_path / "o", ignore_errors=True)
