"""Tiled Stage 3: ``jwstrun image3 --tile-size`` (issue 22; docs/workflows/tiles.md).

An association's Stage 3 runs as two phases of ordinary runner tasks (resume,
atomic outputs, manifest records, validation, the local pool, Dask, ``--cluster``
and ``--shard`` as for any task):

1. ``image3-align``, one task per association: calwebb_image3 with resample and
   source_catalog skipped (tweakreg, skymatch and outlier_detection need all the
   members together) -> the ``_crf`` files;
2. ``image3-tile``, one task per tile of the association's grid that a ``_crf``
   footprint overlaps (:class:`jwstrun.runner._tile_pipeline.TilePipeline`:
   jwst's resample onto the tile's part of the grid, with a margin, cropped;
   source_catalog on the tile, each source kept by the tile owning its centroid).
   Its input is the tile's association ``OUTDIR/tiles/<product>_<tile>_asn.json``:
   the overlapping ``_crf`` files in the association's order and the tile.

A tile that no ``_crf`` footprint overlaps writes nothing: its manifest record has
``status: "empty"`` and ``jwstrun status`` lists it as empty.

The grid is ``grid=`` (a gwcs ASDF file, :func:`jwstrun.mosaic.gridfile.read_grid`)
or, without it, the one ``jwstrun grid`` makes from the association's inputs and
resample's grid parameters, written as ``OUTDIR/<product>_grid.asdf`` (the
single-shot image3 with that grid as resample's ``output_wcs`` makes the same
pixels).  With ``--shard``, the align tasks and the tiles of every association spread
over all the shards (:mod:`._tile_shards`: a shard waits for an association aligned
by another before running its tiles).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .._io import atomic_write
from ..locking import planning_lock
from ..errors import ConfigError
from ..manifest import Manifest, TaskRecord, TaskResult
from ..mosaic.tiles import (DEFAULT_MARGIN, TILE_ASN_KEY, Tile, check_tile_size, cut_tiles,
                            parse_tile_size)
from ._outputs import expected_outputs
from ._parent import RunSummary, run_tasks
from ._tile_memory import assemble_all, attach_tile_memory
from ._tile_shards import (AlignWatch, assemble_when_complete, check_phase, check_phase_tiles,
                           spread, wait_for_aligns)
from .plan import Planned, _task_id, merge_parameters
from .task import _skipped_steps

__all__ = ["ALIGN_STAGE", "TILE_STAGE", "Tiling", "TILES_DIRNAME", "tiling_for"]

log = logging.getLogger(__name__)

ALIGN_STAGE = "image3-align"
TILE_STAGE = "image3-tile"
#: where the tiles' associations are written, in OUTDIR
TILES_DIRNAME = "tiles"
#: resample parameters the grid decides (given to the grid, not to each tile)
_GRID_KEYS = ("pixel_scale_ratio", "pixel_scale", "rotation", "output_shape", "crpix",
              "crval", "output_wcs")


@dataclass
class Tiling:
    """``tile_size`` (pixels or an angle), ``grid`` (a grid file or None) and the margin
    of a tiled image3; :meth:`run` has :func:`run_tasks`'s signature."""

    tile_size: object  # None: --max-memory chooses it (runner._tile_memory)
    grid: str | None = None
    margin: int = DEFAULT_MARGIN
    assemble: bool = False
    #: None (both phases), "align" or "tiles" (one of them: two job arrays)
    phase: str | None = None
    #: product -> its jwstrun.mosaic.tile_plan.TilePlan (the tile size, each tile's estimate)
    plans: dict = field(default_factory=dict)
    _grids: dict = field(default_factory=dict)

    def check(self) -> None:
        """What can be checked before any input is read: the grid file and the size
        against it (:class:`ConfigError` / :class:`jwstrun.mosaic.GridError`)."""
        parse_tile_size(self.tile_size, pixel_scale=1.0)  # the syntax
        if self.grid is not None:
            self._tiles(self._read(self.grid))

    def _read(self, path):
        from ..mosaic.gridfile import read_grid

        return read_grid(path)

    def size_in_pixels(self, grid) -> int | None:
        """The tile size given, in pixels of ``grid`` (checked); None when not given."""
        if self.tile_size is None:
            return None
        size = parse_tile_size(self.tile_size, pixel_scale=grid.pixel_scale)
        check_tile_size(size, grid.shape, given=str(self.tile_size).strip())
        return size

    def _tiles(self, grid, product: str | None = None) -> list[Tile]:
        plan = self.plans.get(product)
        size = plan.size if plan is not None else self.size_in_pixels(grid)
        return cut_tiles(grid.shape, size, self.margin)

    def run(self, pipeline: str, planned: list[Planned], outdir: Path, *, parameters: dict,
            plan_shards: dict | None = None, remove_if_refused: list | None = None,
            **kwargs) -> RunSummary:
        """Both phases over the planned associations (see the module docstring); with
        ``shard``, ``planned`` is the whole plan and both phases spread over every shard
        (:mod:`._tile_shards`)."""
        shard = kwargs.get("shard")
        with planning_lock(outdir) if shard is not None else contextlib.nullcontext():
            # a shard keeps the grids it wrote: another shard may already use them
            layouts = [self._layout(item, outdir, parameters,
                                    remove_if_refused if shard is None else None)
                       for item in planned]
        align = [dataclasses.replace(item, pipeline=ALIGN_STAGE) for item in planned]
        align_shards = spread(shard, [_task_id(a) for a in align])
        tile_shards = spread(shard, [_tile_id(a.product, t) for a, (_, _, cut) in
                                     zip(align, layouts, strict=True) for t in cut])
        mine = (lambda task_id: shard is None or tile_shards.get(task_id, align_shards.get(
            task_id)) == shard.index)
        skips = {"steps": {"resample": {"skip": True}, "source_catalog": {"skip": True}}}
        align_parameters = merge_parameters(parameters, skips)
        first, tile_pool = None, None
        if self.phase != "tiles":
            my_aligns = [a for a in align if mine(_task_id(a))]
            if self.phase is None:
                tile_pool = _early_tile_pool(len(my_aligns), sum(
                    mine(_tile_id(a.product, t)) for a, (_, _, cut) in
                    zip(align, layouts, strict=True) for t in cut), kwargs)
            try:
                first = run_tasks(ALIGN_STAGE, my_aligns, outdir, plan_shards=align_shards,
                                  parameters=align_parameters,
                                  remove_if_refused=remove_if_refused, **kwargs)
            except BaseException:
                _shut(tile_pool)
                raise
            if self.phase == "align":
                return dataclasses.replace(first, pipeline="image3")
        try:
            tiles, empty, failed_aligns = self._tiles_to_run(
                align, layouts, first, mine, align_shards, outdir, parameters,
                align_parameters, kwargs)
        except BaseException:
            _shut(tile_pool)
            raise
        empties = _record_empty(outdir, empty, shard)
        if first is not None:  # run_tasks shut the first phase's pool down
            kwargs.update(pool=tile_pool, corrections=None, exposure_sets=None,
                          on_event=_counted_on(kwargs.get("on_event"), len(first.results)))
        if shard is None:
            tile_shards = {_task_id(p): None for p in tiles + empty}
        second = run_tasks(TILE_STAGE, tiles, outdir, parameters=_tile_parameters(parameters),
                           plan_shards=tile_shards, **kwargs) if tiles else None
        if second is None:
            _shut(kwargs.get("pool"))  # an early pool: no task for it
        summary = _combined(first, second, empties + failed_aligns, outdir)
        if self.assemble and shard is not None:
            assemble_when_complete(outdir, planned, layouts, summary,
                                   force=kwargs.get("force", False))
        elif self.assemble:
            assemble_all(outdir, planned, layouts, summary, force=kwargs.get("force", False))
        return summary

    def _tiles_to_run(self, align, layouts, first, mine, align_shards, outdir: Path,
                      parameters: dict, align_parameters: dict, kwargs):
        """(this run's tile tasks, its empty tiles, a failed result per align another
        shard failed) once the aligns they need are done."""
        need = {}  # align task id -> the number of this shard's tiles that need it
        for item, (_, _, cut) in zip(align, layouts, strict=True):
            n = sum(mine(_tile_id(item.product, t)) for t in cut)
            if n:
                need[_task_id(item)] = n
        ran = {r.task_id: r.status for r in (first.results if first is not None else [])}
        done = {k for k, status in ran.items() if status in ("ok", "skipped")}
        # aligned by other shards, or by another run that had claimed this shard's align
        foreign = {k: n for k, n in need.items() if k not in ran}
        ready, failed_aligns = self._aligned_elsewhere(
            [a for a in align if _task_id(a) in foreign], foreign, align_shards, outdir,
            align_parameters, kwargs)
        done |= ready
        tiles, empty = [], []
        skipped = _skipped_steps(parameters)  # their status is in the tiles' products
        for item, (grid_path, grid, cut) in zip(align, layouts, strict=True):
            if _task_id(item) not in need:
                continue
            if _task_id(item) not in done:
                if _task_id(item) in ran:
                    log.warning("%s: its alignment failed; its tiles were not run.",
                                item.product)
                continue
            full, none = _plan_tiles(item, outdir, grid_path, grid,
                                     [t for t in cut if mine(_tile_id(item.product, t))],
                                     skipped)
            if item.product in self.plans:
                attach_tile_memory(self.plans[item.product], full,
                                   {f"{item.product}_{t.name}": t for t in cut})
            tiles += full
            empty += none
        return tiles, empty, failed_aligns

    def _aligned_elsewhere(self, items: list[Planned], need: dict, owners: dict,
                           outdir: Path, parameters: dict, kwargs: dict):
        """(the align task ids of ``items`` that are done, a failed result for each that
        failed): aligned by other shards (waited for), or by a first phase run before
        (``phase="tiles"``: refused unless done)."""
        if not items:
            return set(), []
        watch = AlignWatch(items, outdir, parameters, kwargs)
        if self.phase == "tiles":  # --force re-runs the tiles, not the aligns before them
            watch.force = False
            check_phase_tiles(watch, need, outdir, kwargs.get("command", "jwstrun"))
            return set(need), []
        return wait_for_aligns(watch, need, owners, kwargs.get("shard"), outdir)

    def _layout(self, item: Planned, outdir: Path, parameters: dict, made: list | None):
        """The association's grid file, grid and tiles (checked before anything runs;
        a grid made here is written into OUTDIR)."""
        grid = self.grid_of(item, parameters)
        if self.grid is not None:
            from ..mosaic.grid import read_footprint
            from ..mosaic.gridfile import check_coverage

            footprints = [read_footprint(m.path) for m in item.asn_product.by_type("science")]
            check_coverage(self.grid, item.product, footprints)  # as a single-shot --grid is
            _note_edge_crossing(self.grid, item.product, grid, footprints)
            return str(Path(self.grid).resolve()), grid, self._tiles(grid, item.product)
        from ..mosaic.gridfile import read_grid

        cut = self._tiles(grid, item.product)
        path = outdir / f"{item.product}_grid.asdf"
        if not (path.exists() and _same_grid(read_grid(path), grid)):
            grid.write(path)
            if made is not None:
                made.append(path)
        return str(path), grid, cut


    def grid_of(self, item: Planned, parameters: dict):
        """The association's grid: ``grid``, or the one made from its inputs (once)."""
        if item.product in self._grids:
            return self._grids[item.product]
        if self.grid is not None:
            grid = self._read(self.grid)
        else:
            from ..mosaic.gridfile import make_grid
            from ..mosaic.tiles import GRID_PADDING

            resample = (parameters.get("steps") or {}).get("resample") or {}
            members = [m.path for m in item.asn_product.by_type("science")]
            grid = make_grid(members, pixel_scale=_float(resample.get("pixel_scale")),
                             pixel_scale_ratio=_float(resample.get("pixel_scale_ratio")),
                             rotation=_float(resample.get("rotation")), padding=GRID_PADDING)
        self._grids[item.product] = grid
        return grid


