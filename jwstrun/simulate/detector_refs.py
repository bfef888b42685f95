"""Stage-1 (calwebb_detector1) reference files of the simulated detectors.

The detector's properties are deterministic full-frame arrays (seeded by the detector
name), one home for what the ramps (:mod:`jwstrun.simulate.ramps`) put in and what the
references let calwebb_detector1 take out:

- ``mask``: the hot, dead and reference pixels the ``_rate`` files flag
  (:func:`jwstrun.simulate.exposures.bad_pixel_mask`);
- ``superbias`` (NIRCam): a bias of about 12000 DN with column structure and pixel noise;
- ``saturation``: the raw DN (bias included, as the saturation step compares) at which
  a pixel is flagged, 300 DN below where its counts stop (:func:`well_dn` above bias);
- ``linearity``: ``true = m + c2 m**2 + c3 m**3`` of the bias-subtracted counts ``m``;
  the ramps hold the numerical inverse of this very polynomial;
- ``dark``: ``dark_rate * frame_time * k`` DN in frame ``k`` (NFRAMES 1, GROUPGAP 0, a
  few frames: the dark step extrapolates linearly to the science length); its frame
  time is the subarray's, so darks are per subarray, as in CRDS;
- ``gain`` (e-/DN) and ``readnoise`` (CDS read noise in DN, as ramp_fit reads it).

They are written per detector and subarray (matched on DETECTOR and SUBARRAY), cut
from the full-frame arrays, so a SUB160 program writes small files. The reftypes
calwebb_detector1 may ask for that the simulated imaging modes do not use are
'N/A' in the imap, as CRDS has them (:data:`DETECTOR1_REFTYPES`).
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from ._save import save_model
from .crds_cache import RefEntry
from .instruments import Detector, aperture_geometry

__all__ = ["STAGE1_REFTYPES", "DetectorProperties", "detector_properties",
           "write_detector1_references", "frame_time", "cut"]

#: Stage-1 reference types the simulator writes (the rest of DETECTOR1_REFTYPES is N/A).
STAGE1_REFTYPES = ("mask", "saturation", "superbias", "linearity", "dark", "gain", "readnoise")

_USEAFTER = "2014-01-01 00:00:00"
_DARK_FRAMES = 4
SATURATION_MARGIN_DN = 300.0
_REFERENCE_PIXEL = 1 << 31  # the saturation reference sits this far below the well


class DetectorProperties:
    """Full-frame ``(ny, nx)`` float arrays of one detector (read-only)."""

    def __init__(self, detector: Detector):
        from .exposures import bad_pixel_mask

        rng = np.random.default_rng(zlib.crc32(f"stage1-{detector.name}".encode()))
        shape = (1024, 1032) if detector.instrument == "MIRI" else (2048, 2048)
        ny, nx = shape
        nircam = detector.instrument == "NIRCAM"
        self.shape = shape
        self.dq = bad_pixel_mask(detector, (1, 1, nx, ny),
                                 np.random.default_rng(zlib.crc32(detector.name.encode())))
        f32 = np.float32

        def normal(scale):
            return rng.standard_normal(shape, dtype=f32) * f32(scale)

        columns = rng.normal(0.0, 150.0, nx).astype(f32)[None, :]
        self.bias = (f32(12000.0 if nircam else 10500.0) + columns) + normal(40.0)
        self.gain = f32(detector.gain) * (f32(1) + normal(0.02))
        self.readnoise = f32(13.0 if nircam else 10.0) * (f32(1) + normal(0.05))
        dark = rng.standard_exponential(shape, dtype=f32) * f32(0.003 if nircam else 0.03)
        hot = (self.dq & (1 << 11)) > 0
        dark[hot] = rng.uniform(1.0, 20.0, int(hot.sum()))
        self.dark_rate = dark  # DN/s
        self.c2 = f32(1.5e-6) * (f32(1) + normal(0.05))
        self.c3 = np.full(shape, 1.0e-11, dtype=f32)
        well = f32(50000.0 if nircam else 45000.0) * (f32(1) + normal(0.02))
        self.well = np.minimum(well, f32(65000.0) - self.bias)  # measured DN above bias
        for array in (self.bias, self.gain, self.readnoise, self.dark_rate, self.c2, self.c3,
                      self.well, self.dq):
            array.setflags(write=False)


@lru_cache(maxsize=2)
def detector_properties(detector: Detector) -> DetectorProperties:
    """The detector's :class:`DetectorProperties` (built once, deterministic)."""
    return DetectorProperties(detector)


def cut(array: np.ndarray, geometry) -> np.ndarray:
    """The subarray ``geometry`` (SUBSTRT1, SUBSTRT2, SUBSIZE1, SUBSIZE2) of a full frame."""
    xstart, ystart, xsize, ysize = geometry
    return array[..., ystart - 1: ystart - 1 + ysize, xstart - 1: xstart - 1 + xsize]


