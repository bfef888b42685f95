"""The memory model of one image3 worker, and the memory budget it must fit.

:func:`estimate_memory` gives the peak bytes of a worker in the pipeline's
in-memory mode and in its on-disk mode (``in_memory=False``) from the input
and output pixel counts; :func:`memory_budget` is ``--max-memory`` or a safe
share of what this host has available (:mod:`jwstrun._system`).
"""

from __future__ import annotations

import math
import re

from .._system import available_memory, physical_memory
from ..errors import ConfigError

__all__ = ["DEFAULT_MEMORY_FRACTION", "estimate_memory", "estimate_tile_memory",
           "default_max_mosaic_pixels", "memory_budget", "parse_size", "format_bytes"]

#: Share of the available RAM that is the default memory budget.
DEFAULT_MEMORY_FRACTION = 0.8

# ---- the memory model (bytes per pixel unless said otherwise).  The terms are the
# arrays jwst 3.0 allocates; the sizes were fitted to the peak RSS measured, step by
# step, in both modes (scripts/bench_image3_memory.py checks them; the measurements
# are in docs/benchmarks.md, "image3: in memory vs on disk", and docs/image3-scale.md).
#: a worker with jwst imported and the association opened
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
#: a sky tile: the tile pipeline copies the resampled tile (with its margin: SCI, ERR,
#: WHT, CON, three variances) before cropping it to its core (runner._tile_pipeline)
_TILE_COPY_PER_OUTPUT_PIXEL = 32.0
#: a sky tile task that is the first its worker runs also imports source_catalog's
#: packages and builds stpipe's and ASDF's caches: measured up to 45 MB above the same
#: tile later in the worker (tests/test_tiles_scale.py: 409 against 358-366 MB)
_TILE_FIRST_IN_WORKER = 50e6

_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)


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
    """'1.63 GB' style (powers of 1000, as in docs/benchmarks.md); kB and bytes below
    1 MB, so that a small size never reads as '0 MB'."""
    if value is None:
        return "-"
    if value >= 1e12:
        return f"{value / 1e12:.1f} TB"
    if value >= 1e9:
        return f"{value / 1e9:.2f} GB"
    if value >= 1e6:
        return f"{value / 1e6:.0f} MB"
    if value >= 1e3:
        return f"{value / 1e3:.0f} kB"
    return f"{value:.0f} bytes"


def memory_budget(max_memory: int | str | None = None) -> tuple[int, str]:
    """``(bytes, where it came from)``: ``max_memory`` or a safe share of the available RAM.

    Where it came from is ``--max-memory 8.00 GB`` or ``the default, 80% of 12.34 GB
    available memory``: the refusals quote it, so they never name an option not given.
    """
    if max_memory is not None:
        value = parse_size(max_memory)
        return value, f"--max-memory {format_bytes(value)}"
    found = available_memory()
    if found is None:
        found = (physical_memory(), "physical memory")
    available, source = found
    value = int(available * DEFAULT_MEMORY_FRACTION)
    share = f"{DEFAULT_MEMORY_FRACTION:.0%} of {format_bytes(available)} {source}"
    return value, f"the default, {share}"


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


def estimate_tile_memory(input_pixels_sum, n_inputs, biggest_input, output_pixels, *,
                         catalog: bool = True):
    """Estimated peak bytes of one sky-tile task (resample, then source_catalog, on the
    tile with its margin): :func:`estimate_memory` in memory without outlier_detection,
    plus the copy of the resampled tile the tile pipeline crops, written on sums so that
    it takes numpy arrays (one value per tile) as well as numbers.  The tile's resample
    holds every overlapping ``_crf`` file it has read."""
    import numpy as np

    n_con = np.ceil(np.asarray(n_inputs) / 32.0)
    resample = ((_RESAMPLE_PER_OUTPUT_PIXEL + _TILE_COPY_PER_OUTPUT_PIXEL
                 + _CON_PER_OUTPUT_PIXEL_PER_32 * n_con)
                * np.asarray(output_pixels, dtype=float)
                + _STEP_PER_INPUT_PIXEL[False] * np.asarray(biggest_input, dtype=float))
    phase = (np.maximum(resample, _CATALOG_PER_OUTPUT_PIXEL * np.asarray(output_pixels, float))
             if catalog else resample)
    total = (_BASE + _TILE_FIRST_IN_WORKER
             + _HELD_IN_MEMORY * np.asarray(input_pixels_sum, dtype=float) + phase)
    return total.astype(np.int64) if np.ndim(total) else int(total)


def default_max_mosaic_pixels(budget: int) -> int:
    """The largest mosaic whose own arrays (on disk, no inputs held) fit the budget."""
    per_pixel = max(_RESAMPLE_PER_OUTPUT_PIXEL + _CON_PER_OUTPUT_PIXEL_PER_32,
                    _CATALOG_PER_OUTPUT_PIXEL)
    return max(1, int(budget / per_pixel))
