"""Image3 at scale: the output mosaic and the memory it needs, estimated before anything runs.

calwebb_image3 is one big job per Level-3 association, and memory is where it
breaks (jwst issues 8065 and 8779: large NIRCam mosaics; 5081: one bad WCS
asked resample for a mosaic of tens of TiB).  Before any step runs, jwstrun

1. predicts each association's output grid the way jwst 3.0's resample does:
   the members' ``S_REGION`` footprints (written by assign_wcs into the SCI
   header; resample itself reads exactly these through
   ``ModelLibrary.read_metadata``) are handed to stcal's
   ``wcs_from_sregions`` with the reference exposure's ``wcsinfo`` (roll,
   V3 Y angle, parity) and the resample step's ``pixel_scale_ratio``,
   ``pixel_scale``, ``rotation``, ``output_shape``, ``crpix`` and ``crval``
   from the profiles and ``--set``.  The input pixel scale is the linear part
   of the header's SIP approximation at CRPIX (resample measures the full
   distortion model at the same point; the two agree to well under 1 %);
2. refuses a mosaic beyond ``max_mosaic_pixels`` and names the inputs whose
   footprints lie far from the rest (a pointing wrong by degrees);
3. estimates the peak memory of the worker in memory and on disk
   (:func:`estimate_memory`) and chooses, within each association's share of
   the memory budget, the pipeline's in-memory mode, its on-disk mode
   (``in_memory=False``), or a refusal.

What ``in_memory`` does in jwst 3.0 (read in the installed source):
``Image3Pipeline.in_memory=False`` opens the association as a
``ModelLibrary(on_disk=True)``: each exposure is read when borrowed and
written to a temporary file when returned, so only one exposure is held at a
time; outlier_detection then computes its median with stcal's
``MedianComputer(in_memory=False)``, which streams each resampled group into
temporary files and takes the median section by section.  The steps' own
``in_memory`` parameters (tweakreg, skymatch, outlier_detection, resample) are
ignored inside the pipeline, which hands them the library; resample's only
applies to ``single=True``.  The temporary files go to the worker's current
directory, which jwstrun makes the task's directory under
``OUTDIR/.jwstrun-tmp``.  The other memory-saving options jwst offers change
the products -- resample ``enable_ctx=False`` (no CON array),
``enable_err=False`` / ``report_var=False`` (no ERR / VAR arrays),
``pixmap_stepsize`` > 1 (interpolated pixel map), a larger ``pixel_scale`` --
so jwstrun never turns them on by itself; the refusal message names them.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ConfigError, InputError

__all__ = [
    "DEFAULT_MEMORY_FRACTION",
    "Footprint",
    "MosaicEstimate",
    "MemoryPlan",
    "read_footprint",
    "mosaic_shape",
    "far_inputs",
    "estimate_memory",
    "estimate_association",
    "memory_budget",
    "parse_size",
    "format_bytes",
    "decide",
]

log = logging.getLogger(__name__)

#: Share of the available RAM that is the default memory budget.
DEFAULT_MEMORY_FRACTION = 0.8

# ---- the memory model (bytes per pixel unless said otherwise).  The terms are the
# arrays jwst 3.0 allocates; the sizes were fitted to the peak RSS measured, step by
# step, on NIRCam SUB640 x 4/8/16 and FULL x 4 in both modes
# (scripts/bench_image3_memory.py checks them; docs/image3-scale.md).
#: a worker with jwst imported (0.25 GB) and the association opened
_BASE = 0.28e9
#: in memory, every exposure stays open: SCI, ERR, AREA, three VAR float32, DQ uint32
#: and the WCS grids of tweakreg/skymatch (per input pixel, all inputs)
_HELD_IN_MEMORY = 38.0
#: on disk, what stays of each exposure: tweakreg catalogs, WCS, metadata
_HELD_ON_DISK = 11.0
#: resampling or blotting one exposure: pixel map (2 x float64), weight, variance
#: copies (per pixel of the largest exposure); on disk the exposure itself is read
#: back from its temporary file on top of that
_STEP_PER_INPUT_PIXEL = {False: 55.0, True: 155.0}
#: final resample: data, wht, err and three variances each drizzled with its own
#: weight, then the output model made from them
_RESAMPLE_PER_OUTPUT_PIXEL = 100.0
#: context image: one int32 plane per 32 inputs
_CON_PER_OUTPUT_PIXEL_PER_32 = 4.0
#: outlier_detection: one resampled group (data, weight) and the median
_OUTLIER_PER_OUTPUT_PIXEL = 16.0
#: outlier_detection in memory: the median cube, one float32 plane per group
#: (on disk: one plane of buffer)
_CUBE_PER_OUTPUT_PIXEL_PER_GROUP = 4.0
#: source_catalog on the mosaic: background, segmentation, convolved image, ...
_CATALOG_PER_OUTPUT_PIXEL = 60.0

#: resample parameters that decide the output grid
GRID_PARAMETERS = ("pixel_scale_ratio", "pixel_scale", "rotation", "output_shape", "crpix",
                   "crval", "output_wcs")

_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)


# --------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------
def parse_size(text: str | int | float) -> int:
    """Bytes from '8GB', '1.5G', '512MiB', '2e9' or a number; :class:`ConfigError` otherwise."""
    if isinstance(text, (int, float)):
        value = int(text)
    else:
        raw = str(text).strip()
        try:
            value = int(float(raw))
        except ValueError:
            match = _SIZE_RE.match(raw)
            if not match:
                raise ConfigError(
                    f"{text!r}: not a memory size. Give e.g. 8GB, 1.5G or 512MB."
                ) from None
            number, prefix, unit = match.groups()
            base = 1024 if unit.lower().startswith("i") else 1000
            power = " kmgtp".index(prefix.lower() or " ")
            value = int(float(number) * base ** power)
    if value <= 0:
        raise ConfigError(f"{text!r}: a memory size must be positive.")
    return value


def format_bytes(value: float | None) -> str:
    """'1.63 GB' style (powers of 1000, as in docs/benchmarks.md)."""
    if value is None:
        return "-"
    if value >= 1e12:
        return f"{value / 1e12:.1f} TB"
    if value >= 1e9:
        return f"{value / 1e9:.2f} GB"
    return f"{value / 1e6:.0f} MB"


def memory_budget(max_memory: int | str | None = None) -> tuple[int, str]:
    """``(bytes, where it came from)``: ``max_memory`` or a safe share of the available RAM."""
    if max_memory is not None:
        value = parse_size(max_memory)
        return value, f"--max-memory {format_bytes(value)}"
    from ..executors import available_memory

    found = available_memory()
    if found is None:
        found = (int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), "physical memory")
    available, source = found
    value = int(available * DEFAULT_MEMORY_FRACTION)
    return value, f"{DEFAULT_MEMORY_FRACTION:.0%} of {format_bytes(available)} {source}"


class MosaicRefused(InputError):
    """The preflight refuses an association (mosaic too large, or no memory mode fits)."""


# --------------------------------------------------------------------------
# Footprints and the output grid
# --------------------------------------------------------------------------
@dataclass
class Footprint:
    """One exposure's footprint on the sky, from its SCI header."""

    path: str
    vertices: list[tuple[float, float]]  # (RA, Dec) degrees
    shape: tuple[int, int]  # (ny, nx)
    pixel_scale: float  # degrees, linear part of the SIP approximation at CRPIX
    wcsinfo: dict
    #: exposure identity: jwst resamples members of one group (several
    #: detectors of one exposure) together in outlier_detection
    group: str = ""

    @property
    def pixels(self) -> int:
        return self.shape[0] * self.shape[1]


