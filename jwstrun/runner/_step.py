"""``jwstrun step NAME``: any stpipe Step or Pipeline over many files.

The step's row is built at run time from its name (:func:`jwstrun.stages.step_stage`):
one task per exposure, or one task over the whole set for the steps of
:data:`jwstrun.stages.SET_STEPS` (snowblind's persistence flagging), its inputs in
order of exposure start time.  Everything else is the runner image2 and image3 use:
the pool or Dask, resume, the validate-then-move of every product, the manifest.

Here: the inputs a step takes (association members expanded, product types
checked with one message for a file of the wrong type), the files a step reads
beside its inputs (persist's ``_jump`` files, refused up front when missing), and
the names stpipe gives the outputs (``<root>_<suffix>.fits``: the input's name
without its product suffix, as the step's own ``remove_suffix`` reads it, and the
step's suffix, its class name lowercased unless ``suffix`` is set).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError
from ..inputs import expand_inputs
from ..products import check_fits_complete, product_suffix, stage_type
from ..stages import Stage
from ._stage_inputs import PLANNING_HEADERS

__all__ = ["step_inputs", "plan_step", "skip_default_line", "status_problem", "in_directory",
           "BESIDE_INPUTS"]

log = logging.getLogger(__name__)

#: Files a step reads from its inputs' directory (stpipe's ``input_dir``), keyed by
#: the step's class path: (product type, what makes them).  snowblind's persistence
#: flagging reads the ``_jump`` file of each exposure for the pixels it saturated.
BESIDE_INPUTS: dict[str, tuple[str, str]] = {
    "snowblind.persist.PersistenceFlagStep": (
        "jump", "run calwebb_detector1 with steps.jump.save_results=true ('strun "
        "calwebb_detector1 FILE_uncal.fits --steps.jump.save_results=true') and keep the "
        "_jump files beside the _rate files"),
}


def step_inputs(stage: Stage, inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """The files of ``inputs`` for a step: globs, directories (the types the step takes,
    and ``_uncal`` files, which the selection leaves out saying what to run) and the
    members of association files."""
    from ..selection import external_types_for

    return expand_inputs(inputs, suffixes=(*stage.accepts, *external_types_for(stage)),
                         members=True)


def skip_default_line(stage: Stage) -> str | None:
    """The one line said when the step's spec skips it by default, or None."""
    if not stage.skip_default:
        return None
    return (f"{stage.alias}: its spec skips it by default (skip = True, for pipelines that "
            "include it); named on its own it runs, as 'strun "
            f"{stage.alias}' runs it (stpipe sets skip to False for a step run on its own).")


def _wrong_type(path: Path, ptype: str | None, stage: Stage) -> str:
    accepted = "/".join(f"_{t}" for t in stage.accepts)
    found = f"a _{ptype} product" if ptype else "not a JWST product jwstrun knows"
    named = product_suffix(path)
    where = f"{path}: its header says it is" if named and ptype and named != ptype \
        else f"{path}: is"
    return (f"{where} {found}; {stage.alias} takes {accepted} files. Give it "
            f"{' or '.join(f'*_{t}.fits' for t in stage.accepts)} files (jwstrun step "
            f"{stage.name} FILES -o OUTDIR).")


def _product_type(path: Path) -> str | None:
    """The product type of an exposure file as a step takes it (header over name)."""
    hdus = check_fits_complete(path)
    sci = next(cards for name, cards in hdus if name == "SCI")
    return stage_type(path, PLANNING_HEADERS.read(path), sci.get("BUNIT"))


def _output_name(step, path: Path, suffix: str) -> tuple[str, str]:
    """(root, file name) stpipe gives the output of ``step`` (an instance) run on ``path``:
    the name without its product suffix (the step's ``remove_suffix``) and
    ``_<suffix>.fits``."""
    root, separator = step.remove_suffix(Path(path.name).stem)
    return root, f"{root}{separator or '_'}{suffix}.fits"


