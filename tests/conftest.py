"""Test-suite wide fixtures."""

from __future__ import annotations

import os

import pytest


def _restore(saved: dict) -> None:
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _restore_environment():
    """Commands run in-process (CliRunner) may set CRDS_* variables the way a real
    ``jwstrun`` process does for its whole life; give every test the environment
    it started with so that one test's CRDS cache or context never leaks into the next."""
    saved = dict(os.environ)
    yield
    _restore(saved)


@pytest.fixture(scope="module", autouse=True)
def _restore_module_environment():
    """The same for module-scoped fixtures (they run before a test's own snapshot):
    autouse fixtures come first in their scope, so this one sees the module's start."""
    saved = dict(os.environ)
    yield
    _restore(saved)


#: The MAST-like folder's program: small, one imaging exposure and one dedicated background
#: (tests/test_simulate.py simulates it again without the extras to show they change
#: nothing else).
MAST_FOLDER_OPTIONS = {"subarray": "SUB64P", "n_dithers": 2, "n_background": 1, "seed": 5}


@pytest.fixture(scope="session")
def mast_folder(tmp_path_factory):
    """A folder as MAST delivers it (``jwstrun simulate --background 1 --extra ta --extra
    grism --extra uncal``): one NIRCam imaging exposure, a dedicated background (BKGDTARG=T),
    a target acquisition, a grism exposure and the imaging exposure's ``_uncal``, with the
    CRDS cache that reduces the imaging one."""
    from jwstrun.simulate import simulate_program

    return simulate_program(tmp_path_factory.mktemp("mast") / "mast",
                            extras=("ta", "grism", "uncal"), **MAST_FOLDER_OPTIONS)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real single-node SLURM (munged, slurmctld, slurmd; tests/_slurm.py) for the whole
    session, stopped at its end; tests point SLURM's commands at it with ``slurm.env``."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import _slurm

    reason = _slurm.unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = _slurm.start_slurm(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def small_reduced_run(tmp_path_factory):
    """A simulated SUB160 program (two dithers) through jwstrun image2 and image3 in one
    OUTDIR: ``{"sim": SimulationResult, "a": OUTDIR}``, shared read-only by the modules
    that compare, reproduce or export a run (tests/test_compare.py, test_reproduce.py)."""
    from jwstrun.runner import run_image2, run_image3
    from jwstrun.simulate import simulate_program

    root = tmp_path_factory.mktemp("reduced")
    sim = simulate_program(root / "sim", subarray="SUB160", n_dithers=2, seed=7)
    env = str(sim.env_file)
    a = root / "a"
    summary = run_image2([str(p) for p in sim.rate_files], a, jobs=2, crds_env_file=env,
                         sets=["steps.resample.skip=true"])
    assert not summary.failed, [r.error for r in summary.failed]
    summary = run_image3(sorted(str(p) for p in a.glob("*_cal.fits")), a, jobs=1,
                         crds_env_file=env)
    assert not summary.failed, [r.error for r in summary.failed]
    return {"sim": sim, "a": a}
