"""Load, layer and validate step-parameter profiles for calwebb_image2/image3.

A profile is a small YAML file with plain data only::

    description: Quick look
    why:
      image2.steps.resample.skip: Stage 3 never reads the Stage 2 _i2d.
    image2:
      steps:
        resample:
          skip: true
    image3:
      in_memory: true
      steps:
        tweakreg:
          snr_threshold: 20

Each pipeline section holds pipeline-level parameters plus a ``steps:``
mapping, the same shape ``Pipeline.call(steps=...)`` takes.  Values are
checked and coerced with the pipeline's own stpipe spec (configobj
``Validator``), so a profile means exactly what the same text would mean in an
stpipe ``.cfg`` file or on the ``strun`` command line.

Layering, lowest first (the first two happen inside stpipe at run time)::

    step spec default < CRDS pars-* reference < built-in profiles
        < user profile files < --set KEY=VALUE

Nothing here imports jwst at module import time; the pipeline specs are read
once per process (and cached on disk per jwst/stpipe version).
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ._pipeline_cache import cached_json, pipeline_cache_path
from .errors import ConfigError, OutputError

__all__ = [
    "PIPELINES",
    "Origin",
    "Setting",
    "Profile",
    "ParameterSet",
    "ParamSpec",
    "StepSpec",
    "PipelineSpec",
    "builtin_profiles_dir",
    "builtin_profile_names",
    "list_profiles",
    "load_profile",
    "load_profiles",
    "parse_sets",
    "pipeline_spec",
    "merge_layers",
    "resolve_parameters",
    "build_call_parameters",
    "crds_step_parameters",
    "crds_steppars_environ",
    "export_parameter_file",
    "export_profile",
]

logger = logging.getLogger(__name__)

#: Pipelines a profile may configure: section name -> (module, class).
PIPELINES: dict[str, tuple[str, str]] = {
    "image2": ("jwst.pipeline", "Image2Pipeline"),
    "image3": ("jwst.pipeline", "Image3Pipeline"),
}

# Names people may type for a pipeline section, for "did you mean" hints.
_PIPELINE_ALIASES = {
    "calwebb_image2": "image2",
    "image2pipeline": "image2",
    "stage2": "image2",
    "calwebb_image3": "image3",
    "image3pipeline": "image3",
    "stage3": "image3",
}

_TOP_LEVEL_KEYS = ("description", "why", "image2", "image3")

# stpipe keys that would make it import code or read other parameter files
# (which in turn may name classes).  A profile may never set them.
_REFUSED_KEYS = {
    "class": "it names a Python class for stpipe to import",
    "name": "stpipe uses it together with 'class' to pick the step class to import",
    "config_file": "it loads another stpipe parameter file, which may name Python classes",
    "pre_hooks": "hooks name Python classes or commands that stpipe imports and runs",
    "post_hooks": "hooks name Python classes or commands that stpipe imports and runs",
    # Not code, but a way around OUTDIR: stpipe would write that step's products
    # there directly, outside jwstrun's validate-then-move (tests/reliability).
    "output_dir": "jwstrun writes every product into -o OUTDIR, after validating it; "
    "an output_dir would write around that (possibly outside OUTDIR)",
}

# Pipeline-level keys stpipe accepts and then ignores (a pipeline run on its own sets
# skip back to False): refused, so that nobody believes a setting that does nothing.
_PIPELINE_REFUSED_KEYS = {
    "skip": "stpipe ignores it for a pipeline run on its own, which would run anyway. "
    "Skip steps with steps.STEP.skip=true, or do not run the pipeline",
}

# Spec keys that are plumbing rather than parameters (added by Pipeline.load_spec_file).
_NOT_PARAMETERS = frozenset({"class", "name", "config_file"})

_YAML_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}

# Limits that make YAML "billion laughs" and huge files fail fast and clearly.
MAX_FILE_BYTES = 1_000_000
MAX_NODES = 10_000
MAX_DEPTH = 16

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


# --------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """Where one parameter value came from.

    ``kind`` is one of ``spec`` (the step's spec default), ``crds`` (a CRDS
    ``pars-*`` reference), ``builtin`` (a profile shipped with jwstrun),
    ``file`` (a user profile file) or ``set`` (``--set`` on the command line).
    """

    kind: str
    label: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        if self.kind == "spec":
            return "spec default"
        if self.kind == "crds":
            return f"crds {self.label}"
        if self.kind == "set":
            return f"--set {self.label}"
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        if self.kind == "builtin":
            return f"profile {self.label} ({Path(self.file).name}:{self.line})"
        return where

    def to_dict(self) -> dict:
        return {"kind": self.kind, "label": self.label, "file": self.file, "line": self.line}


@dataclass
class Setting:
    """One parameter value (already coerced by the spec) and its origin."""

    value: Any
    origin: Origin
    why: str | None = None

    def to_dict(self) -> dict:
        out = {"value": _jsonable(self.value), "source": str(self.origin), "origin": self.origin.to_dict()}
        if self.why:
            out["why"] = self.why
        return out


@dataclass
class ParameterSet:
    """Parameters for one pipeline: pipeline-level settings plus per-step settings."""

    pipeline: str
    params: dict[str, Setting] = field(default_factory=dict)
    steps: dict[str, dict[str, Setting]] = field(default_factory=dict)

    def items(self) -> Iterable[tuple[str | None, str, Setting]]:
        """Yield ``(step or None, parameter, setting)`` for every setting."""
        for key, setting in self.params.items():
            yield None, key, setting
        for step, params in self.steps.items():
            for key, setting in params.items():
                yield step, key, setting

    def is_empty(self) -> bool:
        return not self.params and not any(self.steps.values())

    def set(self, step: str | None, key: str, setting: Setting) -> None:
        if step is None:
            self.params[key] = setting
        else:
            self.steps.setdefault(step, {})[key] = setting

    def get(self, step: str | None, key: str) -> Setting | None:
        if step is None:
            return self.params.get(key)
        return self.steps.get(step, {}).get(key)

    def to_call_kwargs(self) -> dict:
        """``{pipeline-level params..., "steps": {step: {param: value}}}`` for ``Pipeline.call``."""
        out: dict[str, Any] = {key: _copy(s.value) for key, s in self.params.items()}
        steps = {
            step: {key: _copy(s.value) for key, s in params.items()}
            for step, params in self.steps.items()
            if params
        }
        if steps:
            out["steps"] = steps
        return out

    def to_dict(self) -> dict:
        """JSON-able form with the source of every value (for manifests and ``--json``)."""
        return {
            "pipeline": self.pipeline,
            "parameters": {k: s.to_dict() for k, s in self.params.items()},
            "steps": {
                step: {k: s.to_dict() for k, s in params.items()}
                for step, params in self.steps.items()
            },
        }


@dataclass
class Profile:
    """A parsed, validated profile (or the ``--set`` overrides, as a pseudo-profile)."""

    name: str
    path: Path | None
    kind: str  # "builtin", "file" or "set"
    description: str = ""
    sections: dict[str, ParameterSet] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)

    def section(self, pipeline: str) -> ParameterSet:
        """The settings for ``pipeline`` (empty if the profile does not mention it)."""
        return self.sections.get(pipeline) or ParameterSet(pipeline)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "kind": self.kind,
            "description": self.description,
            "pipelines": {name: sec.to_dict() for name, sec in self.sections.items()},
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
# Spec introspection (the ~3 s jwst.pipeline import happens here, once)
# --------------------------------------------------------------------------


def _pipeline_cls(pipeline: str):
    """The pipeline class of a profile section (the package ``jwst.pipeline`` imported whole)."""
    import importlib

    module_name, class_name = PIPELINES[pipeline]
    return getattr(importlib.import_module(module_name), class_name)


def _spec_cache_path() -> Path | None:
    return pipeline_cache_path("specs")


def _read_specs_from_pipeline(pipeline: str) -> dict:
    cls = _pipeline_cls(pipeline)
    spec = cls.load_spec_file()

    def params(section) -> dict:
        out = {}
        for key, check in section.items():
            if key == "steps" or not isinstance(check, str):
                continue
            comment = (section.inline_comments.get(key) or "").lstrip("#").strip()
            out[key] = {"check": check.strip(), "comment": comment}
        return out

    return {
        "class_name": f"{cls.__module__}.{cls.__qualname__}",
        "alias": cls.class_alias or class_name,
        "params": params(spec),
        "steps": {
            step: {
                "class_name": f"{step_cls.__module__}.{step_cls.__qualname__}",
                "params": params(spec["steps"][step]),
            }
            for step, step_cls in cls.step_defs.items()
        },
    }


@functools.lru_cache(maxsize=None)
def _all_specs() -> dict:
    """Specs of every pipeline in PIPELINES, from the disk cache or from jwst itself."""
    return cached_json(
        _spec_cache_path(),
        lambda: {name: _read_specs_from_pipeline(name) for name in PIPELINES},
        lambda data: set(data) == set(PIPELINES),
    )


@functools.lru_cache(maxsize=None)
def pipeline_spec(pipeline: str) -> PipelineSpec:
    """The spec of ``pipeline`` (``image2`` or ``image3``) from the installed jwst."""
    if pipeline not in PIPELINES:
        raise ConfigError(
            f"unknown pipeline {pipeline!r}{_suggest(pipeline, PIPELINES, _PIPELINE_ALIASES)}"
        )
    raw = _all_specs()[pipeline]

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

    validator = Validator()
    validator.functions.update(
        input_file=path_string,
        output_file=path_string,
        is_string_or_datamodel=path_string,
        is_datamodel=path_string,
    )
    return validator


def _parse_check(check: str) -> tuple[str, list, dict, Any]:
    """(function, args, kwargs, default) of a configobj check string."""
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


# --------------------------------------------------------------------------
# YAML reading (safe, with line numbers)
# --------------------------------------------------------------------------


def _suggest(
    word: str,
    choices: Iterable[str],
    aliases: Mapping[str, str] | None = None,
    *,
    show_valid: bool = True,
) -> str:
    """``; did you mean 'x'?`` plus the valid names, for error messages."""
    choices = list(choices)
    if aliases and word.lower() in aliases:
        return f"; did you mean {aliases[word.lower()]!r}?"
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    valid = ", ".join(choices) if show_valid and len(choices) <= 12 else ""
    if close:
        hint = "; did you mean " + " or ".join(repr(c) for c in close) + "?"
        return hint + (f" Valid: {valid}." if valid else "")
    return f"; valid: {valid}." if valid else ""


class _Errors:
    """Collects every problem in one file so the user sees them all at once."""

    def __init__(self, where: str):
        self.where = where
        self.messages: list[str] = []

    def add(self, line: int | None, message: str) -> None:
        prefix = f"{self.where}:{line}" if line else self.where
        self.messages.append(f"{prefix}: {message}")

    def raise_if_any(self) -> None:
        if self.messages:
            if len(self.messages) == 1:
                raise ConfigError(self.messages[0])
            raise ConfigError(
                f"{len(self.messages)} problems:\n  " + "\n  ".join(self.messages)
            )


def _line(node) -> int:
    return node.start_mark.line + 1


def _check_plain_yaml(root, errors: _Errors) -> bool:
    """Refuse tags, merge keys, alias bombs and deep nesting before reading values."""
    import yaml

    budget = [MAX_NODES]

    def walk(node, depth: int) -> bool:
        budget[0] -= 1
        if budget[0] < 0:
            errors.add(
                _line(node),
                f"the document expands to more than {MAX_NODES} YAML nodes "
                "(aliases that repeat aliases?); profiles are small, write the values out",
            )
            return False
        if depth > MAX_DEPTH:
            errors.add(_line(node), "nested too deeply (a recursive YAML alias?)")
            return False
        if node.tag not in _YAML_PLAIN_TAGS:
            errors.add(
                _line(node),
                f"YAML tag {node.tag!r} is not allowed: profiles hold plain values "
                "(strings, numbers, true/false, null, lists, mappings) and never build "
                "Python objects; remove the tag (quote dates and other special values)",
            )
            return False
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.tag == "tag:yaml.org,2002:merge" or (
                    isinstance(key, yaml.ScalarNode) and key.value == "<<"
                ):
                    errors.add(
                        _line(key),
                        "YAML merge keys ('<<') are not supported in profiles; "
                        "write the parameters out",
                    )
                    return False
                if not walk(key, depth + 1) or not walk(value, depth + 1):
                    return False
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                if not walk(item, depth + 1):
                    return False
        return True

    return walk(root, 0)


def _compose_file(text: str, where: str):
    import yaml

    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        parts = [exc.context, exc.problem]
        problem = ", ".join(p for p in parts if p) or str(exc)
        raise ConfigError(f"{where}{line}: not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    except RecursionError:
        # PyYAML's composer recurses once per nesting level: a few hundred
        # '[' exhaust the stack long before the 16-level check can run.
        raise ConfigError(
            f"{where}: the YAML is nested too deeply; profiles are at most a few levels deep"
        ) from None


def _scalar(node) -> Any:
    import yaml

    return yaml.SafeLoader("").construct_object(node, deep=True)


def _mapping_items(node, errors: _Errors, what: str):
    """Yield ``(key, key_node, value_node)`` of a mapping node; report non-string and duplicate keys."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        errors.add(_line(node), f"{what} must be a mapping (key: value lines)")
        return
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
            errors.add(_line(key_node), f"keys in {what} must be names, not {key_node.value!r}")
            continue
        key = key_node.value
        if key in seen:
            errors.add(
                _line(key_node), f"{key!r} appears twice in {what} (first on line {seen[key]})"
            )
            continue
        seen[key] = _line(key_node)
        yield key, key_node, value_node


