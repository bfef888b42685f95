"""Compare two runs: their products pair by pair and the facts their manifests record.

* :mod:`~jwstrun.compare.diff`: :func:`diff_runs` (``jwstrun diff RUN_A RUN_B``) pairs
  the products of two OUTDIRs by file name and returns a :class:`RunDiff`: per-array
  statistics of the SCI/ERR/DQ differences (and the DQ bits that changed), the WCS
  offsets at the centre and corners, the catalogs matched by position, and, task by
  task, the versions, CRDS context, reference files and resolved parameters that differ.
* ``jwstrun.compare._products``: one pair of products (arrays, gwcs, catalog, bytes).

Nothing heavy is imported here (numpy, astropy, stdatamodels load inside the functions).
"""

from __future__ import annotations

from .diff import DiffInputError, RunDiff, diff_runs

__all__ = ["DiffInputError", "RunDiff", "diff_runs"]
