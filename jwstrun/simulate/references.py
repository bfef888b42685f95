"""Simulated JWST reference files, written with stdatamodels, for a local CRDS cache.

What is real and what is simulated:

- ``distortion``: REAL. Composed from the SIAF polynomials pysiaf ships (the
  ``<prefix>_FULL`` aperture): 0-based detector pixel -> 1-based SIAF science
  pixel relative to the reference pixel -> Sci2Idl polynomial -> parity /
  V3IdlYAngle rotation + (V2Ref, V3Ref) -> V2V3 arcsec; the inverse is refitted
  to that forward. This is how STScI builds the NIRCam distortion files; it
  reproduces ``pysiaf``'s ``sci_to_tel`` (planar approximation). The model is
  built in :mod:`jwstrun.simulate.distortion`.
- ``area``: derived from the same polynomials (Jacobian of Sci2Idl, relative to
  the nominal SIAF pixel area ``PIXAR_A2 = XSciScale * YSciScale``), also in
  :mod:`jwstrun.simulate.distortion`.
- ``abvegaoffset`` for NIRCam: REAL file shipped in ``jwstrun/simulate/data``.
- ``filteroffset``, ``flat``, ``photom``, ``apcorr``, MIRI ``abvegaoffset``:
  simulated, self-consistent with :mod:`jwstrun.simulate.instruments`
  (``FilterInfo.photmjsr``, ``fwhm_arcsec``); see each writer.

Every file is written once per detector (per filter for flats) under a
CRDS-style name ``jwst_<inst>_<reftype>_sim-<detector>[-<filter>[-<pupil>]].<ext>``
and returned as :class:`~jwstrun.simulate.crds_cache.RefEntry` selection rules.
Writing is skipped when the file exists (the content is deterministic), which
keeps re-simulation into one cache cheap. The last two full-frame flats built are
kept in memory (:func:`jwstrun.simulate.clear_caches` forgets them).
"""

from __future__ import annotations

import logging
import math
import zlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .._io import atomic_write
from ._save import save_model
from .crds_cache import RefEntry
from .distortion import pixel_area_arcsec2, pixel_area_sr, relative_area_map, siaf_distortion_model
from .instruments import Detector, FilterInfo, siaf_aperture, valid_subarrays

if TYPE_CHECKING:  # pragma: no cover
    import numpy

__all__ = [
    "REFERENCE_USEAFTER",
    "write_references",
    "flat_field_array",
    "flat_dq_array",
    "pixel_area_sr",  # from .distortion
    "pixel_area_arcsec2",  # from .distortion
    "distortion_reference_path",
    "filteroffset_reference_path",
    "reference_filename",
    "siaf_distortion_model",  # from .distortion
    "filter_offsets",
    "match_keys",
    "NIRCAM_ABVEGA_FILE",
    "clear_caches",
]

log = logging.getLogger(__name__)

#: USEAFTER written into the reference files and their rmaps (any JWST date selects them).
REFERENCE_USEAFTER = "2014-01-01T00:00:00"
_RMAP_USEAFTER = "2014-01-01 00:00:00"
_AUTHOR = "jwstrun.simulate"
_PEDIGREE = "SIMULATION"

#: The real NIRCam abvegaoffset reference shipped as package data (see data/README.md).
NIRCAM_ABVEGA_FILE = Path(__file__).parent / "data" / "nircam_abvega_offset.asdf"

#: Encircled-energy fractions of the apcorr rows (source_catalog's default aperture_ee).
_EE_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)

_NO_FLAT = 1 | 262144  # stdatamodels dqflags DO_NOT_USE | NO_FLAT_FIELD (tests check the values)


# ------------------------------------------------------------------- match keys


def match_keys(detector: Detector, reftype: str) -> tuple[str, ...]:
    """The rmap match keys (datamodel paths as CRDS names them) used for ``reftype``.

    Detector-level references are matched on exposure type and detector, flats
    on detector, filter (and pupil for NIRCam), apcorr on exposure type (one
    file per instrument, rows per filter), abvegaoffset on nothing but the date
    (as in the real CRDS rules). All rmaps then select on
    META.OBSERVATION.DATE/TIME through USEAFTER.
    """
    nircam = detector.instrument == "NIRCAM"
    keys = {
        "distortion": ("META.EXPOSURE.TYPE", "META.INSTRUMENT.DETECTOR"),
        "filteroffset": ("META.EXPOSURE.TYPE", "META.INSTRUMENT.DETECTOR"),
        "photom": ("META.EXPOSURE.TYPE", "META.INSTRUMENT.DETECTOR"),
        "area": ("META.EXPOSURE.TYPE", "META.INSTRUMENT.DETECTOR"),
        "flat": ("META.INSTRUMENT.DETECTOR", "META.INSTRUMENT.FILTER")
        + (("META.INSTRUMENT.PUPIL",) if nircam else ()),
        "apcorr": ("META.EXPOSURE.TYPE",),
        "abvegaoffset": (),
    }
    return keys[reftype]


