"""Intermediate files: what a pipeline writes besides the stage's products.

A step asked to save something (``steps.tweakreg.save_catalogs=true``,
``steps.outlier_detection.save_intermediate_results=true``, a step's
``save_results=true``) writes files that are not the stage's products: the
tweakreg source catalogs ``<member>_cal_cat.ecsv``, outlier_detection's
``_outlier_i2d``, ``_median`` and ``_blot`` images, ``_<step>.fits`` step outputs.
They keep the names strun gives them, but land in
``OUTDIR/intermediate/<task-id>/`` instead of beside the products, where globs
such as ``OUTDIR/*_cal.fits``, a directory given to the next stage or to
``jwstrun validate``, and resume would take them for products (a tweakreg catalog
ends in ``_cat.ecsv`` like image3's source catalog, an ``_outlier_i2d`` in
``_i2d.fits`` like its mosaic).  They are not validated, the manifest lists them
under ``intermediates``, and a task that runs again replaces its folder.

What is a product is the stage's row (:attr:`jwstrun.stages.Stage.writes`,
``member_writes``) applied to the task's product and members
(:func:`jwstrun.runner.expected_outputs`); everything else is an intermediate.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

__all__ = ["INTERMEDIATE_DIRNAME", "step_output_dirs", "split_outputs", "publish_intermediates"]

#: OUTDIR's folder of intermediate files, one sub-folder per task (named by task id, as logs/)
INTERMEDIATE_DIRNAME = "intermediate"


def step_output_dirs(parameters: dict, output_dir: str) -> dict:
    """``parameters`` with ``output_dir`` given to each step asked to save something
    (a ``save_*`` parameter set true) that has no ``output_dir`` of its own.

    stpipe writes a step's own results into the pipeline's ``output_dir``, but
    tweakreg writes its catalogs (``save_catalogs``, ``save_abs_catalog``) into the
    step's own ``output_dir`` -- the current directory when it is unset, as under
    strun.  With it set they land beside the products in the task's directory, and
    from there in OUTDIR/intermediate/.  A step's ``output_dir`` the user set is kept.
    """
    from ..mosaic import spec_bool

    steps = parameters.get("steps") or {}
    asked = [
        name for name, pars in steps.items()
        if isinstance(pars, dict) and pars.get("output_dir") in (None, "")
        and any(key.startswith("save_") and spec_bool(value) for key, value in pars.items())
    ]
    if not asked:
        return parameters
    parameters = json.loads(json.dumps(parameters))  # deep copy: the task's stay as recorded
    for name in asked:
        parameters["steps"][name]["output_dir"] = output_dir
    return parameters


def split_outputs(files: list[Path], expected: list[str] | None) -> tuple[list[Path], list[Path]]:
    """``(products, intermediates)`` among the files a task wrote: products are the
    ``expected`` names (None: every file is a product, as for a task made by hand)."""
    if expected is None:
        return list(files), []
    names = set(expected)
    return [p for p in files if p.name in names], [p for p in files if p.name not in names]


def publish_intermediates(outdir: Path, task_id: str, paths: list[Path]) -> list[str]:
    """Move ``paths`` into ``OUTDIR/intermediate/<task_id>/``, replacing what an earlier
    run of the task left there; their paths relative to OUTDIR.

    Called for every task that succeeded, with or without intermediates: a re-run
    without the save parameters leaves no stale files behind.
    """
    folder = outdir / INTERMEDIATE_DIRNAME / task_id
    if folder.is_symlink():  # never written through a link planted there
        folder.unlink()
    shutil.rmtree(folder, ignore_errors=True)
    if not paths:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for path in sorted(paths):
        os.replace(path, folder / path.name)
        names.append(f"{INTERMEDIATE_DIRNAME}/{task_id}/{path.name}")
    return names
