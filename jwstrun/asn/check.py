"""Checking an association's members: :func:`check_association` (``jwstrun asn --check``)
reads each member's header on top of what :func:`load_association` checks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..products import ExposureInfo, read_exposure_info
from .exposures import repeated_exposures
from .grouping import _BACKGROUND_MATCH, GROUP_KEYS
from .levels import LEVEL_INPUTS
from .read import AsnMember, AsnProduct, Association, load_association


@dataclass
class AssociationCheck:
    """Result of :func:`check_association`: the association plus problems found in members.

    ``problems`` make the association unusable; ``repeated`` names members that repeat
    an exposure listed before them (the same file under another name, or a copy:
    :func:`repeated_exposures`), which would be processed twice.  ``jwstrun image3``
    uses such an exposure once, with a warning; ``jwstrun asn --check`` reports them
    as problems (:attr:`all_problems`), and :attr:`ok` is False with any of either.
    """

    association: Association
    exposures: dict[Path, ExposureInfo]
    problems: list[str]
    repeated: list[str] = field(default_factory=list)

    @property
    def all_problems(self) -> list[str]:
        return [*self.problems, *self.repeated]

    @property
    def ok(self) -> bool:
        return not self.all_problems

    def to_dict(self) -> dict:
        asn = self.association
        return {
            "path": str(asn.path),
            "level": asn.level,
            "asn_type": asn.data.get("asn_type"),
            "ok": self.ok,
            "problems": self.all_problems,
            "products": [
                {"name": p.name, "members": [self._member_dict(m) for m in p.members]}
                for p in asn.products
            ],
        }

    def _member_dict(self, member: AsnMember) -> dict:
        info = self.exposures.get(member.path)
        return {
            "expname": member.expname,
            "exptype": member.exptype,
            "product_type": getattr(info, "product_type", None),
            "instrument": getattr(info, "instrument", None),
            "filter": getattr(info, "filter", None),
            "pupil": getattr(info, "pupil", None),
        }


def check_association(path: str | os.PathLike, *, allow_outside: bool = False) -> AssociationCheck:
    """Everything :func:`load_association` checks, plus each member's header.

    Members must be readable FITS of the product type the level takes; a Level-3
    product must have one instrument, filter and pupil; Level-2 background members
    must match their science exposure; no exposure may be listed twice under two
    names.  Structural errors raise :class:`InputError`; member problems are
    collected in :attr:`AssociationCheck.problems` and repeats in
    :attr:`AssociationCheck.repeated`.
    """
    asn = load_association(path, allow_outside=allow_outside)
    exposures, problems = _read_members(asn)
    for product in asn.products:
        if asn.level == 3:
            problems += _level3_problems(product, exposures)
        else:
            problems += _background_problems(product, exposures)
    return AssociationCheck(asn, exposures, problems, _repeated_members(asn, exposures))


def _read_members(asn: Association) -> tuple[dict[Path, ExposureInfo], list[str]]:
    exposures: dict[Path, ExposureInfo] = {}
    problems: list[str] = []
    for member_path in asn.member_paths():
        try:
            info = read_exposure_info(member_path)
        except InputError as exc:
            problems.append(str(exc))
            continue
        exposures[member_path] = info
        if info.product_type not in LEVEL_INPUTS[asn.level]:
            problems.append(
                f"{member_path.name}: is a '{info.product_type}' product; a Level-{asn.level} "
                f"association takes {'/'.join(LEVEL_INPUTS[asn.level])} files."
            )
    return exposures, problems


def _level3_problems(product: AsnProduct, exposures: dict[Path, ExposureInfo]) -> list[str]:
    infos = [exposures[m.path] for m in product.members if m.path in exposures]
    problems = []
    for key in ("instrument", "filter", "pupil"):
        values = sorted({GROUP_KEYS[key](i) or "-" for i in infos})
        if len(values) > 1:
            problems.append(
                f"product '{product.name}': mixes {key} values {', '.join(values)}; "
                "one calwebb_image3 product should have one (rebuild with jwstrun asn "
                "--group-by)."
            )
    return problems


def _background_problems(product: AsnProduct, exposures: dict[Path, ExposureInfo]) -> list[str]:
    science = [exposures.get(m.path) for m in product.by_type("science")]
    problems = []
    for member in product.by_type("background"):
        bkg = exposures.get(member.path)
        if bkg is None or not science or science[0] is None:
            continue
        mismatch = [
            k for k in _BACKGROUND_MATCH if GROUP_KEYS[k](bkg) != GROUP_KEYS[k](science[0])
        ]
        if mismatch:
            problems.append(
                f"product '{product.name}': background {member.expname} differs from the "
                f"science exposure in {', '.join(mismatch)}."
            )
    return problems


def _repeated_members(asn: Association, exposures: dict[Path, ExposureInfo]) -> list[str]:
    """Members that repeat an exposure listed before them (:func:`load_association` has
    refused the same name twice already): within a Level-3 product, among the science
    members of a Level-2 association, and among one Level-2 product's backgrounds."""
    if asn.level == 3:
        sets = [(p.name, p.members) for p in asn.products]
    else:
        sets = [(None, [m for p in asn.products for m in p.by_type("science")])]
        sets += [(p.name, p.by_type("background")) for p in asn.products]
    found = []
    for product, members in sets:
        members = [m for m in members if m.path in exposures]
        repeats = repeated_exposures([exposures[m.path] for m in members])
        for index, (first, why) in repeats.items():
            where = f"product '{product}': " if product is not None else ""
            found.append(
                f"{where}member {members[index].expname} {why} {members[first].expname}; it "
                "would be processed twice. List each exposure once."
            )
    return found
