"""JWST associations: build Level-2/Level-3 image associations, read and check them.

The JSON written here has the layout of jwst's own associations (the rules
``Asn_Lv2Image`` / ``Asn_Lv3Image``; what ``asn_from_list`` writes, with the DMS
``asn_type``), so ``jwst.associations.load_asn``, ``Image2Pipeline`` and
``Image3Pipeline`` read it unchanged.  Only primary FITS headers are read
(:func:`jwstrun.products.read_exposure_info`), never pixel data, and jwst itself is
not imported: building associations for a thousand exposures takes seconds.

Member paths are written relative to the association's directory (bare file
names when the members sit beside it).  calwebb_image3 resolves members
relative to the association file while calwebb_image2 resolves them relative to
the working directory (jwst issue 5950), so the two agree only when the
pipelines run from the association's directory or members are bare names;
members outside that directory are refused unless explicitly allowed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import string
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import InputError, OutputError
from ..products import (
    STAGE2_INPUTS,
    STAGE3_INPUTS,
    ExposureInfo,
    product_basename,
    read_exposure_info,
)

__all__ = [
    "LEVEL_INPUTS",
    "IMAGING_EXP_TYPES",
    "GROUP_KEYS",
    "DEFAULT_GROUP_BY",
    "ExposureGroup",
    "AsnMember",
    "AsnProduct",
    "Association",
    "WrittenAssociation",
    "AsnBuildResult",
    "AssociationCheck",
    "read_exposures",
    "repeated_exposures",
    "detect_level",
    "parse_group_by",
    "group_exposures",
    "target_numbers",
    "level3_product_name",
    "check_product_name",
    "build_level2",
    "build_level3",
    "write_association",
    "make_associations",
    "load_association",
    "check_association",
]

log = logging.getLogger(__name__)

#: Product types each association level takes as members.
LEVEL_INPUTS: dict[int, tuple[str, ...]] = {2: STAGE2_INPUTS, 3: STAGE3_INPUTS}

#: EXP_TYPEs of direct imaging handled by calwebb_image2 -> calwebb_image3.
#: (Coronagraphy and time series go to coron3/tso3, so they are refused here.)
IMAGING_EXP_TYPES = ("NRC_IMAGE", "MIR_IMAGE", "NIS_IMAGE", "FGS_IMAGE")

_ASN_TYPE = {2: "image2", 3: "image3"}
# jwst rule classes whose associations these are (jwst.associations.lib.rules_level2b /
# rules_level3); written as asn_rule for the record, the loaders do not dispatch on it.
_ASN_RULE = {2: "Asn_Lv2Image", 3: "Asn_Lv3Image"}
# asn_type values that say nothing about the level: asn_from_list writes "None",
# jwst's base rules "user_built".
_UNSPECIFIED_ASN_TYPES = ("", "None", "none", "user_built")
_SCHEMA_FILE = {2: "asn_schema_jw_level2b.json", 3: "asn_schema_jw_level3.json"}
_EMPTY_VALUES = ("", "N/A", "NONE", "NULL", "ANY", "--")
# Candidate id for products that span several observations (DMS uses c1xxx ids for
# candidates that are not a single observation).
_CROSS_OBSERVATION_ACID = "c1000"
_UNKNOWN_OBSERVATION_ACID = "o999"  # asn_from_list's default candidate id


def _clean(value: str) -> str:
    value = (value or "").strip().upper()
    return "" if value in _EMPTY_VALUES else value


def _nircam_only(attr: str):
    def get(info: ExposureInfo) -> str:
        return _clean(getattr(info, attr)) if info.instrument.upper() == "NIRCAM" else ""

    return get


def _number(value: str, width: int) -> str:
    value = (value or "").strip()
    return value.zfill(width) if value.isdigit() else value


#: Keys accepted by ``--group-by`` and how each is read from an exposure.
GROUP_KEYS = {
    "program": lambda e: _number(e.program, 5),
    "observation": lambda e: _number(e.observation, 3),
    "visit": lambda e: _number(e.visit, 3),
    "instrument": lambda e: _clean(e.instrument),
    "detector": lambda e: _clean(e.detector),
    "module": _nircam_only("module"),
    "channel": _nircam_only("channel"),
    "filter": lambda e: _clean(e.filter),
    "pupil": lambda e: _clean(e.pupil),
    "subarray": lambda e: _clean(e.subarray),
    "exp_type": lambda e: _clean(e.exp_type),
    "target": lambda e: e.target.strip(),
}

#: Default grouping: what one calwebb_image3 mosaic may combine.  NIRCam's channel
#: (SHORT/LONG: different pixel scales) stands for "detector" here; modules A and B
#: are combined as in DMS Level-3 products (add ``module`` to split them).
DEFAULT_GROUP_BY = ("program", "instrument", "channel", "filter", "pupil", "target")

# What a background exposure must share with a science exposure to be subtracted
# from it by calwebb_image2's background step (same pixels, same optical path).
_BACKGROUND_MATCH = ("instrument", "detector", "filter", "pupil", "subarray")


# --------------------------------------------------------------------------- reading


def read_exposures(paths: Iterable[str | os.PathLike], what: str = "input") -> list[ExposureInfo]:
    """Read the primary headers of ``paths``; raise :class:`InputError` naming a bad file.

    Duplicates (the same file listed twice) are dropped with a warning; two files with
    the same name in different directories are refused since their products would
    overwrite each other.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError(
            f"no {what} files given. Give JWST products, for example "
            "'jwstrun asn data/*_rate.fits -o l2_asn.json'."
        )
    seen: dict[Path, Path] = {}
    exposures = []
    for path in paths:
        if path.suffix.lower() == ".json":
            raise InputError(
                f"{path}: is an association, not an exposure. To show or check it use "
                f"'jwstrun asn --show {path}' or 'jwstrun asn --check {path}'."
            )
        resolved = path.resolve()
        if resolved in seen:
            if os.path.abspath(path) == os.path.abspath(seen[resolved]):
                log.warning("%s: listed more than once; using it once.", path)
            else:  # a symlink
                log.warning("%s: is the same file as %s; using it once.", path, seen[resolved])
            continue
        info = read_exposure_info(path)
        _check_jwst_exposure(info)
        seen[resolved] = path
        exposures.append(info)
    repeats = repeated_exposures(exposures)
    for index, (first, why) in repeats.items():
        log.warning("%s: %s %s; using it once.", exposures[index].path, why, exposures[first].path)
    exposures = [info for index, info in enumerate(exposures) if index not in repeats]
    by_name: dict[str, str] = {}
    for info in exposures:
        other = by_name.get(info.name)
        if other is not None:
            raise InputError(
                f"{info.path}: has the same file name as {other}; their products would "
                "overwrite each other. Give each exposure once."
            )
        by_name[info.name] = info.path
    return exposures


