"""JWST product types from file-name suffix and DATAMODL, and cheap header reads.

Only primary headers are read here (never pixel data), so grouping a thousand
exposures costs a thousand small reads.  astropy is imported lazily.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import InputError
from .stages import STAGES

__all__ = [
    "PRODUCT_TYPES",
    "jump_file",
    "STAGE2_INPUTS",
    "STAGE3_INPUTS",
    "ExposureInfo",
    "product_suffix",
    "product_type",
    "header_type",
    "stage_type",
    "read_primary_header",
    "read_primary_cards",
    "name_mismatch",
    "read_exposure_info",
    "is_background_target",
    "product_basename",
    "check_fits_complete",
    "DQ_FLAGS",
    "parse_s_region",
    "read_catalog",
]

#: The DQ bits jwstrun reads, as in ``stdatamodels.dqflags.pixel`` (importing
#: stdatamodels for a few constants costs ~0.8 s; a test checks they agree).
DQ_FLAGS: dict[str, int] = {
    "DO_NOT_USE": 1,
    "SATURATED": 2,
    "JUMP_DET": 4,
    "DROPOUT": 8,
    "OUTLIER": 16,
    "PERSISTENCE": 32,
}

#: Product type -> (is per-integration, expected DATAMODL values).  ``uncal``: the raw
#: ramps calwebb_detector1 takes (DMS writes Level1bModel; a RampModel works too).
PRODUCT_TYPES: dict[str, tuple[bool, tuple[str, ...]]] = {
    "uncal": (True, ("Level1bModel", "RampModel")),
    "rate": (False, ("ImageModel", "IFUImageModel")),
    "rateints": (True, ("CubeModel",)),
    "bsub": (False, ("ImageModel",)),
    "bsubints": (True, ("CubeModel",)),
    "cal": (False, ("ImageModel",)),
    "calints": (True, ("CubeModel",)),
    "crf": (False, ("ImageModel",)),
    "crfints": (True, ("CubeModel",)),
    "i2d": (False, ("ImageModel",)),
    "segm": (False, ("SegmentationMapModel",)),
    "cat": (False, ()),
}

#: The product types image2 and image3 take: their rows' ``accepts`` in jwstrun.stages.
STAGE2_INPUTS = STAGES["image2"].accepts
STAGE3_INPUTS = STAGES["image3"].accepts

_SUFFIX_RE = re.compile(r"_(?P<suffix>[a-z0-9]+)\.(?:fits|ecsv)(?:\.gz)?$", re.IGNORECASE)


def product_suffix(path: str | os.PathLike) -> str | None:
    """The JWST product suffix of a file name (``rate``, ``cal``, ``cat``...), or None."""
    match = _SUFFIX_RE.search(Path(path).name)
    if not match:
        return None
    suffix = match.group("suffix").lower()
    return suffix if suffix in PRODUCT_TYPES else None


def product_basename(path: str | os.PathLike) -> str:
    """File name without its product suffix: ``jw..._nrcb1_rate.fits`` -> ``jw..._nrcb1``."""
    name = Path(path).name
    match = _SUFFIX_RE.search(name)
    if match and match.group("suffix").lower() in PRODUCT_TYPES:
        return name[: match.start()]
    return Path(name).stem


def jump_file(path: str | os.PathLike) -> Path:
    """The ``_jump`` file beside an exposure (``..._nrcb1_rate.fits`` ->
    ``..._nrcb1_jump.fits``): the name snowblind's persistence flagging derives from the
    exposure's name (its ``jumpify``), and the name calwebb_detector1 saves it under."""
    path = Path(path)
    return path.with_name(product_basename(path.name) + "_jump.fits")


def _check_fits_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: file not found. Check the path or the glob pattern.")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a FITS file.")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: file is empty (0 bytes). Re-download or re-create it.")
    with open(path, "rb") as handle:
        start = handle.read(30)
    if start[:2] == b"\x1f\x8b":
        raise InputError(
            f"{path}: is gzip-compressed. The JWST pipeline needs uncompressed FITS: "
            f"run 'gunzip {path}' first."
        )
    if not start.startswith(b"SIMPLE  ="):
        raise InputError(
            f"{path}: is not a FITS file (no SIMPLE card at the start). "
            "Give JWST products such as *_rate.fits or *_cal.fits."
        )
    if size % 2880:
        raise InputError(
            f"{path}: is truncated ({size} bytes is not a whole number of 2880-byte FITS "
            "blocks). The file was not completely written or downloaded; re-create it."
        )


def read_primary_header(path: str | os.PathLike):
    """Read the primary header only; raise :class:`InputError` naming the file if unusable."""
    from astropy.io import fits

    path = Path(path)
    _check_fits_file(path)
    try:
        return fits.getheader(path, 0)
    except Exception as exc:  # astropy raises OSError/ValueError/TypeError for junk
        raise InputError(f"{path}: cannot read the FITS header ({exc}).") from exc


