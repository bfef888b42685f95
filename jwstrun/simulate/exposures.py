"""Simulated countrate exposures (``_rate`` / ``_rateints``) as stdatamodels models.

One exposure = nominal pointing in the header, true pointing (nominal plus a
pointing error) used to place the sources through jwst's own WCS code, the
flat field multiplied in, a per-exposure sky level, Poisson and read noise that
agree with VAR_POISSON / VAR_RNOISE / ERR, bad pixels flagged DO_NOT_USE and
unflagged cosmic-ray hits for outlier_detection to find.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..products import DQ_FLAGS
from ._save import save_model
from .instruments import Detector, FilterInfo, siaf_aperture
from .layout import base36
from .scene import Scene, offset_sky, render_sources, sky_to_pixel

__all__ = ["ExposureSpec", "ExposureTruth", "write_exposure", "exposure_wcs", "bad_pixel_mask"]

# JWST DQ bits (stcal/stdatamodels dqflags); the ones jwstrun reads are in products.DQ_FLAGS
DO_NOT_USE = DQ_FLAGS["DO_NOT_USE"]
DEAD = 1 << 10
HOT = 1 << 11
REFERENCE_PIXEL = 1 << 31

MJD_START = 60400.0  # 2024-04-01


@dataclass
class ExposureSpec:
    """Everything that makes one exposure different from another."""

    detector: Detector
    filter: FilterInfo
    subarray: str
    geometry: tuple[int, int, int, int]  # SUBSTRT1, SUBSTRT2, SUBSIZE1, SUBSIZE2
    ra_ref: float  # nominal (header) pointing of the aperture reference point
    dec_ref: float
    roll_ref: float
    error_arcsec: tuple[float, float]  # true minus nominal, tangent plane (xi, eta)
    program: int
    observation: int
    visit: int
    visit_group: int
    sequence: int
    activity: int
    exposure: int
    target: str
    start_mjd: float
    sky_dn_s: float
    nints: int = 1
    rateints: bool = False
    background: bool = False
    exposure_count: int = 1  # EXPCOUNT: running count of exposures in the visit
    visit_exposures: int = 1  # NEXPOSUR: exposures in the visit
    pattern_points: int = 1  # NUMDTHPT; PATT_NUM is the exposure number
    v1: tuple[float, float, float] | None = None  # RA_V1, DEC_V1, PA_V3 (default: the reference)
    ramps: object | None = None  # ramps.RampOptions: also write the _uncal (--uncal)

    @property
    def basename(self) -> str:
        return (
            f"jw{self.program:05d}{self.observation:03d}{self.visit:03d}_"
            f"{self.visit_group:02d}{self.sequence:1d}{base36(self.activity)}_"
            f"{self.exposure:05d}_{self.detector.name.lower()}"
        )

    @property
    def filename(self) -> str:
        return f"{self.basename}_{'rateints' if self.rateints else 'rate'}.fits"


@dataclass
class ExposureTruth:
    """What was injected into one exposure."""

    filename: str
    ra_ref_true: float
    dec_ref_true: float
    error_arcsec: tuple[float, float]
    sky_dn_s: float
    source_x: np.ndarray
    source_y: np.ndarray
    cosmic_rays: list[tuple[int, int, int, float]] = field(default_factory=list)  # (int, x, y, DN/s)
    uncal: object | None = None  # ramps.UncalTruth of the _uncal, when one was written


def _set_metadata(model, spec: ExposureSpec) -> None:
    """The exposure's header: instrument and subarray, times and numbers, pointing."""
    _set_instrument(model.meta, spec)
    _set_observation(model.meta, spec)
    _set_pointing(model.meta, spec)


def _set_instrument(meta, spec: ExposureSpec) -> None:
    """Instrument, detector, optical elements, subarray and aperture name."""
    det, filt = spec.detector, spec.filter
    xstart, ystart, xsize, ysize = spec.geometry
    meta.telescope = "JWST"
    meta.instrument.name = det.instrument
    meta.instrument.detector = det.name
    meta.instrument.filter = filt.name
    if filt.pupil:
        meta.instrument.pupil = filt.pupil
    if det.module:
        meta.instrument.module = det.module
    if det.channel:
        meta.instrument.channel = det.channel
    meta.exposure.type = det.exp_type
    meta.subarray.name = spec.subarray
    meta.subarray.xstart = xstart
    meta.subarray.ystart = ystart
    meta.subarray.xsize = xsize
    meta.subarray.ysize = ysize
    meta.subarray.fastaxis = -1 if det.instrument == "NIRCAM" else 1
    meta.subarray.slowaxis = 2
    meta.aperture.name = f"{det.siaf_prefix}_{spec.subarray}"