def repeated_exposures(exposures: Sequence[ExposureInfo]) -> dict[int, tuple[int, str]]:
    """The exposures that repeat an earlier one: index -> (index of the first, why).

    The same file under another name (a symlink or hard link: same device and inode), or
    the same exposure in the header (OBS_ID, EXPOSURE, DETECTOR and segment EXSEGNUM: a
    copy), would be calibrated or mosaicked twice.
    """
    files: dict[tuple[int, int], int] = {}
    identities: dict[tuple[str, ...], int] = {}
    repeats: dict[int, tuple[int, str]] = {}
    for index, info in enumerate(exposures):
        try:
            stat = os.stat(info.path)
        except OSError:
            stat = None
        key = (stat.st_dev, stat.st_ino) if stat is not None else None
        identity = (info.obs_id, info.exposure_number, info.detector.upper(), info.segment)
        if key in files:
            repeats[index] = (files[key], "is the same file as")
        elif all(identity[:3]) and identity in identities:
            repeats[index] = (identities[identity], (
                f"is the same exposure (OBS_ID {info.obs_id}, EXPOSURE {info.exposure_number}, "
                f"DETECTOR {info.detector}) as"))
        else:
            if key is not None:
                files[key] = index
            identities.setdefault(identity, index)
    return repeats


