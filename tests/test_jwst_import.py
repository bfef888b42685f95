"""jwstrun._jwst_import: one pipeline without jwst/pipeline/__init__.py's other nine."""

import json
import subprocess
import sys

PROBE = """
import json, sys
from jwstrun._jwst_import import pipeline_class
cls = pipeline_class(sys.argv[1])
alone = "jwst.pipeline" in sys.modules
heavy = sorted(m for m in ("matplotlib.pyplot", "jwst.ami", "jwst.extract_1d") if m in sys.modules)
again = pipeline_class(sys.argv[1])
from stpipe.utilities import import_class
via_stpipe = import_class("jwst.pipeline." + sys.argv[1])
import jwst.pipeline
print(json.dumps({
    "package_imported_first": alone,
    "heavy": heavy,
    "same_again": again is cls,
    "same_as_package": getattr(jwst.pipeline, sys.argv[1]) is cls,
    "same_via_stpipe": via_stpipe is cls,
    "module": cls.__module__,
    "steps": sorted(cls.step_defs),
}))
"""


def _probe(class_name):
    out = subprocess.run([sys.executable, "-c", PROBE, class_name], capture_output=True,
                         text=True, check=True, timeout=300).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_image2_without_the_other_pipelines_and_the_same_class():
    got = _probe("Image2Pipeline")
    assert got["package_imported_first"] is False
    assert got["heavy"] == []
    assert got["module"] == "jwst.pipeline.calwebb_image2"
    assert got["same_again"] and got["same_as_package"] and got["same_via_stpipe"]
    assert {"assign_wcs", "flat_field", "photom", "resample"} <= set(got["steps"])


def test_image3_is_the_class_jwst_pipeline_exports():
    got = _probe("Image3Pipeline")
    assert got["package_imported_first"] is False
    assert got["same_as_package"] and got["same_via_stpipe"]
    assert {"tweakreg", "skymatch", "outlier_detection", "resample", "source_catalog"} <= set(
        got["steps"]
    )


def test_a_class_it_does_not_know_comes_from_the_package():
    out = subprocess.run(
        [sys.executable, "-c",
         "import sys; from jwstrun._jwst_import import pipeline_class;"
         "c = pipeline_class('Spec2Pipeline'); print(c.__name__, 'jwst.pipeline' in sys.modules)"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout.split()
    assert out[-2:] == ["Spec2Pipeline", "True"]