def _set_observation(meta, spec: ExposureSpec) -> None:
    """Dates and times, the DMS program/observation/visit numbers, target, readout."""
    from astropy.time import Time

    det = spec.detector
    t_exp = det.exposure_time
    start = Time(spec.start_mjd, format="mjd", scale="utc")
    end = Time(spec.start_mjd + t_exp / 86400.0, format="mjd", scale="utc")
    mid = Time(spec.start_mjd + t_exp / 172800.0, format="mjd", scale="utc")
    meta.observation.date = start.iso[:10]
    meta.observation.time = start.iso[11:23]
    meta.observation.date_beg = start.isot
    meta.observation.date_end = end.isot
    meta.observation.program_number = f"{spec.program:05d}"
    meta.observation.observation_number = f"{spec.observation:03d}"
    meta.observation.visit_number = f"{spec.visit:03d}"
    meta.observation.visit_group = f"{spec.visit_group:02d}"
    meta.observation.sequence_id = f"{spec.sequence:1d}"
    meta.observation.activity_id = base36(spec.activity)
    meta.observation.exposure_number = str(spec.exposure)  # '1' as DMS writes it (the name has 00001)
    meta.observation.visit_id = f"{spec.program:05d}{spec.observation:03d}{spec.visit:03d}"
    meta.observation.obs_id = f"V{meta.observation.visit_id}P0000000{spec.visit_group:02d}{spec.sequence}{base36(spec.activity)}"
    meta.observation.bkgdtarg = bool(spec.background)
    meta.visit.total_exposures = spec.visit_exposures
    meta.exposure.count = spec.exposure_count
    meta.dither.position_number = spec.exposure
    meta.dither.total_points = spec.pattern_points
    meta.target.proposer_name = spec.target
    meta.target.catalog_name = spec.target
    meta.target.ra = spec.ra_ref
    meta.target.dec = spec.dec_ref
    meta.exposure.start_time = start.mjd
    meta.exposure.mid_time = mid.mjd
    meta.exposure.end_time = end.mjd
    meta.exposure.exposure_time = t_exp
    meta.exposure.effective_exposure_time = t_exp
    meta.exposure.measurement_time = t_exp
    meta.exposure.duration = t_exp
    meta.exposure.integration_time = t_exp / spec.nints
    meta.exposure.nints = spec.nints
    meta.exposure.ngroups = 10
    meta.exposure.nframes = 1
    meta.exposure.groupgap = 0
    meta.exposure.readpatt = "MEDIUM8" if det.instrument == "NIRCAM" else "FASTR1"
    meta.exposure.frame_time = t_exp / spec.nints / 10
    meta.exposure.group_time = t_exp / spec.nints / 10


def _set_pointing(meta, spec: ExposureSpec) -> None:
    """WCS keywords from the SIAF aperture and the nominal pointing; units."""
    aperture = siaf_aperture(spec.detector, spec.subarray)
    meta.wcsinfo.v2_ref = float(aperture.V2Ref)
    meta.wcsinfo.v3_ref = float(aperture.V3Ref)
    meta.wcsinfo.vparity = int(aperture.VIdlParity)
    meta.wcsinfo.v3yangle = float(aperture.V3IdlYAngle)
    meta.wcsinfo.ra_ref = spec.ra_ref
    meta.wcsinfo.dec_ref = spec.dec_ref
    meta.wcsinfo.roll_ref = spec.roll_ref
    meta.wcsinfo.siaf_xref_sci = float(aperture.XSciRef)
    meta.wcsinfo.siaf_yref_sci = float(aperture.YSciRef)
    meta.wcsinfo.wcsaxes = 2
    ra_v1, dec_v1, pa_v3 = spec.v1 or (spec.ra_ref, spec.dec_ref, spec.roll_ref)
    meta.pointing.ra_v1 = ra_v1
    meta.pointing.dec_v1 = dec_v1
    meta.pointing.pa_v3 = pa_v3
    meta.velocity_aberration.scale_factor = 1.0
    meta.photometry.conversion_megajanskys = None
    meta.bunit_data = "DN/s"
    meta.bunit_err = "DN/s"


def exposure_wcs(spec: ExposureSpec, references: dict[str, str], true_pointing: bool = True):
    """The gWCS jwst's assign_wcs builds for this exposure (true or nominal pointing)."""
    from stdatamodels.jwst.datamodels import ImageModel

    from jwst.assign_wcs.assign_wcs import load_wcs

    xsize, ysize = spec.geometry[2], spec.geometry[3]
    model = ImageModel((ysize, xsize))
    _set_metadata(model, spec)
    if true_pointing:
        ra, dec = offset_sky(spec.ra_ref, spec.dec_ref, *spec.error_arcsec)
        model.meta.wcsinfo.ra_ref = ra
        model.meta.wcsinfo.dec_ref = dec
    load_wcs(model, dict(references))
    return model.meta.wcs


