"""Where the cores go: across exposures, or inside a step, never both.

Two jwst steps of calwebb_detector1, jump and ramp_fit, can split one exposure
over several processes themselves (``maximum_cores``: an integer, ``quarter``,
``half`` or ``all``; jwst's docs for both steps, stcal's ``compute_num_cores``).
jwst's documentation warns against combining that with running several pipelines
at once: each of N workers would start its own M processes, N x M on the
machine's cores (jwst issues 8383, 8743).  So for a stage with such steps (its
row's ``core_steps``) jwstrun chooses one per run (:func:`choose_parallelism`):

- ``exposures``: several workers, one exposure each, the steps on one core each
  (the worker sets ``maximum_cores='1'``, :func:`jwstrun.runner.task._pool_parameters`)
  -- when there are at least as many exposures as cores, or with ``-j N > 1``;
- ``in_step``: one worker, one exposure at a time, jump and ramp_fit on every core
  (``maximum_cores`` set for the task, not part of its fingerprint: it does not
  change the products) -- when there are fewer exposures than cores, or when the
  user set ``maximum_cores`` without ``-j``;
- ``serial``: one worker, one core (``-j 1``, or one CPU).

A ``maximum_cores`` the user set together with ``-j N > 1`` is refused
(:func:`jwstrun.runner.plan.check_maximum_cores`).  In both parallel modes the
numerical libraries get one thread per process (OMP_NUM_THREADS, MKL_NUM_THREADS,
OPENBLAS_NUM_THREADS = 1 unless the user set them: :func:`._parent.worker_env`).
The choice is recorded in the manifest's run entry (``parallelism``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..stages import Stage
from .plan import check_maximum_cores

__all__ = ["Parallelism", "choose_parallelism", "user_maximum_cores"]

EXPOSURES, IN_STEP, SERIAL = "exposures", "in_step", "serial"


@dataclass(frozen=True)
class Parallelism:
    """The choice for one run: the mode, the workers, what the core steps get."""

    mode: str  # EXPOSURES, IN_STEP or SERIAL
    jobs: int
    #: maximum_cores jwstrun gives the stage's core_steps (IN_STEP without a user
    #: setting), else None
    maximum_cores: str | None
    steps: tuple[str, ...]
    reason: str

    @property
    def threads_limited(self) -> bool:
        """Whether the numerical libraries get one thread per process."""
        return self.mode != SERIAL

    def to_dict(self) -> dict:
        data = asdict(self)
        data["steps"] = list(self.steps)
        return data


def user_maximum_cores(stage: Stage, parameters: dict) -> dict[str, str]:
    """The ``maximum_cores`` the user set (profile or --set) for the stage's core steps,
    other than one core: step -> value."""
    found = {}
    for step in stage.core_steps:
        value = ((parameters.get("steps") or {}).get(step) or {}).get("maximum_cores")
        if value is not None and str(value).strip().lower() not in ("1", "none"):
            found[step] = str(value)
    return found


def choose_parallelism(stage: Stage, n_tasks: int, jobs: int | None, parameters: dict,
                       bytes_per_worker: float, *, cpus: int | None = None,
                       executor: str = "local") -> Parallelism | None:
    """The :class:`Parallelism` of a run of ``stage`` over ``n_tasks`` exposures with
    ``jobs`` (None: jwstrun chooses); None for a stage without core steps or on Dask
    (its workers are pool workers: the runner refuses a user ``maximum_cores`` there).
    :class:`~jwstrun.errors.ConfigError` for ``jobs > 1`` with a user ``maximum_cores``."""
    if not stage.core_steps or executor != "local":
        return None
    from .._system import cpu_count, default_jobs

    cpus = cpus or cpu_count()
    steps = tuple(stage.core_steps)
    user = user_maximum_cores(stage, parameters)
    if jobs is not None:
        check_maximum_cores(parameters, jobs)  # one Error line for -j N with maximum_cores
        if jobs > 1:
            return Parallelism(EXPOSURES, jobs, None, steps, f"-j {jobs}")
        if user:
            return Parallelism(IN_STEP, 1, None, steps, f"-j 1 and {_settings(user)}")
        return Parallelism(SERIAL, 1, None, steps, "-j 1")
    if user:
        return Parallelism(IN_STEP, 1, None, steps, f"{_settings(user)} set")
    workers, why = default_jobs(0, bytes_per_worker, cpus)
    if cpus <= 1 or n_tasks < 1:
        return Parallelism(SERIAL, 1, None, steps, f"{cpus} CPU")
    if n_tasks >= cpus:
        return Parallelism(EXPOSURES, min(workers, n_tasks), None, steps,
                           f"{n_tasks} exposures for {cpus} CPUs; {workers} workers ({why})")
    return Parallelism(IN_STEP, 1, str(cpus), steps,
                       f"{n_tasks} exposure{'s' if n_tasks != 1 else ''} for {cpus} CPUs: "
                       f"{' and '.join(steps)} use {cpus} cores")


def _settings(user: dict[str, str]) -> str:
    return ", ".join(f"steps.{step}.maximum_cores={value}" for step, value in user.items())