def _value_of(node, errors: _Errors, what: str) -> tuple[bool, Any, str | None]:
    """(ok, value, source text) of a parameter value node: a scalar or a list of scalars."""
    import yaml

    if isinstance(node, yaml.ScalarNode):
        return True, _scalar(node), node.value
    if isinstance(node, yaml.SequenceNode):
        items = []
        for item in node.value:
            if not isinstance(item, yaml.ScalarNode):
                errors.add(_line(item), f"{what}: list items must be plain values")
                return False, None, None
            items.append(_scalar(item))
        return True, items, None
    errors.add(_line(node), f"{what}: expected a value or a list, not a mapping")
    return False, None, None


def _refusal(key: str) -> str:
    return (
        f"{key!r} is refused: {_REFUSED_KEYS[key]}. Profiles only set parameters of the "
        "pipeline's own steps"
    )


def _ignored(step: str | None, key: str, value: Any) -> str | None:
    """Why setting ``key`` of the pipeline (``step`` None) to ``value`` is refused; None if not."""
    if step is None and key in _PIPELINE_REFUSED_KEYS and value is True:
        return f"{key}: true is refused at pipeline level: {_PIPELINE_REFUSED_KEYS[key]}"
    return None


def _parse_section(pipeline: str, node, errors: _Errors, make_origin) -> ParameterSet:
    spec = pipeline_spec(pipeline)
    section = ParameterSet(pipeline)
    for key, key_node, value_node in _mapping_items(node, errors, pipeline):
        if key == "steps":
            for step, step_key, step_node in _mapping_items(value_node, errors, f"{pipeline}.steps"):
                if step in _REFUSED_KEYS:
                    errors.add(_line(step_key), _refusal(step))
                    continue
                if step not in spec.steps:
                    errors.add(
                        _line(step_key),
                        f"unknown step {step!r} in {pipeline} ({spec.alias})"
                        f"{_suggest(step, spec.steps)}",
                    )
                    continue
                section.steps.setdefault(step, {})
                for pkey, pkey_node, pvalue_node in _mapping_items(
                    step_node, errors, f"{pipeline}.steps.{step}"
                ):
                    setting = _parse_param(
                        spec, step, pkey, pkey_node, pvalue_node, errors, make_origin
                    )
                    if setting is not None:
                        section.steps[step][pkey] = setting
            continue
        if key in spec.steps:
            errors.add(
                _line(key_node),
                f"{key!r} is a step of {pipeline}; put it under 'steps:' "
                f"({pipeline}: steps: {key}: ...)",
            )
            continue
        setting = _parse_param(spec, None, key, key_node, value_node, errors, make_origin)
        if setting is not None:
            section.params[key] = setting
    return section


