"""Corrections before a stage: a profile's ``before:`` list, read and checked.

::

    image2:
      before:                      # run in this order on each _rate exposure,
        - step: clean_flicker_noise  # then calwebb_image2 on the result
          autoparam: true
        - step: snowblind
        - step: persist

Each item names a step by its stpipe alias (:mod:`jwstrun.profiles.steps`) and
sets its parameters, checked and coerced by that step's own spec exactly as a
pipeline's are (:func:`jwstrun.profiles.spec.coerce_node`), with the same
``file:line`` messages.  A later layer's ``before:`` replaces the whole list of
the layers under it (an empty list removes the corrections).

A step run on its own ignores ``skip`` in stpipe ("Step run as standalone, so
skip set to False"): listing a step runs it, whatever its spec's default (jwst's
``clean_flicker_noise`` has ``skip=True``).  ``skip: true`` in a profile leaves the
step out, so a layer can turn one correction off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._yaml import _Errors, _line, _mapping_items, _scalar
from .spec import _NOT_PARAMETERS, coerce_node

__all__ = ["Correction", "parse_before", "CORRECTION_REFUSED_KEYS"]

#: Parameters of a correction step that jwstrun decides (on top of the profiles'
#: refused keys): the corrected data go to the pipeline in memory, never to a file.
CORRECTION_REFUSED_KEYS = {
    "save_results": "the corrected exposure goes straight to the stage's pipeline, whose "
    "products jwstrun saves; nothing of the correction alone is written",
    "output_file": "the corrected exposure is not written on its own; the stage's products "
    "keep the input's name",
    "input_dir": "jwstrun gives each step the files it reads (persist: the _jump files "
    "beside the exposures)",
}


@dataclass
class Correction:
    """One step of a ``before:`` list: its spec and the settings the profile made."""

    step: str  # the stpipe alias
    spec: Any  # a jwstrun.profiles.steps.CorrectionStepSpec
    params: dict = field(default_factory=dict)  # name -> jwstrun.profiles.model.Setting
    origin: Any = None  # where the list item is (an Origin)
    why: str | None = None  # the profile's reason for it (why: image2.before.STEP)

    @property
    def skipped(self) -> bool:
        """``skip: true`` in the profile: the step is left out."""
        setting = self.params.get("skip")
        return bool(setting is not None and setting.value is True)

    def call_parameters(self) -> dict:
        """``Step.call`` keyword arguments: the profile's settings (``skip`` is jwstrun's)."""
        return {key: (list(s.value) if isinstance(s.value, list) else s.value)
                for key, s in self.params.items() if key != "skip"}

    def to_task(self) -> dict:
        """What a worker needs to run it (plain data; part of the task's fingerprint)."""
        return {**self.spec.to_dict(), "module": self.spec.module,
                "qualname": self.spec.qualname, "parameters": self.call_parameters()}

    def to_dict(self) -> dict:
        """JSON form with the source of every value (``profiles show --json``)."""
        out = {**self.spec.to_dict(), "skipped": self.skipped,
               "source": str(self.origin) if self.origin is not None else None,
               "parameters": {k: s.to_dict() for k, s in self.params.items()}}
        if self.why:
            out["why"] = self.why
        return out


def parse_before(pipeline: str, node, errors: _Errors, make_origin) -> list[Correction]:
    """The corrections of one ``<stage>: before:`` node (problems go to ``errors``)."""
    import yaml

    where = f"{pipeline}.before"
    if not isinstance(node, yaml.SequenceNode):
        if isinstance(node, yaml.ScalarNode) and _scalar(node) is None:
            return []
        errors.add(_line(node), f"{where} must be a list of steps, each '- step: NAME' "
                   "followed by its parameters")
        return []
    corrections = []
    for item in node.value:
        correction = _parse_item(where, item, errors, make_origin)
        if correction is not None:
            corrections.append(correction)
    return corrections


def _parse_item(where: str, item, errors: _Errors, make_origin) -> Correction | None:
    import yaml

    from ..errors import ConfigError
    from .steps import correction_step_spec

    if not isinstance(item, yaml.MappingNode):
        errors.add(_line(item), f"{where}: each item is a mapping '- step: NAME' with the "
                   "step's parameters")
        return None
    items = list(_mapping_items(item, errors, where))
    name_node = next((value for key, _k, value in items if key == "step"), None)
    name = _scalar(name_node) if isinstance(name_node, yaml.ScalarNode) else None
    if not isinstance(name, str) or not name:
        errors.add(_line(item), f"{where}: an item has no 'step: NAME' (the step's stpipe "
                   "alias, e.g. step: clean_flicker_noise)")
        return None
    try:
        spec = correction_step_spec(name, where)
    except ConfigError as exc:
        errors.add(_line(name_node), str(exc))
        return None
    correction = Correction(name, spec, origin=make_origin(_line(item)))
    for key, key_node, value_node in items:
        if key == "step":
            continue
        setting = _parse_param(f"{where}.{name}", spec, key, key_node, value_node, errors,
                               make_origin)
        if setting is not None:
            correction.params[key] = setting
    return correction


def _parse_param(where: str, spec, key, key_node, value_node, errors, make_origin):
    from .model import _REFUSED_KEYS, Setting, _refusal
    from ._hints import _suggest

    if key in _REFUSED_KEYS:
        errors.add(_line(key_node), _refusal(key))
        return None
    if key in CORRECTION_REFUSED_KEYS:
        errors.add(_line(key_node), f"{where}.{key} is refused: {CORRECTION_REFUSED_KEYS[key]}")
        return None
    params = {k: v for k, v in spec.params.items() if k not in _NOT_PARAMETERS}
    if key not in params:
        owner = f"step {spec.alias} ({spec.qualname})"
        errors.add(_line(key_node), f"unknown parameter {key!r} for {owner} in "
                   f"{where.rpartition('.')[0]}{_suggest(key, params)}")
        return None
    ok, coerced = coerce_node(params[key], value_node, errors, f"{where}.{key}")
    if not ok:
        return None
    return Setting(coerced, make_origin(_line(value_node)))