def _check_jwst_exposure(info: ExposureInfo) -> None:
    missing = [
        key
        for key, value in (("INSTRUME", info.instrument), ("EXP_TYPE", info.exp_type))
        if not value
    ]
    if missing:
        raise InputError(
            f"{info.path}: FITS file without JWST keywords ({', '.join(missing)} missing from "
            "the primary header). Give JWST pipeline products such as *_rate.fits or *_cal.fits."
        )
    if info.product_type is None:
        raise InputError(
            f"{info.path}: cannot tell the product type (no _rate/_cal... suffix and no usable "
            "DATAMODL). Name the file by the JWST convention, e.g. <exposure>_rate.fits."
        )
    exp_type = info.exp_type.upper()
    if exp_type not in IMAGING_EXP_TYPES:
        raise InputError(
            f"{info.path}: EXP_TYPE {exp_type} is not direct imaging "
            f"({', '.join(IMAGING_EXP_TYPES)}); jwstrun builds image2/image3 associations only."
        )


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
                f"{infos[0].path}: is a '{ptype}' product; associations take _rate/_rateints "
                "files (Level 2) or _cal/_calints/_crf files (Level 3)."
            )
    if len(levels) > 1:
        listing = ", ".join(
            f"{len(infos)} {ptype} (e.g. {infos[0].name})"
            for ptype, infos in sorted(by_type.items())
        )
        raise InputError(
            f"mixed product types: {listing}. Give only _rate/_rateints files (Level 2) or only "
            "_cal/_calints/_crf files (Level 3)."
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


# --------------------------------------------------------------------------- grouping


@dataclass
class ExposureGroup:
    """Exposures sharing the values of the group-by keys."""

    key: dict[str, str]
    exposures: list[ExposureInfo]

    @property
    def label(self) -> str:
        """``NIRCAM/LONG/F444W/CLEAR``-style label of the key values."""
        return "/".join(v or "-" for v in self.key.values())


def parse_group_by(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"program,filter"`` or ``"default"`` -> validated tuple of group keys."""
    if text is None:
        return DEFAULT_GROUP_BY
    items = text.split(",") if isinstance(text, str) else list(text)
    keys: list[str] = []
    for item in items:
        item = item.strip().lower().replace("-", "_")
        if not item:
            continue
        if item == "default":
            keys.extend(k for k in DEFAULT_GROUP_BY if k not in keys)
        elif item in GROUP_KEYS:
            if item not in keys:
                keys.append(item)
        else:
            raise InputError(
                f"--group-by: unknown key '{item}'. Use 'default' or a comma-separated list of: "
                f"{', '.join(GROUP_KEYS)}."
            )
    if not keys:
        raise InputError(
            f"--group-by: no keys given. Use 'default' or some of: {', '.join(GROUP_KEYS)}."
        )
    return tuple(keys)


def group_exposures(
    exposures: Iterable[ExposureInfo], keys: Sequence[str] = DEFAULT_GROUP_BY
) -> list[ExposureGroup]:
    """Split exposures into groups sharing the values of ``keys`` (sorted, deterministic)."""
    keys = parse_group_by(list(keys))
    groups: dict[tuple[str, ...], list[ExposureInfo]] = defaultdict(list)
    for info in exposures:
        groups[tuple(GROUP_KEYS[k](info) for k in keys)].append(info)
    return [
        ExposureGroup(dict(zip(keys, values, strict=True)), sorted(members, key=lambda e: e.name))
        for values, members in sorted(groups.items())
    ]


# --------------------------------------------------------------------------- naming


def target_numbers(exposures: Iterable[ExposureInfo]) -> dict[tuple[str, str], int]:
    """Number targets 1, 2, ... per program in alphabetical order of TARGPROP.

    DMS product names carry the APT target number (``t001``), which is not in the
    FITS headers; this numbering is the stand-in (stable for a given set of targets).
    """
    by_program: dict[str, set[str]] = defaultdict(set)
    for info in exposures:
        by_program[GROUP_KEYS["program"](info)].add(info.target.strip())
    return {
        (program, target): index
        for program, targets in by_program.items()
        for index, target in enumerate(sorted(targets), start=1)
    }


def _join(values: Iterable[str]) -> str:
    return "-".join(sorted({v for v in values if v}, key=str.lower))


def _acid(exposures: Sequence[ExposureInfo]) -> str:
    observations = {GROUP_KEYS["observation"](e) for e in exposures}
    if len(observations) > 1:
        return _CROSS_OBSERVATION_ACID
    (observation,) = observations
    if not observation.isdigit():
        return _UNKNOWN_OBSERVATION_ACID
    return f"o{int(observation):03d}"


#: Header keyword behind each group key, for messages about its value.
_KEYWORDS = {"program": "PROGRAM", "observation": "OBSERVTN", "visit": "VISIT",
             "instrument": "INSTRUME", "detector": "DETECTOR", "module": "MODULE",
             "channel": "CHANNEL", "filter": "FILTER", "pupil": "PUPIL", "subarray": "SUBARRAY",
             "exp_type": "EXP_TYPE", "target": "TARGPROP"}
_MAX_VALUE = 40  # longest header value used in a name (real ones have at most ~20)
_MAX_NAME = 200  # product names; file names add suffixes and are limited to 255 bytes


def _sanitise(value: str) -> str:
    """DMS style: lower-case letters, digits and '_'; any other run of characters -> '-'."""
    return re.sub(r"[^a-z0-9_]+", "-", value.lower()).strip("-")


def _name_value(info: ExposureInfo, key: str) -> str:
    """A group key's header value as a part of a file name, or InputError when over-long.

    Header values choose file names (products, associations): a separator, '..',
    a control character or anything else outside ``[a-z0-9_]`` never reaches one.
    """
    value = GROUP_KEYS[key](info)
    if len(value) > _MAX_VALUE:
        raise InputError(
            f"{info.path}: header keyword {_KEYWORDS[key]} is {len(value)} characters long, "
            f"not a usable {key} (at most {_MAX_VALUE}). Fix the header value."
        )
    return _sanitise(value)


def _optical_elements(exposures: Sequence[ExposureInfo]) -> str:
    # As jwst's DMSBaseMixin.get_opt_element: filter values and pupil values, each
    # sorted and joined, then the two sorted and joined; nothing -> "clear".
    parts = [_join(_name_value(e, k) for e in exposures) for k in ("filter", "pupil")]
    return "-".join(sorted((p for p in parts if p), key=str.lower)) or "clear"


def level3_product_name(
    exposures: Sequence[ExposureInfo],
    targets: dict[tuple[str, str], int] | None = None,
    extra: Sequence[str] = (),
) -> str:
    """DMS Level-3 product name ``jw<program>-<acid>_<target>_<instrument>_<optical elements>``.

    Like jwst's ``_dms_product_name``: a non-FULL subarray shared by all exposures is
    appended (``-sub640``); ``extra`` values (group keys the DMS name does not carry,
    such as a NIRCam module) are appended the same way.
    """
    if targets is None:
        targets = target_numbers(exposures)
    programs = {GROUP_KEYS["program"](e) for e in exposures}
    if not all(p.isdigit() for p in programs):
        bad = next(e for e in exposures if not GROUP_KEYS["program"](e).isdigit())
        raise InputError(
            f"{bad.path}: no usable PROGRAM keyword to build a DMS product name from; "
            "give one with --product-name."
        )
    target = _join(
        f"t{targets.get((GROUP_KEYS['program'](e), e.target.strip()), 1):03d}" for e in exposures
    )
    name = "jw{program}-{acid}_{target}_{instrument}_{opt}".format(
        program=_join(programs),
        acid=_acid(exposures),
        target=target,
        instrument=_join(_name_value(e, "instrument") for e in exposures),
        opt=_optical_elements(exposures),
    )
    subarrays = {_name_value(e, "subarray") for e in exposures}
    if len(subarrays) == 1 and subarrays != {"full"} and subarrays != {""}:
        name += "-" + subarrays.pop()
    for value in map(_sanitise, extra):
        if value:
            name += "-" + value
    return check_product_name(name.lower(), f"{exposures[0].path}: the name built from its header")


_BAD_NAME = re.compile(r"[/\\\x00]")


def check_product_name(name: str, where: str = "--product-name") -> str:
    """Refuse product names that would write outside the output directory."""
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{where}: the product name is empty. Give a plain name such as 'mosaic'.")
    if len(name) > _MAX_NAME or not name.isprintable():
        raise InputError(
            f"{where}: product name {name[:60]!r}{'...' if len(name) > 60 else ''} is "
            f"{'too long' if len(name) > _MAX_NAME else 'not printable'}; give a plain name of at "
            f"most {_MAX_NAME} characters such as 'mosaic'."
        )
    if _BAD_NAME.search(name) or ".." in name or name.startswith("."):
        raise InputError(
            f"{where}: product name '{name}' contains a path separator, '..' or a leading dot; "
            "products are written into the output directory, so give a plain name such as "
            "'mosaic' (choose the directory with -o)."
        )
    return name


# --------------------------------------------------------------------------- building


def _absolute(path: str | os.PathLike) -> Path:
    # Lexical, not resolve(): a member that is a symlink keeps the name the user gave it
    # (data linked into a work directory stays a bare name there).
    return Path(os.path.abspath(path))


def _member_name(path: str | os.PathLike, asn_dir: Path, allow_outside: bool) -> str:
    target = _absolute(path)
    if target.parent == asn_dir:
        return target.name
    rel = Path(os.path.relpath(target, asn_dir))
    if rel.parts and rel.parts[0] == "..":
        if not allow_outside:
            raise InputError(
                f"{path}: lies outside the association's directory {asn_dir}. calwebb_image2 and "
                "calwebb_image3 resolve such member paths differently; write the association "
                "into the data directory (or a parent of it), or pass --allow-outside to "
                "write relative paths with '..'."
            )
        log.warning("%s: outside the association's directory; written as %s", path, rel.as_posix())
    return rel.as_posix()


def _jwst_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("jwst")
    except metadata.PackageNotFoundError:  # pragma: no cover - jwst is a dependency
        return "unknown"


def _header(level: int, exposures: Sequence[ExposureInfo], acid: str) -> dict:
    programs = _join(GROUP_KEYS["program"](e) for e in exposures)
    return {
        "asn_type": _ASN_TYPE[level],
        "asn_rule": _ASN_RULE[level],
        "version_id": None,
        "code_version": _jwst_version(),
        "degraded_status": "No known degraded exposures in association.",
        "program": programs or "noprogram",
        "constraints": "No constraints",
        "asn_id": acid,
        "asn_pool": "none",
    }


def _as_infos(items: Iterable[ExposureInfo | str | os.PathLike], what: str) -> list[ExposureInfo]:
    items = list(items)
    if all(isinstance(i, ExposureInfo) for i in items) and items:
        return items
    return read_exposures(items, what)


def build_level2(
    science: Iterable[ExposureInfo | str | os.PathLike],
    background: Iterable[ExposureInfo | str | os.PathLike] = (),
    *,
    asn_dir: str | os.PathLike = ".",
    product_name: str | None = None,
    allow_outside: bool = False,
) -> dict:
    """Level-2 image association: one product per science exposure.

    Each background exposure (``exptype: background``) is added to the products of
    the science exposures it matches in instrument, detector, filter, pupil and
    subarray, so calwebb_image2's background step subtracts it.
    """
    science = sorted(_as_infos(science, "science"), key=lambda e: e.name)
    background = list(background)
    background = (
        sorted(_as_infos(background, "background"), key=lambda e: e.name) if background else []
    )
    asn_dir = _absolute(asn_dir)
    for info in background:
        if info.product_type not in STAGE2_INPUTS:
            raise InputError(
                f"{info.path}: background exposures must be _rate/_rateints files, "
                f"not '{info.product_type}'."
            )
    if product_name is not None:
        check_product_name(product_name)
        if len(science) > 1:
            raise InputError(
                f"--product-name names one product, but a Level-2 association has one product "
                f"per exposure ({len(science)} here). Leave it out to name products after "
                "their exposures."
            )
    if background:
        for info in science:
            if info.background_target:
                log.warning(
                    "%s: is a background-target exposure (BKGDTARG=T) given as science. If a "
                    "shell expanded '--background PATTERN', quote the pattern.",
                    info.path,
                )

    def match(info: ExposureInfo) -> tuple[str, ...]:
        return tuple(GROUP_KEYS[k](info) for k in _BACKGROUND_MATCH)

    used: set[str] = set()
    without: list[ExposureInfo] = []
    products = []
    for info in science:
        name = product_name or product_basename(info.path)
        members = [
            {"expname": _member_name(info.path, asn_dir, allow_outside), "exptype": "science"}
        ]
        for bkg in background:
            if match(bkg) == match(info) and _absolute(bkg.path) != _absolute(info.path):
                members.append(
                    {
                        "expname": _member_name(bkg.path, asn_dir, allow_outside),
                        "exptype": "background",
                    }
                )
                used.add(bkg.path)
        if background and len(members) == 1:
            without.append(info)
        products.append({"name": name, "members": members})
    unused = [bkg for bkg in background if bkg.path not in used]
    if background and len(unused) == len(background):
        raise InputError(
            f"{background[0].path}: no background exposure matches any science exposure (this "
            f"one is {'/'.join(v or '-' for v in match(background[0]))}; instrument, detector, "
            "filter, pupil and subarray must agree). Check the --background files."
        )
    for bkg in unused:
        log.warning(
            "%s: background exposure matches no science exposure (%s); not used.",
            bkg.path,
            "/".join(v or "-" for v in match(bkg)),
        )
    if without:
        log.warning(
            "%d science exposure(s) have no background exposure with the same instrument, "
            "detector, filter, pupil and subarray (%s%s); their background step will be skipped.",
            len(without),
            ", ".join(e.name for e in without[:3]),
            ", ..." if len(without) > 3 else "",
        )
    data = _header(2, science, _acid(science))
    data["target"] = str(_single_target(science))
    data["products"] = products
    return data


def _single_target(exposures: Sequence[ExposureInfo]) -> int:
    numbers = target_numbers(exposures)
    found = {numbers[(GROUP_KEYS["program"](e), e.target.strip())] for e in exposures}
    return min(found)


def _describe_mix(groups: list[ExposureGroup]) -> str:
    keys = list(groups[0].key)
    differing = [k for k in keys if len({g.key[k] for g in groups}) > 1]
    return "; ".join(
        f"{k}: {', '.join(sorted({g.key[k] or '-' for g in groups}))}" for k in differing
    )


def build_level3(
    exposures: Iterable[ExposureInfo | str | os.PathLike],
    *,
    asn_dir: str | os.PathLike = ".",
    product_name: str | None = None,
    allow_mixed: bool = False,
    targets: dict[tuple[str, str], int] | None = None,
    extra_name_parts: Sequence[str] = (),
    allow_outside: bool = False,
) -> dict:
    """Level-3 image association: one product combining all exposures.

    Exposures that differ in program, instrument, NIRCam channel, filter, pupil or
    target are refused unless ``allow_mixed`` (one mosaic per filter is what
    calwebb_image3 is for).
    """
    exposures = sorted(_as_infos(exposures, "input"), key=lambda e: e.name)
    asn_dir = _absolute(asn_dir)
    if not allow_mixed:
        groups = group_exposures(exposures, DEFAULT_GROUP_BY)
        if len(groups) > 1:
            raise InputError(
                f"these {len(exposures)} exposures would mix {_describe_mix(groups)} in one "
                "Level-3 product. Use --group-by default -o DIR/ to write one association per "
                "group, or pass --allow-mixed if one product is really wanted."
            )
    for info in exposures:
        if info.background_target:
            log.warning(
                "%s: is a background-target exposure (BKGDTARG=T); DMS leaves these out of "
                "Level-3 products.",
                info.path,
            )
    if product_name is not None:
        name = check_product_name(product_name)
    else:
        name = level3_product_name(exposures, targets, extra_name_parts)
    targets = targets or target_numbers(exposures)
    data = _header(3, exposures, _acid(exposures))
    data["target"] = str(
        min(targets.get((GROUP_KEYS["program"](e), e.target.strip()), 1) for e in exposures)
    )
    data["products"] = [
        {
            "name": name,
            "members": [
                {"expname": _member_name(e.path, asn_dir, allow_outside), "exptype": "science"}
                for e in exposures
            ],
        }
    ]
    return data


# --------------------------------------------------------------------------- writing


def write_association(data: dict, path: str | os.PathLike, force: bool = False) -> Path:
    """Write ``data`` as JSON atomically (temporary file + rename); never clobber unless ``force``."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; give a file name such as {path}/asn.json.")
    if path.exists() and not force:
        raise OutputError(
            f"{path}: already exists. Pass --force to overwrite it or choose another -o."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(
            f"{path}: cannot write here ({exc.strerror}). Choose another -o."
        ) from exc
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=4)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "group_by": list(self.group_by) if self.group_by else None,
            "associations": [a.to_dict() for a in self.associations],
        }


