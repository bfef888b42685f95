"""What each stage accepts, read from its stpipe spec, and values checked by it.

A stage's spec (``Step.load_spec_file``: configobj check strings such as
``float(min=0, default=10)`` for the pipeline and each of its steps) is read
once per process, from the class named in :data:`jwstrun.stages.STAGES`, and
cached on disk per jwst/stpipe installation (jwstrun._pipeline_cache), since
importing ``jwst.pipeline`` costs seconds (docs/benchmarks.md, "profiles").
Values are checked and converted with configobj's ``Validator``, the machinery
stpipe itself uses, so a profile means what the same text means to strun.

The in-process caches (:func:`pipeline_spec`, the specs read from disk or jwst,
the validator) live as long as the process: :func:`clear_caches` forgets them,
e.g. in a notebook or Dask worker after jwst or the stage table changed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._pipeline_cache import cached_json, pipeline_cache_path
from ..errors import ConfigError
from ..stages import STAGES
from ._hints import _suggest, stage_aliases

__all__ = ["ParamSpec", "StepSpec", "PipelineSpec", "pipeline_spec", "spec_default", "clear_caches"]

# Spec keys that are plumbing rather than parameters (added by Pipeline.load_spec_file).
_NOT_PARAMETERS = frozenset({"class", "name", "config_file"})

_BOOLEAN_CHECKS = frozenset({"boolean", "bool_list", "pass", "mixed_list"})

_EXPECTED = {
    "integer": "an integer",
    "float": "a number",
    "boolean": "true or false",
    "string": "a string (quote numbers in YAML, e.g. '0')",
    "option": "one of the allowed options",
    "int_list": "a list of integers",
    "float_list": "a list of numbers",
    "bool_list": "a list of true/false",
    "string_list": "a list of strings",
    "force_list": "a string or a list of strings",
    "list": "a list",
    "is_string_or_datamodel": "a file path (string)",
    "output_file": "a file path (string)",
    "input_file": "a file path (string)",
}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a step spec: its configobj check string and comment."""

    name: str
    check: str
    comment: str = ""


@dataclass(frozen=True)
class StepSpec:
    name: str
    class_name: str
    params: dict[str, ParamSpec]


@dataclass(frozen=True)
class PipelineSpec:
    """What a pipeline accepts, read from its stpipe spec (``Pipeline.load_spec_file``)."""

    name: str
    class_name: str
    alias: str
    params: dict[str, ParamSpec]
    steps: dict[str, StepSpec]

    def params_of(self, step: str | None) -> dict[str, ParamSpec]:
        return self.params if step is None else self.steps[step].params


# --------------------------------------------------------------------------
# Reading the specs (importing jwst.pipeline happens here, once)
# --------------------------------------------------------------------------


def _spec_cache_path() -> Path | None:
    return pipeline_cache_path("specs")


def _section_params(section) -> dict:
    """``{key: {"check", "comment"}}`` of one configobj spec section (sub-sections skipped)."""
    out = {}
    for key, check in section.items():
        if key == "steps" or not isinstance(check, str):
            continue
        comment = (section.inline_comments.get(key) or "").lstrip("#").strip()
        out[key] = {"check": check.strip(), "comment": comment}
    return out


def _read_spec(cls) -> dict:
    """The spec of an stpipe Step or Pipeline class as plain data (JSON for the disk cache).

    The alias is the class's stpipe ``class_alias``; a class without one (a Step
    or Pipeline another package registers) is named by its class name.
    """
    spec = cls.load_spec_file()
    step_defs = getattr(cls, "step_defs", None) or {}
    return {
        "class_name": f"{cls.__module__}.{cls.__qualname__}",
        "alias": cls.class_alias or cls.__name__,
        "params": _section_params(spec),
        "steps": {
            step: {
                "class_name": f"{step_cls.__module__}.{step_cls.__qualname__}",
                "params": _section_params(spec["steps"][step]),
            }
            for step, step_cls in step_defs.items()
        },
    }


def _read_stage_specs() -> dict:
    return {
        name: {"step_class": stage.step_class, **_read_spec(stage.load_class())}
        for name, stage in STAGES.items()
    }


def _specs_match_stages(data) -> bool:
    """A cached document is used only if it describes exactly today's stage table."""
    return isinstance(data, dict) and set(data) == set(STAGES) and all(
        isinstance(data[name], dict) and data[name].get("step_class") == stage.step_class
        for name, stage in STAGES.items()
    )


@functools.lru_cache(maxsize=None)
def _all_specs() -> dict:
    """Specs of every stage in the stage table, from the disk cache or from jwst itself."""
    return cached_json(_spec_cache_path(), _read_stage_specs, _specs_match_stages)


@functools.lru_cache(maxsize=None)
def pipeline_spec(pipeline: str) -> PipelineSpec:
    """The spec of the stage ``pipeline`` (``image2``, ``image3``) from the installed jwst."""
    if pipeline in STAGES:
        raw = _all_specs()[pipeline]
    else:
        raw = _step_spec(pipeline)
        if raw is None:
            raise ConfigError(
                f"unknown pipeline {pipeline!r}{_suggest(pipeline, STAGES, stage_aliases())}"
            )

    def params(d: dict) -> dict[str, ParamSpec]:
        return {k: ParamSpec(k, v["check"], v.get("comment", "")) for k, v in d.items()}

    return PipelineSpec(
        name=pipeline,
        class_name=raw["class_name"],
        alias=raw["alias"],
        params=params(raw["params"]),
        steps={
            step: StepSpec(step, s["class_name"], params(s["params"]))
            for step, s in raw["steps"].items()
        },
    )


