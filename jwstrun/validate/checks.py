"""Check that a JWST product is what it claims to be: layout, step statuses, units, data.

A step can skip itself and still let a product through (jwst issue 8049), a
killed writer leaves a FITS file without its ASDF extension, and a photom step
without a reference leaves DN/s in a ``_cal`` file.  :func:`validate_file` turns
each such problem into a :class:`Finding` (``error`` or ``warning``) and never
raises for a bad file: empty, non-FITS, gzip-compressed and truncated files get
an error finding that names the file.

The array layout (EXTNAME, dtype, dimensionality) comes from the installed
stdatamodels schemas (``image.schema``, ``cube.schema``, ``segmap.schema``,
``int_times.schema``, ``variance.schema``) and the step-name -> status-keyword
map from ``core.schema``.  Which of those extensions each product type must
have is decided here (:data:`PRODUCT_LAYOUTS`).

Speed matters because the runner validates every product it writes: files are
opened with ``astropy.io.fits`` (memmap), dtypes come from headers, the ASDF
extension is parsed as YAML with its binary blocks walked (no tag
conversion), and data checks stop at the first chunk with signal.  No datamodel
is loaded.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..products import (
    PRODUCT_TYPES,
    product_suffix,
    product_type,
    read_primary_header,
)

__all__ = [
    "ERROR",
    "WARNING",
    "VALIDATED_TYPES",
    "PRODUCT_LAYOUTS",
    "Finding",
    "FileReport",
    "validate_file",
    "validate_files",
    "product_info",
    "step_status_keys",
    "schema_layout",
]

log = logging.getLogger(__name__)

ERROR = "error"
WARNING = "warning"

VALIDATED_TYPES = (
    "rate",
    "rateints",
    "bsub",
    "bsubints",
    "cal",
    "calints",
    "crf",
    "crfints",
    "i2d",
    "segm",
    "cat",
)

# Product type -> (datamodel whose schema gives dtypes/ndim, extensions that must be
# there, extensions a current jwst writes whose absence is only suspicious).
# VAR_* are "expected" rather than required: older products and some simulated
# inputs lack them and the pipeline still runs.  The i2d row follows the modern
# layout (SCI ERR CON WHT VAR_*), not the old notes' table (SCI CON WHT HDRTAB).
PRODUCT_LAYOUTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "rate": ("ImageModel", ("SCI", "ERR", "DQ"), ("VAR_POISSON", "VAR_RNOISE")),
    "rateints": ("CubeModel", ("SCI", "ERR", "DQ", "INT_TIMES"), ("VAR_POISSON", "VAR_RNOISE")),
    "bsub": ("ImageModel", ("SCI", "ERR", "DQ"), ("VAR_POISSON", "VAR_RNOISE")),
    "bsubints": ("CubeModel", ("SCI", "ERR", "DQ", "INT_TIMES"), ("VAR_POISSON", "VAR_RNOISE")),
    "cal": ("ImageModel", ("SCI", "ERR", "DQ"), ("VAR_POISSON", "VAR_RNOISE", "VAR_FLAT")),
    "calints": (
        "CubeModel",
        ("SCI", "ERR", "DQ", "INT_TIMES"),
        ("VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"),
    ),
    "crf": ("ImageModel", ("SCI", "ERR", "DQ"), ("VAR_POISSON", "VAR_RNOISE", "VAR_FLAT")),
    "crfints": (
        "CubeModel",
        ("SCI", "ERR", "DQ", "INT_TIMES"),
        ("VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"),
    ),
    "i2d": ("ImageModel", ("SCI", "CON", "WHT"), ("ERR", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT")),
    "segm": ("SegmentationMapModel", ("SCI",), ()),
}

_IMAGE2_STEPS = ("assign_wcs", "flat_field", "photom")
_IMAGE3_STEPS = ("tweakreg", "skymatch", "outlier_detection")

# Steps that must read COMPLETE for a product of each type to be what it claims.
_REQUIRED_STEPS: dict[str, tuple[str, ...]] = {
    "rate": (),
    "rateints": (),
    "bsub": ("bkg_subtract",),
    "bsubints": ("bkg_subtract",),
    "cal": _IMAGE2_STEPS,
    "calints": _IMAGE2_STEPS,
    "crf": _IMAGE2_STEPS + _IMAGE3_STEPS,
    # calwebb_tso3 flags outliers without tweakreg/skymatch
    "crfints": _IMAGE2_STEPS + ("outlier_detection",),
    "i2d": _IMAGE2_STEPS + ("resample",),
    "segm": _IMAGE2_STEPS + ("resample",),
    "cat": (),
}

_COUNTRATE_TYPES = {"rate", "rateints", "bsub", "bsubints"}
_CALIBRATED_TYPES = {"cal", "calints", "crf", "crfints"}
_SURFACE_BRIGHTNESS_TYPES = _CALIBRATED_TYPES | {"i2d"}
_NEEDS_WCS = _SURFACE_BRIGHTNESS_TYPES | {"segm"}

# stdatamodels.dqflags.pixel["OUTLIER"]; importing stdatamodels.jwst.datamodels for
# one constant costs ~0.8 s, a test checks the two agree.
DQ_OUTLIER = 16

_CAT_REQUIRED_COLUMNS = ("label", "xcentroid", "ycentroid", "sky_centroid")
_CAT_EXPECTED_COLUMNS = (
    "isophotal_flux",
    "isophotal_flux_err",
    "aper_total_flux",
    "aper_total_flux_err",
)

_FITS_BLOCK = 2880
_CHUNK_PIXELS = 1 << 20  # data checks scan ~4 MB at a time and stop early


# --------------------------------------------------------------------------- results


@dataclass
class Finding:
    """One problem found in a product.

    ``check`` is a short stable identifier (``missing-extension``, ``step-status``...)
    for scripts; ``message`` is a sentence for people that says what to do.
    """

    severity: str
    check: str
    message: str

    def to_dict(self) -> dict:
        return {"severity": self.severity, "check": self.check, "message": self.message}


@dataclass
class FileReport:
    """Everything :func:`validate_file` found about one file."""

    path: str
    product_type: str | None = None
    findings: list[Finding] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def error(self, check: str, message: str) -> None:
        self.findings.append(Finding(ERROR, check, message))

    def warn(self, check: str, message: str) -> None:
        self.findings.append(Finding(WARNING, check, message))

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "product_type": self.product_type,
            "valid": self.ok,
            "n_errors": len(self.errors),
            "n_warnings": len(self.warnings),
            "findings": [f.to_dict() for f in self.findings],
            "summary": self.summary,
            "seconds": round(self.seconds, 4),
        }


# --------------------------------------------------------------------------- schemas


def _schema_dir() -> Path:
    """stdatamodels' JWST schema folder, found without importing stdatamodels (0.8 s)."""
    import importlib.util

    spec = importlib.util.find_spec("stdatamodels")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "stdatamodels is not installed; install jwstrun's dependencies "
            "(pip install jwstrun) to validate products."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "jwst" / "datamodels" / "schemas"


