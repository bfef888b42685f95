"""A real single-node SLURM for the tests: munged, slurmctld and slurmd started here.

Debian's ``slurm-wlm`` and ``munge`` packages (``.ci/run`` installs them when
missing).  Everything lives in one directory: a munge key, munged's socket, a
``slurm.conf`` (one node -- this host -- and one partition, free TCP ports), the
state and spool directories, pid files and logs.  Nothing of the machine's own
configuration is read or changed: the daemons and the clients (``sbatch``,
``squeue``, ``scancel``, dask-jobqueue's) find the cluster through
``SLURM_CONF``, and munged runs on its own socket (``AuthInfo=socket=...``), so
two test sessions (or a site's SLURM) never meet.

:func:`unavailable_reason` says why a real SLURM cannot run here (not root, the
packages missing); :func:`start_slurm` starts the three daemons in the
foreground of child processes and waits until ``sinfo`` shows the node idle;
:meth:`Slurm.stop` cancels the jobs left and stops exactly those three
processes (checked against their pid files).

Run ``python tests/_slurm.py DIR`` to start one by hand (Ctrl-C, or SIGTERM, stops it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Slurm", "start_slurm", "unavailable_reason", "INSTALL_HINT"]

INSTALL_HINT = "apt-get install -y slurm-wlm munge (.ci/run installs them when missing)"
_DAEMONS = ("munged", "slurmctld", "slurmd")
_CLIENTS = ("sbatch", "sinfo", "squeue", "scancel", "scontrol")


def unavailable_reason() -> str | None:
    """Why a real SLURM cannot be started here, or None when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "a real SLURM (munged, slurmctld, slurmd) needs root to start"
    missing = [name for name in (*_DAEMONS, *_CLIENTS) if not _which(name)]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing): {INSTALL_HINT}"
    return None


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _memory_mb() -> int:
    """The memory the node offers jobs: 80 % of MemAvailable (so --mem requests fit)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(int(line.split()[1]) / 1024 * 0.8)
    return 4096


@dataclass
class Slurm:
    """A running single-node SLURM: its ``slurm.conf`` and the environment that finds it."""

    directory: Path
    conf: Path
    node: str
    cpus: int
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """Variables that point SLURM's commands at this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """A SLURM command (sinfo, squeue, scancel...) on this cluster."""
        return subprocess.run(list(args), env={**os.environ, **self.env}, text=True,
                              capture_output=True, check=check, timeout=60, **kwargs)

    def jobs(self, states: str = "all") -> list[dict]:
        """The cluster's jobs: id, array task, name, state and reason (squeue)."""
        out = self.run("squeue", "--noheader", "--states", states, "--format",
                       "%i|%F|%K|%j|%T|%r").stdout
        fields = ("id", "array_job_id", "array_task_id", "name", "state", "reason")
        return [dict(zip(fields, line.split("|"), strict=True))
                for line in out.splitlines() if line.strip()]

    def wait_idle(self, timeout: float = 60) -> None:
        """Wait until no job is pending or running (the node idle again)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.jobs("pending,running,completing,configuring"):
                return
            time.sleep(0.5)
        raise TimeoutError(f"SLURM jobs still there after {timeout:g} s: {self.jobs()}")

    def log(self, name: str) -> str:
        path = self.directory / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Cancel the jobs left, then stop the daemons this object started (and only them)."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--partition", "debug", check=False)
            try:
                self.wait_idle(timeout=20)
            except (TimeoutError, subprocess.SubprocessError):
                pass
        for name in reversed(_DAEMONS):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            recorded = _read_pid(self.directory / f"{name}.pid")
            if recorded not in (None, process.pid):
                raise RuntimeError(f"{name}: pid file says {recorded}, started {process.pid}")
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _slurm_conf(directory: Path, node: str, cpus: int, socket_path: Path) -> str:
    d = directory
    return "\n".join([
        "ClusterName=jwstrun-test",
        f"SlurmctldHost={node}",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={socket_path}",
        f"StateSaveLocation={d / 'state'}",
        f"SlurmdSpoolDir={d / 'spool'}",
        f"SlurmctldPidFile={d / 'slurmctld.pid'}",
        f"SlurmdPidFile={d / 'slurmd.pid'}",
        f"SlurmctldLogFile={d / 'slurmctld.log'}",
        f"SlurmdLogFile={d / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "ReturnToService=2",
        "MpiDefault=none",
        "SwitchType=switch/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "SchedulerType=sched/backfill",
        # Quick scheduling and short kill grace: tests wait on jobs.
        "SchedulerParameters=sched_interval=2",
        "KillWait=5",
        "MinJobAge=600",
        "InactiveLimit=0",
        # The node offers more CPUs than the machine has (config_overrides), so array
        # tasks of the tests run side by side even on a 2-core machine.
        "SlurmdParameters=config_overrides",
        f"NodeName={node} CPUs={cpus} RealMemory={_memory_mb()} State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def start_slurm(directory: str | os.PathLike, cpus: int = 4, timeout: float = 60) -> Slurm:
    """Start munged, slurmctld and slurmd with their files in ``directory``; return once
    ``sinfo`` shows the node idle.  :meth:`Slurm.stop` stops them."""
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    directory = Path(directory).resolve()
    for sub in ("state", "spool", "munge"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    (directory / "munge").chmod(0o700)
    key = directory / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    socket_path = directory / "munge" / "munge.socket"
    node = socket.gethostname().split(".")[0]
    conf = directory / "slurm.conf"
    conf.write_text(_slurm_conf(directory, node, cpus, socket_path))
    slurm = Slurm(directory=directory, conf=conf, node=node, cpus=cpus)
    env = {**os.environ, **slurm.env}
    try:
        slurm.processes["munged"] = _start(directory, "munged", [
            _which("munged"), "--foreground", "--force", f"--key-file={key}",
            f"--socket={socket_path}", f"--pid-file={directory / 'munged.pid'}",
            f"--log-file={directory / 'munged.log'}",
            f"--seed-file={directory / 'munge' / 'munged.seed'}",
        ], env)
        _wait_for(lambda: socket_path.exists(), timeout, "munged's socket", slurm)
        slurm.processes["slurmctld"] = _start(
            directory, "slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(conf)], env)
        slurm.processes["slurmd"] = _start(
            directory, "slurmd", [_which("slurmd"), "-D", "-f", str(conf)], env)
        _wait_for(lambda: _node_idle(slurm), timeout, "the node to be idle", slurm)
    except BaseException:
        slurm.stop()
        raise
    return slurm


def _start(directory: Path, name: str, argv: list[str], env: dict) -> subprocess.Popen:
    out = open(directory / f"{name}.out", "ab")  # noqa: SIM115 - owned by the child
    try:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        out.close()


def _node_idle(slurm: Slurm) -> bool:
    for name, process in slurm.processes.items():
        if process.poll() is not None:
            raise RuntimeError(
                f"{name} exited ({process.returncode}): "
                f"{(slurm.directory / f'{name}.out').read_text(errors='replace')[-2000:]}"
                f"{slurm.log(name)[-2000:]}"
            )
    result = slurm.run("sinfo", "--noheader", "--format", "%t", check=False)
    return result.returncode == 0 and result.stdout.strip() == "idle"


def _wait_for(condition, timeout: float, what: str, slurm: Slurm) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise TimeoutError(f"SLURM did not start: no {what} after {timeout:g} s in "
                       f"{slurm.directory}\n{slurm.log('slurmctld')[-2000:]}"
                       f"{slurm.log('slurmd')[-2000:]}")


if __name__ == "__main__":  # pragma: no cover - a manual aid
    import sys

    def _interrupt(_signum, _frame):
        raise KeyboardInterrupt

    # Ctrl-C, or kill PID (a shell's background job ignores SIGINT)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    cluster = start_slurm(sys.argv[1] if len(sys.argv) > 1 else "slurm-test")
    print(f"export SLURM_CONF={cluster.conf}   # Ctrl-C (or kill {os.getpid()}) stops it",
          flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
