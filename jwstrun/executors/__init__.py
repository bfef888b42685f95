"""Run tasks in parallel: a local pool of spawned worker processes, or a Dask cluster."""

from .dask import (
    DaskExecutor,
    DaskOptions,
    LocalExecutor,
    WorkerEvent,
    available_memory,
    batch_memory_limit,
    cgroup_memory_available,
    check_dask_options,
    cpu_count,
    dask_available,
    default_jobs,
)

__all__ = [
    "LocalExecutor", "WorkerEvent", "default_jobs", "available_memory", "batch_memory_limit",
    "cgroup_memory_available", "cpu_count",
    "DaskExecutor", "DaskOptions", "check_dask_options", "dask_available",
]
