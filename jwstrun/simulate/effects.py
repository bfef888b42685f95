"""Detector effects the correction steps remove (``--effect``), injected with their truth.

- ``flicker``: 1/f noise of the NIRCam readout, as it stays in a ``_rate`` file: one
  offset per row (the fast-read direction is along x) and per amplifier (4 outputs of
  512 columns on a full frame, 1 on a subarray), drawn with a 1/f power spectrum over
  the rows (half of it common to the amplifiers), RMS :data:`FLICKER_RMS` times the
  median pixel noise (ERR).  Truth: the stripes, per file (``truth_flicker.fits``, one
  HDU per file named by its exposure, shape (rows, amplifiers), DN/s).
- ``snowballs``: large round jump events as the jump step leaves them in a ``_rate``:
  a core of radius 5-15 px flagged JUMP_DET (its rate unbiased: the ramp was fitted
  around the jump) and a halo out to :data:`HALO_SCALE` core radii, not flagged, whose
  rate is biased by the part of the jump that stayed under the jump threshold (a few
  ERR at the core's edge, falling to 0 at the halo's edge).  One plus a Poisson number
  (:data:`SNOWBALL_RATE` per pixel and exposure) per file; on a small subarray the
  largest halo spans at most a quarter of its side.  Truth: the events
  (``truth_snowballs.ecsv``) and a mask per file, 1 core and 2 halo
  (``truth_snowballs.fits``).
- ``persistence``: afterimages of saturated stars in the later exposures of the same
  detector.  Bright stars (peak 5-50x saturation, :data:`SATURATION_DN` in one
  exposure) are added to the scene, on every detector; pixels saturated before the
  second group are DO_NOT_USE | SATURATED with no rate (NaN), as ramp fitting leaves
  them.  Every exposure gets a ``_jump.fits`` next to it (a RampModel of two groups, the
  first and the last, whose GROUPDQ carries SATURATED, what snowblind's
  PersistenceFlagStep reads); a pixel filled to ``f`` times saturation leaves
  ``AFTERIMAGE_DN_S * (1 + ln f)`` DN/s (less, down to 0 at 95 % of saturation, below
  it), decaying as exp(-t / :data:`AFTERIMAGE_TAU_S`) from the end of the exposure.
  Truth: the pixels whose afterimage is over a quarter of their noise
  (``truth_persistence.fits``, one mask per file) and one row per (exposure, earlier
  exposure) pair (``truth_persistence.ecsv``).

The effects draw from a generator of their own (seed, 17): the program is otherwise the
same as without them, and a program without effects is written as it always was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..products import DQ_FLAGS

__all__ = [
    "EFFECTS", "FLICKER_FILE", "SNOWBALL_FILE", "SNOWBALL_TABLE", "PERSISTENCE_FILE",
    "PERSISTENCE_TABLE", "check_effects", "add_bright_stars", "apply_effects", "jump_name",
]

#: what ``--effect`` takes
EFFECTS = ("flicker", "snowballs", "persistence")

FLICKER_FILE = "truth_flicker.fits"
SNOWBALL_FILE = "truth_snowballs.fits"
SNOWBALL_TABLE = "truth_snowballs.ecsv"
PERSISTENCE_FILE = "truth_persistence.fits"
PERSISTENCE_TABLE = "truth_persistence.ecsv"

FLICKER_RMS = 0.6  # row-offset RMS in units of the median pixel noise
AMPLIFIER_WIDTH = 512  # columns per output of a full-frame NIR detector
SNOWBALL_RATE = 2e-6  # events per pixel per exposure beyond the first one per file
SNOWBALL_RADII = (5.0, 15.0)  # core radius, px
HALO_SCALE = 2.8  # halo radius / core radius (snowblind grows a core by 2 radii)
SATURATION_DN = 50000.0  # counts above bias that fill a pixel
BRIGHT_STAR_FILL = (5.0, 50.0)  # peak fill of the bright stars, in saturations
BRIGHT_STARS_PER_DETECTOR = 2
AFTERIMAGE_DN_S = 0.2
AFTERIMAGE_TAU_S = 600.0
AFTERIMAGE_TRUTH = 0.25  # an afterimage pixel: over this fraction of the pixel's ERR
JUMP_GROUPS = 2

DO_NOT_USE = DQ_FLAGS["DO_NOT_USE"]
SATURATED = DQ_FLAGS["SATURATED"]
JUMP_DET = DQ_FLAGS["JUMP_DET"]


def check_effects(effects, options: dict, rateints: bool, sets=()) -> list[str]:
    """The effects asked for, each once, recorded in ``options`` (only when there are);
    ``sets``: the program's exposure sets (``flicker`` needs a NIRCam detector)."""
    chosen = []
    for item in effects or ():
        chosen += [e.strip().lower() for e in str(item).split(",") if e.strip()]
    chosen = list(dict.fromkeys(chosen))
    unknown = [e for e in chosen if e not in EFFECTS]
    if unknown:
        raise InputError(f"unknown effect {unknown[0]!r}; choose from {', '.join(EFFECTS)}.")
    if chosen and rateints:
        raise InputError("--effect injects into _rate products; leave out --rateints.")
    instruments = {det.instrument for es in sets for det, _ in es.members}
    if "flicker" in chosen and sets and "NIRCAM" not in instruments:
        raise InputError("--effect flicker is NIRCam's 1/f noise and the program has no "
                         "NIRCam detector; leave it out.")
    if chosen:
        options["effects"] = chosen
    return chosen