def _match_values(detector: Detector, reftype: str, filt: FilterInfo | None = None):
    values = {
        "META.EXPOSURE.TYPE": detector.exp_type,
        "META.INSTRUMENT.DETECTOR": detector.name,
        "META.INSTRUMENT.FILTER": filt.name if filt else None,
        "META.INSTRUMENT.PUPIL": (filt.pupil if filt else None),
    }
    return tuple((key, values[key]) for key in match_keys(detector, reftype))


# -------------------------------------------------------------------- file names


def _inst(detector: Detector) -> str:
    return detector.instrument.lower()


def reference_filename(detector: Detector, reftype: str, filt: FilterInfo | None = None) -> str:
    """CRDS-style basename of a simulated reference (4 ``_``-separated fields, as CRDS parses)."""
    ext = ".asdf" if reftype in ("distortion", "filteroffset", "abvegaoffset") else ".fits"
    if reftype in ("apcorr", "abvegaoffset"):  # one per instrument
        tag = "real" if (reftype == "abvegaoffset" and detector.instrument == "NIRCAM") else "sim"
    else:
        parts = [detector.name] + ([filt.name] if filt else []) + ([filt.pupil] if filt and filt.pupil else [])
        tag = "sim-" + "-".join(parts)
    return f"jwst_{_inst(detector)}_{reftype}_{tag.lower()}{ext}"


def _ref_dir(crds_path, detector: Detector) -> Path:
    return Path(crds_path) / "references" / "jwst" / _inst(detector)


def distortion_reference_path(crds_path, detector: Detector) -> Path:
    """Path of the detector's distortion reference in the cache (for building its WCS)."""
    return _ref_dir(crds_path, detector) / reference_filename(detector, "distortion")


def filteroffset_reference_path(crds_path, detector: Detector) -> Path:
    """Path of the detector's filteroffset reference in the cache."""
    return _ref_dir(crds_path, detector) / reference_filename(detector, "filteroffset")


# ---------------------------------------------------------------------- flats


def _seed(*parts: str) -> int:
    return zlib.crc32("-".join(parts).encode())


def _full_shape(detector: Detector) -> tuple[int, int]:
    ap = siaf_aperture(detector, "FULL")
    return int(ap.YSciSize), int(ap.XSciSize)


