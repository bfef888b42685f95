"""``jwstrun reproduce``: redo a recorded run into a new OUTDIR through the runner's own
calls (:func:`jwstrun.runner.run_detector1`, ``run_image2``, ``run_image3``, ``run_step``).

Each :class:`~jwstrun.reproduce._recorded.Call` becomes one runner call: its recorded
call parameters and corrections as a profile file (the ``before:`` list with each
step's recorded parameters), the recorded CRDS context pinned on the recorded cache
(serverless), ``--no-crds-steppars`` as the run had it.  Associations of the old
OUTDIR are copied into the new one, so their members are the files the earlier
calls rewrote.  The new manifest's ``reproduced_from`` says from where, with what
differences and overrides.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OutputError
from ..manifest import MANIFEST_NAME, Manifest
from ._recorded import RUNTIME_PARAMETERS, Call, Recorded, ReproduceError, read_recorded

__all__ = ["ReproduceSummary", "reproduce_run", "correction_parameters"]

log = logging.getLogger(__name__)


@dataclass
class ReproduceSummary:
    """What :func:`reproduce_run` did: the recorded run, the new OUTDIR and one
    :class:`jwstrun.runner.RunSummary` per runner call."""

    recorded: Recorded
    outdir: Path
    summaries: list = field(default_factory=list)

    @property
    def failed(self) -> list:
        return [r for s in self.summaries for r in s.failed]

    def to_dict(self) -> dict:
        return {"source": str(self.recorded.source), "outdir": str(self.outdir),
                "differences": [d.to_dict() for d in self.recorded.differences],
                "left_out": self.recorded.left_out,
                "calls": [{"stage": s.pipeline, "tasks": len(s.results),
                           "failed": [r.task_id for r in s.failed],
                           "crds_context": s.crds_context} for s in self.summaries]}


def correction_parameters(correction: dict) -> dict:
    """The parameters to give a recorded correction step again: what it logged, less
    stpipe's per-run ones and the unset (null) ones."""
    return {k: v for k, v in (correction.get("parameters") or {}).items()
            if k not in RUNTIME_PARAMETERS and v is not None}


def _profile(call: Call, path: Path) -> str:
    """Write the call's recorded parameters and corrections as a profile file."""
    import yaml

    section = dict(call.parameters or {})
    if call.corrections:
        section["before"] = [{"step": c["step"], **correction_parameters(c)}
                             for c in call.corrections]
    path.write_text(yaml.safe_dump({"description": "recorded parameters (jwstrun reproduce)",
                                    call.stage: section}, sort_keys=False))
    return str(path)


def _sets_for(stage: str, sets: list[str], stages: set[str]) -> list[str]:
    """The ``--set`` overrides for one stage: ``STAGE.KEY=V`` for that stage only (the
    prefix dropped), ``KEY=V`` for every stage."""
    mine = []
    for text in sets:
        prefix, _, rest = text.partition(".")
        if prefix in stages:
            if prefix == stage:
                mine.append(rest)
        else:
            mine.append(text)
    return mine


def _check_outdir(recorded: Recorded, outdir: Path) -> None:
    if outdir.exists() and outdir.resolve() == recorded.source.resolve():
        raise OutputError(f"{outdir}: is the run to reproduce. Give a new directory with -o.")
    if (outdir / MANIFEST_NAME).exists():
        raise OutputError(f"{outdir}: already holds a jwstrun run ({MANIFEST_NAME}). Give a "
                          "new or empty directory with -o.")


def reproduce_run(
    source: str | os.PathLike,
    outdir: str | os.PathLike,
    *,
    go_on: bool = False,
    sets: Iterable[str] = (),
    crds_path: str | None = None,
    jobs: int | None = None,
    validate: bool = True,
    recorded: Recorded | None = None,
    on_event: Callable | None = None,
) -> ReproduceSummary:
    """Redo the run recorded in ``source`` (an OUTDIR or its manifest) into ``outdir``.

    :class:`ReproduceError` (before anything runs) naming what differs from the
    recorded run -- an input missing or changed, another jwst (or step package)
    installed, the CRDS context not in the cache, a setting the manifest does not
    record -- unless ``go_on``: then each difference is a warning and the new
    manifest's ``reproduced_from`` lists them.  ``sets`` are ``--set`` overrides
    (``image3.steps.resample.pixfrac=0.5`` for one stage, without the prefix for every
    stage); ``crds_path`` another cache than the recorded one.
    """
    from .. import runner

    recorded = recorded or read_recorded(source, crds_path=crds_path)
    if recorded.differences and not go_on:
        raise ReproduceError(recorded.refusal())
    for difference in recorded.differences:
        log.warning("%s", difference.message)
    for task in recorded.left_out:
        log.warning("task %s is not reproduced: it did not finish in the recorded run.", task)
    outdir = Path(outdir).expanduser()
    _check_outdir(recorded, outdir)
    sets = list(sets)
    stages = {c.stage for c in recorded.calls}
    cache = recorded.crds.get("CRDS_PATH")
    command = f"jwstrun reproduce {recorded.source}"
    result = ReproduceSummary(recorded=recorded, outdir=outdir)
    with tempfile.TemporaryDirectory(prefix="jwstrun-reproduce-") as tmp:
        for number, call in enumerate(recorded.calls, 1):
            outdir.mkdir(parents=True, exist_ok=True)
            for asn in call.associations:
                _copy_association(Path(asn), outdir, recorded)
            inputs = [str(outdir / i[len("OUTDIR/"):]) if i.startswith("OUTDIR/") else i
                      for i in call.inputs]
            options = dict(
                jobs=jobs, profiles=[_profile(call, Path(tmp) / f"{number}-reproduce.yaml")],
                sets=_sets_for(call.stage, sets, stages),
                no_crds_steppars=call.environment.get("STPIPE_DISABLE_CRDS_STEPPARS") == "True",
                crds_path=cache, offline=bool(cache),
                crds_context=None if call.context in recorded.uncached else call.context,
                validate=validate, on_event=on_event, command=command)
            stage_run = {"detector1": runner.run_detector1, "image2": runner.run_image2,
                         "image3": runner.run_image3}.get(call.stage)
            if stage_run is not None:
                summary = stage_run(inputs, outdir, **options)
            else:
                summary = runner.run_step(call.stage, inputs, outdir, **options)
            result.summaries.append(summary)
    _record_origin(result, sets)
    return result


def _copy_association(asn: Path, outdir: Path, recorded: Recorded) -> None:
    """Copy an association of the old OUTDIR into the new one, with the members no
    reproduced task writes (checked against their recorded checksums)."""
    import json

    shutil.copyfile(asn, outdir / asn.name)
    for product in json.loads(asn.read_text()).get("products", []):
        for member in product.get("members", []):
            name = Path(member["expname"])
            if name.is_absolute() or name.name in recorded.produced:
                continue
            source, dest = asn.parent / name, outdir / name
            if source.is_file() and not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest)


def _record_origin(result: ReproduceSummary, sets: list[str]) -> None:
    """The new manifest's ``reproduced_from``: the source, its differences, overrides."""
    manifest = Manifest.load(result.outdir)
    manifest.data["reproduced_from"] = {
        "source": str(result.recorded.source.resolve()),
        "differences": [{"kind": d.kind, "message": d.message}
                        for d in result.recorded.differences],
        "overrides": sets, "left_out": result.recorded.left_out,
    }
    manifest.save()
