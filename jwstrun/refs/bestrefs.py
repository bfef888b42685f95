"""Best references for many exposures with one crds call per group of equivalent inputs.

:func:`resolve_bestrefs` asks crds once per distinct set of *matching
parameters*.  Which header keywords matter is read from the context's own
rmaps (``rmap.get_required_parkeys``).  Dates are not compared literally: the
UseAfter dates of those rmaps cut time into intervals, and every exposure in
the same interval gets the same answer, so 500 exposures of one detector and
filter taken over a week cost one crds call, not 500.

Where the datamodel schema keeps each matching key in a FITS file is read
from crds' flat schema once and cached on disk (:func:`clear_schema_cache`
empties the in-process copy).
"""

from __future__ import annotations

import bisect
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._pipeline_cache import cached_json, pipeline_cache_path
from ..errors import CrdsError, InputError
from ..inputs import expand_inputs
from ..stages import STAGES, get_stage, stages_accepting
from . import _crds
from .reftypes import reftypes_for

__all__ = ["RefGroup", "Resolution", "resolve_bestrefs", "clear_schema_cache"]

log = logging.getLogger(__name__)


@dataclass
class RefGroup:
    """Exposures that share every CRDS matching parameter (and UseAfter interval)."""

    instrument: str
    parameters: dict[str, str]
    exposures: list[str]
    pipelines: tuple[str, ...]
    dates: tuple[str, str]
    references: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def files(self) -> list[str]:
        """Reference basenames this group needs (N/A excluded)."""
        return sorted({v for v in self.references.values() if v != "N/A"})

    @property
    def label(self) -> str:
        keys = ("DETECTOR", "FILTER", "PUPIL", "SUBARRAY", "EXP_TYPE")
        parts = [self.instrument] + [self.parameters[k] for k in keys if self.parameters.get(k)]
        return " ".join(parts)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["label"] = self.label
        data["n_exposures"] = len(self.exposures)
        data["dates"] = list(self.dates)
        data["pipelines"] = list(self.pipelines)
        return data


@dataclass
class Resolution:
    """Best references for a set of exposures under one context."""

    context: str
    crds_path: str
    groups: list[RefGroup]
    n_exposures: int
    n_crds_calls: int
    reftypes: dict[str, list[str]]

    @property
    def files(self) -> list[str]:
        return sorted({name for g in self.groups for name in g.files})

    @property
    def problems(self) -> list[str]:
        """One sentence per reftype a pipeline needs but crds cannot resolve."""
        out = []
        for group in self.groups:
            for reftype, message in sorted(group.errors.items()):
                out.append(
                    f"{group.exposures[0]}: no {reftype} reference under {self.context} "
                    f"({group.label}): {message}"
                )
        return out

    def unresolved(self) -> dict[str, str]:
        """{absolute exposure path: one sentence} for every exposure crds cannot serve."""
        out = {}
        for group in self.groups:
            by_message: dict[str, list[str]] = {}
            for reftype, message in sorted(group.errors.items()):
                by_message.setdefault(message, []).append(reftype)
            if by_message:
                reason = "; ".join(f"no {', '.join(types)} reference under {self.context} "
                                   f"({group.label}): {message}"
                                   for message, types in by_message.items())
                reason = (f"CRDS: {reason.rstrip('.')}. Check the exposure's header or pin "
                          "another context with --crds-context.")
                out.update((os.path.abspath(e), reason) for e in group.exposures)
        return out

    def references_for(self, exposure: str | os.PathLike) -> dict[str, str]:
        """The {reftype: basename or N/A} chosen for one exposure."""
        target = os.path.abspath(exposure)
        for group in self.groups:
            if target in (os.path.abspath(e) for e in group.exposures):
                return dict(group.references)
        raise KeyError(str(exposure))

    def to_dict(self) -> dict:
        return {
            "context": self.context,
            "crds_path": self.crds_path,
            "n_exposures": self.n_exposures,
            "n_groups": len(self.groups),
            "n_crds_calls": self.n_crds_calls,
            "reftypes": self.reftypes,
            "files": self.files,
            "problems": self.problems,
            "groups": [g.to_dict() for g in self.groups],
        }


@dataclass
class _KeyPlan:
    """For one instrument + reftype set: which keys to compare exactly, how to bucket dates."""

    exact: list[str]  # parkeys (META.X.Y) whose values must match exactly
    date_keys: list[str]  # parkeys only used by UseAfter selectors
    breakpoints: list[str]  # all UseAfter dates, reformatted, sorted
    known: set[str]  # reftypes the imap lists


