"""Check that a JWST product is what it claims to be: layout, step statuses, units, data.

A step can skip itself and still let a product through (jwst issue 8049), a
killed writer leaves a FITS file without its ASDF extension, and a photom step
without a reference leaves DN/s in a ``_cal`` file.  :func:`validate_file` turns
each such problem into a :class:`~jwstrun.validate.findings.Finding` (``error``
or ``warning``) and never raises for a bad file: empty, non-FITS,
gzip-compressed and truncated files get an error finding that names the file.

What a valid product looks like (layouts, required steps) is in
:mod:`jwstrun.validate._schemas`; catalogs are checked by
:mod:`jwstrun.validate.catalog`.

Speed matters because the runner validates every product it writes: files are
opened with ``astropy.io.fits`` (memmap), dtypes come from headers, the ASDF
extension is parsed as YAML with its binary blocks walked (no tag
conversion), and data checks stop at the first chunk with signal.  No datamodel
is loaded.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from pathlib import Path

from ..errors import InputError
from ..products import (
    DQ_FLAGS,
    name_mismatch,
    product_suffix,
    product_type,
    read_primary_header,
)
from ._hdus import _count_flag, _data_has_signal, _norm_unit, _raw_zero, _scan_hdus
from ._layout import _check_asdf, _check_layout, _check_truncation
from ._schemas import (
    _CALIBRATED_TYPES,
    _COUNTRATE_TYPES,
    _DETECTOR1_STEPS,
    _IMAGE3_STEPS,
    _REQUIRED_STEPS,
    _SURFACE_BRIGHTNESS_TYPES,
    VALIDATED_TYPES,
    _cal_step_keywords,
    step_status_keys,
)
from .catalog import validate_catalog
from .findings import FileReport

__all__ = ["validate_file", "validate_files"]

log = logging.getLogger(__name__)


def _resolve_type(path: Path, header, expect: str | None, report: FileReport) -> str | None:
    from_name = product_suffix(path)
    if expect:
        if expect not in VALIDATED_TYPES:
            raise InputError(
                f"unknown product type {expect!r} for --expect: use one of "
                + ", ".join(VALIDATED_TYPES)
                + "."
            )
        if from_name and from_name != expect:
            report.warn(
                "product-type",
                f"file name says '{from_name}' but it is validated as '{expect}' (--expect).",
            )
        return expect
    if from_name:
        return from_name
    return product_type(path, header)


def validate_file(
    path: str | os.PathLike,
    expect: str | None = None,
    expected_skips=None,
    expect_background: bool = False,
    check_data: bool = True,
    required_status: dict[str, str] | None = None,
) -> FileReport:
    """Validate one product and return its :class:`FileReport` (never raises for bad files).

    Parameters
    ----------
    path : path-like
        A JWST product: ``*_rate.fits`` ... ``*_i2d.fits``, ``*_segm.fits``, ``*_cat.ecsv``.
    expect : str, optional
        Product type to validate as; overrides the type from suffix and DATAMODL.
    expected_skips : iterable of str, optional
        Steps the profile skipped on purpose, as step names (``tweakreg``) or status
        keywords (``S_TWKREG``); their SKIPPED status is not an error.
    expect_background : bool
        Background members were given, so ``S_BKDSUB`` must be COMPLETE.
    check_data : bool
        Also read pixel data (SCI not all NaN/zero, OUTLIER flags in crf DQ).
    required_status : dict, optional
        Status keyword -> step (``{"S_SNOWBL": "snowblind"}``): steps run on the exposures
        before the stage (a profile's ``before:``), which must read COMPLETE in the
        products made from one exposure (``_cal``, ``_calints``, ``_bsub``, ``_crf``...).

    Raises
    ------
    InputError
        Only for bad arguments (unknown ``expect`` type or step name), never for a bad file.
    """
    start = time.perf_counter()
    path = Path(path)
    skip_keys = step_status_keys(expected_skips)
    if expect is not None and expect not in VALIDATED_TYPES:
        raise InputError(
            f"unknown product type {expect!r}: use one of " + ", ".join(VALIDATED_TYPES) + "."
        )
    report = FileReport(path=str(path), product_type=expect or product_suffix(path))
    try:
        suffix_type = expect or product_suffix(path)
        if suffix_type == "cat" or (suffix_type is None and path.suffix.lower() == ".ecsv"):
            report.product_type = "cat"
            if not path.exists():
                report.error("unreadable", f"{path}: file not found. Check the path.")
            else:
                validate_catalog(path, report)
        else:
            _validate_fits(path, expect, skip_keys, expect_background, check_data, report,
                           required_status)
    except InputError as exc:
        report.error("unreadable", str(exc))
    except Exception as exc:  # noqa: BLE001 - a verdict for any broken file, never a traceback
        log.debug("validation of %s failed", path, exc_info=True)
        report.error(
            "unreadable",
            f"{path}: cannot be read as a JWST product ({type(exc).__name__}: {exc}).",
        )
    report.seconds = time.perf_counter() - start
    log.debug("validated %s in %.3f s: %d findings", path, report.seconds, len(report.findings))
    return report


def validate_files(
    paths,
    expect: str | None = None,
    expected_skips=None,
    expect_background: bool = False,
    check_data: bool = True,
    progress=None,
    required_status: dict[str, str] | None = None,
) -> list[FileReport]:
    """Validate several products; ``progress(report)`` is called after each one
    (the other arguments as for :func:`validate_file`)."""
    step_status_keys(expected_skips)  # bad step names fail before any file is read
    reports = []
    for path in paths:
        report = validate_file(
            path,
            expect=expect,
            expected_skips=expected_skips,
            expect_background=expect_background,
            check_data=check_data,
            required_status=required_status,
        )
        reports.append(report)
        if progress is not None:
            progress(report)
    return reports


def _validate_fits(path, expect, skip_keys, expect_background, check_data, report,
                   required_status=None):
    from astropy.io import fits

    primary = read_primary_header(path)  # empty / gzip / non-FITS / partial block -> InputError
    ptype = _resolve_type(path, primary, expect, report)
    report.product_type = ptype
    if ptype is None:
        report.error(
            "product-type",
            f"{path.name}: cannot tell the product type from the file name or DATAMODL "
            f"({primary.get('DATAMODL', 'no DATAMODL')}). Name it like *_cal.fits or pass "
            "--expect TYPE.",
        )
        return
    if ptype == "cat":
        report.error("product-type", "a source catalog must be an ECSV file (*_cat.ecsv).")
        return
    if ptype not in VALIDATED_TYPES:  # an _uncal: raw ramps, before any stage jwstrun runs
        mismatch = name_mismatch(path, primary)
        report.error(
            "datamodel" if mismatch else "product-type",
            mismatch or f"{path.name}: is an _{ptype} file (raw ramps, DATAMODL "
            f"{primary.get('DATAMODL', 'missing')}); validate checks the products of "
            f"calwebb_detector1 and later ({', '.join(VALIDATED_TYPES)}).",
        )
        return

    size = path.stat().st_size
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # do_not_scale_image_data: astropy refuses to memmap uint32 arrays (stored
            # with BZERO = 2**31), so integer data is read raw and un-offset by hand.
            hdul = fits.open(
                path, memmap=True, lazy_load_hdus=False, do_not_scale_image_data=True
            )
        except OSError as exc:
            report.error(
                "truncated",
                f"{path}: a FITS header is incomplete or damaged ({exc}): the file was cut "
                "short or corrupted while being written or copied. Re-create it.",
            )
            return
        try:
            hdus = _scan_hdus(hdul)
            _check_truncation(path, size, hdus, report)
            _check_layout(ptype, primary, hdus, report)
            _check_asdf(ptype, primary, hdus, size, report)
            _check_steps(ptype, primary, skip_keys, expect_background, report)
            _check_required_status(ptype, primary, required_status, report)
            _check_units_and_photometry(ptype, primary, hdus, report)
            if check_data:
                _check_data(ptype, hdus, size, report)
            report.summary = _summary(ptype, primary, hdus)
        finally:
            hdul.close()
    for item in caught:
        text = str(item.message)
        if "truncated" in text or "unclosed file" in text:
            continue  # reported by _check_truncation / our own close
        report.warn("fits", f"astropy: {text}")


def _check_steps(ptype, primary, skip_keys, expect_background, report):
    mapping = _cal_step_keywords()
    steps = list(_REQUIRED_STEPS.get(ptype, ()))
    status = {k: str(v).strip().upper() for k, v in primary.items() if k.startswith("S_")}
    if ptype in ("i2d", "segm") and any(mapping[s] in status for s in _IMAGE3_STEPS):
        steps += _IMAGE3_STEPS  # a level-3 mosaic: image3 recorded these
    if ptype in ("rate", "rateints") and any(mapping[s] in status for s in _DETECTOR1_STEPS):
        steps += _DETECTOR1_STEPS  # calwebb_detector1 made it (not a simulated _rate)
    if expect_background and ptype not in ("rate", "rateints") and "bkg_subtract" not in steps:
        steps.append("bkg_subtract")
    if "tweakreg" in steps and status.get(mapping["assign_mtwcs"]) == "COMPLETE":
        steps.remove("tweakreg")  # moving targets are aligned by assign_mtwcs instead

    for step in steps:
        key = mapping[step]
        value = status.get(key)
        if value == "COMPLETE":
            if key in skip_keys:
                report.warn(
                    "step-status",
                    f"{key} is COMPLETE although the profile skips {step}: check the "
                    "parameters actually applied.",
                )
            continue
        if key in skip_keys and value in ("SKIPPED", None):
            continue
        if value is None:
            report.error(
                "step-status",
                f"{key} ({step}) is not set: the step never ran on this '{ptype}' product.",
            )
        elif value == "SKIPPED":
            report.error(
                "step-status",
                f"{key} is SKIPPED: {step} did not run although the profile did not ask to skip "
                f"it (a missing reference file, or the step gave up). See the step log.",
            )
        elif value == "FAILED":
            if key in skip_keys:
                report.warn("step-status", f"{key} is FAILED ({step} was expected not to run).")
            else:
                hint = (
                    " jwst records FAILED when it finds too few matches or only one exposure "
                    "group; skip tweakreg (--skip tweakreg) if that is expected."
                    if step == "tweakreg"
                    else ""
                )
                report.error(
                    "step-status",
                    f"{key} is FAILED: {step} did not succeed. See the step log.{hint}",
                )
        else:
            report.error("step-status", f"{key} is {value!r}, expected COMPLETE.")

    required_keys = {mapping[s] for s in steps}
    for key, value in status.items():
        if key not in required_keys and value == "FAILED":
            report.warn("step-status", f"{key} is FAILED.")


#: Products made from one exposure: they carry its step statuses (a mosaic or catalog
#: of many does not have to).
_EXPOSURE_TYPES = {"rate", "rateints", "bsub", "bsubints", "cal", "calints", "crf", "crfints"}


def _check_required_status(ptype, primary, required_status, report):
    """The steps run before the stage (``required_status``: keyword -> step) must read
    COMPLETE in a product made from one exposure."""
    if not required_status or ptype not in _EXPOSURE_TYPES:
        return
    from ._schemas import recorded_status

    for key, step in required_status.items():
        value = recorded_status(primary, key, step)
        if value == "COMPLETE":
            continue
        said = "is not set" if value is None else f"is {value}"
        report.error(
            "step-status",
            f"{key} ({step}) {said}: {step} runs on the exposures before the stage (a "
            "profile's before:), so it must read COMPLETE. See the step log.",
        )


def _check_units_and_photometry(ptype, primary, hdus, report):
    by_name = {h.name: h for h in reversed(hdus)}
    sci = by_name.get("SCI")
    if sci is None or ptype == "segm":
        return
    bunit = sci.header.get("BUNIT")
    if ptype in _COUNTRATE_TYPES:
        want = "DN/s"
    elif ptype in _SURFACE_BRIGHTNESS_TYPES:
        want = "MJy/sr"
    else:
        return
    if bunit is None:
        if ptype in _COUNTRATE_TYPES:
            report.warn("bunit", f"SCI has no BUNIT keyword (expected {want}).")
        else:
            report.error("bunit", f"SCI has no BUNIT keyword; after photom it must be {want}.")
    elif _norm_unit(bunit) != _norm_unit(want):
        report.error("bunit", f"SCI BUNIT is {bunit!r}, a '{ptype}' product is in {want}.")
    err = by_name.get("ERR")
    if err is not None and bunit is not None:
        err_unit = err.header.get("BUNIT")
        if err_unit is not None and _norm_unit(err_unit) != _norm_unit(bunit):
            report.warn("bunit", f"ERR BUNIT {err_unit!r} differs from SCI BUNIT {bunit!r}.")

    def number(key):
        value = sci.header.get(key, primary.get(key))
        try:
            return float(value)
        except (TypeError, ValueError):
            return None

    if ptype in _CALIBRATED_TYPES:
        for key in ("PHOTMJSR", "PIXAR_SR"):
            value = number(key)
            if value is None:
                report.error("photometry", f"{key} is missing from the SCI header (set by photom).")
            elif not math.isfinite(value) or value <= 0:
                report.error("photometry", f"{key} = {value} is not a positive number.")
    elif ptype == "i2d":
        value = number("PIXAR_SR")
        if value is None or not math.isfinite(value) or value <= 0:
            report.warn("photometry", "PIXAR_SR (output pixel area) is missing or not positive.")


def _check_data(ptype, hdus, size, report):
    by_name = {h.name: h for h in reversed(hdus)}
    sci = by_name.get("SCI")
    if sci is not None and sci.kind == "image" and sci.shape and sci.end <= size:
        has_signal, all_nan = _data_has_signal(sci.hdu.data, _raw_zero(sci))
        if not has_signal:
            what = "NaN" if all_nan else "zero (or NaN)"
            if ptype == "segm":
                report.warn("science-data", f"segmentation map is entirely {what}: no sources.")
            else:
                report.error(
                    "science-data",
                    f"SCI is entirely {what}: no usable pixel. Check the input and the step logs.",
                )
    if ptype in ("crf", "crfints"):
        dq = by_name.get("DQ")
        if dq is not None and dq.kind == "image" and dq.shape and dq.end <= size:
            if _count_flag(dq.hdu.data, DQ_FLAGS["OUTLIER"]) == 0:
                report.warn(
                    "outliers",
                    "no pixel in DQ carries the OUTLIER flag: outlier_detection flagged nothing "
                    "(fine for clean data, suspicious for many exposures).",
                )


def _summary(ptype, primary, hdus) -> dict:
    sci = next((h for h in hdus if h.name == "SCI"), None)

    def text(key):
        value = primary.get(key)
        return "" if value is None else str(value).strip()

    return {
        "instrument": text("INSTRUME"),
        "detector": text("DETECTOR"),
        "filter": text("FILTER"),
        "pupil": text("PUPIL"),
        "subarray": text("SUBARRAY"),
        "shape": list(sci.shape) if sci is not None else None,
        "extensions": [h.name for h in hdus[1:]],
    }