def _group_product_name(template: str | None, group: ExposureGroup, n_groups: int) -> str | None:
    if template is None:
        return None
    if "{" not in template:
        if n_groups > 1:
            raise InputError(
                f"--product-name '{template}' would name all {n_groups} groups alike. Leave it "
                "out for DMS names, or use group keys as fields, e.g. 'mosaic_{filter}'."
            )
        return template
    # Only plain {key} fields: no attribute, index, conversion or format spec.
    refused = InputError(
        f"--product-name '{template}': cannot fill it from the group keys "
        f"({', '.join(group.key)}); use plain fields such as {{filter}}, without '.', '[', '!' "
        "or ':'."
    )
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        raise refused from None
    parts = []
    for literal, key, spec, conversion in fields:
        if key is not None and (key not in group.key or spec or conversion):
            raise refused
        parts += [literal, _name_value(group.exposures[0], key) if key is not None else ""]
    return check_product_name("".join(parts))


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
) -> AsnBuildResult:
    """Read headers, build and write association(s): the library side of ``jwstrun asn``.

    Without ``group_by``, ``output`` is one ``.json`` file.  With ``group_by`` (keys or
    ``"default"``), ``output`` is a directory receiving one association per group,
    named ``<DMS group name>_<asn_type>_asn.json``.  Nothing is written unless every
    association could be built, and existing files are kept unless ``force``.
    """
    output = Path(output)
    exposures = read_exposures(files)
    level = detect_level(exposures, level)
    backgrounds = read_exposures(background, "background") if background else []
    if backgrounds and level != 2:
        raise InputError(
            "--background adds background members for calwebb_image2 (Level 2); these are "
            "Level-3 inputs. Leave --background out."
        )
    if product_name is not None and "{" not in product_name:
        check_product_name(product_name)
    targets = target_numbers(exposures)

    planned: list[tuple[Path, dict, dict]] = []
    if group_by is None:
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
                targets=targets,
                allow_outside=allow_outside,
            )
        planned.append((output, data, {}))
        keys = None
    else:
        keys = parse_group_by(group_by)
        if output.suffix.lower() == ".json":
            raise InputError(
                f"-o {output}: with --group-by, -o is a directory that receives one association "
                "per group; give a directory such as asn/."
            )
        if output.exists() and not output.is_dir():
            raise OutputError(f"-o {output}: exists and is not a directory.")
        groups = group_exposures(exposures, keys)
        if level == 2 and backgrounds:
            # Checks the backgrounds against all science exposures (warning about unused
            # ones once) before each group keeps only those matching its members.
            build_level2(exposures, backgrounds, asn_dir=output, allow_outside=allow_outside)
        # Keys the DMS name does not carry are appended so group names stay distinct.
        extra_keys = [k for k in keys if k in ("module", "detector", "visit", "exp_type")]
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
    return AsnBuildResult(level, written, keys)


