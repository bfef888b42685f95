"""Image3 at scale: the output mosaic and the memory it needs, estimated before anything runs."""

from .grid import (
    DEFAULT_MEMORY_FRACTION,
    GRID_PARAMETERS,
    Footprint,
    MemoryPlan,
    MosaicEstimate,
    MosaicRefused,
    decide,
    default_max_mosaic_pixels,
    estimate_association,
    estimate_memory,
    far_inputs,
    format_bytes,
    memory_budget,
    mosaic_shape,
    parse_size,
    read_footprint,
    spec_bool,
)

__all__ = [
    "DEFAULT_MEMORY_FRACTION", "Footprint", "MosaicEstimate", "MemoryPlan", "read_footprint",
    "mosaic_shape", "far_inputs", "estimate_memory", "estimate_association", "memory_budget",
    "parse_size", "format_bytes", "decide",
    "default_max_mosaic_pixels", "GRID_PARAMETERS", "MosaicRefused", "spec_bool",
]