def _parse_param(spec: PipelineSpec, step, key, key_node, value_node, errors, make_origin):
    where = f"{spec.name}.steps.{step}" if step else spec.name
    owner = f"step {step} ({spec.steps[step].class_name.rsplit('.', 1)[-1]})" if step else spec.alias
    if key in _REFUSED_KEYS:
        errors.add(_line(key_node), _refusal(key))
        return None
    params = {k: v for k, v in spec.params_of(step).items() if k not in _NOT_PARAMETERS}
    if key not in params:
        hint = _suggest(key, params)
        if step is None and any(key in s.params for s in spec.steps.values()):
            owners = [s for s, st in spec.steps.items() if key in st.params]
            hint += f" ({key!r} is a parameter of step {', '.join(owners)}: put it under steps:)"
        errors.add(_line(key_node), f"unknown parameter {key!r} for {owner} in {spec.name}{hint}")
        return None
    ok, value, text = _value_of(value_node, errors, f"{where}.{key}")
    if not ok:
        return None
    try:
        coerced = _coerce(params[key], value, text)
    except _Problem as exc:
        errors.add(_line(value_node), f"{where}.{key}: {exc}")
        return None
    if _ignored(step, key, coerced):
        errors.add(_line(key_node), f"{where}.{_ignored(step, key, coerced)}")
        return None
    return Setting(coerced, make_origin(_line(value_node)))


