"""Bad input through the real CLI: a clear message naming the file, exit 1, no traceback,
nothing written (OUTDIR not even created) and every input byte-identical afterwards."""

from __future__ import annotations

import copy
import gzip
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from jwstrun.cli import cli

from ._helpers import assert_no_traceback, jwstrun_command, sha256, tree_digest


# ----------------------------------------------------------------------------- builders
def _cut(source: Path, dest: Path, size: int) -> Path:
    dest.write_bytes(source.read_bytes()[:size])
    return dest


def _without(source: Path, dest: Path, extname: str) -> Path:
    from astropy.io import fits

    with fits.open(source) as hdul:
        fits.HDUList([h.copy() for h in hdul if h.name != extname]).writeto(dest)
    return dest


@pytest.fixture(scope="module")
def bad(sim, cal_files, tmp_path_factory):
    """Broken exposures and associations next to copies of good ones."""
    root = tmp_path_factory.mktemp("bad")
    rate = sim.rate_files[0]
    data = rate.read_bytes()
    files = {}

    def add(key, path):
        files[key] = path
        return path

    add("empty", root / "jw01_nrcb1_rate.fits").write_bytes(b"")
    add("text", root / "jw02_nrcb1_rate.fits").write_text("SIMPLE? no, just some text\n")
    add("gzip", root / "jw03_nrcb1_rate.fits").write_bytes(gzip.compress(data))
    add("gzip_named", root / "jw04_nrcb1_rate.fits.gz").write_bytes(gzip.compress(data))
    # truncated: inside the primary header, at its end (no END card), after the
    # primary HDU, inside SCI data, at the ERR header, without ASDF, inside ASDF
    for cut in (1000, 2880, 8640, 14400, 115200, len(data) - 5760, len(data) - 2880):
        add(f"cut{cut}", _cut(rate, root / f"jw1{cut}_nrcb1_rate.fits", cut))
    add("nosci", _without(rate, root / "jw05_nrcb1_rate.fits", "SCI"))
    add("noasdf", _without(rate, root / "jw06_nrcb1_rate.fits", "ASDF"))
    # associations beside real members
    for good in sim.rate_files:
        shutil.copy(good, root / good.name)
    for cal in cal_files:
        shutil.copy(cal, root / cal.name)
    members = [{"expname": p.name, "exptype": "science"} for p in sim.rate_files]
    base = {"asn_type": "image2", "asn_rule": "Asn_Lv2Image", "asn_id": "o001",
            "asn_pool": "none", "program": "01234",
            "products": [{"name": p.name.removesuffix("_rate.fits"), "members": [m]}
                         for p, m in zip(sim.rate_files, members, strict=True)]}
    l3 = {"asn_type": "image3", "asn_rule": "Asn_Lv3Image", "asn_id": "o001",
          "asn_pool": "none", "program": "01234",
          "products": [{"name": "mosaic", "members": [{"expname": p.name, "exptype": "science"}
                                                      for p in cal_files]}]}

    def asn(key, content):
        path = add(key, root / f"{key}_asn.json")
        path.write_text(content if isinstance(content, str) else json.dumps(content))

    asn("good_l2", base)
    asn("good_l3", l3)
    asn("malformed", json.dumps(base)[:-40])
    asn("deep", "[" * 100_000 + "]" * 100_000)
    asn("not_object", "[1, 2, 3]")
    d = copy.deepcopy(base)
    d["products"][0]["members"][0]["expname"] = "jw99_nrcb1_rate.fits"
    asn("missing_member", d)
    d = copy.deepcopy(base)
    d["asn_type"] = "spec2"
    asn("wrong_type", d)
    d = copy.deepcopy(base)
    d["products"][0]["members"].append(dict(d["products"][0]["members"][0]))
    asn("dup_member", d)
    d = copy.deepcopy(base)
    d["products"][1]["members"] = copy.deepcopy(d["products"][0]["members"])
    asn("dup_science", d)
    d = copy.deepcopy(base)
    d["products"][0]["members"][0]["expname"] = f"../{root.name}/{sim.rate_files[0].name}"
    asn("dotdot_member", d)
    d = copy.deepcopy(base)
    d["products"][0]["members"][0]["expname"] = str(sim.rate_files[0])  # absolute, elsewhere
    asn("absolute_member", d)
    d = copy.deepcopy(base)
    d["products"][0]["name"] = "../../x"
    asn("dotdot_product", d)
    d = copy.deepcopy(base)
    d["products"][0]["name"] = "sub/x"
    asn("slash_product", d)
    d = copy.deepcopy(l3)
    d["products"].append(dict(d["products"][0], name="other"))
    asn("two_l3_products", d)
    d = copy.deepcopy(base)
    d["products"][0]["members"][0]["expname"] = files["cut14400"].name
    asn("truncated_member", d)
    return {"root": root, "files": files, "before": tree_digest(root)}


