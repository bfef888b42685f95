"""Shards: one run of many (a SLURM job array) takes a deterministic 1/N of the tasks.

``shard="K/N"`` (``--shard K/N``, K from 1 to N) or ``shard="slurm"`` (``--shard
slurm``: K and N from the array task's ``SLURM_ARRAY_TASK_ID``,
``SLURM_ARRAY_TASK_MIN``, ``SLURM_ARRAY_TASK_STEP`` and ``SLURM_ARRAY_TASK_COUNT``, so
``--array=0-3`` and ``--array=1-4`` both give shards 1/4 to 4/4).  The planned tasks
are sorted by task id and shard K takes the K-th, the (K+N)-th and so on: every
shard of one input set plans the same tasks, so each task belongs to exactly one
shard, whatever order the shards start in, and a shard re-run takes the same tasks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["Shard", "parse_shard"]

_USAGE = "give K/N with 1 <= K <= N, e.g. --shard 2/4, or --shard slurm in a SLURM array job"


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, items: list, key) -> list:
        """This shard's items: sorted by ``key``, every ``count``-th from the ``index``-th."""
        ordered = sorted(items, key=key)
        return ordered[self.index - 1::self.count]

    def of(self, items: list, key) -> dict:
        """``key(item)`` -> the shard (1-based) that item belongs to, for every item."""
        return {key(item): i % self.count + 1
                for i, item in enumerate(sorted(items, key=key))}


def parse_shard(spec, environ=None) -> Shard | None:
    """A :class:`Shard` from ``"K/N"``, ``"slurm"``, a Shard or None (no sharding);
    :class:`ConfigError` for anything else."""
    if spec is None or isinstance(spec, Shard):
        return spec
    text = str(spec).strip()
    if text.lower() == "slurm":
        return _from_slurm(os.environ if environ is None else environ)
    index, sep, count = text.partition("/")
    try:
        shard = Shard(int(index), int(count)) if sep else None
    except ValueError:
        shard = None
    if shard is None:
        raise ConfigError(f"shard={text!r}: not a shard; {_USAGE}.")
    if shard.count < 1:
        raise ConfigError(f"shard={text!r}: N must be at least 1; {_USAGE}.")
    if not 1 <= shard.index <= shard.count:
        raise ConfigError(f"shard={text!r}: K must be between 1 and {shard.count}; {_USAGE}.")
    return shard


def _from_slurm(environ) -> Shard:
    """The shard of this SLURM array task (contiguous arrays: --array=A-B[:S])."""
    names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX",
             "SLURM_ARRAY_TASK_COUNT")
    if not environ.get("SLURM_ARRAY_TASK_ID"):
        raise ConfigError(
            "shard='slurm': SLURM_ARRAY_TASK_ID is not set, so this is not a SLURM array "
            "task. Submit the script with sbatch --array=1-N, or give shard='K/N'."
        )
    try:
        task, low, high, count = (int(environ[name]) for name in names)
        step = int(environ.get("SLURM_ARRAY_TASK_STEP") or 1)
    except (KeyError, ValueError):
        raise ConfigError(
            f"shard='slurm': {', '.join(names)} must all be set to numbers (SLURM sets them "
            "in an array task)."
        ) from None
    if step < 1 or low + (count - 1) * step != high or (task - low) % step:
        raise ConfigError(
            f"shard='slurm': the array's task ids are not a range ({low} to {high}, {count} "
            "tasks); submit with sbatch --array=1-N (optionally %M to limit how many run "
            "at once)."
        )
    return Shard((task - low) // step + 1, count)
