"""DMS names: Level-3 product names built from headers, and the checks on any product name.

Header values choose file names (products, associations), so every value is
sanitised to DMS style and over-long values are refused before they reach one.
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from typing import Iterable, Sequence

from ..errors import InputError
from ..products import ExposureInfo
from .grouping import DEFAULT_GROUP_BY, GROUP_KEYS, ExposureGroup

# Candidate id for products that span several observations (DMS uses c1xxx ids for
# candidates that join observations, declared in APT and absent from FITS headers;
# jwstrun makes such products only when asked: merge_observations, or group keys
# without "observation").
_CROSS_OBSERVATION_ACID = "c1000"
_UNKNOWN_OBSERVATION_ACID = "o999"  # asn_from_list's default candidate id


def target_numbers(exposures: Iterable[ExposureInfo]) -> dict[tuple[str, str], int]:
    """Number targets 1, 2, ... per program in alphabetical order of TARGPROP.

    DMS product names carry the APT target number (``t001``: the TARGETID column of
    the association pool), which no FITS header keyword holds (the products MAST
    delivers have TARGPROP and TARGNAME only); this numbering is the stand-in, stable
    for a given set of targets, and may differ from MAST's for programs with several
    targets.  (jwst's ``mkpool`` numbers TARGNAME values in the order files are given.)
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
             "exp_type": "EXP_TYPE", "target": "TARGPROP", "bkgdtarg": "BKGDTARG"}
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


def _fill_template(template: str, keys, exposure: ExposureInfo, refused: InputError) -> str:
    """``template`` with its ``{key}`` fields (only plain fields, of ``keys``) filled from
    ``exposure``'s header, sanitised; ``refused`` for any other field."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        raise refused from None
    parts = []
    for literal, key, spec, conversion in fields:
        if key is not None and (key not in keys or spec or conversion):
            raise refused
        parts += [literal, _name_value(exposure, key) if key is not None else ""]
    return check_product_name("".join(parts))


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
    refused = InputError(
        f"--product-name '{template}': cannot fill it from the group keys "
        f"({', '.join(group.key)}); use plain fields such as {{filter}}, without '.', '[', '!' "
        "or ':'."
    )
    return _fill_template(template, group.key, group.exposures[0], refused)


def _single_product_name(template: str | None, exposures: Sequence[ExposureInfo]) -> str | None:
    """``--product-name`` of the one association written without ``--group-by``: a plain
    name, or a template whose ``{key}`` fields (group keys) all exposures share."""
    if template is None or "{" not in template:
        return template
    refused = InputError(
        f"--product-name '{template}': cannot fill it from the exposures' headers; use plain "
        f"fields such as {{filter}} (one of: {', '.join(GROUP_KEYS)}), without '.', '[', '!' "
        "or ':'."
    )
    try:
        keys = [key for _lit, key, _spec, _conv in string.Formatter().parse(template) if key]
    except ValueError:
        raise refused from None
    for key in keys:
        values = sorted({GROUP_KEYS[key](e) or "-" for e in exposures}) if key in GROUP_KEYS else []
        if len(values) > 1:
            group_by = "default" if key in DEFAULT_GROUP_BY else f"default,{key}"
            raise InputError(
                f"--product-name '{template}': the exposures differ in {key} "
                f"({', '.join(values)}), so {{{key}}} has no one value. Use --group-by "
                f"{group_by} -o DIR/ for one association per group, or leave the field out."
            )
    return _fill_template(template, GROUP_KEYS, exposures[0], refused)