def _refused(args, tmp_path, must_contain, *, exit_code=1, warnings=0):
    """Run the CLI, check the refusal, return its one-line message (after the expected
    number of WARNING lines on stderr)."""
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [*args, "-o", str(out)])
    assert result.exit_code == exit_code, result.output
    assert_no_traceback(result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert all(line.startswith("WARNING ") for line in lines[:warnings]), lines[:warnings]
    text = "\n".join(lines[warnings:])
    assert text.startswith("Error: "), text
    for fragment in must_contain:
        assert fragment in text, text
    assert not out.exists(), "OUTDIR was created for a refused run"
    return text


# ----------------------------------------------------------------------------- exposures
EXPOSURE_CASES = {
    "empty": "file is empty (0 bytes). Re-download or re-create it.",
    "text": "is not a FITS file (no SIMPLE card at the start)",
    "gzip": "is gzip-compressed. The JWST pipeline needs uncompressed FITS",
    "gzip_named": "is gzip-compressed",
    "cut1000": "is truncated (1000 bytes is not a whole number of 2880-byte FITS blocks)",
    "cut2880": "cannot read the FITS header",
    "cut8640": "has no SCI or ASDF extension (it has PRIMARY)",
    "cut14400": "is truncated: 14400 bytes, but its headers describe 115200 (data of SCI cut off)",
    "cut115200": "has no ASDF extension (it has PRIMARY, SCI)",
    "nosci": "has no SCI extension (it has PRIMARY, ERR, DQ, VAR_POISSON, VAR_RNOISE, ASDF)",
    "noasdf": "has no ASDF extension",
}


@pytest.mark.parametrize("case", sorted(EXPOSURE_CASES))
def test_broken_exposure_refused_before_anything_runs(bad, case, tmp_path):
    """Empty, text, gzip (.fits and .fits.gz), truncated at 1000/2880/8640/14400/115200 bytes,
    without SCI, without ASDF: one clear line naming the file, exit 1, nothing written."""
    path = bad["files"][case]
    before = sha256(path)
    text = _refused(["image2", str(path)], tmp_path, [str(path), EXPOSURE_CASES[case]])
    assert text.count("\n") == 0, "one clear line"
    assert sha256(path) == before


def test_exposure_cut_inside_the_last_extensions(bad, sim, tmp_path):
    """Cut before the ASDF extension, and inside it (on block boundaries)."""
    size = sim.rate_files[0].stat().st_size
    for cut, what in ((size - 5760, "has no ASDF extension"), (size - 2880, "(data of ASDF cut off)")):
        path = bad["files"][f"cut{cut}"]
        _refused(["image2", str(path)], tmp_path, [str(path), what])


def test_one_bad_exposure_among_good_ones_stops_the_run(bad, sim, tmp_path):
    """Three good exposures and a truncated one: refused before anything runs."""
    path = bad["files"]["cut14400"]
    _refused(["image2", *map(str, sim.rate_files), str(path)], tmp_path, [str(path)])


def test_wrong_product_type_for_the_command(bad, sim, cal_files, tmp_path):
    """_cal to image2, _rate and _i2d to image3, Level-2 association to image3 and
    Level-3 to image2, an ECSV to image2."""
    cal = cal_files[0]
    assert _refused(["image2", str(cal)], tmp_path, []) == (
        f"Error: {cal}: is a _cal product, already processed by calwebb_image2. Give "
        "_rate/_rateints files to image2, or give this file to 'jwstrun image3'."
    )
    rate = sim.rate_files[0]
    assert _refused(["image3", str(rate)], tmp_path, []) == (
        f"Error: {rate}: is a _rate exposure, not yet calibrated. Run 'jwstrun image2' on it "
        "first and give the resulting _cal files to image3."
    )
    i2d = next(cal.parent.glob("*_i2d.fits"))
    _refused(["image3", str(i2d)], tmp_path, [str(i2d), "is not a _cal/_calints/_crf product"])
    l2, l3 = bad["files"]["good_l2"], bad["files"]["good_l3"]
    _refused(["image3", str(l2)], tmp_path, [str(l2), "is a Level-2 (image2) association"])
    _refused(["image2", str(l3)], tmp_path, [str(l3), "is a Level-3 (image3) association"])
    truth = sim.outdir / "truth_sources.ecsv"
    _refused(["image2", str(truth)], tmp_path, [str(truth), "is not a _rate/_rateints exposure"])


# ----------------------------------------------------------------------------- mixed folders
TAKES = "takes NRC_IMAGE, MIR_IMAGE, NIS_IMAGE, FGS_IMAGE exposures"


def _header_only(path: Path, **cards) -> Path:
    """A JWST-like primary header without data: enough for what is refused before reading SCI."""
    from astropy.io import fits

    header = fits.Header()
    header["DATAMODL"] = "ImageModel"
    header["INSTRUME"] = "NIRCAM"
    header["EXP_TYPE"] = "NRC_IMAGE"
    header.update(cards)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(header=header).writeto(path)
    return path


def test_nothing_left_to_reduce_and_misnamed_files(tmp_path):
    """What image2, image3 and asn leave out of a MAST folder is refused when it is all there
    is: a target acquisition alone, two non-imaging exposures in a directory, an _uncal alone
    (what to run on it); a file whose name contradicts its DATAMODL is always refused."""
    mast = tmp_path / "mast"
    ta = _header_only(mast / "jw01234001001_01101_00001_nrcb1_rate.fits", EXP_TYPE="NRC_TACQ")
    _header_only(mast / "jw01234002001_02101_00001_nrcblong_rate.fits", EXP_TYPE="NRC_WFSS")
    uncal = _header_only(tmp_path / "jw01234001001_02101_00001_nrcb1_uncal.fits",
                         DATAMODL="Level1bModel")
    misnamed = _header_only(tmp_path / "jw01234001001_02101_00002_nrcb1_uncal.fits")
    before = tree_digest(tmp_path)
    assert _refused(["image2", str(ta)], tmp_path, []) == (
        f"Error: {ta}: EXP_TYPE NRC_TACQ is not direct imaging; jwstrun image2 {TAKES}. Give "
        "it imaging exposures (from a folder of mixed exposures it takes those and leaves the "
        "others out)."
    )
    assert _refused(["asn", str(ta)], tmp_path, []) == (
        f"Error: {ta}: EXP_TYPE NRC_TACQ is not direct imaging; jwstrun asn {TAKES}. Give it "
        "imaging exposures (from a folder of mixed exposures it takes those and leaves the "
        "others out)."
    )
    assert _refused(["image2", str(mast)], tmp_path, []) == (
        f"Error: none of the 2 files is one jwstrun image2 takes: 2 not direct imaging (1 "
        f"NRC_TACQ, 1 NRC_WFSS; jwstrun image2 {TAKES})."
    )
    assert _refused(["image2", str(uncal)], tmp_path, []) == (
        f"Error: {uncal}: is an _uncal file (raw ramps, Stage 0): run 'jwstrun detector1 "
        f"{uncal} -o OUTDIR' first, then give the _rate file it writes to jwstrun image2 "
        "('jwstrun image2 --from uncal' runs both)."
    )
    assert _refused(["image3", str(uncal)], tmp_path, []) == (
        f"Error: {uncal}: is an _uncal file (raw ramps, Stage 0): run 'jwstrun detector1 "
        f"{uncal} -o OUTDIR' first, then run 'jwstrun image2' on the _rate file it writes and "
        "give the _cal file to jwstrun image3."
    )
    for command in ("image2", "asn"):
        assert _refused([command, str(misnamed), str(uncal)], tmp_path, []) == (
            f"Error: {misnamed}: is named _uncal, but its DATAMODL is ImageModel (an _uncal "
            "file is a Level1bModel or RampModel); its header says it is a _rate product: "
            "rename it to end in _rate.fits, or re-create it."
        )
    assert tree_digest(tmp_path) == before


# ----------------------------------------------------------------------------- associations
ASN_CASES = {
    "malformed": ("image2", "is not valid JSON (line 1, column"),
    "deep": ("image2", "is not an association: its JSON is nested too deeply"),
    "not_object": ("image2", "top level: expected a JSON object with 'products'"),
    "missing_member": ("image2", "1 member file(s) not found next to the association: "
                                 "jw99_nrcb1_rate.fits"),
    "wrong_type": ("image2", "asn_type is 'spec2'; jwstrun runs image associations"),
    "dup_member": ("image2", "lists jw01234001001_02101_00001_nrcb1_rate.fits more than once"),
    "dup_science": ("image2", "is a science member of both"),
    "dotdot_member": ("image2", "lies outside the association's directory"),
    "absolute_member": ("image2", "lies outside the association's directory"),
    "dotdot_product": ("image2", "product name '../../x' contains a path separator, '..'"),
    "slash_product": ("image2", "product name 'sub/x' contains a path separator"),
    "two_l3_products": ("image3", "has 2 products, but calwebb_image3 processes only the first"),
    "truncated_member": ("image2", "is truncated: 14400 bytes"),
}


@pytest.mark.parametrize("case", sorted(ASN_CASES))
def test_bad_association_refused(bad, case, tmp_path):
    """Malformed, 100,000-deep, not an object, missing member, asn_type spec2, duplicate
    members, one science exposure in two products, '..' and absolute members, product
    names '../../x' and 'sub/x', two Level-3 products, a truncated member."""
    command, fragment = ASN_CASES[case]
    path = bad["files"][case]
    before = sha256(path)
    _refused([command, str(path)], tmp_path, [fragment])
    assert sha256(path) == before


def test_asn_check_reports_the_same_problems(bad):
    """'jwstrun asn --check' gives the same messages."""
    for case in ("malformed", "deep", "dotdot_product", "dup_member"):
        result = CliRunner().invoke(cli, ["asn", "--check", str(bad["files"][case])])
        assert result.exit_code == 1, (case, result.output)
        assert_no_traceback(result.output)
        assert ASN_CASES[case][1] in result.output


# ----------------------------------------------------------------------------- profiles
PROFILE_CASES = {
    "unknown_keys": (
        "image2:\n  steps:\n    flat_feild:\n      skip: true\n  bogus: 1\ncolour: blue\n",
        ["3 problems", "unknown step 'flat_feild' in image2 (calwebb_image2); did you mean "
         "'flat_field'?", "unknown parameter 'bogus'", "unknown top-level key 'colour'"],
    ),
    "wrong_types": (
        "image2:\n  steps:\n    resample:\n      pixfrac: lots\n      skip: 3\n",
        [":4: image2.steps.resample.pixfrac: 'lots' is not a number",
         ":5: image2.steps.resample.skip: 3 is not true or false"],
    ),
    "alias_bomb": (
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n"
                  for p, n in zip("abcdefgh", "bcdefghi"))
        + "image2: *i\n",
        ["expands to more than 10000 YAML nodes"],
    ),
    "python_tag": (
        "image2: !!python/object/apply:os.system ['touch {sentinel}']\n",
        ["YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed"],
    ),
    "python_name": (
        "image2:\n  steps:\n    resample: !!python/name:os.system\n",
        ["is not allowed"],
    ),
    "custom_tag": ("image2: !include other.yaml\n", ["YAML tag '!include' is not allowed"]),
    "merge_key": (
        "base: &b {skip: true}\nimage2:\n  steps:\n    resample:\n      <<: *b\n",
        ["YAML merge keys ('<<') are not supported"],
    ),
    "deep": ("image2: " + "[" * 3000 + "]" * 3000 + "\n", ["the YAML is nested too deeply"]),
    "class_key": (
        "image2:\n  class: os.system\n  steps:\n    resample:\n      class: x.Y\n",
        ["'class' is refused: it names a Python class for stpipe to import"],
    ),
    "hooks": (
        "image2:\n  steps:\n    flat_field:\n      post_hooks: [os.system]\n",
        ["'post_hooks' is refused"],
    ),
    "output_dir": (
        "image2:\n  steps:\n    resample:\n      output_dir: /tmp\n",
        ["'output_dir' is refused: jwstrun writes every product into -o OUTDIR"],
    ),
    "not_mapping": ("- a\n- b\n", ["the profile must be a mapping"]),
    "syntax": ("image2:\n  steps: [\n", ["not valid YAML"]),
}


