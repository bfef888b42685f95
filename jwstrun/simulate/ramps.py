"""Raw ramps (``_uncal``) of the simulated exposures, with what calwebb_detector1 removes.

Every science and background exposure gets ``<name>_uncal.fits`` (``--uncal``): a
Level1bModel with the exposure's header and uint16 SCI ``(nints, ngroups, ny, nx)``
read out as the detector does it (:mod:`jwstrun.simulate.detector_refs` holds the
detector's properties and writes the matching references):

- the count rate is the exposure's noiseless scene (sky + sources times the flat, in
  DN/s, the signal its ``_rate`` has) plus the dark current; charge accumulates with
  Poisson noise (electrons through the gain) from group to group;
- cosmic rays (a few hundred to 30000 e-, some with charge in neighbours) and at
  least one snowball per integration (a round core of 0.3-0.6 of the well with a halo)
  add charge from one group on;
- counts go through the inverse of the linearity reference's polynomial and stop at
  the pixel's well (saturation; the scene's bright stars fill it);
- bias (the superbias), per-amplifier offsets (per integration; plus a drift per group
  where the subarray has reference rows for refpix to measure it), even/odd column
  offsets and read noise (the readnoise reference, per group of NFRAMES frames).

The readout is the real one of the subarray (TFRAME from its size, the instrument's
READPATT with its NFRAMES/GROUPGAP); with no NGROUPS/NINTS given, the pattern, groups and
integrations come as close to the ``_rate``'s exposure time as 4-10 groups (NIRCam) or
at most 100 (MIRI FASTR1) and at most 50 integrations allow, so the S/N is the
``_rate``'s.  Truth (:func:`write_uncal_truth`): the noiseless slope image of every
exposure (``truth_uncal/<name>_slope.fits``), every jump (``truth_uncal_jumps.ecsv``:
file, integration, x, y, group, DN, kind, the group difference's noise) and every
pixel that reaches its well (``truth_uncal_saturated.ecsv``: first saturated group).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._save import save_model
from .detector_refs import cut, detector_properties, frame_time

__all__ = ["RampOptions", "Readout", "READOUT_PATTERNS", "choose_readout", "write_ramps",
           "UncalTruth", "write_uncal_truth", "JUMP_TABLE", "SATURATION_TABLE", "SLOPE_DIR",
           "uncal_name"]

#: READPATT: (NFRAMES, GROUPGAP), as the instruments define them
READOUT_PATTERNS = {
    "NIRCAM": {"RAPID": (1, 0), "BRIGHT1": (1, 1), "BRIGHT2": (2, 0), "SHALLOW2": (2, 3),
               "SHALLOW4": (4, 1), "MEDIUM2": (2, 8), "MEDIUM8": (8, 2), "DEEP2": (2, 18),
               "DEEP8": (8, 12)},
    "MIRI": {"FASTR1": (1, 0)},
}
JUMP_TABLE = "truth_uncal_jumps.ecsv"
SATURATION_TABLE = "truth_uncal_saturated.ecsv"
SLOPE_DIR = "truth_uncal"

CR_RATE = 1.5e-5  # hits per pixel per second: JWST's ~5 per cm2 per s on 18 um pixels
CR_MIN_HITS = 50  # per integration, so that jump detection is tested on small subarrays
CR_ELECTRONS = (300.0, 30000.0)
SNOWBALL_RADII = (2.0, 4.0)
_REFERENCE_PIXEL = 1 << 31
_DEAD = 1 << 10


@dataclass(frozen=True)
class RampOptions:
    """What ``--uncal`` was asked for (None: chosen by :func:`choose_readout`)."""

    ngroups: int | None = None
    nints: int | None = None
    readpatt: str | None = None
    seed: int = 1


@dataclass(frozen=True)
class Readout:
    readpatt: str
    nframes: int
    groupgap: int
    ngroups: int
    nints: int
    frame_time: float

    @property
    def group_time(self) -> float:
        return (self.nframes + self.groupgap) * self.frame_time

    @property
    def integration_time(self) -> float:
        return self.ngroups * self.group_time - self.groupgap * self.frame_time

    def group_times(self) -> np.ndarray:
        """Mid-time of each group's frames from the reset (s)."""
        g = np.arange(self.ngroups)
        return self.frame_time * (g * (self.nframes + self.groupgap) + (self.nframes + 1) / 2)