def _sregion_polygons(text: str) -> list[list[tuple[float, float]]]:
    """(RA, Dec) vertex lists of an S_REGION ('POLYGON ICRS ra dec ...', maybe several)."""
    polygons = []
    for part in re.split(r"(?i)polygon", text or ""):
        numbers = re.findall(r"(?i)[-+]?(?:nan|inf|\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?", part)
        values = [float(n) for n in numbers]
        if len(values) >= 6 and len(values) % 2 == 0:
            polygons.append(list(zip(values[::2], values[1::2], strict=True)))
    return polygons


def read_footprint(path: str | os.PathLike) -> Footprint:
    """The footprint, shape, pixel scale and pointing keywords of one _cal exposure (headers only)."""
    from astropy.io import fits

    path = Path(path)
    try:
        with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
            header = hdul["SCI"].header
            primary = hdul[0].header
            sregion = header.get("S_REGION") or primary.get("S_REGION")
            shape = (int(header.get("NAXIS2") or 0), int(header.get("NAXIS1") or 0))
            cd = _cd_matrix(header)
            # the fields of jwst's attrs_to_group_id, from the primary header
            group = "_".join(str(primary.get(k, "")) for k in (
                "PROGRAM", "OBSERVTN", "VISIT", "VISITGRP", "SEQ_ID", "ACT_ID", "EXPOSURE"))
            wcsinfo = {
                "v3yangle": header.get("V3I_YANG"),
                "vparity": header.get("VPARITY"),
                "roll_ref": header.get("ROLL_REF"),
                "ra_ref": header.get("RA_REF"),
                "dec_ref": header.get("DEC_REF"),
            }
    except (OSError, KeyError) as exc:
        raise InputError(f"{path}: cannot read its SCI header ({exc}).") from exc
    polygons = _sregion_polygons(str(sregion or ""))
    values = [c for poly in polygons for vertex in poly for c in vertex]
    if not all(map(math.isfinite, values)):
        raise InputError(
            f"{path}: S_REGION in its SCI header is invalid "
            f"({'NaN' if any(map(math.isnan, values)) else 'infinite'} vertices), so the mosaic "
            "cannot be planned. Its WCS is broken: re-run 'jwstrun image2' on its _rate file."
        )
    missing = [k for k, v in wcsinfo.items() if v is None]
    if not polygons or missing or cd is None:
        what = "S_REGION" if not polygons else ", ".join(missing) or "CD/PC matrix"
        raise InputError(
            f"{path}: no {what} in its SCI header, so the mosaic cannot be planned. "
            "Was it calibrated by calwebb_image2 (assign_wcs)? Re-run 'jwstrun image2' on its "
            "_rate file."
        )
    scale = math.sqrt(abs(cd[0][0] * cd[1][1] - cd[0][1] * cd[1][0]))
    return Footprint(
        path=str(path), vertices=[v for poly in polygons for v in poly], shape=shape,
        pixel_scale=scale, wcsinfo={k: float(v) for k, v in wcsinfo.items()}, group=group,
    )