# --------------------------------------------------------------------------
# Profiles: find, load, list
# --------------------------------------------------------------------------


def builtin_profiles_dir() -> Path:
    """Directory of the built-in profiles.

    Installed wheels carry them as ``jwstrun/configs`` (pyproject force-include);
    an editable or source checkout reads ``<repo>/configs``.
    """
    try:
        packaged = Path(str(resources.files("jwstrun") / "configs"))
        if packaged.is_dir():
            return packaged
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - odd importers
        pass
    return Path(__file__).resolve().parent.parent / "configs"


def builtin_profile_names() -> list[str]:
    """Names of the built-in profiles, sorted."""
    directory = builtin_profiles_dir()
    if not directory.is_dir():
        return []
    # 'default' first: it is what runs when no profile is named.
    return sorted((p.stem for p in directory.glob("*.yaml")), key=lambda n: (n != "default", n))


def _is_path(ref: str | os.PathLike) -> bool:
    text = str(ref)
    return (
        isinstance(ref, os.PathLike)
        or os.sep in text
        or "/" in text
        or text.endswith((".yaml", ".yml"))
    )


def _resolve_ref(ref: str | os.PathLike) -> tuple[str, Path, str]:
    """(name, path, kind) of a profile reference: a built-in name or a file path."""
    if _is_path(ref):
        path = Path(ref)
        if not path.is_file():
            raise ConfigError(
                f"{path}: profile file not found; give an existing .yaml file or one of the "
                f"built-in profile names ({', '.join(builtin_profile_names())})"
            )
        return path.stem, path, "file"
    name = str(ref)
    names = builtin_profile_names()
    if name not in names:
        raise ConfigError(
            f"unknown profile {name!r}{_suggest(name, names)} "
            "(a file path must end in .yaml or contain a '/')"
        )
    return name, builtin_profiles_dir() / f"{name}.yaml", "builtin"


