"""Tests for jwstrun.asn and ``jwstrun asn``: build, show, check associations.

Exposures are small stdatamodels ImageModels with JWST metadata; the
associations are read back with jwst's own loaders (load_asn, LoadAsLevel2Asn,
ModelLibrary, Image3Pipeline's input loader) and compared with asn_from_list.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from jwstrun import asn as asn_lib
from jwstrun.cli import cli
from jwstrun.errors import InputError, OutputError
from jwstrun.products import read_exposure_info

DETECTOR_MODULE = {"NRCA1": ("A", "SHORT"), "NRCB1": ("B", "SHORT"), "NRCBLONG": ("B", "LONG")}


def make_exposure(
    directory,
    *,
    product="rate",
    instrument="NIRCAM",
    detector="NRCB1",
    filter="F200W",
    pupil="CLEAR",
    program=1234,
    observation=1,
    visit=1,
    exposure=1,
    target="NGC-1",
    subarray="FULL",
    exp_type=None,
    background=False,
    name=None,
):
    """Write a tiny JWST-like exposure (8x8 ImageModel) and return its path."""
    from stdatamodels.jwst import datamodels

    model = datamodels.ImageModel(np.ones((8, 8), dtype=np.float32))
    meta = model.meta
    meta.instrument.name = instrument
    meta.instrument.detector = detector
    if instrument == "NIRCAM":
        meta.instrument.module, meta.instrument.channel = DETECTOR_MODULE[detector]
        meta.instrument.pupil = pupil
    meta.instrument.filter = filter
    meta.exposure.type = exp_type or {"NIRCAM": "NRC_IMAGE", "MIRI": "MIR_IMAGE"}[instrument]
    meta.observation.program_number = f"{program:05d}"
    meta.observation.observation_number = f"{observation:03d}"
    meta.observation.visit_number = f"{visit:03d}"
    meta.observation.visit_group = "01"
    meta.observation.sequence_id = "1"
    meta.observation.activity_id = "01"
    meta.observation.exposure_number = f"{exposure:05d}"
    meta.observation.bkgdtarg = background
    meta.observation.date = "2024-04-01"
    meta.observation.time = "00:00:00"
    meta.target.proposer_name = target
    meta.subarray.name = subarray
    if product == "cal":
        meta.cal_step.photom = "COMPLETE"
    if name is None:
        name = (
            f"jw{program:05d}{observation:03d}{visit:03d}_01101_{exposure:05d}_"
            f"{detector.lower()}_{product}.fits"
        )
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    model.close()
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Rate and cal exposures: NIRCam F200W x3 (B1), F150W x2 (B1), F444W x2 (BLONG), MIRI x2, backgrounds."""
    root = tmp_path_factory.mktemp("asn_data")
    files = {"rate": [], "cal": [], "bkg": []}
    for product in ("rate", "cal"):
        d = root / product
        exp = 0
        for det, filt, n in (
            ("NRCB1", "F200W", 3),
            ("NRCB1", "F150W", 2),
            ("NRCBLONG", "F444W", 2),
        ):
            for _ in range(n):
                exp += 1
                files[product].append(
                    make_exposure(d, product=product, detector=det, filter=filt, exposure=exp)
                )
        for i in range(2):
            files[product].append(
                make_exposure(
                    d,
                    product=product,
                    instrument="MIRI",
                    detector="MIRIMAGE",
                    filter="F770W",
                    pupil=None,
                    observation=2,
                    exposure=i + 1,
                )
            )
    for det, filt, exp in (("NRCB1", "F200W", 1), ("NRCB1", "F200W", 2), ("NRCBLONG", "F444W", 3)):
        files["bkg"].append(
            make_exposure(
                root / "rate",
                detector=det,
                filter=filt,
                observation=3,
                exposure=exp,
                background=True,
            )
        )
    files["root"] = root
    return files


@pytest.fixture
def asn_log(caplog):
    """Capture jwstrun.asn warnings even after the CLI made the jwstrun logger non-propagating."""
    logger = logging.getLogger("jwstrun")
    logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.WARNING)
    yield caplog
    logger.removeHandler(caplog.handler)


def by_filter(paths, filt):
    return [p for p in paths if read_exposure_info(p).filter == filt]


