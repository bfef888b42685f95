"""``refs.reftypes_for`` answers from a disk cache without importing jwst.pipeline.

The cache holds what the answer is made of (per step: reftypes, default skip,
prefetch_references, pars-* type); these tests check that every answer built
from it equals what stpipe itself computes on an instantiated pipeline.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import pytest

from jwstrun import refs
from jwstrun.refs import bestrefs, reftypes
from jwstrun.stages import STAGES, TILED_STAGES, get_stage

IMAGE2, IMAGE3 = get_stage("image2"), get_stage("image3")
TILE = TILED_STAGES["image3-tile"]


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(refs.NO_CACHE_VARIABLE, raising=False)
    refs.clear_caches()  # this process must read (and write) the cache under tmp_path
    yield tmp_path / "xdg"
    refs.clear_caches()


def _step_overrides(stage):
    """{} plus every single step skipped, plus all skipped."""
    names = list(stage.load_class().step_defs)
    yield {}
    for name in names:
        yield {name: {"skip": True}}
    yield {name: {"skip": True} for name in names}
    yield {names[0]: {"skip": False}}


def test_cached_equals_computed(cache_home):
    first = refs.reftypes_for("image2")
    path = reftypes._reftype_cache_path()
    assert path.parent == cache_home / "jwstrun" and path.is_file()
    layouts = json.loads(path.read_text())
    assert set(layouts) == {stage.step_class for stage in (*STAGES.values(), TILE)}
    assert first == reftypes._reftypes_from_jwst(IMAGE2, None, True)
    compared = 0
    for stage in (IMAGE2, IMAGE3, TILE):
        for steps, pars in itertools.product(_step_overrides(stage), (True, False)):
            cached = reftypes._reftypes_from_layout(layouts[stage.step_class], steps, pars)
            assert cached == reftypes._reftypes_from_jwst(stage, steps, pars), (stage.name, steps)
            compared += 1
    assert compared > 26
    # what image2 prefetches for imaging (offline-crds notes) is in there
    assert {"distortion", "flat", "photom", "area", "pars-image2pipeline"} <= set(first)
    assert "flat" not in reftypes._reftypes_from_layout(layouts[IMAGE2.step_class],
                                                         {"flat_field": {"skip": True}}, True)


def test_warm_cache_does_not_import_jwst_pipeline(cache_home):
    refs.reftypes_for("image3")  # writes the cache
    code = (
        "import sys, json; from jwstrun import refs; "
        "out = {p: refs.reftypes_for(p, steps={'resample': {'skip': True}}) "
        "for p in ('image2', 'image3', 'image3-tile')}; "
        "print(json.dumps({'types': out, 'imported': any(m.startswith(('jwst.pipeline', "
        "'jwst.resample')) for m in sys.modules)}))"
    )
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    data = json.loads(proc.stdout)
    assert data["imported"] is False
    for stage in (IMAGE2, IMAGE3, TILE):
        assert data["types"][stage.name] == reftypes._reftypes_from_jwst(
            stage, {"resample": {"skip": True}}, True)


def test_overrides_the_layout_cannot_answer_go_to_stpipe(cache_home):
    layouts = reftypes._pipeline_layouts()
    layout = layouts[IMAGE2.step_class]
    assert reftypes._reftypes_from_layout(layout, {"flat_field": {"skip": "yes"}}, True) is None
    assert reftypes._reftypes_from_layout(layout, {"no_such_step": {"skip": True}}, True) is None
    # ... and reftypes_for still answers, the way stpipe coerces "yes"
    assert "flat" not in refs.reftypes_for("image2", steps={"flat_field": {"skip": "yes"}})


def test_unreadable_or_disabled_cache(cache_home, monkeypatch):
    path = reftypes._reftype_cache_path()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert refs.reftypes_for("image3") == reftypes._reftypes_from_jwst(IMAGE3, None, True)
    assert json.loads(path.read_text())  # rewritten whole
    monkeypatch.setenv(refs.NO_CACHE_VARIABLE, "1")
    assert reftypes._reftype_cache_path() is None


def test_schema_locations_cached_and_equal_to_crds(cache_home, monkeypatch):
    """The FITS keyword/HDU of every CRDS matching key comes from a disk cache after the
    first run, and equals what crds reads from the datamodel schema."""
    from crds.jwst import schema

    keys = ["META.INSTRUMENT.DETECTOR", "META.INSTRUMENT.FILTER", "META.INSTRUMENT.PUPIL",
            "META.SUBARRAY.NAME", "META.EXPOSURE.TYPE", "META.OBSERVATION.DATE"]
    located = {k: bestrefs._fits_location(k) for k in keys}
    files = list((cache_home / "jwstrun").glob("pipeline-schema-stdatamodels*.json"))
    assert len(files) == 1
    flat = schema.get_flat_schema()
    for key, (keyword, hdu) in located.items():
        assert keyword == bestrefs._FITS_OVERRIDES.get(key, schema.dm_to_fits(key))
        assert hdu == str(flat.get(key + ".FITS_HDU", "PRIMARY")).upper()
    # a new process answers from the file without loading the datamodel schemas
    code = (
        "import sys; from jwstrun.refs import bestrefs; "
        f"print(bestrefs._fits_location('META.INSTRUMENT.FILTER')); "
        "print('stdatamodels.jwst.datamodels' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ), check=True).stdout.split("\n")
    assert out[0] == str(located["META.INSTRUMENT.FILTER"]) and out[1] == "False"
