"""A simulated JWST imaging program: exposures, truth tables and a local CRDS cache."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._io import atomic_write
from ..errors import InputError, OutputError
from .instruments import (
    Detector,
    FilterInfo,
    get_detector,
    siaf_aperture,
    subarray_geometry,
)
from .layout import ExposureSet, base36, detector_pointings, plan_exposure_sets, pointing_reference
from .result import (
    COSMIC_RAY_FILE,
    ENV_FILE,
    POINTING_FILE,
    SUMMARY_FILE,
    TRUTH_FILE,
    SimulationResult,
    load_simulation,
)

__all__ = [
    "SimulationResult",
    "simulate_program",
    "load_simulation",
    "ENV_FILE",
    "TRUTH_FILE",
    "COSMIC_RAY_FILE",
]

log = logging.getLogger(__name__)

# GOODS-S-like field, an arbitrary but realistic pointing.
DEFAULT_RA = 53.1625
DEFAULT_DEC = -27.7914
DEFAULT_ROLL = 72.0


def _dither_offsets(n: int, step_arcsec: float) -> list[tuple[float, float]]:
    """A compact non-redundant pattern: a golden-angle spiral with sub-pixel phases."""
    offsets = [(0.0, 0.0)]
    golden = math.radians(137.508)
    for k in range(1, n):
        r = step_arcsec * math.sqrt(k)
        offsets.append((r * math.cos(k * golden), r * math.sin(k * golden)))
    return offsets


def _prepare_outdir(outdir: Path, force: bool) -> None:
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"{outdir}: exists and is not a directory. Choose another OUTDIR.")
    if outdir.exists() and any(outdir.iterdir()):
        if not force:
            raise OutputError(
                f"{outdir}: directory is not empty. Choose an empty or new directory, "
                "or pass --force to replace the simulated files in it."
            )
    outdir.mkdir(parents=True, exist_ok=True)


def _setups(sets: list[ExposureSet]) -> list[tuple[Detector, FilterInfo]]:
    """Every (detector, filter) of the program, once, in order."""
    return list(dict.fromkeys(member for exposure_set in sets for member in exposure_set.members))


@dataclass
class _Layout:
    """One observation's focal plane: the detectors' apertures and where the target sits."""

    apertures: list  # pysiaf apertures of the members, in order
    reference: tuple[float, float]  # V2, V3 (arcsec) on the target
    step: float  # dither step, arcsec
    n_sets: int


def _layouts(sets: list[ExposureSet], subarray: str) -> dict[int, _Layout]:
    layouts: dict[int, _Layout] = {}
    for exposure_set in sets:
        if exposure_set.observation in layouts:
            layouts[exposure_set.observation].n_sets += 1
            continue
        dets = [det for det, _ in exposure_set.members]
        apertures = [siaf_aperture(det, subarray) for det in dets]
        layouts[exposure_set.observation] = _Layout(
            apertures=apertures, reference=pointing_reference(apertures),
            step=max(25 * det.pixel_scale for det in dets), n_sets=1)
    return layouts


def _scene_half_width(sets, layouts, geometries, n_dithers: int) -> float:
    """Half the side of the sky square that holds every detector at every dither (arcsec)."""
    extent = 0.0
    for exposure_set in sets:
        layout = layouts[exposure_set.observation]
        for (det, _), aperture in zip(exposure_set.members, layout.apertures):
            xs, ys = geometries[det.name][2:]
            off = math.hypot(float(aperture.V2Ref) - layout.reference[0],
                             float(aperture.V3Ref) - layout.reference[1])
            extent = max(extent, off + max(xs, ys) * det.pixel_scale / math.sqrt(2))
    max_dither = max(lay.step for lay in layouts.values()) * math.sqrt(max(n_dithers - 1, 0))
    return extent + max_dither + 2.0


def simulate_program(
    outdir,
    *,
    instrument: str | None = None,
    detectors: list[str] | tuple[str, ...] = (),
    filters: list[str] | tuple[str, ...] = (),
    subarray: str = "SUB640",
    n_dithers: int = 4,
    n_background: int = 0,
    rateints: bool = False,
    nints: int = 3,
    seed: int = 1,
    pointing_error: float = 0.1,
    crds_path=None,
    program: int = 1234,
    ra: float = DEFAULT_RA,
    dec: float = DEFAULT_DEC,
    roll: float = DEFAULT_ROLL,
    source_density: float = 1.0,
    extras: list[str] | tuple[str, ...] = (),
    effects: list[str] | tuple[str, ...] = (),
    force: bool = False,
    uncal: bool = False,
    ngroups: int | None = None,
    uncal_nints: int | None = None,
    readpatt: str | None = None,
) -> SimulationResult:
    """Simulate an imaging program and the CRDS cache that reduces it offline.

    Laid out as on the telescope (:mod:`jwstrun.simulate.layout`): one
    observation per instrument; one exposure set (activity ``_02101``,
    ``_02103``, ...) per SW/LW filter pair; each set has ``n_dithers``
    exposures read out on all the detectors at once with one shared pointing
    (``--detector NRCB1 --detector NRCBLONG --filter F200W --filter F444W``
    gives exposures ``jw01234001001_02101_0000N`` in F200W on NRCB1 and F444W
    on NRCBLONG), and ``n_background`` dedicated background exposures of an
    empty field in visit 002.  ``extras`` adds what else a MAST download
    holds, not science: ``"ta"``, ``"grism"``, ``"uncal"`` (:mod:`jwstrun.simulate.extras`).
    ``effects`` injects what correction steps remove, with truth: ``"flicker"``,
    ``"snowballs"``, ``"persistence"`` (:mod:`jwstrun.simulate.effects`).
    ``uncal`` also writes every exposure's raw ramps (``_uncal``, ``ngroups``,
    ``uncal_nints`` and ``readpatt`` or chosen to match the exposure time), their truth
    and the Stage-1 references (:mod:`jwstrun.simulate.ramps`); the scene then has the
    bright stars that saturate.
    """
    from . import effects as fx

    t0 = time.perf_counter()
    options = {
        "instrument": instrument, "detectors": list(detectors), "filters": list(filters),
        "subarray": subarray.upper(), "n_dithers": n_dithers, "n_background": n_background,
        "rateints": rateints, "nints": nints, "seed": seed, "pointing_error": pointing_error,
        "program": program, "ra": ra, "dec": dec, "roll": roll, "source_density": source_density,
    }
    extras = _check_extras(extras, options)
    ramps, extras = _check_uncal(options, extras, uncal, ngroups, uncal_nints, readpatt,
                                 rateints, nints, seed)
    _check_counts(n_dithers, n_background, rateints, nints)
    sets = plan_exposure_sets(instrument, detectors, filters)
    effects = fx.check_effects(effects, options, rateints, sets)
    setups = _setups(sets)
    geometries = {det.name: subarray_geometry(det, subarray) for det, _ in setups}
    fill_time = _shortest_integration(ramps, setups, geometries)  # checks --readpatt first
    outdir = Path(outdir)
    _prepare_outdir(outdir, force)
    crds_dir = Path(crds_path) if crds_path else outdir / "crds_cache"
    # One generator for the whole program, drawn in a fixed order (scene, then each
    # exposure in turn): the same seed gives the same files.
    rng = np.random.default_rng(seed)

    context, env, env_file = _write_crds(outdir, crds_dir, setups,
                                         subarray.upper() if ramps is not None else None)
    layouts = _layouts(sets, subarray)
    half_width = _scene_half_width(sets, layouts, geometries, n_dithers)
    scene = _make_sky(rng, setups, half_width, n_dithers, source_density, ra, dec)
    scene = fx.prepare_scene(scene, effects + (["bright"] if ramps is not None else []), seed,
                             sets, layouts, geometries, ra, dec, roll,
                             fill_time=fill_time)
    plan = _Plan(outdir=outdir, crds_dir=crds_dir, subarray=subarray.upper(), n_dithers=n_dithers,
                 n_background=n_background, rateints=rateints, nints=nints,
                 pointing_error=pointing_error, program=program, ra=ra, dec=dec, roll=roll,
                 background_offset=max(300.0, 2 * half_width + 10.0), ramps=ramps)
    written = _Written()
    for exposure_set in sets:
        _simulate_exposure_set(plan, written, exposure_set, layouts[exposure_set.observation],
                               geometries, scene, rng)
    for det, filt in setups:
        n_exp = n_dithers * sum((det, filt) in es.members for es in sets)
        written.snr_columns[f"snr_{det.name.lower()}_{filt.name.lower()}"] = _expected_snr(
            scene, det, filt, _pixel_area(det), n_exp)

    effect_files = fx.apply_effects(outdir, written.rate_files + written.background_files,
                                    effects, seed) if effects else []
    extra_files = _write_extras(plan, written, extras, seed)
    uncal_files, uncal_truth = _write_uncal_truth(outdir, written.uncal_truths)
    truth_file, pointing_file, cr_file = _write_truth(
        outdir, scene, written.snr_columns, written.pointing_rows, written.cr_rows, seed, context
    )
    refcat_file = _write_refcat(outdir, scene, written, seed)
    seconds = time.perf_counter() - t0
    result = SimulationResult(
        outdir=outdir, rate_files=written.rate_files, background_files=written.background_files,
        truth_file=truth_file, pointing_file=pointing_file, cosmic_ray_file=cr_file,
        crds_path=crds_dir, crds_context=context, env_file=env_file, env=env, seconds=seconds,
        groups=written.groups, options=options, extra_files=extra_files,
        effect_files=effect_files, refcat_file=refcat_file,
        uncal_files=uncal_files, uncal_truth_files=uncal_truth,
    )
    atomic_write(outdir / SUMMARY_FILE, json.dumps(result.to_dict(), indent=2) + "\n")
    log.info("simulated %d files in %.1f s",
             len(written.rate_files) + len(written.background_files), seconds)
    return result


def _write_refcat(outdir: Path, scene, written: "_Written", seed: int) -> Path:
    """The field's reference catalogue (jwstrun.simulate.refcat), at the exposures' epoch."""
    from astropy.time import Time

    from .refcat import write_refcat

    mean_mjd = 60400.0 + 0.004 * (written.exposure_counter + 1) / 2  # as _exposure_spec
    snr = next(iter(written.snr_columns.values()))
    return write_refcat(outdir, scene, snr, float(Time(mean_mjd, format="mjd").decimalyear), seed)


def _check_extras(extras, options: dict) -> list[str]:
    """The extras asked for, each once, recorded in ``options`` (only when there are: a
    program without extras is described as it always was)."""
    from .extras import EXTRAS

    chosen = list(dict.fromkeys(str(e).strip().lower() for e in extras or ()))
    unknown = [e for e in chosen if e not in EXTRAS]
    if unknown:
        raise InputError(f"unknown extra {unknown[0]!r}; choose from {', '.join(EXTRAS)}.")
    if chosen:
        options["extras"] = chosen
    return chosen


def _write_extras(plan: "_Plan", written: "_Written", extras: list[str], seed: int) -> list[Path]:
    """The TA, grism and _uncal files (jwstrun.simulate.extras) after the science ones; the
    grism exposure takes the observation after the highest one written (jwPPPPPOOO...)."""
    if not extras:
        return []
    from .extras import write_extras

    last = max(int(p.name[7:10]) for p in written.rate_files + written.background_files)
    return write_extras(plan.outdir, written.rate_files[0], last, plan.subarray, extras, seed)


def _check_uncal(options: dict, extras: list[str], uncal: bool, ngroups, nints, readpatt,
                 rateints: bool, rate_nints: int, seed: int):
    """The ramps.RampOptions of ``--uncal`` (None without), recorded in ``options``, and
    the extras to write (not ``uncal``'s 3-group file when the real ramps are written)."""
    if not uncal:
        if ngroups is not None or readpatt:
            raise InputError("--ngroups and --readpatt describe the _uncal ramps; add --uncal.")
        return None, extras
    from .ramps import RampOptions

    if "uncal" in extras:
        extras = [e for e in extras if e != "uncal"]
        options.pop("extras")
        if extras:
            options["extras"] = extras

    if ngroups is not None and ngroups < 2:
        raise InputError("--ngroups must be at least 2 (a slope needs two groups).")
    if nints is None and rateints:
        nints = rate_nints
    options["uncal"] = {"ngroups": ngroups, "nints": nints,
                        "readpatt": readpatt.upper() if readpatt else None}
    return RampOptions(ngroups=ngroups, nints=nints,
                       readpatt=readpatt.upper() if readpatt else None, seed=seed), extras


def _write_uncal_truth(outdir: Path, truths: list) -> tuple[list[Path], list[Path]]:
    """The _uncal files written and their truth files (none without ``--uncal``)."""
    if not truths:
        return [], []
    from .ramps import write_uncal_truth

    return [t.path for t in truths], write_uncal_truth(outdir, truths)


def _shortest_integration(ramps, setups, geometries) -> float | None:
    """The shortest _uncal integration of the program (s; None without ``--uncal``): the
    bright stars fill the wells in it."""
    if ramps is None:
        return None
    from .ramps import choose_readout

    return min(choose_readout(det, geometries[det.name], ramps, det.exposure_time)
               .integration_time for det, _ in setups)


def _check_counts(n_dithers: int, n_background: int, rateints: bool, nints: int) -> None:
    if n_dithers < 1:
        raise InputError("--dithers must be at least 1.")
    if n_background < 0:
        raise InputError("--background must be 0 or more.")
    if rateints and nints < 1:
        raise InputError("--nints must be at least 1.")


def _write_crds(outdir: Path, crds_dir: Path, setups,
                stage1_subarray: str | None = None) -> tuple[str, dict[str, str], Path]:
    """Reference files and mappings for every detector, and OUTDIR/crds.env; with
    ``stage1_subarray`` also the detector1 references of that subarray.

    Returns the CRDS context, its environment and the env file.
    """
    from . import crds_cache, references

    entries = []
    by_detector: dict[str, list[FilterInfo]] = {}
    for det, filt in setups:
        by_detector.setdefault(det.name, []).append(filt)
    for det_name, filts in by_detector.items():
        entries += references.write_references(crds_dir, get_detector(det_name), filts)
        if stage1_subarray:
            from .detector_refs import write_detector1_references

            entries += write_detector1_references(crds_dir, get_detector(det_name),
                                                  stage1_subarray)
    context = crds_cache.write_crds_cache(crds_dir, entries)
    env = crds_cache.crds_env(crds_dir, context)
    env_file = outdir / ENV_FILE
    crds_cache.write_env_file(env_file, env)
    return context, env, env_file


def _pixel_area(det: Detector) -> float:
    from .distortion import pixel_area_sr

    return pixel_area_sr(det)


def _make_sky(rng, setups, half_width: float, n_dithers: int, source_density: float,
              ra: float, dec: float):
    """The scene: a square of ``half_width`` (arcsec) on the target, fluxes set by S/N.

    Point sources from S/N 8 and galaxies from S/N 40 (on the first detector and
    filter, over all dithers) up to S/N 1500.
    """
    from .distortion import pixel_area_sr
    from .scene import make_scene, psf_encircled_energy, snr_to_flux_e

    det0, filt0 = setups[0]
    area = (2 * half_width) ** 2
    n_points = int(np.clip(source_density * area / (900 * filt0.fwhm_arcsec**2 + 1.0), 40, 800))
    n_gal = max(8, n_points // 5)
    pixar0 = pixel_area_sr(det0)
    n_exp = n_dithers
    sky_e = filt0.sky_mjysr / filt0.photmjsr * det0.gain * det0.exposure_time
    fwhm_pix = filt0.fwhm_arcsec / det0.pixel_scale
    npix = math.pi * max(fwhm_pix, 1.0) ** 2
    rn_e = det0.read_noise_dn * det0.gain

    def snr_flux_jy(snr):
        e = snr_to_flux_e(snr, npix, sky_e, rn_e, n_exp, psf_encircled_energy(1.0, 1.0))
        dn_s = e / det0.gain / det0.exposure_time
        return dn_s * filt0.photmjsr * pixar0 * 1e6

    return make_scene(
        rng,
        ra,
        dec,
        half_width,
        n_points,
        n_gal,
        (snr_flux_jy(8.0), snr_flux_jy(1500.0)),
        (snr_flux_jy(40.0), snr_flux_jy(1500.0)),
        min_separation=(max(12 * filt0.fwhm_arcsec, 0.5), max(30 * filt0.fwhm_arcsec, 2.5)),
    )


@dataclass
class _Plan:
    """The program-wide settings every exposure shares."""

    outdir: Path
    crds_dir: Path
    subarray: str
    n_dithers: int
    n_background: int
    rateints: bool
    nints: int
    pointing_error: float
    program: int
    ra: float
    dec: float
    roll: float
    background_offset: float  # arcsec from the target to the empty background field
    ramps: object | None = None  # ramps.RampOptions with --uncal


@dataclass
class _Written:
    """What the exposures wrote so far: files, truth rows, groups, expected S/N."""

    rate_files: list[Path] = field(default_factory=list)
    background_files: list[Path] = field(default_factory=list)
    pointing_rows: list[tuple] = field(default_factory=list)
    cr_rows: list[tuple] = field(default_factory=list)
    snr_columns: dict[str, np.ndarray] = field(default_factory=dict)
    groups: list[dict] = field(default_factory=list)
    exposure_counter: int = 0
    uncal_truths: list = field(default_factory=list)  # ramps.UncalTruth with --uncal


@dataclass
class _Member:
    """One detector of an exposure set: what its exposures need, and its summary group."""

    det: Detector
    filt: FilterInfo
    geometry: tuple
    refs: dict
    flat: np.ndarray
    pixar: float
    sky_base: float
    group: dict


def _members(plan: _Plan, exposure_set: ExposureSet, geometries) -> list[_Member]:
    from . import references

    members = []
    for det, filt in exposure_set.members:
        refs = {
            "distortion": str(references.distortion_reference_path(plan.crds_dir, det)),
            "filteroffset": str(references.filteroffset_reference_path(plan.crds_dir, det)),
        }
        group = {"observation": f"{exposure_set.observation:03d}",
                 "activity": base36(exposure_set.activity), "detector": det.name,
                 "filter": filt.name, "pupil": filt.pupil, "science": [], "background": []}
        members.append(_Member(det, filt, geometries[det.name], refs,
                               references.flat_field_array(det, filt), _pixel_area(det),
                               filt.sky_mjysr / filt.photmjsr, group))
    return members


def _simulate_exposure_set(plan: _Plan, written: _Written, exposure_set: ExposureSet,
                           layout: _Layout, geometries, scene, rng) -> None:
    """Write one exposure set: its science exposures (visit 001) and backgrounds (visit 002),
    each exposure read out on every detector of the set with one pointing.

    Draws from ``rng`` per exposure: the pointing error (when there is one), the
    science exposure's sky level, then each detector's noise, in that order.
    """
    from .exposures import write_exposure
    from .scene import offset_sky

    members = _members(plan, exposure_set, geometries)
    offsets = _dither_offsets(plan.n_dithers, layout.step)
    set_index = (exposure_set.activity - 1) // 2
    for kind, count in (("science", plan.n_dithers), ("background", plan.n_background)):
        for k in range(count):
            written.exposure_counter += 1
            if kind == "science":  # the dithers move the telescope; the target is on the reference
                ra_p, dec_p = offset_sky(plan.ra, plan.dec, *offsets[k])
            else:  # dedicated background: an empty field away from the scene
                ra_p, dec_p = offset_sky(plan.ra, plan.dec, plan.background_offset + 3.0 * k, 0.0)
            sigma = plan.pointing_error / math.sqrt(2)
            err = tuple(rng.normal(0.0, sigma, 2)) if plan.pointing_error else (0.0, 0.0)
            sky_factor = 1.0 + 0.08 * rng.uniform(-1, 1) if kind == "science" else 1.0
            pointings = detector_pointings(layout.reference, ra_p, dec_p, plan.roll, layout.apertures)
            numbers = dict(exposure=k + 1, exposure_count=set_index * count + k + 1,
                           visit_exposures=layout.n_sets * count, pattern_points=count)
            for member, pointing in zip(members, pointings):
                spec = _exposure_spec(plan, exposure_set, member, kind, pointing, numbers,
                                      (float(err[0]), float(err[1])), written.exposure_counter,
                                      float(member.sky_base * sky_factor))
                path = plan.outdir / spec.filename
                truth = write_exposure(path, spec, scene if kind == "science" else None,
                                       member.refs, member.flat, member.pixar, rng)
                (written.rate_files if kind == "science" else written.background_files).append(path)
                member.group[kind].append(path.name)
                written.pointing_rows.append(
                    (path.name, spec.basename.rsplit("_", 1)[0], kind, member.det.name,
                     member.filt.name, spec.ra_ref, spec.dec_ref, truth.ra_ref_true,
                     truth.dec_ref_true, truth.error_arcsec[0], truth.error_arcsec[1],
                     truth.sky_dn_s)
                )
                written.cr_rows += [(path.name, k_int, x, y, v) for k_int, x, y, v in truth.cosmic_rays]
                if truth.uncal is not None:
                    written.uncal_truths.append(truth.uncal)
    written.groups += [member.group for member in members]


def _exposure_spec(plan: _Plan, exposure_set: ExposureSet, member: _Member, kind: str, pointing,
                   numbers: dict, error: tuple[float, float], counter: int, sky_dn_s: float):
    """One detector's file of an exposure: numbers, pointing and sky."""
    from .exposures import ExposureSpec

    return ExposureSpec(
        detector=member.det,
        filter=member.filt,
        subarray=plan.subarray,
        geometry=member.geometry,
        ra_ref=pointing.ra_ref,
        dec_ref=pointing.dec_ref,
        roll_ref=pointing.roll_ref,
        error_arcsec=error,
        program=plan.program,
        observation=exposure_set.observation,
        visit=1 if kind == "science" else 2,
        visit_group=2,
        sequence=1,
        activity=exposure_set.activity,
        target="SIMFIELD" if kind == "science" else "SIMFIELD-BKG",
        start_mjd=60400.0 + counter * 0.004,
        sky_dn_s=sky_dn_s,
        nints=plan.nints if plan.rateints else 1,
        rateints=plan.rateints,
        background=(kind == "background"),
        v1=(pointing.ra_v1, pointing.dec_v1, pointing.pa_v3),
        ramps=plan.ramps,
        **numbers,
    )


def _expected_snr(scene, det: Detector, filt: FilterInfo, pixar: float, n_dithers: int) -> np.ndarray:
    """Expected combined S/N of each source on this detector and filter (for science checks)."""
    from .scene import psf_encircled_energy

    sky_base = filt.sky_mjysr / filt.photmjsr
    sky_e_i = sky_base * det.gain * det.exposure_time
    npix_i = math.pi * max(filt.fwhm_arcsec / det.pixel_scale, 1.0) ** 2
    s_e = scene.flux_jy * 1e-6 / (filt.photmjsr * pixar) * det.gain * det.exposure_time
    ee = psf_encircled_energy(1.0, 1.0)  # aperture radius = FWHM
    per_exp = ee * s_e / np.sqrt(ee * s_e + npix_i * (sky_e_i + (det.read_noise_dn * det.gain) ** 2))
    return per_exp * math.sqrt(n_dithers)


def _write_truth(outdir, scene, snr_columns, pointing_rows, cr_rows, seed, context):
    from astropy.table import Table

    sources = Table()
    sources["id"] = np.arange(1, len(scene) + 1)
    sources["ra"] = scene.ra
    sources["dec"] = scene.dec
    sources["flux_jy"] = scene.flux_jy
    sources["abmag"] = scene.abmag
    sources["kind"] = scene.kind
    sources["r_eff_arcsec"] = scene.r_eff_arcsec
    sources["axis_ratio"] = scene.axis_ratio
    sources["pa_deg"] = scene.pa_deg
    for name, values in snr_columns.items():
        sources[name] = values
    sources["ra"].unit = sources["dec"].unit = "deg"
    sources["flux_jy"].unit = "Jy"
    sources.meta = {
        "description": "Sources injected by jwstrun simulate (flat f_nu spectrum)",
        "seed": seed,
        "crds_context": context,
        "snr": "expected combined aperture S/N over all dithers (r = FWHM aperture)",
    }
    pointing = Table(
        rows=pointing_rows,
        names=("file", "exposure", "kind", "detector", "filter", "ra_ref", "dec_ref", "ra_ref_true",
               "dec_ref_true", "error_xi_arcsec", "error_eta_arcsec", "sky_dn_s"),
    ) if pointing_rows else Table()
    pointing.meta = {"description": "header (nominal) vs true pointing of every file; the "
                     "error is the exposure's, shared by all its detectors"}
    crs = Table(rows=cr_rows, names=("file", "integration", "x", "y", "dn_s")) if cr_rows else Table(
        names=("file", "integration", "x", "y", "dn_s"), dtype=("U64", int, int, int, float)
    )
    crs.meta = {"description": "unflagged cosmic-ray pixels (0-based pixel coordinates of the file)"}
    paths = (outdir / TRUTH_FILE, outdir / POINTING_FILE, outdir / COSMIC_RAY_FILE)
    for table, path in zip((sources, pointing, crs), paths):
        table.write(path, format="ascii.ecsv", overwrite=True)
    return paths