def jump_name(rate_name: str) -> str:
    """``jw..._nrcb1_jump.fits`` of ``jw..._nrcb1_rate.fits`` (snowblind's ``jumpify``)."""
    from ..products import jump_file

    return jump_file(rate_name).name


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, 17])


# -- bright stars (persistence) ---------------------------------------------------------

def add_bright_stars(scene, seed: int, fields, to_flux_jy):
    """``scene`` with :data:`BRIGHT_STARS_PER_DETECTOR` saturating stars per detector.

    ``fields`` is one (RA, Dec, half-width arcsec, FWHM px) per detector at the first
    dither; ``to_flux_jy(total_dn, field_index)`` converts the counts of one exposure.
    """
    from .scene import Scene, offset_sky

    rng = np.random.default_rng([seed, 18])
    rows = []
    for index, (ra, dec, half_width, fwhm_pix) in enumerate(fields):
        peak_fraction = 4 * math.log(2) / (math.pi * max(fwhm_pix, 1.0) ** 2)
        for _ in range(BRIGHT_STARS_PER_DETECTOR):
            dxi, deta = rng.uniform(-0.6, 0.6, 2) * half_width
            star_ra, star_dec = offset_sky(ra, dec, float(dxi), float(deta))
            fill = math.exp(rng.uniform(*np.log(BRIGHT_STAR_FILL)))
            total_dn = fill * SATURATION_DN / peak_fraction
            rows.append((star_ra, star_dec, to_flux_jy(total_dn, index)))
    if not rows:
        return scene
    ra, dec, flux = (np.array(c, dtype=float) for c in zip(*rows))
    n = len(rows)
    extra = dict(ra=ra, dec=dec, flux_jy=flux, kind=np.array(["point"] * n),
                 r_eff_arcsec=np.zeros(n), axis_ratio=np.ones(n), pa_deg=np.zeros(n))
    return Scene(**{name: np.concatenate([getattr(scene, name), extra[name]])
                    for name in Scene.__dataclass_fields__})


# -- the pass over the written files ----------------------------------------------------

@dataclass
class _Truth:
    flicker: dict = field(default_factory=dict)  # file -> (rows, amps) stripes
    snowball_masks: dict = field(default_factory=dict)
    snowball_rows: list = field(default_factory=list)
    persistence_masks: dict = field(default_factory=dict)
    persistence_rows: list = field(default_factory=list)


@dataclass
class _Exposure:
    path: Path
    detector: str
    instrument: str
    start: float  # MJD
    end: float
    fill: np.ndarray | None = None  # counts / saturation, for the later exposures