@lru_cache(maxsize=2)
def _flat(detector_name: str, filter_name: str, shape: tuple[int, int]):
    import numpy as np

    rng = np.random.default_rng(_seed("flat", detector_name, filter_name, *map(str, shape)))
    ny, nx = shape
    y = np.linspace(-1.0, 1.0, ny, dtype=np.float32)
    x = np.linspace(-1.0, 1.0, nx, dtype=np.float32)
    # Smooth low-order structure (gradients, saddle, vignetting-like curvature),
    # scaled to stay within +-2 %.
    c = rng.uniform(-1.0, 1.0, 5).astype(np.float32)
    smooth = np.outer(c[2] * y, x)
    smooth += (c[0] * x + c[3] * (x**2 - np.float32(1 / 3)))[None, :]
    smooth += (c[1] * y + c[4] * (y**2 - np.float32(1 / 3)))[:, None]
    smooth *= np.float32(0.02) / np.abs(smooth).max()
    # Pixel-to-pixel response variations of 0.5 % rms (clipped at 3 sigma).
    flat = rng.standard_normal(shape, dtype=np.float32)
    np.clip(flat, -3.0, 3.0, out=flat)
    flat *= np.float32(0.005)
    flat += smooth
    flat += np.float32(1.0)
    # A few pixels without a flat-field value (NaN; DQ NO_FLAT_FIELD + DO_NOT_USE).
    nbad = max(4, (ny * nx) // 20000)
    bad = rng.choice(ny * nx, size=nbad, replace=False)
    dq = np.zeros(shape, dtype=np.uint32)
    flat.flat[bad] = np.nan
    dq.flat[bad] = _NO_FLAT  # DO_NOT_USE | NO_FLAT_FIELD
    flat.setflags(write=False)
    dq.setflags(write=False)
    return flat, dq


def clear_caches() -> None:
    """Forget the flats built so far (built again, identical, on next use)."""
    _flat.cache_clear()


def flat_field_array(detector: Detector, filter_info: FilterInfo, shape=None) -> numpy.ndarray:
    """The full-frame flat SCI written to the flat reference (a fresh float32 copy).

    Deterministic (seeded by detector and filter): smooth structure within +-2 %,
    0.5 % pixel-to-pixel variations, and NaN at the few pixels :func:`flat_dq_array`
    flags NO_FLAT_FIELD + DO_NOT_USE. Multiply it into simulated count rates so
    that flat_field recovers the sky. ``shape`` overrides the full-frame
    ``(ny, nx)`` (default: the SIAF full aperture).
    """
    shape = _full_shape(detector) if shape is None else tuple(int(n) for n in shape)
    return _flat(detector.name, filter_info.name, shape)[0].copy()


def flat_dq_array(detector: Detector, filter_info: FilterInfo, shape=None) -> numpy.ndarray:
    """DQ of the flat reference (uint32): DO_NOT_USE | NO_FLAT_FIELD where SCI is NaN."""
    shape = _full_shape(detector) if shape is None else tuple(int(n) for n in shape)
    return _flat(detector.name, filter_info.name, shape)[1].copy()


# -------------------------------------------------------------- model writers


def _set_common(model, detector: Detector, reftype: str, description: str) -> None:
    meta = model.meta
    meta.reftype = reftype.upper()
    meta.author = _AUTHOR
    meta.pedigree = _PEDIGREE
    meta.useafter = REFERENCE_USEAFTER
    meta.description = description
    meta.telescope = "JWST"
    meta.instrument.name = detector.instrument
    if reftype not in ("apcorr", "abvegaoffset"):
        meta.instrument.detector = detector.name
    if detector.instrument == "NIRCAM" and reftype not in ("apcorr", "abvegaoffset"):
        meta.instrument.module = detector.module
        meta.instrument.channel = detector.channel


def _write_distortion(path: Path, detector: Detector) -> None:
    from astropy import units as u
    from stdatamodels.jwst.datamodels import DistortionModel

    model = DistortionModel(model=siaf_distortion_model(detector), input_units=u.pix,
                            output_units=u.arcsec)  # fmt: skip
    _set_common(model, detector, "distortion",
                f"{detector.name} distortion from SIAF {detector.full_aperture} polynomials")  # fmt: skip
    model.meta.exposure.type = detector.exp_type
    if detector.instrument == "NIRCAM":
        model.meta.instrument.pupil = "CLEAR"
        model.meta.instrument.p_pupil = "CLEAR|F162M|F164N|F405N|F466N|F470N|"
        model.meta.exposure.p_exptype = "NRC_IMAGE|NRC_TSIMAGE|NRC_FLAT|NRC_LED|NRC_WFSC|"
    else:
        model.meta.exposure.p_exptype = "MIR_IMAGE|MIR_TACQ|MIR_LYOT|MIR_4QPM|MIR_CORONCAL|"

    save_model(model, path)


def filter_offsets(detector: Detector) -> dict[str, tuple[float, float]]:
    """{filter: (column_offset, row_offset)} in pixels, as in the filteroffset reference.

    Small deterministic offsets (|offset| < 0.25 pixel, zero for the default filter),
    of the order of the real MIRI/NIRCam filter-dependent shifts.
    """
    import numpy as np

    offsets = {}
    for filt in detector.filters:
        if filt.name == detector.default_filter:
            offsets[filt.name] = (0.0, 0.0)
            continue
        rng = np.random.default_rng(_seed("filteroffset", detector.name, filt.name))
        col, row = rng.uniform(-0.25, 0.25, 2)
        offsets[filt.name] = (round(float(col), 4), round(float(row), 4))
    return offsets


def _write_filteroffset(path: Path, detector: Detector) -> None:
    from stdatamodels.jwst.datamodels import FilteroffsetModel

    rows = []
    for filt in detector.filters:
        col, row = filter_offsets(detector)[filt.name]
        entry = {"filter": filt.name, "column_offset": col, "row_offset": row}
        if filt.pupil:
            entry["pupil"] = filt.pupil
        rows.append(entry)
    model = FilteroffsetModel()
    model.filters = rows
    model.meta.input_units = "pixel"
    _set_common(model, detector, "filteroffset", f"{detector.name} simulated filter offsets")
    model.meta.exposure.type = detector.exp_type
    save_model(model, path)


def _write_flat(path: Path, detector: Detector, filt: FilterInfo) -> None:
    from stdatamodels.jwst.datamodels import FlatModel

    data = flat_field_array(detector, filt)
    dq = flat_dq_array(detector, filt)
    ny, nx = data.shape
    # No ERR array: it reads back as zeros, so flat_field adds no VAR_FLAT and the
    # calibrated ERR stays the simulated Poisson + read noise (and the file 32 MB, not 48).
    model = FlatModel(data=data, dq=dq)
    _set_common(model, detector, "flat", f"{detector.name} {filt.name} simulated flat field")
    model.meta.instrument.filter = filt.name
    if filt.pupil:
        model.meta.instrument.pupil = filt.pupil
    model.meta.exposure.type = detector.exp_type
    # Full frame: flat_field cuts the science subarray out of it itself.
    model.meta.subarray.name = "FULL"
    model.meta.subarray.xstart = 1
    model.meta.subarray.ystart = 1
    model.meta.subarray.xsize = nx
    model.meta.subarray.ysize = ny
    save_model(model, path)


def _write_photom(path: Path, detector: Detector) -> None:
    import numpy as np
    from stdatamodels.jwst.datamodels import MirImgPhotomModel, NrcImgPhotomModel

    if detector.instrument == "NIRCAM":
        dtype = [("filter", "S12"), ("pupil", "S12"), ("photmjsr", "<f4"), ("uncertainty", "<f4")]
        rows = [(f.name, f.pupil or "CLEAR", f.photmjsr, 0.01 * f.photmjsr) for f in detector.filters]
        model = NrcImgPhotomModel(phot_table=np.array(rows, dtype=dtype))
    else:
        # MIRI imaging rows are matched on filter and subarray (GENERIC = any subarray).
        dtype = [("filter", "S12"), ("subarray", "S17"), ("photmjsr", "<f4"), ("uncertainty", "<f4")]
        rows = [(f.name, "GENERIC", f.photmjsr, 0.01 * f.photmjsr) for f in detector.filters]
        model = MirImgPhotomModel(phot_table=np.array(rows, dtype=dtype))
    _set_common(model, detector, "photom", f"{detector.name} simulated photometric calibration")
    model.meta.exposure.type = detector.exp_type
    model.meta.photometry.pixelarea_steradians = pixel_area_sr(detector)
    model.meta.photometry.pixelarea_arcsecsq = pixel_area_arcsec2(detector)
    save_model(model, path)


def _write_area(path: Path, detector: Detector) -> None:
    from stdatamodels.jwst.datamodels import PixelAreaModel

    model = PixelAreaModel(data=relative_area_map(detector))
    _set_common(model, detector, "area",
                f"{detector.name} pixel area relative to PIXAR_SR, from the SIAF distortion")  # fmt: skip
    model.meta.exposure.type = detector.exp_type
    model.meta.photometry.pixelarea_steradians = pixel_area_sr(detector)
    model.meta.photometry.pixelarea_arcsecsq = pixel_area_arcsec2(detector)
    save_model(model, path)


def _ee_radius_pixels(fwhm_pixels: float, fraction: float) -> float:
    # Encircled-energy radius of the simulator's own PSF as source_catalog sees it on
    # the resampled image (PSF integrated over the detector pixel and the drizzle kernel).
    from .scene import psf_ee_radius

    return psf_ee_radius(fwhm_pixels, fraction)


def _apcorr_rows(detectors: list[Detector]):
    """(filter, pupil-or-subarray, eefraction, radius, apcorr, skyin, skyout) rows.

    Radii (native pixels) enclose the EE fraction of the simulator's own PSF
    (:func:`jwstrun.simulate.scene.psf_ee_radius`, the filter's FWHM); the aperture
    correction is 1/EE (the sky annulus, beyond 4 FWHM, holds little PSF flux).
    """
    rows = []
    seen = set()
    for det in detectors:
        scale = math.sqrt(pixel_area_arcsec2(det))
        for filt in det.filters:
            if filt.name in seen:
                continue
            seen.add(filt.name)
            fwhm = filt.fwhm_arcsec / scale
            skyin = round(max(4.0 * fwhm, 8.0), 2)
            skyout = round(skyin + max(3.0 * fwhm, 6.0), 2)
            second = (
                [filt.pupil or "CLEAR"] if det.instrument == "NIRCAM" else valid_subarrays(det)
            )
            for name in second:
                for ee in _EE_FRACTIONS:
                    rows.append((filt.name, name, ee, _ee_radius_pixels(fwhm, ee), 1.0 / ee,
                                 skyin, skyout))  # fmt: skip
    return rows


def _write_apcorr(path: Path, detector: Detector) -> None:
    import numpy as np
    from stdatamodels.jwst.datamodels import MirImgApcorrModel, NrcImgApcorrModel

    from .instruments import DETECTORS

    # One file per instrument (apcorr is matched on EXP_TYPE only): rows for every
    # filter of every detector of the instrument (SW and LW for NIRCam).
    same = [d for d in DETECTORS.values() if d.instrument == detector.instrument]
    if detector.instrument == "NIRCAM":
        second = ("pupil", "S15")
        cls = NrcImgApcorrModel
    else:
        second = ("subarray", "S17")
        cls = MirImgApcorrModel
    dtype = [("filter", "S12"), second, ("eefraction", "<f4"), ("radius", "<f4"),
             ("apcorr", "<f4"), ("skyin", "<f4"), ("skyout", "<f4")]  # fmt: skip
    model = cls(apcorr_table=np.array(_apcorr_rows(same), dtype=dtype))
    _set_common(model, detector, "apcorr",
                f"{detector.instrument} simulated aperture corrections (Gaussian PSFs)")  # fmt: skip
    model.meta.exposure.type = detector.exp_type
    save_model(model, path)


# AB - Vega for MIRI filters: Vega's flux density falls as lambda^-2 (Rayleigh-Jeans)
# in the mid-infrared; 38.5 Jy at 10 um. Representative (about 0.05 mag of the real file).
def _miri_abvega(pivot_um: float) -> float:
    vega_jy = 38.5 * (10.0 / pivot_um) ** 2
    return 2.5 * math.log10(3631.0 / vega_jy)


def _write_abvegaoffset(path: Path, detector: Detector) -> None:
    if detector.instrument == "NIRCAM":
        # The real NIRCam reference file, byte for byte.
        import shutil

        atomic_write(path, lambda tmp: shutil.copyfile(NIRCAM_ABVEGA_FILE, tmp), fsync=False)
        return
    from astropy.table import Table
    from stdatamodels.jwst.datamodels import ABVegaOffsetModel

    table = Table(
        {
            "filter": [f.name for f in detector.filters],
            "abvega_offset": [round(_miri_abvega(f.pivot_um), 5) for f in detector.filters],
        }
    )
    model = ABVegaOffsetModel()
    model.abvega_offset = table
    _set_common(model, detector, "abvegaoffset", "MIRI AB - Vega magnitude offsets (simulated)")
    save_model(model, path)


# -------------------------------------------------------------------- public API


def write_references(crds_path, detector: Detector, filters: list[FilterInfo]) -> list[RefEntry]:
    """Write the references one detector needs into the cache and return their rules.

    distortion, filteroffset, photom (rows for every filter of the detector), area
    (per detector), flat (one full-frame file per filter in ``filters``), apcorr and
    abvegaoffset (per instrument) go into ``<crds_path>/references/jwst/<inst>/``.
    Files that already exist are kept (their content is deterministic).
    """
    import time

    start = time.perf_counter()
    refdir = _ref_dir(crds_path, detector)
    refdir.mkdir(parents=True, exist_ok=True)
    inst = _inst(detector)
    writers = {
        "distortion": _write_distortion,
        "filteroffset": _write_filteroffset,
        "photom": _write_photom,
        "area": _write_area,
        "apcorr": _write_apcorr,
        "abvegaoffset": _write_abvegaoffset,
    }
    entries = []
    for reftype, writer in writers.items():
        name = reference_filename(detector, reftype)
        if not (refdir / name).is_file():
            writer(refdir / name, detector)
        entries.append(RefEntry(inst, reftype, name, _match_values(detector, reftype), _RMAP_USEAFTER))
    for filt in dict.fromkeys(filters):  # keep order, drop repeats
        name = reference_filename(detector, "flat", filt)
        if not (refdir / name).is_file():
            _write_flat(refdir / name, detector, filt)
        entries.append(RefEntry(inst, "flat", name, _match_values(detector, "flat", filt), _RMAP_USEAFTER))
    log.debug("references for %s written in %.2f s", detector.name, time.perf_counter() - start)
    return entries
