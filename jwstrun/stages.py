"""The stages jwstrun can run, as data: one row per stpipe Step or Pipeline.

This table is the only place that names the jwst pipeline classes.  The runner
(planning, resume, manifest), the CRDS reference planning, the profiles and the
report read a row instead of branching on a pipeline's name, so adding a stage
is adding a row (docs/architecture.md, "Adding a stage").

A row says:

- ``step_class``: the stpipe class by import path (``package.module.Class``);
  any installed Step or Pipeline works, including ones other packages register
  through stpipe's entry points;
- ``alias``: its stpipe alias (``strun calwebb_image2``, ``pars-`` references,
  ``<name>_<alias>.asdf`` parameter files);
- ``accepts``: the product types (file suffixes) it takes as input;
- ``grouping``: how inputs become tasks -- ``"exposure"`` (one task per science
  exposure or Level-2 association), ``"association"`` (one task per Level-3
  association), ``"tile"`` (one per sky tile) or ``"set"`` (one over the whole
  set, in time order);
- ``writes``: the ``<product>_<suffix>`` files a task may write into OUTDIR;
- ``member_writes``: files named after each input member instead
  (``<member>_<asn_id>_crf.fits`` for image3); anything else a task writes (a
  step's ``save_catalogs``, ``save_intermediate_results``...) is an intermediate
  file, kept in ``OUTDIR/intermediate/<task-id>/`` (:mod:`jwstrun.runner._intermediates`);
- ``memory``: (base bytes, bytes per full-frame-equivalent input pixel set) of
  one worker running one task, for the default ``-j``: fitted to the peaks that
  scripts/bench_profiles.py and scripts/bench_image3_memory.py measure
  (docs/benchmarks.md);
- ``next_stage``: where its products go next, for error messages that point a
  user who gave a file to the wrong stage the right way;
- ``checked_steps``: the steps whose ``S_*`` status ``jwstrun validate`` requires
  COMPLETE in the products the stage writes (on top of the earlier stage's;
  steps that skip themselves by design, such as resample in image2, are left out).
- ``asn_level``: the level of the associations it takes (2 or 3; None: none).
- ``core_steps``: its steps that can use several cores themselves (``maximum_cores``:
  jump and ramp_fit of calwebb_detector1); jwstrun runs either several exposures at
  once or one exposure with these steps on several cores, never both
  (:mod:`jwstrun.runner._cores`).
- ``exp_types``: the EXP_TYPEs it reduces; other exposures among its inputs (target
  acquisitions, grism, coronagraphy...) are left out with one summary line
  (:mod:`jwstrun.selection`).

:data:`EXTERNAL_INPUTS` names the product types of pipelines jwstrun has no stage for
(none today: ``_uncal`` files have the detector1 row): found among a stage's inputs they
are left out with what to run instead, as the raw inputs of a stage row are
(:func:`raw_types`: ``_uncal`` among image2's inputs).

Nothing here imports jwst: ``jwstrun --help`` and planning stay fast.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from dataclasses import dataclass, field

from .errors import InputError

__all__ = ["Stage", "STAGES", "FULL_FRAME_PIXELS", "IMAGING_EXP_TYPES", "EXTERNAL_INPUTS",
           "SET_STEPS", "STEP_INPUTS", "StepError", "raw_types",
           "get_stage", "stage_names", "stages_accepting", "step_stage", "resolve_step_class",
           "step_aliases"]

#: Pixels of one NIRCam/MIRI full frame; the unit of the memory model.
FULL_FRAME_PIXELS = 2048 * 2048

#: Direct imaging: the EXP_TYPEs of jwst's Level-3 image rule (``Asn_Lv3Image``'s
#: ``Constraint_Image`` in jwst/associations/lib/rules_level3_base.py) without NIRSpec's
#: engineering ``NRS_MIMF``; tests/test_asn.py checks them against the installed jwst.
#: Coronagraphy (coron3) and time series (tso3) have Level-3 pipelines of their own.
IMAGING_EXP_TYPES = ("NRC_IMAGE", "MIR_IMAGE", "NIS_IMAGE", "FGS_IMAGE")

#: Product type -> (strun alias of the pipeline that takes it, product type it writes),
#: for pipelines jwstrun has no stage row for yet.  Such files among a stage's inputs
#: are left out with what to run (jwstrun.selection); a stage row taking them replaces
#: the entry (the detector1 row replaced ``"uncal": ("calwebb_detector1", "rate")``).
EXTERNAL_INPUTS: dict[str, tuple[str, str]] = {}

#: stpipe steps (by their registered class name) that work on a set of exposures at
#: once, not one: ``jwstrun step`` runs them as one task over the set in time order;
#: as a correction before a stage, each exposure's task hands them the exposures of
#: the set they need.  Value: what they need from the set, for messages.
SET_STEPS: dict[str, str] = {
    # flags pixels saturated in an earlier exposure of the same detector (its _jump file)
    "snowblind.PersistenceFlagStep": "the earlier exposures of the same detector",
}

#: The product types a step takes when ``jwstrun step`` runs it, keyed like
#: :data:`SET_STEPS` (the package and the class name, so ``jwst.step.X`` and
#: ``jwst.x.x_step.X`` are the same key).  Steps not listed take any calibrated or
#: uncalibrated image product (:data:`_ANY_IMAGE`): their own checks decide.
STEP_INPUTS: dict[str, tuple[str, ...]] = {
    # rate and ramp data (ramps are calwebb_detector1's business: jwstrun takes rates)
    "jwst.CleanFlickerNoiseStep": ("rate", "rateints"),
    # jump-flagged data: the rate products of calwebb_detector1
    "snowblind.SnowblindStep": ("rate", "rateints"),
    # rate or cal products, with their _jump files beside them
    "snowblind.PersistenceFlagStep": ("rate", "rateints", "cal", "calints"),
    "jwst.ResampleStep": ("cal", "calints", "crf"),
    "jwst.TweakRegStep": ("cal", "crf"),
}
_ANY_IMAGE = ("rate", "rateints", "bsub", "bsubints", "cal", "calints", "crf", "crfints")

#: What a step run on its own over one exposure needs per worker: (base, per full frame).
_STEP_MEMORY = (0.30e9, 0.60e9)


class StepError(InputError):
    """``jwstrun step NAME``: NAME is not an stpipe Step or Pipeline this installation has."""


@dataclass(frozen=True)
class Stage:
    """One stage the runner can run (see the module docstring for each field)."""

    name: str
    step_class: str
    alias: str
    accepts: tuple[str, ...]
    grouping: str
    writes: tuple[str, ...]
    memory: tuple[float, float]
    member_writes: tuple[str, ...] = ()
    next_stage: str | None = None
    asn_level: int | None = None
    #: other names people type for it (for lookups and "did you mean" hints)
    aliases: tuple[str, ...] = field(default=())
    checked_steps: tuple[str, ...] = ()
    exp_types: tuple[str, ...] = IMAGING_EXP_TYPES
    core_steps: tuple[str, ...] = ()
    #: rows built by :func:`step_stage` (``jwstrun step``): the distribution whose
    #: version the manifest records (``jwst``, ``snowblind``), the step's own status
    #: keyword (``S_SNOWBL``) and whether its spec skips it by default
    package: str | None = None
    status_keyword: str | None = None
    skip_default: bool = False

    @property
    def is_step(self) -> bool:
        """Whether the row was built for ``jwstrun step`` (not one of :data:`STAGES`)."""
        return self.name not in STAGES and self.name not in TILED_STAGES

    @property
    def module(self) -> str:
        return self.step_class.rpartition(".")[0]

    @property
    def class_name(self) -> str:
        return self.step_class.rpartition(".")[2]

    def load_class(self, *, lean: bool = False):
        """The stpipe class.  ``lean=True`` (in workers) loads a ``jwst.pipeline``
        module without the package's other pipelines (jwstrun._jwst_import)."""
        if lean:
            from ._jwst_import import import_pipeline_module

            module = import_pipeline_module(self.module)
        else:
            module = importlib.import_module(self.module)
        return getattr(module, self.class_name)

    @property
    def written_types(self) -> tuple[str, ...]:
        """The product types (suffixes without extension) of what it writes."""
        return tuple(name.partition(".")[0] for name in (*self.writes, *self.member_writes))

    @property
    def directory_types(self) -> tuple[str, ...]:
        """The product types a directory given as input contributes: those it accepts
        but does not write itself (image3 in its own OUTDIR takes the _cal files, not
        the _crf files of its last run)."""
        return tuple(t for t in self.accepts if t not in self.written_types)

    def bytes_per_task(self, pixels: float) -> float:
        """Estimated peak bytes of one worker running one task over ``pixels``
        input pixels (all members together)."""
        base, per = self.memory
        return base + per * pixels / FULL_FRAME_PIXELS


