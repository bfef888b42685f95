"""Running a stage: ``run_image2`` / ``run_image3`` / ``run_step``, what the CLI and
notebooks call.

They take the same parameters as the command-line options of ``jwstrun image2``
and ``jwstrun image3`` (``max_tasks_per_worker`` for ``--max-tasks-per-worker``,
``offline`` for ``--offline``...), and

1. expand and check every input before anything runs (``_cal`` given to image2,
   ``_rate`` given to image3, missing association members -> :class:`InputError`),
2. check that OUTDIR can be written, start the local worker pool (from here on
   the workers import jwst while the parent works) and take OUTDIR's lock,
3. plan the tasks as the stage's row says (:mod:`.plan`: one per exposure for
   image2, one per association for image3), each with a fingerprint of its
   input checksums, resolved call parameters, jwst/stpipe/crds versions and CRDS
   context; a task whose recorded fingerprint matches and whose products are all
   still there is skipped (:mod:`.resume`),
4. prefetch CRDS references once, run the tasks and record every result in the
   manifest (:func:`~jwstrun.runner._parent.run_tasks`).

Errors speak in parameter terms (``jobs``, ``outdir``, ``low_memory``...); the
CLI says them with its flags.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..inputs import is_association
from ..selection import select_files
from ..stages import FULL_FRAME_PIXELS, Stage, get_stage
from ._outputs import prepare_outdir
from ._parent import RunSummary, early_pool, run_tasks
from ._stage_inputs import check_complete, check_stage_inputs, stage_inputs
from ._corrections import exposure_sets
from .plan import (
    _check_unique_products,
    _task_id,
    call_parameters,
    correction_list,
    merge_parameters,
    plan,
)
from ._tile_memory import plan_stage3_memory
from .shard import parse_shard
from ._sweep import (checked_variants, expand_planned, measure_sweep, parameter_sets,
                     sweep_variants)

__all__ = ["EXECUTORS", "run_detector1", "run_image2", "run_image3", "run_step",
           "select_executor"]

log = logging.getLogger(__name__)

#: values of ``executor=`` / ``--executor``
EXECUTORS = ("local", "dask")


def run_detector1(
    inputs: Iterable[str | os.PathLike],
    outdir: str | os.PathLike,
    *,
    jobs: int | None = None,
    force: bool = False,
    checksum: bool = False,
    profiles: Iterable[str] = (),
    sets: Iterable[str] = (),
    no_crds_steppars: bool = False,
    crds_path: str | None = None,
    crds_context: str | None = None,
    offline: bool = False,
    crds_env_file: str | None = None,
    validate: bool = True,
    max_tasks_per_worker: int = 25,
    executor: str | None = None,
    dask_options=None,
    previews: bool = False,
    keep_temp: bool = False,
    shard=None,
    on_event: Callable | None = None,
    command: str = "jwstrun",
) -> RunSummary:
    """Run calwebb_detector1 on _uncal ramps, directories of them or glob patterns
    (``jwstrun detector1``; the parameters are its options, as for :func:`run_image2`).

    Each exposure is one task writing ``_rate`` (and ``_rateints``); what a step is
    asked to save besides (``save_calibrated_ramp``, ``steps.jump.save_results``...)
    goes to ``OUTDIR/intermediate/<task-id>/``.  jump and ramp_fit can use several
    cores each (``maximum_cores``); jwstrun runs either several exposures at once or
    one at a time with those steps on every core, never both (:mod:`._cores`: the
    choice is the summary's and the manifest's ``parallelism``), and refuses
    ``jobs`` > 1 with a ``maximum_cores`` of the user's.
    """
    return _run(get_stage("detector1"), inputs, outdir, _Settings(
        jobs=jobs, force=force, checksum=checksum, profiles=profiles, sets=sets,
        no_crds_steppars=no_crds_steppars, crds_path=crds_path, crds_context=crds_context,
        offline=offline, crds_env_file=crds_env_file, validate=validate,
        max_tasks_per_worker=max_tasks_per_worker, executor=executor,
        dask_options=dask_options, previews=previews, on_event=on_event, command=command,
        keep_temp=keep_temp, shard=shard,
    ))


def run_image2(
    inputs: Iterable[str | os.PathLike],
    outdir: str | os.PathLike,
    *,
    jobs: int | None = None,
    force: bool = False,
    checksum: bool = False,
    profiles: Iterable[str] = (),
    sets: Iterable[str] = (),
    no_crds_steppars: bool = False,
    crds_path: str | None = None,
    crds_context: str | None = None,
    offline: bool = False,
    crds_env_file: str | None = None,
    validate: bool = True,
    max_tasks_per_worker: int = 25,
    executor: str | None = None,
    dask_options=None,
    save_bsub: bool = False,
    previews: bool = False,
    keep_temp: bool = False,
    shard=None,
    sweep: Iterable[str] = (),
    truth: str | os.PathLike | None = None,
    from_type: str | None = None,
    on_event: Callable | None = None,
    command: str = "jwstrun",
) -> RunSummary:
    """Run calwebb_image2 on _rate/_rateints files, directories of them, or Level-2
    associations (``jwstrun image2``; the parameters are its options).

    ``jobs``: parallel workers (default: what the CPUs and memory allow);
    ``force``: redo up-to-date tasks; ``checksum``: re-hash every input to decide;
    ``profiles``/``sets``: step parameters (:mod:`jwstrun.profiles`);
    ``no_crds_steppars``: ignore CRDS ``pars-`` references; ``crds_path``,
    ``crds_context``, ``offline``, ``crds_env_file``: the CRDS cache and context
    (:func:`jwstrun.refs.crds_environment`); ``validate=False`` skips the product
    checks; ``max_tasks_per_worker``: replace a worker after that many tasks;
    ``executor='dask'`` with ``dask_options`` (a
    :class:`jwstrun.executors.DaskOptions` or a dict of its fields, e.g.
    ``{"scheduler": "tcp://host:8786"}``) runs the tasks on Dask (docs/dask.md);
    ``save_bsub`` saves the background-subtracted ``_bsub`` product (through the
    background step's ``save_results``); ``previews`` has the workers draw the
    report's previews; ``keep_temp`` keeps each task's temporary directory
    (``OUTDIR/.jwstrun-tmp/<task-id>``, each result's ``temp_dir``; removed by the next
    run in OUTDIR) for debugging; ``shard='K/N'`` (or ``'slurm'``: from the SLURM array
    task) runs a deterministic 1/N of the tasks, sharing OUTDIR with the other shards
    (:mod:`jwstrun.runner.shard`); ``sweep``: ``--sweep`` texts (``KEY=V1,V2``), one
    variant of every task per value into ``OUTDIR/sweep/<KEY=V>/``, measured into
    ``OUTDIR/sweep.ecsv`` (the summary's ``sweep``; against ``truth``, a catalogue of
    injected sources, when given: :mod:`jwstrun.runner._sweep`,
    :mod:`jwstrun.compare.sweep`); ``on_event(kind, **info)`` follows the run
    (:func:`~jwstrun.runner._parent.run_tasks`); ``command`` is recorded in the
    manifest.  ``from_type='uncal'``: ``inputs`` are _uncal ramps, run through
    :func:`run_detector1` into ``outdir`` first (same settings; profiles' ``detector1:``
    sections apply to it), then image2 runs on the _rate files it wrote; the summary's
    ``before`` is detector1's.
    """
    if from_type is not None:
        from ._chain import image2_from_uncal

        return image2_from_uncal(
            run_detector1, run_image2, from_type, inputs, outdir, jobs=jobs, force=force,
            checksum=checksum, profiles=profiles, sets=sets, no_crds_steppars=no_crds_steppars,
            crds_path=crds_path, crds_context=crds_context, offline=offline,
            crds_env_file=crds_env_file, validate=validate,
            max_tasks_per_worker=max_tasks_per_worker, executor=executor,
            dask_options=dask_options, save_bsub=save_bsub, previews=previews,
            keep_temp=keep_temp, shard=shard, sweep=sweep, truth=truth, on_event=on_event,
            command=command)
    extra = {"steps": {"bkg_subtract": {"save_results": True}}} if save_bsub else None
    return _run(get_stage("image2"), inputs, outdir, _Settings(
        jobs=jobs, force=force, checksum=checksum, profiles=profiles, sets=sets,
        no_crds_steppars=no_crds_steppars, crds_path=crds_path, crds_context=crds_context,
        offline=offline, crds_env_file=crds_env_file, validate=validate,
        max_tasks_per_worker=max_tasks_per_worker, executor=executor,
        dask_options=dask_options, previews=previews, on_event=on_event, command=command,
        extra_parameters=extra, keep_temp=keep_temp, shard=shard, sweep=sweep, truth=truth,
    ))


def run_image3(
    inputs: Iterable[str | os.PathLike],
    outdir: str | os.PathLike,
    *,
    jobs: int | None = None,
    force: bool = False,
    checksum: bool = False,
    profiles: Iterable[str] = (),
    sets: Iterable[str] = (),
    no_crds_steppars: bool = False,
    crds_path: str | None = None,
    crds_context: str | None = None,
    offline: bool = False,
    crds_env_file: str | None = None,
    validate: bool = True,
    max_tasks_per_worker: int = 25,
    executor: str | None = None,
    dask_options=None,
    max_memory=None,
    max_mosaic_pixels: int | None = None,
    low_memory: bool = False,
    grid: str | os.PathLike | None = None,
    previews: bool = False,
    keep_temp: bool = False,
    shard=None,
    sweep: Iterable[str] = (),
    truth: str | os.PathLike | None = None,
    tile_size=None,
    assemble: bool = False,
    phase: str | None = None,
    on_event: Callable | None = None,
    command: str = "jwstrun",
) -> RunSummary:
    """Run calwebb_image3 on Level-3 associations, _cal files or directories of them
    (``jwstrun image3``; the parameters are its options).

    Before any step runs, each association's output mosaic and peak memory are
    estimated (:mod:`jwstrun.mosaic`): a mosaic beyond ``max_mosaic_pixels``
    (default derived from the memory budget) is refused naming the inputs far
    from the rest; an association whose in-memory estimate exceeds its share of
    ``max_memory`` (bytes or '8GB'; default 80 % of the available memory, split
    between the associations that run at once) runs in the pipeline's on-disk
    mode (``in_memory=False``), or is refused when even that does not fit.
    ``low_memory=True`` forces the on-disk mode.  ``grid``: a grid file (``jwstrun
    grid``, :func:`jwstrun.mosaic.make_grid`) every association is resampled onto
    (resample's ``output_wcs``), refused when it does not cover an association.
    ``tile_size`` (pixels, or an angle such as '2arcmin') runs Stage 3 as sky tiles of
    the grid (:mod:`jwstrun.runner._tiles`, docs/workflows/tiles.md); without it, a
    ``max_memory`` the single-shot image3 does not fit runs it as tiles of the size that
    budget allows (:mod:`jwstrun.runner._tile_memory`); ``assemble=True`` copies the
    tiles into one ``<product>_i2d.fits``; ``phase`` ('align' or 'tiles') runs one of
    its two phases (:mod:`jwstrun.runner._tile_shards`).  The other parameters as for
    :func:`run_image2`.
    """
    from ._tiles import tiling_for

    tiling = tiling_for(tile_size, grid, assemble=assemble, max_memory=max_memory, phase=phase)
    return _run(get_stage("image3"), inputs, outdir, _Settings(
        tiling=tiling,
        jobs=jobs, force=force, checksum=checksum, profiles=profiles, sets=sets,
        no_crds_steppars=no_crds_steppars, crds_path=crds_path, crds_context=crds_context,
        offline=offline, crds_env_file=crds_env_file, validate=validate,
        max_tasks_per_worker=max_tasks_per_worker, executor=executor,
        dask_options=dask_options, previews=previews, on_event=on_event, command=command,
        memory={"max_memory": max_memory, "max_mosaic_pixels": max_mosaic_pixels,
                "low_memory": low_memory}, keep_temp=keep_temp, shard=shard, sweep=sweep,
        truth=truth, grid=None if tile_size else grid,  # a tiled run reads its grid (Tiling)
    ))


def run_step(
    name: str,
    inputs: Iterable[str | os.PathLike],
    outdir: str | os.PathLike,
    *,
    jobs: int | None = None,
    force: bool = False,
    checksum: bool = False,
    profiles: Iterable[str] = (),
    sets: Iterable[str] = (),
    no_crds_steppars: bool = False,
    crds_path: str | None = None,
    crds_context: str | None = None,
    offline: bool = False,
    crds_env_file: str | None = None,
    validate: bool = True,
    max_tasks_per_worker: int = 25,
    executor: str | None = None,
    dask_options=None,
    previews: bool = False,
    keep_temp: bool = False,
    shard=None,
    on_event: Callable | None = None,
    command: str = "jwstrun",
) -> RunSummary:
    """Run the stpipe Step or Pipeline ``name`` over many files (``jwstrun step``; the
    parameters are its options, as for :func:`run_image2`).

    ``name`` is a class alias registered through stpipe's entry points
    (``clean_flicker_noise``, ``snowblind``, ``persist``...) or the import path of a
    Step class, as ``strun`` takes it (:func:`jwstrun.stages.step_stage`).  Each input
    file is one task writing what ``strun NAME FILE`` writes
    (``<name>_<suffix>.fits``, the suffix being the class name lowercased); a step
    that needs the whole set (:data:`jwstrun.stages.SET_STEPS`) runs as one task over
    every input, in order of exposure start time.  Parameters come from ``profiles``
    (a section named after the step's alias) and ``sets`` (``autoparam=true``),
    checked against the step's spec.  ``previews`` has the workers draw the report's
    previews of the products (:func:`jwstrun.look.write_report`); ``shard`` as for
    :func:`run_image2`.
    """
    from ..stages import step_stage
    from ._step import skip_default_line

    stage = step_stage(name)
    line = skip_default_line(stage)
    if line:
        log.warning("%s", line)
    return _run(stage, inputs, outdir, _Settings(
        jobs=jobs, force=force, checksum=checksum, profiles=profiles, sets=sets,
        no_crds_steppars=no_crds_steppars, crds_path=crds_path, crds_context=crds_context,
        offline=offline, crds_env_file=crds_env_file, validate=validate,
        max_tasks_per_worker=max_tasks_per_worker, executor=executor,
        dask_options=dask_options, previews=previews, on_event=on_event, command=command,
        keep_temp=keep_temp, shard=shard,
    ))


@dataclass
class _Settings:
    """The parameters of one run_image2/run_image3 call, as one value."""

    jobs: int | None
    force: bool
    checksum: bool
    profiles: Iterable[str]
    sets: Iterable[str]
    no_crds_steppars: bool
    crds_path: str | None
    crds_context: str | None
    offline: bool
    crds_env_file: str | None
    validate: bool
    max_tasks_per_worker: int
    executor: str | None
    dask_options: object
    previews: bool
    on_event: Callable | None
    command: str
    extra_parameters: dict | None = None
    memory: dict = field(default_factory=dict)
    keep_temp: bool = False
    shard: object = None
    sweep: Iterable[str] = ()
    truth: str | os.PathLike | None = None
    grid: str | os.PathLike | None = None
    tiling: object = None  # image3 --tile-size: a runner._tiles.Tiling


def _run(stage: Stage, inputs, outdir, settings: _Settings) -> RunSummary:
    """Check, plan and run ``stage`` over ``inputs`` (see the module docstring)."""
    from .. import refs
    from ..locking import OutdirLock

    if settings.jobs is not None and settings.jobs < 1:
        raise ConfigError(f"jobs={settings.jobs}: the number of jobs must be at least 1.")
    shard = parse_shard(settings.shard)
    kind, dask_options = select_executor(settings.executor, settings.dask_options, settings.jobs)
    # Everything that can be checked is checked before OUTDIR is touched.
    if stage.is_step:
        from ._step import step_inputs

        selection = select_files(stage, step_inputs(stage, inputs),
                                 what=f"jwstrun step {stage.name}")
    else:
        selection = select_files(stage, stage_inputs(stage, inputs))
    paths = selection.kept
    parameters = call_parameters(stage.name, settings.profiles, settings.sets)
    corrections = correction_list(stage.name, settings.profiles, settings.sets)
    if settings.extra_parameters:
        parameters = merge_parameters(parameters, settings.extra_parameters)
    grid_parameters: dict = {}
    if settings.grid is not None:  # jwstrun.mosaic.gridfile: resample's output_wcs
        from ..mosaic.gridfile import grid_call_parameters

        grid_parameters = grid_call_parameters(settings.grid, parameters)
        parameters = merge_parameters(parameters, grid_parameters)
    variants = sweep_variants(stage, settings)  # runner._sweep
    for variant in variants:
        variant.parameters = merge_parameters(variant.parameters, grid_parameters)
    parallelism = _parallelism(stage, paths, settings, parameter_sets(parameters, variants),
                               kind)
    daemon = parallelism is None or parallelism.mode != "in_step"
    crds_env = refs.crds_environment(crds_path=settings.crds_path, context=settings.crds_context,
                                     env_file=settings.crds_env_file, offline=settings.offline)
    extra_env = {"STPIPE_DISABLE_CRDS_STEPPARS": "True"} if settings.no_crds_steppars else {}
    pool = _early_pool(stage, paths, settings, crds_env, extra_env, daemon) \
        if kind == "local" else None
    try:
        planned, sets = None, {}
        if stage.is_step:
            from ._step import plan_step

            planned = plan_step(stage, paths, parameters, outdir)
            _check_unique_products(planned)
        elif stage.grouping == "exposure":
            planned = plan(stage, paths)
            _check_unique_products(planned)
            sets = exposure_sets(stage, planned, corrections)  # refuses missing _jump files
        else:
            asn_paths, loose = check_stage_inputs(stage, paths)
        if not stage.is_step:  # after the product-type checks, whose messages say more
            check_complete(paths, stage)
        if planned is None:
            parameters = checked_variants(parameters, variants, lambda p: _checked_abs_refcat(
                stage, p, asn_paths, loose, crds_env))
        refs.check_setup(crds_env, purpose="run")  # after the inputs: what to set for CRDS
        outdir = prepare_outdir(outdir)
        # The run's CRDS settings (a crds.env may pin CRDS_CONTEXT) must not outlive it
        # in a long-lived process: the next call may use another cache.
        with OutdirLock(outdir, command=settings.command, shard=str(shard) if shard else None), \
                refs.applied_crds_environment(crds_env), _removed_if_refused() as made:
            if planned is None:  # tasks of written associations: planned under the lock
                planned = _plan_associations(stage, paths, outdir, shard, made)
                _check_unique_products(planned)
                sets = exposure_sets(stage, planned, corrections)
            planned = expand_planned(planned, variants)
            if stage.grouping == "association":  # single-shot or tiled (runner._tile_memory)
                settings.tiling = plan_stage3_memory(settings.tiling, planned, parameters,
                                                     settings.jobs, kind, **settings.memory)
            plan_shards = {_task_id(p): None for p in planned}
            if shard is not None:
                plan_shards = shard.of(planned, key=_task_id)
                if settings.tiling is None:  # tiles spread over every shard (runner._tile_shards)
                    planned = shard.select(planned, key=_task_id)
                    log.info("shard %s: %d of the %d planned task(s)", shard, len(planned),
                             len(plan_shards))
            runner = run_tasks if settings.tiling is None else settings.tiling.run
            summary = runner(
                stage.name, planned, outdir, parameters=parameters, crds_env=crds_env,
                crds_context=settings.crds_context, jobs=settings.jobs, force=settings.force,
                checksum=settings.checksum, extra_env=extra_env, validate=settings.validate,
                max_tasks_per_worker=settings.max_tasks_per_worker, on_event=settings.on_event,
                command=settings.command, executor_kind=kind, dask_options=dask_options,
                pool=pool, remove_if_refused=made, previews=settings.previews and not variants,
                keep_temp=settings.keep_temp, corrections=corrections, exposure_sets=sets,
                shard=shard, plan_shards=plan_shards, parallelism=parallelism,
            )
        summary.left_out = selection.left_out
        measure_sweep(summary, variants, settings.truth)
        return summary
    except BaseException:
        if pool is not None:  # run_tasks shuts it down itself; this covers bad input & co.
            pool.shutdown(cancel=True)
        raise


def _parallelism(stage: Stage, paths: list[Path], settings: _Settings, sets: list[tuple],
                 kind: str):
    """Exposures in parallel or cores inside jump/ramp_fit (:mod:`._cores`), for a stage
    with such steps, checked with each variant's parameters (``sets``:
    :func:`._sweep.parameter_sets`; the first one's choice); sets ``settings.jobs`` to
    the workers chosen."""
    if not stage.core_steps:
        return None
    from ._cores import choose_parallelism
    from ._sweep import said_of
    from .plan import _exposure_pixels

    pixels = max((_exposure_pixels(p) for p in paths if not is_association(p)),
                 default=FULL_FRAME_PIXELS)
    choices = []
    for variant, parameters in sets:
        with said_of(variant):
            choices.append(choose_parallelism(stage, len(paths), settings.jobs, parameters,
                                              stage.bytes_per_task(pixels), executor=kind))
    choice = choices[0]
    if choice is not None:
        settings.jobs = choice.jobs
    return choice


def _checked_abs_refcat(stage: Stage, parameters: dict, asn_paths: list[Path],
                        loose: list[Path], crds_env: dict) -> dict:
    """``parameters`` with tweakreg's ``abs_refcat`` checked against the inputs
    (:func:`jwstrun.refs.check_abs_refcat`: each association's science members, the
    loose files together) and, when it is a file, made absolute: a task may run in
    another directory (on-disk mode, Dask)."""
    tweakreg = (parameters.get("steps") or {}).get("tweakreg") or {}
    value = str(tweakreg.get("abs_refcat") or "").strip()
    if not value or value.lower() == "none" or str(tweakreg.get("skip")).lower() == "true":
        unused = sorted(k for k in tweakreg if k.startswith("abs_") and k != "abs_refcat")
        if unused and not value:
            log.warning("steps.tweakreg: %s set without abs_refcat: tweakreg ignores %s.",
                        ", ".join(unused), "it" if len(unused) == 1 else "them")
        return parameters
    from ..profiles import pipeline_spec, spec_default
    from ..refs.refcat import check_abs_refcat
    from ._stage_inputs import load_stage_association

    minobj = tweakreg.get("abs_minobj")
    if minobj is None:
        minobj = spec_default(pipeline_spec(stage.name).steps["tweakreg"].params["abs_minobj"])
    groups = [(product.name, [m.path for m in product.by_type("science")])
              for path in asn_paths for product in load_stage_association(path, stage).products]
    if loose:
        groups.append((f"the {len(loose)} given _{stage.accepts[0]} files", loose))
    checked = check_abs_refcat(value, groups, minobj=int(minobj), crds_env=crds_env)
    return merge_parameters(parameters, {"steps": {"tweakreg": {"abs_refcat": checked}}})


def _plan_associations(stage: Stage, paths: list[Path], outdir: Path, shard, made: list):
    """Plan an association stage, writing its associations into OUTDIR; ``made`` gets the
    files written (removed if the run is refused).  Shards plan one at a time and keep
    what they wrote: another shard may already use it."""
    from ..locking import planning_lock

    with planning_lock(outdir) if shard is not None else contextlib.nullcontext():
        known = set(outdir.glob("*_asn.json"))
        planned = plan(stage, paths, outdir)
        if shard is None:
            made += sorted(set(outdir.glob("*_asn.json")) - known)
    return planned


def _early_pool(stage: Stage, paths: list[Path], settings: _Settings, crds_env: dict,
                extra_env: dict, daemon: bool = True):
    """The local workers, started now: their jwst import overlaps the input checks,
    planning, CRDS context lookup and prefetch. Tasks are counted for sure only once
    planned (loose exposures are grouped): run_tasks resizes the pool."""
    if stage.grouping == "exposure":
        n_tasks, per_worker = len(paths), stage.bytes_per_task(FULL_FRAME_PIXELS)
    elif stage.grouping == "set":
        n_tasks, per_worker = 1, stage.bytes_per_task(FULL_FRAME_PIXELS * len(paths))
    else:
        n_tasks = sum(map(is_association, paths)) + any(not is_association(p) for p in paths)
        per_worker = stage.memory[0]
    return early_pool(stage, n_tasks, settings.jobs, per_worker, crds_env, extra_env,
                      settings.max_tasks_per_worker, daemon)


@contextlib.contextmanager
def _removed_if_refused():
    """A list of files this run wrote for its tasks (associations), removed if the run
    stops before run_tasks submitted a task (it empties the list when it does)."""
    made: list[Path] = []
    try:
        yield made
    except BaseException:
        for path in made:
            path.unlink(missing_ok=True)
        raise


def select_executor(executor: str | None, dask_options=None, jobs: int | None = None):
    """``(kind, DaskOptions or None)`` from the user's choice; errors before anything runs.

    ``executor=None`` means local, or dask when ``dask_options`` names a
    scheduler or a cluster.  Asking for dask without dask installed is an
    :class:`InputError` that says how to install it.
    """
    from ..executors import DaskOptions, check_dask_options

    options = DaskOptions.coerce(dask_options) if dask_options is not None else None
    remote = options is not None and (options.scheduler or options.cluster)
    if executor is None:
        executor = "dask" if remote else "local"
    if executor not in EXECUTORS:
        raise ConfigError(f"executor {executor!r}: unknown; choose one of {', '.join(EXECUTORS)}.")
    if executor == "local":
        if remote:
            raise ConfigError(
                "a scheduler or cluster in dask_options needs executor='dask' (the local "
                "executor runs worker processes on this machine)."
            )
        return "local", None
    return "dask", check_dask_options(options or DaskOptions(), jobs)