_FITS_OVERRIDES = {
    "META.INSTRUMENT.NAME": "INSTRUME",
    "META.OBSERVATION.DATE": "DATE-OBS",
    "META.OBSERVATION.TIME": "TIME-OBS",
    "META.TELESCOPE": "TELESCOP",
}


_SCHEMA_CACHE_FORMAT = 1


class _SchemaLocations:
    """{datamodel key: [FITS keyword, HDU]}, loaded once per process (from the disk cache)."""

    def __init__(self) -> None:
        self.locations: dict[str, list[str]] | None = None

    def clear(self) -> None:
        self.locations = None

    def get(self) -> dict[str, list[str]]:
        if self.locations is None:
            self.locations = cached_json(
                pipeline_cache_path("schema", str(_SCHEMA_CACHE_FORMAT), ("stdatamodels", "crds")),
                _crds.flat_schema_locations,
                lambda data: isinstance(data, dict) and "META.INSTRUMENT.NAME" in data,
            )
        return self.locations


_schema = _SchemaLocations()


def clear_schema_cache() -> None:
    """Forget the FITS locations of the matching keys read in this process."""
    _schema.clear()


def _fits_location(parkey: str) -> tuple[str, str]:
    """(FITS keyword, HDU name) where the JWST datamodel schema keeps ``parkey``.

    The schema's locations are cached on disk per crds/stdatamodels install, so
    a run's parent process does not load the datamodel schemas (docs/benchmarks.md).
    """
    keyword, hdu = _schema.get().get(parkey, [None, "PRIMARY"])
    return _FITS_OVERRIDES.get(parkey) or keyword or parkey.rsplit(".", 1)[-1], hdu


def _fits_keyword(parkey: str) -> str:
    return _fits_location(parkey)[0]


def _key_plan(pmap, instrument: str, reftypes: tuple[str, ...]) -> _KeyPlan:
    """Which parkeys decide the answer for these reftypes (LookupError: no rules)."""
    imap = _crds.get_imap(pmap, instrument)
    known = set(imap.selections.keys())
    exact: set[str] = {"META.INSTRUMENT.NAME"}
    dated: set[str] = set()
    dates: set[str] = set()
    for reftype in reftypes:
        if reftype not in known:
            continue
        rmap = _crds.get_rmap(imap, reftype)
        if rmap is None:  # N/A or omitted for every input
            continue
        required = {str(k).upper() for k in rmap.get_required_parkeys()}
        # parkey is one tuple per selector class (Match, UseAfter): only the keys that feed
        # UseAfter are bucketed by date, everything else must match exactly
        classes = tuple(rmap.header.get("classes", ("Match", "UseAfter")))
        levels = rmap.parkey if rmap.parkey and isinstance(rmap.parkey[0], tuple) else (rmap.parkey,)
        dated_here = {str(k).upper() for cls, keys in zip(classes, levels) if cls == "UseAfter"
                      for k in keys}
        exact_here = {str(k).upper() for cls, keys in zip(classes, levels) if cls != "UseAfter"
                      for k in keys}
        _crds.useafter_dates(rmap.selector, dates)
        # rmap-level expressions (relevance, omit) may name further keys: compare them exactly
        for name in ("rmap_relevance", "rmap_omit", "parkey_relevance"):
            text = str(rmap.header.get(name, ""))
            required |= set(re.findall(r"META(?:\.[A-Z0-9_]+)+", text.upper()))
        dated_only = dated_here - exact_here
        exact |= required - dated_only
        dated |= dated_only
    exact -= {"REFTYPE"}
    dated -= exact
    return _KeyPlan(sorted(exact), sorted(dated), sorted(dates), known)


