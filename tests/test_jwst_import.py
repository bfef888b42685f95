"""jwstrun._jwst_import: one pipeline without jwst/pipeline/__init__.py's other nine."""

import json
import subprocess
import sys

PROBE = """
import json, sys
from jwstrun._jwst_import import import_pipeline_module
from stpipe.utilities import import_class
from jwstrun.runner.task import stage_class  # what a worker calls
pipeline_class = lambda name: stage_class(name[:6].lower())  # Image2Pipeline -> image2
got = {}
for name in ("Image2Pipeline", "Image3Pipeline"):
    cls = pipeline_class(name)
    got[name] = {
        "package_imported": "jwst.pipeline" in sys.modules,
        "heavy": sorted(m for m in ("matplotlib.pyplot", "jwst.ami", "jwst.extract_1d")
                        if m in sys.modules),
        "same_again": pipeline_class(name) is cls,
        "module": cls.__module__,
        "steps": sorted(cls.step_defs),
    }
# stpipe resolving the class by its public name imports the package the usual way:
# the package then re-exports the very classes loaded above.
import jwst.pipeline
for name in ("Image2Pipeline", "Image3Pipeline"):
    cls = pipeline_class(name)
    got[name]["same_as_package"] = getattr(jwst.pipeline, name) is cls
    got[name]["same_via_stpipe"] = import_class("jwst.pipeline." + name) is cls
# once the package is imported, a module it did not load comes the usual way
got["Spec2Pipeline"] = (import_pipeline_module("jwst.pipeline.calwebb_spec2").Spec2Pipeline
                        is jwst.pipeline.Spec2Pipeline)
print(json.dumps(got))
"""


def test_one_pipeline_without_the_others_and_the_classes_jwst_pipeline_exports():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, timeout=300).stdout
    got = json.loads(out.strip().splitlines()[-1])
    image2, image3 = got["Image2Pipeline"], got["Image3Pipeline"]
    assert image2["package_imported"] is False and image3["package_imported"] is False
    assert image2["heavy"] == [] and image3["heavy"] == []
    assert image2["module"] == "jwst.pipeline.calwebb_image2"
    assert image3["module"] == "jwst.pipeline.calwebb_image3"
    for entry in (image2, image3):
        assert entry["same_again"] and entry["same_as_package"] and entry["same_via_stpipe"]
    assert {"assign_wcs", "flat_field", "photom", "resample"} <= set(image2["steps"])
    assert {"tweakreg", "skymatch", "outlier_detection", "resample", "source_catalog"} <= set(
        image3["steps"])
    assert got["Spec2Pipeline"] is True  # with the package imported: the usual import
