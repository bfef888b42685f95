"""Layering: precedence of the parameter layers, and ``--set KEY=VALUE``.

Layers, lowest first (the first two happen inside stpipe at run time)::

    step spec default < CRDS pars-* reference < built-in profiles
        < user profile files < --set KEY=VALUE

``--set`` values are read as strun reads command-line values, and keys spelt
for the other stage (or with a strun-style stage name) get a hint that says so.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Mapping, Sequence

from ..errors import ConfigError
from ..stages import STAGES
from ._hints import _suggest, stage_aliases
from .model import (
    _REFUSED_KEYS,
    Origin,
    ParameterSet,
    Profile,
    Setting,
    _ignored,
    _pair_problems,
    _refusal,
    load_profiles,
)
from .spec import _NOT_PARAMETERS, PipelineSpec, _coerce, _Problem, pipeline_spec, spec_default

__all__ = [
    "merge_layers",
    "resolve_parameters",
    "build_call_parameters",
    "build_corrections",
    "parse_sets",
    "crds_steppars_environ",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------
# Layering
# --------------------------------------------------------------------------


def merge_layers(pipeline: str, layers: Sequence[Profile]) -> ParameterSet:
    """Settings of ``layers`` for ``pipeline``, later layers winning, with provenance."""
    merged = ParameterSet(pipeline)
    for layer in layers:
        for step, key, setting in layer.section(pipeline).items():
            merged.set(step, key, setting)
        if layer.section(pipeline).before is not None:  # a list replaces the lower ones'
            merged.before = list(layer.section(pipeline).before)
    return merged


def _crds_layer(pipeline: str, crds_pars: Mapping | None) -> ParameterSet:
    """Validate a CRDS ``pars-*`` dict ``{params..., "steps": {step: {...}}}`` for display."""
    layer = ParameterSet(pipeline)
    if not crds_pars:
        return layer
    spec = pipeline_spec(pipeline)

    def add(step, values: Mapping, label: str):
        params = spec.params_of(step)
        for key, value in values.items():
            if key in _NOT_PARAMETERS or key == "steps":
                continue  # CRDS files carry class/name for stpipe; not parameters
            if key not in params:
                logger.warning("CRDS %s sets unknown parameter %r; ignored", label, key)
                continue
            text = value if isinstance(value, str) else None
            try:
                coerced = _coerce(params[key], value, text)
            except _Problem as exc:
                logger.warning("CRDS %s: %s: %s; ignored", label, key, exc)
                continue
            layer.set(step, key, Setting(coerced, Origin("crds", label)))

    add(None, crds_pars, f"pars-{spec.class_name.rsplit('.', 1)[-1].lower()}")
    for step, values in (crds_pars.get("steps") or {}).items():
        if step in spec.steps and isinstance(values, Mapping):
            add(step, values, f"pars-{spec.steps[step].class_name.rsplit('.', 1)[-1].lower()}")
    return layer


def resolve_parameters(
    pipeline: str,
    layers: Sequence[Profile],
    crds_pars: Mapping | None = None,
    *,
    include_defaults: bool = True,
    changed_only: bool = False,
) -> ParameterSet:
    """Every effective parameter of ``pipeline`` and where it came from.

    Order, lowest first: spec defaults, ``crds_pars`` (the CRDS ``pars-*``
    parameters ``{params..., "steps": {step: {...}}}``, as stpipe's public
    ``Pipeline.get_config_from_reference(dataset)`` returns them; stpipe applies
    the same layer itself at run time), then ``layers`` (profiles and ``--set``)
    in the order given.
    With ``include_defaults=False`` only ``crds_pars`` and ``layers`` appear; with
    ``changed_only=True`` only the values that differ from the spec default.
    """
    spec = pipeline_spec(pipeline)
    resolved = ParameterSet(pipeline)
    if changed_only:
        given = resolve_parameters(pipeline, layers, crds_pars, include_defaults=False)
        for step, key, setting in given.items():
            pspec = spec.params_of(step).get(key)
            if pspec is None or setting.value != spec_default(pspec):
                resolved.set(step, key, setting)
        resolved.before = given.before  # running a correction is a change in itself
        return resolved
    if include_defaults:
        spec_origin = Origin("spec", spec.alias)
        for step in [None, *spec.steps]:
            if step is not None:
                resolved.steps[step] = {}
            for key, pspec in spec.params_of(step).items():
                if key in _NOT_PARAMETERS:
                    continue
                resolved.set(step, key, Setting(spec_default(pspec), spec_origin))
    for step, key, setting in _crds_layer(pipeline, crds_pars).items():
        resolved.set(step, key, setting)
    merged = merge_layers(pipeline, layers)
    for step, key, setting in merged.items():
        resolved.set(step, key, setting)
    resolved.before = merged.before
    return resolved


def build_call_parameters(
    pipeline_name: str, profiles: Sequence[str | os.PathLike] = (), sets: Sequence[str] = ()
) -> dict:
    """Keyword arguments for ``Pipeline.call``: ``{pipeline params..., "steps": {...}}``.

    Holds everything above the CRDS layer (profiles, then ``--set``); stpipe
    merges the CRDS ``pars-*`` references underneath at run time.  Everything is
    validated before any processing; errors are :class:`ConfigError`.
    """
    layers = [*load_profiles(profiles), parse_sets(sets, pipeline_name)]
    merged = merge_layers(pipeline_name, layers)
    problems = _pair_problems(pipeline_name, merged)
    if problems:
        raise ConfigError(problems[0][1])
    return merged.to_call_kwargs()


def build_corrections(
    pipeline_name: str, profiles: Sequence[str | os.PathLike] = (), sets: Sequence[str] = ()
) -> list[dict]:
    """The corrections to run before ``pipeline_name`` (the profiles' ``before:`` lists,
    the last layer's winning), each as a worker runs it
    (:meth:`jwstrun.profiles.Correction.to_task`); steps the profiles skip are left out."""
    layers = [*load_profiles(profiles), parse_sets(sets, pipeline_name)]
    merged = merge_layers(pipeline_name, layers)
    return [c.to_task() for c in merged.before or () if not c.skipped]


# --------------------------------------------------------------------------
# --set KEY=VALUE
# --------------------------------------------------------------------------

_SET_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _split_value(text: str) -> Any:
    """Text after ``=`` the way strun reads it (configobj: ``a,b`` is a list, quotes group).

    strun reads its own command-line values with this same configobj method
    (stpipe ``_cmdline``); docs/upstream-private.md says why it stays.
    """
    from configobj import ConfigObj

    if text.strip() in ("None", "null"):
        return None
    try:
        value, _comment = ConfigObj()._handle_value(text)
    except Exception as exc:  # configobj raises SyntaxError-like errors on bad quoting
        raise _Problem(f"cannot parse value {text!r}: {exc}") from None
    return value


def _other_pipeline_hint(pipeline: str, step: str | None, param: str | None) -> str:
    """Point at the other stage when the key belongs there (commands running both)."""
    for other in STAGES:
        if other == pipeline:
            continue
        spec = pipeline_spec(other)
        if step is None and param in spec.params or (
            step in spec.steps and (param is None or param in spec.steps[step].params)
        ):
            return f" (it belongs to {other}: prefix the key with '{other}.')"
    return ""


def _other_stage_has(others: Sequence[str], step: str | None, param: str) -> bool:
    """Whether one of the stages ``others`` has ``step`` (``param`` of the pipeline itself
    when ``step`` is None): an unprefixed key is then theirs to check, not an error here."""
    for other in others:
        spec = pipeline_spec(other)
        if (param in spec.params) if step is None else (step in spec.steps):
            return True
    return False


def _set_target(
    key: str, pipeline: str, spec: PipelineSpec, others: Sequence[str] = ()
) -> tuple[str | None, str] | None:
    """``(step or None, parameter)`` a ``--set`` key names for ``pipeline``; None when
    the key is prefixed for another stage, or names a step only another stage of
    ``others`` has.  Raises :class:`_Problem`."""
    parts = key.split(".")
    aliases = stage_aliases()
    if parts[0] in STAGES or parts[0] in aliases:
        if aliases.get(parts[0], parts[0]) != pipeline:
            return None
        parts = parts[1:]
        if not parts:
            raise _Problem(
                f"cannot read key {key!r}; write {key}.PARAM=VALUE or {key}.steps.STEP.PARAM=VALUE"
            )
    if parts[0] == "steps":
        if len(parts) != 3:
            raise _Problem("a step parameter is written steps.STEP.PARAM=VALUE")
        step, param = parts[1], parts[2]
        if step in _REFUSED_KEYS:
            raise _Problem(_refusal(step))
        if step not in spec.steps and _other_stage_has(others, step, param):
            return None
        if step not in spec.steps and others:  # in none of the stages the command serves
            names = dict.fromkeys(name for pipe in [pipeline, *others]
                                  for name in pipeline_spec(pipe).steps)
            raise _Problem(
                f"unknown step {step!r} in {' or '.join([pipeline, *others])}"
                f"{_suggest(step, names)}"
            )
        if step not in spec.steps:
            raise _Problem(
                f"unknown step {step!r} in {pipeline} ({spec.alias})"
                f"{_suggest(step, spec.steps)}{_other_pipeline_hint(pipeline, step, None)}"
            )
        return step, param
    if len(parts) == 1:
        if parts[0] in spec.steps:
            raise _Problem(f"{parts[0]!r} is a step; write steps.{parts[0]}.PARAM=VALUE")
        return None, parts[0]
    if parts[0] in spec.steps:
        hint = f"; did you mean steps.{'.'.join(parts)}?"
    else:
        hint = _suggest(parts[0], ["steps", *STAGES])
    raise _Problem(f"cannot read key {key!r}{hint}")


def _parse_set(
    item: str, pipeline: str, spec: PipelineSpec, others: Sequence[str] = ()
) -> tuple[str | None, str, Any] | None:
    """``(step or None, parameter, checked value)`` of one ``--set`` item; None when it
    is meant for another stage.  Raises :class:`_Problem`."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if key.startswith("-"):  # strun's --steps.STEP.PARAM=VALUE given to --set
        dashes = key[: len(key) - len(key.lstrip("-"))]
        raise _Problem(f"drop the leading {dashes}, as in --set {item.strip()[len(dashes):]}")
    if not sep or not _SET_KEY.match(key):
        raise _Problem(
            "expected KEY=VALUE, e.g. steps.tweakreg.snr_threshold=10 or save_bsub=true"
        )
    target = _set_target(key, pipeline, spec, others)
    if target is None:
        return None
    step, param = target
    if param in _REFUSED_KEYS:
        raise _Problem(_refusal(param))
    params = {k: v for k, v in spec.params_of(step).items() if k not in _NOT_PARAMETERS}
    if param not in params and step is None and _other_stage_has(others, None, param):
        return None
    if param not in params and step is None and others:
        names = dict.fromkeys(name for pipe in [pipeline, *others]
                              for name in pipeline_spec(pipe).params_of(None)
                              if name not in _NOT_PARAMETERS)
        raise _Problem(
            f"unknown parameter {param!r} for the pipelines {' or '.join([pipeline, *others])}"
            f"{_suggest(param, names)}"
        )
    if param not in params:
        owner = f"step {step}" if step else spec.alias
        raise _Problem(
            f"unknown parameter {param!r} for {owner} in {pipeline}"
            f"{_suggest(param, params)}{_other_pipeline_hint(pipeline, step, param)}"
        )
    value = _coerce(params[param], _split_value(text), None)
    if _ignored(step, param, value):
        raise _Problem(_ignored(step, param, value))
    return step, param, value


def parse_sets(
    sets: Sequence[str], pipeline: str, *, pipelines: Sequence[str] | None = None
) -> Profile:
    """Turn ``--set`` options into a pseudo-profile for ``pipeline``.

    ``KEY`` is ``PARAM`` (pipeline level), ``steps.STEP.PARAM``, or either with a
    stage prefix (``image2.``, ``image3.``); prefixed settings for another stage
    are ignored so one list of ``--set`` can serve a command that runs both.
    ``pipelines`` are the stages this list serves (default: ``pipeline`` alone):
    an unprefixed key then applies to those of them that have its step (or
    pipeline parameter), so ``steps.tweakreg.snr_threshold=10`` is image3's and
    ``steps.resample.kernel=gaussian`` both stages'; a key none of them has is an
    error.
    """
    spec = pipeline_spec(pipeline)
    others = [other for other in (pipelines or ()) if other != pipeline]
    profile = Profile(name="--set", path=None, kind="set")
    section = ParameterSet(pipeline)
    profile.sections[pipeline] = section
    problems = []
    for item in sets:
        try:
            parsed = _parse_set(item, pipeline, spec, others)
        except _Problem as exc:
            problems.append(f"--set {item}: {exc}")
            continue
        if parsed is not None:
            step, param, value = parsed
            section.set(step, param, Setting(value, Origin("set", item)))
    if problems:
        if len(problems) == 1:
            raise ConfigError(problems[0])
        raise ConfigError(f"{len(problems)} problems:\n  " + "\n  ".join(problems))
    return profile


def crds_steppars_environ(disabled: bool) -> dict[str, str]:
    """Environment for a pipeline worker honouring ``--no-crds-steppars``.

    stpipe's ``Pipeline.call`` reads ``STPIPE_DISABLE_CRDS_STEPPARS`` (the same
    switch as ``strun --disable-crds-steppars``); set it in the worker process.
    """
    return {"STPIPE_DISABLE_CRDS_STEPPARS": "True"} if disabled else {}