def bad_pixel_mask(det: Detector, geometry, rng_static: np.random.Generator) -> np.ndarray:
    """DQ of the detector (full frame, deterministic per detector), cut to the subarray."""
    xstart, ystart, xsize, ysize = geometry
    full = (1024, 1032) if det.instrument == "MIRI" else (2048, 2048)
    dq = np.zeros(full, dtype=np.uint32)
    n_bad = int(full[0] * full[1] * 5e-4)
    ys = rng_static.integers(0, full[0], n_bad)
    xs = rng_static.integers(0, full[1], n_bad)
    dq[ys[: n_bad // 2], xs[: n_bad // 2]] = DO_NOT_USE | HOT
    dq[ys[n_bad // 2 :], xs[n_bad // 2 :]] = DO_NOT_USE | DEAD
    if det.instrument == "NIRCAM":
        dq[:4, :] = dq[-4:, :] = DO_NOT_USE | REFERENCE_PIXEL
        dq[:, :4] = dq[:, -4:] = DO_NOT_USE | REFERENCE_PIXEL
    else:
        dq[:, :4] = dq[:, -4:] = DO_NOT_USE | REFERENCE_PIXEL
    return dq[ystart - 1 : ystart - 1 + ysize, xstart - 1 : xstart - 1 + xsize]


def _cosmic_rays(rng, shape, dq, sigma, rate_scale):
    """Unflagged cosmic-ray residuals: 1-3 pixel clusters of 15-300 sigma.

    Their strength is set against each pixel's noise rather than as a charge, so
    that they are as visible on MIRI's bright thermal sky as on NIRCam's dark one:
    what the ramp-fitting jump detection would have let through.
    """
    ny, nx = shape
    n_hits = max(5, int(ny * nx * 3e-4 * rate_scale))
    hits = []
    image = np.zeros(shape, dtype=np.float64)
    for _ in range(n_hits):
        y, x = int(rng.integers(1, ny - 1)), int(rng.integers(1, nx - 1))
        strength = float(np.exp(rng.uniform(math.log(15.0), math.log(300.0))))
        npix = int(rng.integers(1, 4))
        dxdy = [(0, 0), (1, 0), (0, 1)][:npix] if rng.random() < 0.5 else [(0, 0), (0, 1), (1, 1)][:npix]
        for k, (dx, dy) in enumerate(dxdy):
            xx, yy = x + dx, y + dy
            if dq[yy, xx] & DO_NOT_USE or image[yy, xx] > 0:
                continue
            dn_s = strength * (1.0 if k == 0 else 0.6) * float(sigma[yy, xx])
            image[yy, xx] = dn_s
            hits.append((xx, yy, dn_s))
    return image, hits


def write_exposure(
    path: Path,
    spec: ExposureSpec,
    scene: Scene | None,
    references: dict[str, str],
    flat_full: np.ndarray,
    pixar_sr: float,
    rng: np.random.Generator,
) -> ExposureTruth:
    """Render and write one ``_rate``/``_rateints`` file; return what was injected."""
    det = spec.detector
    signal, src_x, src_y = _noiseless_signal(spec, scene, references, flat_full, pixar_sr)
    dq = bad_pixel_mask(det, spec.geometry, np.random.default_rng(zlib.crc32(det.name.encode())))
    nints = spec.nints if spec.rateints else 1
    t_int = det.exposure_time / nints
    sci, var_p, var_r, crs = _noisy_integrations(signal, dq, det, nints, t_int, rng)
    if spec.rateints:
        model = _cube_model(sci, var_p, var_r, dq, spec.start_mjd, t_int)
    else:
        model = _image_model(sci, var_p, var_r, dq)
    _set_metadata(model, spec)
    model.meta.filename = path.name
    model.meta.model_type = type(model).__name__
    save_model(model, path)  # never a half-written *_rate.fits; FILENAME is the final name
    uncal = None
    if spec.ramps is not None:
        from .ramps import write_ramps

        uncal = write_ramps(path, model, spec, signal, dq, spec.ramps)
    model.close()
    true_ra, true_dec = offset_sky(spec.ra_ref, spec.dec_ref, *spec.error_arcsec)
    return ExposureTruth(
        filename=path.name,
        ra_ref_true=true_ra,
        dec_ref_true=true_dec,
        error_arcsec=spec.error_arcsec,
        sky_dn_s=spec.sky_dn_s,
        source_x=src_x,
        source_y=src_y,
        cosmic_rays=crs,
        uncal=uncal,
    )


def _noiseless_signal(spec: ExposureSpec, scene: Scene | None, references: dict[str, str],
                      flat_full: np.ndarray, pixar_sr: float):
    """Sky plus sources in DN/s, placed through the true-pointing WCS, times the flat.

    Returns the image and the sources' pixel positions (empty without a scene).
    """
    filt = spec.filter
    xstart, ystart, xsize, ysize = spec.geometry
    shape = (ysize, xsize)
    signal = np.full(shape, spec.sky_dn_s, dtype=np.float64)
    src_x = src_y = np.zeros(0)
    if scene is not None and len(scene):
        wcs = exposure_wcs(spec, references, true_pointing=True)
        src_x, src_y, jac = sky_to_pixel(wcs, scene.ra, scene.dec)
        total_dn = scene.flux_jy * 1e-6 / (filt.photmjsr * pixar_sr)
        margin = 30
        on = (
            np.isfinite(src_x)
            & (src_x > -margin)
            & (src_x < xsize + margin)
            & (src_y > -margin)
            & (src_y < ysize + margin)
        )
        idx = np.flatnonzero(on)
        sub_scene = Scene(*(getattr(scene, f)[idx] for f in scene.__dataclass_fields__))
        signal += render_sources(
            shape, src_x[idx], src_y[idx], jac[idx], total_dn[idx], sub_scene, filt.fwhm_arcsec
        )
    flat = flat_full[ystart - 1 : ystart - 1 + ysize, xstart - 1 : xstart - 1 + xsize]
    flat = np.where(np.isfinite(flat) & (flat > 0), flat, 1.0)
    signal *= flat
    return signal, src_x, src_y


def _noisy_integrations(signal, dq, det: Detector, nints: int, t_int: float, rng):
    """Per integration: Poisson and read noise, cosmic rays, hot/dead/reference pixels.

    Returns SCI, VAR_POISSON, VAR_RNOISE (``(nints, ny, nx)`` float32) and the
    cosmic-ray hits as (integration, x, y, DN/s).
    """
    shape = signal.shape
    sci = np.empty((nints,) + shape, dtype=np.float32)
    var_p = np.empty_like(sci)
    var_r = np.empty_like(sci)
    crs: list[tuple[int, int, int, float]] = []
    for k in range(nints):
        vp = np.clip(signal, 0, None) / (det.gain * t_int)
        vr = np.full(shape, (det.read_noise_dn / t_int) ** 2)
        sigma = np.sqrt(vp + vr)
        noisy = signal + rng.normal(size=shape) * sigma
        cr_image, hits = _cosmic_rays(rng, shape, dq, sigma, 1.0 / nints if nints > 1 else 1.0)
        noisy += cr_image
        crs.extend((k, x, y, v) for x, y, v in hits)
        hot = (dq & HOT) > 0
        noisy[hot] = 50.0 + 10 * rng.random(int(hot.sum()))
        noisy[(dq & DEAD) > 0] = 0.0
        noisy[(dq & REFERENCE_PIXEL) > 0] = 0.0
        sci[k], var_p[k], var_r[k] = noisy, vp, vr
    return sci, var_p, var_r, crs


def _image_model(sci, var_p, var_r, dq):
    """A ``_rate`` ImageModel of the (single) integration."""
    from stdatamodels.jwst.datamodels import ImageModel

    model = ImageModel(sci.shape[1:])
    model.data = sci[0]
    model.dq = dq
    model.var_poisson = var_p[0]
    model.var_rnoise = var_r[0]
    model.err = np.sqrt(var_p[0] + var_r[0]).astype(np.float32)
    return model


def _cube_model(sci, var_p, var_r, dq, start_mjd: float, t_int: float):
    """A ``_rateints`` CubeModel, one plane per integration, with its INT_TIMES table."""
    from stdatamodels.jwst.datamodels import CubeModel

    model = CubeModel(sci.shape)
    model.data = sci
    model.dq = np.broadcast_to(dq, sci.shape).copy()
    model.var_poisson = var_p
    model.var_rnoise = var_r
    model.err = np.sqrt(var_p + var_r).astype(np.float32)
    model.int_times = _int_times(start_mjd, t_int, sci.shape[0])
    return model


def _int_times(t0: float, t_int: float, nints: int) -> np.ndarray:
    """The int_times table (UTC and BJD_TDB start, mid, end of every integration)."""
    rows = [
        (
            k + 1,
            t0 + k * t_int / 86400,
            t0 + (k + 0.5) * t_int / 86400,
            t0 + (k + 1) * t_int / 86400,
            t0 + k * t_int / 86400 + 0.0008,
            t0 + (k + 0.5) * t_int / 86400 + 0.0008,
            t0 + (k + 1) * t_int / 86400 + 0.0008,
        )
        for k in range(nints)
    ]
    names = ("integration_number", "int_start_MJD_UTC", "int_mid_MJD_UTC", "int_end_MJD_UTC",
             "int_start_BJD_TDB", "int_mid_BJD_TDB", "int_end_BJD_TDB")  # int_times schema
    return np.array(rows, dtype=[(names[0], "<i4")] + [(n, "<f8") for n in names[1:]])
