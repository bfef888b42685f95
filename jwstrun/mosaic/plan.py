"""The preflight of each Level-3 association: mosaic size, memory estimate, memory mode.

:func:`estimate_association` reads the members' footprints, predicts the
mosaic (and the outlier_detection median grid), refuses one beyond
``max_mosaic_pixels`` and estimates the worker's peak memory in both modes;
:func:`decide` chooses, within the association's share of the budget, the
pipeline's in-memory mode, its on-disk mode, or a refusal
(:class:`MosaicRefused`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import InputError
from .grid import far_inputs, grid_parameters, mosaic_shape, read_footprint
from .memory import estimate_memory, format_bytes

__all__ = ["MosaicRefused", "MosaicEstimate", "MemoryPlan", "estimate_association", "decide",
           "spec_bool"]

log = logging.getLogger(__name__)


class MosaicRefused(InputError):
    """The preflight refuses an association (mosaic too large, or no memory mode fits)."""


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
    *,
    limit_from_budget: str | None = None,
) -> MosaicEstimate:
    """Footprints -> mosaic size -> memory estimates for one Level-3 association.

    Raises :class:`InputError` when the mosaic exceeds ``max_mosaic_pixels``,
    naming the inputs whose footprints lie far from the rest. ``limit_from_budget``
    is the memory budget's source (:func:`~jwstrun.mosaic.memory_budget`) when the
    limit is the largest mosaic that budget holds rather than ``--max-mosaic-pixels``:
    the refusal then names the budget.
    """
    footprints = [read_footprint(p) for p in members]
    resample_pars = (parameters.get("steps") or {}).get("resample") or {}
    do_resample = not _skip(parameters, "resample")
    do_outlier = not _skip(parameters, "outlier_detection")
    if do_resample and resample_pars.get("output_wcs"):  # a grid (jwstrun image3 --grid)
        from .gridfile import check_coverage

        check_coverage(resample_pars["output_wcs"], product, footprints)
    shape = mosaic_shape(footprints, resample_pars) if do_resample else None
    grid_changed = bool(grid_parameters(resample_pars))
    outlier_shape = None
    if do_outlier and len(members) > 1:
        # outlier_detection resamples on the default grid, whatever resample's parameters
        outlier_shape = mosaic_shape(footprints, {}) if (grid_changed or shape is None) else shape
    for name, grid in (("mosaic", shape), ("outlier_detection median", outlier_shape)):
        if grid is None or max_mosaic_pixels is None:
            continue
        if grid[0] * grid[1] > max_mosaic_pixels:
            raise MosaicRefused(_too_large_message(product, name, grid, footprints,
                                                   max_mosaic_pixels, limit_from_budget))
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


def _too_large_message(product, name, grid, footprints, limit, budget_source=None) -> str:
    pixels = grid[0] * grid[1]
    if budget_source is None:
        limit_text = f"{limit:.3g} pixels (--max-mosaic-pixels)"
        remedy = "raise --max-mosaic-pixels"
    else:  # the default limit: what the budget holds (the user may not have given either)
        limit_text = (f"{limit:.3g} pixels, the largest mosaic whose arrays fit the memory "
                      f"budget ({budget_source})")
        remedy = "raise the memory budget (--max-memory)"
    text = (
        f"{product}: the {name} would be {grid[1]} x {grid[0]} pixels ({pixels:.3g} pixels, "
        f"{format_bytes(pixels * 4.0)} per float32 plane), beyond the limit of {limit_text}."
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
        f"or {remedy}; nothing was run."
    )


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
    fewer = "run fewer associations at once (-j), " if jobs > 1 else ""
    raise MosaicRefused(
        f"{estimate.product}: does not fit in memory even in the pipeline's on-disk mode: "
        f"{numbers}; the budget is {budget_source}. The mosaic is "
        f"{_shape_text(estimate.shape)}. Raise the memory budget (--max-memory), {fewer}"
        "split the association, or make the mosaic smaller "
        "(--set steps.resample.pixel_scale_ratio=2); resample's enable_ctx=false, "
        "enable_err=false and report_var=false also save memory but drop products' arrays."
        " Nothing was run."
    )


def _shape_text(shape) -> str:
    return f"{shape[1]} x {shape[0]} pixels" if shape else "not made (resample skipped)"