def _has_program(group: ExposureGroup) -> bool:
    return all(GROUP_KEYS["program"](e).isdigit() for e in group.exposures)


def _matching_backgrounds(
    group: ExposureGroup, backgrounds: list[ExposureInfo]
) -> list[ExposureInfo]:
    wanted = {tuple(GROUP_KEYS[k](e) for k in _BACKGROUND_MATCH) for e in group.exposures}
    return [b for b in backgrounds if tuple(GROUP_KEYS[k](b) for k in _BACKGROUND_MATCH) in wanted]


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


# --------------------------------------------------------------------------- reading back


@dataclass
class AsnMember:
    """One member: its name as written and its path resolved against the association."""

    expname: str
    exptype: str
    path: Path


@dataclass
class AsnProduct:
    """One product and its members."""

    name: str
    members: list[AsnMember]

    def by_type(self, exptype: str) -> list[AsnMember]:
        return [m for m in self.members if m.exptype == exptype]


@dataclass
class Association:
    """An association file that passed :func:`load_association`'s checks."""

    path: Path
    level: int
    data: dict
    products: list[AsnProduct]

    @property
    def asn_type(self) -> str:
        return _ASN_TYPE[self.level]

    def member_paths(self, exptype: str | None = None) -> list[Path]:
        """Resolved member paths (each once), optionally of one exptype."""
        seen: dict[Path, None] = {}
        for product in self.products:
            for member in product.members:
                if exptype is None or member.exptype == exptype:
                    seen.setdefault(member.path, None)
        return list(seen)