def choose_readout(detector, geometry, options: RampOptions, exposure_time: float) -> Readout:
    """The readout of one exposure (see the module docstring)."""
    from ..errors import InputError

    tframe = frame_time(detector, geometry)
    patterns = READOUT_PATTERNS[detector.instrument]
    if options.readpatt:
        key = options.readpatt.upper()
        if key not in patterns:
            raise InputError(f"--readpatt {options.readpatt} is not a {detector.instrument} "
                             f"readout pattern; choose from {', '.join(patterns)}.")
        patterns = {key: patterns[key]}
    nints = options.nints
    if detector.instrument == "MIRI":
        group_choices = [options.ngroups] if options.ngroups else range(5, 101)
    else:
        group_choices = [options.ngroups] if options.ngroups else range(4, 11)
    target = exposure_time / (nints or 1)
    best = None
    for name, (nframes, gap) in patterns.items():
        for ngroups in group_choices:
            r = Readout(name, nframes, gap, ngroups, nints or 1, tframe)
            score = (abs(math.log(r.integration_time / target)), -nframes - gap)
            if best is None or score < best[0]:
                best = (score, r)
    readout = best[1]
    if nints is None:
        n = int(min(50, max(1, round(exposure_time / readout.integration_time))))
        readout = Readout(readout.readpatt, readout.nframes, readout.groupgap, readout.ngroups,
                          n, tframe)
    return readout


def uncal_name(rate_name: str) -> str:
    return rate_name.replace("_rateints.fits", "_uncal.fits").replace("_rate.fits", "_uncal.fits")


@dataclass
class UncalTruth:
    """What one ``_uncal`` holds: its path, noiseless slope and the injected events."""

    path: Path
    slope: np.ndarray
    jumps: list = field(default_factory=list)  # (integration, x, y, group, dn, kind, sigma)
    saturated: list = field(default_factory=list)  # (integration, x, y, first group)


def _amplifiers(detector, geometry) -> np.ndarray:
    """The output (0-3) of each column of the subarray."""
    xstart, _, xsize, ysize = geometry
    columns = np.arange(xstart - 1, xstart - 1 + xsize)
    if detector.instrument == "MIRI":
        return columns % 4
    if xsize == 2048 and ysize == 2048:
        return columns // 512
    return np.zeros(xsize, dtype=int)


def _newton_inverse(t, c2, c3):
    """m with m + c2 m^2 + c3 m^3 = t (the counts the linearity polynomial corrects)."""
    m = t * (1 - c2 * t)  # the series' first terms; two Newton steps reach float32 precision
    for _ in range(3):
        m -= (m + c2 * m * m + c3 * m * m * m - t) / (1 + 2 * c2 * m + 3 * c3 * m * m)
    return m


def _events(rng, shape, refmask, readout, gain):
    """Cosmic rays and snowballs of one integration: arrays x, y, group, dn, kind."""
    ny, nx = shape
    t_groups = readout.group_times()
    n = max(CR_MIN_HITS, int(rng.poisson(CR_RATE * ny * nx * readout.integration_time)))
    x = rng.integers(1, nx - 1, n)
    y = rng.integers(1, ny - 1, n)
    group = np.searchsorted(t_groups, rng.uniform(0, t_groups[-1], n))
    electrons = np.exp(rng.uniform(*np.log(CR_ELECTRONS), n))
    # 40 % share 5-30 % of their charge with a neighbour
    shared = rng.random(n) < 0.4
    step = np.array([(1, 0), (0, 1), (-1, 0), (0, -1)])[rng.integers(0, 4, n)]
    frac = rng.uniform(0.05, 0.3, n)
    xs = np.concatenate([x, (x + step[:, 0])[shared]])
    ys = np.concatenate([y, (y + step[:, 1])[shared]])
    groups = np.concatenate([group, group[shared]])
    charge = np.concatenate([electrons, (electrons * frac)[shared]])
    dn = charge / gain[ys, xs]
    kinds = ["cosmic_ray"] * len(xs)
    # a snowball: a round core of a good part of the well with a fainter halo
    radius = rng.uniform(*SNOWBALL_RADII)
    margin = int(3 * radius) + 2
    if min(nx, ny) > 2 * margin + 1:
        x0, y0 = rng.uniform(margin, nx - margin), rng.uniform(margin, ny - margin)
        sgroup = int(rng.integers(1, readout.ngroups))
        core = rng.uniform(0.3, 0.6) * 45000.0
        sy, sx = np.mgrid[int(y0) - margin: int(y0) + margin + 1,
                          int(x0) - margin: int(x0) + margin + 1]
        d = np.hypot(sx - x0, sy - y0).ravel()
        keep = d <= 2.5 * radius
        amp = np.where(d <= radius, core, core * 0.02 * (radius / np.maximum(d, 1e-3)) ** 2)
        xs = np.concatenate([xs, sx.ravel()[keep]])
        ys = np.concatenate([ys, sy.ravel()[keep]])
        groups = np.concatenate([groups, np.full(int(keep.sum()), sgroup)])
        dn = np.concatenate([dn, amp[keep]])
        kinds += ["snowball"] * int(keep.sum())
    ok = ~refmask[ys, xs]
    return xs[ok], ys[ok], groups[ok], dn[ok], np.array(kinds)[ok]


