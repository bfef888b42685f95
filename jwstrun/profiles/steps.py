"""The stpipe steps a profile may run as corrections before a stage, and their specs.

A correction step is named by its stpipe alias (``clean_flicker_noise``,
``snowblind``, ``persist``), as the installed packages register it through
stpipe's ``stpipe.steps`` entry points (``stpipe.entry_points.get_steps``: jwst's
and snowblind's, and any other package's); never by an import path written in a
profile, which would let a profile import code.

Reading the registrations loads every registering package (jwst.stpipe,
snowblind: seconds), and a step's spec imports its module, so both are cached on
disk like the stage specs (:mod:`jwstrun._pipeline_cache`), keyed by the versions
of the packages that register steps; :func:`clear_caches` forgets what this
process holds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .._pipeline_cache import cached_json, pipeline_cache_path
from ..errors import ConfigError
from ._hints import _suggest
from .spec import ParamSpec

__all__ = ["RegisteredStep", "CorrectionStepSpec", "registered_steps", "correction_step_spec",
           "clear_caches"]

_GROUP = "stpipe.steps"
_FORMAT = "1"


@dataclass(frozen=True)
class RegisteredStep:
    """One entry of stpipe's step registry."""

    alias: str
    class_name: str  # as registered ("jwst.step.CleanFlickerNoiseStep")
    is_pipeline: bool
    package: str
    version: str


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


def _registering_dists() -> list[str]:
    """``name==version`` of every installed distribution registering stpipe steps
    (read from the installed metadata: nothing is imported)."""
    from importlib import metadata

    found = set()
    for entry_point in metadata.entry_points(group=_GROUP):
        dist = getattr(entry_point, "dist", None)
        if dist is not None:
            found.add(f"{dist.name}=={dist.version}")
    return sorted(found)


def _cache_path(kind: str):
    path = pipeline_cache_path(kind, _FORMAT)
    if path is None:
        return None
    import hashlib

    key = hashlib.sha1("|".join(_registering_dists()).encode()).hexdigest()[:8]
    return path.with_name(path.stem + f"-{key}.json")


def _read_registry() -> dict:
    import warnings

    from stpipe.entry_points import get_steps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a broken plugin: its steps are simply not offered
        steps = get_steps()
    return {"dists": _registering_dists(), "steps": {
        info.class_alias: {"class_name": info.class_name, "is_pipeline": bool(info.is_pipeline),
                           "package": info.package_name, "version": info.package_version}
        for info in steps if info.class_alias
    }}


@functools.lru_cache(maxsize=1)
def registered_steps() -> dict[str, RegisteredStep]:
    """Alias -> :class:`RegisteredStep` of every step and pipeline stpipe knows."""
    dists = _registering_dists()
    data = cached_json(_cache_path("registry"), _read_registry,
                       lambda d: isinstance(d, dict) and d.get("dists") == dists)
    return {alias: RegisteredStep(alias, s["class_name"], s["is_pipeline"], s["package"],
                                  s["version"]) for alias, s in data["steps"].items()}


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
    dists = _registering_dists()

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

    path = _cache_path("correction-steps")
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
    registered_steps.cache_clear()
    correction_step_spec.cache_clear()