def _early_tile_pool(n_aligns: int, n_tiles: int, kwargs: dict):
    """The tile phase's local workers, started beside the align phase's when it leaves
    cores idle (one association on two cores: one align task), so that their jwst import
    is done when the first tile is ready; None otherwise.
    run_tasks gives the pool its final size and environment, as to any early pool."""
    if kwargs.get("executor_kind", "local") != "local" or not n_tiles:
        return None
    from ..stages import TILED_STAGES
    from ._parent import early_pool

    stage = TILED_STAGES[TILE_STAGE]
    return early_pool(stage, n_tiles, kwargs.get("jobs"), stage.memory[0],
                      kwargs.get("crds_env") or {}, kwargs.get("extra_env") or {},
                      kwargs.get("max_tasks_per_worker", 25), idle=n_aligns)


def _shut(pool) -> None:
    if pool is not None:
        pool.shutdown(cancel=True)


def _note_edge_crossing(path, product: str, grid, footprints) -> None:
    """Log how many exposures cross the edge of the given grid: the tiles on that edge
    resample them whole (docs/workflows/tiles.md), which a padded grid avoids."""
    from ..mosaic.tile_plan import crossing_edge, footprint_boxes
    from ..mosaic.tiles import GRID_PADDING

    crossing = int(crossing_edge(footprint_boxes(footprints, grid), grid.shape).sum())
    if crossing:
        log.info("%s: %d of %d exposures reach the edge of %s; the tiles on that edge "
                 "resample them whole (slower; a grid with room around the data, such as "
                 "'jwstrun grid --padding %s', avoids it)", product, crossing,
                 len(footprints), Path(path).name, GRID_PADDING)


