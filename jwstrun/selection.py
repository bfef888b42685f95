"""Which of the given exposures a stage takes, as a folder from MAST mixes them.

A MAST download holds target acquisitions, grism, coronagraphy and imaging
exposures side by side, and the ``_uncal`` ramps of each.  image2, image3 and asn
take the EXP_TYPEs of the stage's row (:attr:`jwstrun.stages.Stage.exp_types`) and
leave the others out with one summary line (:func:`left_out_line`); the library
returns what it left out (``--json`` lists it).  Raw inputs of an earlier stage
(:func:`jwstrun.stages.raw_types`: ``_uncal`` -> ``jwstrun detector1``) and files of
a pipeline jwstrun has no stage for (:data:`jwstrun.stages.EXTERNAL_INPUTS`) are left
out the same way, saying what to run.  When nothing is left the run is refused: for
one file with the reason of that file.

A file whose name suffix and DATAMODL disagree (an ImageModel named ``_uncal``)
is refused outright (:func:`jwstrun.products.name_mismatch`).

Primary headers only, read without astropy: selecting among a thousand files costs
a tenth of a second.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import InputError
from .inputs import is_association
from .products import (
    PRODUCT_TYPES,
    ExposureInfo,
    _a,
    header_type,
    name_mismatch,
    product_basename,
    product_suffix,
    read_primary_cards,
    read_primary_header,
)
from .stages import EXTERNAL_INPUTS, IMAGING_EXP_TYPES, Stage, raw_types, stages_accepting

__all__ = ["LeftOut", "Selection", "select_files", "select_exposures", "left_out_line",
           "external_input_message", "external_types_for"]

log = logging.getLogger(__name__)

#: reasons a file is left out
NOT_IMAGING = "not_imaging"
EARLIER_STAGE = "earlier_stage"
#: a per-integration product given with its exposure's own (calwebb_detector1 writes
#: both _rate and _rateints): the stage takes the exposure's
BESIDE_TWIN = "beside_twin"

#: per-integration product type -> the exposure's product type it is written beside
_TWINS = {"rateints": "rate"}


@dataclass(frozen=True)
class LeftOut:
    """One input file left out: its path, EXP_TYPE, product type and why."""

    path: str
    exp_type: str
    product_type: str | None
    reason: str  # NOT_IMAGING, EARLIER_STAGE or BESIDE_TWIN

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Selection:
    """The files a stage takes (in the order given) and those it left out."""

    kept: list = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)


def select_files(stage: Stage, paths: Sequence[Path], *, what: str | None = None) -> Selection:
    """The files of ``paths`` that ``stage`` takes (:func:`_left_out` says why not),
    logging one summary line of those it left out.

    Associations and files whose header cannot be read are kept: the stage's own
    checks say what is wrong with them.  :class:`InputError` when a name and its
    DATAMODL disagree, or when nothing is left.  ``what``: the command in messages
    (default ``jwstrun <stage>``).
    """
    selection = Selection()
    for path in paths:
        reason = None
        if not is_association(path) and Path(path).suffix.lower() in (".fits", ".fit"):
            try:
                cards = read_primary_cards(path)
            except InputError:
                cards = None  # the stage's checks give the file's own message
            if cards is not None and not str(cards.get("EXP_TYPE", "")).isprintable():
                cards = None  # a NUL, a newline: the header read of the checks refuses it
            if cards is not None:
                reason = _left_out(path, cards.get("EXP_TYPE", ""),
                                   product_suffix(path) or header_type(cards), stage.exp_types,
                                   lambda p=path, c=cards: name_mismatch(p, c), stage.accepts)
        if reason is None:
            selection.kept.append(path)
        else:
            selection.left_out.append(reason)
    _leave_out_twins(selection, stage)
    _report(selection, len(paths), what or f"jwstrun {stage.name}", stage)
    return selection


def _leave_out_twins(selection: Selection, stage: Stage) -> None:
    """A ``_rateints`` kept with the ``_rate`` of the same exposure (a calwebb_detector1
    OUTDIR holds both) is left out: the stage takes the exposure's ``_rate``, as DMS
    does for imaging; given alone, a ``_rateints`` is reduced per integration."""
    given = {(str(Path(p).parent), product_basename(p), product_suffix(p))
             for p in selection.kept}
    kept = []
    for path in selection.kept:
        ptype = product_suffix(path)
        twin = _TWINS.get(ptype or "")
        if twin and twin in stage.accepts and \
                (str(Path(path).parent), product_basename(path), twin) in given:
            selection.left_out.append(LeftOut(str(path), "", ptype, BESIDE_TWIN))
        else:
            kept.append(path)
    selection.kept = kept


def select_exposures(exposures: Sequence[ExposureInfo], *, what: str = "jwstrun asn",
                     exp_types: Sequence[str] = IMAGING_EXP_TYPES) -> Selection:
    """:func:`select_files` for exposures whose headers were read already
    (:func:`jwstrun.asn.read_exposures`): ``kept`` holds their ExposureInfo."""
    selection = Selection()
    for info in exposures:
        reason = _left_out(info.path, info.exp_type, info.product_type, exp_types,
                           lambda i=info: _info_mismatch(i))
        if reason is None:
            selection.kept.append(info)
        else:
            selection.left_out.append(reason)
    _report(selection, len(exposures), what, None)
    return selection


def _left_out(path, exp_type: str, ptype: str | None, exp_types: Sequence[str],
              mismatch: Callable[[], str | None], accepts: Sequence[str] = ()) -> LeftOut | None:
    """Why a file is left out (None: taken).  Another EXP_TYPE first (a grism ``_cal`` is
    a MultiSlitModel: an exposure to leave out, not a mismatch to refuse); then a name
    that its DATAMODL contradicts is refused (``mismatch()`` says why); then files of a
    pipeline jwstrun has no stage for, and the raw inputs of an earlier stage (not in
    ``accepts``, the types the selecting stage takes), are left out."""
    exp_type = str(exp_type or "").strip().upper()
    if exp_type and exp_type not in exp_types:
        shown = exp_type if len(exp_type) <= 40 else exp_type[:40] + "..."
        return LeftOut(str(path), shown, ptype, NOT_IMAGING)
    problem = mismatch()
    if problem:
        raise InputError(problem)
    if ptype in _earlier_types() and ptype not in accepts:
        return LeftOut(str(path), exp_type, ptype, EARLIER_STAGE)
    return None


def _earlier_types() -> tuple[str, ...]:
    return (*EXTERNAL_INPUTS, *raw_types())


def _first_run(ptype: str) -> tuple[str, str, bool]:
    """What makes a product of type ``ptype`` into the next: (the command, the type it
    writes, whether jwstrun has it)."""
    if ptype in EXTERNAL_INPUTS:
        alias, writes = EXTERNAL_INPUTS[ptype]
        return f"strun {alias}", writes, False
    stage = stages_accepting(ptype)[0]
    return f"jwstrun {stage.name}", stage.written_types[0], True


def _info_mismatch(info: ExposureInfo) -> str | None:
    """:func:`name_mismatch` of an exposure read already: its header is read again only
    when its DATAMODL is not one its name allows."""
    named = product_suffix(info.path)
    expected = PRODUCT_TYPES[named][1] if named else ()
    if not expected or not info.datamodl or info.datamodl in expected:
        return None
    return name_mismatch(info.path, read_primary_header(info.path))


# --------------------------------------------------------------------------- messages


def _report(selection: Selection, total: int, what: str, stage: Stage | None) -> None:
    """Log the one summary line, or refuse when nothing is left."""
    if not selection.left_out:
        return
    if not selection.kept:
        raise InputError(_nothing_left(selection.left_out, what, stage))
    log.warning("%s", left_out_line(selection.left_out, total, what, stage))


def left_out_line(left_out: Sequence[LeftOut], total: int, what: str,
                  stage: Stage | None = None) -> str:
    """``Left out 3 of 8 files: 2 not direct imaging (1 NRC_TACQ, 1 NRC_WFSS; ...); 1
    _uncal (...).``: one line for any number of files."""
    return f"Left out {len(left_out)} of {total} files: {_details(left_out, what, stage)}."


def _details(left_out: Sequence[LeftOut], what: str, stage: Stage | None) -> str:
    parts = []
    others = [item for item in left_out if item.reason == NOT_IMAGING]
    if others:
        counts = Counter(item.exp_type for item in others)
        listing = ", ".join(f"{n} {exp_type}" for exp_type, n in sorted(counts.items()))
        types = stage.exp_types if stage is not None else IMAGING_EXP_TYPES
        parts.append(f"{len(others)} not direct imaging ({listing}; {what} takes "
                     f"{', '.join(types)} exposures)")
    twins = Counter(item.product_type for item in left_out if item.reason == BESIDE_TWIN)
    for ptype, n in sorted(twins.items()):
        parts.append(f"{n} _{ptype} beside the _{_TWINS[ptype]} of the same exposure ({what} "
                     f"takes the _{_TWINS[ptype]}; give a _{ptype} file alone to reduce it "
                     "per integration)")
    earlier = Counter(item.product_type for item in left_out if item.reason == EARLIER_STAGE)
    for ptype, n in sorted(earlier.items()):
        run = _first_run(ptype)[0]
        parts.append(f"{n} _{ptype} ({_raw_words(ptype)}: run '{run}' on "
                     f"{'it' if n == 1 else 'them'}, then {_then(ptype, what, stage, n)})")
    return "; ".join(parts)


def _raw_words(ptype: str) -> str:
    return "raw ramps" if ptype == "uncal" else f"input of {_first_run(ptype)[0]}"


def _then(ptype: str, what: str, stage: Stage | None, n: int) -> str:
    """What to do with what the external pipeline writes, on the way to ``stage``."""
    writes = _first_run(ptype)[1]
    files = f"the _{writes} file{'' if n == 1 else 's'} it writes"
    if stage is None or writes in stage.accepts:
        return f"give {files} to {what}"
    first = next(iter(stages_accepting(writes)), None)
    if first is None:
        return f"give what it writes to {what}"
    return (f"run 'jwstrun {first.name}' on {files} and give the "
            f"_{first.written_types[0]} file{'' if n == 1 else 's'} to {what}")


def _nothing_left(left_out: Sequence[LeftOut], what: str, stage: Stage | None) -> str:
    if len(left_out) == 1:
        item = left_out[0]
        if item.reason == EARLIER_STAGE:
            return external_input_message(Path(item.path), item.product_type, what, stage)
        types = stage.exp_types if stage is not None else IMAGING_EXP_TYPES
        return (f"{item.path}: EXP_TYPE {item.exp_type} is not direct imaging; {what} takes "
                f"{', '.join(types)} exposures. Give it imaging exposures (from a folder of "
                "mixed exposures it takes those and leaves the others out).")
    return (f"none of the {len(left_out)} files is one {what} takes: "
            f"{_details(left_out, what, stage)}.")


def external_input_message(path: Path, ptype: str, what: str, stage: Stage | None) -> str:
    """The error for one raw input of an earlier stage (an ``_uncal``) or of a pipeline
    jwstrun has no stage for; image2 offers to run detector1 first itself."""
    run, writes, ours = _first_run(ptype)
    start = f"{path}: is {_a(ptype)} _{ptype} file ({_raw_words(ptype)}, Stage 0): "
    if not ours:
        alias = EXTERNAL_INPUTS[ptype][0]
        return (f"{start}{alias} has to process it first, and jwstrun has no command for it "
                f"yet. Run '{run} {path}', then {_then(ptype, what, stage, 1)}.")
    both = (f" ('{what} --from {ptype}' runs both)" if stage is not None
            and writes in stage.accepts and stage.name == "image2" else "")
    return (f"{start}run '{run} {path} -o OUTDIR' first, then "
            f"{_then(ptype, what, stage, 1)}{both}.")


def external_types_for(stage: Stage) -> tuple[str, ...]:
    """The product types of pipelines jwstrun lacks whose products ``stage`` takes
    (``uncal`` for image2): a directory given to the stage lists these files too, to
    say what to run on them."""
    return tuple(ptype for ptype in _earlier_types()
                 if ptype not in stage.accepts and _first_run(ptype)[1] in stage.accepts)