@functools.lru_cache(maxsize=None)
def _load_schema(name: str) -> dict:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    path = _schema_dir() / f"{name}.yaml"
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=loader)


def _collect_arrays(schema: dict, out: dict) -> None:
    """Top-level properties with ``fits_hdu`` (arrays and tables, not ``meta``)."""
    for part in schema.get("allOf", []):
        ref = part.get("$ref") if isinstance(part, dict) else None
        if ref:
            # core.schema holds metadata keywords only; it is 2,400 lines of YAML
            if ref != "core.schema":
                _collect_arrays(_load_schema(ref), out)
        elif isinstance(part, dict):
            _collect_arrays(part, out)
    for attribute, spec in (schema.get("properties") or {}).items():
        if attribute == "meta" or not isinstance(spec, dict) or "fits_hdu" not in spec:
            continue
        out.setdefault(
            spec["fits_hdu"],
            {
                "attribute": attribute,
                "datatype": spec.get("datatype"),
                "ndim": spec.get("ndim"),
                "max_ndim": spec.get("max_ndim"),
            },
        )


_MODEL_SCHEMAS = {
    "ImageModel": "image.schema",
    "CubeModel": "cube.schema",
    "SegmentationMapModel": "segmap.schema",
}


@functools.lru_cache(maxsize=None)
def schema_layout(model: str) -> dict[str, dict]:
    """EXTNAME -> {attribute, datatype, ndim, max_ndim} from the installed schema of ``model``."""
    layout: dict[str, dict] = {}
    _collect_arrays(_load_schema(_MODEL_SCHEMAS[model]), layout)
    return layout


