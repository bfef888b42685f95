"""Image3 at scale: the output mosaic and the memory it needs, estimated before anything runs.

The package: :mod:`~jwstrun.mosaic.grid` (footprints and the output grid),
:mod:`~jwstrun.mosaic.gridfile` (one grid for many mosaics: ``jwstrun grid``),
:mod:`~jwstrun.mosaic.memory` (the memory model and the budget) and
:mod:`~jwstrun.mosaic.plan` (one association's estimate and memory mode).

calwebb_image3 is one big job per Level-3 association, and memory is where it
breaks (jwst issues 8065 and 8779: large NIRCam mosaics; 5081: one bad WCS
asked resample for a mosaic of tens of TiB).  Before any step runs, jwstrun

1. predicts each association's output grid the way jwst 3.0's resample does:
   the members' ``S_REGION`` footprints (written by assign_wcs into the SCI
   header; resample itself reads exactly these through
   ``ModelLibrary.read_metadata``) are handed to stcal's
   ``wcs_from_sregions`` with the reference exposure's ``wcsinfo`` (roll,
   V3 Y angle, parity) and the resample step's ``pixel_scale_ratio``,
   ``pixel_scale``, ``rotation``, ``output_shape``, ``crpix`` and ``crval``
   from the profiles and ``--set``.  The input pixel scale is the linear part
   of the header's SIP approximation at CRPIX (resample measures the full
   distortion model at the same point; the two agree to well under 1 %);
2. refuses a mosaic beyond ``max_mosaic_pixels`` and names the inputs whose
   footprints lie far from the rest (a pointing wrong by degrees);
3. estimates the peak memory of the worker in memory and on disk
   (:func:`estimate_memory`) and chooses, within each association's share of
   the memory budget, the pipeline's in-memory mode, its on-disk mode
   (``in_memory=False``), or a refusal.

What ``in_memory`` does in jwst 3.0 (read in the installed source):
``Image3Pipeline.in_memory=False`` opens the association as a
``ModelLibrary(on_disk=True)``: each exposure is read when borrowed and
written to a temporary file when returned, so only one exposure is held at a
time; outlier_detection then computes its median with stcal's
``MedianComputer(in_memory=False)``, which streams each resampled group into
temporary files and takes the median section by section.  The steps' own
``in_memory`` parameters (tweakreg, skymatch, outlier_detection, resample) are
ignored inside the pipeline, which hands them the library; resample's only
applies to ``single=True``.  The temporary files go to the worker's current
directory, which jwstrun makes the task's directory under
``OUTDIR/.jwstrun-tmp``.  The other memory-saving options jwst offers change
the products -- resample ``enable_ctx=False`` (no CON array),
``enable_err=False`` / ``report_var=False`` (no ERR / VAR arrays),
``pixmap_stepsize`` > 1 (interpolated pixel map), a larger ``pixel_scale`` --
so jwstrun never turns them on by itself; the refusal message names them.
"""

from .grid import GRID_PARAMETERS, Footprint, far_inputs, mosaic_shape, read_footprint
from .gridfile import Grid, GridError, GridNotCovering, make_grid, read_grid, write_grid
from .memory import (
    DEFAULT_MEMORY_FRACTION,
    default_max_mosaic_pixels,
    estimate_memory,
    format_bytes,
    memory_budget,
    parse_size,
)
from .plan import (
    MemoryPlan,
    MosaicEstimate,
    MosaicRefused,
    decide,
    estimate_association,
    spec_bool,
)

__all__ = [
    "DEFAULT_MEMORY_FRACTION",
    "Footprint",
    "MosaicEstimate",
    "MemoryPlan",
    "read_footprint",
    "mosaic_shape",
    "far_inputs",
    "estimate_memory",
    "estimate_association",
    "memory_budget",
    "parse_size",
    "format_bytes",
    "decide",
    "default_max_mosaic_pixels",
    "GRID_PARAMETERS",
    "MosaicRefused",
    "spec_bool",
    "Grid",
    "GridError",
    "GridNotCovering",
    "make_grid",
    "read_grid",
    "write_grid",
]