def apply_effects(outdir: Path, files, effects, seed: int) -> list[Path]:
    """Inject ``effects`` into the written ``_rate`` ``files`` (per detector, in start-time
    order) and write their truth; returns the truth files and ``_jump`` files written."""
    from stdatamodels.jwst import datamodels

    from ._save import save_model

    rng = _rng(seed)
    truth = _Truth()
    written: list[Path] = []
    for exposures in _by_detector(files):
        earlier: list[_Exposure] = []
        for exposure in exposures:
            with datamodels.open(exposure.path) as model:
                model.data = model.data.astype(np.float32)
                name = exposure.path.name
                if "persistence" in effects:
                    written.append(_persistence(model, exposure, earlier, truth))
                    earlier.append(exposure)
                if "snowballs" in effects:
                    _snowballs(model, name, rng, truth)
                if "flicker" in effects and exposure.instrument == "NIRCAM":
                    _flicker(model, name, rng, truth)
                save_model(model, exposure.path)
    return _write_truth(outdir, truth, effects, seed) + written


def _by_detector(files) -> list[list[_Exposure]]:
    from astropy.io import fits

    groups: dict[str, list[_Exposure]] = {}
    for path in files:
        header = fits.getheader(path)
        exposure = _Exposure(Path(path), header["DETECTOR"], header["INSTRUME"],
                             float(header["EXPSTART"]), float(header["EXPEND"]))
        groups.setdefault(exposure.detector, []).append(exposure)
    return [sorted(group, key=lambda e: e.start) for group in groups.values()]


def _key(name: str) -> str:
    """The truth HDU / row name of a file: its exposure (``jw..._nrcb1``)."""
    return name.rsplit("_", 1)[0]


def _noise(model) -> float:
    err = np.asarray(model.err, dtype=float)
    good = np.isfinite(err) & (err > 0) & ((model.dq & DO_NOT_USE) == 0)
    return float(np.median(err[good])) if good.any() else 1.0


def _flicker(model, name: str, rng, truth: _Truth) -> None:
    """Row offsets per amplifier with a 1/f spectrum over the rows."""
    ny, nx = model.data.shape
    n_amps = nx // AMPLIFIER_WIDTH if nx == 4 * AMPLIFIER_WIDTH else 1
    rms = FLICKER_RMS * _noise(model)
    common = _one_over_f(rng, ny)
    stripes = np.empty((ny, n_amps), dtype=np.float32)
    for amp in range(n_amps):
        own = _one_over_f(rng, ny) if n_amps > 1 else common
        stripes[:, amp] = rms * (common + own) / np.std(common + own)
    width = nx // n_amps
    model.data += np.repeat(stripes, width, axis=1)[:, :nx]
    truth.flicker[_key(name)] = stripes


def _one_over_f(rng, n: int) -> np.ndarray:
    """A zero-mean series of ``n`` samples whose power falls as 1/frequency."""
    freq = np.fft.rfftfreq(n)
    amplitude = np.zeros_like(freq)
    amplitude[1:] = freq[1:] ** -0.5
    spectrum = amplitude * (rng.normal(size=freq.size) + 1j * rng.normal(size=freq.size))
    series = np.fft.irfft(spectrum, n)
    return series - series.mean()


def _snowballs(model, name: str, rng, truth: _Truth) -> None:
    """Cores (JUMP_DET, rate kept) and halos (not flagged, rate biased)."""
    ny, nx = model.data.shape
    noise = _noise(model)
    mask = np.zeros((ny, nx), dtype=np.uint8)
    lo, hi = SNOWBALL_RADII
    hi = min(hi, max(lo, min(nx, ny) / (8 * HALO_SCALE)))  # a quarter of a small subarray
    yy, xx = np.mgrid[0:ny, 0:nx]
    for _ in range(1 + rng.poisson(SNOWBALL_RATE * nx * ny)):
        r_core = float(1.0 / rng.uniform(1.0 / hi, 1.0 / lo))  # more small than large ones
        r_halo = HALO_SCALE * r_core
        edge = min(r_halo + 4, min(nx, ny) / 2 - 1)
        x0, y0 = (float(rng.uniform(edge, n - 1 - edge)) for n in (nx, ny))
        bias = float(rng.uniform(3.0, 8.0)) * noise
        r = np.hypot(xx - x0, yy - y0)
        core = r <= r_core
        halo = (r > r_core) & (r <= r_halo)
        profile = ((r_halo - r[halo]) / (r_halo - r_core)) ** 1.5
        model.data[halo] += (bias * profile).astype(np.float32)
        model.dq[core] |= JUMP_DET
        mask[halo & (mask == 0)] = 2
        mask[core] = 1
        truth.snowball_rows.append((name, x0, y0, r_core, r_halo, bias))
    truth.snowball_masks[_key(name)] = mask


