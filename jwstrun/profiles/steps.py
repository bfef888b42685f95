"""The stpipe steps a profile may run as corrections before a stage, and their specs.

A correction step is named by its stpipe alias (``clean_flicker_noise``,
``snowblind``, ``persist``), as the installed packages register it through
stpipe's ``stpipe.steps`` entry points (``stpipe.entry_points.get_steps``: jwst's
and snowblind's, and any other package's); never by an import path written in a
profile, which would let a profile import code.

The registry is :mod:`jwstrun._step_registry`'s (cached on disk); a step's spec imports
its module, so it is cached on disk beside it, keyed by the versions of the packages
that register steps; :func:`clear_caches` forgets what this process holds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .._pipeline_cache import cached_json
from .._step_registry import RegisteredStep, cache_path, registered_steps, registering_dists
from .._step_registry import clear_caches as _clear_registry
from ..errors import ConfigError
from ._hints import _suggest
from .spec import ParamSpec

__all__ = ["RegisteredStep", "CorrectionStepSpec", "registered_steps", "correction_step_spec",
           "clear_caches"]


@dataclass(frozen=True)
class CorrectionStepSpec:
    """What a profile may set for one correction step, and how a worker finds it.

    ``module`` and ``qualname`` name the class where it is defined (a worker imports
    that module alone, not ``jwst.step`` and every step with it); ``status_keyword``
    is the ``S_*`` keyword the step sets in its products (the class's
    ``fits_keyword``, else the one jwst's core schema gives its ``meta.cal_step``
    entry; None when it sets none).
    """

    alias: str
    class_name: str
    module: str
    qualname: str
    package: str
    version: str
    params: dict[str, ParamSpec]
    status_keyword: str | None

    def to_dict(self) -> dict:
        return {"step": self.alias, "class": self.class_name, "package": self.package,
                "version": self.version, "status_keyword": self.status_keyword}


def _status_keyword(cls) -> str | None:
    from ..validate import step_status_keyword

    return step_status_keyword(cls.class_alias or "", getattr(cls, "fits_keyword", None))


def _read_step_spec(entry: RegisteredStep) -> dict:
    import importlib

    from .spec import _section_params

    module, _, name = entry.class_name.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return {"module": cls.__module__, "qualname": cls.__qualname__,
            "params": _section_params(cls.load_spec_file()),
            "status_keyword": _status_keyword(cls)}


@functools.lru_cache(maxsize=None)
def correction_step_spec(alias: str, where: str = "before") -> CorrectionStepSpec:
    """The spec of the registered step ``alias``; :class:`ConfigError` naming the
    nearest aliases for an unknown one, and refusing a pipeline (``where`` says
    where the name was given, for the message)."""
    steps = registered_steps()
    entry = steps.get(alias)
    if entry is None:
        names = sorted(a for a, s in steps.items() if not s.is_pipeline)
        raise ConfigError(f"unknown step {alias!r} in {where}{_suggest(alias, names)} "
                          "(a step is named by its stpipe alias: 'stpipe list --steps-only' "
                          "lists them)")
    if entry.is_pipeline:
        raise ConfigError(f"{alias!r} in {where} is a pipeline; a correction before a stage "
                          "is a single step such as clean_flicker_noise or snowblind")
    dists = registering_dists()

    def build() -> dict:
        import json

        old = {}
        if path is not None and path.is_file():
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError):
                old = {}
        steps_read = old.get("steps", {}) if old.get("dists") == dists else {}
        steps_read[alias] = _read_step_spec(entry)
        return {"dists": dists, "steps": steps_read}

    path = cache_path("correction-steps")
    data = cached_json(path, build, lambda d: isinstance(d, dict) and d.get("dists") == dists
                       and alias in (d.get("steps") or {}))
    raw = data["steps"][alias]
    return CorrectionStepSpec(
        alias=alias, class_name=entry.class_name, module=raw["module"], qualname=raw["qualname"],
        package=entry.package, version=entry.version,
        params={k: ParamSpec(k, v["check"], v.get("comment", "")) for k, v in raw["params"].items()},
        status_keyword=raw["status_keyword"],
    )


def clear_caches() -> None:
    """Forget the registry and the step specs this process holds."""
    _clear_registry()
    correction_step_spec.cache_clear()
