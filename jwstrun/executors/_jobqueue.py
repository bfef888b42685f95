"""dask-jobqueue (``--cluster slurm|pbs``): the checks made before a batch job is
submitted, and what the batch system says of the jobs of workers.

Used by :mod:`jwstrun.executors.dask`; imports dask and dask-jobqueue only inside
functions.
"""

from __future__ import annotations

import shutil
import socket

from ..errors import ConfigError, InputError

DASK_INSTALL_HINT = (
    "pip install 'jwstrun[dask]' (or: pip install 'dask[distributed]' dask-jobqueue)"
)

#: --cluster name -> dask_jobqueue class and the command that submits its jobs
JOBQUEUE_CLUSTERS = {"slurm": ("SLURMCluster", "sbatch"), "pbs": ("PBSCluster", "qsub")}
#: --cluster: seconds without any worker, after every job's worker had connected, before
#: the tasks left are given up (dask-jobqueue does not submit ended jobs again)
JOBS_ENDED_GRACE_SECONDS = 5.0
#: squeue states of a job that may still start or run a worker
_ACTIVE_SLURM_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED",
                        "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING",
                        "STAGE_OUT", "STOPPED"}

def _check_cluster(options) -> None:
    """``--cluster``: a known batch system, dask-jobqueue installed, its submit command on
    PATH and the network interface the compute nodes reach this machine on."""
    if options.cluster not in JOBQUEUE_CLUSTERS:
        raise ConfigError(
            f"--cluster {options.cluster}: unknown; choose one of "
            f"{', '.join(JOBQUEUE_CLUSTERS)}."
        )
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        raise InputError(
            f"--cluster {options.cluster} needs dask-jobqueue, which is not installed. "
            f"Install it with {DASK_INSTALL_HINT}."
        ) from None
    if options.cluster_jobs < 1:
        raise ConfigError(f"--cluster-jobs {options.cluster_jobs}: must be at least 1.")
    command = JOBQUEUE_CLUSTERS[options.cluster][1]
    if shutil.which(command) is None:
        raise ConfigError(
            f"--cluster {options.cluster}: the '{command}' command is not on PATH, so no "
            "batch job can be submitted from here. Run jwstrun on the cluster's login node, "
            "or connect to a running scheduler with --scheduler."
        )
    interface = _jobqueue_interface(options)
    if not interface:
        raise ConfigError(
            f"--cluster {options.cluster}: name the network interface the compute nodes "
            "reach this machine on, e.g. --cluster-option interface=ib0 ('ip addr' lists "
            "them). jwstrun never opens the scheduler on every interface by itself."
        )
    _check_interface(options.cluster, interface, bool((options.cluster_options or {})
                                                      .get("scheduler_options", {}).get("host")))


def _check_interface(cluster: str, interface: str, is_host: bool) -> None:
    """The scheduler's interface exists here and has an IPv4 address workers can reach."""
    if is_host:
        return  # scheduler_options host=ADDRESS: an address, not an interface name
    import psutil

    addresses = psutil.net_if_addrs()
    if interface not in addresses:
        raise ConfigError(
            f"--cluster {cluster}: this machine has no network interface {interface} "
            f"(it has {', '.join(sorted(addresses))}). Name the one the compute nodes reach "
            "this machine on, e.g. --cluster-option interface=ib0 ('ip addr' lists them)."
        )
    if not any(a.family == socket.AF_INET for a in addresses[interface]):
        raise ConfigError(
            f"--cluster {cluster}: network interface {interface} has no IPv4 address, so "
            "no worker could reach the scheduler on it. Name an interface with an address "
            "('ip addr' lists them)."
        )


def _jobqueue_interface(options) -> str | None:
    """The interface (or scheduler host) the user chose, on the command line or in dask config."""
    extra = options.cluster_options or {}
    if extra.get("interface"):
        return str(extra["interface"])
    scheduler_options = extra.get("scheduler_options") or {}
    if scheduler_options.get("interface") or scheduler_options.get("host"):
        return str(scheduler_options.get("interface") or scheduler_options.get("host"))
    import dask

    name = options.cluster
    return (
        dask.config.get(f"jobqueue.{name}.interface", None)
        or (dask.config.get(f"jobqueue.{name}.scheduler-options", None) or {}).get("interface")
        or (dask.config.get(f"jobqueue.{name}.scheduler-options", None) or {}).get("host")
    )


def _slurm_job_states(ids: list[str]) -> dict[str, str]:
    """SLURM job id -> state (TIMEOUT, CANCELLED...) from squeue; {} when it cannot say."""
    import subprocess

    if not ids:
        return {}
    try:
        out = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i %T",
                              "--jobs", ",".join(ids)], capture_output=True, text=True,
                             timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return dict(line.split(None, 1) for line in out.splitlines() if len(line.split()) == 2)
