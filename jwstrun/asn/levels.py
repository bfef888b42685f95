"""Association levels: which product types each level takes, its ``asn_type`` and rule.

A Level-2 association is the input of the stage that runs one task per exposure
(``image2``); a Level-3 association the input of the stage that runs one task per
association (``image3``).  The product types each level takes are read from
those rows of :mod:`jwstrun.stages`, never written down here.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Sequence

from ..errors import InputError
from ..products import ExposureInfo
from ..stages import IMAGING_EXP_TYPES, get_stage

log = logging.getLogger(__name__)

#: DMS ``asn_type`` of each level; also the name of the stage that runs it.
_ASN_TYPE = {2: "image2", 3: "image3"}
# jwst rule classes whose associations these are (jwst.associations.lib.rules_level2b /
# rules_level3); written as asn_rule for the record, the loaders do not dispatch on it.
_ASN_RULE = {2: "Asn_Lv2Image", 3: "Asn_Lv3Image"}
# asn_type values that say nothing about the level: asn_from_list writes "None",
# jwst's base rules "user_built".
_UNSPECIFIED_ASN_TYPES = ("", "None", "none", "user_built")

#: Product types each association level takes as members: the ``accepts`` of the
#: stage that runs it (rate/rateints for Level 2, cal/calints/crf for Level 3).
LEVEL_INPUTS: dict[int, tuple[str, ...]] = {
    level: get_stage(stage).accepts for level, stage in _ASN_TYPE.items()
}

# IMAGING_EXP_TYPES, the EXP_TYPEs of direct imaging that calwebb_image2 -> calwebb_image3
# reduce, comes from jwstrun.stages (the stage rows' ``exp_types``, and their source).


def _files_of(level: int) -> str:
    """``_rate/_rateints`` (Level 2), ``_cal/_calints/_crf`` (Level 3), for messages."""
    return "/".join(f"_{ptype}" for ptype in LEVEL_INPUTS[level])


def _level_from_asn_type(asn_type) -> int | None:
    for level, name in _ASN_TYPE.items():
        if asn_type == name:
            return level
    return None


def detect_level(exposures: Sequence[ExposureInfo], level: int | None = None) -> int:
    """Association level from the product types (2: rate/rateints, 3: cal/calints/crf).

    ``level`` forces it; a forced level that does not fit the products is logged.
    """
    by_type: dict[str, list[ExposureInfo]] = defaultdict(list)
    for info in exposures:
        by_type[info.product_type or "unknown"].append(info)
    levels = set()
    for ptype, infos in by_type.items():
        for lvl, types in LEVEL_INPUTS.items():
            if ptype in types:
                levels.add(lvl)
                break
        else:
            raise InputError(
                f"{infos[0].path}: is a '{ptype}' product; associations take {_files_of(2)} "
                f"files (Level 2) or {_files_of(3)} files (Level 3)."
            )
    if len(levels) > 1:
        listing = ", ".join(
            f"{len(infos)} {ptype} (e.g. {infos[0].name})"
            for ptype, infos in sorted(by_type.items())
        )
        raise InputError(
            f"mixed product types: {listing}. Give only {_files_of(2)} files (Level 2) or only "
            f"{_files_of(3)} files (Level 3)."
        )
    found = levels.pop()
    if level is None:
        return found
    if level not in LEVEL_INPUTS:
        raise InputError(f"--level must be 2 or 3, not {level}.")
    if level != found:
        log.warning(
            "forcing a Level-%d association from %s products (normally Level %d).",
            level,
            "/".join(sorted(by_type)),
            found,
        )
    return level
