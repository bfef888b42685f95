"""Reproduce a recorded run, or export it as a bundle that needs no jwstrun.

* :mod:`~jwstrun.reproduce._recorded`: a manifest's task records as the runner calls
  that redo them, and what differs here (inputs, versions, CRDS context...);
* :mod:`~jwstrun.reproduce.run`: :func:`reproduce_run` (``jwstrun reproduce``), through
  :func:`jwstrun.runner.run_image2` / ``run_image3`` / ``run_step``;
* :mod:`~jwstrun.reproduce.export`: :func:`export_run` (``jwstrun export``): the
  associations, one stpipe parameter ASDF per stage or step, the CRDS context and a
  ``run.sh`` of strun commands.

Nothing heavy is imported here (jwst/stpipe load inside the functions).
"""

from __future__ import annotations

from ._recorded import Call, Difference, Recorded, ReproduceError, read_recorded
from .export import ExportResult, export_run
from .run import ReproduceSummary, reproduce_run

__all__ = ["Call", "Difference", "Recorded", "ReproduceError", "read_recorded",
           "ReproduceSummary", "reproduce_run", "ExportResult", "export_run"]