def _level_from_asn_type(asn_type) -> int | None:
    for level, name in _ASN_TYPE.items():
        if asn_type == name:
            return level
    return None


def _schema_path(level: int) -> Path | None:
    # Locate jwst's own schema file without importing jwst (0.8 s for jwst.associations).
    from importlib.util import find_spec

    spec = find_spec("jwst")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = (
        Path(list(spec.submodule_search_locations)[0])
        / "associations"
        / "lib"
        / _SCHEMA_FILE[level]
    )
    return path if path.is_file() else None


def _validate_schema(data: dict, level: int, path: Path) -> None:
    schema_path = _schema_path(level)
    if schema_path is None:  # pragma: no cover - jwst is a dependency
        log.debug("jwst association schema not found; schema check skipped")
        return
    import jsonschema

    schema = json.loads(schema_path.read_text())
    errors = sorted(
        jsonschema.Draft4Validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path)
    )
    if errors:
        error = errors[0]
        where = "/".join(str(p) for p in error.absolute_path) or "top level"
        raise InputError(
            f"{path}: does not follow jwst's Level-{level} association schema at {where}: "
            f"{error.message}. Rebuild it with 'jwstrun asn'."
        )


def _structure_error(path: Path, where: str, what: str) -> InputError:
    return InputError(f"{path}: {where}: {what}. Rebuild it with 'jwstrun asn'.")