def product_type(path: str | os.PathLike, header=None) -> str | None:
    """Product type from the suffix, or from DATAMODL when the name does not say."""
    suffix = product_suffix(path)
    if suffix:
        return suffix
    if header is None:
        return None
    return header_type(header)


def header_type(header, sci_bunit=None) -> str | None:
    """Product type from the header alone, whatever the file is named.

    DATAMODL and the step statuses: flat_field or photom COMPLETE (or the SCI
    extension's ``sci_bunit`` in MJy/sr, when given) make a calibrated product,
    resample or outlier_detection COMPLETE a Level-3 one.
    """
    datamodl = str(header.get("DATAMODL", ""))
    done = _completed(header, ("S_FLAT", "S_PHOTOM", "S_RESAMP", "S_OUTLIR"))
    calibrated = bool(done & {"S_FLAT", "S_PHOTOM"}) or (
        "".join(str(sci_bunit or "").split()).lower() == "mjy/sr"
    )
    if datamodl == "CubeModel":
        return "calints" if calibrated else "rateints"
    if datamodl == "ImageModel":
        if "S_RESAMP" in done:
            return "i2d"
        if "S_OUTLIR" in done:
            return "crf"
        if calibrated:
            return "cal"
        try:
            is_3d = int(header.get("NINTS", 1) or 1) > 1
        except (TypeError, ValueError):  # a header read without astropy gives text
            is_3d = False
        return "rateints" if is_3d else "rate"
    if datamodl == "SegmentationMapModel":
        return "segm"
    if datamodl in PRODUCT_TYPES["uncal"][1]:
        return "uncal"
    return None


def _completed(header, keys) -> set[str]:
    """The step-status keywords among ``keys`` that the header marks COMPLETE."""
    return {key for key in keys if str(header.get(key, "")).strip() == "COMPLETE"}


def stage_type(path: str | os.PathLike, header, sci_bunit=None) -> str | None:
    """The product type of ``path`` as a pipeline must take it: the suffix's, unless the
    header shows another stage (a ``_cal`` renamed ``*_rate.fits`` is ``cal``: calibrating
    it again would apply flat and photom twice; a ``_rate`` renamed ``*_cal.fits`` is
    ``rate``); the header's alone when the name does not say.  ``sci_bunit``: see
    :func:`header_type`."""
    named = product_suffix(path)
    if named in STAGE2_INPUTS:
        found = header_type(header, sci_bunit)
        return found if found not in (None, *STAGE2_INPUTS) else named
    # no calwebb_image2 step ever ran on a "_cal" without these
    if named in STAGE3_INPUTS and not _completed(header, ("S_WCS", "S_FLAT", "S_PHOTOM")):
        return header_type(header, sci_bunit) or named
    return named or header_type(header, sci_bunit)


def name_mismatch(path: str | os.PathLike, header) -> str | None:
    """Why the file's name suffix and its DATAMODL disagree, as an error message naming
    the file, the suffix and the DATAMODL; None when they agree (or either is missing).

    A ``*_uncal.fits`` holding an ImageModel would otherwise be taken for what its name
    says.  ``header``: an astropy header or :func:`read_primary_cards`' dict.
    """
    named = product_suffix(path)
    datamodl = str(header.get("DATAMODL", "") or "").strip()
    expected = PRODUCT_TYPES[named][1] if named else ()
    if not expected or not datamodl or datamodl in expected:
        return None
    found = header_type(header)
    fix = (f"its header says it is {_a(found)} _{found} product: rename it to end in "
           f"_{found}.fits" if found and found != named else "rename it after what it holds")
    return (f"{path}: is named _{named}, but its DATAMODL is {datamodl} ({_a(named)} _{named} "
            f"file is {_a(expected[0])} {' or '.join(expected)}); {fix}, or re-create it.")


def _a(word: str) -> str:
    """The article before a suffix or model name said aloud (an _uncal, a _rate)."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def _str(header, key: str, default: str = "") -> str:
    value = header.get(key, default)
    if value is None:
        return default
    return str(value).strip()


@dataclass(frozen=True)
class ExposureInfo:
    """What associations, CRDS matching and grouping need from one exposure's header."""

    path: str
    product_type: str | None
    datamodl: str = ""
    instrument: str = ""
    detector: str = ""
    module: str = ""
    channel: str = ""
    filter: str = ""
    pupil: str = ""
    exp_type: str = ""
    subarray: str = ""
    program: str = ""
    observation: str = ""
    visit: str = ""
    visit_group: str = ""
    sequence_id: str = ""
    activity_id: str = ""
    exposure_number: str = ""
    obs_id: str = ""
    segment: str = ""
    target: str = ""
    target_name: str = ""
    date_obs: str = ""
    time_obs: str = ""
    nints: int = 1
    step_status: dict = field(default_factory=dict)
    #: BKGDTARG: the exposure observes a dedicated background target.
    background_target: bool = False

    @property
    def name(self) -> str:
        return Path(self.path).name

    def to_dict(self) -> dict:
        return asdict(self)