def run_cli(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


def level2_registry():
    from jwst.associations import AssociationRegistry, libpath

    return AssociationRegistry(
        definition_files=[libpath() / "rules_level2b.py"], include_default=False
    )


# --------------------------------------------------------------------------- Level 2


def test_level2_one_product_per_exposure_bare_names(data, tmp_path):
    rate = data["rate"]
    out = rate[0].parent / "l2_test_asn.json"
    try:
        result = asn_lib.make_associations(rate, out)
        asn = json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
    assert result.level == 2
    assert asn["asn_type"] == "image2"
    assert asn["asn_rule"] == "Asn_Lv2Image"
    assert asn["program"] == "01234"
    assert len(asn["products"]) == len(rate)
    names = sorted(p.name for p in rate)
    assert [p["members"][0]["expname"] for p in asn["products"]] == names
    assert [p["name"] for p in asn["products"]] == [n.removesuffix("_rate.fits") for n in names]
    assert all(
        len(p["members"]) == 1 and p["members"][0]["exptype"] == "science" for p in asn["products"]
    )


def test_level2_loads_with_jwst_loaders(data):
    from jwst.associations import load_asn
    from jwst.associations.load_as_asn import LoadAsLevel2Asn

    rate = by_filter(data["rate"], "F200W")
    out = rate[0].parent / "l2_jwst_asn.json"
    try:
        asn_lib.make_associations(rate, out)
        with open(out) as handle:
            loaded = load_asn(handle, registry=level2_registry())  # validates, raises if not
        with open(out) as handle:
            loaded_default = load_asn(handle)
        # Image2Pipeline's own loader; it silently falls back to treating the path as
        # one exposure when the file does not load, so check it really read the JSON.
        image2_view = LoadAsLevel2Asn.load(str(out))
    finally:
        out.unlink(missing_ok=True)
    expected = [p.name.removesuffix("_rate.fits") for p in sorted(rate)]
    assert [p["name"] for p in loaded["products"]] == expected
    assert [p["name"] for p in loaded_default["products"]] == expected
    assert image2_view.filename == str(out)
    assert [p["name"] for p in image2_view["products"]] == expected
    assert image2_view["asn_pool"] == "none"


def test_level2_equivalent_to_asn_from_list(data):
    from jwst.associations import AssociationRegistry
    from jwst.associations.asn_from_list import asn_from_list
    from jwst.associations.lib.diff import compare_membership

    rate = data["rate"]
    ours = asn_lib.build_level2(rate, asn_dir=rate[0].parent)
    rule = AssociationRegistry(include_bases=True)["Asn_Lv2Image"]
    theirs = asn_from_list([p.name for p in rate], rule=rule, meta={"asn_type": "image2"})
    _, text = theirs.dump()
    theirs = json.loads(text)
    assert ours["asn_type"] == theirs["asn_type"] == "image2"
    assert ours["asn_rule"] == theirs["asn_rule"]
    compare_membership(ours, theirs, strict_expname=True)  # raises on any difference
    assert sorted(
        (p["name"], p["members"][0]["expname"], p["members"][0]["exptype"])
        for p in ours["products"]
    ) == sorted(
        (p["name"], p["members"][0]["expname"], p["members"][0]["exptype"])
        for p in theirs["products"]
    )


def test_level2_background_members_match_detector_and_filter(data):
    rate = by_filter(data["rate"], "F200W") + by_filter(data["rate"], "F444W")
    rate = [p for p in rate if not read_exposure_info(p).background_target]
    asn = asn_lib.build_level2(rate, data["bkg"], asn_dir=rate[0].parent)
    bkg_names = {p.name: read_exposure_info(p).filter for p in data["bkg"]}
    for product in asn["products"]:
        science = product["members"][0]
        filt = read_exposure_info(rate[0].parent / science["expname"]).filter
        backgrounds = [m["expname"] for m in product["members"] if m["exptype"] == "background"]
        expected = sorted(n for n, f in bkg_names.items() if f == filt)
        assert backgrounds == expected, product["name"]
    # background members are valid for jwst's loader
    from jwst.associations import load_asn

    loaded = load_asn(json.dumps(asn), registry=level2_registry())
    assert any(m["exptype"] == "background" for p in loaded["products"] for m in p["members"])


def test_level2_unmatched_backgrounds(data, asn_log):
    f150 = by_filter(data["rate"], "F150W")
    f444_bkg = by_filter(data["bkg"], "F444W")
    with pytest.raises(InputError) as err:
        asn_lib.build_level2(f150, f444_bkg, asn_dir=f150[0].parent)
    assert str(err.value).startswith(
        f"{f444_bkg[0]}: no background exposure matches any science exposure (this one is "
        "NIRCAM/NRCBLONG/F444W/CLEAR/FULL;"
    )
    # some unused: warned, the rest used
    f200 = by_filter(data["rate"], "F200W")
    asn = asn_lib.build_level2(f200, data["bkg"], asn_dir=f200[0].parent)
    assert all(len(p["members"]) == 3 for p in asn["products"])
    assert f"{f444_bkg[0]}: background exposure matches no science exposure" in asn_log.text
    assert "not used" in asn_log.text


def test_background_on_level3_is_refused(data, tmp_path):
    result = run_cli(
        "asn",
        *by_filter(data["cal"], "F200W"),
        "--background",
        data["bkg"][0],
        "-o",
        tmp_path / "x.json",
    )
    assert result.exit_code == 1
    assert result.output == (
        "Error: --background adds background members for calwebb_image2 (Level 2); these are "
        "Level-3 inputs. Leave --background out.\n"
    )
    assert not (tmp_path / "x.json").exists()


def test_background_targets_among_the_files_are_background_members(data, asn_log):
    # what an unquoted --background bkg/*.fits does: background files land among FILES;
    # they are backgrounds by their header (BKGDTARG=T), never products of their own
    f200_bkg = by_filter(data["bkg"], "F200W")
    science = [p for p in by_filter(data["rate"], "F200W") if p not in f200_bkg]
    asn = asn_lib.build_level2(science + f200_bkg, f200_bkg[:1], asn_dir=f200_bkg[0].parent)
    assert [p["members"][0]["expname"] for p in asn["products"]] == sorted(p.name for p in science)
    for product in asn["products"]:
        assert [(m["expname"], m["exptype"]) for m in product["members"][1:]] == [
            (p.name, "background") for p in sorted(f200_bkg)]
    assert not asn_log.records


def test_cli_finds_dedicated_backgrounds_without_b(data, tmp_path):
    """`jwstrun asn` on a directory of science and background exposures: the backgrounds
    (BKGDTARG=T) are matched like -b ones and said in one line; the science exposures
    without one (F150W, MIRI) are named in one warning."""
    rate = [p for p in data["rate"] if not read_exposure_info(p).background_target]
    folder = linked(tmp_path, [*rate, *data["bkg"]], "mast")[0].parent
    out = folder / "l2_asn.json"
    result = CliRunner().invoke(cli, ["asn", str(folder), "-o", str(out), "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    without = sorted(p.name for p in [*by_filter(rate, "F150W"), *by_filter(rate, "F770W")])
    assert result.stderr == (
        "INFO Using 3 dedicated background exposures (BKGDTARG=T) for the background step of "
        "5 science exposures; they are not reduced as science.\n"
        "WARNING 4 science exposure(s) have no background exposure with the same instrument, "
        f"detector, filter, pupil and subarray ({', '.join(without[:3])}, ...); their "
        "background step will be skipped.\n"
    )
    products = json.loads(result.stdout)["associations"][0]["products"]
    assert sorted(p["members"][0]["expname"] for p in products) == sorted(p.name for p in rate)
    bkg_names = {f: sorted(p.name for p in by_filter(data["bkg"], f)) for f in ("F200W", "F444W")}
    for product in products:
        assert product["members"][0]["exptype"] == "science"
        backgrounds = [m["expname"] for m in product["members"] if m["exptype"] == "background"]
        filt = read_exposure_info(folder / product["members"][0]["expname"]).filter
        assert backgrounds == bkg_names.get(filt, [])


def test_only_backgrounds_is_refused(data, tmp_path):
    bkg = sorted(by_filter(data["bkg"], "F200W"))
    for args in (["asn", *bkg, "-o", tmp_path / "x.json"],
                 ["image2", *bkg, "-o", tmp_path / "out"]):
        result = run_cli(*args)
        assert result.exit_code == 1
        assert result.output == (
            f"Error: {bkg[0]} (and 1 more): is a dedicated background exposure (BKGDTARG=T) "
            "and no science exposure was given. Background exposures are subtracted from "
            "science exposures by calwebb_image2's background step, never calibrated as "
            "science: give the science exposures too.\n")
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "out").exists()


def test_detected_backgrounds_matching_nothing_are_not_an_error(data, asn_log):
    """Found by their header (not given with -b), backgrounds that match no science
    exposure are reported and left out; the science exposures run without."""
    f150 = by_filter(data["rate"], "F150W")
    f444_bkg = by_filter(data["bkg"], "F444W")
    asn = asn_lib.build_level2(f150 + f444_bkg, asn_dir=f150[0].parent)
    assert all(len(p["members"]) == 1 for p in asn["products"])
    assert [r.getMessage() for r in asn_log.records] == [
        f"{f444_bkg[0]}: background exposure matches no science exposure "
        "(NIRCAM/NRCBLONG/F444W/CLEAR/FULL); not used.",
        "2 science exposure(s) have no background exposure with the same instrument, detector, "
        f"filter, pupil and subarray ({', '.join(sorted(p.name for p in f150))}); their "
        "background step will be skipped.",
    ]


def test_image2_planning_runs_backgrounds_as_members(data, tmp_path):
    """image2's planning: dedicated backgrounds among the files are inputs (role
    background) of each science exposure's task, which runs a one-product copy of the
    association with absolute paths; so does a given one-product association with a
    bare background member (calwebb_image2 would look for it in the working directory),
    while one with a bare science member only runs as given."""
    from jwstrun.runner.plan import make_tasks, plan_image2

    f200_bkg = sorted(by_filter(data["bkg"], "F200W"))
    science = sorted(p for p in by_filter(data["rate"], "F200W") if p not in f200_bkg)
    links = linked(tmp_path, [*science, *f200_bkg])
    planned = plan_image2(links)
    assert [p.product for p in planned] == [p.name.removesuffix("_rate.fits") for p in science]
    for item, exposure in zip(planned, links[:len(science)], strict=True):
        assert item.input is None and item.has_background
        assert item.inputs == [exposure, *links[len(science):]]
        assert item.roles == ["science", "background", "background"]
    tasks = make_tasks(planned, tmp_path / "out", {}, in_pool=False, validate=False)
    copy = json.loads(Path(tasks[0].input).read_text())
    assert [m["expname"] for m in copy["products"][0]["members"]] == list(map(str, planned[0].inputs))

    with_background = tmp_path / "data" / "bkg_asn.json"
    asn_lib.make_associations(links[:1], with_background, background=links[len(science):])
    plain = tmp_path / "data" / "one_asn.json"
    asn_lib.make_associations(links[:1], plain)
    (item,) = plan_image2([with_background])
    assert item.input is None and item.roles == ["association", "science", "background",
                                                  "background"]
    (item,) = plan_image2([plain])
    assert item.input == plain and not item.has_background


def test_cli_background_pattern_is_expanded(data, tmp_path):
    rate_dir = data["rate"][0].parent
    f200 = [
        p for p in by_filter(data["rate"], "F200W") if not read_exposure_info(p).background_target
    ]
    out = rate_dir / "l2_bkg_cli_asn.json"
    try:
        result = run_cli(
            "asn",
            *f200,
            "--background",
            str(rate_dir / "jw01234003*_rate.fits"),
            "-o",
            out,
            "--json",
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
    finally:
        out.unlink(missing_ok=True)
    products = report["associations"][0]["products"]
    assert len(products) == 3
    for product in products:
        assert [m["exptype"] for m in product["members"]] == ["science", "background", "background"]


# --------------------------------------------------------------------------- Level 3


def test_level3_dms_product_name_and_members(data):
    cal = by_filter(data["cal"], "F200W")
    asn = asn_lib.build_level3(cal, asn_dir=cal[0].parent)
    assert asn["asn_type"] == "image3"
    assert asn["asn_rule"] == "Asn_Lv3Image"
    assert asn["asn_id"] == "o001"
    assert len(asn["products"]) == 1
    assert asn["products"][0]["name"] == "jw01234-o001_t001_nircam_clear-f200w"
    assert [m["expname"] for m in asn["products"][0]["members"]] == sorted(p.name for p in cal)


def test_level3_name_follows_jwst_rules(tmp_path):
    # jwst sorts filter and pupil values; a non-FULL subarray is appended; several
    # observations make a c-candidate.
    a = make_exposure(
        tmp_path,
        product="cal",
        detector="NRCBLONG",
        filter="F444W",
        pupil="F405N",
        subarray="SUB640",
        observation=5,
    )
    b = make_exposure(
        tmp_path,
        product="cal",
        detector="NRCBLONG",
        filter="F444W",
        pupil="F405N",
        subarray="SUB640",
        observation=6,
    )
    infos = [read_exposure_info(a), read_exposure_info(b)]
    assert asn_lib.level3_product_name(infos[:1]) == "jw01234-o005_t001_nircam_f405n-f444w-sub640"
    assert asn_lib.level3_product_name(infos) == "jw01234-c1000_t001_nircam_f405n-f444w-sub640"
    miri = make_exposure(
        tmp_path, product="cal", instrument="MIRI", detector="MIRIMAGE", filter="F770W", pupil=None
    )
    assert asn_lib.level3_product_name([read_exposure_info(miri)]) == "jw01234-o001_t001_miri_f770w"


def test_level3_equivalent_to_asn_from_list(data):
    from jwst.associations import AssociationRegistry
    from jwst.associations.asn_from_list import asn_from_list
    from jwst.associations.lib.diff import compare_asns

    cal = by_filter(data["cal"], "F200W")
    ours = asn_lib.build_level3(cal, asn_dir=cal[0].parent, product_name="my_mosaic")
    rule = AssociationRegistry(include_bases=True)["Asn_Lv3Image"]
    theirs = asn_from_list([p.name for p in cal], rule=rule, product_name="my_mosaic")
    # asn_from_list bypasses the rule's _init_hook, which is what sets the DMS type
    # (Asn_Lv3Image._init_hook: asn_type = "image3"); its candidate id is a placeholder.
    theirs.data["asn_type"] = "image3"
    theirs = json.loads(theirs.dump()[1])
    assert ours["asn_rule"] == theirs["asn_rule"] == "Asn_Lv3Image"
    ours_cmp = dict(ours, asn_id=theirs["asn_id"])
    compare_asns(ours_cmp, theirs, strict_expname=True)  # asn_type, products, members, exptype


def test_level3_loads_in_modellibrary_and_image3_loader(data):
    from jwst.associations import load_asn
    from jwst.datamodels import ModelLibrary
    from jwst.pipeline import Image3Pipeline

    cal = by_filter(data["cal"], "F200W")
    out = cal[0].parent / "l3_lib_asn.json"
    try:
        asn_lib.make_associations(cal, out)
        with open(out) as handle:
            loaded = load_asn(handle)
        library = ModelLibrary(str(out), asn_exptypes=["science"], on_disk=False)
        image3_library = Image3Pipeline()._load_input_as_library(str(out))
        assert len(library) == len(cal)
        assert len(image3_library) == len(cal)
        assert library.asn["products"][0]["name"] == "jw01234-o001_t001_nircam_clear-f200w"
        assert len(library.group_names) == len(cal)  # group_id from each member's header
        with library:
            model = library.borrow(0)
            assert model.meta.filename == sorted(p.name for p in cal)[0]
            assert model.meta.asn.exptype == "science"
            library.shelve(model, 0, modify=False)
    finally:
        out.unlink(missing_ok=True)
    assert loaded["asn_type"] == "image3"


def test_level3_mixed_filters_refused_with_advice(data, tmp_path):
    cal = by_filter(data["cal"], "F200W") + by_filter(data["cal"], "F150W")
    result = run_cli("asn", *cal, "-o", tmp_path / "l3.json")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: these 5 exposures would mix filter: F150W, F200W in one Level-3 product. "
        "Use --group-by default -o DIR/ to write one association per group, or pass "
        "--allow-mixed if one product is really wanted."
    )
    assert not (tmp_path / "l3.json").exists()
    result = run_cli(
        "asn", *cal, "-o", tmp_path / "l3.json", "--allow-mixed", "--allow-outside", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["associations"][0]["products"][0]["name"] == (
        "jw01234-o001_t001_nircam_clear-f150w-f200w"
    )


def linked(tmp_path, paths, sub="data"):
    """Symlink fixture exposures into a fresh directory (members keep the link names)."""
    directory = tmp_path / sub
    directory.mkdir(exist_ok=True)
    links = []
    for path in paths:
        (directory / path.name).symlink_to(path)
        links.append(directory / path.name)
    return links


def test_group_by_default_one_level3_asn_per_filter(data, tmp_path):
    cal = linked(tmp_path, data["cal"])
    outdir = cal[0].parent
    result = run_cli("asn", *cal, "--group-by", "default", "-o", outdir)
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in outdir.glob("*.json"))
    assert files == [
        "jw01234-o001_t001_nircam_clear-f150w_image3_asn.json",
        "jw01234-o001_t001_nircam_clear-f200w_image3_asn.json",
        "jw01234-o001_t001_nircam_clear-f444w_image3_asn.json",
        "jw01234-o002_t001_miri_f770w_image3_asn.json",
    ]
    for name, n, filt in zip(
        files, (2, 3, 2, 2), ("F150W", "F200W", "F444W", "F770W"), strict=True
    ):
        asn = asn_lib.load_association(outdir / name, level=3)  # members exist and resolve
        members = asn.products[0].members
        assert len(members) == n
        assert {read_exposure_info(m.path).filter for m in members} == {filt}
        assert all(m.expname == m.path.name for m in members)  # bare names beside the asn
    # the table names the groups and their members
    assert "F444W" in result.output and "MIRI" in result.output and "F770W" in result.output
    assert "Wrote 4 association(s)" in result.output


def test_members_below_asn_dir_are_relative(data, tmp_path):
    cal = by_filter(linked(tmp_path, data["cal"], "cal"), "F200W")
    out = tmp_path / "f200w_asn.json"
    result = asn_lib.make_associations(cal, out)
    members = [m["expname"] for m in result.associations[0].data["products"][0]["members"]]
    assert members == [f"cal/{p.name}" for p in sorted(cal)]
    assert asn_lib.load_association(out).member_paths() == sorted(cal)


def test_members_outside_asn_dir_refused_unless_allowed(data, tmp_path):
    cal = by_filter(data["cal"], "F200W")
    out = tmp_path / "elsewhere" / "l3.json"
    with pytest.raises(InputError) as err:
        asn_lib.make_associations(cal, out)
    assert str(err.value).startswith(f"{sorted(cal)[0]}: lies outside the association's directory")
    assert not out.exists()
    result = asn_lib.make_associations(cal, out, allow_outside=True)
    members = [m["expname"] for m in result.associations[0].data["products"][0]["members"]]
    assert all(m.startswith("../") for m in members)
    with pytest.raises(InputError, match="lies outside the association's directory"):
        asn_lib.load_association(out)
    assert len(asn_lib.load_association(out, allow_outside=True).member_paths()) == 3


def test_group_by_level2_and_custom_keys(data, tmp_path):
    science = [p for p in data["rate"] if not read_exposure_info(p).background_target]
    science = linked(tmp_path, science)
    backgrounds = linked(tmp_path, data["bkg"])
    outdir = science[0].parent
    result = asn_lib.make_associations(
        science, outdir, group_by="instrument,filter", background=backgrounds
    )
    assert [w.group for w in result.associations] == [
        {"instrument": "MIRI", "filter": "F770W"},
        {"instrument": "NIRCAM", "filter": "F150W"},
        {"instrument": "NIRCAM", "filter": "F200W"},
        {"instrument": "NIRCAM", "filter": "F444W"},
    ]
    assert [w.path.name for w in result.associations][:2] == [
        "jw01234-o002_t001_miri_f770w_image2_asn.json",
        "jw01234-o001_t001_nircam_clear-f150w_image2_asn.json",
    ]
    f200 = result.associations[2].data
    assert f200["asn_type"] == "image2" and len(f200["products"]) == 3
    assert all(len(p["members"]) == 3 for p in f200["products"])  # science + 2 backgrounds
    assert all(len(p["members"]) == 1 for p in result.associations[1].data["products"])
    for written in result.associations:
        asn_lib.load_association(written.path, level=2)


def test_group_by_unknown_key(data, tmp_path):
    result = run_cli("asn", *data["cal"], "--group-by", "filter,colour", "-o", tmp_path / "g")
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: --group-by: unknown key 'colour'. Use 'default' or a comma-separated list of: program,"
    )


def test_product_name_template_and_refusals(data, tmp_path):
    nircam = linked(
        tmp_path, [p for p in data["cal"] if read_exposure_info(p).instrument == "NIRCAM"]
    )
    outdir = nircam[0].parent
    result = asn_lib.make_associations(
        nircam, outdir, group_by="filter", product_name="mosaic_{filter}"
    )
    assert sorted(w.data["products"][0]["name"] for w in result.associations) == [
        "mosaic_f150w",
        "mosaic_f200w",
        "mosaic_f444w",
    ]
    with pytest.raises(InputError, match="would name all 3 groups alike"):
        asn_lib.make_associations(nircam, outdir, group_by="filter", product_name="mosaic")
    for bad in ("../mosaic", "out/mosaic", "a\\b", ".hidden", ""):
        result = run_cli(
            "asn",
            *by_filter(data["cal"], "F200W"),
            "--product-name",
            bad,
            "-o",
            tmp_path / "x.json",
        )
        assert result.exit_code == 1, bad
        assert result.output.startswith("Error: --product-name: "), result.output
    assert not (tmp_path / "x.json").exists()


def test_level_forced_and_detected(data, tmp_path, asn_log):
    cal = by_filter(data["cal"], "F200W")
    infos = [read_exposure_info(p) for p in cal]
    assert asn_lib.detect_level(infos) == 3
    assert asn_lib.detect_level(infos, level=2) == 2
    assert "forcing a Level-2 association from cal products" in asn_log.text
    result = run_cli("asn", *cal, "--level", "2", "-o", cal[0].parent / "forced_asn.json", "--json")
    try:
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["associations"][0]["asn_type"] == "image2"
    finally:
        (cal[0].parent / "forced_asn.json").unlink(missing_ok=True)


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_name_the_file(tmp_path, data):
    missing = tmp_path / "nothere_rate.fits"
    text = tmp_path / "notes_rate.fits"
    text.write_text("hello")
    empty = tmp_path / "empty_rate.fits"
    empty.write_bytes(b"")
    from astropy.io import fits

    plain = tmp_path / "plain_rate.fits"
    fits.PrimaryHDU().writeto(plain)
    spec = make_exposure(tmp_path, exp_type="NRC_WFSS", name="spec_rate.fits")
    cases = {
        missing: f"Error: {missing}: file not found.",
        text: f"Error: {text}: is not a FITS file",
        empty: f"Error: {empty}: file is empty",
        plain: f"Error: {plain}: FITS file without JWST keywords (INSTRUME, EXP_TYPE missing",
        spec: f"Error: {spec}: EXP_TYPE NRC_WFSS is not direct imaging",
    }
    for bad, message in cases.items():
        out = tmp_path / "out.json"
        # a grism exposure among imaging ones is left out (test_mixed_exposure_types_left_out)
        given = [bad] if bad == spec else [data["rate"][0], bad]
        result = run_cli("asn", *given, "-o", out)
        assert result.exit_code == 1, bad
        assert result.output.startswith(message), result.output
        assert "Traceback" not in result.output
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["notes_rate.fits", "empty_rate.fits", "plain_rate.fits", "spec_rate.fits"]
    )


