"""Reading the exposures to associate: primary headers only, each exposure once."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import InputError
from ..inputs import is_association
from ..products import ExposureInfo, read_exposure_info
from .levels import IMAGING_EXP_TYPES

log = logging.getLogger(__name__)


def read_exposures(paths: Iterable[str | os.PathLike], what: str = "input", *,
                   imaging_only: bool = True) -> list[ExposureInfo]:
    """Read the primary headers of ``paths``; raise :class:`InputError` naming a bad file.

    Duplicates (the same file listed twice) are dropped with a warning; two files with
    the same name in different directories are refused since their products would
    overwrite each other.  ``imaging_only=False`` keeps exposures of other EXP_TYPEs and
    ``_uncal`` files, for :func:`jwstrun.selection.select_exposures` to leave out.
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
        if is_association(path):
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
        _check_jwst_exposure(info, imaging_only)
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


def _check_jwst_exposure(info: ExposureInfo, imaging_only: bool = True) -> None:
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
    exp_type = info.exp_type.upper()
    if exp_type not in IMAGING_EXP_TYPES:
        if not imaging_only:
            return  # jwstrun.selection leaves it out, whatever product it is
        raise InputError(
            f"{info.path}: EXP_TYPE {exp_type} is not direct imaging "
            f"({', '.join(IMAGING_EXP_TYPES)}); jwstrun builds image2/image3 associations only."
        )
    if info.product_type is None:
        raise InputError(
            f"{info.path}: cannot tell the product type (no _rate/_cal... suffix and no usable "
            "DATAMODL). Name the file by the JWST convention, e.g. <exposure>_rate.fits."
        )
