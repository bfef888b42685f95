"""Run tasks in parallel: a local pool of spawned worker processes, or a Dask cluster.

- :mod:`~jwstrun.executors.protocol`: the interface every executor offers
  (``submit``, ``as_completed``, ``shutdown``) and the :class:`WorkerEvent` events
  it reports;
- :mod:`~jwstrun.executors.local`: :class:`LocalExecutor`, the process pool
  (its worker side in ``_worker``);
- :mod:`~jwstrun.executors.dask`: :class:`DaskExecutor` and its
  :class:`DaskOptions` (dask imported only when it is used).

How many workers this host can take (CPUs, memory, cgroup and SLURM limits)
is not an executor concern: see :mod:`jwstrun._system`.
"""

from .dask import DaskExecutor, DaskOptions, check_dask_options, dask_available
from .local import LocalExecutor
from .protocol import Executor, WorkerEvent

__all__ = [
    "Executor", "WorkerEvent", "LocalExecutor",
    "DaskExecutor", "DaskOptions", "check_dask_options", "dask_available",
]
