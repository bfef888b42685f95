"""Writing associations: :func:`make_associations` (the library side of ``jwstrun asn``)
plans every association first, then writes each with :func:`write_association`.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .._io import atomic_write
from ..errors import InputError, OutputError
from ..products import ExposureInfo
from .backgrounds import (
    _matching_backgrounds,
    match_backgrounds,
    report_backgrounds,
    split_backgrounds,
)
from .build import build_level2, build_level3
from .exposures import read_exposures
from .grouping import GROUP_KEYS, ExposureGroup, group_exposures, parse_group_by
from .levels import _ASN_TYPE, detect_level
from .naming import (
    _group_product_name,
    _name_value,
    _single_product_name,
    check_product_name,
    level3_product_name,
    target_numbers,
)

log = logging.getLogger(__name__)

#: (path, association data, group key values) of one association to write
_Planned = tuple[Path, dict, dict]


def write_association(data: dict, path: str | os.PathLike, force: bool = False) -> Path:
    """Write ``data`` as JSON atomically (:func:`jwstrun._io.atomic_write`); never clobber
    unless ``force``."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; give a file name such as {path}/asn.json.")
    if path.exists() and not force:
        raise OutputError(
            f"{path}: already exists. Pass --force to overwrite it or choose another -o."
        )
    text = json.dumps(data, indent=4) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text)
    except OSError as exc:
        raise OutputError(
            f"{path}: cannot write here ({exc.strerror}). Choose another -o."
        ) from exc
    return path


@dataclass
class WrittenAssociation:
    """One association written by :func:`make_associations`."""

    path: Path
    data: dict
    group: dict[str, str] = field(default_factory=dict)

    @property
    def n_members(self) -> int:
        return sum(len(p["members"]) for p in self.data["products"])

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "asn_type": self.data["asn_type"],
            "group": self.group,
            "products": self.data["products"],
        }


@dataclass
class AsnBuildResult:
    """What :func:`make_associations` wrote."""

    level: int
    associations: list[WrittenAssociation]
    group_by: tuple[str, ...] | None = None
    #: files left out (another EXP_TYPE, _uncal): jwstrun.selection.LeftOut
    left_out: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "group_by": list(self.group_by) if self.group_by else None,
            "associations": [a.to_dict() for a in self.associations],
            "left_out": [item.to_dict() for item in self.left_out],
        }


def make_associations(
    files: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    level: int | None = None,
    product_name: str | None = None,
    background: Sequence[str | os.PathLike] = (),
    group_by: str | Sequence[str] | None = None,
    force: bool = False,
    allow_mixed: bool = False,
    allow_outside: bool = False,
    merge_observations: bool = False,
) -> AsnBuildResult:
    """Read headers, build and write association(s): the library side of ``jwstrun asn``.

    Without ``group_by``, ``output`` is one ``.json`` file.  With ``group_by`` (keys or
    ``"default"``: the DMS Level-3 imaging rules, one product per observation),
    ``output`` is a directory receiving one association per group, named
    ``<DMS group name>_<asn_type>_asn.json``.  ``merge_observations`` joins the
    observations of a target and optical path (``c1000`` names).  Nothing is written
    unless every association could be built, and existing files are kept unless ``force``.
    Exposures of other EXP_TYPEs and ``_uncal`` files are left out with one warning
    (:mod:`jwstrun.selection`; the result's ``left_out`` lists them).
    """
    from ..selection import select_exposures

    output = Path(output)
    selection = select_exposures(read_exposures(files, imaging_only=False))
    exposures = selection.kept
    level = detect_level(exposures, level)
    backgrounds = read_exposures(background, "background") if background else []
    if backgrounds and level != 2:
        raise InputError(
            "--background adds background members for calwebb_image2 (Level 2); these are "
            "Level-3 inputs. Leave --background out."
        )
    if product_name is not None and "{" not in product_name:
        check_product_name(product_name)
    keys = parse_group_by(group_by, merge_observations)
    if group_by is None:
        planned = [_plan_one(exposures, backgrounds, output, level,
                             _single_product_name(product_name, exposures), keys,
                             allow_mixed=allow_mixed, allow_outside=allow_outside)]
        keys = None
    else:
        planned = _plan_groups(exposures, backgrounds, output, level, product_name, keys,
                               allow_outside=allow_outside)
    return AsnBuildResult(level, _write_planned(planned, force), keys, selection.left_out)


