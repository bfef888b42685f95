"""One exposure on several detectors has one pointing: jwst's tweakreg aligns it as a whole.

tweakreg groups the images of an exposure (its ``group_id`` is the exposure id, the
detector left out) and fits one correction per group. The simulated exposures must
therefore move all their detectors together: the real TweakRegStep, run on the
simulated files with the WCS jwst's assign_wcs builds from the simulated distortion,
must align every file to the truth within 0.01" although each exposure was pointed
0.3" rms off (jwst issue 7993 is what happens when the detectors of one exposure do
not agree).
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from jwstrun.simulate import simulate_program


def _offsets(wcs, true_wcs, shape):
    """Mean (dxi, deta) arcsec of ``wcs`` from ``true_wcs`` over a pixel grid."""
    ny, nx = shape
    ys, xs = np.mgrid[0 : ny - 1 : 8j, 0 : nx - 1 : 8j]
    r1, d1 = wcs(xs.ravel(), ys.ravel(), with_bounding_box=False)
    r0, d0 = true_wcs(xs.ravel(), ys.ravel(), with_bounding_box=False)
    dxi = ((r1 - r0 + 180) % 360 - 180) * np.cos(np.radians(d0)) * 3600
    return float(np.mean(dxi)), float(np.mean((d1 - d0) * 3600))


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    """NRCB1 + NRCB2 (F200W, SUB640), 2 exposures; their models after TweakRegStep (defaults).

    SUB640 rather than smaller: tweakreg needs 15 matched stars per exposure."""
    from stdatamodels.jwst.datamodels import ImageModel

    from jwst.assign_wcs.assign_wcs import load_wcs
    from jwst.datamodels import ModelLibrary
    from jwst.tweakreg import TweakRegStep
    from jwstrun.simulate.instruments import get_detector
    from jwstrun.simulate.references import distortion_reference_path, filteroffset_reference_path

    sim = simulate_program(tmp_path_factory.mktemp("align") / "sim", detectors=["NRCB1", "NRCB2"],
                           subarray="SUB640", n_dithers=2, pointing_error=0.3, seed=4)
    truth = {row["file"]: row for row in Table.read(sim.pointing_file)}

    def with_wcs(path, true_pointing=False):
        model = ImageModel(path)
        det = get_detector(model.meta.instrument.detector)
        if true_pointing:
            model.meta.wcsinfo.ra_ref = float(truth[path.name]["ra_ref_true"])
            model.meta.wcsinfo.dec_ref = float(truth[path.name]["dec_ref_true"])
        load_wcs(model, {"distortion": str(distortion_reference_path(sim.crds_path, det)),
                         "filteroffset": str(filteroffset_reference_path(sim.crds_path, det))})
        return model

    true_wcs = {p.name: with_wcs(p, true_pointing=True).meta.wcs for p in sim.rate_files}
    models = [with_wcs(p) for p in sim.rate_files]
    before = {m.meta.filename: _offsets(m.meta.wcs, true_wcs[m.meta.filename], m.data.shape)
              for m in models}
    library = ModelLibrary(models, on_disk=False)
    groups = list(library.group_names)
    result = TweakRegStep().run(library)
    after, status = {}, set()
    with result:
        for model in result:
            after[model.meta.filename] = _offsets(model.meta.wcs, true_wcs[model.meta.filename],
                                                  model.data.shape)
            status.add(model.meta.cal_step.tweakreg)
            result.shelve(model, modify=False)
    return {"sim": sim, "groups": groups, "before": before, "after": after, "status": status}


def _by_exposure(offsets: dict) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list] = {}
    for name, offset in offsets.items():
        out.setdefault(name.rsplit("_", 2)[0], []).append(offset)
    return out


def test_tweakreg_groups_the_detectors_of_an_exposure(aligned):
    assert sorted(aligned["groups"]) == ["jw01234001001_02101_1", "jw01234001001_02101_2"]
    assert aligned["status"] == {"COMPLETE"}


def test_each_exposure_is_off_as_a_whole_before_alignment(aligned):
    exposures = _by_exposure(aligned["before"])
    assert len(exposures) == 2 and all(len(v) == 2 for v in exposures.values())
    for (a, b) in exposures.values():  # NRCB1 and NRCB2 of one exposure: the same error
        assert np.hypot(a[0] - b[0], a[1] - b[1]) < 1e-4
    first = np.array([v[0] for v in exposures.values()])
    spread = np.hypot(*(first - first.mean(axis=0)).T).max()
    assert spread > 0.1, "the simulation must give tweakreg work"


def test_tweakreg_aligns_every_detector(aligned):
    after = np.array(list(aligned["after"].values()))
    rel = after - after.mean(axis=0)  # the common frame offset is arbitrary (no absolute catalog)
    assert np.hypot(rel[:, 0], rel[:, 1]).max() < 0.01, aligned["after"]