def _cd_matrix(header) -> list[list[float]] | None:
    if "CD1_1" in header:
        return [[float(header.get("CD1_1", 0)), float(header.get("CD1_2", 0))],
                [float(header.get("CD2_1", 0)), float(header.get("CD2_2", 0))]]
    if "CDELT1" in header:
        c1, c2 = float(header["CDELT1"]), float(header.get("CDELT2", header["CDELT1"]))
        pc = [[float(header.get("PC1_1", 1)), float(header.get("PC1_2", 0))],
              [float(header.get("PC2_1", 0)), float(header.get("PC2_2", 1))]]
        return [[c1 * pc[0][0], c1 * pc[0][1]], [c2 * pc[1][0], c2 * pc[1][1]]]
    return None


def _unit_vector(ra: float, dec: float) -> tuple[float, float, float]:
    ra, dec = math.radians(ra), math.radians(dec)
    return (math.cos(dec) * math.cos(ra), math.cos(dec) * math.sin(ra), math.sin(dec))


def _center(vertices) -> tuple[float, float, float]:
    vectors = [_unit_vector(ra, dec) for ra, dec in vertices]
    x, y, z = (sum(v[i] for v in vectors) for i in range(3))
    norm = math.sqrt(x * x + y * y + z * z) or 1.0
    return (x / norm, y / norm, z / norm)


def _separation(a, b) -> float:
    """Angle in degrees between two unit vectors."""
    dot = max(-1.0, min(1.0, sum(p * q for p, q in zip(a, b, strict=True))))
    return math.degrees(math.acos(dot))


def _diameter(vertices) -> float:
    vectors = [_unit_vector(ra, dec) for ra, dec in vertices]
    return max((_separation(a, b) for a in vectors for b in vectors), default=0.0)


def far_inputs(footprints: list[Footprint]) -> list[tuple[Footprint, float]]:
    """Inputs outside the main group of overlapping or neighbouring footprints.

    Footprints whose centres are closer than twice the largest footprint
    diameter are linked; everything not in the largest linked group is
    returned, each with its distance (degrees) from the centre of that group.
    """
    if len(footprints) < 2:
        return []
    centers = [_center(f.vertices) for f in footprints]
    link = 2.0 * max(_diameter(f.vertices) for f in footprints)
    group = list(range(len(footprints)))

    def root(i):
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for i in range(len(footprints)):
        for j in range(i + 1, len(footprints)):
            if _separation(centers[i], centers[j]) <= link:
                group[root(i)] = root(j)
    members: dict[int, list[int]] = {}
    for i in range(len(footprints)):
        members.setdefault(root(i), []).append(i)
    main = max(members.values(), key=lambda m: (len(m), -m[0]))
    main_center = _center([v for i in main for v in footprints[i].vertices])
    far = [(footprints[i], _separation(centers[i], main_center))
           for i in range(len(footprints)) if i not in main]
    return sorted(far, key=lambda item: -item[1])


