"""Corrections before a stage's pipeline, in the same task (a profile's ``before:``).

Parent side, before any task: :func:`exposure_sets` gives each exposure of the run
the earlier exposures of its detector that a set step (:data:`jwstrun.stages.SET_STEPS`:
snowblind's ``persist``) reads, and refuses a run whose ``_jump`` files are missing.

Worker side, in the task: :func:`corrected_input` runs the steps in order, each with
``Step.call(model, **parameters)``, and returns what the pipeline is given:

- one exposure (image2): the corrected datamodel itself, in memory -- no round trip
  to disk.  ``meta.filename`` stays the input's, so calwebb_image2 names its products
  as it would name those of the corrected exposure written under the input's name;
- an association (image2 with dedicated backgrounds, image3): each science member
  -- and for image2 each background member too, since the same detector effects are
  in a background exposure as in the science one and its level is subtracted from the
  science -- is corrected and written under its own name into the task's directory,
  with a copy of the association naming them (calwebb_image2 and calwebb_image3 load
  association members from files only).  Other members keep their files.

persist flags pixels saturated in an earlier exposure of the same detector, reading
the earlier exposures' ``_jump`` files and start times: run on one exposure together
with the earlier exposures of its detector that started less than its ``time`` before
it, it flags exactly what it flags in that exposure when run over the whole set
(tests/test_corrections.py).  Their ``_jump`` files are linked, under the names
persist asks for, into one directory given as its ``input_dir``.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
from pathlib import Path

from ..errors import InputError, PipelineError
from ..inputs import is_association
from ..products import jump_file
from ..stages import SET_STEPS
from ._step import in_directory

__all__ = ["CorrectionFailed", "exposure_sets", "find_jump", "corrected_input",
           "correction_fingerprint", "required_status"]

log = logging.getLogger(__name__)

#: The parameter (seconds) of a set step that bounds how far back the exposures it
#: needs go; a set step without one gets every earlier exposure of its detector.
_SET_WINDOW = {"snowblind.PersistenceFlagStep": "time"}
#: Seconds added to that window: a few more earlier exposures never change the result
#: (the step applies its own window), one too few would.
_WINDOW_MARGIN = 60.0
#: Association members corrected, per stage (the others are not read by its pipeline
#: or are not exposures).
_CORRECTED_MEMBERS = {"image2": ("science", "background"), "image3": ("science",)}


class CorrectionFailed(PipelineError):
    """A correction step raised (the message names it, the stage and the input)."""

    def __init__(self, message: str, step: str):
        super().__init__(message)
        self.step = step


def _set_steps(corrections: list[dict]) -> list[dict]:
    return [c for c in corrections if c["class"] in SET_STEPS]


def _window(correction: dict) -> float | None:
    key = _SET_WINDOW.get(correction["class"])
    if key is None:
        return None
    value = correction["parameters"].get(key)
    if value is None:
        from ..profiles import spec_default
        from ..profiles.steps import correction_step_spec

        value = spec_default(correction_step_spec(correction["step"]).params[key])
    return float(value) + _WINDOW_MARGIN


def exposure_sets(stage, planned, corrections: list[dict]) -> dict[str, list[dict]]:
    """Exposure path -> the earlier exposures of its detector the set steps among
    ``corrections`` need (``path``, ``jump``, ``start``), over every exposure the
    ``planned`` tasks correct; {} without set steps.  :class:`InputError` (before any
    task) when an exposure's ``_jump`` file is missing."""
    set_steps = _set_steps(corrections)
    if not set_steps:
        return {}
    from ..products import read_primary_header

    roles = _CORRECTED_MEMBERS.get(stage.name, ("science",))
    paths = dict.fromkeys(os.path.abspath(p) for item in planned
                          for p, role in zip(item.inputs, item.roles, strict=True)
                          if role in roles)
    exposures = []
    for path in paths:
        jump = find_jump(path)
        if jump is None:
            raise InputError(_missing_jump(stage, path, set_steps))
        header = read_primary_header(path)
        try:
            start = float(header["EXPSTART"])
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: no EXPSTART (exposure start, MJD) in its header; "
                             f"{set_steps[0]['step']} orders exposures by it.") from None
        exposures.append({"path": path, "jump": str(jump), "start": start,
                          "detector": str(header.get("DETECTOR", "")).strip().upper()})
    windows = [_window(c) for c in set_steps]
    window = None if None in windows else max(windows)
    return {
        mine["path"]: [
            {k: other[k] for k in ("path", "jump", "start")} for other in exposures
            if other["detector"] == mine["detector"] and other["start"] < mine["start"]
            and (window is None or (mine["start"] - other["start"]) * 86400.0 < window)
        ] + [{k: mine[k] for k in ("path", "jump", "start")}]
        for mine in exposures
    }