def _persistence(model, exposure: _Exposure, earlier: list[_Exposure], truth: _Truth) -> Path:
    """Afterimages of the earlier exposures' saturated pixels; this exposure's saturation
    (NaN and DO_NOT_USE | SATURATED where it comes before the second group) and its
    ``_jump`` file."""
    t_exp = float(model.meta.exposure.exposure_time)
    ngroups = int(model.meta.exposure.ngroups or 10)
    data = np.nan_to_num(np.asarray(model.data, dtype=float))
    fill = np.clip(data, 0, None) * t_exp / SATURATION_DN
    afterimage = np.zeros_like(data)
    mid = (exposure.start + exposure.end) / 2
    for other in earlier:
        delay = (mid - other.end) * 86400.0
        if delay > 20 * AFTERIMAGE_TAU_S:
            continue  # under 1e-8 of its start
        amplitude = _afterimage(other.fill) * math.exp(-delay / AFTERIMAGE_TAU_S)
        afterimage += amplitude
        truth.persistence_rows.append((exposure.path.name, other.path.name, round(delay, 1),
                                       int((amplitude > 0).sum()), float(amplitude.max())))
    model.data += afterimage.astype(np.float32)
    err = np.asarray(model.err, dtype=float)
    truth.persistence_masks[_key(exposure.path.name)] = (
        (afterimage > AFTERIMAGE_TRUTH * np.where(err > 0, err, np.inf))).astype(np.uint8)
    hard = fill * 2 / ngroups >= 1  # saturated by the second group: no rate
    model.data[hard] = np.nan
    model.dq[hard] |= DO_NOT_USE | SATURATED
    exposure.fill = fill.astype(np.float32)
    return _write_jump(model, exposure.path, fill, ngroups)


def _afterimage(fill: np.ndarray) -> np.ndarray:
    """DN/s left in a pixel that was filled to ``fill`` saturations."""
    out = np.zeros_like(fill)
    sat = fill >= 1
    out[sat] = AFTERIMAGE_DN_S * (1 + np.log(fill[sat]))
    near = (fill >= 0.95) & ~sat
    out[near] = AFTERIMAGE_DN_S * ((fill[near] - 0.95) / 0.05) ** 2
    return out


def _write_jump(model, rate_path: Path, fill: np.ndarray, ngroups: int) -> Path:
    """The exposure's ``_jump``: a RampModel of its first and last groups whose GROUPDQ
    has SATURATED where the pixel was full (what PersistenceFlagStep reads)."""
    from stdatamodels.jwst.datamodels import RampModel

    from ._save import save_model

    fractions = np.array([1.0 / ngroups, 1.0])[:, None, None]
    counts = fill[None] * SATURATION_DN * fractions
    ramp = RampModel(data=np.minimum(counts, SATURATION_DN)[None].astype(np.float32))
    ramp.update(model)
    ramp.groupdq = np.where(counts >= SATURATION_DN, SATURATED, 0)[None].astype(np.uint8)
    ramp.pixeldq = np.asarray(model.dq, dtype=np.uint32)
    ramp.meta.exposure.ngroups = JUMP_GROUPS
    ramp.meta.bunit_data = "DN"
    path = rate_path.with_name(jump_name(rate_path.name))
    ramp.meta.filename = path.name
    ramp.meta.model_type = "RampModel"
    save_model(ramp, path)
    ramp.close()
    return path