def _integration(rng, signal, props, readout, amps, drift, events, linear_bias: bool):
    """One integration's raw counts (ngroups, ny, nx) uint16 and first saturated group.

    ``linear_bias``: the linearity polynomial acts on the raw counts, bias included
    (MIRI, which has no superbias step), not on the bias-subtracted ones (NIR).
    """
    bias, gain, rn, dark, c2, c3, well, refmask, dead = props
    shape = signal.shape
    f32 = np.float32
    electrons_rate = np.where(refmask | dead, 0.0, signal + dark) * gain
    ex, ey, egroup, edn, _ = events
    rn_group = rn / f32(math.sqrt(2 * readout.nframes))
    n_amps = int(amps.max()) + 1
    offsets = (rng.normal(0.0, 40.0, n_amps)[amps]
               + rng.normal(0.0, 2.0, 2)[np.arange(shape[1]) % 2]).astype(f32)[None, :]
    base = (bias + offsets) if linear_bias else np.zeros(shape, dtype=f32)
    base_true = base + c2 * base * base + c3 * base * base * base
    t_prev = 0.0
    cum = np.zeros(shape, dtype=f32)
    extra = np.zeros(shape, dtype=f32)
    out = np.empty((readout.ngroups,) + shape, dtype=np.uint16)
    first_sat = np.full(shape, -1, dtype=np.int16)
    for g, t in enumerate(readout.group_times()):
        cum += rng.poisson(electrons_rate * (t - t_prev)).astype(f32)
        t_prev = t
        now = egroup == g
        np.add.at(extra, (ey[now], ex[now]), edn[now].astype(f32))
        measured = _newton_inverse(base_true + cum / gain + extra, c2, c3) - base
        np.minimum(measured, well, out=measured)
        first_sat[(measured >= well) & (first_sat < 0)] = g
        raw = bias + measured + offsets + rng.standard_normal(shape, dtype=f32) * rn_group
        if drift:
            raw += rng.normal(0.0, 3.0, n_amps)[amps].astype(f32)[None, :]
        np.rint(raw, out=raw)
        out[g] = np.clip(raw, 0, 65535).astype(np.uint16)
    return out, first_sat