def _plan_one(
    exposures: list[ExposureInfo],
    backgrounds: list[ExposureInfo],
    output: Path,
    level: int,
    product_name: str | None,
    keys: tuple[str, ...],
    *,
    allow_mixed: bool,
    allow_outside: bool,
) -> _Planned:
    """The one association written to ``output`` (a .json file); at Level 3 the
    exposures must form one group of ``keys`` unless ``allow_mixed``."""
    if output.suffix.lower() != ".json":
        raise InputError(
            f"-o {output}: an association file name must end in .json (jwst's loader "
            "expects it). For one association per group use --group-by with -o DIR."
        )
    asn_dir = output.parent
    if level == 2:
        data = build_level2(
            exposures,
            backgrounds,
            asn_dir=asn_dir,
            product_name=product_name,
            allow_outside=allow_outside,
        )
    else:
        data = build_level3(
            exposures,
            asn_dir=asn_dir,
            product_name=product_name,
            allow_mixed=allow_mixed,
            targets=target_numbers(exposures),
            allow_outside=allow_outside,
            group_keys=keys,
        )
    return (output, data, {})


def _plan_groups(
    exposures: list[ExposureInfo],
    backgrounds: list[ExposureInfo],
    output: Path,
    level: int,
    product_name: str | None,
    keys: tuple[str, ...],
    *,
    allow_outside: bool,
) -> list[_Planned]:
    """One association per group of ``keys``, into the directory ``output``."""
    if output.suffix.lower() == ".json":
        raise InputError(
            f"-o {output}: with --group-by, -o is a directory that receives one association "
            "per group; give a directory such as asn/."
        )
    if output.exists() and not output.is_dir():
        raise OutputError(f"-o {output}: exists and is not a directory.")
    if level == 2:
        # Dedicated backgrounds among the files join the --background ones; all are
        # matched against all science exposures (and reported) once, before each
        # group keeps those matching its members.
        exposures, detected = split_backgrounds(exposures)
        known = {b.path for b in backgrounds}
        given = bool(backgrounds)
        backgrounds = [*backgrounds, *(d for d in detected if d.path not in known)]
        report_backgrounds(match_backgrounds(exposures, backgrounds), detected, explicit=given)
    targets = target_numbers(exposures)
    groups = group_exposures(exposures, keys)
    # Keys the DMS name does not carry are appended so group names stay distinct.
    extra_keys = [k for k in keys if k in ("module", "detector", "visit", "exp_type")]
    planned: list[_Planned] = []
    for group in groups:
        extra = [_name_value(group.exposures[0], k) for k in extra_keys]
        name = _group_product_name(product_name, group, len(groups))
        if level == 2:
            data = build_level2(
                group.exposures,
                _matching_backgrounds(group, backgrounds),
                asn_dir=output,
                product_name=name,
                allow_outside=allow_outside,
                report=False,
            )
            label = (
                level3_product_name(group.exposures, targets, extra)
                if _has_program(group)
                else "group"
            )
        else:
            data = build_level3(
                group.exposures,
                asn_dir=output,
                product_name=name,
                allow_mixed=True,
                targets=targets,
                extra_name_parts=extra,
                allow_outside=allow_outside,
            )
            label = data["products"][0]["name"]
        planned.append((output / f"{label}_{_ASN_TYPE[level]}_asn.json", data, group.key))
    _make_names_unique(planned, level)
    return planned


def _write_planned(planned: list[_Planned], force: bool) -> list[WrittenAssociation]:
    """Write every planned association, or none when one exists already (unless ``force``)."""
    if not force:
        for path, _data, _key in planned:
            if path.exists():
                raise OutputError(
                    f"{path}: already exists. Pass --force to overwrite it or choose another -o."
                )
    written = []
    for path, data, key in planned:
        write_association(data, path, force=True)
        log.debug("wrote %s (%d products)", path, len(data["products"]))
        written.append(WrittenAssociation(path, data, key))
    return written


def _has_program(group: ExposureGroup) -> bool:
    return all(GROUP_KEYS["program"](e).isdigit() for e in group.exposures)


def _make_names_unique(planned: list[tuple[Path, dict, dict]], level: int) -> None:
    # Groups that differ only in a key the DMS name leaves out (rare: e.g. two NIRCam
    # channels with the same filter name) get -1, -2 ... so no output is overwritten.
    counts = Counter(path for path, _d, _k in planned)
    seen: Counter = Counter()
    for index, (path, data, key) in enumerate(planned):
        if counts[path] > 1:
            seen[path] += 1
            suffix = f"-{seen[path]}"
            new = path.with_name(
                path.name.replace(
                    f"_{_ASN_TYPE[level]}_asn.json", f"{suffix}_{_ASN_TYPE[level]}_asn.json"
                )
            )
            if level == 3:
                data["products"][0]["name"] += suffix
            planned[index] = (new, data, key)
