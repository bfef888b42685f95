"""Import one jwst pipeline without the nine others.

``jwst/pipeline/__init__.py`` imports all ten pipelines eagerly: Ami3Pipeline
brings matplotlib, Detector1Pipeline brings extract_1d and BayesicFitting, and
so on.  ``import jwst.pipeline.calwebb_image2`` runs that ``__init__`` first, so
every worker (and every ``strun`` call) pays for all ten: about 4 s of CPU, of
which Image2Pipeline's own modules are about half (scripts/bench_import.py
measures both side by side).

:func:`import_pipeline_module` loads ``jwst/pipeline/calwebb_image2.py`` as the
module ``jwst.pipeline.calwebb_image2`` with the import system's own finder
and loader, without executing the package's ``__init__``.  Nothing in jwst is
replaced or changed: the module object is the one a later ``import
jwst.pipeline`` finds in ``sys.modules`` and re-exports (so
``jwst.pipeline.Image2Pipeline`` is the class loaded here), its
relative imports (``from ..stpipe import Pipeline``) resolve as usual, and
stpipe's ``import_class("jwst.pipeline.Image2Pipeline")`` still works (it then
imports the package normally).  If anything about that layout is not as
expected, the normal import is used.

One difference remains: a package imported after the module does not get the
attribute ``jwst.pipeline.calwebb_image2`` (the import system sets it only
when it loads the submodule itself; ``import jwst.pipeline.calwebb_image2``
still works).  So the one-pipeline import serves jwstrun's tasks (in the
worker processes it spawns, or on Dask workers); code that runs in a caller's process (the
Python API in a notebook, the parent's cold reads of pipeline specs) imports
``jwst.pipeline`` as usual.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys


def import_pipeline_module(module_name: str):
    """``importlib.import_module(module_name)`` for ``jwst.pipeline.<module>``,
    without importing the package's other pipelines."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    package, _, _leaf = module_name.rpartition(".")
    if package != "jwst.pipeline" or package in sys.modules:
        return importlib.import_module(module_name)
    try:
        package_spec = importlib.util.find_spec(package)  # imports jwst, not jwst.pipeline
        locations = package_spec.submodule_search_locations if package_spec else None
        spec = importlib.machinery.PathFinder.find_spec(module_name, locations) if locations else None
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.loader is None:
        return importlib.import_module(module_name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module