def load_profile(ref: str | os.PathLike) -> Profile:
    """Read and validate one profile: a built-in name (``fast``) or a YAML file path.

    Raises
    ------
    ConfigError
        Listing every problem as ``file:line: message``, with the closest valid
        names for unknown pipelines, steps and parameters.
    """
    name, path, kind = _resolve_ref(ref)
    where = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(
                f"{where}: {size} bytes is too large for a profile (limit {MAX_FILE_BYTES})"
            )
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not a UTF-8 text file; a profile is YAML text") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read profile: {exc.strerror or exc}") from None
    return _parse_profile_text(text, where, name, path, kind)


def _parse_profile_text(text: str, where: str, name: str, path: Path | None, kind: str) -> Profile:
    import yaml

    errors = _Errors(where)
    profile = Profile(name=name, path=path, kind=kind)
    root = _compose_file(text, where)
    if root is None:
        return profile
    if not _check_plain_yaml(root, errors):
        errors.raise_if_any()

    def origin_factory(line: int) -> Origin:
        return Origin(kind, name, where, line)

    why_node = None
    for key, key_node, value_node in _mapping_items(root, errors, "the profile"):
        if key == "description":
            if not isinstance(value_node, yaml.ScalarNode) or not isinstance(
                _scalar(value_node), str
            ):
                errors.add(_line(value_node), "description must be a string")
            else:
                profile.description = " ".join(_scalar(value_node).split())
        elif key == "why":
            why_node = value_node
        elif key in PIPELINES:
            profile.sections[key] = _parse_section(key, value_node, errors, origin_factory)
        elif key in _REFUSED_KEYS:
            errors.add(_line(key_node), _refusal(key))
        else:
            hint = _suggest(key, _TOP_LEVEL_KEYS, _PIPELINE_ALIASES)
            for pipe in PIPELINES:
                if key in pipeline_spec(pipe).steps:
                    hint = f"; {key!r} is a step of {pipe}: write it as {pipe}: steps: {key}: ..."
                    break
            errors.add(_line(key_node), f"unknown top-level key {key!r}{hint}")
    if why_node is not None:
        _parse_why(profile, why_node, errors)
    for pipe, section in profile.sections.items():
        for line, message in _pair_problems(pipe, section):
            errors.add(line, message)
    errors.raise_if_any()
    return profile