def _float(value):
    return None if value in (None, "", "None") else float(value)


def _same_grid(a, b) -> bool:
    return a.to_dict() | {"path": None} == b.to_dict() | {"path": None}


def _tile_parameters(parameters: dict) -> dict:
    """The tile pipeline's parameters: resample's (less those the grid decides) and
    source_catalog's, as the single-shot image3 would use them."""
    steps = parameters.get("steps") or {}
    resample = {k: v for k, v in (steps.get("resample") or {}).items() if k not in _GRID_KEYS}
    tile_steps = {"resample": resample, "source_catalog": dict(steps.get("source_catalog") or {})}
    return {"steps": {k: v for k, v in tile_steps.items() if v}} if any(tile_steps.values()) \
        else {}


def _plan_tiles(item: Planned, outdir: Path, grid_path: str, grid, tiles: list[Tile],
                skipped: list[str]):
    """The planned tile tasks of one association and its empty tiles."""
    from ..mosaic.grid import read_footprint
    from ..mosaic.tile_plan import footprint_boxes

    crfs = [outdir / name for name in expected_outputs(item)]
    boxes = footprint_boxes([read_footprint(p) for p in crfs], grid)
    directory = outdir / TILES_DIRNAME
    directory.mkdir(exist_ok=True)
    full, empty, work = [], [], {}
    for tile in tiles:
        members = [i for i, box in enumerate(boxes) if _overlaps(box, tile)]
        product = f"{item.product}_{tile.name}"
        if not members:
            empty.append(Planned(TILE_STAGE, product, None, [], []))
            continue
        path = directory / f"{product}_asn.json"
        _write_if_changed(path, _tile_asn(item, product, [crfs[i] for i in members], members,
                                          len(crfs), grid_path, grid, tile))
        full.append(Planned(TILE_STAGE, product, path, [path, *(crfs[i] for i in members)],
                            ["association", *(["science"] * len(members))],
                            n_members=len(members), expected_skips=skipped))
        work[product] = len(members) * tile.margin_shape[0] * tile.margin_shape[1]
    # the most work first: the pool's workers then finish together (the edge tiles last)
    full.sort(key=lambda p: -work[p.product])
    return full, empty