# -- truth files --------------------------------------------------------------------------

def _write_truth(outdir: Path, truth: _Truth, effects, seed: int) -> list[Path]:
    from astropy.table import Table

    paths = []
    if "flicker" in effects:
        paths.append(_write_hdus(outdir / FLICKER_FILE, truth.flicker, "BUNIT", "DN/s"))
    if "snowballs" in effects:
        paths.append(_write_hdus(outdir / SNOWBALL_FILE, truth.snowball_masks, "MASK",
                                 "1 core (JUMP_DET), 2 halo (biased rate, not flagged)"))
        table = Table(rows=truth.snowball_rows or None,
                      names=("file", "x", "y", "r_core", "r_halo", "halo_bias_dn_s"),
                      dtype=("U64", float, float, float, float, float))
        table.meta = {"description": "snowballs injected by jwstrun simulate --effect "
                      "snowballs (0-based pixel coordinates of the file)", "seed": seed}
        table.write(outdir / SNOWBALL_TABLE, format="ascii.ecsv", overwrite=True)
        paths.append(outdir / SNOWBALL_TABLE)
    if "persistence" in effects:
        paths.append(_write_hdus(outdir / PERSISTENCE_FILE, truth.persistence_masks, "MASK",
                                 f"afterimage over {AFTERIMAGE_TRUTH} ERR"))
        table = Table(rows=truth.persistence_rows or None,
                      names=("file", "saturated_in", "delay_s", "n_pixels", "peak_dn_s"),
                      dtype=("U64", "U64", float, int, float))
        table.meta = {"description": "afterimages of earlier exposures' saturated pixels",
                      "seed": seed}
        table.write(outdir / PERSISTENCE_TABLE, format="ascii.ecsv", overwrite=True)
        paths.append(outdir / PERSISTENCE_TABLE)
    return paths


def _write_hdus(path: Path, arrays: dict, key: str, value: str) -> Path:
    """One image HDU per file, EXTNAME its exposure (``jw..._nrcb1``)."""
    from astropy.io import fits

    from .._io import atomic_write

    hdus = [fits.PrimaryHDU()]
    hdus[0].header[key] = value
    for name, array in arrays.items():
        hdus.append(fits.ImageHDU(array, name=name.upper()))
    atomic_write(path, lambda tmp: fits.HDUList(hdus).writeto(tmp, overwrite=True))
    return path


def prepare_scene(scene, effects, seed: int, sets, layouts, geometries, ra, dec, roll,
                  fill_time: float | None = None):
    """The scene with the bright stars ``persistence`` (or ``bright``: ``--uncal``) needs
    (else ``scene`` as is): two near the centre of each detector's field at the first
    dither (``layouts`` by observation, ``geometries`` by detector, as
    :func:`simulate_program` has them), filling the wells in ``fill_time`` seconds
    (default: an exposure)."""
    if "persistence" not in effects and "bright" not in effects:  # bright: --uncal's
        return scene
    from .distortion import pixel_area_sr
    from .layout import detector_pointings

    fields, members = [], []
    seen = set()
    for exposure_set in sets:
        layout = layouts[exposure_set.observation]
        pointings = detector_pointings(layout.reference, ra, dec, roll, layout.apertures)
        for (det, filt), pointing in zip(exposure_set.members, pointings):
            if det.name in seen:
                continue
            seen.add(det.name)
            half = min(geometries[det.name][2:]) / 2 * det.pixel_scale
            fwhm_pix = filt.fwhm_arcsec / det.pixel_scale
            fields.append((pointing.ra_ref, pointing.dec_ref, half, fwhm_pix))
            members.append((det, filt, pixel_area_sr(det)))

    def to_flux_jy(total_dn, index):
        det, filt, pixar = members[index]
        return total_dn / (fill_time or det.exposure_time) * filt.photmjsr * pixar * 1e6

    return add_bright_stars(scene, seed, fields, to_flux_jy)