def is_background_target(header) -> bool:
    """Whether a primary header is that of a dedicated background exposure (BKGDTARG = T):
    calwebb_image2 subtracts such exposures from science exposures, it does not
    calibrate them as science."""
    return header.get("BKGDTARG", False) is True


def read_exposure_info(path: str | os.PathLike) -> ExposureInfo:
    """Read one product's primary header into an :class:`ExposureInfo`."""
    header = read_primary_header(path)
    try:
        return _exposure_info(path, header)
    except Exception as exc:  # astropy parses cards lazily: VerifyError for a NUL, a newline
        raise InputError(
            f"{path}: cannot read the FITS header ({str(exc).split(', fix it')[0]}). "
            "Fix the header or re-create the file."
        ) from exc


def _exposure_info(path, header) -> ExposureInfo:
    status = {k: _str(header, k) for k in header if k.startswith("S_")}
    try:
        nints = int(header.get("NINTS", 1) or 1)
    except (TypeError, ValueError):
        nints = 1
    return ExposureInfo(
        path=str(path),
        product_type=stage_type(path, header),
        datamodl=_str(header, "DATAMODL"),
        instrument=_str(header, "INSTRUME"),
        detector=_str(header, "DETECTOR"),
        module=_str(header, "MODULE"),
        channel=_str(header, "CHANNEL"),
        filter=_str(header, "FILTER"),
        pupil=_str(header, "PUPIL"),
        exp_type=_str(header, "EXP_TYPE"),
        subarray=_str(header, "SUBARRAY"),
        program=_str(header, "PROGRAM"),
        observation=_str(header, "OBSERVTN"),
        visit=_str(header, "VISIT"),
        visit_group=_str(header, "VISITGRP"),
        sequence_id=_str(header, "SEQ_ID"),
        activity_id=_str(header, "ACT_ID"),
        exposure_number=_str(header, "EXPOSURE"),
        obs_id=_str(header, "OBS_ID"),
        segment=_str(header, "EXSEGNUM"),
        target=_str(header, "TARGPROP"),
        target_name=_str(header, "TARGNAME"),
        date_obs=_str(header, "DATE-OBS"),
        time_obs=_str(header, "TIME-OBS"),
        nints=nints,
        step_status=status,
        background_target=is_background_target(header),
    )


_BLOCK = 2880


def _card_value(text: str) -> str:
    """A card's value: a quoted string unquoted (it may hold '/'), else the text up to a comment."""
    text = text.strip()
    if text.startswith("'"):
        match = _FITS_STRING.match(text)
        if match:
            return match.group(1).replace("''", "'").rstrip()
    return text.split("/", 1)[0].strip()


_FITS_STRING = re.compile(r"'((?:[^']|'')*)'")