def find_jump(path: str | os.PathLike) -> Path | None:
    """The ``_jump`` file of exposure ``path``, or None: beside it (``strun
    calwebb_detector1 --steps.jump.save_results=true`` writes it beside the ``_rate``),
    else where ``jwstrun detector1`` keeps it in the OUTDIR that holds the ``_rate``
    (an intermediate of the exposure's task: ``intermediate/detector1-<exposure>/``)."""
    from ..products import product_basename
    from ._intermediates import INTERMEDIATE_DIRNAME
    from .plan import _safe_id

    beside = jump_file(path)
    task = f"detector1-{_safe_id(product_basename(Path(path).name))}"
    for candidate in (beside, beside.parent / INTERMEDIATE_DIRNAME / task / beside.name):
        if candidate.is_file():
            return candidate
    return None


def _missing_jump(stage, path: str, set_steps: list[dict]) -> str:
    names = ", ".join(c["step"] for c in set_steps)
    return (f"{jump_file(path)}: not found. {names} (in {stage.name}.before) reads the _jump "
            f"file of every exposure: make them with 'jwstrun detector1 UNCAL_FILES -o "
            f"{Path(path).parent} --set steps.jump.save_results=true' ({names} finds them in "
            f"its intermediate/ folder; 'jwstrun image2 --from uncal' saves them itself), put "
            f"strun calwebb_detector1's _jump files beside the _{stage.accepts[0]} files, or "
            f"take {names} out of the profile.")


# --------------------------------------------------------------------------
# Worker side
# --------------------------------------------------------------------------


def corrected_input(task, out: Path, watcher) -> tuple[object, list[dict]]:
    """What the stage's pipeline is given for ``task`` and the records of the corrections
    run: ``task.input`` itself without corrections, the corrected model of one exposure,
    or a copy of the association naming the corrected members (see the module
    docstring).  Raises :class:`CorrectionFailed`."""
    if not task.corrections:
        return task.input, []
    records: dict[str, dict] = {}
    source, out = os.path.abspath(task.input), Path(os.path.abspath(out))
    # in workdir/out: what a step writes into the current directory (persist's
    # save_mask) becomes one of the task's intermediates; paths made absolute first
    with in_directory(str(out)):
        if not is_association(Path(source)):
            return _correct(task, source, out, watcher, records), list(records.values())
        return _correct_association(task, source, out, watcher, records), list(records.values())


def _correct(task, path: str, out: Path, watcher, records: dict):
    """The datamodel of ``path`` after every correction of ``task``, in order."""
    from stdatamodels.jwst import datamodels

    model = datamodels.open(path)
    for correction in task.corrections:
        started = time.monotonic()
        try:
            model = _call_step(correction, model, path, task, out, watcher)
        except Exception as exc:
            model.close()
            raise CorrectionFailed(
                f"{correction['step']} (before {task.stage.alias}) failed on "
                f"{Path(path).name}: {type(exc).__name__}: {str(exc).strip() or '-'}",
                correction["step"]) from exc
        record = records.setdefault(correction["step"], _record(correction, watcher))
        record["exposures"] += 1
        record["wall_s"] = round(record["wall_s"] + time.monotonic() - started, 3)
    return model


def _record(correction: dict, watcher) -> dict:
    from ._task_logging import _parse_logged_parameters

    keys = ("step", "class", "package", "version", "status_keyword")
    parameters = _parse_logged_parameters(watcher.parameters_text) or {}
    if "skip" in parameters:  # logged before stpipe sets it False for a step run on its own
        parameters["skip"] = False
    return {**{k: correction[k] for k in keys}, "parameters": parameters,
            "exposures": 0, "wall_s": 0.0}