@functools.lru_cache(maxsize=1)
def _cal_step_keywords() -> dict[str, str]:
    """Step name (``flat_field``) -> status keyword (``S_FLAT``) from core.schema."""
    found: dict[str, str] = {}

    def walk(node):
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict) and "cal_step" in props:
                for name, spec in props["cal_step"].get("properties", {}).items():
                    if isinstance(spec, dict) and spec.get("fits_keyword"):
                        found[name] = spec["fits_keyword"]
                return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    walk(_load_schema("core.schema"))
    return found


def step_status_keys(steps) -> set[str]:
    """Turn step names (``tweakreg``) or status keys (``S_TWKREG``) into status keys.

    Raises :class:`InputError` for a name that is neither.
    """
    mapping = _cal_step_keywords()
    known_keys = set(mapping.values())
    keys = set()
    for step in steps or ():
        text = str(step).strip()
        if text.upper() in known_keys:
            keys.add(text.upper())
        elif text.lower() in mapping:
            keys.add(mapping[text.lower()])
        else:
            raise InputError(
                f"unknown pipeline step {text!r}: give a step name such as tweakreg, "
                "skymatch, outlier_detection, bkg_subtract, or a status keyword such as S_TWKREG."
            )
    return keys


# --------------------------------------------------------------------------- FITS helpers

_INT_BITPIX = {8: "uint8", 16: "int16", 32: "int32", 64: "int64"}
_UNSIGNED = {16: "uint16", 32: "uint32", 64: "uint64"}
_TFORM = {"J": "int32", "K": "int64", "I": "int16", "E": "float32", "D": "float64", "B": "uint8"}


def _header_dtype(header) -> str:
    """numpy dtype name of an image HDU from BITPIX/BZERO, without reading data."""
    bitpix = header.get("BITPIX")
    bzero = header.get("BZERO", 0) or 0
    bscale = header.get("BSCALE", 1)
    if bscale not in (None, 1, 1.0):
        return f"scaled(BITPIX={bitpix}, BSCALE={bscale})"
    if bitpix == -32:
        return "float32"
    if bitpix == -64:
        return "float64"
    if bitpix in _UNSIGNED and bzero == 2 ** (bitpix - 1):
        return _UNSIGNED[bitpix]
    if bitpix == 8 and bzero == -128:
        return "int8"
    return _INT_BITPIX.get(bitpix, f"BITPIX={bitpix}")


def _header_shape(header) -> tuple[int, ...]:
    naxis = int(header.get("NAXIS", 0) or 0)
    return tuple(int(header.get(f"NAXIS{i}", 0) or 0) for i in range(naxis, 0, -1))


def _table_columns(header) -> dict[str, str]:
    columns = {}
    for i in range(1, int(header.get("TFIELDS", 0) or 0) + 1):
        name = str(header.get(f"TTYPE{i}", "")).strip()
        form = str(header.get(f"TFORM{i}", "")).strip()
        code = re.sub(r"^\d*", "", form)[:1]
        dtype = _TFORM.get(code, form)
        if code in ("J", "I", "K") and header.get(f"TZERO{i}") not in (None, 0):
            dtype = "u" + dtype  # unsigned stored with TZERO offset
        columns[name] = dtype
    return columns


def _norm_unit(text) -> str:
    return re.sub(r"\s+", "", str(text or "")).lower()


@dataclass
class _Hdu:
    index: int
    name: str
    kind: str
    header: object
    shape: tuple
    dtype: str
    end: int  # byte offset just past this HDU's data (padded)
    hdu: object


def _scan_hdus(hdul) -> list[_Hdu]:
    out = []
    for index, hdu in enumerate(hdul):
        header = hdu.header
        info = hdu.fileinfo() or {}
        end = int(info.get("datLoc", 0)) + int(info.get("datSpan", 0))
        kind = "table" if header.get("XTENSION", "").strip() == "BINTABLE" else "image"
        name = str(header.get("EXTNAME", "PRIMARY" if index == 0 else "")).strip().upper()
        out.append(
            _Hdu(
                index=index,
                name=name,
                kind=kind,
                header=header,
                shape=_header_shape(header),
                dtype=_header_dtype(header) if kind == "image" else "table",
                end=end,
                hdu=hdu,
            )
        )
    return out


