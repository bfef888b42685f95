"""Simulated JWST imaging programs and the local CRDS cache that reduces them offline.

``simulate_program(outdir, ...)`` writes ``*_rate.fits`` (or ``*_rateints.fits``)
exposures named by the JWST convention, dedicated background exposures, truth
tables (ECSV) and a CRDS cache whose reference files are stdatamodels models
(distortion from the real SIAF polynomials) with mappings the stock crds
client resolves without a server.
"""

from .program import SimulationResult, load_simulation, simulate_program

__all__ = ["SimulationResult", "load_simulation", "simulate_program"]