STAGES: dict[str, Stage] = {
    "detector1": Stage(
        name="detector1",
        step_class="jwst.pipeline.calwebb_detector1.Detector1Pipeline",
        alias="calwebb_detector1",
        accepts=("uncal",),
        grouping="exposure",
        # _rateints too (jwst writes it for every exposure); what one asks for besides (the
        # _ramp of save_calibrated_ramp, jump's _jump, ramp_fit's _fitopt) are
        # intermediates, in OUTDIR/intermediate/<task-id>/
        writes=("rate.fits", "rateints.fits"),
        # Per worker: a base, and bytes per full-frame *group* (the planned pixels of a
        # ramp are SUBSIZE1 x SUBSIZE2 x NGROUPS x NINTS, runner.plan._exposure_pixels).
        # scripts/bench_detector1.py measured 299 MB peak for SUB160 x 8 groups (0.05
        # full-frame groups: the jwst import and references, ~all of it base) and
        # 2729 MB for a full frame of 10 groups (docs/benchmarks.md, "detector1"):
        # (2.73 - 0.30) GB / 10 groups = 0.245 GB per full-frame group, ~58 B a pixel
        # (the RampModel's float32 SCI/ERR and GROUPDQ, and jump's and ramp_fit's float32
        # copies and differences of it).
        memory=(0.30e9, 0.245e9),
        next_stage="image2",
        asn_level=None,
        aliases=("calwebb_detector1", "detector1pipeline", "stage1"),
        # run for NIR and MIRI alike (jump skips itself below 3 groups, superbias for
        # MIRI, gain_scale without GAINFACT): the steps a _rate cannot lack, by their
        # cal_step names (dark_current records dark_sub, S_DARK)
        checked_steps=("dq_init", "saturation", "linearity", "dark_sub", "ramp_fit"),
        exp_types=IMAGING_EXP_TYPES,
        core_steps=("jump", "ramp_fit"),
    ),
    "image2": Stage(
        name="image2",
        step_class="jwst.pipeline.calwebb_image2.Image2Pipeline",
        alias="calwebb_image2",
        accepts=("rate", "rateints"),
        grouping="exposure",
        writes=("cal.fits", "calints.fits", "bsub.fits", "bsubints.fits", "i2d.fits"),
        memory=(0.30e9, 0.90e9),
        next_stage="image3",
        asn_level=2,
        aliases=("calwebb_image2", "image2pipeline", "stage2"),
        checked_steps=("assign_wcs", "flat_field", "photom"),
        exp_types=IMAGING_EXP_TYPES,
    ),
    "image3": Stage(
        name="image3",
        step_class="jwst.pipeline.calwebb_image3.Image3Pipeline",
        alias="calwebb_image3",
        accepts=("cal", "calints", "crf"),
        grouping="association",
        writes=("i2d.fits", "segm.fits", "cat.ecsv"),
        member_writes=("crf.fits",),
        memory=(0.35e9, 0.32e9),
        asn_level=3,
        aliases=("calwebb_image3", "image3pipeline", "stage3"),
        checked_steps=("tweakreg", "skymatch", "outlier_detection"),
        exp_types=IMAGING_EXP_TYPES,
    ),
}