#: (pipeline, step, larger, smaller, factor): stpipe checks each value alone, but the
#: step refuses the pair at run time (stcal.tweakreg: separation > sqrt(2) x tolerance),
#: records FAILED and aligns nothing -- caught here, before anything runs.
_PAIR_RULES = [
    ("image3", "tweakreg", "separation", "tolerance", 2 ** 0.5),
    ("image3", "tweakreg", "abs_separation", "abs_tolerance", 2 ** 0.5),
]


def _pair_problems(pipeline: str, params: ParameterSet) -> list[tuple[int | None, str]]:
    """(line, message) for every _PAIR_RULES pair ``params`` breaks (spec defaults fill
    in the member it does not set; a pair it does not touch is not its business)."""
    problems = []
    for pipe, step, big, small, factor in _PAIR_RULES:
        if pipe != pipeline:
            continue
        mine = {key: params.get(step, key) for key in (big, small)}
        if not any(mine.values()):
            continue
        spec = pipeline_spec(pipeline).steps[step].params
        value = {k: (mine[k].value if mine[k] else spec_default(spec[k])) for k in mine}
        if value[big] is None or value[small] is None or value[big] > factor * value[small]:
            continue

        def where(key):
            return str(mine[key].origin) if mine[key] else "spec default"

        line = next((mine[k].origin.line for k in (big, small) if mine[k]), None)
        problems.append((line, (
            f"{pipeline}.steps.{step}: {big} {value[big]:g} ({where(big)}) must be larger than "
            f"sqrt(2) x {small} {value[small]:g} ({where(small)}) = {factor * value[small]:.3g}; "
            f"{step} would refuse the pair at run time and record FAILED. Raise {big} or "
            f"lower {small}."
        )))
    return problems


def _setting_paths(profile: Profile) -> set[str]:
    paths = set()
    for pipe, section in profile.sections.items():
        paths.add(pipe)
        for step, key, _s in section.items():
            paths.add(f"{pipe}.{key}" if step is None else f"{pipe}.steps.{step}.{key}")
            if step is not None:
                paths.add(f"{pipe}.steps.{step}")
        for step in section.steps:
            paths.add(f"{pipe}.steps.{step}")
    return paths


def _parse_why(profile: Profile, node, errors: _Errors) -> None:
    """``why:`` maps a setting path (``image2.steps.resample.skip``) to the reason for it."""
    paths = _setting_paths(profile)
    for key, key_node, value_node in _mapping_items(node, errors, "why"):
        value = _scalar(value_node) if value_node.tag == "tag:yaml.org,2002:str" else None
        if not isinstance(value, str):
            errors.add(_line(value_node), f"why.{key}: the reason must be a string")
            continue
        if key not in paths:
            errors.add(
                _line(key_node),
                f"why: {key!r} explains a setting this profile does not make"
                f"{_suggest(key, sorted(paths))}",
            )
            continue
        profile.why[key] = " ".join(value.split())
    # Attach each reason to the settings it covers (the most specific path wins).
    for pipe, section in profile.sections.items():
        for step, key, setting in section.items():
            candidates = (
                [f"{pipe}.{key}", pipe]
                if step is None
                else [f"{pipe}.steps.{step}.{key}", f"{pipe}.steps.{step}", pipe]
            )
            for path in candidates:
                if path in profile.why:
                    setting.why = profile.why[path]
                    break


def list_profiles() -> list[Profile]:
    """Every built-in profile, parsed and validated."""
    return [load_profile(name) for name in builtin_profile_names()]


def load_profiles(refs: Sequence[str | os.PathLike]) -> list[Profile]:
    """Load profiles in layering order: built-in names first, then files, each as given."""
    resolved = [(ref, _is_path(ref)) for ref in refs]
    ordered = [r for r, is_file in resolved if not is_file] + [r for r, is_file in resolved if is_file]
    return [load_profile(ref) for ref in ordered]