def _hdu_layout(handle, size: int, max_hdus: int = 1000):
    """Walk the HDUs of an open FITS file by their headers alone.

    Yields ``(extname, header_start, data_end, cards)`` (``cards``: keyword -> raw value
    text of the header, the first of each keyword); raises ``ValueError`` for a
    header cut off before its END card.  Pure Python on purpose: a few header
    blocks per HDU, about 0.1 ms per file, where astropy takes ~4 ms.
    """
    offset = 0
    for index in range(max_hdus):
        if offset >= size:
            return
        handle.seek(offset)
        cards: dict[str, str] = {}
        start = offset
        ended = False
        while not ended:
            block = handle.read(_BLOCK)
            if len(block) < _BLOCK:
                raise ValueError(f"HDU {index} header is cut off before its END card")
            offset += _BLOCK
            if index > 0 and offset == start + _BLOCK and not block.startswith(b"XTENSION"):
                return  # trailing bytes that are not an extension: the HDUs ended
            for pos in range(0, _BLOCK, 80):
                card = block[pos : pos + 80].decode("ascii", "replace")
                key = card[:8].strip()
                if key == "END":
                    ended = True
                    break
                if card[8:10] == "= " and key not in cards:
                    cards[key] = _card_value(card[10:])
        try:
            naxis = int(cards.get("NAXIS", "0"))
            bitpix = abs(int(cards.get("BITPIX", "8")))
            pcount = int(cards.get("PCOUNT", "0"))
            gcount = int(cards.get("GCOUNT", "1"))
            dims = [int(cards.get(f"NAXIS{i}", "0")) for i in range(1, naxis + 1)]
        except ValueError as exc:
            raise ValueError(f"HDU {index} has a malformed size keyword ({exc})") from None
        if index == 0 and dims and dims[0] == 0:
            dims = dims[1:]  # random groups
        npix = 1
        for dim in dims:
            npix *= dim
        nbytes = bitpix // 8 * gcount * (pcount + (npix if naxis else 0))
        offset += -(-nbytes // _BLOCK) * _BLOCK
        name = cards.get("EXTNAME", "PRIMARY" if index == 0 else "").strip("'").strip()
        yield name.upper(), start, offset, cards


def read_primary_cards(path: str | os.PathLike) -> dict[str, str]:
    """The primary header's cards (keyword -> value text, strings unquoted), read without
    astropy (about 0.1 ms a file): enough to sort exposures by EXP_TYPE and DATAMODL.
    :class:`InputError` for a file that is not FITS or whose primary header is cut off."""
    path = Path(path)
    _check_fits_file(path)
    try:
        with open(path, "rb") as handle:
            for _name, _start, _end, cards in _hdu_layout(handle, path.stat().st_size):
                return cards
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the FITS header ({exc}).") from None
    raise InputError(f"{path}: cannot read the FITS header (no primary HDU).")


def check_fits_complete(
    path: str | os.PathLike, required: tuple[str, ...] = ("SCI", "ASDF")
) -> list[tuple[str, dict[str, str]]]:
    """Refuse a FITS file that was cut short or lacks the extensions a JWST product needs.

    ``read_primary_header`` catches a file that is not a whole number of FITS
    blocks; this catches a file cut on a block boundary (headers describe more
    bytes than the file has) and one without SCI, or without the ASDF extension
    that stdatamodels writes last.  Headers only: no data is read.  Returns each HDU's
    ``(extname, cards)`` in order, as :func:`_hdu_layout` reads them.
    """
    path = Path(path)
    _check_fits_file(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            hdus = list(_hdu_layout(handle, size))
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{path}: is truncated or damaged ({exc}). The file was not completely written "
            "or downloaded; re-create it."
        ) from None
    names = [name for name, _start, _end, _cards in hdus]
    end = max((e for _n, _s, e, _c in hdus), default=0)
    if end > size:
        cut = [name or "?" for name, _s, e, _c in hdus if e > size]
        raise InputError(
            f"{path}: is truncated: {size} bytes, but its headers describe {end} "
            f"(data of {', '.join(cut)} cut off). The file was not completely written or "
            "downloaded; re-create it."
        )
    missing = [ext for ext in required if ext not in names]
    if missing:
        raise InputError(
            f"{path}: has no {' or '.join(missing)} extension (it has {', '.join(names)}): "
            "not a complete JWST product (stdatamodels writes SCI first and ASDF last), so "
            "the file was cut short or not written by the JWST pipeline. Re-create it."
        )
    return [(name, cards) for name, _s, _e, cards in hdus]


# --------------------------------------------------------------------------- S_REGION, catalogs

_POLYGON_NUMBER = re.compile(r"(?i)[-+]?(?:nan|inf|\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?")


def parse_s_region(text: str | None) -> list[list[tuple[float, float]]]:
    """(RA, Dec) vertex lists of an S_REGION (``POLYGON ICRS ra dec ...``, maybe several
    polygons); an empty list when it holds none."""
    polygons = []
    for part in re.split(r"(?i)polygon", str(text or ""))[1:]:
        values = [float(n) for n in _POLYGON_NUMBER.findall(part)]
        if len(values) >= 6 and len(values) % 2 == 0:
            polygons.append(list(zip(values[::2], values[1::2], strict=True)))
    return polygons


def read_catalog(path: str | os.PathLike, columns: tuple[str, ...] | None = None):
    """A source catalog (``*_cat.ecsv``) as an astropy QTable; :class:`InputError`
    naming the file when it cannot be read.

    ``columns`` (plain float columns such as ``("xcentroid", "ycentroid")``) reads
    only those, through the fast C reader first: the ECSV reader's YAML header
    costs ten times the data.
    """
    import warnings

    from astropy.table import QTable, Table

    path = Path(path)
    if columns:
        try:
            table = Table.read(path, format="ascii.fast_basic", include_names=list(columns))
            if len(table.colnames) == len(columns) and all(
                    table[c].dtype.kind == "f" for c in columns):
                return QTable(table)
        except Exception:  # noqa: BLE001 - the ECSV reader below says what is wrong
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            table = QTable.read(path, format="ascii.ecsv")
        except Exception as exc:  # noqa: BLE001 - astropy raises many types for junk
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise InputError(
                f"{path}: cannot be read as an ECSV table ({type(exc).__name__}: {first}). "
                "Re-create it."
            ) from exc
    if columns:
        missing = [c for c in columns if c not in table.colnames]
        if missing:
            raise InputError(f"{path}: has no {'/'.join(missing)} column; is it a "
                             "source_catalog product?")
    return table
