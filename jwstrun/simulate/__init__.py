"""Simulated JWST imaging programs and the local CRDS cache that reduces them offline.

``simulate_program(outdir, ...)`` writes ``*_rate.fits`` (or ``*_rateints.fits``)
exposures named by the JWST convention, dedicated background exposures, truth
tables (ECSV) and a CRDS cache whose reference files are stdatamodels models
(distortion from the real SIAF polynomials) with mappings the stock crds
client resolves without a server.

Modules: ``program`` (the program: setups, scene, exposures, truth tables),
``layout`` (observations, exposure sets of SW/LW filter pairs, one pointing per
exposure for all its detectors),
``exposures`` (one ``_rate``/``_rateints`` file), ``scene`` (sources and PSF),
``instruments`` (detectors, filters, SIAF apertures), ``distortion`` (SIAF
distortion and pixel-area models), ``references`` (the reference files),
``crds_cache`` (mappings and the CRDS environment), ``checks`` (science checks
of pipeline products against the truth), ``effects`` (1/f noise, snowballs and
persistence with their truth, ``--effect``) and ``effect_checks`` (corrected products
against that truth).

The process keeps what is costly to rebuild and the same every time: the pysiaf
apertures, distortion models, the last two full-frame flats and PSF
encircled-energy curves. :func:`clear_caches` forgets them.
"""

from .program import SimulationResult, load_simulation, simulate_program

__all__ = ["SimulationResult", "clear_caches", "load_simulation", "simulate_program"]


def clear_caches() -> None:
    """Forget the SIAF apertures, distortion models, flats and PSF curves this process
    holds (a long-lived notebook or Dask worker; rebuilt, identical, on next use)."""
    from . import distortion, instruments, references, scene

    instruments.clear_caches()
    distortion.clear_caches()
    references.clear_caches()
    scene.clear_caches()