@pytest.fixture(scope="module")
def profiles_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("profiles")


@pytest.mark.parametrize("case", sorted(PROFILE_CASES))
def test_bad_profile_refused_before_anything_runs(case, profiles_dir, sim, tmp_path):
    """Unknown keys, wrong types, alias bomb, !!python tags (a sentinel proves nothing ran),
    custom tags, merge keys, 3,000-deep nesting, class/hooks/output_dir, not a mapping,
    bad syntax: via --profile and 'profiles check', every problem with its line."""
    text, fragments = PROFILE_CASES[case]
    sentinel = tmp_path / "PWNED"
    path = profiles_dir / f"{case}.yaml"
    path.write_text(text.replace("{sentinel}", str(sentinel)))
    before = sha256(path)
    _refused(["image2", str(sim.rate_files[0]), "--profile", str(path)], tmp_path,
             [f"{path.name}", *fragments])
    check = CliRunner().invoke(cli, ["profiles", "check", str(path)])
    assert check.exit_code == 1 and all(f in check.output for f in fragments), check.output
    assert not sentinel.exists(), "a YAML tag ran code"
    assert sha256(path) == before


def test_binary_and_huge_profiles(profiles_dir, sim, tmp_path):
    """A binary profile and one over 1 MB."""
    binary = profiles_dir / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    _refused(["image2", str(sim.rate_files[0]), "--profile", str(binary)], tmp_path,
             ["not a UTF-8 text file"])
    huge = profiles_dir / "huge.yaml"
    huge.write_text("description: " + "x" * 1_100_000 + "\n")
    _refused(["image2", str(sim.rate_files[0]), "--profile", str(huge)], tmp_path,
             ["is too large for a profile"])


