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


def _shared_root(tmp_path_factory):
    """The test run's temporary folder, above every pytest-xdist worker's own."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


def made_once(tmp_path_factory, name: str, build):
    """``build(folder)`` run once per test run, whichever pytest-xdist worker asks first
    (the others wait for it, then get the same result, unpickled): for what several
    modules make alike and only read."""
    import fcntl
    import pickle
    import shutil

    root = _shared_root(tmp_path_factory)
    folder = root / f"shared-{name}"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / f"shared-{name}.pickle"
        if done.exists():
            return pickle.loads(done.read_bytes())
        shutil.rmtree(folder, ignore_errors=True)  # a worker that failed half-way
        folder.mkdir()
        result = build(folder)
        done.write_bytes(pickle.dumps(result))
        return result


@pytest.fixture(scope="session")
def shared_simulation(tmp_path_factory):
    """``shared_simulation(**options)``: ``simulate_program(**options)`` made once per test
    run (:func:`made_once`), shared read-only by the modules that simulate the same program
    (a simulation costs more than the pipelines on it, most of it the datamodels' schemas)."""
    import hashlib
    import json

    from jwstrun.simulate import simulate_program

    def make(**options):
        key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:12]
        return made_once(tmp_path_factory, f"sim-{key}",
                         lambda folder: simulate_program(folder / "sim", **options))

    return make


#: The programs several modules simulate alike (through ``shared_simulation``).
SUB160_TWO = {"subarray": "SUB160", "n_dithers": 2, "seed": 7}
SUB640_FOUR = {"subarray": "SUB640", "n_dithers": 4, "seed": 11, "detectors": ["NRCB1"],
               "filters": ["F200W"]}
SUB640_TWO = {**SUB640_FOUR, "n_dithers": 2}


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
def small_reduced_run(tmp_path_factory, shared_simulation):
    """A simulated SUB160 program (two dithers) through jwstrun image2 and image3 in one
    OUTDIR: ``{"sim": SimulationResult, "a": OUTDIR}``, made once per test run and shared
    read-only by the modules that compare, reproduce or export a run (tests/test_compare.py,
    test_reproduce.py) or take its _cal files (test_intermediates.py)."""
    from jwstrun.runner import run_image2, run_image3

    sim = shared_simulation(**SUB160_TWO)
    env = str(sim.env_file)

    def build(root):
        a = root / "a"
        summary = run_image2([str(p) for p in sim.rate_files], a, jobs=2, crds_env_file=env,
                             sets=["steps.resample.skip=true"])
        assert not summary.failed, [r.error for r in summary.failed]
        summary = run_image3(sorted(str(p) for p in a.glob("*_cal.fits")), a, jobs=1,
                             crds_env_file=env)
        assert not summary.failed, [r.error for r in summary.failed]
        return {"sim": sim, "a": a}

    return made_once(tmp_path_factory, "reduced", build)


@pytest.fixture(scope="session")
def sub640_cal(tmp_path_factory, shared_simulation):
    """``jwstrun image2 -j 2`` (default parameters) on :data:`SUB640_FOUR`'s four exposures,
    made once per test run: the folder of their _cal files, for test_image3_equal and
    test_mosaic to hard-link into folders of their own (never to write into)."""
    from click.testing import CliRunner

    from jwstrun.cli import cli

    sim = shared_simulation(**SUB640_FOUR)

    def build(root):
        result = CliRunner().invoke(cli, [
            "image2", *map(str, sim.rate_files), "-o", str(root / "cal"), "-j", "2",
            "--crds-env", str(sim.env_file), "--no-progress",
        ], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert len(list((root / "cal").glob("*_cal.fits"))) == 4
        return root / "cal"

    return made_once(tmp_path_factory, "sub640-cal", build)
