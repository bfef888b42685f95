"""See the results: PNG quick looks, the static HTML run report, hand-off to viewers.

* :mod:`~jwstrun.look.preview`: :func:`preview_file` / :func:`preview_files`
  draw rate, cal, crf and i2d products (and their per-integration variants)
  with a robust stretch, a colour bar in the product's BUNIT, DQ-flagged pixels
  on request, the ``_cat.ecsv`` sources on an i2d, and the i2d's WHT and CON maps.
* :mod:`~jwstrun.look.report`: :func:`write_report` writes
  ``OUTDIR/jwstrun-report.html``: one page with no network resources and no
  JavaScript -- task table, timings, memory, validation, CRDS references,
  resolved parameters, thumbnails linking to full previews, and what the
  products say of the alignment (:func:`tweakreg_shifts`: the _cal against the
  _crf WCS), the sky levels (:func:`skymatch_levels`: the crf headers) and the
  catalog magnitudes (against a ``truth`` catalog when one is given).
* ``jwstrun.look._worker``: the previews the runner's workers draw as each task
  ends (run as ``python -m jwstrun.look._worker`` for the helper process); the
  report reuses them.
* :mod:`~jwstrun.look.viewers`: :func:`view_file` opens a product in ginga,
  glue or ds9; :func:`load_in_viewer` loads it through the viewer's own API
  without a window (what ``jwstrun view --check`` and the tests use).

Nothing heavy is imported here: matplotlib, astropy and numpy are imported
inside the functions (``jwstrun --help`` stays fast).  The package keeps no
module-level caches.
"""

from __future__ import annotations

from ._science import skymatch_levels, tweakreg_shifts
from .preview import (
    MAX_PREVIEWS,
    NAN_COLOUR,
    PREVIEW_DIRNAME,
    PREVIEW_TYPES,
    STRETCHES,
    Preview,
    preview_file,
    preview_files,
)
from .report import REPORT_NAME, find_run_dir, preload_report_modules, write_report
from .viewers import VIEWERS, load_in_viewer, view_file, viewer_status

__all__ = [
    "PREVIEW_TYPES",
    "STRETCHES",
    "VIEWERS",
    "REPORT_NAME",
    "PREVIEW_DIRNAME",
    "MAX_PREVIEWS",
    "NAN_COLOUR",
    "Preview",
    "preview_file",
    "preview_files",
    "find_run_dir",
    "tweakreg_shifts",
    "skymatch_levels",
    "write_report",
    "preload_report_modules",
    "viewer_status",
    "load_in_viewer",
    "view_file",
]