def test_bad_set_values(sim, tmp_path):
    """--set with a wrong type, an unknown step, output_dir."""
    rate = str(sim.rate_files[0])
    _refused(["image2", rate, "--set", "steps.resample.pixfrac=lots"], tmp_path,
             ["'lots' is not a number"])
    _refused(["image2", rate, "--set", "steps.nostep.x=1"], tmp_path, ["unknown step 'nostep'"])
    _refused(["image2", rate, "--set", "steps.resample.output_dir=/tmp"], tmp_path,
             ["'output_dir' is refused"])
    # strun's --save_results=true as a pipeline parameter: the runner always sets it
    assert _refused(["image2", rate, "--set", "save_results=true"], tmp_path, []) == (
        "Error: --set save_results=true: save_results: true is refused at pipeline level: "
        "jwstrun always saves the pipeline's products, into -o OUTDIR "
        "(steps.STEP.save_results=true saves one step's products as well)")


# ----------------------------------------------------------------------------- CRDS set-up
def test_image2_says_what_to_set_for_crds(sim, tmp_path):
    """First contact with CRDS: nothing set, an empty --crds-path, an empty cache and a
    server that does not answer (a compute node).  Each time one line saying to prefetch
    first (with the variables to set) or to use a filled cache; OUTDIR not created."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    empty = tmp_path / "crds_cache"
    empty.mkdir()
    filled = "use a filled cache: --crds-env FILE, --crds-path DIR or export CRDS_PATH=DIR."
    no_crds = {key: None for key in [*os.environ, "CRDS_PATH", "CRDS_SERVER_URL"]
               if key.startswith("CRDS_")}
    rate = str(sim.rate_files[0])
    cases = [
        ([], {}, "Error: CRDS is not configured: CRDS_PATH is not set (crds would fall back to "
         "/grp/crds/cache, an STScI-internal path) and CRDS_SERVER_URL is not set. Either fetch "
         "the references first: export CRDS_SERVER_URL=https://jwst-crds.stsci.edu "
         "CRDS_PATH=$HOME/crds_cache (any directory; crds creates it), then `jwstrun refs "
         f"prefetch INPUTS`; or {filled}"),
        (["--crds-path", str(empty)], {}, f"Error: The CRDS cache {empty.resolve()} is empty and crds is "
         "offline (no CRDS server: --offline, --crds-path without CRDS_SERVER_URL, or a "
         "serverless CRDS_SERVER_URL), so nothing can be fetched into it. Either fill it first: "
         "export CRDS_SERVER_URL=https://jwst-crds.stsci.edu, then `jwstrun refs prefetch "
         f"INPUTS` with the same CRDS_PATH on a node with network; or {filled}"),
        ([], {"CRDS_PATH": str(empty), "CRDS_SERVER_URL": url}, f"Error: The CRDS cache {empty} "
         f"is empty and the CRDS server {url} does not answer ({url[7:]}: Connection refused). "
         "Either fill it first where the server answers (a login node; or check the URL, a "
         "proxy or a VPN here): `jwstrun refs prefetch INPUTS` with the same CRDS_PATH, on "
         f"storage this node sees; or {filled}"),
    ]
    for options, env, expected in cases:
        out = tmp_path / "out"
        result = CliRunner().invoke(cli, ["image2", rate, "-o", str(out), *options],
                                    env={**no_crds, **env})
        assert result.exit_code == 1, result.output
        assert_no_traceback(result.output)
        errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
        assert errors == [expected]
        assert not out.exists() and list(empty.iterdir()) == []


def test_set_in_strun_spelling(sim, tmp_path):
    """--set --steps.X.Y=V (strun's spelling given to --set): drop the leading --."""
    assert _refused(["image2", str(sim.rate_files[0]), "--set",
                     "--steps.resample.pixfrac=0.5"], tmp_path, []) == (
        "Error: --set --steps.resample.pixfrac=0.5: drop the leading --, as in "
        "--set steps.resample.pixfrac=0.5")


# ----------------------------------------------------------------------------- image3 limits
def test_image3_refusal_names_the_limit_the_user_set(sim, cal_files, tmp_path):
    """The mosaic preflight names what the user gave: --max-memory 1MB refuses the mosaic by
    that budget (--max-mosaic-pixels was not given), --max-mosaic-pixels by itself, and a
    budget no memory mode fits by --max-memory. Planning only: no step runs."""
    import os

    from jwstrun import mosaic
    from jwstrun.asn import make_associations

    caldir = tmp_path / "cal"
    caldir.mkdir()
    for cal in cal_files:
        os.link(cal, caldir / cal.name)
    members = sorted(caldir.glob("*_cal.fits"))
    make_associations(members, caldir / "l3_asn.json", level=3, product_name="habits")
    estimate = mosaic.estimate_association("habits", members, {})
    height, width = estimate.shape
    pixels = width * height
    mosaic_text = (f"Error: habits: the mosaic would be {width} x {height} pixels ({pixels:.3g} "
                   f"pixels, {mosaic.format_bytes(4.0 * pixels)} per float32 plane), beyond the "
                   "limit of ")
    one_field = ("The footprints form one field, so the mosaic is genuinely this large: split "
                 "the association, choose a coarser grid (--set "
                 "steps.resample.pixel_scale_ratio=2), or ")
    expected = {
        ("--max-memory", "1MB"): (
            f"{mosaic_text}9.62e+03 pixels, the largest mosaic whose arrays fit the memory "
            f"budget (--max-memory 1 MB). {one_field}raise the memory budget (--max-memory); "
            "nothing was run."),
        ("--max-mosaic-pixels", "1000"): (
            f"{mosaic_text}1e+03 pixels (--max-mosaic-pixels). {one_field}raise "
            "--max-mosaic-pixels; nothing was run."),
        ("--max-mosaic-pixels", "1e9", "--max-memory", "1MB"): (
            "Error: habits: does not fit in memory even in the pipeline's on-disk mode: "
            f"estimated peak {mosaic.format_bytes(estimate.in_memory_bytes)} in memory, "
            f"{mosaic.format_bytes(estimate.on_disk_bytes)} on disk; share of the budget 1 MB; "
            f"the budget is --max-memory 1 MB. The mosaic is {width} x {height} pixels. Raise "
            # one association runs at a time: no advice to lower -j
            "the memory budget (--max-memory), split the association, or make "
            "the mosaic smaller (--set steps.resample.pixel_scale_ratio=2); resample's "
            "enable_ctx=false, enable_err=false and report_var=false also save memory but drop "
            "products' arrays. Nothing was run."),
    }
    # the case through the command line (each run starts a worker: one is enough) ...
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "image3", str(caldir / "l3_asn.json"), "-o", str(out), "--crds-env", str(sim.env_file),
        "--no-progress", "--no-report", "--max-memory", "1MB"])
    assert result.exit_code == 1, result.output
    assert_no_traceback(result.output)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == [expected["--max-memory", "1MB"]]
    assert not list(out.glob("*.fits")) and not list(out.glob("logs/*.log"))
    # ... and every case through the planner the command calls, with its options' values
    from jwstrun.mosaic import parse_size
    from jwstrun.runner.plan import plan_image3, plan_memory

    planned = plan_image3([caldir / "l3_asn.json"], caldir)
    for options, message in expected.items():
        given = dict(zip(options[::2], options[1::2]))
        plan_memory(planned, {}, None, "local", max_memory=parse_size(given["--max-memory"])
                    if "--max-memory" in given else None,
                    max_mosaic_pixels=int(float(given.get("--max-mosaic-pixels", 0))) or None)
        (item,) = planned
        assert item.memory is None and f"Error: {item.refused}" == message, options