#: The two phases of a tiled image3 (``jwstrun image3 --tile-size``, jwstrun.runner._tiles):
#: rows the runner uses for its tasks, not stages a user names.  ``image3-align`` is
#: calwebb_image3 without resample and source_catalog (-> the _crf files);
#: ``image3-tile`` runs jwst's resample and source_catalog on one sky tile
#: (jwstrun.runner._tile_pipeline, loaded in workers only).
TILED_STAGES: dict[str, Stage] = {
    "image3-align": dataclasses.replace(STAGES["image3"], name="image3-align", writes=(),
                                        aliases=()),
    "image3-tile": Stage(
        name="image3-tile",
        step_class="jwstrun.runner._tile_pipeline.TilePipeline",
        alias="jwstrun_tile",
        accepts=("crf",),
        grouping="tile",
        writes=("i2d.fits", "segm.fits", "cat.ecsv"),
        memory=(0.35e9, 0.32e9),
        asn_level=3,
        checked_steps=("tweakreg", "skymatch", "outlier_detection"),
    ),
}


def stage_names() -> list[str]:
    return list(STAGES)


def get_stage(name: str) -> Stage:
    """The row for a stage name or any of its aliases (case-insensitive), or the row
    :func:`step_stage` builds for a step name (``jwstrun step``: the same row in every
    process, from the name alone); :class:`InputError` naming the known stages otherwise."""
    key = name.strip().lower()
    if key in TILED_STAGES:
        return TILED_STAGES[key]
    for stage in STAGES.values():
        if key == stage.name or key in stage.aliases or key == stage.class_name.lower():
            return stage
    if _looks_like_step(name):
        try:
            return step_stage(name)
        except StepError:
            pass
    raise InputError(f"unknown stage {name!r}; known stages: {', '.join(STAGES)}.")