def _grid_parameters(resample: dict) -> dict:
    return {k: resample.get(k) for k in GRID_PARAMETERS if resample.get(k) not in (None, "")}


def mosaic_shape(footprints: list[Footprint], resample: dict | None = None) -> tuple[int, int]:
    """(ny, nx) of the mosaic resample would make from these footprints and parameters.

    The same computation as jwst 3.0 ``resampled_wcs_from_models``: stcal's
    ``wcs_from_sregions`` with the first exposure's wcsinfo as reference.
    """
    import warnings

    import numpy as np

    resample = _grid_parameters(resample or {})
    if resample.get("output_wcs"):
        return _custom_wcs_shape(resample["output_wcs"])
    if resample.get("output_shape"):
        nx, ny = (int(v) for v in resample["output_shape"])  # step parameter is [x, y]
        return ny, nx
    ref = footprints[0]
    everything = [v for f in footprints for v in f.vertices]
    # Beyond ~80 degrees the tangent projection breaks down: the mosaic is
    # hopeless anyway; call it as large as the sky.
    center = _center(everything)
    if max(_separation(center, _unit_vector(*v)) for v in everything) > 80.0:
        side = int(180.0 / ref.pixel_scale)
        return side, side
    if resample.get("pixel_scale"):
        pscale = float(resample["pixel_scale"]) / 3600.0
    else:
        pscale = ref.pixel_scale * float(resample.get("pixel_scale_ratio", 1.0))
    from stcal.alignment.util import wcs_from_sregions

    crpix = resample.get("crpix")
    crval = resample.get("crval")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            wcs = wcs_from_sregions(
                [np.array(f.vertices) for f in footprints], ref_wcs=_frames(),
                ref_wcsinfo=ref.wcsinfo,
                pscale=pscale, rotation=resample.get("rotation"),
                crpix=None if crpix is None else [float(v) for v in crpix],
                crval=None if crval is None else [float(v) for v in crval],
            )
        except ValueError as exc:
            raise InputError(
                f"resample cannot make a mosaic from these inputs and parameters ({exc.args[0]})."
            ) from exc
    ny, nx = wcs.array_shape
    return int(ny), int(nx)


def _frames():
    """What wcs_from_sregions takes from its reference WCS once a pixel scale is given:
    the input and output frames (the reference exposure's gwcs is not needed)."""
    from types import SimpleNamespace

    from astropy.coordinates import ICRS
    from gwcs import coordinate_frames as cf

    return SimpleNamespace(
        input_frame=cf.Frame2D(name="detector"),
        output_frame=cf.CelestialFrame(reference_frame=ICRS(), name="world"),
    )


def _custom_wcs_shape(path: str) -> tuple[int, int]:
    import asdf

    try:
        with asdf.open(path) as handle:
            wcs = handle.tree["wcs"]
            if wcs.array_shape is not None:
                return tuple(int(v) for v in wcs.array_shape)
            bbox = wcs.bounding_box
            nx = int(bbox[0][1] - bbox[0][0] + 0.5) if bbox else 0
            ny = int(bbox[1][1] - bbox[1][0] + 0.5) if bbox else 0
            return ny, nx
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"resample output_wcs {path}: cannot read its WCS shape ({exc}).") from exc


# --------------------------------------------------------------------------
# The memory model
# --------------------------------------------------------------------------
def estimate_memory(
    input_pixels: list[int],
    output_pixels: int,
    outlier_pixels: int,
    n_groups: int,
    *,
    on_disk: bool,
    outlier: bool = True,
    resample: bool = True,
    catalog: bool = True,
) -> dict:
    """Estimated peak bytes of one image3 worker, with its parts.

    In memory every exposure stays open for the whole run and outlier_detection
    stacks one resampled plane per group; on disk one exposure is open at a
    time and the median is taken from temporary files, section by section.
    The mosaic arrays of resample and source_catalog are needed either way.
    """
    biggest = max(input_pixels) if input_pixels else 0
    held = (_HELD_ON_DISK if on_disk else _HELD_IN_MEMORY) * sum(input_pixels)
    one_input = _STEP_PER_INPUT_PIXEL[on_disk] * biggest
    phases = {}
    if outlier and n_groups >= 2:
        cube = _CUBE_PER_OUTPUT_PIXEL_PER_GROUP * outlier_pixels * (1 if on_disk else n_groups)
        phases["outlier_detection"] = _OUTLIER_PER_OUTPUT_PIXEL * outlier_pixels + cube + one_input
    if resample:
        con = _CON_PER_OUTPUT_PIXEL_PER_32 * math.ceil(len(input_pixels) / 32)
        phases["resample"] = (_RESAMPLE_PER_OUTPUT_PIXEL + con) * output_pixels + one_input
        if catalog:
            phases["source_catalog"] = _CATALOG_PER_OUTPUT_PIXEL * output_pixels
    peak_phase = max(phases, key=phases.get) if phases else None
    total = _BASE + held + (phases[peak_phase] if peak_phase else 0.0)
    return {
        "bytes": int(total),
        "base": int(_BASE),
        "inputs": int(held),
        "peak_step": peak_phase,
        "peak_step_bytes": int(phases[peak_phase]) if peak_phase else 0,
    }


