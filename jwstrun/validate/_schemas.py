"""What a valid product looks like: layouts, required step statuses, schema tables.

The array layout (EXTNAME, dtype, dimensionality) comes from the installed
stdatamodels schemas (``image.schema``, ``cube.schema``, ``segmap.schema``,
``int_times.schema``, ``variance.schema``) and the step-name -> status-keyword
map from ``core.schema``; both are read as YAML without importing stdatamodels
and kept in caches that :func:`clear_caches` empties (a new stdatamodels
installed under a long-lived session).  Which of those extensions each product
type must have is decided here (:data:`PRODUCT_LAYOUTS`); which steps must have
run comes from the stage table (:attr:`jwstrun.stages.Stage.checked_steps`).
"""

from __future__ import annotations

import functools
from pathlib import Path

from ..errors import InputError
from ..stages import get_stage

__all__ = [
    "VALIDATED_TYPES",
    "PRODUCT_LAYOUTS",
    "schema_layout",
    "step_status_keys",
    "clear_caches",
]

VALIDATED_TYPES = (
    "rate",
    "rateints",
    "bsub",
    "bsubints",
    "cal",
    "calints",
    "crf",
    "crfints",
    "i2d",
    "segm",
    "cat",
)

# Product type -> (datamodel whose schema gives dtypes/ndim, extensions that must be
# there, extensions a current jwst writes whose absence is only suspicious).
# VAR_* are "expected" rather than required: older products and some simulated
# inputs lack them and the pipeline still runs.  The i2d row follows the modern
# layout (SCI ERR CON WHT VAR_*), not the old notes' table (SCI CON WHT HDRTAB).
PRODUCT_LAYOUTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "rate": ("ImageModel", ("SCI", "ERR", "DQ"), ("VAR_POISSON", "VAR_RNOISE")),
    "rateints": ("CubeModel", ("SCI", "ERR", "DQ", "INT_TIMES"), ("VAR_POISSON", "VAR_RNOISE")),
    "bsub": ("ImageModel", ("SCI", "ERR", "DQ"), ("VAR_POISSON", "VAR_RNOISE")),
    "bsubints": ("CubeModel", ("SCI", "ERR", "DQ", "INT_TIMES"), ("VAR_POISSON", "VAR_RNOISE")),
    "cal": ("ImageModel", ("SCI", "ERR", "DQ"), ("VAR_POISSON", "VAR_RNOISE", "VAR_FLAT")),
    "calints": (
        "CubeModel",
        ("SCI", "ERR", "DQ", "INT_TIMES"),
        ("VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"),
    ),
    "crf": ("ImageModel", ("SCI", "ERR", "DQ"), ("VAR_POISSON", "VAR_RNOISE", "VAR_FLAT")),
    "crfints": (
        "CubeModel",
        ("SCI", "ERR", "DQ", "INT_TIMES"),
        ("VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"),
    ),
    "i2d": ("ImageModel", ("SCI", "CON", "WHT"), ("ERR", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT")),
    "segm": ("SegmentationMapModel", ("SCI",), ()),
}

# The steps each stage must have completed in the products it writes (the stage rows).
_DETECTOR1_STEPS = get_stage("detector1").checked_steps
_IMAGE2_STEPS = get_stage("image2").checked_steps
_IMAGE3_STEPS = get_stage("image3").checked_steps

# Steps that must read COMPLETE for a product of each type to be what it claims.
_REQUIRED_STEPS: dict[str, tuple[str, ...]] = {
    "rate": (),
    "rateints": (),
    "bsub": ("bkg_subtract",),
    "bsubints": ("bkg_subtract",),
    "cal": _IMAGE2_STEPS,
    "calints": _IMAGE2_STEPS,
    "crf": _IMAGE2_STEPS + _IMAGE3_STEPS,
    # calwebb_tso3 flags outliers without tweakreg/skymatch
    "crfints": _IMAGE2_STEPS + ("outlier_detection",),
    "i2d": _IMAGE2_STEPS + ("resample",),
    "segm": _IMAGE2_STEPS + ("resample",),
    "cat": (),
}

_COUNTRATE_TYPES = {"rate", "rateints", "bsub", "bsubints"}
_CALIBRATED_TYPES = {"cal", "calints", "crf", "crfints"}
_SURFACE_BRIGHTNESS_TYPES = _CALIBRATED_TYPES | {"i2d"}
_NEEDS_WCS = _SURFACE_BRIGHTNESS_TYPES | {"segm"}


def _schema_dir() -> Path:
    """stdatamodels' JWST schema folder, found without importing stdatamodels (a slow import)."""
    import importlib.util

    spec = importlib.util.find_spec("stdatamodels")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "stdatamodels is not installed; install jwstrun's dependencies "
            "(pip install jwstrun) to validate products."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "jwst" / "datamodels" / "schemas"


@functools.lru_cache(maxsize=None)
def _load_schema(name: str) -> dict:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    path = _schema_dir() / f"{name}.yaml"
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=loader)


