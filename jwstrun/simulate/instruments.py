"""Detectors, filters and subarrays the simulator supports, with geometry from SIAF.

Numbers that are not in SIAF (PSF widths, gains, read noise, photometric
conversions) are representative values from the JWST user documentation (JDox);
they only need to be self-consistent between the simulated exposures and the
simulated reference files.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache

from ..errors import InputError

__all__ = [
    "Detector",
    "FilterInfo",
    "DETECTORS",
    "get_detector",
    "get_filter",
    "subarray_geometry",
    "aperture_geometry",
    "valid_subarrays",
    "siaf_aperture",
    "siaf_rotations",
    "clear_caches",
]


@dataclass(frozen=True)
class FilterInfo:
    """One imaging filter: FILTER/PUPIL keywords, pivot wavelength and PSF FWHM."""

    name: str
    pupil: str | None
    pivot_um: float
    fwhm_arcsec: float
    photmjsr: float  # MJy/sr per DN/s, what the simulated photom reference carries
    sky_mjysr: float  # typical zodiacal + thermal background


@dataclass(frozen=True)
class Detector:
    """A detector and what the simulator needs to know about it."""

    instrument: str  # FITS INSTRUME: NIRCAM / MIRI
    name: str  # FITS DETECTOR: NRCB1, NRCBLONG, MIRIMAGE
    exp_type: str  # NRC_IMAGE / MIR_IMAGE
    siaf_prefix: str  # SIAF aperture prefix: NRCB1, NRCB5, MIRIM
    module: str | None  # NIRCam module A/B
    channel: str | None  # NIRCam SHORT/LONG
    pixel_scale: float  # arcsec/pixel (nominal)
    gain: float  # e-/DN
    read_noise_dn: float  # effective read noise of a whole ramp, DN
    exposure_time: float  # effective exposure time of one simulated exposure, s
    filters: tuple[FilterInfo, ...]
    default_filter: str

    @property
    def full_aperture(self) -> str:
        return f"{self.siaf_prefix}_FULL"

    @property
    def filter_names(self) -> list[str]:
        return [f.name for f in self.filters]


# Representative PSF FWHM (arcsec) from JDox; PHOTMJSR of the order of the real
# calibration; background of the order of the JWST backgrounds tool at low ecliptic
# latitude.
_NIRCAM_SW = (
    FilterInfo("F070W", "CLEAR", 0.704, 0.030, 0.55, 0.10),
    FilterInfo("F090W", "CLEAR", 0.902, 0.034, 0.45, 0.12),
    FilterInfo("F115W", "CLEAR", 1.154, 0.040, 0.36, 0.13),
    FilterInfo("F150W", "CLEAR", 1.501, 0.050, 0.27, 0.14),
    FilterInfo("F200W", "CLEAR", 1.989, 0.066, 0.22, 0.15),
    FilterInfo("F182M", "CLEAR", 1.845, 0.062, 0.80, 0.14),
    FilterInfo("F210M", "CLEAR", 2.093, 0.071, 0.85, 0.15),
)
_NIRCAM_LW = (
    FilterInfo("F277W", "CLEAR", 2.762, 0.092, 0.23, 0.14),
    FilterInfo("F356W", "CLEAR", 3.568, 0.116, 0.17, 0.18),
    FilterInfo("F444W", "CLEAR", 4.408, 0.145, 0.20, 0.45),
    FilterInfo("F335M", "CLEAR", 3.362, 0.111, 0.55, 0.17),
    FilterInfo("F410M", "CLEAR", 4.082, 0.137, 0.50, 0.30),
)
_MIRI = (
    FilterInfo("F560W", None, 5.635, 0.207, 0.75, 1.5),
    FilterInfo("F770W", None, 7.639, 0.269, 0.35, 4.0),
    FilterInfo("F1000W", None, 9.953, 0.328, 0.55, 9.0),
    FilterInfo("F1130W", None, 11.309, 0.375, 1.60, 14.0),
    FilterInfo("F1500W", None, 15.064, 0.488, 0.60, 30.0),
    FilterInfo("F2100W", None, 20.795, 0.674, 0.85, 90.0),
)


def _nircam(name: str, siaf_prefix: str) -> Detector:
    long = name.endswith("LONG")
    return Detector(
        instrument="NIRCAM",
        name=name,
        exp_type="NRC_IMAGE",
        siaf_prefix=siaf_prefix,
        module=name[3],
        channel="LONG" if long else "SHORT",
        pixel_scale=0.063 if long else 0.031,
        gain=1.82 if long else 2.05,
        read_noise_dn=6.0,
        exposure_time=300.0,
        filters=_NIRCAM_LW if long else _NIRCAM_SW,
        default_filter="F444W" if long else "F200W",
    )


DETECTORS: dict[str, Detector] = {
    **{f"NRC{m}{i}": _nircam(f"NRC{m}{i}", f"NRC{m}{i}") for m in "AB" for i in range(1, 5)},
    "NRCALONG": _nircam("NRCALONG", "NRCA5"),
    "NRCBLONG": _nircam("NRCBLONG", "NRCB5"),
    "MIRIMAGE": Detector(
        instrument="MIRI",
        name="MIRIMAGE",
        exp_type="MIR_IMAGE",
        siaf_prefix="MIRIM",
        module=None,
        channel=None,
        pixel_scale=0.11,
        gain=4.0,
        read_noise_dn=8.0,
        exposure_time=300.0,
        filters=_MIRI,
        default_filter="F770W",
    ),
}

_INSTRUMENT_DEFAULT_DETECTOR = {"NIRCAM": "NRCB1", "MIRI": "MIRIMAGE"}


def _unknown(kind: str, given: str, valid: list[str]) -> InputError:
    close = difflib.get_close_matches(given, valid, n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    return InputError(f"unknown {kind} {given!r}.{hint} Valid: {', '.join(valid)}.")


def get_detector(name: str) -> Detector:
    """Detector by FITS DETECTOR name (case-insensitive); error lists the valid ones."""
    key = name.strip().upper()
    if key in DETECTORS:
        return DETECTORS[key]
    raise _unknown("detector", name, list(DETECTORS))


def default_detector(instrument: str) -> str:
    """The detector used when only an instrument is given."""
    key = instrument.strip().upper()
    if key not in _INSTRUMENT_DEFAULT_DETECTOR:
        raise _unknown("instrument", instrument, list(_INSTRUMENT_DEFAULT_DETECTOR))
    return _INSTRUMENT_DEFAULT_DETECTOR[key]


def get_filter(detector: Detector, name: str | None) -> FilterInfo:
    """Filter of a detector by name (default filter when None); error lists valid ones."""
    key = (name or detector.default_filter).strip().upper()
    for info in detector.filters:
        if info.name == key:
            return info
    raise _unknown(f"filter for {detector.name}", key, detector.filter_names)


@lru_cache(maxsize=None)
def _siaf(instrument: str):
    import logging
    import warnings

    # Importing pysiaf asks GitHub whether its PRD is the newest and logs a warning
    # when it cannot (always, offline). The shipped PRD is what we use; keep it quiet.
    pysiaf_log = logging.getLogger("pysiaf")
    level = pysiaf_log.level
    pysiaf_log.setLevel(logging.ERROR)
    try:
        import pysiaf
    finally:
        pysiaf_log.setLevel(level)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pysiaf.Siaf(instrument)


def siaf_rotations():
    """``pysiaf.utils.rotations`` (attitude matrices), pysiaf imported quietly."""
    _siaf("NIRCAM")
    from pysiaf.utils import rotations

    return rotations


def clear_caches() -> None:
    """Forget the pysiaf apertures read so far (read again on next use)."""
    _siaf.cache_clear()


def siaf_aperture(detector: Detector, subarray: str = "FULL"):
    """The pysiaf aperture of a detector and subarray (``NRCB1_SUB640``)."""
    return _siaf(detector.instrument)[f"{detector.siaf_prefix}_{subarray.upper()}"]


# Imaging subarrays offered (SIAF aperture suffixes); FULL always.
_IMAGING_SUBARRAYS = {
    "NIRCAM": ("FULL", "SUB640", "SUB320", "SUB160", "SUB400P", "SUB160P", "SUB64P"),
    "MIRI": ("FULL", "BRIGHTSKY", "SUB256", "SUB128", "SUB64"),
}


def valid_subarrays(detector: Detector) -> list[str]:
    """Subarray names of this detector that exist in SIAF."""
    names = set(_siaf(detector.instrument).apernames)
    return [
        s for s in _IMAGING_SUBARRAYS[detector.instrument] if f"{detector.siaf_prefix}_{s}" in names
    ]


def subarray_geometry(detector: Detector, subarray: str) -> tuple[int, int, int, int]:
    """SUBSTRT1, SUBSTRT2, SUBSIZE1, SUBSIZE2 (1-based, science/DMS frame) from SIAF."""
    key = subarray.strip().upper()
    valid = valid_subarrays(detector)
    if key not in valid:
        raise _unknown(f"subarray for {detector.name}", key, valid)
    return aperture_geometry(detector, key)


def aperture_geometry(detector: Detector, subarray: str) -> tuple[int, int, int, int]:
    """:func:`subarray_geometry` of any SIAF aperture of the detector, imaging or not
    (``SLITLESSPRISM`` for MIRI's LRS)."""
    aperture = siaf_aperture(detector, subarray)
    # SUBSTRT is the subarray's first pixel in the full-frame *science* (DMS) frame,
    # which is where jwst's subarray transform puts it in front of the full-frame
    # distortion.  (pysiaf's dms_corner() is the OSS/detector-frame corner, which
    # differs for detectors read out flipped, such as NRCB1.)
    full = siaf_aperture(detector, "FULL")
    xstart, ystart = full.det_to_sci(*aperture.sci_to_det(1.0, 1.0))
    return (
        int(round(float(xstart))),
        int(round(float(ystart))),
        int(aperture.XSciSize),
        int(aperture.YSciSize),
    )
