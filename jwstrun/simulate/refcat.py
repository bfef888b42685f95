"""The simulated field's astrometric reference catalogue (``refcat.ecsv``), Gaia-like.

What a user downloads from Gaia DR3 for a JWST field: the bright point sources only
(the scene's point sources with an expected combined S/N of at least
:data:`MIN_SNR` on the program's first detector and filter, standing in for Gaia's
magnitude limit), under Gaia DR3's column names (``source_id``, ``ra``, ``dec``,
``ra_error``, ``dec_error``, ``pmra``, ``pmdec``, ``ref_epoch``, ``phot_g_mean_mag``),
with

- positions at Gaia DR3's epoch (:data:`REF_EPOCH`): each star has a proper motion
  (:data:`PROPER_MOTION_MAS_YR` rms per coordinate), and the truth table gives its
  position at the time of the observations, so the catalogue must be moved to the
  observations' epoch (``jwstrun refs refcat``) to match the truth;
- realistic positional noise: :data:`POSITION_ERROR_MAS` rms per coordinate at the
  observations' epoch (Gaia DR3 at G ~ 20 with its proper-motion errors carried over
  several years), given as ``ra_error``/``dec_error``.

Drawn from its own generator (``seed`` and a fixed salt), after everything else, so
the other simulated files do not change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["REFCAT_FILE", "REF_EPOCH", "MIN_SNR", "POSITION_ERROR_MAS",
           "PROPER_MOTION_MAS_YR", "write_refcat"]

REFCAT_FILE = "refcat.ecsv"
#: Gaia DR3's reference epoch (Julian year)
REF_EPOCH = 2016.0
#: the expected combined S/N a point source needs to be in the catalogue
MIN_SNR = 50.0
#: rms positional error per coordinate at the observations' epoch (mas)
POSITION_ERROR_MAS = 7.0
#: rms proper motion per coordinate (mas/yr)
PROPER_MOTION_MAS_YR = 4.0
_SALT = 0x7EFCA7


def write_refcat(outdir: Path, scene, snr: np.ndarray, epoch: float, seed: int) -> Path:
    """Write ``outdir/refcat.ecsv`` from ``scene`` (``snr``: expected S/N of each source;
    ``epoch``: the observations' decimal year) and return its path."""
    from astropy.table import Table

    rng = np.random.default_rng([seed, _SALT])
    chosen = np.flatnonzero((np.asarray(scene.kind) == "point") & (np.asarray(snr) >= MIN_SNR))
    n = len(chosen)
    pmra, pmdec = rng.normal(0.0, PROPER_MOTION_MAS_YR, (2, n))
    noise = rng.normal(0.0, POSITION_ERROR_MAS, (2, n))
    dec_obs = scene.dec[chosen]
    dt = REF_EPOCH - epoch
    mas = 1.0 / 3.6e6
    dec = dec_obs + (pmdec * dt + noise[1]) * mas
    ra = scene.ra[chosen] + (pmra * dt + noise[0]) * mas / np.cos(np.radians(0.5 * (dec + dec_obs)))
    table = Table()
    table["source_id"] = np.arange(1, n + 1, dtype=np.int64) + 4_000_000_000_000
    table["ra"], table["dec"] = ra % 360.0, dec
    table["ra_error"] = table["dec_error"] = np.full(n, POSITION_ERROR_MAS)
    table["pmra"], table["pmdec"] = pmra, pmdec
    table["ref_epoch"] = np.full(n, REF_EPOCH)
    table["phot_g_mean_mag"] = np.round(scene.abmag[chosen], 3)
    for name, unit in (("ra", "deg"), ("dec", "deg"), ("ra_error", "mas"), ("dec_error", "mas"),
                       ("pmra", "mas / yr"), ("pmdec", "mas / yr"), ("ref_epoch", "yr"),
                       ("phot_g_mean_mag", "mag")):
        table[name].unit = unit
    table.meta = {
        "description": "Gaia-DR3-like reference catalogue of the simulated field (jwstrun "
                       "simulate): bright point sources, positions at ref_epoch",
        "observation_epoch": round(float(epoch), 4),
        "position_error_mas": POSITION_ERROR_MAS,
        "min_snr": MIN_SNR,
        "seed": seed,
    }
    path = Path(outdir) / REFCAT_FILE
    table.write(path, format="ascii.ecsv", overwrite=True)
    return path
