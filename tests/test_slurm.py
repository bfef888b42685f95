"""jwstrun on a real SLURM: munged, slurmctld and slurmd started by the ``slurm`` fixture
(tests/_slurm.py, conftest.py), jobs submitted with the real ``sbatch``.

One small simulation (NIRCam SUB160, four dithers) serves every test: image2 and image3
through ``--cluster slurm`` (dask-jobqueue workers in batch jobs) with products
identical to the local pool's, the job ids in the manifest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask_jobqueue")

ARRAYS = {"cal": ("SCI", "ERR", "DQ"), "i2d": ("SCI", "ERR", "WHT", "CON")}


def jwstrun(args, slurm, cwd, check=True, timeout=300) -> subprocess.CompletedProcess:
    """``jwstrun ARGS`` in a process of its own, with SLURM's commands pointed at the
    test cluster (as a user's shell on the login node would have them)."""
    result = subprocess.run([sys.executable, "-m", "jwstrun", *map(str, args)], cwd=cwd,
                            env={**os.environ, **slurm.env}, capture_output=True, text=True,
                            timeout=timeout)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def cluster_args(tmp: Path) -> list[str]:
    return ["--cluster", "slurm", "--cluster-cores", "1", "--cluster-memory", "2GB",
            "--cluster-walltime", "00:10:00", "--cluster-option", "interface=lo",
            "--cluster-option", f"log_directory={tmp / 'joblogs'}"]


def assert_same_products(dir_a: Path, dir_b: Path, names) -> None:
    from astropy.io import fits

    for name in names:
        kind = "i2d" if name.endswith("_i2d.fits") else "cal"
        with fits.open(dir_a / name) as a, fits.open(dir_b / name) as b:
            for ext in ARRAYS[kind]:
                np.testing.assert_array_equal(a[ext].data, b[ext].data, err_msg=f"{name}[{ext}]")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from jwstrun.simulate import simulate_program

    return simulate_program(tmp_path_factory.mktemp("slurm-sim") / "sim", subarray="SUB160",
                            n_dithers=4, seed=11)


@pytest.fixture(scope="module")
def local_image2(sim, tmp_path_factory):
    """The reference: the local pool, -j 2."""
    from jwstrun.runner import run_image2

    outdir = tmp_path_factory.mktemp("slurm-local") / "image2"
    summary = run_image2([str(p) for p in sim.rate_files], outdir, jobs=2,
                         crds_env_file=str(sim.env_file))
    assert not summary.failed, [r.error for r in summary.failed]
    return summary


@pytest.fixture(scope="module")
def slurm_image2(sim, slurm, tmp_path_factory):
    """The same exposures through ``jwstrun image2 --cluster slurm`` on the real SLURM."""
    tmp = tmp_path_factory.mktemp("slurm-image2")
    result = jwstrun(["image2", *sim.rate_files, "-o", tmp / "out", "--crds-env", sim.env_file,
                      *cluster_args(tmp), "--json", "--no-progress"], slurm, tmp)
    return tmp / "out", json.loads(result.stdout), slurm.jobs()


def test_slurm_image2_products_identical_to_local_pool(local_image2, slurm_image2):
    outdir, summary, _jobs = slurm_image2
    assert summary["counts"] == {"total": 4, "ok": 4, "skipped": 0, "failed": 0}
    names = sorted(n for r in local_image2.results for n in r.outputs)
    assert sorted(n for t in summary["tasks"] for n in t["outputs"]) == names
    assert len(names) == 8  # _cal and _i2d per exposure
    assert_same_products(local_image2.outdir, outdir, names)
    assert summary["jobs_reason"] == "SLURM via dask-jobqueue: 1 job(s) x 1 worker process(es)"


def test_slurm_manifest_records_the_batch_jobs(slurm_image2):
    """Every record names the SLURM job its worker ran in: a dask-worker job squeue knows."""
    outdir, summary, jobs = slurm_image2
    workers = {j["id"] for j in jobs if j["name"] == "dask-worker"}
    manifest = json.loads((outdir / "jwstrun-manifest.json").read_text())
    recorded = {r["batch_job_id"] for r in manifest["tasks"].values()}
    assert len(recorded) == 1 and recorded <= workers, (recorded, jobs)
    assert {t["batch_job_id"] for t in summary["tasks"]} == recorded
    assert {r["host"] for r in manifest["tasks"].values()} == {os.uname().nodename}
    # The parent ran outside any job; the workers' jobs ended with the run.
    assert manifest["runs"][-1]["batch_job_id"] is None
    assert not (outdir / ".jwstrun.lock").exists()


def test_slurm_image3_from_a_parent_submitted_as_a_job(sim, local_image2, slurm_image2, slurm,
                                                       tmp_path):
    """The documented parent job (docs/workflows/cluster.md): jwstrun image3 --cluster slurm
    runs inside a batch job and submits the job of workers from there; the mosaic is
    identical to the local pool's."""
    from jwstrun.runner import run_image3

    outdir, _summary, _jobs = slurm_image2
    local = run_image3([str(p) for p in sorted(local_image2.outdir.glob("*_cal.fits"))],
                       tmp_path / "local3", jobs=1, crds_env_file=str(sim.env_file))
    assert not local.failed, [r.error for r in local.failed]
    project = tmp_path / "project"
    (project / "logs").mkdir(parents=True)
    (project / "out").symlink_to(outdir)
    (project / "crds.env").write_text(Path(sim.env_file).read_text())
    (project / "parent.sh").write_text(doc_script("parent-job-script", {
        "cd /shared/project": f"cd {project}", "--mem=4G": "--mem=1G",
        "--cluster-jobs 4 --cluster-cores 4 --cluster-memory 32GB":
            "--cluster-jobs 1 --cluster-cores 1 --cluster-memory 2GB",
        "interface=ib0": "interface=lo", "--no-progress": "--no-progress --no-report"}))
    parent = submit(slurm, project, "parent.sh")
    slurm.wait_idle(timeout=240)
    log = (project / "logs" / f"jwst-parent-{parent}.out").read_text()
    assert "1 task(s): 1 ok, 0 up to date (skipped), 0 failed" in log, log
    manifest = json.loads((project / "mosaics" / "jwstrun-manifest.json").read_text())
    (record,) = manifest["tasks"].values()
    assert manifest["runs"][-1]["batch_job_id"] == parent  # the parent ran in its job
    workers = {j["id"] for j in slurm.jobs() if j["name"] == "dask-worker"}
    assert record["batch_job_id"] in workers and record["batch_job_id"] != parent
    (mosaic,) = [n for n in record["outputs"] if n.endswith("_i2d.fits")]
    assert_same_products(local.outdir, project / "mosaics", [mosaic])


@pytest.mark.timeout(120)
def test_slurm_job_script_carries_resources_and_runs_workers(slurm, tmp_path, monkeypatch):
    """The job script dask-jobqueue submits carries the resources and pass-through options;
    SLURM accepts it and the worker it starts runs tasks inside that job."""
    sys.path.insert(0, str(Path(__file__).parent))
    import pool_tasks

    from jwstrun.executors import DaskExecutor, DaskOptions

    for key, value in slurm.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    options = DaskOptions(
        cluster="slurm", cluster_cores=1, cluster_memory="1GB", cluster_walltime="00:10:00",
        cluster_options={"interface": "lo", "queue": "debug", "account": "abc123",
                         "log_directory": str(tmp_path / "logs"),
                         "scheduler_options": {"dashboard_address": "127.0.0.1:0"}},
    )
    executor = DaskExecutor(pool_tasks.run_pool_task, pool_tasks.lost_result, options=options,
                            env={"OMP_NUM_THREADS": "1", "CRDS_PATH": "/not/exported"})
    with executor:
        executor.start()
        script = executor.job_script()
        executor.submit(pool_tasks.PoolTask("remote"))
        (result,) = list(executor.as_completed())
    for line in ("#SBATCH -p debug", "#SBATCH -A abc123", "#SBATCH -n 1",
                 "#SBATCH --cpus-per-task=1", "#SBATCH --mem=954M", "#SBATCH -t 00:10:00",
                 "export OMP_NUM_THREADS=1"):
        assert line in script, script
    assert "CRDS_PATH" not in script  # CRDS settings travel with each task instead
    assert "tcp://127.0.0.1:" in script  # the scheduler listens on the interface asked for
    assert result["status"] == "ok"
    job = {j["id"]: j for j in slurm.jobs()}[result["slurm_job"]]
    assert job["name"] == "dask-worker"


# --------------------------------------------------------------------------
# A job array of shards into one OUTDIR: the script of docs/workflows/cluster.md
# --------------------------------------------------------------------------
CLUSTER_MD = Path(__file__).resolve().parents[1] / "docs" / "workflows" / "cluster.md"


def doc_script(anchor: str, replacements: dict[str, str]) -> str:
    """The batch script under ``<!-- ANCHOR -->`` in docs/workflows/cluster.md, with test
    paths and test-sized requests put in (each replaced text must be there)."""
    text = CLUSTER_MD.read_text()
    block = text[text.index(f"<!-- {anchor} -->"):]
    start = block.index("```bash\n") + len("```bash\n")
    script = block[start:block.index("\n```", start)] + "\n"
    for old, new in replacements.items():
        assert old in script, (old, script)
        script = script.replace(old, new)
    return script


def array_script(project: Path) -> str:
    """The documented ``sbatch --array`` script, for this project directory and with a
    test-sized request (1 CPU, 1 GB per shard)."""
    return doc_script("image2-array-script", {
        "cd /shared/project": f"cd {project}", "--cpus-per-task=4": "--cpus-per-task=1",
        "--mem=16G": "--mem=1G"})


def project_dir(root: Path, sim) -> Path:
    """/shared/project of the docs: data/ with the exposures, crds.env, logs/."""
    (root / "data").mkdir(parents=True)
    (root / "logs").mkdir()
    for path in sim.rate_files:
        (root / "data" / Path(path).name).symlink_to(path)
    (root / "crds.env").write_text(Path(sim.env_file).read_text())
    (root / "image2-array.sh").write_text(array_script(root))
    return root


def submit(slurm, project: Path, *args: str) -> str:
    """sbatch [ARGS] SCRIPT (image2-array.sh unless a .sh is given) in ``project``; the job id."""
    script = [] if any(a.endswith(".sh") for a in args) else ["image2-array.sh"]
    env_path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    out = subprocess.run(["sbatch", "--parsable", *args, *script], cwd=project,
                         env={**os.environ, **slurm.env, "PATH": env_path}, text=True,
                         capture_output=True, check=True).stdout
    return out.strip().split(";")[0]


def status(slurm, outdir: Path) -> dict:
    return json.loads(jwstrun(["status", outdir, "--json"], slurm, outdir.parent).stdout)


@pytest.fixture(scope="module")
def array_run(sim, slurm, tmp_path_factory):
    project = project_dir(tmp_path_factory.mktemp("slurm-array") / "project", sim)
    job = submit(slurm, project)
    slurm.wait_idle(timeout=240)
    return project, job


def test_slurm_array_shards_fill_one_outdir_like_a_single_run(array_run, local_image2, slurm):
    project, job = array_run
    outdir = project / "out"
    logs = sorted((project / "logs").glob("jwst-image2-*.out"))
    assert [p.name for p in logs] == [f"jwst-image2-{job}_{k}.out" for k in range(1, 5)]
    for log in logs:
        assert "Error" not in log.read_text() and "in use" not in log.read_text(), log.read_text()
    names = sorted(n for r in local_image2.results for n in r.outputs)
    assert sorted(p.name for p in outdir.glob("*.fits")) == names  # every product, once
    assert_same_products(local_image2.outdir, outdir, names)
    manifest = json.loads((outdir / "jwstrun-manifest.json").read_text())
    assert sorted(manifest["tasks"]) == sorted(r.task_id for r in local_image2.results)
    assert {r["status"] for r in manifest["tasks"].values()} == {"ok"}
    assert sorted(r["batch_job_id"] for r in manifest["tasks"].values()) == [
        f"{job}_{k}" for k in range(1, 5)]
    assert sorted(r["shard"] for r in manifest["runs"]) == ["1/4", "2/4", "3/4", "4/4"]
    # the four shards ran at the same time (SLURM started them together)
    from datetime import datetime

    starts = [datetime.strptime(r["start"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
              for r in manifest["runs"]]
    ends = [start + r["wall_s"] for start, r in zip(starts, manifest["runs"], strict=True)]
    assert max(starts) < min(ends), manifest["runs"]
    assert not (outdir / ".jwstrun-tmp").exists()
    report = status(slurm, outdir)
    assert report["complete"] is True
    assert report["counts"] == {"done": 4, "failed": 0, "running": 0, "missing": 0}
    assert sorted(t["shard"] for t in report["tasks"]) == [1, 2, 3, 4]
    text = jwstrun(["status", outdir], slurm, project).stdout
    assert text.rstrip().endswith("4 task(s): 4 done, 0 failed, 0 running, 0 missing; complete")


def test_slurm_array_shard_killed_then_submitted_again_completes_the_set(
        sim, slurm, local_image2, tmp_path):
    """scancel one shard while its task runs: what finished is kept, its task is missing;
    submitting that index again (alone: shard 1/1) runs just what is missing."""
    import time

    project = project_dir(tmp_path / "project", sim)
    job = submit(slurm, project)
    outdir = project / "out"
    deadline = time.monotonic() + 120
    victim = None
    while victim is None and time.monotonic() < deadline:
        claims = [json.loads(p.read_text()) for p in (outdir / ".jwstrun-locks").glob("image2-*")
                  ] if (outdir / ".jwstrun-locks").exists() else []
        victim = next((c for c in claims if c.get("shard") == "2/4"), None)
        time.sleep(0.2)
    assert victim is not None, slurm.jobs()
    from jwstrun.runner.status import outdir_status

    running = {t.task_id: t for t in outdir_status(outdir).tasks}[victim["task_id"]]
    assert (running.state, running.shard) == ("running", 2)
    assert running.detail.startswith("shard 2/4, pid ") and running.detail.endswith(
        f", job {job}_2")
    slurm.run("scancel", f"{job}_2")
    slurm.wait_idle(timeout=240)
    report = status(slurm, outdir)
    states = {t["task_id"]: t["state"] for t in report["tasks"]}
    assert states[victim["task_id"]] == "missing", report
    assert report["counts"] == {"done": 3, "failed": 0, "running": 0, "missing": 1}
    again = submit(slurm, project, "--array=2")
    slurm.wait_idle(timeout=240)
    log = (project / "logs" / f"jwst-image2-{again}_2.out").read_text()
    assert "4 task(s): 1 ok, 3 up to date (skipped), 0 failed" in log, log
    report = status(slurm, outdir)
    assert report["complete"] is True, report
    names = sorted(n for r in local_image2.results for n in r.outputs)
    assert sorted(p.name for p in outdir.glob("*.fits")) == names
    assert_same_products(local_image2.outdir, outdir, names)
    manifest = json.loads((outdir / "jwstrun-manifest.json").read_text())
    assert manifest["tasks"][victim["task_id"]]["batch_job_id"] == f"{again}_2"


@pytest.mark.slow  # two shards of a tiled image3 (align, then 2 x several tiles): ~1-2 min
def test_slurm_array_spreads_the_tiles_of_one_mosaic(sim, local_image2, slurm, tmp_path):
    """The documented tiles array (2 tasks) on the four _cal files (one association): shard
    1 aligns, shard 2 waits for it, and each array task runs tiles of that association."""
    project = tmp_path / "project"
    (project / "out").mkdir(parents=True)
    (project / "logs").mkdir()
    for path in local_image2.outdir.glob("*_cal.fits"):
        (project / "out" / path.name).symlink_to(path)
    (project / "crds.env").write_text(Path(sim.env_file).read_text())
    (project / "tiles-array.sh").write_text(doc_script("tiles-array-script", {
        "cd /shared/project": f"cd {project}", "--array=1-8": "--array=1-2",
        "--cpus-per-task=4": "--cpus-per-task=1", "--mem=32G": "--mem=1G",
        "--tile-size 2arcmin": "--tile-size 96",
        "--no-progress": "--no-progress --set steps.tweakreg.skip=true "
                         "--set steps.source_catalog.skip=true"}))
    job = submit(slurm, project, "tiles-array.sh")
    slurm.wait_idle(timeout=600)
    logs = [(project / "logs" / f"jwst-tiles-{job}_{k}.out").read_text() for k in (1, 2)]
    for text in logs:
        assert "Error" not in text, text
    assert "shard 2/2: waiting for 1 align task(s) of other shards" in logs[1], logs[1]
    manifest = json.loads((project / "tiles" / "jwstrun-manifest.json").read_text())
    records = manifest["tasks"].values()
    (align,) = [r for r in records if r["pipeline"] == "image3-align"]
    assert align["status"] == "ok" and align["batch_job_id"] == f"{job}_1"
    tiles = [r for r in records if r["pipeline"] == "image3-tile" and r["status"] == "ok"]
    assert {r["product"].rsplit("_", 1)[0] for r in tiles} == {align["product"]}
    assert {r["batch_job_id"] for r in tiles} == {f"{job}_1", f"{job}_2"}, tiles
    report = status(slurm, project / "tiles")
    assert report["complete"] is True, report


# --------------------------------------------------------------------------
# Errors, scancel and wall time with --cluster slurm
# --------------------------------------------------------------------------
def _no_ipv4_interface() -> str | None:
    import socket

    import psutil

    return next((name for name, addrs in sorted(psutil.net_if_addrs().items())
                 if not any(a.family == socket.AF_INET for a in addrs)), None)


@pytest.mark.parametrize(("case", "message"), [
    ("no-sbatch", "Error: --cluster slurm: the 'sbatch' command is not on PATH, so no batch "
     "job can be submitted from here. Run jwstrun on the cluster's login node, or connect to "
     "a running scheduler with --scheduler.\n"),
    ("no-interface", "Error: --cluster slurm: this machine has no network interface nosuch0 "
     "(it has {interfaces}). Name the one the compute nodes reach this machine on, e.g. "
     "--cluster-option interface=ib0 ('ip addr' lists them).\n"),
    ("no-address", "Error: --cluster slurm: network interface {bare} has no IPv4 address, so "
     "no worker could reach the scheduler on it. Name an interface with an address ('ip "
     "addr' lists them).\n"),
])
def test_slurm_cluster_errors_are_one_line_and_write_nothing(case, message, sim, tmp_path,
                                                             monkeypatch):
    import shutil

    import psutil
    from click.testing import CliRunner

    from jwstrun.cli import cli

    if not shutil.which("sbatch"):
        pytest.skip("needs SLURM's sbatch on PATH")
    interface = {"no-sbatch": "lo", "no-interface": "nosuch0", "no-address": _no_ipv4_interface()}
    if interface[case] is None:
        pytest.skip("every network interface here has an IPv4 address")
    if case == "no-sbatch":
        monkeypatch.setenv("PATH", os.path.dirname(sys.executable))
    outdir = tmp_path / "out"
    result = CliRunner().invoke(cli, ["image2", str(sim.rate_files[0]), "-o", str(outdir),
                                      "--crds-env", str(sim.env_file), "--cluster", "slurm",
                                      "--cluster-option", f"interface={interface[case]}"])
    assert result.exit_code == 1
    assert result.output == message.format(
        interfaces=", ".join(sorted(psutil.net_if_addrs())), bare=interface["no-address"])
    assert not outdir.exists()


@pytest.mark.slow  # a second --cluster run of the program; the array test shows the same
def test_slurm_worker_job_cancelled_mid_run_loses_nothing(sim, slurm, local_image2, tmp_path):
    """scancel the job of workers while tasks run: the finished tasks are recorded, the
    others fail at once naming the cancelled job, and a re-run completes the set."""
    import time

    outdir = tmp_path / "out"
    args = ["image2", *sim.rate_files, "-o", outdir, "--crds-env", sim.env_file,
            *cluster_args(tmp_path), "--no-progress"]
    parent = subprocess.Popen([sys.executable, "-m", "jwstrun", *map(str, args)], cwd=tmp_path,
                              env={**os.environ, **slurm.env}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    manifest = outdir / "jwstrun-manifest.json"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and '"status": "ok"' not in (
            manifest.read_text() if manifest.exists() else ""):
        time.sleep(0.2)
    jobs = [j["id"] for j in slurm.jobs("running") if j["name"] == "dask-worker"]
    slurm.run("scancel", *jobs)
    output, _ = parent.communicate(timeout=120)
    assert parent.returncode == 1, output
    assert (f"the SLURM batch job {jobs[0]} running the Dask workers was cancelled (scancel) "
            "before this task finished; finished tasks are recorded: re-run to do the rest"
            ) in output
    records = json.loads(manifest.read_text())["tasks"].values()
    done = [r for r in records if r["status"] == "ok"]
    assert 1 <= len(done) < 4
    assert all((outdir / name).exists() for r in done for name in r["outputs"])
    assert not (outdir / ".jwstrun.lock").exists()
    result = jwstrun(args + ["--json"], slurm, tmp_path)
    summary = json.loads(result.stdout)
    assert summary["counts"]["skipped"] == len(done)
    assert summary["counts"]["ok"] == 4 - len(done)
    names = sorted(n for r in local_image2.results for n in r.outputs)
    assert sorted(p.name for p in outdir.glob("*.fits")) == names
    assert_same_products(local_image2.outdir, outdir, names)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_slurm_wall_time_expiry_is_said_plainly(slurm, tmp_path, monkeypatch):
    """A job of workers killed at its wall time (SLURM state TIMEOUT): the task it ran
    fails with a reason that names the wall time, instead of waiting for a worker."""
    sys.path.insert(0, str(Path(__file__).parent))
    import pool_tasks

    from jwstrun.executors import DaskExecutor, DaskOptions

    for key, value in slurm.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    options = DaskOptions(cluster="slurm", cluster_cores=1, cluster_memory="1GB",
                          cluster_walltime="00:01:00",
                          cluster_options={"interface": "lo",
                                           "log_directory": str(tmp_path / "logs")})
    with DaskExecutor(pool_tasks.run_pool_task, pool_tasks.lost_result,
                      options=options) as executor:
        executor.start()
        executor.submit(pool_tasks.PoolTask("long", seconds=600))
        (result,) = list(executor.as_completed())
    assert result["status"] == "failed"
    assert result["error"].startswith("the SLURM batch job ")
    assert result["error"].endswith(
        "running the Dask workers reached the wall time (--cluster-walltime 00:01:00) before "
        "this task finished; finished tasks are recorded: re-run with a longer "
        "--cluster-walltime to do the rest")