def _overlaps(box, tile: Tile) -> bool:
    """Whether a footprint's pixel box (:func:`jwstrun.mosaic.tile_plan.footprint_boxes`)
    reaches the tile with its margin (pixel i spans [i - 0.5, i + 0.5))."""
    ymin, ymax, xmin, xmax = box
    return (ymax >= tile.my0 - 0.5 and ymin < tile.my1 - 0.5
            and xmax >= tile.mx0 - 0.5 and xmin < tile.mx1 - 0.5)


def _tile_asn(item: Planned, product: str, crfs: list[Path], members: list[int],
              n_members: int, grid_path: str, grid, tile: Tile) -> dict:
    asn = {k: v for k, v in item.asn.data.items() if k != "products"}
    asn["products"] = [{"name": product, "members": [
        {"expname": str(p), "exptype": "science"} for p in crfs]}]
    asn[TILE_ASN_KEY] = {"grid": grid_path, "grid_sha256": _sha256(grid_path),
                     "grid_shape": list(grid.shape), "tile": tile.to_dict(),
                     "member_index": members, "n_members": n_members,
                     "association": item.product}
    return asn


def _sha256(path: str) -> str:
    import hashlib

    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _write_if_changed(path: Path, data: dict) -> None:
    """An unchanged file keeps its mtime: resume does not hash it again."""
    text = json.dumps(data, indent=1) + "\n"
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    atomic_write(path, text)