def _collect_arrays(schema: dict, out: dict) -> None:
    """Top-level properties with ``fits_hdu`` (arrays and tables, not ``meta``)."""
    for part in schema.get("allOf", []):
        ref = part.get("$ref") if isinstance(part, dict) else None
        if ref:
            # core.schema holds metadata keywords only; it is 2,400 lines of YAML
            if ref != "core.schema":
                _collect_arrays(_load_schema(ref), out)
        elif isinstance(part, dict):
            _collect_arrays(part, out)
    for attribute, spec in (schema.get("properties") or {}).items():
        if attribute == "meta" or not isinstance(spec, dict) or "fits_hdu" not in spec:
            continue
        out.setdefault(
            spec["fits_hdu"],
            {
                "attribute": attribute,
                "datatype": spec.get("datatype"),
                "ndim": spec.get("ndim"),
                "max_ndim": spec.get("max_ndim"),
            },
        )


_MODEL_SCHEMAS = {
    "ImageModel": "image.schema",
    "CubeModel": "cube.schema",
    "SegmentationMapModel": "segmap.schema",
}


@functools.lru_cache(maxsize=None)
def schema_layout(model: str) -> dict[str, dict]:
    """EXTNAME -> {attribute, datatype, ndim, max_ndim} from the installed schema of ``model``."""
    layout: dict[str, dict] = {}
    _collect_arrays(_load_schema(_MODEL_SCHEMAS[model]), layout)
    return layout


@functools.lru_cache(maxsize=1)
def _cal_step_keywords() -> dict[str, str]:
    """Step name (``flat_field``) -> status keyword (``S_FLAT``) from core.schema."""
    found: dict[str, str] = {}

    def walk(node):
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict) and "cal_step" in props:
                for name, spec in props["cal_step"].get("properties", {}).items():
                    if isinstance(spec, dict) and spec.get("fits_keyword"):
                        found[name] = spec["fits_keyword"]
                return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    walk(_load_schema("core.schema"))
    return found


def step_status_keyword(alias: str, fits_keyword: str | None = None) -> str | None:
    """The header keyword a step records its status in: the class's own
    ``fits_keyword`` (snowblind's steps), else the one jwst's core schema gives
    ``meta.cal_step.<alias>`` (``clean_flicker_noise`` -> ``S_CLNFNS``); None when it
    has none.  The one home of that rule (``jwstrun step`` and a profile's ``before:``)."""
    if fits_keyword:
        return str(fits_keyword)
    return _cal_step_keywords().get(alias or "")


def recorded_status(primary, keyword: str, alias: str) -> str | None:
    """The status (``COMPLETE``, ``SKIPPED``...) step ``alias`` recorded in a product's
    primary header under ``keyword``, None when it recorded none.

    snowblind's ``persist`` records S_PERSIS, the keyword jwst's schema gives its own
    ``persistence`` step of calwebb_detector1, whose value jwst writes over persist's
    in every product made from a calwebb_detector1 ``_rate`` (``SKIPPED`` without
    trap references).  For a keyword the schema gives another step, the step's own
    HISTORY entry decides (snowblind adds ``snowblind 1.0.1 PersistenceFlagStep:
    COMPLETE``; the last entry of the class wins), else the keyword's value."""
    value = str(primary.get(keyword, "")).strip().upper() or None
    others = {name for name, key in _cal_step_keywords().items() if key == keyword} - {alias}
    if value == "COMPLETE" or not others:
        return value
    from .._step_registry import registered_steps

    entry = registered_steps().get(alias)
    if entry is None:
        return value
    class_name = entry.class_name.rpartition(".")[2]
    history = [str(card).strip() for card in primary.get("HISTORY", None) or ()]
    for text in reversed(history):
        head, _, status = text.rpartition(": ")
        if head.split(" ")[-1:] == [class_name] and status.strip():
            return status.strip().upper()
    return value


def step_status_keys(steps) -> set[str]:
    """Turn step names (``tweakreg``) or status keys (``S_TWKREG``) into status keys.

    Raises :class:`InputError` for a name that is neither.
    """
    mapping = _cal_step_keywords()
    known_keys = set(mapping.values())
    keys = set()
    for step in steps or ():
        text = str(step).strip()
        if text.upper() in known_keys:
            keys.add(text.upper())
        elif text.lower() in mapping:
            keys.add(mapping[text.lower()])
        else:
            raise InputError(
                f"unknown pipeline step {text!r}: give a step name such as tweakreg, "
                "skymatch, outlier_detection, bkg_subtract, or a status keyword such as S_TWKREG."
            )
    return keys


def clear_caches() -> None:
    """Forget the schemas read from the installed stdatamodels (read again on next use)."""
    _load_schema.cache_clear()
    schema_layout.cache_clear()
    _cal_step_keywords.cache_clear()
