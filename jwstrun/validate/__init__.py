"""Check that a JWST product is what it claims to be, and summarise it.

:func:`validate_file` turns each problem of a product (a missing extension, a
step that skipped itself, DN/s in a ``_cal`` file, a truncated write...) into a
:class:`Finding` in a :class:`FileReport` and never raises for a bad file;
:func:`product_info` is ``jwstrun info``.  No datamodel is loaded and nothing
heavy is imported until a file is checked.

Inside:

- ``findings``: :class:`Finding`, :class:`FileReport`, the severities;
- ``checks``: :func:`validate_file`, :func:`validate_files` and the per-product
  checks (step statuses, units and photometry, pixel data); ``_layout`` the
  structure checks (extensions, dtypes, shapes, the ASDF tree against them);
- ``catalog``: the checks of ``*_cat.ecsv`` source catalogs;
- ``_schemas``: what a valid product looks like (:data:`PRODUCT_LAYOUTS`, the
  required steps from the stage table, the stdatamodels schema tables);
- ``_asdf``: reading and parsing the ASDF extension, loading its WCS;
- ``_hdus``: FITS header layout and early-stopping data scans;
- ``info``: :func:`product_info`.
"""

from __future__ import annotations

from . import _asdf, _schemas
from ._schemas import (
    PRODUCT_LAYOUTS,
    VALIDATED_TYPES,
    recorded_status,
    schema_layout,
    step_status_keys,
    step_status_keyword,
)
from .checks import validate_file, validate_files
from .findings import ERROR, WARNING, FileReport, Finding
from .info import product_info

__all__ = [
    "step_status_keyword",
    "recorded_status",
    "ERROR",
    "WARNING",
    "VALIDATED_TYPES",
    "PRODUCT_LAYOUTS",
    "Finding",
    "FileReport",
    "validate_file",
    "validate_files",
    "product_info",
    "step_status_keys",
    "schema_layout",
    "clear_caches",
]


def clear_caches() -> None:
    """Forget what validation caches for the life of the process.

    The stdatamodels schemas read as YAML (layouts, step-status keywords) and the
    ASDF tree loader are built on first use and kept; a long-lived session (a
    notebook, a Dask worker) that installs another stdatamodels, or wants the memory
    back, calls this.  Everything is rebuilt on next use.
    """
    _schemas.clear_caches()
    _asdf.clear_caches()
