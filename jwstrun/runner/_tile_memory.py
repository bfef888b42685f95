"""Memory by design for tiled image3, and ``--assemble`` (issue 22, items 2 and 3).

Before anything runs (:func:`plan_tiled_memory`):

- the ``image3-align`` task of each association is planned as any image3 task
  (:func:`jwstrun.runner.plan.plan_memory`) with resample and source_catalog
  skipped: tweakreg, skymatch and outlier_detection, in memory or on disk;
- each tile's peak is estimated from the exposures its box with margin overlaps
  and its shape (:func:`jwstrun.mosaic.tile_plan.plan_tiles`), against the budget
  split between the tiles that run at once.  With ``--tile-size`` a tile that does
  not fit refuses the run; without it, ``--max-memory`` chooses the largest tile
  size whose worst tile fits.

``jwstrun image3 --max-memory`` without ``--tile-size`` first plans the single-shot
image3; only when an association does not fit (and its footprints form one field)
does the run become tiled, with the size the budget chooses -- and only if such a
size exists: otherwise the single-shot plan and its refusal stand.

After the tiles, ``--assemble`` copies each association's tiles into
``<product>_i2d.fits`` (:func:`jwstrun.mosaic.assemble.assemble_mosaic`), in the
parent process, one tile at a time; its manifest record is an ``image3-assemble``
task.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from .plan import Planned, plan_memory

__all__ = ["TileMemory", "plan_stage3_memory", "plan_tiled_memory", "auto_tiling_needed",
           "attach_tile_memory", "assemble_tiles", "assemble_all", "ALIGN_SKIPS",
           "ASSEMBLE_STAGE"]

log = logging.getLogger(__name__)

#: what the align phase skips of calwebb_image3
ALIGN_SKIPS = {"steps": {"resample": {"skip": True}, "source_catalog": {"skip": True}}}
ASSEMBLE_STAGE = "image3-assemble"


@dataclass
class TileMemory:
    """A tile task's memory plan (the ``memory`` of its Planned item and manifest record)."""

    estimate_bytes: int
    shape: tuple[int, int]  # the tile's box with margin
    plan: object  # jwstrun.mosaic.tile_plan.TilePlan

    @property
    def estimate(self):
        return SimpleNamespace(in_memory_bytes=self.estimate_bytes)

    def call_overrides(self) -> dict:
        return {}

    def to_dict(self) -> dict:
        plan = self.plan
        return {"mode": "tile", "reason": plan.reason, "estimate_bytes": self.estimate_bytes,
                "estimate_mb": round(self.estimate_bytes / 1e6, 1),
                "share_bytes": plan.share_bytes, "budget_bytes": plan.budget_bytes,
                "budget_source": plan.budget_source, "mosaic": {"shape": list(self.shape)},
                "tiling": plan.to_dict()}


def _concurrent(jobs, executor: str) -> int:
    """Tile tasks that run at once: -j, else the CPUs (run_tasks' default is no more)."""
    from .._system import cpu_count

    return 1 if executor == "dask" else max(1, jobs or cpu_count())


def auto_tiling_needed(planned: list[Planned]) -> bool:
    """Whether a single-shot plan (plan_memory done) refused an association for its
    size or memory, with footprints forming one field (far inputs stay refused)."""
    from ..mosaic.grid import far_inputs, read_footprint

    for item in planned:
        if item.refused is None:
            continue
        members = [m.path for m in item.asn_product.by_type("science")]
        if far_inputs([read_footprint(p) for p in members]):
            return False
        return True
    return False


def plan_stage3_memory(tiling, planned: list[Planned], parameters: dict, jobs, executor: str,
                       **memory):
    """The memory preflight of image3: single-shot (``plan_memory``), tiled
    (:func:`plan_tiled_memory`), or -- ``--max-memory`` without ``--tile-size`` -- tiled
    only when the single-shot plan refuses an association.  Returns the tiling to run
    (None: single-shot)."""
    if tiling is None or tiling.tile_size is None:
        plan_memory(planned, parameters, jobs, executor, **memory)
        if tiling is None or not auto_tiling_needed(planned):
            return None
        from ..mosaic.tile_plan import TilesRefused

        try:
            plan_tiled_memory(tiling, planned, parameters, jobs, executor, **memory)
        except TilesRefused as exc:
            # tiles were not asked for: the single-shot plan stands, its refusals raised
            # only for what has to run (an up-to-date mosaic is not refused)
            log.info("tiles do not fit the memory budget either (%s)", exc)
            plan_memory(planned, parameters, jobs, executor, **memory)
            return None
        log.info("the single-shot image3 does not fit the memory budget: running as tiles, "
                 "of the size the budget allows")
        return tiling
    plan_tiled_memory(tiling, planned, parameters, jobs, executor, **memory)
    return tiling