def _looks_like_step(name: str) -> bool:
    """Whether ``name`` could name a step: an identifier, a dotted import path or
    ``package::alias`` (what strun takes)."""
    return bool(name) and all(part.isidentifier() for part in
                              name.replace("::", ".").split("."))


# --------------------------------------------------------------------------- jwstrun step


def step_aliases() -> dict[str, tuple[str, str]]:
    """Every class alias registered through stpipe's entry points (``stpipe.steps``):
    alias -> (class name, package), as ``strun`` resolves them (:mod:`jwstrun._step_registry`,
    cached on disk: the first call without the cache imports every registering package)."""
    from ._step_registry import registered_steps

    return {alias: (entry.class_name, entry.package)
            for alias, entry in registered_steps().items()}


def _alias_path(name: str) -> str:
    """The class path alias ``name`` (``package::alias`` scoped) means, from the cached
    registry; ``name`` itself when no package registers it.  An alias two packages register
    goes to stpipe's own resolution, whose error names both (:class:`ValueError`)."""
    from ._step_registry import registrations

    scope, _, alias = name.rpartition("::")
    found = {entry.package: entry for entry in registrations()
             if entry.alias == alias and (not scope or entry.package == scope)}
    if len(found) == 1:
        return next(iter(found.values())).class_name
    if not found:
        return name
    from stpipe.utilities import resolve_step_class_alias

    return resolve_step_class_alias(name)