def _raw_zero(h: _Hdu) -> float:
    """The raw stored value that means 0 for data read without BZERO scaling."""
    bzero = h.header.get("BZERO", 0) or 0
    bscale = h.header.get("BSCALE", 1) or 1
    return -bzero / bscale


def _data_has_signal(data, zero: float = 0) -> tuple[bool, bool]:
    """(has a finite non-zero value, is entirely NaN); stops at the first good chunk.

    ``zero`` is the raw value meaning 0 when integer data was read unscaled.
    """
    import numpy as np

    if data is None or data.size == 0:
        return False, False
    rows = data.reshape(-1, data.shape[-1]) if data.ndim > 1 else data.reshape(1, -1)
    step = max(1, _CHUNK_PIXELS // max(1, rows.shape[1]))
    all_nan = True
    for start in range(0, rows.shape[0], step):
        chunk = np.asarray(rows[start : start + step])
        if chunk.dtype.kind == "f":
            finite = np.isfinite(chunk)
            if np.any(finite & (chunk != 0)):
                return True, False
            if all_nan and np.any(~np.isnan(chunk)):
                all_nan = False
        else:
            all_nan = False
            if np.any(chunk != zero):
                return True, False
    return False, all_nan


def _count_flag(data, flag: int) -> int:
    """Pixels with ``flag`` set.  Works on raw uint32 data stored with BZERO = 2**31:
    that offset only flips bit 31, so the lower flag bits read the same."""
    import numpy as np

    rows = data.reshape(-1, data.shape[-1]) if data.ndim > 1 else data.reshape(1, -1)
    step = max(1, _CHUNK_PIXELS // max(1, rows.shape[1]))
    total = 0
    for start in range(0, rows.shape[0], step):
        total += int(np.count_nonzero(np.asarray(rows[start : start + step]) & flag))
    return total


# --------------------------------------------------------------------------- ASDF


def _asdf_yaml_loader():
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class _TagAgnosticLoader(base):  # type: ignore[misc, valid-type]
        """Builds plain dicts/lists for every ASDF tag: checks the tree without asdf."""

    def construct_any(loader, _suffix, node):
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)

    _TagAgnosticLoader.add_multi_constructor("", construct_any)
    _TagAgnosticLoader.add_multi_constructor("!", construct_any)
    return _TagAgnosticLoader


_ASDF_LOADER = None


def _parse_asdf_bytes(raw: bytes) -> dict:
    """Parse an embedded ASDF file's YAML tree and walk its binary blocks.

    Raises ValueError with a reason when the bytes are not a complete ASDF file.
    """
    global _ASDF_LOADER
    import yaml

    if not raw.startswith(b"#ASDF "):
        raise ValueError("does not start with '#ASDF'")
    end = raw.find(b"\n...\n")
    if end < 0:
        raise ValueError("its YAML tree has no end marker ('...'): the write was cut short")
    if _ASDF_LOADER is None:
        _ASDF_LOADER = _asdf_yaml_loader()
    try:
        tree = yaml.load(raw[: end + 5], Loader=_ASDF_LOADER)
    except yaml.YAMLError as exc:
        raise ValueError(f"its YAML tree does not parse ({str(exc).splitlines()[0]})") from None
    if not isinstance(tree, dict):
        raise ValueError("its YAML tree is not a mapping")
    pos = end + 5
    n_blocks = 0
    while pos < len(raw):
        if raw[pos : pos + 4] == b"\xd3BLK":
            if pos + 6 > len(raw):
                raise ValueError(f"binary block {n_blocks} is cut short")
            header_size = int.from_bytes(raw[pos + 4 : pos + 6], "big")
            header = raw[pos + 6 : pos + 6 + header_size]
            if len(header) < 16:
                raise ValueError(f"binary block {n_blocks} header is cut short")
            allocated = int.from_bytes(header[8:16], "big")
            pos += 6 + header_size + allocated
            if pos > len(raw):
                raise ValueError(f"binary block {n_blocks} is cut short")
            n_blocks += 1
        elif raw[pos:].startswith(b"#ASDF BLOCK INDEX"):
            break
        elif raw[pos : pos + 1] in (b"\x00", b" ", b"\n", b"\r"):
            pos += 1  # padding between tree and blocks
        else:
            raise ValueError(f"unexpected bytes after block {n_blocks}")
    tree["__blocks__"] = n_blocks
    return tree


def _read_asdf_hdu(hdu) -> bytes:
    data = hdu.data
    return bytes(data["ASDF_METADATA"][0].tobytes())


# --------------------------------------------------------------------------- validation


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
                _validate_catalog(path, report)
        else:
            _validate_fits(path, expect, skip_keys, expect_background, check_data, report)
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
) -> list[FileReport]:
    """Validate several products; ``progress(report)`` is called after each one."""
    step_status_keys(expected_skips)  # bad step names fail before any file is read
    reports = []
    for path in paths:
        report = validate_file(
            path,
            expect=expect,
            expected_skips=expected_skips,
            expect_background=expect_background,
            check_data=check_data,
        )
        reports.append(report)
        if progress is not None:
            progress(report)
    return reports