class _HeaderSource:
    """Values of CRDS parkeys for one input: a FITS file, a FITS-keyword dict, or crds parameters."""

    def __init__(self, item, index: int):
        from ..products import product_type, read_primary_header

        self.ext_headers: dict = {}
        self.path = None
        if isinstance(item, (str, os.PathLike)):
            self.path = Path(item)
            self.label = str(item)
            self.primary = read_primary_header(self.path)
            self.meta = None
            self.product = product_type(self.path, self.primary)
        elif isinstance(item, dict) and any(str(k).upper().startswith("META.") for k in item):
            self.label = str(item.get("path", f"header[{index}]"))
            self.meta = {str(k).upper(): v for k, v in item.items()}
            self.primary = None
            self.product = item.get("product_type")
        elif hasattr(item, "get") and hasattr(item, "keys"):
            self.label = str(item.get("path", f"header[{index}]")) if isinstance(item, dict) else f"header[{index}]"
            self.primary = item
            self.meta = None
            self.product = product_type(self.label, item) if isinstance(item, dict) else None
        else:
            raise InputError(f"cannot read CRDS parameters from {item!r}: give a FITS path or a header.")

    def get(self, parkey: str):
        if self.meta is not None:
            return self.meta.get(parkey, "UNDEFINED")
        keyword, hdu = _fits_location(parkey)
        if keyword in self.primary:
            return self.primary[keyword]
        if hdu != "PRIMARY" and self.path is not None:
            # a few model keys (none of the usual imaging ones) live in the SCI header
            if hdu not in self.ext_headers:
                from astropy.io import fits

                try:
                    self.ext_headers[hdu] = fits.getheader(self.path, hdu)
                except Exception:  # noqa: BLE001 - no such extension: the key is undefined
                    self.ext_headers[hdu] = {}
            if keyword in self.ext_headers[hdu]:
                return self.ext_headers[hdu][keyword]
        return "UNDEFINED"

    @property
    def instrument(self) -> str:
        value = self.get("META.INSTRUMENT.NAME")
        if not value or value == "UNDEFINED":
            raise InputError(f"{self.label}: no INSTRUME keyword, so CRDS cannot select references. "
                             "Is this a JWST product?")
        return str(value).strip().upper()


def _value(value) -> str | int | float | bool:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (bool, int, float)):
        return value
    return str(value)


def _default_stages(product: str | None) -> tuple[str, ...]:
    """The stages an input of this product type will go through: those accepting it
    and where their products go next (rate -> image2, image3); every stage when the
    type is unknown."""
    names: list[str] = []
    for stage in stages_accepting(product or ""):
        while stage is not None and stage.name not in names:
            names.append(stage.name)
            stage = get_stage(stage.next_stage) if stage.next_stage else None
    return tuple(names) or tuple(STAGES)


def _input_items(exposures) -> list:
    """Headers as given; paths, globs, directories and associations -> exposure files."""
    items = list(exposures)
    if items and all(isinstance(i, (str, os.PathLike)) for i in items):
        suffixes = tuple(dict.fromkeys(s for stage in STAGES.values() for s in stage.accepts))
        items = [str(p) for p in expand_inputs(items, suffixes=suffixes, members=True)]
    if not items:
        raise InputError("no exposures given.")
    return items


@dataclass
class _Pending:
    """One group being formed: its plan, reftypes and the parameters crds is asked with."""

    group: RefGroup
    plan: _KeyPlan
    types: tuple[str, ...]
    header: dict


class _Grouper:
    """Sorts inputs into groups that share every matching parameter and UseAfter interval."""

    def __init__(self, pmap, context: str, reftypes, pipelines, steps: dict | None):
        self.pmap = pmap
        self.context = context
        self.reftypes = reftypes
        self.pipelines = tuple(pipelines) if pipelines else None
        self.steps = steps
        self.types_by_pipeline: dict[str, list[str]] = {}
        self.plans: dict[tuple, _KeyPlan] = {}
        self.pending: dict[tuple, _Pending] = {}

    def types_for(self, pipes: tuple[str, ...]) -> tuple[str, ...]:
        if self.reftypes is not None:
            return tuple(dict.fromkeys(t.lower() for t in self.reftypes))
        out: list[str] = []
        for name in pipes:
            if name not in self.types_by_pipeline:
                self.types_by_pipeline[name] = reftypes_for(name, steps=self.steps)
            out.extend(self.types_by_pipeline[name])
        return tuple(dict.fromkeys(out))

    def plan_for(self, source: _HeaderSource, instrument: str, types: tuple[str, ...]) -> _KeyPlan:
        plan_key = (instrument, types)
        if plan_key not in self.plans:
            try:
                self.plans[plan_key] = _key_plan(self.pmap, instrument, types)
            except LookupError as exc:
                raise CrdsError(f"{source.label}: context {self.context} has no rules for "
                                f"instrument {instrument} ({exc}). Pin another context with "
                                "--crds-context.") from exc
        return self.plans[plan_key]

    def add(self, index: int, item) -> None:
        source = _HeaderSource(item, index)
        instrument = source.instrument
        pipes = self.pipelines or _default_stages(source.product)
        types = self.types_for(pipes)
        plan = self.plan_for(source, instrument, types)
        exact_values = tuple((k, _value(source.get(k))) for k in plan.exact)
        date_values = tuple(str(_value(source.get(k))) for k in plan.date_keys)
        raw_date = " ".join(date_values)
        try:
            bucket: object = bisect.bisect_right(plan.breakpoints, _crds.reformat_date(raw_date)) \
                if plan.date_keys else 0
        except Exception:  # noqa: BLE001 - unparsable date: let crds judge this input on its own
            bucket = ("raw", raw_date)
        key = ((instrument, types), exact_values, bucket)
        if key not in self.pending:
            params = {_fits_keyword(k): str(v) for k, v in exact_values if k != "META.INSTRUMENT.NAME"}
            group = RefGroup(instrument=instrument, parameters=params, exposures=[],
                             pipelines=pipes, dates=(raw_date, raw_date))
            header = dict(exact_values)
            header.update(zip(plan.date_keys, date_values))
            self.pending[key] = _Pending(group, plan, types, header)
        group = self.pending[key].group
        group.exposures.append(source.label)
        group.pipelines = tuple(dict.fromkeys(group.pipelines + pipes))
        if raw_date:
            group.dates = (min(group.dates[0], raw_date), max(group.dates[1], raw_date))


