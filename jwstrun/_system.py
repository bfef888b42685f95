"""What this host offers a run: CPUs and memory.

The CPUs this process may use (taskset / cgroup affinity), the memory still
available -- the least of the node's ``MemAvailable``, the cgroup's limit minus
its usage (SLURM's task/cgroup, Kubernetes, Docker ``--memory``) and a SLURM
job's memory request -- and from those the default number of workers.  Facts
about the machine, not about how tasks are run: the executors, the image3
memory budget (:mod:`jwstrun.mosaic`) and the report read them from here.
Nothing is cached: each call reads the current figures.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "cpu_count", "available_memory", "physical_memory", "cgroup_memory_available",
    "batch_memory_limit", "batch_job_id", "default_jobs",
]

# cgroup files say "no limit" with "max" (v2) or a number near 2**63 (v1).
_UNLIMITED = 1 << 60


def cpu_count() -> int:
    """CPUs this process may run on (respects taskset / cgroup affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _meminfo_available(meminfo: str = "/proc/meminfo") -> int | None:
    """MemAvailable from /proc/meminfo (None where unknown)."""
    try:
        with open(meminfo) as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_bytes(path: Path) -> int | None:
    """An integer cgroup file; None when absent, unreadable or unlimited."""
    try:
        text = path.read_text().strip()
        value = int(text)
    except (OSError, ValueError):
        return None  # includes "max" (cgroup v2's "no limit")
    return value if 0 <= value < _UNLIMITED else None


def _stat_value(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def cgroup_memory_available(proc_cgroup: str = "/proc/self/cgroup",
                            root: str = "/sys/fs/cgroup") -> int | None:
    """Memory this process's cgroup may still use: limit minus usage, the page
    cache it can drop (inactive files) not counted as used; the tightest limit
    of the cgroup and its parents.  None when no limit is set or cgroups are
    not readable.  Covers cgroup v2 (``memory.max``) and v1
    (``memory.limit_in_bytes``); batch systems (SLURM's task/cgroup, Kubernetes,
    Docker ``--memory``) enforce their memory limits there.
    """
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    best = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hid, controllers, relative = parts
        if controllers == "":
            base, files = Path(root), ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):
            base = Path(root) / "memory"
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        else:
            continue
        limit_name, usage_name, inactive_key = files
        # The cgroup's own directory; inside a container the namespace's root
        # is mounted at ``base`` and the recorded path does not exist there.
        here = base / relative.strip("/")
        if not (here / limit_name).exists():
            here = base
        while True:
            limit = _read_bytes(here / limit_name)
            if limit is not None:
                usage = _read_bytes(here / usage_name) or 0
                usage -= min(usage, _stat_value(here / "memory.stat", inactive_key))
                free = max(0, limit - usage)
                best = free if best is None else min(best, free)
            if here == base or base not in here.parents:
                break
            here = here.parent
    return best


def batch_memory_limit(environ=None) -> tuple[int, str] | None:
    """The memory a SLURM job asked for on this node (``--mem`` or ``--mem-per-cpu``)."""
    environ = os.environ if environ is None else environ
    try:
        if environ.get("SLURM_MEM_PER_NODE"):
            return int(environ["SLURM_MEM_PER_NODE"]) * 2**20, "SLURM --mem"
        if environ.get("SLURM_MEM_PER_CPU"):
            cpus = int(environ.get("SLURM_CPUS_ON_NODE") or 1)
            return int(environ["SLURM_MEM_PER_CPU"]) * 2**20 * cpus, "SLURM --mem-per-cpu"
    except ValueError:
        pass
    return None


def batch_job_id(environ=None) -> str | None:
    """The batch job this process runs in: SLURM's ``SLURM_JOB_ID`` (``JOBID_TASK`` for
    an array task, as squeue shows it) or PBS's ``PBS_JOBID``; None outside a job."""
    environ = os.environ if environ is None else environ
    if environ.get("SLURM_JOB_ID"):
        array_job, task = environ.get("SLURM_ARRAY_JOB_ID"), environ.get("SLURM_ARRAY_TASK_ID")
        return f"{array_job}_{task}" if array_job and task else environ["SLURM_JOB_ID"]
    return environ.get("PBS_JOBID") or None


def available_memory() -> tuple[int, str] | None:
    """``(bytes, where the figure comes from)``: the least of the node's available
    memory, this process's cgroup limit and a SLURM job's memory request."""
    candidates = []
    node = _meminfo_available()
    if node is not None:
        candidates.append((node, "available memory"))
    cgroup = cgroup_memory_available()
    if cgroup is not None:
        candidates.append((cgroup, "memory left under the cgroup limit"))
    batch = batch_memory_limit()
    if batch is not None:
        candidates.append(batch)
    return min(candidates) if candidates else None


def physical_memory() -> int:
    """The node's physical memory in bytes (the fallback when nothing says what is available)."""
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def default_jobs(n_tasks: int, bytes_per_worker: float,
                 cpus: int | None = None) -> tuple[int, str]:
    """Number of workers that fits the CPUs (``cpus``, default :func:`cpu_count`) and
    the available memory.

    Returns ``(jobs, reason)``; the reason is a short sentence for the log.
    """
    cpus = cpus or cpu_count()
    jobs = cpus
    reason = f"{cpus} CPUs"
    found = available_memory()
    if found is not None and bytes_per_worker > 0:
        mem, source = found
        by_memory = max(1, int(mem // bytes_per_worker))
        if by_memory < jobs:
            jobs = by_memory
            reason = f"{mem / 1e9:.1f} GB {source} / {bytes_per_worker / 1e9:.2f} GB per worker"
    if n_tasks and n_tasks < jobs:
        jobs = n_tasks
        reason = f"{n_tasks} task{'s' if n_tasks != 1 else ''}"
    return max(1, jobs), reason