@dataclass
class MosaicEstimate:
    """What one association will ask of resample and of memory."""

    product: str
    n_inputs: int
    n_groups: int
    input_pixels: int
    shape: tuple[int, int] | None
    outlier_shape: tuple[int, int] | None
    in_memory_bytes: int
    on_disk_bytes: int
    in_memory_detail: dict = field(default_factory=dict)
    on_disk_detail: dict = field(default_factory=dict)

    @property
    def pixels(self) -> int:
        return self.shape[0] * self.shape[1] if self.shape else 0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["mosaic_pixels"] = self.pixels
        return data


def spec_bool(value) -> bool | None:
    """A boolean parameter the way stpipe's spec (configobj) reads it: True/False,
    1/0, or "true"/"yes"/"on"/"1" and "false"/"no"/"off"/"0" in any case; None for
    anything else (including unset)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    return None


def _skip(parameters: dict, step: str) -> bool:
    return spec_bool(((parameters.get("steps") or {}).get(step) or {}).get("skip")) is True


def estimate_association(
    product: str,
    members: list[Path],
    parameters: dict,
    max_mosaic_pixels: int | None = None,
) -> MosaicEstimate:
    """Footprints -> mosaic size -> memory estimates for one Level-3 association.

    Raises :class:`InputError` when the mosaic exceeds ``max_mosaic_pixels``,
    naming the inputs whose footprints lie far from the rest.
    """
    footprints = [read_footprint(p) for p in members]
    resample_pars = (parameters.get("steps") or {}).get("resample") or {}
    do_resample = not _skip(parameters, "resample")
    do_outlier = not _skip(parameters, "outlier_detection")
    shape = mosaic_shape(footprints, resample_pars) if do_resample else None
    grid_changed = bool(_grid_parameters(resample_pars))
    outlier_shape = None
    if do_outlier and len(members) > 1:
        # outlier_detection resamples on the default grid, whatever resample's parameters
        outlier_shape = mosaic_shape(footprints, {}) if (grid_changed or shape is None) else shape
    for name, grid in (("mosaic", shape), ("outlier_detection median", outlier_shape)):
        if grid is None or max_mosaic_pixels is None:
            continue
        if grid[0] * grid[1] > max_mosaic_pixels:
            raise MosaicRefused(_too_large_message(product, name, grid, footprints, max_mosaic_pixels))
    n_groups = len({f.group or f.path for f in footprints})
    pixels = [f.pixels for f in footprints]
    out_px = shape[0] * shape[1] if shape else 0
    od_px = outlier_shape[0] * outlier_shape[1] if outlier_shape else 0
    catalog = not _skip(parameters, "source_catalog")
    kwargs = dict(outlier=do_outlier, resample=do_resample, catalog=catalog)
    mem = estimate_memory(pixels, out_px, od_px, n_groups, on_disk=False, **kwargs)
    disk = estimate_memory(pixels, out_px, od_px, n_groups, on_disk=True, **kwargs)
    return MosaicEstimate(
        product=product, n_inputs=len(members), n_groups=n_groups, input_pixels=sum(pixels),
        shape=shape, outlier_shape=outlier_shape, in_memory_bytes=mem["bytes"],
        on_disk_bytes=disk["bytes"], in_memory_detail=mem, on_disk_detail=disk,
    )


def _too_large_message(product, name, grid, footprints, limit) -> str:
    pixels = grid[0] * grid[1]
    text = (
        f"{product}: the {name} would be {grid[1]} x {grid[0]} pixels ({pixels:.3g} pixels, "
        f"{format_bytes(pixels * 4.0)} per float32 plane), beyond the limit of "
        f"{limit:.3g} pixels (--max-mosaic-pixels)."
    )
    far = far_inputs(footprints)
    if far:
        listed = "; ".join(f"{Path(f.path).name} ({dist:.2f} deg away)" for f, dist in far[:5])
        more = f" and {len(far) - 5} more" if len(far) > 5 else ""
        return (
            f"{text} These inputs lie far from the rest: {listed}{more}. Check their pointing "
            "(WCS) or leave them out of the association; nothing was run."
        )
    return (
        f"{text} The footprints form one field, so the mosaic is genuinely this large: split "
        "the association, choose a coarser grid (--set steps.resample.pixel_scale_ratio=2), "
        "or raise --max-mosaic-pixels; nothing was run."
    )


# --------------------------------------------------------------------------
# The decision
# --------------------------------------------------------------------------
@dataclass
class MemoryPlan:
    """The memory decision for one association, recorded in the manifest."""

    mode: str  # "in_memory" or "on_disk"
    reason: str
    share_bytes: int
    budget_bytes: int
    budget_source: str
    estimate: MosaicEstimate

    @property
    def estimate_bytes(self) -> int:
        return (self.estimate.on_disk_bytes if self.mode == "on_disk"
                else self.estimate.in_memory_bytes)

    def call_overrides(self) -> dict:
        """Pipeline.call parameters this plan adds (the pipeline-level switch only)."""
        return {"in_memory": False} if self.mode == "on_disk" else {}

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "reason": self.reason,
            "estimate_bytes": self.estimate_bytes,
            "estimate_mb": round(self.estimate_bytes / 1e6, 1),
            "share_bytes": self.share_bytes,
            "budget_bytes": self.budget_bytes,
            "budget_source": self.budget_source,
            "mosaic": self.estimate.to_dict(),
        }


def default_max_mosaic_pixels(budget: int) -> int:
    """The largest mosaic whose own arrays (on disk, no inputs held) fit the budget."""
    per_pixel = max(_RESAMPLE_PER_OUTPUT_PIXEL + _CON_PER_OUTPUT_PIXEL_PER_32,
                    _CATALOG_PER_OUTPUT_PIXEL)
    return max(1, int(budget / per_pixel))


def decide(
    estimate: MosaicEstimate,
    share: int,
    budget: int,
    budget_source: str,
    *,
    low_memory: bool = False,
    user_in_memory=None,
    jobs: int = 1,
) -> MemoryPlan:
    """In memory, on disk, or :class:`InputError` when even on disk does not fit the share."""
    need_mem, need_disk = estimate.in_memory_bytes, estimate.on_disk_bytes
    split = f" ({format_bytes(budget)} / {jobs} concurrent associations)" if jobs > 1 else ""
    numbers = (f"estimated peak {format_bytes(need_mem)} in memory, {format_bytes(need_disk)} "
               f"on disk; share of the budget {format_bytes(share)}{split}")
    plan = dict(share_bytes=share, budget_bytes=budget, budget_source=budget_source,
                estimate=estimate)
    if low_memory:
        return MemoryPlan("on_disk", f"--low-memory; {numbers}", **plan)
    if user_in_memory is not None:
        mode = "on_disk" if spec_bool(user_in_memory) is False else "in_memory"
        if mode == "in_memory" and need_mem > share:
            log.warning("%s: in_memory=True was set; %s", estimate.product, numbers)
        return MemoryPlan(mode, f"in_memory={user_in_memory} set by the user; {numbers}", **plan)
    if need_mem <= share:
        return MemoryPlan("in_memory", numbers, **plan)
    if need_disk <= share:
        return MemoryPlan("on_disk", f"in memory would not fit: {numbers}", **plan)
    raise MosaicRefused(
        f"{estimate.product}: does not fit in memory even in the pipeline's on-disk mode: "
        f"{numbers}. The mosaic is {_shape_text(estimate.shape)}. Raise --max-memory, run fewer "
        "associations at once (-j), split the association, or make the mosaic smaller "
        "(--set steps.resample.pixel_scale_ratio=2); resample's enable_ctx=false, "
        "enable_err=false and report_var=false also save memory but drop products' arrays."
        " Nothing was run."
    )


def _shape_text(shape) -> str:
    return f"{shape[1]} x {shape[0]} pixels" if shape else "not made (resample skipped)"


def _names(paths: Iterable[Path]) -> str:
    return ", ".join(Path(p).name for p in paths)
