"""Output ownership: OUTDIR made ready, and no task replacing another task's product.

Every product a task may write is named by its stage's row
(:attr:`jwstrun.stages.Stage.writes` after the product name,
:attr:`~jwstrun.stages.Stage.member_writes` after each member's; any other file
goes to the task's own ``OUTDIR/intermediate/<task-id>/``); before anything
runs, a task that would replace a file another task's manifest record owns, or
that another task of this run writes too, is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import OutputError
from ..products import product_basename
from ..stages import get_stage
from ._intermediates import INTERMEDIATE_DIRNAME
from .task import Task

__all__ = ["TMP_DIRNAME", "LOG_DIRNAME", "INTERMEDIATE_DIRNAME", "prepare_outdir",
           "expected_outputs"]

#: OUTDIR's temporary area (one directory per running task) and task logs
TMP_DIRNAME = ".jwstrun-tmp"
LOG_DIRNAME = "logs"


def prepare_outdir(outdir: str | os.PathLike) -> Path:
    """Create OUTDIR if needed and prove it is writable; :class:`OutputError` otherwise."""
    outdir = Path(outdir).expanduser()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise OutputError(
            f"{outdir}: exists and is not a directory. Choose another outdir."
        ) from exc
    except OSError as exc:
        raise OutputError(
            f"{outdir}: cannot create the output directory ({exc.strerror}). "
            "Choose a directory you can write to as outdir."
        ) from exc
    if not outdir.is_dir():
        raise OutputError(f"{outdir}: exists and is not a directory. Choose another outdir.")
    probe = outdir / f".jwstrun-write-test-{os.getpid()}"
    try:
        probe.unlink(missing_ok=True)  # a planted symlink is removed, never written through
        try:
            with os.fdopen(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                                   0o644), "wb") as handle:
                handle.write(b"x")
        finally:  # a full disk fails the write after the file was created
            probe.unlink(missing_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{outdir}: cannot write to the output directory ({exc.strerror}). "
            "Free space or fix its permissions, or choose another outdir; nothing was run."
        ) from exc
    return outdir.resolve()


def expected_outputs(item) -> list[str]:
    """The names a planned task (:class:`jwstrun.runner.plan.Planned`) may write into
    OUTDIR: ``<product>_<suffix>`` for each of its stage's ``writes``, and
    ``<member>_<asn_id>_<suffix>`` for each science member and ``member_writes``.
    Anything else a task writes is an intermediate file (:mod:`._intermediates`)."""
    if getattr(item, "outputs", None) is not None:  # jwstrun step: the names stpipe gives
        return list(item.outputs)
    stage = get_stage(item.pipeline)
    names = [f"{item.product}_{suffix}" for suffix in stage.writes]
    if stage.member_writes and item.asn_product is not None:
        asn_id = item.asn.data.get("asn_id")
        names += ["_".join([product_basename(m.path), *([str(asn_id)] if asn_id else []), suffix])
                  for m in item.asn_product.by_type("science") for suffix in stage.member_writes]
    return names


def _replacement(to_run: list[tuple[Task, object]], manifest, outdir: Path):
    """An :class:`OutputError` when a task would replace a file that another task's
    manifest record owns, or that another task of this run writes too; else None.

    Tasks are told apart by pipeline and product (what their ids are made of), so a
    record kept under an id of an older jwstrun is still the same task's.
    """
    owners: dict[str, dict] = {}  # file name -> {(pipeline, product): task id}
    for owner, record in manifest.tasks.items():
        if isinstance(record, dict) and record.get("status") in ("ok", "skipped"):
            for name in record.get("outputs") or ():
                if (outdir / str(name)).exists():
                    key = (record.get("pipeline"), record.get("product"))
                    owners.setdefault(str(name), {})[key] = owner
    for task, item in to_run:
        for name in expected_outputs(item):
            others = [o for key, o in owners.get(name, {}).items()
                      if key != (task.pipeline, task.product)]
            if others:
                return OutputError(
                    f"{outdir / name}: task {task.task_id} ({task.input}) would replace this "
                    f"product of task {others[0]}. Give the product another name (for an "
                    "association: its product name, or asn_id for _crf files) or use another "
                    "outdir; nothing was run."
                )
        for name in expected_outputs(item):
            owners.setdefault(name, {})[(task.pipeline, task.product)] = task.task_id
    return None
