"""Round two (issue 21): CRDS per exposure, SIGTERM like Ctrl-C, Ctrl-C at any moment,
CRDS_* variables that cannot be used.

Real ``python -m jwstrun`` subprocesses on the simulated program and its CRDS cache
(the stock crds client); no crds, stpipe or jwst function is replaced.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ._helpers import (
    Run,
    assert_no_traceback,
    assert_nothing_half_written,
    assert_same_products,
    image2_args,
    read_manifest,
)


# ----------------------------------------------------------------------------- CRDS
def test_exposure_crds_cannot_match_fails_alone(sim, reference, tmp_path, no_leftover_processes):
    """One exposure dated 1900-01-01 (before every CRDS rule) among three: only its task fails,
    with the CRDS reason in the summary and the manifest; the others run; exit 1."""
    from astropy.io import fits

    inputs = []
    for path in sim.rate_files:
        inputs.append(Path(shutil.copy2(path, tmp_path / path.name)))
    bad = inputs[1]
    fits.setval(bad, "DATE-OBS", value="1900-01-01")
    outdir = tmp_path / "out"
    run = Run(image2_args(sim, outdir, *inputs), tmp_path, name="crds")
    no_leftover_processes.append(run.pid)
    code = run.wait()
    assert code == 1, run.stderr[-3000:]
    assert_no_traceback(run.stderr)
    task_id = "image2-" + bad.name.removesuffix("_rate.fits")
    reason = ("CRDS: no area, distortion, filteroffset, flat, photom reference under "
              "jwst_0001.pmap (NIRCAM NRCB1 F200W CLEAR NRC_IMAGE): No match found. Check the "
              "exposure's header or pin another context with --crds-context.")
    assert f"failed  {task_id}  {reason}" in run.stderr  # the progress line
    assert f"FAILED {task_id}: {reason}" in run.stdout  # the summary
    assert "3 task(s): 2 ok, 0 up to date (skipped), 1 failed" in run.stdout
    assert "Error: 1 of 3 task(s) failed" in run.stderr
    manifest = read_manifest(outdir)
    assert {k: r["status"] for k, r in manifest["tasks"].items()} == {
        "image2-" + p.name.removesuffix("_rate.fits"): "ok" if p != bad else "failed"
        for p in inputs}
    record = manifest["tasks"][task_id]
    assert record["error"] == reason and record["error_type"] == "CrdsError"
    assert manifest["runs"][-1]["counts"] == {"ok": 2, "skipped": 0, "failed": 1}
    assert_nothing_half_written(outdir)
    assert_same_products(outdir, reference["outdir"],
                         names=[p.name.removesuffix("_rate.fits") for p in inputs if p != bad])
