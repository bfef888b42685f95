"""What a stage takes: its inputs expanded and checked before anything runs.

Every check reads the stage's row (:mod:`jwstrun.stages`): the product types it
accepts, the level of the associations it takes and where its products go next,
so a file given to the wrong stage is refused with a message that names the
right one (``_cal`` given to image2, ``_rate`` given to image3, a Level-3
association given to image2...).  Headers only: no pixel is read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError
from ..inputs import expand_inputs, is_association
from ..products import product_suffix, product_type, stage_type
from ..stages import EXTERNAL_INPUTS, STAGES, Stage, raw_types, stages_accepting

__all__ = ["stage_inputs", "check_stage_inputs", "wrong_stage_message", "PLANNING_HEADERS"]

log = logging.getLogger(__name__)


def stage_inputs(stage: Stage, inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """The files of ``inputs`` (globs, directories, associations) for ``stage``: a
    directory means the FITS files in it of the types the stage takes from elsewhere
    (:attr:`jwstrun.stages.Stage.directory_types`), and those of a pipeline jwstrun has
    no stage for that writes them (``_uncal`` for image2), which
    :func:`jwstrun.selection.select_files` leaves out saying what to run."""
    from ..selection import external_types_for

    return expand_inputs(inputs, suffixes=(*stage.directory_types, *external_types_for(stage)))


def check_stage_inputs(stage: Stage, paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Split ``paths`` into (associations, exposure files), loading and checking each
    association and refusing a file of a type the stage does not take."""
    asn_paths: list[Path] = []
    files: list[Path] = []
    for path in paths:
        if is_association(path):
            load_stage_association(path, stage)
            asn_paths.append(path)
        else:
            ptype = file_type(path)
            if ptype not in stage.accepts:
                raise InputError(wrong_stage_message(path, ptype, stage))
            files.append(path)
    return asn_paths, files


def load_stage_association(path: Path, stage: Stage, allow_outside: bool = False):
    """Load and check an association with jwstrun.asn; refuse the wrong level clearly."""
    from ..asn import check_association, load_association

    found = load_association(path, allow_outside=allow_outside)
    if found.level != stage.asn_level:
        raise InputError(_wrong_level_message(path, found.level, stage))
    check = check_association(path, allow_outside=allow_outside)
    if check.problems:
        raise InputError(f"{path}: " + " ".join(check.problems[:3]))
    check_complete((m.path for product in check.association.products for m in product.members),
                   stage)
    return check.association


def check_complete(paths: Iterable[Path], stage: Stage) -> None:
    """Refuse exposures cut short or without SCI/ASDF, or whose SCI unit says they are of
    another stage than ``stage`` takes (:func:`jwstrun.products.stage_type`), before
    anything runs (headers only)."""
    from ..products import check_fits_complete

    for path in paths:
        if not is_association(Path(path)):
            hdus = check_fits_complete(path)
            sci = next(cards for name, cards in hdus if name == "SCI")
            found = stage_type(path, hdus[0][1], sci.get("BUNIT"))
            if found not in stage.accepts:
                raise InputError(wrong_stage_message(Path(path), found, stage))


def file_type(path: Path) -> str | None:
    """The product type of an exposure file: its name's suffix checked against its
    header, or the header's alone when the name has none."""
    ptype = product_type(path)
    if ptype is None and path.suffix.lower() in (".fits", ".fit"):
        from ..products import read_exposure_info

        ptype = read_exposure_info(path).product_type
    elif ptype is not None:
        # clear errors for empty / truncated / gzip files; a _cal renamed _rate is a cal
        ptype = stage_type(path, PLANNING_HEADERS.read(path))
    return ptype


class _LastHeader:
    """read_primary_header, remembered for the next call on the same unchanged file.

    Planning needs each exposure's header twice (product type, then size): one
    file's header is kept (keyed by path, mtime and size), so this never grows
    (figures in docs/benchmarks.md, "planning: one header read per exposure vs two").
    """

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self.key = None
        self.header = None

    def read(self, path: Path):
        from ..products import read_primary_header

        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if self.key != key:
            self.header, self.key = read_primary_header(path), key
        return self.header


#: The planning's one remembered header (:class:`_LastHeader`; ``.clear()`` empties it).
PLANNING_HEADERS = _LastHeader()


def _accepted(stage: Stage) -> str:
    return "/".join(f"_{t}" for t in stage.accepts)


def _reaches(stage: Stage, target: Stage) -> bool:
    """Whether ``target`` comes after ``stage`` (following ``next_stage``)."""
    seen = set()
    while stage.next_stage and stage.next_stage not in seen:
        seen.add(stage.next_stage)
        stage = STAGES[stage.next_stage]
        if stage is target:
            return True
    return False


def _downstream_types(stage: Stage) -> set[str]:
    """Product types that the stages after ``stage`` take or write: files that have
    already been through it."""
    return {t for later in STAGES.values() if _reaches(stage, later)
            for t in (*later.accepts, *later.written_types)}


def wrong_stage_message(path: Path, ptype: str | None, stage: Stage) -> str:
    """Why ``stage`` cannot take ``path`` (of product type ``ptype``), and where it goes."""
    if ptype in (*EXTERNAL_INPUTS, *raw_types()) and ptype not in stage.accepts:
        from ..selection import external_input_message  # an _uncal: run detector1 first

        return external_input_message(path, ptype, f"jwstrun {stage.name}", stage)
    named = product_suffix(path)
    # The header says otherwise than the name (products.stage_type)
    where = f"{path}: its header says it" if named and ptype and named != ptype else f"{path}:"
    if ptype in _downstream_types(stage):
        takers = [t for t in stages_accepting(ptype) if t is not stage]
        other = f", or give this file to 'jwstrun {takers[0].name}'" if takers else ""
        return (f"{where} is a _{ptype} product, already processed by {stage.alias}. "
                f"Give {_accepted(stage)} files to {stage.name}{other}.")
    earlier = [s for s in stages_accepting(ptype) if _reaches(s, stage)] if ptype else []
    if earlier:
        return (f"{where} is a _{ptype} exposure, not yet calibrated. Run 'jwstrun "
                f"{earlier[0].name}' on it first and give the resulting _{stage.accepts[0]} "
                f"files to {stage.name}.")
    noun = "exposure" if stage.grouping == "exposure" else "product"
    takes = ", ".join(f"*_{t}.fits" for t in stage.accepts)
    return (f"{where} is not a {_accepted(stage)} {noun} (product type {ptype or 'unknown'}). "
            f"{stage.name} takes {takes} or Level-{stage.asn_level} associations.")


def _wrong_level_message(path: Path, level: int, stage: Stage) -> str:
    other = next((s for s in STAGES.values() if s.asn_level == level), None)
    if other is None:
        return (f"{path}: is a Level-{level} association; {stage.name} takes "
                f"{_accepted(stage)} files or Level-{stage.asn_level} associations.")
    if _reaches(other, stage):
        return (f"{path}: is a Level-{level} ({other.name}) association of _{other.accepts[0]} "
                f"exposures. Run 'jwstrun {other.name}' on it first and give the resulting "
                f"_{stage.accepts[0]} files (or a Level-{stage.asn_level} association) to "
                f"{stage.name}.")
    return (f"{path}: is a Level-{level} ({other.name}) association. Give it to 'jwstrun "
            f"{other.name}'; {stage.name} takes {_accepted(stage)} files or "
            f"Level-{stage.asn_level} associations.")
