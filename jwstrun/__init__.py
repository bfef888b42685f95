"""jwstrun: run the JWST imaging pipelines (calwebb_image2 / calwebb_image3) at scale.

The functions the command line calls are importable from here for notebooks and
scripts; each returns a result object (with ``to_dict()``) and never prints::

    import jwstrun

    stage2 = jwstrun.run_image2(["data/*_rate.fits"], "out", jobs=4, profiles=["fast"])
    stage2.failed, stage2.outputs                  # RunSummary
    built = jwstrun.make_associations([p for p in stage2.outputs if p.name.endswith("_cal.fits")],
                                      "out/l3_asn.json")
    stage3 = jwstrun.run_image3([built.associations[0].path], "out", jobs=2)
    [r.ok for r in jwstrun.validate_files(stage3.outputs)]

docs/api.md has a complete example (run by tests/test_api.py).

The package never imports jwst, crds or astropy at import time so that
``import jwstrun`` and ``jwstrun --help`` stay fast: the names below are looked
up lazily (PEP 562 module ``__getattr__``), and the heavy modules are imported
inside the functions that need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._version import __version__

#: public name -> module (below jwstrun) that defines it
_API = {
    # associations
    "make_associations": "asn",
    "load_association": "asn",
    "check_association": "asn",
    "AsnBuildResult": "asn",
    "Association": "asn",
    # running the pipelines
    "run_image2": "runner",
    "run_image3": "runner",
    "run_step": "runner",
    "RunSummary": "runner",
    "TaskResult": "runner",
    "DaskOptions": "executors",
    # products
    "validate_file": "validate",
    "validate_files": "validate",
    "product_info": "validate",
    "FileReport": "validate",
    "Finding": "validate",
    # CRDS
    "crds_environment": "refs",
    "applied_crds_environment": "refs",
    "resolve_bestrefs": "refs",
    "prefetch": "refs",
    "doctor": "refs",
    "cut_catalogue": "refs",
    "check_abs_refcat": "refs",
    "Resolution": "refs",
    "PrefetchReport": "refs",
    "DoctorReport": "refs",
    "RefcatCut": "refs",
    # step-parameter profiles
    "list_profiles": "profiles",
    "load_profile": "profiles",
    "load_profiles": "profiles",
    "parse_sets": "profiles",
    "resolve_parameters": "profiles",
    "build_call_parameters": "profiles",
    "Profile": "profiles",
    "ParameterSet": "profiles",
    # simulated data, the demo, looking at results
    "simulate_program": "simulate",
    "load_simulation": "simulate",
    "SimulationResult": "simulate",
    "run_demo": "demo",
    "DemoReport": "demo",
    "preview_files": "look",
    "write_report": "look",
    "diff_runs": "compare",
    "RunDiff": "compare",
    # one output grid for many mosaics
    "make_grid": "mosaic",
    "read_grid": "mosaic",
    "Grid": "mosaic",
    # errors
    "JwstrunError": "errors",
    "InputError": "errors",
    "ConfigError": "errors",
    "CrdsError": "errors",
    "PipelineError": "errors",
    "OutputError": "errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        # AttributeError lets ``from jwstrun import validate`` fall back to the submodule.
        raise AttributeError(f"module 'jwstrun' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})


if TYPE_CHECKING:  # for editors and type checkers; never executed
    from .asn import AsnBuildResult, Association, check_association, load_association, make_associations
    from .compare import RunDiff, diff_runs
    from .demo import DemoReport, run_demo
    from .errors import ConfigError, CrdsError, InputError, JwstrunError, OutputError, PipelineError
    from .executors import DaskOptions
    from .look import preview_files, write_report
    from .mosaic import Grid, make_grid, read_grid
    from .profiles import (
        ParameterSet,
        Profile,
        build_call_parameters,
        list_profiles,
        load_profile,
        load_profiles,
        parse_sets,
        resolve_parameters,
    )
    from .refs import (
        DoctorReport,
        PrefetchReport,
        RefcatCut,
        Resolution,
        applied_crds_environment,
        check_abs_refcat,
        crds_environment,
        cut_catalogue,
        doctor,
        prefetch,
        resolve_bestrefs,
    )
    from .runner import RunSummary, TaskResult, run_image2, run_image3, run_step
    from .simulate import SimulationResult, load_simulation, simulate_program
    from .validate import FileReport, Finding, product_info, validate_file, validate_files