def _parse_products(path: Path, data) -> list[tuple[str, list[tuple[str, str]]]]:
    if not isinstance(data, dict):
        raise _structure_error(path, "top level", "expected a JSON object with 'products'")
    products = data.get("products")
    if not isinstance(products, list) or not products:
        raise _structure_error(
            path, "products", "missing or empty; an association needs at least one product"
        )
    parsed = []
    for index, product in enumerate(products):
        where = f"product {index + 1}"
        if not isinstance(product, dict):
            raise _structure_error(path, where, "expected an object with 'name' and 'members'")
        name = product.get("name")
        if not isinstance(name, str):
            raise _structure_error(path, where, "has no product name")
        try:
            check_product_name(name, where=f"{path}: {where}")
        except InputError as exc:
            raise InputError(f"{exc} Fix the name in the association.") from None
        members = product.get("members")
        if not isinstance(members, list) or not members:
            raise _structure_error(path, f"{where} ({name})", "has no members")
        rows = []
        for m_index, member in enumerate(members):
            m_where = f"{where} ({name}), member {m_index + 1}"
            if not isinstance(member, dict):
                raise _structure_error(
                    path, m_where, "expected an object with 'expname' and 'exptype'"
                )
            expname, exptype = member.get("expname"), member.get("exptype")
            if not isinstance(expname, str) or not expname.strip():
                raise _structure_error(path, m_where, "has no 'expname'")
            if not isinstance(exptype, str) or not exptype.strip():
                raise _structure_error(path, m_where, f"'{expname}' has no 'exptype'")
            rows.append((expname, exptype.strip().lower()))
        parsed.append((name, rows))
    return parsed


def _infer_level(path: Path, parsed) -> int:
    from ..products import product_suffix

    levels = set()
    for _name, rows in parsed:
        for expname, _exptype in rows:
            suffix = product_suffix(expname)
            for level, types in LEVEL_INPUTS.items():
                if suffix in types:
                    levels.add(level)
    if len(levels) != 1:
        raise InputError(
            f"{path}: cannot tell whether this is a Level-2 or a Level-3 association (asn_type "
            'does not say and the member names do not either). Set "asn_type" to "image2" '
            'or "image3".'
        )
    return levels.pop()