def frame_time(detector: Detector, geometry) -> float:
    """TFRAME in seconds of a full frame or subarray read.

    NIRCam: (columns per output + 12) x (rows + 1) x 10 us, four outputs for FULL, one
    for a subarray (10.737 s FULL, 0.277 s SUB160). MIRI: the fixed values of its
    modes (2.775 s FULL; scaled by the rows and columns read for a subarray).
    """
    xsize, ysize = geometry[2], geometry[3]
    if detector.instrument == "NIRCAM":
        outputs = 4 if xsize == 2048 and ysize == 2048 else 1
        return round((xsize / outputs + 12) * (ysize + 1) * 1e-5, 5)
    # MIRI: 2.77504 s for 1032 x 1024, 10 us per 4-pixel read (plus row overhead)
    return round(2.77504 * ((xsize / 4 + 10) * ysize) / ((1032 / 4 + 10) * 1024), 5)


def _name(detector: Detector, reftype: str, subarray: str) -> str:
    return (f"jwst_{detector.instrument.lower()}_{reftype}_"
            f"sim-{detector.name.lower()}-{subarray.lower()}.fits")


def _set_meta(model, detector: Detector, reftype: str, subarray: str, geometry) -> None:
    from .references import REFERENCE_USEAFTER

    meta = model.meta
    meta.reftype = reftype.upper()
    meta.author = "jwstrun.simulate"
    meta.pedigree = "SIMULATION"
    meta.useafter = REFERENCE_USEAFTER
    meta.description = f"{detector.name} {subarray} simulated {reftype}"
    meta.telescope = "JWST"
    meta.instrument.name = detector.instrument
    meta.instrument.detector = detector.name
    if detector.instrument == "NIRCAM":
        meta.instrument.module = detector.module
        meta.instrument.channel = detector.channel
    meta.exposure.type = detector.exp_type
    meta.subarray.name = subarray
    meta.subarray.xstart, meta.subarray.ystart = geometry[0], geometry[1]
    meta.subarray.xsize, meta.subarray.ysize = geometry[2], geometry[3]
    meta.subarray.fastaxis = -1 if detector.instrument == "NIRCAM" else 1
    meta.subarray.slowaxis = 2


def _models(detector: Detector, subarray: str, geometry) -> dict:
    """{reftype: model} of one detector and subarray."""
    from stdatamodels.jwst import datamodels as dm

    props = detector_properties(detector)

    def c(a):
        return np.ascontiguousarray(cut(a, geometry))

    dq = c(props.dq)
    zeros = np.zeros_like(dq)
    bias = c(props.bias)
    sat = (bias + c(props.well) - SATURATION_MARGIN_DN).astype(np.float32)
    coeffs = np.stack([np.zeros_like(bias), np.ones_like(bias), c(props.c2), c(props.c3)])
    tframe = frame_time(detector, geometry)
    frames = np.arange(1, _DARK_FRAMES + 1, dtype=np.float32)[:, None, None]
    dark = (c(props.dark_rate)[None] * tframe * frames).astype(np.float32)
    models = {
        # reference pixels are REFERENCE_PIXEL only: refpix uses those not DO_NOT_USE
        "mask": dm.MaskModel(dq=np.where(dq & _REFERENCE_PIXEL, _REFERENCE_PIXEL, dq)
                             .astype(np.uint32)),
        "saturation": dm.SaturationModel(data=sat, dq=zeros),
        "linearity": dm.LinearityModel(coeffs=coeffs.astype(np.float32), dq=zeros),
        "gain": dm.GainModel(data=c(props.gain)),
        "readnoise": dm.ReadnoiseModel(data=c(props.readnoise)),
    }
    if detector.instrument == "MIRI":
        models["dark"] = dm.DarkMIRIModel(data=dark[None], dq=zeros[None, None])
    else:
        models["dark"] = dm.DarkModel(data=dark, dq=zeros)
        models["superbias"] = dm.SuperBiasModel(data=bias, dq=zeros)
    for reftype, model in models.items():
        _set_meta(model, detector, reftype, subarray, geometry)
    dark_meta = models["dark"].meta.exposure
    dark_meta.nframes, dark_meta.groupgap, dark_meta.ngroups = 1, 0, _DARK_FRAMES
    dark_meta.nints = 1
    dark_meta.frame_time = dark_meta.group_time = tframe
    dark_meta.readpatt = "RAPID" if detector.instrument == "NIRCAM" else "FASTR1"
    return models


def write_detector1_references(crds_path, detector: Detector, subarray: str) -> list[RefEntry]:
    """Write the Stage-1 references of one detector and subarray; return their rules.

    Files that exist are kept (their content is deterministic).
    """
    inst = detector.instrument.lower()
    refdir = Path(crds_path) / "references" / "jwst" / inst
    refdir.mkdir(parents=True, exist_ok=True)
    subarray = subarray.upper()
    geometry = aperture_geometry(detector, subarray)
    reftypes = [t for t in STAGE1_REFTYPES
                if not (t == "superbias" and detector.instrument == "MIRI")]
    missing = [t for t in reftypes if not (refdir / _name(detector, t, subarray)).is_file()]
    models = _models(detector, subarray, geometry) if missing else {}
    entries = []
    for reftype in reftypes:
        name = _name(detector, reftype, subarray)
        if reftype in missing:
            save_model(models[reftype], refdir / name)
        match = (("META.INSTRUMENT.DETECTOR", detector.name), ("META.SUBARRAY.NAME", subarray))
        entries.append(RefEntry(inst, reftype, name, match, _USEAFTER))
    for model in models.values():
        model.close()
    return entries