def _step_class(correction: dict):
    return getattr(importlib.import_module(correction["module"]), correction["qualname"])


def _call_step(correction: dict, model, path: str, task, out: Path, watcher):
    """``Step.call(model, **parameters)`` of one correction; a set step gets the earlier
    exposures of ``path``'s set with it and returns the corrected ``model`` alone."""
    cls = _step_class(correction)
    watcher.parameters_text = None  # the step's own "parameters are" record
    parameters = dict(correction["parameters"], output_dir=str(out))
    if correction["class"] not in SET_STEPS:
        result = cls.call(model, configure_log=False, **parameters)
        if result is not model:
            model.close()
        return result
    from jwst.datamodels import ModelContainer
    from stdatamodels.jwst import datamodels

    members = task.exposure_sets[str(path)]
    others = [m for m in members if m["path"] != str(path)]
    earlier = [datamodels.open(m["path"]) for m in others]
    models = {str(path): model, **{m["path"]: e for m, e in zip(others, earlier, strict=True)}}
    jumps = _link_jumps(members, models, out.parent / "jump")
    results = cls.call(ModelContainer([model, *earlier]), configure_log=False,
                       input_dir=str(jumps), **parameters)
    corrected = results[0]  # the step copies the container in its order
    for other in [*results[1:], *earlier, model]:
        other.close()
    return corrected


def _link_jumps(members: list[dict], models: dict, directory: Path) -> Path:
    """A directory holding, under the names persist derives from each model's
    ``meta.filename`` (``models``: exposure path -> its model), links to the exposures'
    ``_jump`` files."""
    directory.mkdir(parents=True, exist_ok=True)
    for member in members:
        link = directory / jump_file(models[member["path"]].meta.filename).name
        if not link.is_symlink():
            link.symlink_to(os.path.abspath(member["jump"]))
    return directory


def _correct_association(task, source: str, out: Path, watcher, records: dict) -> str:
    """Correct the members of the association ``source`` the stage reads; write them and
    a copy of the association naming them into ``workdir/corrected`` (same file names)."""
    source = Path(source)
    data = json.loads(source.read_text())
    directory = Path(os.path.abspath(task.workdir)) / "corrected"
    directory.mkdir(parents=True, exist_ok=True)
    roles = _CORRECTED_MEMBERS.get(task.pipeline, ("science",))
    for product in data.get("products") or []:
        for member in product.get("members") or []:
            path = os.path.abspath(source.parent / member["expname"])
            if str(member.get("exptype", "")).lower() not in roles:
                member["expname"] = path
                continue
            model = _correct(task, path, out, watcher, records)
            try:
                target = directory / Path(member["expname"]).name
                if target.exists():
                    raise InputError(f"{source}: two members are named {target.name}; "
                                     "rename one of them.")
                model.save(str(target))
            finally:
                model.close()
            # absolute, as in jwstrun's other association copies: calwebb_image2 opens
            # some members relative to the working directory (jwst issue 5950)
            member["expname"] = str(target)
    copy = directory / source.name
    copy.write_text(json.dumps(data, indent=4))
    return str(copy)


def correction_fingerprint(task) -> dict:
    """What of the corrections decides ``task``'s products (part of its fingerprint):
    the steps with their versions and parameters, and the exposures a set step reads
    with each exposure (names, start times, the sizes of their ``_jump`` files)."""
    def size(path: str):
        try:
            return os.stat(path).st_size
        except OSError:
            return None

    sets = {Path(path).name: [[Path(m["path"]).name, m["start"], size(m["jump"])]
                              for m in members]
            for path, members in sorted(task.exposure_sets.items())}
    return {"_before": task.corrections, "_exposure_sets": sets}


def required_status(task) -> dict[str, str]:
    """Status keyword -> step of every correction ``task`` ran that sets one: what its
    exposure products must record as COMPLETE (:func:`jwstrun.validate.validate_file`)."""
    return {c["status_keyword"]: c["step"] for c in task.corrections if c.get("status_keyword")}