# --------------------------------------------------------------------------
# --set KEY=VALUE
# --------------------------------------------------------------------------

_SET_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _split_value(text: str) -> Any:
    """Text after ``=`` the way strun reads it (configobj: ``a,b`` is a list, quotes group)."""
    from configobj import ConfigObj

    if text.strip() in ("None", "null"):
        return None
    try:
        value, _comment = ConfigObj()._handle_value(text)
    except Exception as exc:  # configobj raises SyntaxError-like errors on bad quoting
        raise _Problem(f"cannot parse value {text!r}: {exc}") from None
    return value


def _other_pipeline_hint(pipeline: str, step: str | None, param: str | None) -> str:
    """Point at the other pipeline when the key belongs there (commands running both)."""
    for other in PIPELINES:
        if other == pipeline:
            continue
        spec = pipeline_spec(other)
        if step is None and param in spec.params or (
            step in spec.steps and (param is None or param in spec.steps[step].params)
        ):
            return f" (it belongs to {other}: prefix the key with '{other}.')"
    return ""


def parse_sets(sets: Sequence[str], pipeline: str) -> Profile:
    """Turn ``--set`` options into a pseudo-profile for ``pipeline``.

    ``KEY`` is ``PARAM`` (pipeline level), ``steps.STEP.PARAM``, or either with a
    ``image2.`` / ``image3.`` prefix; prefixed settings for another pipeline are
    ignored so one list of ``--set`` can serve a command that runs both stages.
    """
    spec = pipeline_spec(pipeline)
    profile = Profile(name="--set", path=None, kind="set")
    section = ParameterSet(pipeline)
    profile.sections[pipeline] = section
    problems = []
    for item in sets:
        where = f"--set {item}"
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not _SET_KEY.match(key):
            problems.append(
                f"{where}: expected KEY=VALUE, e.g. steps.tweakreg.snr_threshold=10 or "
                "save_bsub=true"
            )
            continue
        parts = key.split(".")
        if parts[0] in PIPELINES or parts[0] in _PIPELINE_ALIASES:
            target = _PIPELINE_ALIASES.get(parts[0], parts[0])
            if target != pipeline:
                continue
            parts = parts[1:]
        if parts and parts[0] == "steps":
            if len(parts) != 3:
                problems.append(f"{where}: a step parameter is written steps.STEP.PARAM=VALUE")
                continue
            step, param = parts[1], parts[2]
            if step in _REFUSED_KEYS:
                problems.append(f"{where}: {_refusal(step)}")
                continue
            if step not in spec.steps:
                problems.append(
                    f"{where}: unknown step {step!r} in {pipeline} ({spec.alias})"
                    f"{_suggest(step, spec.steps)}{_other_pipeline_hint(pipeline, step, None)}"
                )
                continue
        elif len(parts) == 1:
            step, param = None, parts[0]
            if param in spec.steps:
                problems.append(f"{where}: {param!r} is a step; write steps.{param}.PARAM=VALUE")
                continue
        else:
            if parts[0] in spec.steps:
                hint = f"; did you mean steps.{'.'.join(parts)}?"
            else:
                hint = _suggest(parts[0], ["steps", *PIPELINES])
            problems.append(f"{where}: cannot read key {key!r}{hint}")
            continue
        if param in _REFUSED_KEYS:
            problems.append(f"{where}: {_refusal(param)}")
            continue
        params = {k: v for k, v in spec.params_of(step).items() if k not in _NOT_PARAMETERS}
        if param not in params:
            owner = f"step {step}" if step else spec.alias
            problems.append(
                f"{where}: unknown parameter {param!r} for {owner} in {pipeline}"
                f"{_suggest(param, params)}{_other_pipeline_hint(pipeline, step, param)}"
            )
            continue
        try:
            value = _coerce(params[param], _split_value(text), None)
        except _Problem as exc:
            problems.append(f"{where}: {exc}")
            continue
        if _ignored(step, param, value):
            problems.append(f"{where}: {_ignored(step, param, value)}")
            continue
        section.set(step, param, Setting(value, Origin("set", item)))
    if problems:
        if len(problems) == 1:
            raise ConfigError(problems[0])
        raise ConfigError(f"{len(problems)} problems:\n  " + "\n  ".join(problems))
    return profile


# --------------------------------------------------------------------------
# Layering
# --------------------------------------------------------------------------