def _record_empty(outdir: Path, empty: list[Planned], shard) -> list[TaskResult]:
    """A manifest record (``status: "empty"``) for each tile no exposure overlaps."""
    if not empty:
        return []
    manifest = Manifest.load(outdir, shared=shard is not None)
    results = []
    now = time.time()
    for item in empty:
        result = TaskResult(task_id=_task_id(item), status="empty", start=now, end=now)
        record = TaskRecord.from_result(result, pipeline=TILE_STAGE, product=item.product,
                                        pipeline_class="TilePipeline")
        manifest.record(record.to_dict(), save=False)
        results.append(result)
    manifest.save()
    log.info("%d tile(s) hold no exposure: recorded as empty", len(results))
    return results


def _counted_on(on_event, before: int):
    """``on_event`` for the second phase: its plan counts the first phase's tasks too,
    so a progress display counts on from where the first phase ended."""
    if on_event is None:
        return None

    def event(kind, **info):
        if kind == "plan":
            info = {**info, "total": info["total"] + before}
        on_event(kind, **info)
    return event


def _combined(first: RunSummary | None, second: RunSummary | None,
              extra: list, outdir: Path) -> RunSummary:
    """One summary of both phases (``extra``: results no task of this run recorded)."""
    parts = [s for s in (first, second) if s is not None]
    if not parts:  # phase="tiles" in a shard with no tile to run
        return RunSummary(pipeline="image3", outdir=outdir, manifest=Manifest(outdir).path,
                          results=extra,
                          tasks={}, jobs=1, jobs_reason="-", wall_s=0.0)
    return dataclasses.replace(
        parts[-1], pipeline="image3",
        results=[r for s in parts for r in s.results] + extra,
        tasks={k: v for s in parts for k, v in s.tasks.items()},
        wall_s=sum(s.wall_s for s in parts), prefetch_s=sum(s.prefetch_s for s in parts),
        jobs=max(s.jobs for s in parts))


def _tile_id(product: str, tile: Tile) -> str:
    return _task_id(Planned(TILE_STAGE, f"{product}_{tile.name}", None, [], []))


def tiling_for(tile_size, grid, *, assemble: bool = False, max_memory=None,
               phase=None) -> Tiling | None:
    """The :class:`Tiling` of ``tile_size`` and ``grid`` (None without a tile size, unless
    ``max_memory`` may choose one: runner._tile_memory), checked as far as it can be
    before any input is read; ``phase``: "align" or "tiles" runs one phase only."""
    if check_phase(phase) is not None and tile_size is None:
        raise ConfigError(f"phase={phase!r} runs one phase of a tiled image3: give "
                          "tile_size too, or drop phase.")
    if tile_size is None and max_memory is None and assemble:
        raise ConfigError("assemble=True copies the tiles of a tiled image3 into one mosaic: "
                          "give tile_size (or a max_memory the single-shot image3 does not "
                          "fit), or drop assemble=True.")
    if tile_size is None:
        return None if max_memory is None else Tiling(
            None, None if grid is None else os.fspath(grid), assemble=assemble)
    tiling = Tiling(tile_size, None if grid is None else os.fspath(grid), assemble=assemble,
                    phase=phase)
    tiling.check()
    return tiling