# ----------------------------------------------------------------------------- subprocess
def test_real_process_exit_codes_and_streams(bad, sim, tmp_path):
    """The console script itself: exit 1 for bad input, 2 for usage errors, stderr only."""
    out = tmp_path / "out"
    for args, code, fragment in (
        (["image2", bad["files"]["cut14400"], "-o", out], 1, "is truncated"),
        (["image2", bad["files"]["deep"], "-o", out], 1, "nested too deeply"),
        (["image2", sim.rate_files[0], "-o", out, "-j", "0"], 2, "Invalid value"),
        (["image2", sim.rate_files[0]], 2, "Missing option '-o'"),
    ):
        proc = subprocess.run(jwstrun_command(*args), capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == code, proc.stderr
        assert proc.stdout == ""
        assert fragment in proc.stderr
        assert_no_traceback(proc.stderr)
    assert not out.exists()


# ----------------------------------------------------------------------------- 10,000 names
def test_ten_thousand_names_with_one_missing(sim, tmp_path):
    """10,000 file names on the command line, one of them missing: refused in seconds."""
    names = [str(sim.rate_files[i % 3]) for i in range(10_000)]
    names[5_000] = str(tmp_path / "jw_gone_nrcb1_rate.fits")
    started = time.perf_counter()
    text = _refused(["image2", *names], tmp_path, ["jw_gone_nrcb1_rate.fits: file not found"])
    seconds = time.perf_counter() - started
    print(f"10,000 names, one missing: refused in {seconds:.2f} s")
    assert seconds < 10, text


@pytest.fixture(scope="module")
def ten_thousand(sim, tmp_path_factory):
    """10,000 distinct _rate files (hard links of one exposure) and a truncated 10,001st."""
    root = tmp_path_factory.mktemp("many")
    source = sim.rate_files[0]
    for i in range(10_000):
        (root / f"jw01234{i // 100 + 1:03d}001_02101_{i % 100 + 1:05d}_nrcb1_rate.fits"
         ).hardlink_to(source)
    _cut(source, root / "jw09999999001_02101_00001_nrcb1_rate.fits", 14400)
    return root


def test_ten_thousand_exposures_checked_before_anything_runs(ten_thousand, tmp_path):
    """Every header of 10,001 exposures is read and checked; the broken last one stops the
    run before OUTDIR exists (about 0.9 ms per exposure, see docs/reliability.md)."""
    bad_one = ten_thousand / "jw09999999001_02101_00001_nrcb1_rate.fits"
    started = time.perf_counter()
    # the 10,000 hard links are one file: each extra name is used once, with a warning
    _refused(["image2", str(ten_thousand / "*_rate.fits")], tmp_path, [str(bad_one),
                                                                       "is truncated"],
             warnings=9_999)
    seconds = time.perf_counter() - started
    print(f"10,001 exposures planned and checked in {seconds:.1f} s")
    assert seconds < 60


# ----------------------------------------------------------------------------- afterwards
def test_inputs_byte_identical_afterwards(bad, sim, sim_digest):
    """Runs last in this module: no refusal touched any input or the CRDS cache."""
    assert tree_digest(bad["root"]) == bad["before"]
    assert tree_digest(sim.outdir) == sim_digest