def load_association(
    path: str | os.PathLike,
    *,
    level: int | None = None,
    allow_outside: bool = False,
    check_members_exist: bool = True,
) -> Association:
    """Read an association file and check it is one calwebb_image2/image3 can run.

    Checks JSON syntax, structure and jwst's schema, ``asn_type`` (against ``level``
    when given), product names (no path separators or ``..``), member paths (none
    outside the association's directory unless ``allow_outside``), duplicate
    members and, unless ``check_members_exist`` is False, that members exist.
    Raises :class:`InputError` naming the file; returns an :class:`Association`.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: association file not found. Check the path.")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an association .json file.")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the association ({exc}).") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). "
            "Fix the file or rebuild it with 'jwstrun asn'."
        ) from None
    except RecursionError:
        # json raises this (not JSONDecodeError) for arrays/objects nested
        # thousands deep; no association looks like that.
        raise InputError(
            f"{path}: is not an association: its JSON is nested too deeply. "
            "Rebuild it with 'jwstrun asn'."
        ) from None
    parsed = _parse_products(path, data)

    asn_type = data.get("asn_type", "")
    found = _level_from_asn_type(asn_type)
    if found is None:
        if not isinstance(asn_type, str) or asn_type not in _UNSPECIFIED_ASN_TYPES:
            raise InputError(
                f"{path}: asn_type is '{asn_type}'; jwstrun runs image associations "
                "(asn_type image2 or image3). Use the matching jwst pipeline for this one."
            )
        found = _infer_level(path, parsed)
    if level is not None and found != level:
        raise InputError(
            f"{path}: asn_type is '{_ASN_TYPE[found]}' (Level {found}) but a Level-{level} "
            f"({_ASN_TYPE[level]}) association is needed here. Build one with 'jwstrun asn' "
            f"from {'_rate' if level == 2 else '_cal'} files."
        )
    level = found
    _validate_schema(data, level, path)

    asn_dir = _absolute(path.parent)
    names = Counter(name for name, _rows in parsed)
    for name, count in names.items():
        if count > 1:
            raise InputError(
                f"{path}: product name '{name}' appears {count} times; their outputs would "
                "overwrite each other. Give each product its own name."
            )
    if level == 3 and len(parsed) > 1:
        raise InputError(
            f"{path}: has {len(parsed)} products, but calwebb_image3 processes only the first. "
            "Write one association per product (jwstrun asn --group-by)."
        )

    products = []
    science_seen: dict[Path, str] = {}
    missing = []
    for name, rows in parsed:
        members = []
        in_product: set[Path] = set()
        for expname, exptype in rows:
            allowed = ("science", "background") if level == 2 else ("science",)
            if exptype not in allowed:
                raise InputError(
                    f"{path}: product '{name}': member {expname} has exptype '{exptype}'; a "
                    f"Level-{level} image association takes {' or '.join(allowed)} members."
                )
            member_path = _resolve_member(path, asn_dir, expname, allow_outside)
            if member_path in in_product:
                raise InputError(
                    f"{path}: product '{name}' lists {expname} more than once. Remove the duplicate."
                )
            in_product.add(member_path)
            if exptype == "science":
                if member_path in science_seen:
                    raise InputError(
                        f"{path}: {expname} is a science member of both '{science_seen[member_path]}' "
                        f"and '{name}'; it would be processed twice. Remove the duplicate."
                    )
                science_seen[member_path] = name
            if check_members_exist and not member_path.is_file():
                missing.append(expname)
            members.append(AsnMember(expname, exptype, member_path))
        n_science = sum(m.exptype == "science" for m in members)
        if level == 2 and n_science != 1:
            raise InputError(
                f"{path}: product '{name}' has {n_science} science members; a Level-2 product "
                "has exactly one (calwebb_image2 would use only the first)."
            )
        if level == 3 and n_science == 0:
            raise InputError(f"{path}: product '{name}' has no science members.")
        products.append(AsnProduct(name, members))
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise InputError(
            f"{path}: {len(missing)} member file(s) not found next to the association: {shown}. "
            "Members are looked up relative to the association's directory; move the association "
            "next to the data or rebuild it with 'jwstrun asn'."
        )
    return Association(path, level, data, products)


def _resolve_member(path: Path, asn_dir: Path, expname: str, allow_outside: bool) -> Path:
    member = Path(expname)
    resolved = Path(os.path.normpath(member if member.is_absolute() else asn_dir / member))
    if not allow_outside and (".." in member.parts or not resolved.is_relative_to(asn_dir)):
        raise InputError(
            f"{path}: member {expname} lies outside the association's directory {asn_dir}. "
            "calwebb_image2 and calwebb_image3 resolve such paths differently; keep "
            "members in (or below) the association's directory, or rebuild it with "
            "'jwstrun asn' next to the data."
        )
    return resolved


@dataclass
class AssociationCheck:
    """Result of :func:`check_association`: the association plus problems found in members."""

    association: Association
    exposures: dict[Path, ExposureInfo]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        asn = self.association
        return {
            "path": str(asn.path),
            "level": asn.level,
            "asn_type": asn.data.get("asn_type"),
            "ok": self.ok,
            "problems": self.problems,
            "products": [
                {
                    "name": p.name,
                    "members": [
                        {
                            "expname": m.expname,
                            "exptype": m.exptype,
                            "product_type": getattr(
                                self.exposures.get(m.path), "product_type", None
                            ),
                            "instrument": getattr(self.exposures.get(m.path), "instrument", None),
                            "filter": getattr(self.exposures.get(m.path), "filter", None),
                            "pupil": getattr(self.exposures.get(m.path), "pupil", None),
                        }
                        for m in p.members
                    ],
                }
                for p in asn.products
            ],
        }


def check_association(path: str | os.PathLike, *, allow_outside: bool = False) -> AssociationCheck:
    """Everything :func:`load_association` checks, plus each member's header.

    Members must be readable FITS of the product type the level takes; a Level-3
    product must have one instrument, filter and pupil; Level-2 background members
    must match their science exposure.  Structural errors raise :class:`InputError`;
    member problems are collected in :attr:`AssociationCheck.problems`.
    """
    asn = load_association(path, allow_outside=allow_outside)
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
    for product in asn.products:
        infos = [exposures[m.path] for m in product.members if m.path in exposures]
        if asn.level == 3:
            for key in ("instrument", "filter", "pupil"):
                values = sorted({GROUP_KEYS[key](i) or "-" for i in infos})
                if len(values) > 1:
                    problems.append(
                        f"product '{product.name}': mixes {key} values {', '.join(values)}; "
                        "one calwebb_image3 product should have one (rebuild with jwstrun asn "
                        "--group-by)."
                    )
        else:
            science = [exposures.get(m.path) for m in product.by_type("science")]
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
    return AssociationCheck(asn, exposures, problems)
