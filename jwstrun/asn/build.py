"""Building associations: Level 2 (one product per exposure, with its backgrounds matched
by :mod:`.backgrounds`) and Level 3 (one product combining exposures), as the JSON dict
jwst's loaders read.

The layout is that of jwst's own associations (the rules ``Asn_Lv2Image`` /
``Asn_Lv3Image``; what ``asn_from_list`` writes, with the DMS ``asn_type``).
Only primary FITS headers are read, and jwst itself is not imported.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import InputError
from ..products import ExposureInfo, product_basename
from .backgrounds import match_backgrounds, report_backgrounds, split_backgrounds
from .exposures import read_exposures
from .grouping import DEFAULT_GROUP_BY, GROUP_KEYS, ExposureGroup, group_exposures
from .levels import _ASN_RULE, _ASN_TYPE, LEVEL_INPUTS, _files_of
from .members import _absolute, _member_name
from .naming import (
    _acid,
    _join,
    _sanitise,
    check_product_name,
    level3_product_name,
    target_numbers,
)
from .read import AsnMember, AsnProduct, Association

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _jwst_version() -> str:
    """The installed jwst's version (cached; :func:`jwstrun.asn.clear_caches` forgets it)."""
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
    report: bool = True,
) -> dict:
    """Level-2 image association: one product per science exposure.

    Each background exposure (``exptype: background``) is added to the products of
    the science exposures it matches in instrument, detector, filter, pupil and
    subarray, so calwebb_image2's background step subtracts it.  Dedicated
    background exposures (BKGDTARG=T) among ``science`` are backgrounds too, never
    products of their own (:mod:`.backgrounds`).  ``report=False`` leaves out the
    messages on what was matched (said once for several associations).
    """
    science, detected = split_backgrounds(
        sorted(_as_infos(science, "science"), key=lambda e: e.name))
    given = list(background)
    given = _as_infos(given, "background") if given else []
    known = {b.path for b in given}
    background = sorted([*given, *(d for d in detected if d.path not in known)],
                        key=lambda e: e.name)
    _check_level2_inputs(science, background, product_name)
    match = match_backgrounds(science, background)
    if report:
        report_backgrounds(match, detected, explicit=bool(given))
    asn_dir = _absolute(asn_dir)
    products = []
    for info in science:
        members = [(info, "science"), *((bkg, "background") for bkg in match.matched[info.path])]
        products.append({
            "name": product_name or product_basename(info.path),
            "members": [{"expname": _member_name(e.path, asn_dir, allow_outside), "exptype": kind}
                        for e, kind in members],
        })
    data = _header(2, science, _acid(science))
    data["target"] = str(_single_target(science))
    data["products"] = products
    return data


def _check_level2_inputs(
    science: list[ExposureInfo], background: list[ExposureInfo], product_name: str | None
) -> None:
    for info in background:
        if info.product_type not in LEVEL_INPUTS[2]:
            raise InputError(
                f"{info.path}: background exposures must be {_files_of(2)} files, "
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


def level2_association(files: Sequence[str | os.PathLike]) -> Association:
    """The Level-2 association of ``files`` that ``jwstrun asn FILES`` writes (dedicated
    backgrounds among them as background members), held in memory: its ``path`` is in
    the files' common directory, where its member names are relative to, but no file
    is written.  What ``jwstrun image2`` runs when background exposures are among its
    inputs."""
    exposures = read_exposures(files)
    asn_dir = _absolute(os.path.commonpath([_absolute(e.path).parent for e in exposures]))
    data = build_level2(exposures, asn_dir=asn_dir)
    acid = _sanitise(data["asn_id"])
    name = (f"jw{_sanitise(data['program'])}-{acid}" if data["program"] != "noprogram"
            else acid) + f"_{_ASN_TYPE[2]}_asn.json"
    products = [
        AsnProduct(product["name"], [
            AsnMember(m["expname"], m["exptype"], Path(os.path.normpath(asn_dir / m["expname"])))
            for m in product["members"]
        ])
        for product in data["products"]
    ]
    return Association(asn_dir / name, 2, data, products)


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
    group_keys: Sequence[str] = DEFAULT_GROUP_BY,
) -> dict:
    """Level-3 image association: one product combining all exposures.

    Exposures that the DMS rules put in different products (``group_keys``: program,
    observation, instrument, filter, pupil, subarray, target, BKGDTARG) are refused
    unless ``allow_mixed``.
    """
    exposures = sorted(_as_infos(exposures, "input"), key=lambda e: e.name)
    asn_dir = _absolute(asn_dir)
    if not allow_mixed:
        _refuse_mix(exposures, group_keys)
    if any(not e.background_target for e in exposures):
        for info in exposures:
            if info.background_target:
                log.warning(
                    "%s: is a background-target exposure (BKGDTARG=T) in a Level-3 product "
                    "with science exposures; DMS keeps these apart.",
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


def _refuse_mix(exposures: list[ExposureInfo], group_keys: Sequence[str]) -> None:
    """InputError when ``exposures`` belong to several groups of ``group_keys``."""
    groups = group_exposures(exposures, group_keys)
    if len(groups) == 1:
        return
    mix = _describe_mix(groups)
    if mix.startswith("observation:") and "; " not in mix:
        raise InputError(
            f"these {len(exposures)} exposures belong to several observations "
            f"({mix.removeprefix('observation: ')}); DMS makes one Level-3 product per "
            "observation. Use --group-by default -o DIR/ to write one association per "
            "observation, or pass --merge-observations for one product of them all."
        )
    raise InputError(
        f"these {len(exposures)} exposures would mix {mix} in one Level-3 product. Use "
        "--group-by default -o DIR/ to write one association per group, or pass "
        "--allow-mixed if one product is really wanted."
    )