def plan_tiled_memory(tiling, planned: list[Planned], parameters: dict, jobs, executor: str,
                      *, max_memory=None, max_mosaic_pixels=None, low_memory=False) -> None:
    """The align tasks' memory plans and each association's tile plan (its tile size),
    before anything runs; :class:`jwstrun.mosaic.tile_plan.TilesRefused` when a tile
    cannot fit."""
    from ..mosaic import memory_budget, spec_bool
    from ..mosaic.grid import read_footprint
    from ..mosaic.tile_plan import footprint_boxes, footprint_cut_factors, plan_tiles

    plan_memory(planned, parameters, jobs, executor, max_memory=max_memory,
                max_mosaic_pixels=max_mosaic_pixels, low_memory=low_memory,
                overlay=ALIGN_SKIPS)
    budget, source = memory_budget(max_memory)
    concurrent = _concurrent(jobs, executor)
    steps = parameters.get("steps") or {}
    catalog = spec_bool((steps.get("source_catalog") or {}).get("skip")) is not True
    stepsize = (steps.get("resample") or {}).get("pixmap_stepsize")
    cuts = stepsize is None or float(stepsize) <= 1  # runner._tile_pipeline._tile_inputs
    for item in planned:
        grid, given = tiling.grid_of(item, parameters), tiling.size_in_pixels
        members = [m.path for m in item.asn_product.by_type("science")]
        footprints = [read_footprint(p) for p in members]
        _refuse_far(item.product, grid, footprints)
        plan = plan_tiles(item.product, grid.shape, footprint_boxes(footprints, grid),
                          [f.pixels for f in footprints], budget // concurrent, budget, source,
                          tile_size=given(grid), margin=tiling.margin, catalog=catalog,
                          jobs=concurrent,
                          cut=footprint_cut_factors(footprints, grid) if cuts else None)
        tiling.plans[item.product] = plan
        log.info("%s: %d tiles (%d empty); %s", item.product, plan.n_tiles, plan.n_empty,
                 plan.reason)


def _refuse_far(product: str, grid, footprints) -> None:
    """A grid stretched by inputs far from the rest (a pointing wrong by degrees) is refused
    as the single-shot mosaic is (jwstrun.mosaic.plan), before its tiles are counted."""
    from ..mosaic.grid import far_inputs
    from ..mosaic.tile_plan import TilesRefused

    far = far_inputs(footprints)
    if far:
        listed = "; ".join(f"{Path(f.path).name} ({dist:.2f} deg away)" for f, dist in far[:5])
        more = f" and {len(far) - 5} more" if len(far) > 5 else ""
        ny, nx = grid.shape
        raise TilesRefused(
            f"{product}: the grid would be {nx} x {ny} pixels: these inputs lie far from the "
            f"rest: {listed}{more}. Check their pointing (WCS) or leave them out of the "
            "association; nothing was run.")


def attach_tile_memory(plan, tiles: list[Planned], names: dict[str, object]) -> None:
    """Each tile task's estimate from its association's plan (``names``: product ->
    Tile), for the manifest and the default -j."""
    for item in tiles:
        tile = names[item.product]
        estimate = plan.estimate(tile.name)
        if estimate is not None:
            item.memory = TileMemory(estimate, tile.margin_shape, plan)


def assemble_tiles(outdir: Path, product: str, grid, tiles, results: dict, members, *,
                   force: bool = False):
    """``<product>_i2d.fits`` from the association's tiles (``tiles``: Tile -> task
    result status and its i2d path); None when a tile failed (nothing is written)."""
    from ..manifest import Manifest, TaskRecord, TaskResult
    from ..mosaic.assemble import TilePiece, assemble_mosaic

    failed = [t.name for t, (status, _) in tiles.items() if status == "failed"]
    output = outdir / f"{product}_i2d.fits"
    if failed:
        log.warning("%s: not assembled: tile(s) %s failed; re-run to retry them.", product,
                    ", ".join(failed[:5]))
        return None
    paths = [p for _, p in tiles.values() if p is not None]
    if not paths:
        log.warning("%s: not assembled: no tile holds data.", product)
        return None
    task_id = f"{ASSEMBLE_STAGE}-{product}"
    if (not force and output.exists() and paths
            and output.stat().st_mtime >= max(Path(p).stat().st_mtime for p in paths)):
        results[task_id] = TaskResult(task_id=task_id, status="skipped", outputs=[output.name])
        return output
    start = time.time()
    pieces = [TilePiece(t.box, path) for t, (_, path) in tiles.items()]
    assemble_mosaic(pieces, grid, output, members=[Path(m).name for m in members])
    end = time.time()
    result = TaskResult(task_id=task_id, status="ok", outputs=[output.name],
                        output_sizes={output.name: output.stat().st_size}, start=start, end=end,
                        wall_s=round(end - start, 3))
    manifest = Manifest.load(outdir, shared=True)  # shards may be recording tiles
    manifest.record(TaskRecord.from_result(result, pipeline=ASSEMBLE_STAGE, product=product,
                                           pipeline_class="assemble_mosaic").to_dict())
    results[result.task_id] = result
    return output


def assemble_all(outdir: Path, planned: list[Planned], layouts, summary, *,
                 force: bool = False) -> None:
    """``--assemble``: each association's mosaic from its tiles, after both phases
    (``layouts``: the Tiling's (grid file, grid, tiles) of each association)."""
    from ._outputs import expected_outputs
    from ._tiles import ALIGN_STAGE, TILE_STAGE
    from .plan import _task_id

    status = {r.task_id: r.status for r in summary.results}
    for item, (_, grid, cut) in zip(planned, layouts, strict=True):
        if status.get(_task_id(Planned(ALIGN_STAGE, item.product, None, [], []))) not in (
                "ok", "skipped"):
            continue
        tiles = {}
        for tile in cut:
            product = f"{item.product}_{tile.name}"
            state = status.get(_task_id(Planned(TILE_STAGE, product, None, [], [])), "failed")
            path = outdir / f"{product}_i2d.fits" if state in ("ok", "skipped") else None
            tiles[tile] = (state, path)
        crfs = expected_outputs(dataclasses.replace(item, pipeline=ALIGN_STAGE))
        results: dict = {}
        assemble_tiles(outdir, item.product, grid, tiles, results, crfs, force=force)
        summary.results.extend(results.values())