def write_ramps(rate_path: Path, rate_model, spec, signal: np.ndarray, dq: np.ndarray,
                options: RampOptions) -> UncalTruth:
    """Write the ``_uncal`` of one exposure next to its ``_rate``; return its truth.

    ``rate_model`` carries the exposure's header; ``signal`` is its noiseless count
    rate (DN/s) and ``dq`` its pixel flags. Draws from a generator of its own (seeded
    by the seed and the file name), so the ``_rate`` files are the same with or without.
    """
    from stdatamodels.jwst.datamodels import Level1bModel

    from .exposures import _int_times

    det, geometry = spec.detector, spec.geometry
    readout = choose_readout(det, geometry, options, det.exposure_time)
    full = detector_properties(det)
    refmask = (dq & _REFERENCE_PIXEL) > 0
    dead = (dq & _DEAD) > 0
    props = (*(np.ascontiguousarray(cut(a, geometry)) for a in (
        full.bias, full.gain, full.readnoise, full.dark_rate, full.c2, full.c3, full.well)),
        refmask, dead)
    rng = np.random.default_rng([options.seed, zlib.crc32(rate_path.name.encode())])
    amps = _amplifiers(det, geometry)
    drift = det.instrument == "NIRCAM" and bool(refmask.all(axis=1).any())
    path = rate_path.with_name(uncal_name(rate_path.name))
    signal = signal.astype(np.float32)
    slope = np.where(refmask, 0.0, signal).astype(np.float32)
    truth = UncalTruth(path=path, slope=slope)
    data = np.empty((readout.nints, readout.ngroups) + signal.shape, dtype=np.uint16)
    var_pois = np.clip(signal, 0, None) * readout.group_time / props[1]
    var_read = 2 * props[2] ** 2 / (2 * readout.nframes)
    for k in range(readout.nints):
        events = _events(rng, signal.shape, refmask, readout, props[1])
        data[k], first_sat = _integration(rng, signal, props, readout, amps, drift, events,
                                          det.instrument == "MIRI")
        x, y, group, dn, kind = events
        sigma = np.sqrt(var_read[y, x] + var_pois[y, x])
        truth.jumps += zip([k] * len(x), x.tolist(), y.tolist(), group.tolist(), dn.tolist(),
                           kind.tolist(), sigma.tolist())
        ys, xs = np.nonzero(first_sat >= 0)
        truth.saturated += zip([k] * len(xs), xs.tolist(), ys.tolist(),
                               first_sat[ys, xs].tolist())
    model = Level1bModel(data=data)
    model.update(rate_model)
    _set_readout(model.meta, readout)
    model.int_times = _int_times(model.meta.exposure.start_time, readout.integration_time,
                                 readout.nints)
    model.meta.filename = path.name
    model.meta.model_type = "Level1bModel"
    save_model(model, path)
    model.close()
    return truth


def _set_readout(meta, readout: Readout) -> None:
    exp = meta.exposure
    exp.readpatt = readout.readpatt
    exp.nframes, exp.groupgap = readout.nframes, readout.groupgap
    exp.ngroups, exp.nints = readout.ngroups, readout.nints
    exp.integration_start, exp.integration_end = 1, readout.nints
    exp.frame_time = readout.frame_time
    exp.group_time = readout.group_time
    exp.integration_time = readout.integration_time
    total = readout.integration_time * readout.nints
    exp.exposure_time = exp.effective_exposure_time = exp.duration = total
    exp.measurement_time = (readout.ngroups - 1) * readout.group_time * readout.nints
    exp.nresets_at_start = exp.nresets_between_ints = 1
    exp.drop_frames1 = exp.drop_frames3 = 0
    exp.frame_divisor = readout.nframes
    exp.sample_time = 10
    exp.zero_frame = False
    exp.end_time = exp.start_time + total / 86400.0
    exp.mid_time = exp.start_time + total / 172800.0
    meta.bunit_data = "DN"
    meta.bunit_err = None


def write_uncal_truth(outdir: Path, truths: list[UncalTruth]) -> list[Path]:
    """The slope images and the jump and saturation tables of all the ``_uncal`` files."""
    from astropy.io import fits
    from astropy.table import Table

    from .._io import atomic_write

    slope_dir = Path(outdir) / SLOPE_DIR
    slope_dir.mkdir(exist_ok=True)
    written = []
    for truth in truths:
        path = slope_dir / truth.path.name.replace("_uncal.fits", "_slope.fits")
        hdu = fits.PrimaryHDU(truth.slope)
        hdu.header["BUNIT"] = "DN/s"
        hdu.header["UNCAL"] = truth.path.name
        atomic_write(path, lambda tmp, h=hdu: h.writeto(tmp, overwrite=True), fsync=False)
        written.append(path)
    jumps = Table(rows=[(t.path.name, *row) for t in truths for row in t.jumps] or None,
                  names=("file", "integration", "x", "y", "group", "dn", "kind", "sigma_dn"),
                  dtype=("U64", int, int, int, int, float, "U12", float))
    jumps.meta = {"description": "charge added by cosmic rays and snowballs (true DN, before "
                  "non-linearity), from `group` (0-based) on; x, y 0-based pixels; sigma_dn: "
                  "the noise of that pixel's group difference; group 0: before the first read"}
    sat = Table(rows=[(t.path.name, *row) for t in truths for row in t.saturated] or None,
                names=("file", "integration", "x", "y", "group"),
                dtype=("U64", int, int, int, int))
    sat.meta = {"description": "pixels whose counts reach the well: first saturated group"}
    for table, name in ((jumps, JUMP_TABLE), (sat, SATURATION_TABLE)):
        path = Path(outdir) / name
        table.write(path, format="ascii.ecsv", overwrite=True)
        written.append(path)
    return written
