"""The profile model: settings with their origin, and profiles read from YAML files.

A profile's YAML shape is shown in the package docstring (:mod:`jwstrun.profiles`).
Each top-level section is a stage of :data:`jwstrun.stages.STAGES` and holds
pipeline-level parameters plus a ``steps:`` mapping, the same shape
``Pipeline.call(steps=...)`` takes.  Every value is checked and coerced by the
stage's own stpipe spec (:mod:`jwstrun.profiles.spec`); the YAML is read with
the safe reader of :mod:`jwstrun.profiles._yaml`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import ConfigError
from ..stages import STAGES
from ._corrections import Correction, parse_before
from ._hints import _suggest, stage_aliases
from ._yaml import (
    _check_plain_yaml,
    _compose_file,
    _Errors,
    _line,
    _mapping_items,
    _read_text,
    _scalar,
)
from .spec import _NOT_PARAMETERS, PipelineSpec, coerce_node, pipeline_spec, spec_default

__all__ = [
    "Origin",
    "Setting",
    "ParameterSet",
    "Profile",
    "builtin_profiles_dir",
    "builtin_profile_names",
    "list_profiles",
    "load_profile",
    "load_profiles",
]

_TOP_LEVEL_KEYS = ("description", "why", *STAGES)

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
    "save_results": "jwstrun always saves the pipeline's products, into -o OUTDIR "
    "(steps.STEP.save_results=true saves one step's products as well)",
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
    #: the corrections to run before the pipeline, in order (``before:``); None when this
    #: layer says nothing of them (a layer's list replaces the lower layers')
    before: list[Correction] | None = None

    def items(self) -> Iterable[tuple[str | None, str, Setting]]:
        """Yield ``(step or None, parameter, setting)`` for every setting."""
        for key, setting in self.params.items():
            yield None, key, setting
        for step, params in self.steps.items():
            for key, setting in params.items():
                yield step, key, setting

    def is_empty(self) -> bool:
        return not self.params and not any(self.steps.values()) and not self.before

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
        out = {
            "pipeline": self.pipeline,
            "parameters": {k: s.to_dict() for k, s in self.params.items()},
            "steps": {
                step: {k: s.to_dict() for k, s in params.items()}
                for step, params in self.steps.items()
            },
        }
        if self.before is not None:
            out["before"] = [correction.to_dict() for correction in self.before]
        return out


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


def _refusal(key: str) -> str:
    return (
        f"{key!r} is refused: {_REFUSED_KEYS[key]}. Profiles only set parameters of the "
        "pipeline's own steps"
    )


#: the stages whose steps, written at a profile's top level, are misplaced sections
_MISPLACED_STEP_STAGES = ("image2", "image3")


def _is_step_section(key: str) -> bool:
    """A section named after a step alias (``clean_flicker_noise:``), for ``jwstrun step``.
    A step of image2/image3 (``tweakreg:``) is not one: at the top level it is a
    misplaced ``image3: steps: tweakreg:`` (``--set`` sets its parameters for ``jwstrun
    step tweakreg``).  calwebb_detector1's steps are: clean_flicker_noise runs on its own
    on ``_rate`` files, and a ramp step given alone is a ``jwstrun step`` too.  Resolving
    the alias imports the packages that register steps, so only for keys that are
    nothing else."""
    from .spec import is_step_section

    if key in _TOP_LEVEL_KEYS or key in _REFUSED_KEYS:
        return False
    if any(key in pipeline_spec(pipe).steps for pipe in _MISPLACED_STEP_STAGES):
        return False
    return is_step_section(key)


def _ignored(step: str | None, key: str, value: Any) -> str | None:
    """Why setting ``key`` of the pipeline (``step`` None) to ``value`` is refused; None if not.

    ``skip`` is refused when true; ``save_results`` whatever its value (the runner sets it)."""
    if step is None and key in _PIPELINE_REFUSED_KEYS and (value is True or key == "save_results"):
        return (f"{key}: {str(value).lower()} is refused at pipeline level: "
                f"{_PIPELINE_REFUSED_KEYS[key]}")
    return None


def _parse_section(pipeline: str, node, errors: _Errors, make_origin) -> ParameterSet:
    spec = pipeline_spec(pipeline)
    section = ParameterSet(pipeline)
    for key, key_node, value_node in _mapping_items(node, errors, pipeline):
        if key == "before":
            section.before = parse_before(pipeline, value_node, errors, make_origin)
            continue
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
    ok, coerced = coerce_node(params[key], value_node, errors, f"{where}.{key}")
    if not ok:
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
    return Path(__file__).resolve().parents[2] / "configs"


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
    return _parse_profile_text(_read_text(path, where), where, name, path, kind)


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
        elif key in STAGES or _is_step_section(key):  # a step's section: jwstrun step
            profile.sections[key] = _parse_section(key, value_node, errors, origin_factory)
        elif key in _REFUSED_KEYS:
            errors.add(_line(key_node), _refusal(key))
        else:
            hint = _suggest(key, _TOP_LEVEL_KEYS, stage_aliases())
            for pipe in STAGES:
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
        for correction in section.before or ():
            paths.add(f"{pipe}.before.{correction.step}")
            paths.update(f"{pipe}.before.{correction.step}.{key}" for key in correction.params)
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
        for correction in section.before or ():
            where = f"{pipe}.before.{correction.step}"
            correction.why = profile.why.get(where)
            for key, setting in correction.params.items():
                setting.why = profile.why.get(f"{where}.{key}", correction.why)


def list_profiles() -> list[Profile]:
    """Every built-in profile, parsed and validated."""
    return [load_profile(name) for name in builtin_profile_names()]


def load_profiles(refs: Sequence[str | os.PathLike]) -> list[Profile]:
    """Load profiles in layering order: built-in names first, then files, each as given."""
    resolved = [(ref, _is_path(ref)) for ref in refs]
    ordered = [r for r, is_file in resolved if not is_file] + [r for r, is_file in resolved if is_file]
    return [load_profile(ref) for ref in ordered]


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)