def resolve_step_class(name: str):
    """The stpipe class ``name`` means, as strun resolves it: a class alias registered
    through stpipe's entry points (``package::alias`` when two packages register the
    same), or a full import path.  :class:`StepError` naming the nearest aliases."""
    import difflib

    from stpipe import Step
    from stpipe.utilities import import_class

    name = name.strip()
    try:
        path = _alias_path(name)
    except ValueError as exc:  # an alias two packages register
        raise StepError(" ".join(str(exc).split())) from None
    if "." not in path:
        close = difflib.get_close_matches(name, list(step_aliases()), n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise StepError(
            f"unknown step {name!r}: not a class alias registered with stpipe nor an import "
            f"path (package.module.Class).{hint} 'stpipe list' lists the aliases.")
    try:
        return import_class(path, subclassof=Step)
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        why = " ".join(str(exc).split()) or type(exc).__name__
        raise StepError(
            f"{name!r} is not an stpipe Step or Pipeline class ({why}). Give a class alias "
            "such as clean_flicker_noise or the import path of a Step subclass.") from None


def _class_key(package: str, class_name: str) -> str:
    return f"{package.partition('.')[0]}.{class_name}"


@functools.lru_cache(maxsize=None)
def step_stage(name: str) -> Stage:
    """The row of stpipe step or pipeline ``name`` (an alias or an import path), built at
    run time from the class: one task per exposure, or over the whole set for the
    :data:`SET_STEPS`; it takes :data:`STEP_INPUTS` and writes ``<input>_<suffix>.fits``
    with stpipe's default suffix, the class name lowercased (``_snowblindstep.fits``).
    The same name gives the same row in every process (workers find it by name); its
    name is the step's alias when that alias means this class (a profile section and
    the task ids are named after it), else the import path given."""
    known = {n: s for s in STAGES.values() for n in (s.name, *s.aliases)}
    cls = None if name.strip().lower() in known else resolve_step_class(name)
    path = f"{cls.__module__}.{cls.__qualname__}" if cls is not None else ""
    stage = known.get(name.strip().lower()) or next(
        (s for s in STAGES.values() if s.step_class == path), None)
    if stage is not None:
        raise StepError(f"{name!r} is the stage {stage.name}: run 'jwstrun {stage.name}', "
                        "which runs it with jwstrun's associations and checks.")
    key = _class_key(cls.__module__, cls.__name__)
    alias = getattr(cls, "class_alias", None) or cls.__name__
    return Stage(
        name=_canonical_name(name.strip(), cls),
        step_class=path,
        alias=alias,
        accepts=STEP_INPUTS.get(key, _ANY_IMAGE),
        grouping="set" if key in {_class_key(*k.rsplit(".", 1)) for k in SET_STEPS}
        else "exposure",
        writes=(f"{_default_suffix(cls)}.fits",),
        memory=_STEP_MEMORY,
        package=_distribution(cls.__module__),
        status_keyword=_status_keyword(cls),
        skip_default=_skips_by_default(cls),
    )


def _canonical_name(name: str, cls) -> str:
    """``name``, or the class's alias when that names the same class (an import path)."""
    alias = getattr(cls, "class_alias", None)
    if not alias or alias == name:
        return name
    try:
        return alias if resolve_step_class(alias) is cls else name
    except StepError:
        return name


def _default_suffix(cls) -> str:
    """stpipe's suffix for a step's output: its spec's ``suffix``, else the step's name,
    which a step run with Step.call has from its class (``CleanFlickerNoiseStep``)."""
    suffix = _spec_default(cls, "suffix")
    return str(suffix) if suffix else cls.__name__.lower()


def _spec_default(cls, key: str):
    from configobj.validate import Validator

    check = cls.load_spec_file().get(key)
    if not isinstance(check, str):
        return None
    try:
        return Validator().get_default_value(check)
    except KeyError:
        return None


def _skips_by_default(cls) -> bool:
    return _spec_default(cls, "skip") is True


def _status_keyword(cls) -> str | None:
    """The header keyword a step class says it records its status in (``fits_keyword``:
    snowblind's steps); jwst's own steps have theirs in the schema
    (:func:`jwstrun.validate.step_status_keyword` has the whole rule)."""
    keyword = getattr(cls, "fits_keyword", None)
    return str(keyword) if keyword else None


def _distribution(module: str) -> str | None:
    """The installed distribution providing ``module`` (for its version)."""
    from importlib import metadata

    top = module.partition(".")[0]
    names = metadata.packages_distributions().get(top) or [top]
    return names[0]


def raw_types() -> tuple[str, ...]:
    """The product types a stage row takes that no row writes (``uncal``): the raw
    inputs, which a later stage given them leaves out saying what to run first
    (:mod:`jwstrun.selection`), as it does the :data:`EXTERNAL_INPUTS`."""
    written = {t for stage in STAGES.values() for t in stage.written_types}
    return tuple(t for stage in STAGES.values() for t in stage.accepts if t not in written)


def stages_accepting(product_type: str) -> list[Stage]:
    """The stages that take a product of this type as input."""
    return [stage for stage in STAGES.values() if product_type in stage.accepts]
