"""stpipe's step registry, read once and cached on disk: every class alias the installed
packages register through the ``stpipe.steps`` entry points (jwst's, snowblind's, any
other package's), as ``strun`` resolves them.

Reading the registrations loads every registering package (jwst.stpipe, snowblind:
seconds, in the parent and again in every worker of ``jwstrun step``), so the table is
cached like the stage specs (:mod:`jwstrun._pipeline_cache`), keyed by the versions of
the distributions that register steps (read from their metadata, nothing imported).
:mod:`jwstrun.stages` (``jwstrun step NAME``) and :mod:`jwstrun.profiles.steps` (a
profile's ``before:``) read it here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ._pipeline_cache import cached_json, pipeline_cache_path

__all__ = ["RegisteredStep", "registrations", "registered_steps", "registering_dists",
           "cache_path", "clear_caches"]

_GROUP = "stpipe.steps"
_FORMAT = "2"


@dataclass(frozen=True)
class RegisteredStep:
    """One entry of stpipe's step registry."""

    alias: str
    class_name: str  # as registered ("jwst.step.CleanFlickerNoiseStep")
    is_pipeline: bool
    package: str
    version: str


def registering_dists() -> list[str]:
    """``name==version`` of every installed distribution registering stpipe steps
    (read from the installed metadata: nothing is imported)."""
    from importlib import metadata

    found = set()
    for entry_point in metadata.entry_points(group=_GROUP):
        dist = getattr(entry_point, "dist", None)
        if dist is not None:
            found.add(f"{dist.name}=={dist.version}")
    return sorted(found)


def cache_path(kind: str):
    """The cache file of ``kind``, named after the registering distributions' versions."""
    path = pipeline_cache_path(kind, _FORMAT)
    if path is None:
        return None
    import hashlib

    key = hashlib.sha1("|".join(registering_dists()).encode()).hexdigest()[:8]
    return path.with_name(path.stem + f"-{key}.json")


def _read_registry() -> dict:
    import warnings

    from stpipe.entry_points import get_steps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a broken plugin: its steps are simply not offered
        steps = get_steps()
    return {"dists": registering_dists(), "steps": [
        {"alias": info.class_alias, "class_name": info.class_name,
         "is_pipeline": bool(info.is_pipeline), "package": info.package_name,
         "version": info.package_version}
        for info in steps if info.class_alias
    ]}


@functools.lru_cache(maxsize=1)
def registrations() -> tuple[RegisteredStep, ...]:
    """Every registration, in stpipe's order (an alias two packages register appears twice)."""
    dists = registering_dists()
    data = cached_json(cache_path("registry"), _read_registry,
                       lambda d: isinstance(d, dict) and d.get("dists") == dists
                       and isinstance(d.get("steps"), list))
    return tuple(RegisteredStep(s["alias"], s["class_name"], s["is_pipeline"], s["package"],
                                s["version"]) for s in data["steps"])


def registered_steps() -> dict[str, RegisteredStep]:
    """Alias -> :class:`RegisteredStep` of every step and pipeline stpipe knows (the first
    package's when two register the same alias)."""
    found: dict[str, RegisteredStep] = {}
    for entry in registrations():
        found.setdefault(entry.alias, entry)
    return found


def clear_caches() -> None:
    """Forget the registry this process holds (read again, from the disk cache, on next use)."""
    registrations.cache_clear()