def merge_layers(pipeline: str, layers: Sequence[Profile]) -> ParameterSet:
    """Settings of ``layers`` for ``pipeline``, later layers winning, with provenance."""
    merged = ParameterSet(pipeline)
    for layer in layers:
        for step, key, setting in layer.section(pipeline).items():
            merged.set(step, key, setting)
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
) -> ParameterSet:
    """Every effective parameter of ``pipeline`` and where it came from.

    Order, lowest first: spec defaults, ``crds_pars`` (as returned by
    :func:`crds_step_parameters`; stpipe applies the same layer itself at run
    time), then ``layers`` (profiles and ``--set``) in the order given.
    With ``include_defaults=False`` only ``crds_pars`` and ``layers`` appear.
    """
    spec = pipeline_spec(pipeline)
    resolved = ParameterSet(pipeline)
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
    for step, key, setting in merge_layers(pipeline, layers).items():
        resolved.set(step, key, setting)
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


def crds_step_parameters(pipeline: str, dataset) -> dict:
    """The CRDS ``pars-*`` parameters stpipe would apply for ``dataset`` (a path or model).

    Uses stpipe's own ``Pipeline.get_config_from_reference`` (which talks to
    CRDS through stpipe's crds client); returns ``{params..., "steps": {...}}``.
    """
    cls = _pipeline_cls(pipeline)
    config = cls.get_config_from_reference(dataset, disable=False)

    def plain(section) -> dict:
        return {k: plain(v) if isinstance(v, dict) else v for k, v in section.items()}

    return plain(config)


def crds_steppars_environ(disabled: bool) -> dict[str, str]:
    """Environment for a pipeline worker honouring ``--no-crds-steppars``.

    stpipe's ``Pipeline.call`` reads ``STPIPE_DISABLE_CRDS_STEPPARS`` (the same
    switch as ``strun --disable-crds-steppars``); set it in the worker process.
    """
    return {"STPIPE_DISABLE_CRDS_STEPPARS": "True"} if disabled else {}


# --------------------------------------------------------------------------
# Export to stpipe parameter files (ASDF), for strun
# --------------------------------------------------------------------------


def export_parameter_file(
    pipeline: str,
    layers: Sequence[Profile],
    path: str | os.PathLike,
    *,
    full: bool = False,
) -> Path:
    """Write an stpipe parameter file (ASDF) that ``strun FILE input`` runs with.

    By default only the settings of ``layers`` are written, so CRDS ``pars-*``
    references still apply underneath exactly as they do for jwstrun.  With
    ``full=True`` the pipeline's own ``export_config`` writes every parameter
    (spec defaults frozen, CRDS parameter references then overridden).
    """
    from stpipe._config import StepConfig

    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"{path.parent}: directory does not exist; create it first")
    spec = pipeline_spec(pipeline)
    merged = merge_layers(pipeline, layers)
    kwargs = merged.to_call_kwargs()

    cls = _pipeline_cls(pipeline)
    tmp = _temp_sibling(path)
    try:
        if full:
            cls(**kwargs).export_config(tmp)
        else:
            step_kwargs = kwargs.pop("steps", {})
            config = StepConfig(
                spec.class_name,
                cls.__name__,
                kwargs,
                [
                    StepConfig(step_spec.class_name, step, step_kwargs.get(step, {}), [])
                    for step, step_spec in spec.steps.items()
                ],
            )
            with config.to_asdf() as af:
                af.write_to(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def export_profile(
    profiles: Sequence[str | os.PathLike],
    outdir: str | os.PathLike,
    *,
    pipelines: Sequence[str] = tuple(PIPELINES),
    sets: Sequence[str] = (),
    full: bool = False,
) -> list[Path]:
    """Export ``<name>_calwebb_<pipeline>.asdf`` for each pipeline into ``outdir``."""
    layers = load_profiles(profiles)
    outdir = Path(outdir)
    name = "+".join(p.name for p in layers) or "default"
    written = []
    for pipeline in pipelines:
        these = [*layers, parse_sets(sets, pipeline)]
        alias = pipeline_spec(pipeline).alias
        written.append(
            export_parameter_file(pipeline, these, outdir / f"{name}_{alias}.asdf", full=full)
        )
    return written


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------


def _temp_sibling(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    return Path(name)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = _temp_sibling(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)