def test_mixed_exposure_types_left_out(data, tmp_path):
    """A MAST folder's target acquisition, grism exposure and _uncal among imaging exposures:
    left out with one warning line; --json lists them; the association has the others."""
    import shutil

    from stdatamodels.jwst import datamodels

    rates = [Path(shutil.copy(p, tmp_path / p.name)) for p in data["rate"][:2]]
    ta = make_exposure(tmp_path, exp_type="NRC_TACQ", exposure=7)
    grism = make_exposure(tmp_path, exp_type="NRC_WFSS", detector="NRCBLONG", filter="F444W",
                          pupil="GRISMR", exposure=8)
    uncal = tmp_path / rates[0].name.replace("_rate.fits", "_uncal.fits")
    with datamodels.ImageModel(rates[0]) as source:
        model = datamodels.Level1bModel(data=np.zeros((1, 2, 8, 8), dtype=np.uint16))
        model.update(source)
    model.save(uncal)
    model.close()
    out = tmp_path / "l2_asn.json"
    result = CliRunner().invoke(
        cli, ["asn", *map(str, [*rates, ta, grism, uncal]), "-o", str(out), "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "WARNING Left out 3 of 5 files: 2 not direct imaging (1 NRC_TACQ, 1 NRC_WFSS; jwstrun "
        "asn takes NRC_IMAGE, MIR_IMAGE, NIS_IMAGE, FGS_IMAGE exposures); 1 _uncal (raw ramps: "
        "run 'jwstrun detector1' on it, then give the _rate file it writes to jwstrun asn)."
    ]
    report = json.loads(result.stdout)
    assert [(i["path"], i["exp_type"], i["reason"]) for i in report["left_out"]] == [
        (str(ta), "NRC_TACQ", "not_imaging"), (str(grism), "NRC_WFSS", "not_imaging"),
        (str(uncal), "NRC_IMAGE", "earlier_stage"),
    ]
    members = [m["expname"] for p in json.loads(out.read_text())["products"] for m in p["members"]]
    assert len(members) == 2 and all(m.endswith("_rate.fits") for m in members)


def test_mixed_product_types_and_empty_list(data, tmp_path):
    result = run_cli(
        "asn", data["rate"][0], data["cal"][0], data["cal"][1], "-o", tmp_path / "x.json"
    )
    assert result.exit_code == 1
    assert result.output == (
        f"Error: mixed product types: 2 cal (e.g. {Path(data['cal'][0]).name}), 1 rate (e.g. "
        f"{Path(data['rate'][0]).name}). Give only _rate/_rateints files (Level 2) or only "
        "_cal/_calints/_crf files (Level 3).\n"
    )
    with pytest.raises(InputError, match="^no input files given"):
        asn_lib.make_associations([], tmp_path / "x.json")
    result = run_cli("asn", "-o", tmp_path / "x.json")
    assert result.exit_code == 2 and "give exposures to associate" in result.output


def test_refuses_to_overwrite_without_force(data):
    cal = by_filter(data["cal"], "F200W")
    out = cal[0].parent / "once_asn.json"
    out.write_text("precious")
    try:
        result = run_cli("asn", *cal, "-o", out)
        assert result.exit_code == 1
        assert (
            result.output.strip()
            == f"Error: {out}: already exists. Pass --force to overwrite it or choose another -o."
        )
        assert out.read_text() == "precious"
        result = run_cli("asn", *cal, "-o", out, "--force")
        assert result.exit_code == 0, result.output
        assert json.loads(out.read_text())["asn_type"] == "image3"
        assert [p.name for p in out.parent.glob(".once_asn.json*")] == []  # no temp files left
    finally:
        out.unlink(missing_ok=True)


def test_group_output_refuses_existing_before_writing_any(data, tmp_path):
    cal = linked(tmp_path, data["cal"])
    outdir = cal[0].parent
    keep = outdir / "jw01234-o001_t001_nircam_clear-f444w_image3_asn.json"
    keep.write_text("keep")
    with pytest.raises(OutputError, match="already exists"):
        asn_lib.make_associations(cal, outdir, group_by="default")
    assert sorted(outdir.glob("*.json")) == [keep] and keep.read_text() == "keep"


def test_json_given_as_input_points_to_show(tmp_path, data):
    asn_file = tmp_path / "a_asn.json"
    asn_file.write_text("{}")
    result = run_cli("asn", asn_file, "-o", tmp_path / "x.json")
    assert result.exit_code == 1
    assert result.output.startswith(
        f"Error: {asn_file}: is an association, not an exposure. To show or check it use"
    )


def test_write_association_interrupted_leaves_no_file(tmp_path):
    class Boom:
        pass

    target = tmp_path / "a.json"
    with pytest.raises(TypeError):
        asn_lib.write_association({"products": [Boom()]}, target)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- load / check


@pytest.fixture
def good_l3(data):
    cal = by_filter(data["cal"], "F200W")
    path = cal[0].parent / "good_l3_asn.json"
    asn_lib.make_associations(cal, path, force=True)
    yield path
    path.unlink(missing_ok=True)


def write_variant(good_path, name, mutate):
    data = json.loads(good_path.read_text())
    mutate(data)
    path = good_path.parent / name
    path.write_text(json.dumps(data))
    return path


def test_load_association_refusals(good_l3):
    d = good_l3.parent

    def first_member(data):
        return data["products"][0]["members"][0]

    cases = {
        "malformed": (None, "is not valid JSON (line "),
        "missing": (
            lambda a: first_member(a).update(expname="gone_cal.fits"),
            "1 member file(s) not found next to the association: gone_cal.fits",
        ),
        "type": (
            lambda a: a.update(asn_type="spec3"),
            "asn_type is 'spec3'; jwstrun runs image associations",
        ),
        "dup": (lambda a: a["products"][0]["members"].append(dict(first_member(a))), "lists "),
        "dotdot": (
            lambda a: first_member(a).update(expname="../cal/" + first_member(a)["expname"]),
            "lies outside the association's directory",
        ),
        "abs": (
            lambda a: first_member(a).update(expname="/etc/passwd"),
            "member /etc/passwd lies outside",
        ),
        "sep": (
            lambda a: a["products"][0].update(name="out/mosaic"),
            "product name 'out/mosaic' contains a path separator",
        ),
        "dotname": (
            lambda a: a["products"][0].update(name="..mosaic"),
            "product name '..mosaic' contains",
        ),
        "nomembers": (lambda a: a["products"][0].update(members=[]), "has no members"),
        "noexptype": (lambda a: first_member(a).pop("exptype"), "has no 'exptype'"),
        "twoproducts": (
            lambda a: a["products"].append(dict(a["products"][0], name="other")),
            "has 2 products, but calwebb_image3 processes only the first",
        ),
    }
    for name, (mutate, message) in cases.items():
        path = d / f"bad_{name}_asn.json"
        if mutate is None:
            path.write_text(good_l3.read_text()[:-10])
        else:
            path = write_variant(good_l3, path.name, mutate)
        try:
            with pytest.raises(InputError) as err:
                asn_lib.load_association(path)
            assert str(err.value).startswith(f"{path}: "), name
            assert message in str(err.value), (name, str(err.value))
        finally:
            path.unlink()


def test_load_association_wrong_level_and_asn_from_list_types(good_l3, data):
    with pytest.raises(InputError) as err:
        asn_lib.load_association(good_l3, level=2)
    assert str(err.value).startswith(
        f"{good_l3}: asn_type is 'image3' (Level 3) but a Level-2 (image2) association is needed here."
    )
    # asn_from_list writes asn_type "None": the level comes from the member names
    path = write_variant(good_l3, "afl_asn.json", lambda a: a.update(asn_type="None"))
    try:
        assert asn_lib.load_association(path).level == 3
    finally:
        path.unlink()


def test_level2_load_rules(data):
    rate = [
        p for p in by_filter(data["rate"], "F200W") if not read_exposure_info(p).background_target
    ]
    path = rate[0].parent / "l2_rules_asn.json"
    asn_lib.make_associations(rate, path, background=data["bkg"][:2], force=True)
    try:
        asn = asn_lib.load_association(path, level=2)
        assert len(asn.member_paths("science")) == 3 and len(asn.member_paths("background")) == 2
        dup = write_variant(
            path,
            "l2_dup_asn.json",
            lambda a: a["products"][1]["members"].__setitem__(0, a["products"][0]["members"][0]),
        )
        with pytest.raises(InputError, match="is a science member of both"):
            asn_lib.load_association(dup)
        dup.unlink()
        two = write_variant(
            path,
            "l2_two_asn.json",
            lambda a: a["products"][0]["members"].append(dict(a["products"][1]["members"][0])),
        )
        with pytest.raises(InputError, match="has 2 science members"):
            asn_lib.load_association(two)
        two.unlink()
    finally:
        path.unlink()


def test_cli_show_and_check(good_l3, data):
    result = run_cli("asn", "--show", good_l3)
    assert result.exit_code == 0, result.output
    assert "image3, Level 3" in result.output and result.output.count("science") == 3
    result = run_cli("asn", "--show", good_l3, "--json")
    assert json.loads(result.stdout) == json.loads(good_l3.read_text())
    result = run_cli("asn", "--check", good_l3, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["problems"] == [] and report["level"] == 3
    assert {m["filter"] for m in report["products"][0]["members"]} == {"F200W"}
    result = run_cli("asn", "--check", good_l3)
    assert result.exit_code == 0 and "OK: " in result.output


def test_cli_build_and_show_off_a_terminal_keep_paths_whole(data, tmp_path):
    """Click's runner, like a pipe or a batch log, is not a terminal: plain lines, one per
    association or member, with paths of over 150 characters whole."""
    deep = tmp_path / ("d" * 60) / ("e" * 60) / ("f" * 40)
    deep.mkdir(parents=True)
    cal = by_filter(linked(deep, data["cal"], sub="cal_" + "g" * 60), "F200W")
    result = run_cli("asn", *cal, "--group-by", "filter", "-o", deep)
    assert result.exit_code == 0, result.output
    assert "\x1b[" not in result.output and "\u2500" not in result.output
    (path,) = deep.glob("*_asn.json")
    members = [f"{cal[0].parent.name}/{p.name}" for p in sorted(cal)]
    lines = result.output.splitlines()
    assert lines[-1] == f"Wrote 1 association(s) to {deep}"
    assert f"3  {path.name}, {', '.join(members)}" in [line.strip() for line in lines]
    result = run_cli("asn", "--show", path)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{path} (image3, Level 3)"
    rows = [line.split() for line in lines[1:]]
    assert rows[0] == ["product", "member", "exptype"]
    product = json.loads(path.read_text())["products"][0]["name"]
    assert rows[1] == [product, members[0], "science"]
    assert rows[2:] == [[m, "science"] for m in members[1:]]


def test_cli_check_finds_member_problems(data, tmp_path):
    f200 = by_filter(data["cal"], "F200W")
    links = linked(tmp_path, f200 + by_filter(data["cal"], "F150W")[:1] + data["rate"][:1])
    path = tmp_path / "data" / "mixed_check_asn.json"
    asn_lib.make_associations(links[:3], path)
    text = json.loads(path.read_text())
    text["products"][0]["members"] += [
        {"expname": links[3].name, "exptype": "science"},
        {"expname": links[4].name, "exptype": "science"},
    ]
    path.write_text(json.dumps(text))
    result = run_cli("asn", "--check", path)
    assert result.exit_code == 1
    assert (
        f"Problem: {links[4].name}: is a 'rate' product; a Level-3 association takes "
        "cal/calints/crf files." in result.output
    )
    assert "mixes filter values F150W, F200W" in result.output
    assert result.output.rstrip().endswith(f"Error: {path}: 2 problem(s) found.")
    result = run_cli("asn", "--check", path, "--json")
    assert result.exit_code == 1
    assert len(json.loads(result.output.split("\nError:")[0])["problems"]) == 2


def test_show_check_usage_errors(good_l3, data):
    result = run_cli("asn", "--show", good_l3, data["cal"][0])
    assert result.exit_code == 2
    assert "--show/--check take one association file" in result.output
    result = run_cli("asn", "--check", good_l3.parent / "nope.json")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {good_l3.parent / 'nope.json'}: association file not found. Check the path.\n"
    )


def test_cli_check_reports_repeated_members(data, tmp_path):
    """An exposure listed again under another name (a symlink, a hard link) is a problem
    for --check, though each name is listed once; the runner would use it once."""
    f200 = linked(tmp_path, by_filter(data["cal"], "F200W"))
    directory = f200[0].parent
    again = directory / "again_cal.fits"
    again.symlink_to(f200[0])
    hard = directory / "hard_cal.fits"
    os.link(f200[1].resolve(), hard)
    path = directory / "repeat_asn.json"
    asn_lib.make_associations(f200, path)
    text = json.loads(path.read_text())
    product = text["products"][0]
    product["members"] += [{"expname": again.name, "exptype": "science"},
                           {"expname": hard.name, "exptype": "science"}]
    path.write_text(json.dumps(text))
    first, second = sorted(p.name for p in f200)[:2]
    expected = [
        f"product '{product['name']}': member {again.name} is the same file as {first}; it "
        "would be processed twice. List each exposure once.",
        f"product '{product['name']}': member {hard.name} is the same file as {second}; it "
        "would be processed twice. List each exposure once.",
    ]
    check = asn_lib.check_association(path)
    assert check.problems == [] and check.repeated == expected and not check.ok
    result = CliRunner().invoke(cli, ["asn", "--check", str(path)], catch_exceptions=False)
    assert result.exit_code == 1
    lines = result.output.rstrip().splitlines()
    assert [line for line in lines if line.startswith("Problem: ")] == [
        f"Problem: {e}" for e in expected]
    assert lines[-1] == f"Error: {path}: 2 problem(s) found."
    result = CliRunner().invoke(cli, ["asn", "--check", str(path), "--json"])
    report = json.loads(result.output.split("\nError:")[0])
    assert report["ok"] is False and report["problems"] == expected


def test_cli_check_reports_repeated_level2_science(data, tmp_path):
    rate = [p for p in by_filter(data["rate"], "F200W")
            if not read_exposure_info(p).background_target]
    links = linked(tmp_path, rate)
    again = links[0].parent / "again_rate.fits"
    again.symlink_to(links[0])
    path = links[0].parent / "l2_repeat_asn.json"
    asn_lib.make_associations([*links, again], path)  # read_exposures uses it once
    text = json.loads(path.read_text())
    assert len(text["products"]) == 3
    text["products"].append({"name": "again", "members": [
        {"expname": again.name, "exptype": "science"}]})
    path.write_text(json.dumps(text))
    result = CliRunner().invoke(cli, ["asn", "--check", str(path)], catch_exceptions=False)
    assert result.exit_code == 1
    assert (f"Problem: member {again.name} is the same file as {links[0].name}; it would be "
            "processed twice. List each exposure once.") in result.output
    assert result.output.rstrip().splitlines()[-1] == f"Error: {path}: 1 problem(s) found."


def test_cli_asn_takes_a_directory(data, tmp_path):
    """'jwstrun asn DIR' takes the exposures in DIR: its _cal (or _rate) files, not
    image3's _crf copies, other products or other files."""
    cal = linked(tmp_path, data["cal"])
    directory = cal[0].parent
    # not links to the cal files: those would be used once as the same file anyway
    make_exposure(directory, product="cal", exposure=99, name="jw01234001001_01101_00099_crf.fits")
    make_exposure(directory, product="cal", exposure=98, name="mosaic_i2d.fits")
    (directory / "notes.txt").write_text("not data")
    runner = CliRunner()
    result = runner.invoke(cli, ["asn", str(directory), "--group-by", "default", "-o",
                                 str(directory)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    written = sorted(directory.glob("*_image3_asn.json"))
    assert len(written) == 4
    members = sorted(m.path.name for w in written
                     for m in asn_lib.load_association(w).products[0].members)
    assert members == sorted(p.name for p in cal)

    rate = [p for p in data["rate"] if not read_exposure_info(p).background_target]
    rate_dir = linked(tmp_path, by_filter(rate, "F200W"), "rate")[0].parent
    out = rate_dir / "l2_asn.json"
    result = runner.invoke(cli, ["asn", str(rate_dir), "-o", str(out), "--json"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(json.loads(out.read_text())["products"]) == 3

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not data")
    result = runner.invoke(cli, ["asn", str(empty), "-o", str(tmp_path / "x.json")])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {empty}: is a directory with no *_rate.fits, *_rateints.fits, *_cal.fits, "
        "*_calints.fits, *_uncal.fits files in it. Give the directory that holds them, or the "
        "files.")
    result = runner.invoke(cli, ["asn", str(rate_dir), "-o", str(tmp_path / "x.json"),
                                 "--background", str(tmp_path / "nobkg" / "*_rate.fits")])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: --background {tmp_path / 'nobkg' / '*_rate.fits'}: no files match this "
        "pattern. Check the path.")
    assert not (tmp_path / "x.json").exists()


def test_clear_caches_reads_the_schema_again(good_l3):
    from jwstrun.asn.schema import _load_schema

    asn_lib.load_association(good_l3)
    assert _load_schema.cache_info().currsize >= 1
    asn_lib.clear_caches()
    assert _load_schema.cache_info().currsize == 0
    assert asn_lib.load_association(good_l3).level == 3
    assert _load_schema.cache_info().currsize == 1


# --------------------------------------------------------------------------- DMS Level-3 rules


@pytest.fixture(scope="module")
def dms_cal(tmp_path_factory):
    """_cal exposures as a MAST folder holds them: NGC-1 in observations 1 and 2 (F200W on
    modules A and B, F444W, a SUB640 F200W exposure, a second visit), M-31 in
    observation 3, a background target (BKGDTARG=T) in observation 1, MIRI in 5."""
    d = tmp_path_factory.mktemp("dms_cal")
    specs = [  # (observation, visit, exposure, detector, filter, subarray, target, background)
        (1, 1, 1, "NRCB1", "F200W", "FULL", "NGC-1", False),
        (1, 1, 2, "NRCB1", "F200W", "FULL", "NGC-1", False),
        (1, 1, 2, "NRCA1", "F200W", "FULL", "NGC-1", False),
        (1, 1, 3, "NRCBLONG", "F444W", "FULL", "NGC-1", False),
        (1, 1, 4, "NRCBLONG", "F444W", "FULL", "NGC-1", False),
        (1, 1, 5, "NRCB1", "F200W", "SUB640", "NGC-1", False),
        (1, 3, 1, "NRCB1", "F200W", "FULL", "NGC-1-BKG", True),
        (1, 3, 2, "NRCB1", "F200W", "FULL", "NGC-1-BKG", True),
        (2, 1, 1, "NRCB1", "F200W", "FULL", "NGC-1", False),
        (2, 2, 1, "NRCB1", "F200W", "FULL", "NGC-1", False),
        (3, 1, 1, "NRCB1", "F200W", "FULL", "M-31", False),
    ]
    paths = [
        make_exposure(d, product="cal", observation=obs, visit=visit, exposure=exp, detector=det,
                      filter=filt, subarray=sub, target=target, background=bkg)
        for obs, visit, exp, det, filt, sub, target, bkg in specs
    ]
    for exp in (1, 2):
        paths.append(make_exposure(d, product="cal", instrument="MIRI", detector="MIRIMAGE",
                                   filter="F770W", pupil=None, observation=5, exposure=exp))
    return paths


def jwst_level3_products(paths, tmp_path, candidates=()):
    """The image3 products (name -> member names) that jwst's association generator makes,
    as DMS runs it (every candidate, no discovered a3xxx associations), from a pool of the
    columns the rules read, filled from the exposures' primary headers. The pool is
    written and read back with AssociationPool (which lower-cases values, as for DMS
    pools). TARGETID, the APT target number no header holds, numbers each program's
    TARGPROP values alphabetically."""
    from astropy.io import fits
    from jwst.associations import AssociationPool
    from jwst.associations.generator.generate_per_candidate import generate_per_candidate

    keywords = ("PROGRAM", "VISIT", "EXPOSURE", "EXP_TYPE", "INSTRUME", "DETECTOR", "CHANNEL",
                "MODULE", "FILTER", "PUPIL", "SUBARRAY", "TARGPROP", "VISITYPE", "TSOVISIT")
    headers = [fits.getheader(p) for p in paths]
    targets = {t: str(i) for i, t in enumerate(sorted({h["TARGPROP"] for h in headers}), 1)}
    rows = []
    for path, header in zip(paths, headers, strict=True):
        row = {k: str(header.get(k, "NULL") or "NULL") for k in keywords}
        cands = [(f"o{header['OBSERVTN']}", "observation"), *candidates]
        row.update(FILENAME=path.name, OBS_NUM=header["OBSERVTN"],
                   TARGETID=targets[header["TARGPROP"]],
                   BKGDTARG="T" if header["BKGDTARG"] else "F", PNTGTYPE="science",
                   IS_IMPRT="f", DMS_NOTE="NULL", ASN_CANDIDATE=str(cands))
        rows.append(row)
    names = list(rows[0])
    pool_file = tmp_path / "jw01234_20260101t000000_pool.csv"
    AssociationPool(rows=[[r[n] for n in names] for r in rows], names=names,
                    dtype=[str] * len(names)).write(pool_file)
    pool = AssociationPool.read(pool_file)
    asns = generate_per_candidate(pool, None, all_candidates=True, discover=False)
    return {p["name"]: sorted(Path(m["expname"]).name for m in p["members"])
            for a in asns if a["asn_type"] == "image3" for p in a["products"]}


@pytest.fixture(scope="module")
def generated(dms_cal, tmp_path_factory):
    """jwst's image3 products for dms_cal, every exposure also in a c1000 candidate of type
    'group' (one generator run for both tests: each candidate is generated on its own)."""
    return jwst_level3_products(dms_cal, tmp_path_factory.mktemp("pool"),
                                candidates=[("c1000", "group")])


def jwstrun_level3_products(result):
    """The products (name -> member names) of the associations make_associations wrote."""
    return {p["name"]: sorted(m["expname"] for m in p["members"])
            for w in result.associations for p in w.data["products"]}


def test_default_grouping_is_what_jwst_generates_for_dms(dms_cal, generated, tmp_path):
    """The same exposures' Level-3 associations both ways: jwstrun's default grouping and
    jwst's generator on a pool of their headers give the same product names and members
    (those of the observation candidates)."""
    files = linked(tmp_path, dms_cal)
    ours = jwstrun_level3_products(
        asn_lib.make_associations(files, files[0].parent, group_by="default")
    )
    assert ours == {k: v for k, v in generated.items() if "-c1000_" not in k}
    assert sorted(ours) == [
        "jw01234-o001_t002_nircam_clear-f200w",
        "jw01234-o001_t002_nircam_clear-f200w-sub640",
        "jw01234-o001_t002_nircam_clear-f444w",
        "jw01234-o001_t003_nircam_clear-f200w",  # the background target, apart
        "jw01234-o002_t002_nircam_clear-f200w",
        "jw01234-o003_t001_nircam_clear-f200w",
        "jw01234-o005_t002_miri_f770w",
    ]
    assert len(ours["jw01234-o001_t002_nircam_clear-f200w"]) == 3  # modules A and B together
    assert len(ours["jw01234-o002_t002_nircam_clear-f200w"]) == 2  # and both visits


def test_merge_observations_is_a_jwst_group_candidate(dms_cal, generated, tmp_path):
    """--merge-observations: what jwst's generator makes of a c1000 candidate of type
    'group' holding every exposure (products spanning one observation keep its name)."""
    files = linked(tmp_path, dms_cal)
    ours = jwstrun_level3_products(asn_lib.make_associations(
        files, files[0].parent, group_by="default", merge_observations=True))
    theirs = generated
    merged = {k: v for k, v in ours.items() if "-c1000_" in k}
    assert merged == {k: v for k, v in theirs.items() if "-c1000_" in k}
    assert list(merged) == ["jw01234-c1000_t002_nircam_clear-f200w"]
    assert len(merged["jw01234-c1000_t002_nircam_clear-f200w"]) == 5
    assert all(theirs[k] == v for k, v in ours.items() if k not in merged)
    assert sorted(n for v in ours.values() for n in v) == sorted(p.name for p in dms_cal)


def test_one_association_per_observation_unless_merged(dms_cal, tmp_path):
    f200 = [p for p in linked(tmp_path, dms_cal) if (info := read_exposure_info(p)).filter
            == "F200W" and info.subarray == "FULL" and info.target == "NGC-1"]
    out = tmp_path / "data" / "l3_asn.json"
    result = run_cli("asn", *f200, "-o", out)
    assert result.exit_code == 1
    assert result.output == (
        "Error: these 5 exposures belong to several observations (001, 002); DMS makes one "
        "Level-3 product per observation. Use --group-by default -o DIR/ to write one "
        "association per observation, or pass --merge-observations for one product of them "
        "all.\n"
    )
    assert not out.exists()
    result = run_cli("asn", *f200, "-o", out, "--merge-observations", "--json")
    assert result.exit_code == 0, result.output
    asn = json.loads(out.read_text())
    assert asn["asn_id"] == "c1000"
    assert [p["name"] for p in asn["products"]] == ["jw01234-c1000_t001_nircam_clear-f200w"]
    assert len(asn["products"][0]["members"]) == 5
    result = run_cli("asn", *f200, "-o", tmp_path / "g", "--merge-observations",
                     "--group-by", "observation,filter")
    assert result.exit_code == 1
    assert result.output == (
        "Error: --merge-observations: --group-by lists 'observation', which keeps observations "
        "apart; leave one of the two out.\n"
    )


def test_product_name_template_without_group_by(dms_cal, tmp_path):
    """A template is filled from values all exposures share, or refused; never written
    literally."""
    obs1 = [p for p in linked(tmp_path, dms_cal) if p.name.startswith("jw01234001001_")
            and (info := read_exposure_info(p)).filter == "F200W" and info.subarray == "FULL"]
    out = obs1[0].parent / "t_asn.json"
    result = run_cli("asn", *obs1, "-o", out, "--product-name", "mosaic_{filter}")
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["products"][0]["name"] == "mosaic_f200w"
    result = run_cli("asn", *obs1, "-o", out, "--force", "--product-name", "mosaic_{detector}")
    assert result.exit_code == 1
    assert result.output == (
        "Error: --product-name 'mosaic_{detector}': the exposures differ in detector "
        "(NRCA1, NRCB1), so {detector} has no one value. Use --group-by default,detector "
        "-o DIR/ for one association per group, or leave the field out.\n"
    )
    result = run_cli("asn", *obs1, "-o", out, "--force", "--product-name", "mosaic_{colour}")
    assert result.exit_code == 1
    assert result.output == (
        "Error: --product-name 'mosaic_{colour}': cannot fill it from the exposures' headers; "
        "use plain fields such as {filter} (one of: program, observation, visit, instrument, "
        "detector, module, channel, filter, pupil, subarray, exp_type, target, bkgdtarg), "
        "without '.', '[', '!' or ':'.\n"
    )
    assert json.loads(out.read_text())["products"][0]["name"] == "mosaic_f200w"  # kept


def test_background_target_never_in_a_science_product(tmp_path):
    """BKGDTARG=T exposures make a product of their own (Asn_Lv3ImageBackground), even
    with the science exposures' observation and target."""
    science = make_exposure(tmp_path, product="cal", exposure=1)
    background = make_exposure(tmp_path, product="cal", exposure=2, background=True)
    result = asn_lib.make_associations([science, background], tmp_path, group_by="default")
    assert sorted((w.group["bkgdtarg"], w.path.name, w.n_members)
                  for w in result.associations) == [
        ("F", "jw01234-o001_t001_nircam_clear-f200w-1_image3_asn.json", 1),
        ("T", "jw01234-o001_t001_nircam_clear-f200w-2_image3_asn.json", 1),
    ]
    result = run_cli("asn", science, background, "-o", tmp_path / "l3_asn.json")
    assert result.exit_code == 1
    assert result.output == (
        "Error: these 2 exposures would mix bkgdtarg: F, T in one Level-3 product. Use "
        "--group-by default -o DIR/ to write one association per group, or pass "
        "--allow-mixed if one product is really wanted.\n"
    )


# --------------------------------------------------------------------------- headers only


def test_grouping_reads_headers_only(tmp_path):
    """A 2 GiB (sparse) SCI extension is never read: grouping takes well under a second."""
    import time

    from astropy.io import fits

    template = make_exposure(tmp_path / "t", product="cal")
    primary = fits.getheader(template, 0)
    paths = []
    for i in range(2):
        path = tmp_path / f"jw01234001001_01101_0000{i + 1}_nrcb1_cal.fits"
        header = primary.copy()
        header["EXPOSURE"] = i + 1
        sci = fits.ImageHDU(data=None, name="SCI")
        sci.header["BITPIX"] = -64
        sci.header["NAXIS"] = 2
        sci.header["NAXIS1"] = 16384
        sci.header["NAXIS2"] = 16384
        with open(path, "wb") as handle:
            handle.write(fits.PrimaryHDU(header=header).header.tostring().encode())
            handle.write(sci.header.tostring().encode())
            data_bytes = -(-16384 * 16384 * 8 // 2880) * 2880  # padded to whole FITS blocks
            handle.truncate(handle.tell() + data_bytes)  # sparse: no pixel bytes on disk
        paths.append(path)
    t0 = time.perf_counter()
    result = asn_lib.make_associations(paths, tmp_path / "big_asn.json", product_name="big")
    elapsed = time.perf_counter() - t0
    assert len(result.associations[0].data["products"][0]["members"]) == 2
    assert elapsed < 1.0, elapsed


def test_exposure_types_match_jwst():
    """The stages' imaging EXP_TYPEs are those of jwst's Level-3 image rule (less NIRSpec's
    engineering NRS_MIMF), all of them Level-2b image science types."""
    from jwst.associations.lib.dms_base import IMAGE2_SCIENCE_EXP_TYPES
    from jwst.associations.lib.rules_level3_base import Constraint_Image

    from jwstrun.stages import STAGES

    level3 = set(Constraint_Image().value.split("|")) - {"nrs_mimf"}
    for stage in STAGES.values():
        assert {t.lower() for t in stage.exp_types} == level3
    assert {t.lower() for t in asn_lib.IMAGING_EXP_TYPES} <= set(IMAGE2_SCIENCE_EXP_TYPES)


def test_output_option_misuse(data, tmp_path):
    rate = by_filter(data["rate"], "F200W")
    result = run_cli("asn", *rate, "-o", tmp_path / "l2.txt")
    assert result.exit_code == 1
    assert result.output.startswith(
        f"Error: -o {tmp_path / 'l2.txt'}: an association file name must end in .json"
    )
    result = run_cli("asn", *rate, "--group-by", "default", "-o", tmp_path / "g.json")
    assert result.exit_code == 1
    assert result.output.startswith(
        f"Error: -o {tmp_path / 'g.json'}: with --group-by, -o is a directory"
    )
    result = run_cli("asn", *rate, "--product-name", "one", "-o", rate[0].parent / "n_asn.json")
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: --product-name names one product, but a Level-2 association has one product per "
        "exposure (3 here)."
    )
    assert list(tmp_path.iterdir()) == [] and not (rate[0].parent / "n_asn.json").exists()