def _validate_fits(path, expect, skip_keys, expect_background, check_data, report):
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


def _check_truncation(path, size, hdus, report):
    expected = max((h.end for h in hdus), default=0)
    if expected > size:
        cut = [h.name for h in hdus if h.end > size]
        report.error(
            "truncated",
            f"{path}: truncated: {size} bytes on disk, its headers describe {expected} "
            f"(data of {', '.join(cut)} cut off). The write or copy did not finish; re-create it.",
        )


def _check_layout(ptype, primary, hdus, report):
    model, required, expected = PRODUCT_LAYOUTS[ptype]
    schema = schema_layout(model)
    datamodl = str(primary.get("DATAMODL", "") or "").strip()
    allowed_models = PRODUCT_TYPES[ptype][1]
    if not datamodl:
        report.warn("datamodel", "primary header has no DATAMODL keyword.")
    elif allowed_models and datamodl not in allowed_models:
        report.error(
            "datamodel",
            f"DATAMODL is {datamodl} but a '{ptype}' product is a "
            f"{' or '.join(allowed_models)}.",
        )

    if hdus and hdus[0].shape:
        report.error(
            "primary-data",
            f"primary HDU holds data of shape {hdus[0].shape}; JWST products keep the "
            "primary HDU empty (NAXIS = 0).",
        )

    by_name: dict[str, _Hdu] = {}
    for h in hdus[1:]:
        if h.name in by_name and h.name != "ASDF":
            report.warn("duplicate-extension", f"extension {h.name} appears more than once.")
        by_name.setdefault(h.name, h)

    for name in required:
        if name not in by_name:
            report.error("missing-extension", f"required extension {name} is missing.")
    for name in expected:
        if name not in by_name:
            report.warn(
                "missing-extension",
                f"extension {name} is missing (current jwst writes it for '{ptype}').",
            )

    sci = by_name.get("SCI")
    for name, h in by_name.items():
        spec = schema.get(name)
        if spec is None:
            continue
        datatype = spec["datatype"]
        if isinstance(datatype, list):  # a table such as INT_TIMES
            _check_table(name, h, datatype, report)
            continue
        if h.kind != "image":
            report.error("dtype", f"{name} should be an image extension, found a table.")
            continue
        if datatype and h.dtype != datatype:
            report.error(
                "dtype", f"{name} has dtype {h.dtype}, the {model} schema says {datatype}."
            )
        ndim = len(h.shape)
        if spec["ndim"] and ndim != spec["ndim"]:
            report.error(
                "ndim",
                f"{name} is {ndim}-D {h.shape}, a '{ptype}' product needs {spec['ndim']}-D "
                f"({'nints x ny x nx' if spec['ndim'] == 3 else 'ny x nx'}).",
            )
        elif spec["max_ndim"] and ndim > spec["max_ndim"]:
            report.error("ndim", f"{name} is {ndim}-D, at most {spec['max_ndim']}-D allowed.")

    if sci is not None and sci.shape:
        same_shape = ("ERR", "DQ", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT", "WHT")
        for name in same_shape:
            h = by_name.get(name)
            if h is not None and h.kind == "image" and h.shape and h.shape != sci.shape:
                report.error("shape", f"{name} shape {h.shape} differs from SCI shape {sci.shape}.")
        for name in ("AREA", "CON"):
            h = by_name.get(name)
            if h is not None and h.kind == "image" and h.shape and h.shape[-2:] != sci.shape[-2:]:
                report.error(
                    "shape",
                    f"{name} image size {h.shape[-2:]} differs from SCI image size "
                    f"{sci.shape[-2:]}.",
                )
        if ptype.endswith("ints") and len(sci.shape) == 3:
            _check_nints(primary, sci, by_name.get("INT_TIMES"), report)

    if ptype in _CALIBRATED_TYPES and "AREA" not in by_name:
        area_ref = str(primary.get("R_AREA", "") or "").strip()
        if area_ref and area_ref.upper() != "N/A":
            report.error(
                "missing-extension",
                f"AREA extension is missing although photom used the area reference {area_ref}.",
            )
        else:
            report.warn(
                "missing-extension",
                "no AREA extension: no pixel-area reference was used (R_AREA "
                f"{area_ref or 'not set'}), photom took the average area from the photom file.",
            )


def _check_table(name, h, columns_spec, report):
    if h.kind != "table":
        report.error("dtype", f"{name} should be a binary table, found an image.")
        return
    columns = _table_columns(h.header)
    for col in columns_spec:
        cname, ctype = col["name"], col.get("datatype")
        if cname not in columns:
            report.error("table-columns", f"{name} table lacks column {cname}.")
        elif ctype and columns[cname] != ctype:
            report.error(
                "table-columns", f"{name} column {cname} is {columns[cname]}, schema says {ctype}."
            )


def _check_nints(primary, sci, int_times, report):
    nplanes = sci.shape[0]
    try:
        start = int(primary.get("INTSTART") or 0)
        end = int(primary.get("INTEND") or 0)
        nints = int(primary.get("NINTS") or 0)
    except (TypeError, ValueError):
        return
    expected = end - start + 1 if start and end else nints
    if expected and nplanes != expected:
        report.warn(
            "nints",
            f"SCI has {nplanes} integrations but the header says {expected} "
            "(NINTS, or INTEND - INTSTART + 1 for a segment).",
        )
    if int_times is not None and int_times.kind == "table" and int_times.shape:
        rows = int_times.shape[0]
        if rows < nplanes:
            report.warn("nints", f"INT_TIMES has {rows} rows for {nplanes} integrations.")


def _check_asdf(ptype, primary, hdus, size, report):
    asdf_hdus = [h for h in hdus if h.name == "ASDF"]
    if not asdf_hdus:
        report.error(
            "asdf",
            "no ASDF extension: the file was not completely written (jwst writes the ASDF "
            "extension last) or was not written by stdatamodels. Re-create it.",
        )
        return
    h = asdf_hdus[-1]
    if h.end > size:
        report.error("asdf", "ASDF extension is cut off (file truncated).")
        return
    try:
        raw = _read_asdf_hdu(h.hdu)
        tree = _parse_asdf_bytes(raw)
    except ValueError as exc:
        report.error("asdf", f"ASDF extension is unreadable: {exc}.")
        return
    except Exception as exc:  # noqa: BLE001 - e.g. KeyError for a table without ASDF_METADATA
        report.error("asdf", f"ASDF extension is unreadable ({type(exc).__name__}: {exc}).")
        return

    present = {x.name: x for x in hdus}
    for attribute, node in tree.items():
        if not isinstance(node, dict):
            continue
        source = str(node.get("source", ""))
        if not source.startswith("fits:"):
            continue
        extname = source[5:].split(",")[0].strip().upper()
        target = present.get(extname)
        if target is None:
            report.error(
                "asdf",
                f"ASDF tree refers to extension {extname} ({attribute}) that the file does "
                "not have.",
            )
        elif not node.get("shape"):
            continue
        elif target.kind == "table":
            rows = target.shape[0] if target.shape else 0
            if list(node["shape"])[:1] != [rows]:
                report.error(
                    "asdf",
                    f"ASDF tree says {attribute} has {list(node['shape'])[:1]} rows, "
                    f"table {extname} has {rows}.",
                )
        elif tuple(node["shape"]) != target.shape:
            report.error(
                "asdf",
                f"ASDF tree says {attribute} has shape {tuple(node['shape'])}, "
                f"extension {extname} has {target.shape}.",
            )

    meta = tree.get("meta") if isinstance(tree.get("meta"), dict) else {}
    wcs_done = str(primary.get("S_WCS", "")).strip().upper() == "COMPLETE"
    if (ptype in _NEEDS_WCS or wcs_done) and not meta.get("wcs"):
        report.error(
            "wcs",
            "no WCS in the ASDF extension (meta.wcs): assign_wcs did not run or its result "
            "was not saved.",
        )


def _check_steps(ptype, primary, skip_keys, expect_background, report):
    mapping = _cal_step_keywords()
    steps = list(_REQUIRED_STEPS.get(ptype, ()))
    status = {k: str(v).strip().upper() for k, v in primary.items() if k.startswith("S_")}
    if ptype in ("i2d", "segm") and any(mapping[s] in status for s in _IMAGE3_STEPS):
        steps += _IMAGE3_STEPS  # a level-3 mosaic: calwebb_image3 recorded these
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
            if _count_flag(dq.hdu.data, DQ_OUTLIER) == 0:
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


# --------------------------------------------------------------------------- catalogs


def _validate_catalog(path: Path, report: FileReport) -> None:
    import numpy as np

    if path.stat().st_size == 0:
        report.error("unreadable", f"{path}: file is empty (0 bytes). Re-create it.")
        return
    with open(path, "rb") as handle:
        start = handle.read(32)
    if start[:2] == b"\x1f\x8b":
        report.error("unreadable", f"{path}: is gzip-compressed; run 'gunzip {path}' first.")
        return
    if not start.startswith(b"# %ECSV"):
        report.error(
            "unreadable",
            f"{path}: is not an ECSV table (no '# %ECSV' header line). jwst writes source "
            "catalogs as *_cat.ecsv.",
        )
        return
    table = _read_catalog(path)  # raises InputError naming the file
    columns = list(table.colnames)
    report.summary = {"n_sources": len(table), "columns": columns}
    missing = [c for c in _CAT_REQUIRED_COLUMNS if c not in columns]
    for c in missing:
        report.error("catalog-columns", f"column {c} is missing.")
    for c in _CAT_EXPECTED_COLUMNS:
        if c not in columns:
            report.warn("catalog-columns", f"column {c} is missing (current jwst writes it).")
    if len(table) == 0:
        report.warn("catalog-rows", "catalog has no sources.")
        return
    if "sky_centroid" in columns:
        sky = table["sky_centroid"]
        ra = getattr(getattr(sky, "ra", None), "deg", None)
        dec = getattr(getattr(sky, "dec", None), "deg", None)
        if ra is None or dec is None:
            report.error(
                "sky-coordinates", "sky_centroid is not a sky coordinate column (SkyCoord)."
            )
        else:
            good = np.isfinite(ra) & np.isfinite(dec)
            if not np.any(good):
                report.error("sky-coordinates", "no source has finite sky coordinates.")
            elif not np.all(good):
                report.warn(
                    "sky-coordinates",
                    f"{int(np.sum(~good))} of {len(good)} sources have no finite sky coordinates.",
                )
            else:
                report.summary["ra_range"] = [float(np.min(ra)), float(np.max(ra))]
                report.summary["dec_range"] = [float(np.min(dec)), float(np.max(dec))]
    for c in ("xcentroid", "ycentroid"):
        if c in columns and not np.any(np.isfinite(np.asarray(table[c], dtype=float))):
            report.error("catalog-values", f"{c} has no finite value.")


def _read_catalog(path: Path):
    from astropy.table import QTable

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return QTable.read(path, format="ascii.ecsv")
        except Exception as exc:  # noqa: BLE001 - astropy raises many types for junk
            raise InputError(
                f"{path}: cannot be read as an ECSV table ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}). Re-create it."
            ) from exc


# --------------------------------------------------------------------------- info

_SREGION_RE = re.compile(r"POLYGON\s+(?:ICRS\s+)?(?P<coords>[-+0-9.eE\s]+)", re.IGNORECASE)


def _parse_s_region(text) -> list[list[float]] | None:
    match = _SREGION_RE.search(str(text or ""))
    if not match:
        return None
    values = [float(v) for v in match.group("coords").split()]
    if len(values) < 6 or len(values) % 2:
        return None
    return [[values[i], values[i + 1]] for i in range(0, len(values), 2)]


def _load_wcs(path: Path):
    """The gwcs object stored in a product's ASDF extension (loads asdf: ~1 s)."""
    import io

    import asdf
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        if "ASDF" not in hdul:
            raise InputError(f"{path}: has no ASDF extension, so no WCS to evaluate.")
        raw = _read_asdf_hdu(hdul["ASDF"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # old tag versions in archival files
        # lazy_tree: only meta.wcs is converted; the arrays the tree keeps in FITS
        # extensions ("source: fits:SCI,1") are never resolved.
        with asdf.open(io.BytesIO(raw), lazy_load=False, lazy_tree=True, memmap=False) as af:
            wcs = (af.tree.get("meta") or {}).get("wcs")
    if wcs is None:
        raise InputError(
            f"{path}: has no WCS (meta.wcs) in its ASDF extension; run assign_wcs first "
            "(S_WCS must be COMPLETE)."
        )
    return wcs


def product_info(path: str | os.PathLike, pixel=None, sky=None) -> dict:
    """A short summary of one product for people and scripts.

    Parameters
    ----------
    path : path-like
        A JWST product (FITS or ``*_cat.ecsv``).
    pixel : (x, y), optional
        0-based detector/image pixel to convert to sky with the stored gwcs (forward).
    sky : (ra, dec), optional
        Sky position in degrees to convert to a 0-based pixel (inverse).

    Raises
    ------
    InputError
        For an unreadable file, or a WCS question about a product without WCS.
    """
    path = Path(path)
    if product_suffix(path) == "cat" or path.suffix.lower() == ".ecsv":
        if not path.exists():
            raise InputError(f"{path}: file not found. Check the path.")
        table = _read_catalog(path)
        info = {"path": str(path), "product_type": "cat", "n_sources": len(table)}
        info["columns"] = list(table.colnames)
        return info

    from astropy.io import fits

    primary = read_primary_header(path)

    def text(key, header=primary):
        value = header.get(key)
        return None if value is None else (value.strip() if isinstance(value, str) else value)

    info: dict = {
        "path": str(path),
        "product_type": product_type(path, primary),
        "datamodl": text("DATAMODL"),
        "instrument": text("INSTRUME"),
        "detector": text("DETECTOR"),
        "filter": text("FILTER"),
        "pupil": text("PUPIL"),
        "subarray": text("SUBARRAY"),
        "exp_type": text("EXP_TYPE"),
        "target": text("TARGPROP") or text("TARGNAME"),
        "date_obs": " ".join(str(v) for v in (text("DATE-OBS"), text("TIME-OBS")) if v) or None,
        "exposure_time": text("EFFEXPTM"),
        "nints": text("NINTS"),
        "cal_ver": text("CAL_VER"),
        "crds_context": text("CRDS_CTX"),
        "crds_version": text("CRDS_VER"),
        "step_status": {k: str(v).strip() for k, v in primary.items() if k.startswith("S_")},
        "references": {
            k: str(v).strip()
            for k, v in primary.items()
            if k.startswith("R_") and str(v).strip().upper() != "N/A"
        },
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with fits.open(path, memmap=True) as hdul:
                hdus = _scan_hdus(hdul)
                # tables report their row count (NAXIS2), not the row width in bytes
                extensions = [
                    [h.name, list(h.shape[:1]) if h.kind == "table" else list(h.shape), h.dtype]
                    for h in hdus[1:]
                ]
                sci = next((h for h in hdus if h.name == "SCI"), None)
                if sci is not None:
                    info["shape"] = list(sci.shape)
                    info["bunit"] = text("BUNIT", sci.header)
                    info["photmjsr"] = text("PHOTMJSR", sci.header)
                    info["pixar_sr"] = text("PIXAR_SR", sci.header)
                    footprint = _parse_s_region(sci.header.get("S_REGION"))
                    if footprint:
                        info["footprint"] = footprint
        except OSError as exc:
            raise InputError(f"{path}: cannot read the FITS extensions ({exc}).") from exc
    info["extensions"] = extensions
    if pixel is not None or sky is not None:
        wcs = _load_wcs(path)
        if pixel is not None:
            ra, dec = wcs(float(pixel[0]), float(pixel[1]))
            info["pixel_to_sky"] = {"pixel": [float(pixel[0]), float(pixel[1])],
                                    "sky": [float(ra), float(dec)]}
        if sky is not None:
            x, y = wcs.invert(float(sky[0]), float(sky[1]))
            info["sky_to_pixel"] = {"sky": [float(sky[0]), float(sky[1])],
                                    "pixel": [float(x), float(y)]}
    return info
