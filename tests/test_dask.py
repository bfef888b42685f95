"""jwstrun on Dask: a real ``distributed.LocalCluster`` with worker processes on loopback.

One module-scoped cluster (2 worker processes, 1 thread each, 127.0.0.1) and one
small simulation (NIRCam SUB160, two dithers) serve the end-to-end tests:
products identical to the local executor, resume, a worker killed in the
middle of a task, an unreachable scheduler.  Generic executor behaviour
(progress events, failure isolation, loopback-only LocalCluster) uses the small
task functions of tests/pool_tasks.py.  ``--cluster slurm`` runs on a real SLURM
in tests/test_slurm.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from jwstrun.cli import cli
from jwstrun.errors import ConfigError, InputError

distributed = pytest.importorskip("distributed")

sys.path.insert(0, str(Path(__file__).parent))
import pool_tasks  # noqa: E402  (picklable task functions, importable by Dask workers)

TESTS_DIR = str(Path(__file__).parent)
ARRAYS = {"cal": ("SCI", "ERR", "DQ"), "i2d": ("SCI", "ERR", "WHT", "CON")}


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture(scope="module")
def cluster():
    # Spawned worker processes get this process's sys.path, so they can import
    # the test helpers (pool_tasks) by module name.
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address="127.0.0.1:0", silence_logs=40,
    ) as cl, Client(cl, set_as_default=False) as client:
        yield cl, client


@pytest.fixture(scope="module")
def sim(shared_simulation):
    from conftest import SUB160_TWO

    return shared_simulation(**SUB160_TWO)  # made once per run, read-only here


@pytest.fixture(scope="module")
def local_run(sim, tmp_path_factory):
    from jwstrun.runner import run_image2

    outdir = tmp_path_factory.mktemp("dask") / "local"
    summary = run_image2([str(p) for p in sim.rate_files], outdir, jobs=2,
                         crds_env_file=str(sim.env_file))
    assert not summary.failed, [r.error for r in summary.failed]
    return summary


@pytest.fixture(scope="module")
def dask_run(sim, cluster, tmp_path_factory):
    """The same exposures through the CLI on the running cluster."""
    outdir = tmp_path_factory.mktemp("dask") / "dask"
    args = ["image2", *map(str, sim.rate_files), "-o", str(outdir), "--crds-env",
            str(sim.env_file), "--scheduler", cluster[0].scheduler_address, "--json",
            "--no-progress"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    return outdir, summary


def assert_same_products(dir_a: Path, dir_b: Path, names) -> None:
    from astropy.io import fits

    for name in names:
        kind = "i2d" if name.endswith("_i2d.fits") else "cal"
        with fits.open(dir_a / name) as a, fits.open(dir_b / name) as b:
            for ext in ARRAYS[kind]:
                np.testing.assert_array_equal(a[ext].data, b[ext].data, err_msg=f"{name}[{ext}]")


# --------------------------------------------------------------------------
# End to end on simulated exposures
# --------------------------------------------------------------------------
def test_dask_products_identical_to_local_executor(local_run, dask_run, cluster):
    outdir, summary = dask_run
    assert summary["counts"] == {"total": 2, "ok": 2, "skipped": 0, "failed": 0}
    names = [n for r in local_run.results for n in r.outputs]
    assert sorted(names) == sorted(n for t in summary["tasks"] for n in t["outputs"])
    assert len(names) == 4  # _cal and _i2d per exposure
    assert_same_products(local_run.outdir, outdir, names)
    # They really ran in the cluster's worker processes.
    worker_pids = set(cluster[1].run(os.getpid).values())
    assert {t["worker_pid"] for t in summary["tasks"]} <= worker_pids
    assert summary["jobs_reason"].startswith(f"Dask scheduler {cluster[0].scheduler_address}")


def test_dask_run_manifest_logs_and_no_leftovers(dask_run):
    outdir, _summary = dask_run
    manifest = json.loads((outdir / "jwstrun-manifest.json").read_text())
    records = manifest["tasks"].values()
    assert {r["status"] for r in records} == {"ok"}
    for record in records:
        assert record["crds_context"] == "jwst_0001.pmap"
        assert set(record["step_times"]) >= {"assign_wcs", "flat_field", "photom", "resample"}
        log_text = (outdir / record["log_file"]).read_text()
        assert "Step flat_field done" in log_text
    assert not (outdir / ".jwstrun-tmp").exists()
    assert not (outdir / ".jwstrun.lock").exists()


def test_dask_resume_skips_up_to_date_tasks(sim, dask_run, cluster):
    from jwstrun.runner import run_image2

    outdir, _summary = dask_run
    before = {p.name: p.stat().st_mtime_ns for p in outdir.glob("*.fits")}
    summary = run_image2([str(p) for p in sim.rate_files], outdir,
                         crds_env_file=str(sim.env_file), executor="dask",
                         dask_options={"scheduler": cluster[0].scheduler_address})
    assert [r.status for r in summary.results] == ["skipped", "skipped"]
    assert {p.name: p.stat().st_mtime_ns for p in outdir.glob("*.fits")} == before


def test_image3_on_dask(sim, dask_run, cluster, tmp_path):
    """image3 takes the _cal products of the Dask image2 run; the association jwstrun
    writes into OUTDIR is read by the worker from the shared filesystem."""
    from jwstrun.runner import run_image3

    outdir, _summary = dask_run
    summary = run_image3(sorted(str(p) for p in outdir.glob("*_cal.fits")), tmp_path / "l3",
                         crds_env_file=str(sim.env_file), executor="dask",
                         dask_options={"scheduler": cluster[0].scheduler_address})
    (result,) = summary.results
    assert result.status == "ok", result.error
    suffixes = sorted(name.rsplit("_", 1)[-1] for name in result.outputs)
    assert suffixes[:3] == ["cat.ecsv", "crf.fits", "crf.fits"] and "i2d.fits" in suffixes
    assert result.validation["errors"] == []


@pytest.mark.timeout(120)
def test_killed_worker_task_is_retried_elsewhere(sim, local_run, cluster, tmp_path):
    """SIGKILL the worker process while it runs a pipeline step: the scheduler hands the
    task to another worker and the product is complete and correct."""
    from jwstrun.runner import run_image2

    killed: list[int] = []

    def on_event(kind, **info):
        if (kind == "step" and not killed and info.get("pid")
                and info.get("step") not in ("Image2Pipeline", "calwebb_image2")):
            killed.append(info["pid"])
            os.kill(info["pid"], signal.SIGKILL)

    outdir = tmp_path / "out"
    summary = run_image2([str(sim.rate_files[0])], outdir, crds_env_file=str(sim.env_file),
                         executor="dask", on_event=on_event,
                         dask_options={"scheduler": cluster[0].scheduler_address})
    assert killed, "the task was never seen running a step"
    (result,) = summary.results
    assert result.status == "ok", result.error
    assert result.worker_pid != killed[0]
    assert_same_products(local_run.outdir, outdir, result.outputs)
    assert sorted(p.name for p in outdir.glob("*.fits")) == sorted(result.outputs)
    assert not (outdir / ".jwstrun-tmp").exists()


def test_unreachable_scheduler_fails_fast_and_clearly(sim, tmp_path):
    port = closed_port()
    outdir = tmp_path / "out"
    start = time.monotonic()
    result = CliRunner().invoke(cli, [
        "image2", str(sim.rate_files[0]), "-o", str(outdir), "--crds-env", str(sim.env_file),
        "--scheduler", f"tcp://127.0.0.1:{port}", "--no-progress",
    ])
    elapsed = time.monotonic() - start
    assert result.exit_code == 1
    assert elapsed < 10
    assert result.output.startswith(
        f"Error: --scheduler tcp://127.0.0.1:{port}: no Dask scheduler answered within 5 s ("
    ), result.output
    assert result.output.rstrip().endswith(
        "Check the address (the scheduler prints it at start-up), that the scheduler is "
        "running and that this machine can reach its port."
    ), result.output
    assert "Traceback" not in result.output
    # Nothing ran, so nothing was recorded and no product appeared.
    assert not (outdir / "jwstrun-manifest.json").exists()
    assert not list(outdir.glob("*.fits"))
    assert not (outdir / ".jwstrun.lock").exists()


# --------------------------------------------------------------------------
# Options and installation errors (no cluster needed)
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scheduler", "tcp://127.0.0.1:1", "--cluster", "slurm"],
         "Error: --scheduler and --cluster exclude each other"),
        (["--executor", "local", "--scheduler", "tcp://127.0.0.1:1"],
         "Error: --scheduler and --cluster need --executor dask"),
        (["--scheduler", "tcp://127.0.0.1:1", "-j", "3"],
         "Error: -j 3 sets the number of local worker processes; with --scheduler the "
         "parallelism comes from the running cluster. Leave out -j."),
        (["--executor", "dask", "--cluster-cores", "4"],
         "Error: --cluster-cores only apply with --cluster slurm|pbs."),
        (["--scheduler", "http://node:8786"],
         "Error: --scheduler http://node:8786: not a Dask scheduler address."),
        (["--cluster", "slurm", "--cluster-option", "interface=lo"],
         "Error: --cluster slurm: the 'sbatch' command is not on PATH"),
    ],
)
def test_dask_option_errors(sim, tmp_path, extra, message, monkeypatch):
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))  # no sbatch here
    outdir = tmp_path / "out"
    result = CliRunner().invoke(cli, ["image2", str(sim.rate_files[0]), "-o", str(outdir),
                                      "--crds-env", str(sim.env_file), *extra])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(message), result.output
    assert not outdir.exists()  # refused before OUTDIR was touched


def test_cluster_option_values(sim, tmp_path):
    from jwstrun.cli._run_options import parse_cluster_option

    parsed = parse_cluster_option(None, None, (
        "queue=123", "processes=4", 'job-extra-directives=["--constraint=cpu"]', "account=ab12",
    ))
    assert parsed == {"queue": "123", "processes": 4, "account": "ab12",
                      "job_extra_directives": ["--constraint=cpu"]}
    result = CliRunner().invoke(cli, ["image2", str(sim.rate_files[0]), "-o", str(tmp_path / "o"),
                                      "--cluster", "slurm", "--cluster-option", "queue"])
    assert result.exit_code == 2
    assert "Invalid value for '--cluster-option': 'queue': give KEY=VALUE" in result.output


@pytest.mark.skipif(not shutil.which("sbatch"), reason="needs SLURM's sbatch on PATH")
def test_cluster_needs_an_interface():
    pytest.importorskip("dask_jobqueue")
    from jwstrun.executors import DaskOptions, check_dask_options

    with pytest.raises(ConfigError) as info:
        check_dask_options(DaskOptions(cluster="slurm", cluster_cores=2, cluster_memory="2GB"))
    assert str(info.value).startswith(
        "--cluster slurm: name the network interface the compute nodes reach this machine on, "
        "e.g. --cluster-option interface=ib0"
    )


def test_without_dask_the_error_says_how_to_install(sim, tmp_path, monkeypatch):
    # An import of 'distributed' fails as it would where dask is not installed.
    monkeypatch.setitem(sys.modules, "distributed", None)
    result = CliRunner().invoke(cli, ["image2", str(sim.rate_files[0]), "-o", str(tmp_path / "o"),
                                      "--executor", "dask"])
    assert result.exit_code == 1
    assert result.output == (
        "Error: the dask executor needs dask.distributed, which is not installed. Install it "
        "with pip install 'jwstrun[dask]' (or: pip install 'dask[distributed]' dask-jobqueue), "
        "or run with --executor local.\n"
    )
    from jwstrun.runner import select_executor

    with pytest.raises(InputError):
        select_executor("dask")
    assert select_executor(None) == ("local", None)


def test_without_jobqueue_the_error_says_how_to_install(monkeypatch):
    from jwstrun.runner import select_executor

    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)
    with pytest.raises(InputError) as info:
        select_executor(None, {"cluster": "slurm"})
    assert str(info.value) == (
        "--cluster slurm needs dask-jobqueue, which is not installed. Install it with "
        "pip install 'jwstrun[dask]' (or: pip install 'dask[distributed]' dask-jobqueue)."
    )


# --------------------------------------------------------------------------
# The executor itself, with small task functions
# --------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_dask_executor_isolates_failures_and_reports_progress(cluster):
    from jwstrun.executors import DaskExecutor

    events = []
    tasks = [pool_tasks.PoolTask(f"t{i}") for i in range(3)]
    tasks.append(pool_tasks.PoolTask("bad", action="raise"))
    executor = DaskExecutor(
        pool_tasks.run_pool_task, pool_tasks.lost_result, on_event=events.append,
        options={"scheduler": cluster[0].scheduler_address},
    )
    with executor:
        executor.start()
        for task in tasks:
            executor.submit(task)
        results = {r["task_id"]: r for r in executor.as_completed()}
    assert set(results) == {"t0", "t1", "t2", "bad"}
    assert results["bad"] == {"task_id": "bad", "status": "failed",
                              "error": "ValueError: bad task bad"}
    assert all(results[f"t{i}"]["status"] == "ok" for i in range(3))
    steps = [(e.kind, e.task_id, e.step) for e in events if e.task_id == "t1"]
    assert steps == [("start", "t1", None), ("step", "t1", "first"), ("step", "t1", "second")]
    assert {e.worker for e in events} <= {0, 1}


@pytest.mark.timeout(120)
def test_own_local_cluster_is_loopback_only_and_lost_tasks_fail_alone(tmp_path):
    """--executor dask without --scheduler: a LocalCluster bound to 127.0.0.1; a task that
    kills every worker it lands on fails alone, with the reason."""
    import dask

    from jwstrun.executors import DaskExecutor

    tasks = [pool_tasks.PoolTask("ok1"), pool_tasks.PoolTask("die", action="die"),
             pool_tasks.PoolTask("ok2")]
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        executor = DaskExecutor(pool_tasks.run_pool_task, pool_tasks.lost_result, jobs=2,
                                env={"JWSTRUN_TEST_ENV": "set-by-jwstrun"})
        with executor:
            executor.start()
            addresses = [executor.address, *executor.client.scheduler_info()["workers"]]
            listening = _listening_sockets()
            for task in tasks:
                executor.submit(task)
            results = {r["task_id"]: r for r in executor.as_completed()}
    assert all(a.startswith("tcp://127.0.0.1:") for a in addresses), addresses
    assert listening, "no listening sockets seen"
    assert {ip for _pid, ip, _port in listening} == {"127.0.0.1"}, listening
    assert results["ok1"]["status"] == results["ok2"]["status"] == "ok"
    assert results["ok1"]["env"] == "set-by-jwstrun"
    assert results["die"]["status"] == "failed"
    assert results["die"]["error"].startswith("Dask workers died while running this task")


def _listening_sockets() -> list[tuple[int, str, int]]:
    """(pid, ip, port) of every listening socket of this process and its children."""
    import psutil

    me = psutil.Process()
    found = []
    for proc in [me, *me.children(recursive=True)]:
        try:
            connections = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        found += [(proc.pid, c.laddr.ip, c.laddr.port) for c in connections
                  if c.status == psutil.CONN_LISTEN]
    return found


def _make_certificates(directory: Path) -> dict[str, str]:
    """A throw-away CA and one certificate for 127.0.0.1 (openssl command line)."""
    import subprocess

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "1", "-subj", "/CN=jwstrun-test-ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr",
            "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "node.pem", "-days", "1", "-extfile", "san.ext")
    return {"ca": str(directory / "ca.pem"), "cert": str(directory / "node.pem"),
            "key": str(directory / "node.key")}


@pytest.mark.timeout(120)
@pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl command")
def test_tls_scheduler_with_certificates_from_dask_environment(tmp_path):
    """--scheduler tls://...: jwstrun passes dask's own TLS settings (here the
    DASK_DISTRIBUTED__COMM__TLS__* variables) through to the client; without them the
    error says what to set."""
    import subprocess

    from distributed import LocalCluster
    from distributed.security import Security

    from jwstrun.executors import DaskOptions, check_dask_options

    certs = _make_certificates(tmp_path)
    security = Security(
        tls_ca_file=certs["ca"], tls_scheduler_cert=certs["cert"],
        tls_scheduler_key=certs["key"], tls_worker_cert=certs["cert"],
        tls_worker_key=certs["key"], tls_client_cert=certs["cert"],
        tls_client_key=certs["key"], require_encryption=True,
    )
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      protocol="tls://", security=security, dashboard_address="127.0.0.1:0",
                      silence_logs=40) as tls_cluster:
        address = tls_cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        with pytest.raises(ConfigError) as info:
            check_dask_options(DaskOptions(scheduler=address))
        assert str(info.value) == (
            f"--scheduler {address}: TLS needs certificates. Set "
            "DASK_DISTRIBUTED__COMM__TLS__CA_FILE, DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT "
            "and DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY (or distributed.comm.tls in "
            "~/.config/dask/distributed.yaml); see docs/dask.md."
        )
        env = dict(os.environ, PYTHONPATH=TESTS_DIR,
                   DASK_DISTRIBUTED__COMM__TLS__CA_FILE=certs["ca"],
                   DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT=certs["cert"],
                   DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY=certs["key"])
        script = (
            "import json, pool_tasks\n"
            "from jwstrun.executors import DaskExecutor\n"
            "ex = DaskExecutor(pool_tasks.run_pool_task, pool_tasks.lost_result,\n"
            f"                 options={{'scheduler': {address!r}}})\n"
            "with ex:\n"
            "    ex.submit(pool_tasks.PoolTask('over-tls'))\n"
            "    print(json.dumps(list(ex.as_completed())))\n"
        )
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["task_id"] == "over-tls" and result["status"] == "ok"


def test_dask_docs_point_to_refs_doctor_and_tls():
    text = (Path(__file__).parents[1] / "docs" / "dask.md").read_text()
    assert "jwstrun refs doctor" in text
    assert "CRDS_READONLY_CACHE=1" in text
    assert "DASK_DISTRIBUTED__COMM__TLS__CA_FILE" in text
    assert "pip install 'jwstrun[dask]'" in text


@pytest.mark.slow
def test_sweep_on_dask(sim, dask_run, cluster, tmp_path):
    """--sweep's variants are ordinary tasks on Dask too: each gets its parameters; the
    variant with the default value gives the plain run's products."""
    from jwstrun.runner import run_image2

    outdir, _summary = dask_run
    rate = sim.rate_files[0]
    summary = run_image2([str(rate)], tmp_path / "sweep", crds_env_file=str(sim.env_file),
                         executor="dask", sweep=["steps.resample.pixfrac=1.0,0.5"],
                         dask_options={"scheduler": cluster[0].scheduler_address})
    assert [r.status for r in summary.results] == ["ok", "ok"], [r.error for r in summary.results]
    stem = rate.name.replace("_rate.fits", "")
    plain = tmp_path / "sweep" / "sweep" / "resample.pixfrac=1.0"
    assert_same_products(outdir, plain, [f"{stem}_cal.fits", f"{stem}_i2d.fits"])
    from astropy.io import fits

    with fits.open(plain / f"{stem}_i2d.fits") as a, \
            fits.open(tmp_path / "sweep" / "sweep" / "resample.pixfrac=0.5" / f"{stem}_i2d.fits") as b:
        assert not np.array_equal(a["SCI"].data, b["SCI"].data, equal_nan=True)
        assert b[0].header["PIXFRAC"] == 0.5
