"""Which reference types a stage asks CRDS for, read from the installed pipeline.

``import jwst.pipeline`` is too costly for a parent process that only plans
and prefetches while its workers import jwst (docs/benchmarks.md, "import").
So what the answer is made of (each step's reftypes, default ``skip`` and
``prefetch_references``, and the ``pars-*`` types) is kept on disk in
``$XDG_CACHE_HOME/jwstrun/``, keyed by the jwst and stpipe versions and install
paths (``JWSTRUN_NO_SPEC_CACHE`` turns the cache off), and in memory per
process (:func:`clear_reftype_cache` empties it).
"""

from __future__ import annotations

import json

from .._pipeline_cache import NO_CACHE_VARIABLE, cached_json, pipeline_cache_path
from ..errors import InputError
from ..stages import STAGES, TILED_STAGES, Stage, get_stage

__all__ = ["reftypes_for", "clear_reftype_cache", "NO_CACHE_VARIABLE"]

#: Version of the disk cache's layout; the stages are keyed by their class path.
_REFTYPE_CACHE_FORMAT = 3


class _ReftypeCache:
    """The answers of :func:`reftypes_for` and the layouts they are built from, per process."""

    def __init__(self) -> None:
        self.answers: dict[tuple, list[str]] = {}
        self.layouts: dict[str, dict] | None = None

    def clear(self) -> None:
        self.answers.clear()
        self.layouts = None


_cache = _ReftypeCache()


def clear_reftype_cache() -> None:
    """Forget the reference types worked out in this process (the disk cache stays)."""
    _cache.clear()


def _stage(pipeline_name: str) -> Stage:
    try:
        return get_stage(pipeline_name)
    except InputError:
        raise InputError(f"unknown pipeline {pipeline_name!r}: use one of "
                         f"{', '.join(STAGES)}.") from None


def reftypes_for(pipeline_name: str, steps: dict | None = None, pars: bool = True) -> list[str]:
    """Reference types the stage ``pipeline_name`` (image2 / image3, or an alias) will
    request from CRDS.

    Read from the installed pipeline: the ``reference_file_types`` stpipe
    prefetches for every step that is not skipped (``steps`` takes the usual
    nested overrides, e.g. ``{"resample": {"skip": True}}``), plus, with
    ``pars``, the step-parameter references ``pars-<class name lowercased>``
    stpipe looks up for the pipeline and each of its steps.  Answered from the
    caches described in the module docstring when they can.
    """
    key = (pipeline_name.lower(), json.dumps(steps or {}, sort_keys=True, default=str), pars)
    if key in _cache.answers:
        return list(_cache.answers[key])
    stage = _stage(pipeline_name)
    types = _reftypes_from_layout(_pipeline_layouts().get(stage.step_class), steps, pars)
    if types is None:  # overrides the cached layout cannot answer: ask stpipe itself
        types = _reftypes_from_jwst(stage, steps, pars)
    _cache.answers[key] = types
    return list(types)


def _reftypes_from_jwst(stage: Stage, steps: dict | None, pars: bool) -> list[str]:
    cls = stage.load_class()
    if not hasattr(cls, "step_defs"):  # a Step on its own (jwstrun step): its own types
        types = list(cls.reference_file_types) + ([cls.get_config_reftype()] if pars else [])
        return list(dict.fromkeys(t.lower() for t in types))
    pipeline = cls(steps=steps or {})
    types = list(dict.fromkeys(pipeline.reference_file_types))
    if pars:
        types.append(cls.get_config_reftype())
        types.extend(step_cls.get_config_reftype() for step_cls in cls.step_defs.values())
    return list(dict.fromkeys(t.lower() for t in types))


def _reftypes_from_layout(layout: dict | None, steps: dict | None, pars: bool) -> list[str] | None:
    """Same answer as :func:`_reftypes_from_jwst` from a cached layout, or None if unsure."""
    if layout is None:
        return None
    steps = steps or {}
    if not isinstance(steps, dict) or set(steps) - set(layout["steps"]):
        return None
    types: list[str] = []
    for name, info in layout["steps"].items():
        skip = (steps.get(name) or {}).get("skip", info["skip"])
        if not isinstance(skip, bool):  # "yes", 1...: stpipe's own coercion decides
            return None
        if not skip and info["prefetch_references"]:
            types.extend(info["reftypes"])
    types = list(dict.fromkeys(types))
    if pars:
        types.append(layout["config_reftype"])
        types.extend(info["config_reftype"] for info in layout["steps"].values())
    return list(dict.fromkeys(t.lower() for t in types))


def _reftype_cache_path():
    return pipeline_cache_path("reftypes", str(_REFTYPE_CACHE_FORMAT))


def _layout_of(stage: Stage) -> dict:
    """What reftypes_for needs of one stage's pipeline, read from jwst (slow)."""
    cls = stage.load_class()
    pipeline = cls()
    return {
        "config_reftype": cls.get_config_reftype(),
        "steps": {
            name: {
                "reftypes": list(getattr(pipeline, name).reference_file_types),
                "skip": bool(getattr(pipeline, name).skip),
                "prefetch_references": bool(getattr(pipeline, name).prefetch_references),
                "config_reftype": step_cls.get_config_reftype(),
            }
            for name, step_cls in cls.step_defs.items()
        },
    }


def _layout_stages() -> list[Stage]:
    """The stages of the table and the tiled image3's tile row (its align row is
    image3's class): a tiled run's parent then prefetches without importing jwst between
    the two phases.  The tile row's steps are jwstrun's own
    (runner._tile_pipeline.TilePipeline.step_defs): a change there bumps
    ``_REFTYPE_CACHE_FORMAT``."""
    return [*STAGES.values(), TILED_STAGES["image3-tile"]]


def _layouts_from_jwst() -> dict[str, dict]:
    """{stage class path: layout} for every stage of :func:`_layout_stages`."""
    return {stage.step_class: _layout_of(stage) for stage in _layout_stages()}


def _pipeline_layouts() -> dict[str, dict]:
    """Layouts from the disk cache, or from jwst (then written to the cache)."""
    if _cache.layouts is None:
        wanted = {stage.step_class for stage in _layout_stages()}
        _cache.layouts = cached_json(_reftype_cache_path(), _layouts_from_jwst,
                                     lambda data: set(data) == wanted)
    return _cache.layouts