def _start_time(path: Path) -> float:
    try:
        return float(PLANNING_HEADERS.read(path).get("EXPSTART") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def plan_step(stage: Stage, paths: list[Path], parameters: dict, outdir) -> list:
    """The planned tasks of step ``stage`` over ``paths`` (checked first) into ``outdir``."""
    planned = _plan(stage, paths, parameters)
    _check_inputs_kept(stage, planned, Path(outdir).expanduser().absolute())
    return planned


def _check_inputs_kept(stage: Stage, planned: list, outdir: Path) -> None:
    """Refuse a product that would replace one of the inputs (a step's product given to
    the same step again, in its own directory): inputs stay untouched."""
    inputs = {os.path.realpath(p) for item in planned for p in item.inputs}
    for item in planned:
        for name in item.outputs:
            if os.path.realpath(outdir / name) in inputs:
                raise InputError(
                    f"{outdir / name}: is an input, and {stage.alias} would write its product "
                    "of the same name over it. Choose another outdir.")


def _plan(stage: Stage, paths: list[Path], parameters: dict) -> list:
    from .plan import Planned, _exposure_pixels  # plan imports task, which imports this

    for path in paths:
        ptype = _product_type(path)
        if ptype not in stage.accepts:
            raise InputError(_wrong_type(path, ptype, stage))
    step = stage.load_class()()  # remove_suffix is a method of jwst's steps
    _check_beside(stage, paths, step)
    suffix = str(parameters.get("suffix") or stage.writes[0].rpartition(".")[0])
    keyword = status_keyword(stage)
    beside = str(paths[0].parent) if stage.step_class in BESIDE_INPUTS else None
    if stage.grouping == "set":
        ordered = sorted(paths, key=lambda p: (_start_time(p), p.name))
        names = [_output_name(step, p, suffix)[1] for p in ordered]
        digest = hashlib.sha256("\n".join(sorted(p.name for p in ordered)).encode()).hexdigest()
        return [Planned(stage.name, f"set-{digest[:8]}", ordered[0], ordered,
                        ["science"] * len(ordered),
                        pixels=sum(_exposure_pixels(p) for p in ordered), outputs=names,
                        call_inputs=[str(p) for p in ordered], input_dir=beside,
                        status_keyword=keyword)]
    planned = []
    for path in paths:
        root, name = _output_name(step, path, suffix)
        planned.append(Planned(stage.name, root, path, [path], ["science"],
                               pixels=_exposure_pixels(path), outputs=[name],
                               input_dir=beside, status_keyword=keyword))
    return planned


def status_keyword(stage: Stage) -> str | None:
    """The header keyword the step records COMPLETE in: its own ``fits_keyword``, or
    the one jwst's schema gives ``meta.cal_step.<alias>`` (``S_CLNFLK``); None when
    it has none (validation then checks the product alone)."""
    from ..validate import step_status_keyword

    return step_status_keyword(stage.alias, stage.status_keyword)


def _check_beside(stage: Stage, paths: list[Path], step) -> None:
    """Refuse a step that reads files beside its inputs when they are not there."""
    if stage.step_class not in BESIDE_INPUTS:
        return
    ptype, how = BESIDE_INPUTS[stage.step_class]
    folders = sorted({str(p.parent) for p in paths})
    if len(folders) > 1:
        raise InputError(
            f"{stage.alias} reads the _{ptype} files from one directory (stpipe's input_dir), "
            f"but the inputs are in {len(folders)}: {', '.join(folders[:3])}. Put the files "
            f"and their _{ptype} files in one directory.")
    for path in paths:
        beside = path.parent / _output_name(step, path, ptype)[1]
        if not beside.is_file():
            raise InputError(
                f"{beside}: not found; {stage.alias} reads the _{ptype} file of each input "
                f"from the inputs' directory. To make them, {how}.")


class in_directory:
    """Work in ``path`` (None: stay) while a step given a list of files runs: stpipe
    finds the files a step reads beside its inputs (its ``input_dir``) only there."""

    def __init__(self, path: str | None):
        self.path, self.saved = path, None

    def __enter__(self):
        if self.path:
            self.saved = os.getcwd()
            os.chdir(self.path)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            os.chdir(self.saved)


def status_problem(path: Path, keyword: str, step: str) -> str | None:
    """Why the product ``path`` of ``step`` (its alias) fails its status check
    (``keyword`` not COMPLETE in its primary header: SKIPPED or FAILED when the step gave
    up, writing its input unchanged), as a validation error; None when it passes."""
    if path.suffix.lower() != ".fits":
        return None
    from ..products import read_primary_header
    from ..validate import recorded_status

    value = recorded_status(read_primary_header(path), keyword, step)
    if value == "COMPLETE":
        return None
    return (f"{path.name}: {keyword} is {value or 'not set'}: {step} did not process this "
            "file (the task's log says why); its product is not written.")
