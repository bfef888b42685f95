"""Planning: a stage's inputs -> the tasks that run it.

The stage's row (:mod:`jwstrun.stages`) says how inputs become tasks:

- ``grouping="exposure"`` (image2): one task per science exposure, or per
  product of a Level-2 association (:func:`plan_exposures`);
- ``grouping="association"`` (image3): one task per Level-3 association; loose
  exposures are grouped by :func:`jwstrun.asn.make_associations` into
  associations written into OUTDIR (:func:`plan_associations`), and each
  association's mosaic and memory are planned before any step runs
  (:func:`plan_memory`, :mod:`jwstrun.mosaic`).

:func:`make_tasks` turns the plan into picklable :class:`~jwstrun.runner.task.Task`
objects.  The inputs are checked first (:mod:`._stage_inputs`), the outputs
after (:mod:`._outputs`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, InputError, JwstrunError
from ..inputs import is_association
from ..products import product_basename, product_suffix
from ..stages import FULL_FRAME_PIXELS, Stage, get_stage
from ._outputs import LOG_DIRNAME, TMP_DIRNAME, expected_outputs
from ._stage_inputs import (
    PLANNING_HEADERS,
    check_stage_inputs,
    file_type,
    load_stage_association,
    wrong_stage_message,
)
from .task import Task

__all__ = ["Planned", "plan", "plan_exposures", "plan_associations", "plan_memory",
           "make_tasks", "plan_image2", "plan_image3"]

log = logging.getLogger(__name__)


@dataclass
class Planned:
    """One task as planned: its stage, product name and inputs (not yet a Task)."""

    pipeline: str  # the stage name (a row of jwstrun.stages)
    product: str
    input: Path | None  # a file, or None when a one-product asn must be written
    inputs: list[Path]
    roles: list[str]
    asn: object | None = None
    asn_product: object | None = None
    pixels: int = FULL_FRAME_PIXELS
    n_members: int = 1
    has_background: bool = False
    memory: object | None = None  # association stages: a jwstrun.mosaic.MemoryPlan
    refused: Exception | None = None  # the memory preflight's refusal, raised if it must run
    #: jwstrun step (runner._step): the names stpipe gives the outputs, the files given
    #: to the step as one list (a set step), the directory it runs in (a step reading
    #: files beside its inputs) and the status keyword its products must have COMPLETE
    outputs: list[str] | None = None
    call_inputs: list[str] | None = None
    input_dir: str | None = None
    status_keyword: str | None = None
    #: a sweep's variant (runner._sweep.Variant): its parameters, its sub-folder
    variant: object | None = None
    #: steps skipped upstream whose status the products carry (a sky tile: runner._tiles)
    expected_skips: list[str] | None = None

    @property
    def stage(self) -> Stage:
        return get_stage(self.pipeline)


def plan(stage: Stage, paths: list[Path], outdir: Path | None = None) -> list[Planned]:
    """The planned tasks of ``stage`` over ``paths``, as its ``grouping`` says;
    an association stage writes the associations it builds into ``outdir`` (call it
    holding OUTDIR's lock)."""
    if stage.grouping == "exposure":
        return plan_exposures(stage, paths)
    if stage.grouping == "association":
        return plan_associations(stage, paths, outdir)
    raise ConfigError(f"stage {stage.name}: grouping {stage.grouping!r} is not supported yet.")


def _exposure_pixels(path: Path) -> int:
    """The pixels of an exposure for the memory model: of each group of each
    integration for a ramp (an ``_uncal``: detector1's memory is per full-frame group)."""
    try:
        header = PLANNING_HEADERS.read(path)
        xsize = int(header.get("SUBSIZE1") or 2048)
        ysize = int(header.get("SUBSIZE2") or 2048)
        groups = 1
        if product_suffix(path) == "uncal":
            groups = int(header.get("NGROUPS") or 1) * int(header.get("NINTS") or 1)
        return xsize * ysize * groups
    except (JwstrunError, ValueError, TypeError):
        return FULL_FRAME_PIXELS


def plan_exposures(stage: Stage, paths: list[Path]) -> list[Planned]:
    """One planned task per science exposure (or per product of an association of the
    stage's level); errors for anything the stage cannot take.  Dedicated background
    exposures (BKGDTARG=T) among the files are never tasks of their own: with them,
    the files run as the Level-2 association ``jwstrun asn`` makes of them
    (:func:`_with_backgrounds`)."""
    planned: list[Planned] = []
    science: list[Path] = []
    backgrounds: list[Path] = []
    for path in paths:
        if is_association(path):
            planned.extend(_association_products(stage, path))
            continue
        ptype = file_type(path)
        if ptype not in stage.accepts:
            raise InputError(wrong_stage_message(path, ptype, stage))
        (backgrounds if _dedicated_background(path) else science).append(path)
    if backgrounds:
        return planned + _with_backgrounds(stage, [*science, *backgrounds])
    return planned + [Planned(stage.name, _exposure_product(path), path, [path], ["science"],
                              pixels=_exposure_pixels(path)) for path in science]


def _exposure_product(path: Path) -> str:
    """The product name the pipeline gives an exposure: its file name without the product
    suffix; a suffix jwstrun does not know (``_cleanflickernoisestep`` of ``jwstrun step``)
    as jwst's own ``remove_suffix`` reads it, which knows its steps' suffixes."""
    if product_suffix(path):
        return product_basename(path)
    from jwst.lib.suffix import remove_suffix

    return remove_suffix(Path(path).stem)[0]


def _dedicated_background(path: Path) -> bool:
    """Whether ``path`` is a dedicated background exposure (its header, read once for the
    planning: :data:`PLANNING_HEADERS`)."""
    from ..products import is_background_target

    try:
        return is_background_target(PLANNING_HEADERS.read(path))
    except (JwstrunError, OSError):
        return False  # the input checks say what is wrong with it


def _with_backgrounds(stage: Stage, files: list[Path]) -> list[Planned]:
    """The tasks of the Level-2 association of ``files``
    (:func:`jwstrun.asn.level2_association`: their backgrounds matched and reported as
    by ``jwstrun asn``), one per science exposure, each running a one-product copy."""
    from ..asn import level2_association

    asn = level2_association(files)
    return [_product_task(stage, asn, product, None) for product in asn.products]


def _product_task(stage: Stage, asn, product, path: Path | None) -> Planned:
    """The task of one product of a Level-2 association (``path``: the association file
    when it runs as given, else None for a one-product copy)."""
    members = [m.path for m in product.members]
    roles = [m.exptype for m in product.members]
    if path is not None:
        members, roles = [path, *members], ["association", *roles]
    return Planned(
        stage.name, product.name, path if path and _runs_as_given(asn, product) else None,
        members, roles, asn=asn, asn_product=product,
        pixels=_exposure_pixels(product.by_type("science")[0].path),
        has_background=bool(product.by_type("background")),
    )


def _runs_as_given(asn, product) -> bool:
    """Whether ``asn`` can be given to the pipeline as it is for ``product``: its only
    product, whose members calwebb_image2 finds from any working directory.  It opens a
    science member named without a directory in the association's directory, but a
    background member, or a member with a directory part, relative to the working
    directory (jwst issue 5950); otherwise the task runs a copy with absolute paths."""
    return len(asn.products) == 1 and all(
        os.path.isabs(m.expname) or (m.exptype == "science" and "/" not in m.expname)
        for m in product.members)


def _association_products(stage: Stage, path: Path) -> list[Planned]:
    asn = load_stage_association(path, stage)
    return [_product_task(stage, asn, product, path) for product in asn.products]


def plan_associations(stage: Stage, paths: list[Path], outdir: Path) -> list[Planned]:
    """One planned task per association of the stage's level.

    Loose exposures are grouped as DMS groups them (one product per observation,
    target and optical path: jwstrun.asn's default) and written as associations into
    OUTDIR by jwstrun.asn -- call this only while holding OUTDIR's lock.
    """
    asn_paths, loose = check_stage_inputs(stage, paths)
    asns = [(load_stage_association(p, stage), True) for p in asn_paths]
    if loose:
        from ..asn import make_associations

        built = make_associations(loose, outdir, level=stage.asn_level, group_by="default",
                                  force=True, allow_outside=True)
        for written in built.associations:
            log.info("built %s from %d _%s files", written.path.name, written.n_members,
                     stage.accepts[0])
            # read_exposures gave each exposure once already
            asns.append((load_stage_association(written.path, stage, allow_outside=True), False))
    planned = []
    for asn, given in asns:
        product = _unique_members(asn) if given else asn.products[0]
        members = [m.path for m in product.members]
        whole = len(product.members) == len(asn.products[0].members)
        planned.append(Planned(
            stage.name, product.name, Path(asn.path) if whole else None,
            [Path(asn.path), *members],
            ["association", *[m.exptype for m in product.members]], asn=asn,
            asn_product=product, pixels=_exposure_pixels(members[0]), n_members=len(members),
        ))
    return planned


def plan_image2(paths: list[Path]) -> list[Planned]:
    """:func:`plan_exposures` for image2."""
    return plan_exposures(get_stage("image2"), paths)


def plan_image3(paths: list[Path], outdir: Path) -> list[Planned]:
    """:func:`plan_associations` for image3."""
    return plan_associations(get_stage("image3"), paths, outdir)


def _unique_members(asn):
    """The Level-3 product of ``asn`` with each exposure once
    (:func:`jwstrun.asn.repeated_exposures`): a repeat is left out with a warning, and the
    task runs a copy of the association without it."""
    from ..asn import AsnProduct, repeated_exposures
    from ..products import read_exposure_info

    product = asn.products[0]
    repeats = repeated_exposures([read_exposure_info(m.path) for m in product.members])
    for index, (first, why) in repeats.items():
        log.warning("%s: member %s %s %s; using it once.", asn.path,
                    product.members[index].expname, why, product.members[first].expname)
    return AsnProduct(product.name, [m for i, m in enumerate(product.members) if i not in repeats])


def _check_unique_products(planned: list[Planned]) -> None:
    seen: dict[str, Planned] = {}
    ids: dict[str, Planned] = {}
    for item in planned:
        key = item.product if item.variant is None else f"{item.variant.folder}/{item.product}"
        if key in seen:
            first = seen[key]
            raise InputError(
                f"{item.inputs[0]} and {first.inputs[0]} would both write products named "
                f"{item.product}_*. Give each exposure once, or use separate output directories."
            )
        first = ids.get(_task_id(item))
        if first is not None:  # a name made to match another name's sanitised id and hash
            raise InputError(
                f"{item.inputs[0]} and {first.inputs[0]}: products {item.product!r} and "
                f"{first.product!r} would share task id {_task_id(item)}. Rename one of them."
            )
        seen[key] = ids[_task_id(item)] = item


def _safe_id(name: str) -> str:
    """``name`` with characters other than letters, digits and ``-_.`` made ``_``; when any
    was, a short hash of the exact name is appended, so ``evil a`` and ``evil_a`` get
    different ids (and the same name always the same id: resume keys on it)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    if safe != name:
        safe += "-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return safe


def _task_id(item: "Planned") -> str:
    from ._sweep import variant_task_suffix

    return f"{item.pipeline}-{_safe_id(item.product)}{variant_task_suffix(item.variant)}"


def _input_entry(path: Path, role: str) -> dict:
    stat = path.stat()
    return {
        "path": str(path),
        "name": path.name,
        "role": role,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        # from the manifest when size and mtime are unchanged, else hashed by
        # _InputHasher in the parent while the workers run
        "sha256": None,
    }


def _write_product_asn(asn, product, dest: Path) -> None:
    """Write a one-product copy of an association with absolute member paths (those of
    ``product.members``, which may leave some of the association's out)."""
    paths = {member.expname: member.path for member in product.members}
    members = [dict(raw, expname=str(paths[raw["expname"]]))
               for raw in _raw_members(asn, product.name) if raw["expname"] in paths]
    single = {k: v for k, v in asn.data.items() if k != "products"}
    raw_product = next(p for p in asn.data["products"] if p.get("name") == product.name)
    single["products"] = [dict(raw_product, members=members)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(single, indent=4))


def _raw_members(asn, product_name: str) -> list[dict]:
    for raw in asn.data["products"]:
        if raw.get("name") == product_name:
            return list(raw["members"])
    raise InputError(f"{asn.path}: product {product_name!r} not found.")


def bytes_per_worker(stage: Stage, planned: list[Planned]) -> float:
    """Estimated peak bytes of one worker over the largest planned task: the memory
    plans' in-memory estimate when every task has one (the same -j that jwstrun.mosaic
    split the budget by), else the stage's memory model."""
    if not planned:
        return stage.memory[0]
    if all(p.memory is not None for p in planned):
        return float(max(p.memory.estimate.in_memory_bytes for p in planned))
    return stage.bytes_per_task(max(p.pixels * p.n_members for p in planned))


def make_tasks(
    planned: list[Planned],
    outdir: Path,
    parameters: dict,
    in_pool: bool,
    validate: bool,
    keep_temp: bool = False,
    corrections: list[dict] = (),
    exposure_sets: dict[str, list[dict]] | None = None,
) -> list[Task]:
    """The :class:`Task` of each planned task (a one-product copy of an association
    written into the task's directory where needed); ``keep_temp`` keeps each task's
    directory after it ends; ``corrections`` run before the pipeline, ``exposure_sets``
    give a set step among them what it reads (:mod:`._corrections`)."""
    tasks = []
    tmp_root = outdir / TMP_DIRNAME
    for item in planned:
        task_id = _task_id(item)
        workdir = tmp_root / task_id
        if item.input is not None:
            task_input = item.input
        else:
            # Several products in one association: each task gets its own
            # one-product copy (same file name, so meta.asn.table_name is kept).
            task_input = workdir / "asn" / Path(item.asn.path).name
            _write_product_asn(item.asn, item.asn_product, task_input)
        inputs = [_input_entry(p, role) for p, role in zip(item.inputs, item.roles, strict=True)]
        grid = ((parameters.get("steps") or {}).get("resample") or {}).get("output_wcs")
        if grid and Path(grid).is_file():  # resample's output grid: recorded, hashed as an input
            inputs.append(_input_entry(Path(grid).absolute(), "grid"))
        task_parameters = parameters if item.variant is None else item.variant.parameters
        if item.memory is not None and item.memory.call_overrides():
            task_parameters = merge_parameters(task_parameters, item.memory.call_overrides())
        tasks.append(
            Task(
                task_id=task_id,
                pipeline=item.pipeline,
                input=str(task_input),
                product=item.product,
                inputs=inputs,
                outdir=str(outdir),
                workdir=str(workdir),
                log_file=str(outdir / LOG_DIRNAME / f"{task_id}.log"),
                parameters=task_parameters,
                fingerprint="",
                in_pool=in_pool,
                validate=validate,
                expect_background=item.has_background,
                memory=item.memory.to_dict() if item.memory is not None else None,
                expected_outputs=expected_outputs(item),
                keep_temp=keep_temp,
                call_inputs=item.call_inputs,
                input_dir=item.input_dir,
                status_keyword=item.status_keyword,
                corrections=list(corrections),
                exposure_sets=_task_sets(item, exposure_sets),
                subdir=item.variant.subdir if item.variant is not None else None,
                sweep=dict(item.variant.values) if item.variant is not None else None,
                expected_skips=item.expected_skips,
            )
        )
    return tasks


def _task_sets(item: Planned, exposure_sets: dict | None) -> dict:
    """The part of ``exposure_sets`` the exposures of ``item`` need."""
    if not exposure_sets:
        return {}
    mine = {os.path.abspath(p) for p in item.inputs}
    return {path: members for path, members in exposure_sets.items() if path in mine}


def check_maximum_cores(parameters: dict, jobs: int) -> None:
    """Refuse a steps' maximum_cores other than 1 together with a pool of several workers."""
    if jobs <= 1:
        return
    for step, pars in (parameters.get("steps") or {}).items():
        value = (pars or {}).get("maximum_cores")
        if value is None or str(value).lower() in ("1", "none"):
            continue
        raise ConfigError(
            f"step {step}: maximum_cores={value} cannot be combined with jobs={jobs}: each of "
            f"the {jobs} workers would start its own processes and overload the machine "
            "(jwst issues 8383, 8743). Use jobs=1 to let the step use several cores, "
            "or drop the maximum_cores setting."
        )


def correction_list(pipeline: str, profiles: Iterable[str], sets: Iterable[str]) -> list[dict]:
    """The corrections the profiles run before the stage's pipeline (``before:``)."""
    profiles, sets = list(profiles or ()), list(sets or ())
    if not profiles and not sets:
        return []
    from ..profiles import build_corrections

    return build_corrections(pipeline, profiles, sets)


def call_parameters(pipeline: str, profiles: Iterable[str], sets: Iterable[str]) -> dict:
    """Pipeline.call keyword arguments from profiles and sets (checked by jwstrun.profiles)."""
    profiles, sets = list(profiles or ()), list(sets or ())
    if not profiles and not sets:
        return {}
    from ..profiles import build_call_parameters

    return dict(build_call_parameters(pipeline, profiles, sets) or {})


def merge_parameters(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged in, nested dicts key by key (a copy)."""
    merged = json.loads(json.dumps(base))
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_parameters(merged[key], value)
        else:
            merged[key] = value
    return merged


def plan_memory(
    planned: list[Planned],
    parameters: dict,
    jobs: int | None,
    executor: str,
    *,
    max_memory=None,
    max_mosaic_pixels: int | None = None,
    low_memory: bool = False,
    overlay: dict | None = None,
) -> None:
    """Mosaic preflight and memory mode of every association (jwstrun.mosaic); before any
    step.  Each task is estimated with the parameters it runs with: a sweep variant's own
    (``item.variant``), else ``parameters``; ``overlay`` is merged into both."""
    from ..mosaic import (
        MosaicRefused,
        decide,
        default_max_mosaic_pixels,
        estimate_association,
        memory_budget,
        spec_bool,
    )

    from ._sweep import variant_error

    def own(item) -> dict:
        given = parameters if item.variant is None else item.variant.parameters
        return merge_parameters(given, overlay) if overlay else given

    if low_memory and any(spec_bool(own(item).get("in_memory")) is True for item in planned):
        raise ConfigError(
            "low_memory=True asks for the pipeline's on-disk mode but in_memory=true is set "
            "(profile or sets); drop one of them."
        )
    budget, source = memory_budget(max_memory)
    limit = max_mosaic_pixels or default_max_mosaic_pixels(budget)
    # without max_mosaic_pixels the limit is what the budget holds: a refusal names the budget
    limit_from_budget = None if max_mosaic_pixels else source
    # A refusal is kept with its association and raised by run_tasks only if the
    # association has to run: an up-to-date product is not refused on a re-run
    # with a smaller max_memory.
    estimates = {}
    for index, item in enumerate(planned):
        item.memory = item.refused = None
        try:
            estimates[index] = estimate_association(
                item.product, [m.path for m in item.asn_product.by_type("science")], own(item),
                max_mosaic_pixels=limit, limit_from_budget=limit_from_budget,
            )
        except MosaicRefused as exc:
            item.refused = variant_error(item.variant, exc)
    # The budget is split between the associations that run at the same time:
    # -j, or the -j that run_tasks will choose from the same in-memory estimates.
    if jobs is None and executor == "local" and estimates:
        from .._system import default_jobs

        jobs = default_jobs(len(planned), max(e.in_memory_bytes for e in estimates.values()))[0]
    # Dask workers have their own memory (unknown here): each gets the whole budget.
    concurrent = 1 if executor == "dask" else max(1, min(jobs or 1, len(planned)))
    share = budget // concurrent
    for index, item in enumerate(planned):
        estimate = estimates.get(index)
        if estimate is None:
            continue
        try:
            item.memory = decide(
                estimate, share, budget, source, low_memory=low_memory,
                user_in_memory=own(item).get("in_memory"), jobs=concurrent,
            )
        except MosaicRefused as exc:
            item.refused = variant_error(item.variant, exc)
            continue
        log.info("%s: %s mode, mosaic %s; %s", item.product, item.memory.mode.replace("_", " "),
                 "x".join(map(str, estimate.shape[::-1])) if estimate.shape else "-",
                 item.memory.reason)
