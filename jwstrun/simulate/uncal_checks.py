"""Measure calwebb_detector1's products of a simulated ``_uncal`` against its truth.

:func:`detector1_checks` reads the ``_rate`` (slopes) and the ``_ramp`` (GROUPDQ, saved
with ``save_calibrated_ramp``) of one exposure and the simulation's truth
(:mod:`jwstrun.simulate.ramps`) and returns what it measured; :data:`LIMITS` are issue
20's requirements, :func:`failures` lists the ones not met.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .ramps import JUMP_TABLE, SATURATION_TABLE, SLOPE_DIR

__all__ = ["detector1_checks", "failures", "LIMITS", "JUMP_SIGNIFICANCE"]

DO_NOT_USE, SATURATED, JUMP_DET = 1, 2, 4
JUMP_SIGNIFICANCE = 10.0  # recall is measured on jumps this many sigma above the noise

#: name: (low, high) of each measured value
LIMITS = {
    "median_z": (-0.1, 0.1),  # (rate - truth) / ERR over the usable pixels
    "rms_z": (0.85, 1.2),
    "fraction_beyond_5_sigma": (0.0, 1e-3),
    "jump_recall": (0.95, 1.0),
    "jumps_measured": (50, float("inf")),
    "saturated_flagged": (1.0, 1.0),
    "saturated_pixels": (1, float("inf")),
}


def _slopes(rate_path: Path, slope_path: Path) -> dict:
    from astropy.io import fits

    with fits.open(rate_path) as rate:
        sci, err, dq = rate["SCI"].data, rate["ERR"].data, rate["DQ"].data
    truth = fits.getdata(slope_path)
    good = (dq & DO_NOT_USE) == 0
    z = (sci - truth)[good] / err[good]
    return {"usable_fraction": float(good.mean()), "median_z": float(np.median(z)),
            "rms_z": float(np.std(z)), "fraction_beyond_5_sigma": float(np.mean(np.abs(z) > 5))}


def _rows(outdir: Path, table: str, uncal_name: str):
    from astropy.table import Table

    rows = Table.read(outdir / table)
    return rows[rows["file"] == uncal_name]


def detector1_checks(rate_path, ramp_path, simulation_dir, uncal_name: str,
                     unusable_groups=()) -> dict:
    """What detector1 made of one simulated ``_uncal`` (``uncal_name``), against the truth.

    Jumps count when over :data:`JUMP_SIGNIFICANCE` sigma, after the first group, in a
    pixel not DO_NOT_USE, not saturated by then and not in ``unusable_groups`` (MIRI's
    last group, which lastframe flags).
    """
    from astropy.io import fits

    outdir = Path(simulation_dir)
    slope = outdir / SLOPE_DIR / uncal_name.replace("_uncal.fits", "_slope.fits")
    result = _slopes(Path(rate_path), slope)
    with fits.open(ramp_path) as ramp:
        gdq, pdq = ramp["GROUPDQ"].data, ramp["PIXELDQ"].data
    jumps = _rows(outdir, JUMP_TABLE, uncal_name)
    saturated = _rows(outdir, SATURATION_TABLE, uncal_name)
    first_saturated = {(k, x, y): g for k, x, y, g in saturated["integration", "x", "y", "group"]}
    strong = jumps[(jumps["group"] > 0) & (jumps["dn"] > JUMP_SIGNIFICANCE * jumps["sigma_dn"])]
    found = []
    for k, x, y, g in strong["integration", "x", "y", "group"]:
        if pdq[y, x] & DO_NOT_USE or first_saturated.get((k, x, y), g + 1) <= g:
            continue  # no ramp to find it in
        if g in unusable_groups or gdq[k, g, y, x] & DO_NOT_USE:
            continue
        found.append(bool(gdq[k, g, y, x] & JUMP_DET))
    flagged = [bool(np.all(gdq[k, g:, y, x] & SATURATED))
               for k, x, y, g in saturated["integration", "x", "y", "group"]]
    result.update({
        "jump_kinds": sorted(str(kind) for kind in set(jumps["kind"])),
        "jumps_measured": len(found),
        "jump_recall": float(np.mean(found)) if found else float("nan"),
        "saturated_pixels": len(flagged),
        "saturated_flagged": float(np.mean(flagged)) if flagged else float("nan"),
    })
    return result


def failures(measured: dict) -> list[str]:
    """The :data:`LIMITS` that ``measured`` does not meet, as readable lines."""
    return [f"{name} = {measured[name]} outside [{low}, {high}]"
            for name, (low, high) in LIMITS.items()
            if not (low <= measured[name] <= high)]