def _step_spec(name: str) -> dict | None:
    """The spec of the step ``jwstrun step`` runs as ``name`` (its row:
    :func:`jwstrun.stages.step_stage`), read from the class; None when ``name`` names
    none.  Not cached on disk: the step's class is imported to run it anyway."""
    from ..errors import InputError
    from ..stages import get_stage

    try:
        stage = get_stage(name)
    except InputError:
        return None
    return _read_spec(stage.load_class()) if stage.is_step else None


def is_step_section(name: str) -> bool:
    """Whether a profile section ``name`` names a step ``jwstrun step`` runs (its alias)."""
    return name not in STAGES and _step_spec(name) is not None


def clear_caches() -> None:
    """Forget the specs and the validator this process holds (the next call reads
    them again: from the disk cache, or from jwst if that is stale or off)."""
    pipeline_spec.cache_clear()
    _all_specs.cache_clear()
    _validator.cache_clear()


# --------------------------------------------------------------------------
# Coercion with stpipe's configobj Validator
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _validator():
    from configobj.validate import Validator, VdtTypeError

    def path_string(value, *args, **kwargs):
        # stpipe's own input_file/output_file checks touch the file system
        # (output_file creates directories); checking a profile must not.
        if isinstance(value, str):
            return value
        raise VdtTypeError(value)

    return Validator(
        {
            "input_file": path_string,
            "output_file": path_string,
            "is_string_or_datamodel": path_string,
            "is_datamodel": path_string,
        }
    )


def _parse_check(check: str) -> tuple[str, list, dict, Any]:
    """(function, args, kwargs, default) of a configobj check string.

    configobj has no public parser of check strings (docs/upstream-private.md).
    """
    return _validator()._parse_with_caching(check)


def spec_default(pspec: ParamSpec) -> Any:
    """The default value the spec gives ``pspec`` (None when it has none)."""
    try:
        return _validator().get_default_value(pspec.check)
    except KeyError:
        return None


class _Problem(Exception):
    """A value that the spec rejects; the caller adds file, line and key."""


def _coerce(pspec: ParamSpec, value: Any, text: str | None) -> Any:
    """Check and convert ``value`` with the spec, as stpipe would.

    YAML gives native ints/floats/bools; configobj (``.cfg`` files, ``strun``
    arguments) gives text.  A native value the check rejects by type is retried
    with the text the user wrote, so ``connectivity: 4`` means what
    ``--connectivity=4`` means to strun.
    """
    from configobj.validate import ValidateError, VdtTypeError, VdtValueError

    fun, args, _kwargs, _default = _parse_check(pspec.check)
    if value is None:
        default = spec_default(pspec)
        if default is None or "None" in args:
            return None
        raise _Problem(
            f"null is not allowed (spec: {pspec.check}); leave the parameter out to keep "
            f"the default {default!r}"
        )
    if isinstance(value, bool) and fun not in _BOOLEAN_CHECKS:
        candidates = [text if text is not None else str(value).lower()]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        candidates = [value] + ([text] if text is not None else [])
    else:
        candidates = [value]

    for candidate in candidates:
        try:
            checked = _validator().check(pspec.check, candidate)
            # configobj's range checks compare, and NaN passes every comparison: the
            # pipeline would fail late (or not at all) on what inf is refused for here.
            if fun in ("float", "float_list") and any(
                isinstance(v, float) and math.isnan(v)
                for v in (checked if isinstance(checked, list) else [checked])
            ):
                raise _Problem(f"{value!r} is not a number (NaN); give a finite value "
                               f"(spec: {pspec.check})")
            return checked
        except VdtTypeError:
            continue
        except VdtValueError as exc:
            if fun == "option":
                choices = ", ".join(repr(a) for a in args)
                raise _Problem(
                    f"{value!r} is not an allowed value; choose one of {choices}"
                    f"{_suggest(str(value), [str(a) for a in args], show_valid=False)}"
                ) from None
            raise _Problem(f"{value!r} is out of range: {exc} (spec: {pspec.check})") from None
        except ValidateError as exc:
            raise _Problem(f"{value!r}: {exc} (spec: {pspec.check})") from None
    expected = _EXPECTED.get(fun, fun)
    raise _Problem(f"{value!r} is not {expected} (spec: {pspec.check})")


def coerce_node(param, value_node, errors, where: str) -> tuple[bool, Any]:
    """(ok, value) of a profile's YAML value node for ``param``, coerced by its spec; a
    problem is added to ``errors`` at the node's line (pipeline and correction steps)."""
    from ._yaml import _line, _value_of

    ok, value, text = _value_of(value_node, errors, where)
    if not ok:
        return False, None
    try:
        return True, _coerce(param, value, text)
    except _Problem as exc:
        errors.add(_line(value_node), f"{where}: {exc}")
        return False, None