def _resolve_group(pending: _Pending, pmap, context: str) -> None:
    """One crds call for the group's representative parameters; answers into the group."""
    group, plan = pending.group, pending.plan
    known = [t for t in pending.types if t in plan.known]
    try:
        best = _crds.get_recommendations(pending.header, known, context) if known else {}
    except Exception as exc:  # noqa: BLE001
        raise CrdsError(f"{group.exposures[0]}: crds could not compute best references "
                        f"under {context}: {exc}") from exc
    for reftype in pending.types:
        if reftype not in plan.known:
            # an unlisted pars-* type only means "no parameter file": stpipe uses the
            # step's defaults; any other type makes stpipe's prefetch raise
            group.references[reftype] = "N/A"
            if not reftype.startswith("pars-"):
                group.errors[reftype] = (f"reftype {reftype!r} is not listed in "
                                         f"{pmap.get_imap(group.instrument).basename}; the "
                                         "pipeline's prefetch will fail")
            continue
        value = best.get(reftype)
        if value is None:  # OMIT
            group.references[reftype] = "N/A"
        elif isinstance(value, str) and value.upper().startswith("NOT FOUND"):
            group.references[reftype] = "N/A"
            if "n/a" not in value.lower():
                group.errors[reftype] = value[len("NOT FOUND"):].strip()
        else:
            group.references[reftype] = os.path.basename(str(value))


def resolve_bestrefs(
    exposures,
    context: str | None = None,
    reftypes=None,
    pipelines=None,
    steps: dict | None = None,
) -> Resolution:
    """Best references for ``exposures`` with one crds call per group of equivalent inputs.

    Parameters
    ----------
    exposures : iterable
        Paths (files, globs, directories or association JSON), FITS headers, or
        dicts of crds parameters (``META.*`` keys).
    context : str, optional
        A .pmap to pin; default :func:`context_in_use`.
    reftypes : list of str, optional
        Reference types to resolve for every input.  Default: those of
        ``pipelines`` (:func:`reftypes_for`), including ``pars-*`` types.
    pipelines : tuple of str, optional
        Stage names.  Default per input: the stages that accept its product type
        and the stages after them (rate -> image2 and image3; cal/crf -> image3).
    steps : dict, optional
        Step overrides (``{"resample": {"skip": True}}``) used to derive reftypes.
    """
    items = _input_items(exposures)
    ctx = _crds.context_in_use(context)
    pmap = _crds.load_context(ctx)
    grouper = _Grouper(pmap, ctx, reftypes, pipelines, steps)
    for index, item in enumerate(items):
        grouper.add(index, item)
    for pending in grouper.pending.values():
        _resolve_group(pending, pmap, ctx)
    ordered = sorted((p.group for p in grouper.pending.values()), key=lambda g: (g.label, g.dates))
    n_calls = len(grouper.pending)
    log.debug("resolved %d exposures in %d groups with %d crds calls", len(items), len(ordered), n_calls)
    return Resolution(
        context=ctx,
        crds_path=_crds.crds_path(),
        groups=ordered,
        n_exposures=len(items),
        n_crds_calls=n_calls,
        reftypes={name: list(types) for name, types in grouper.types_by_pipeline.items()},
    )
