"""Export profiles to stpipe parameter files (ASDF), so ``strun FILE input`` runs
with the same parameters as jwstrun."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from .._io import atomic_write
from ..errors import OutputError
from ..stages import STAGES, get_stage
from .layers import merge_layers, parse_sets
from .model import Profile, load_profiles
from .spec import PipelineSpec, pipeline_spec

__all__ = ["export_parameter_file", "export_profile"]

log = logging.getLogger(__name__)


def _settings_tree(spec: PipelineSpec, class_name: str, kwargs: dict) -> dict:
    """The tree of an stpipe parameter file holding only ``kwargs`` (every step listed).

    This is stpipe's documented parameter-file format (``class``, ``name``,
    ``parameters``, ``steps``), the tree ``Step.export_config`` writes and
    ``strun`` / ``Step.from_config_file`` read and validate.
    """
    step_kwargs = kwargs.get("steps", {})
    tree = {
        "class": spec.class_name,
        "name": class_name,
        "parameters": {key: value for key, value in kwargs.items() if key != "steps"},
    }
    steps = [
        {"class": step_spec.class_name, "name": step, "parameters": step_kwargs.get(step, {})}
        for step, step_spec in spec.steps.items()
    ]
    if steps:
        tree["steps"] = steps
    return tree


def export_parameter_file(
    pipeline: str,
    layers: Sequence[Profile],
    path: str | os.PathLike,
    *,
    full: bool = False,
) -> Path:
    """Write an stpipe parameter file (ASDF) that ``strun FILE input`` runs with.

    By default only the settings of ``layers`` are written, so CRDS ``pars-*``
    references still apply underneath exactly as they do for jwstrun.  With
    ``full=True`` the pipeline's own ``export_config`` writes every parameter
    (spec defaults frozen, CRDS parameter references then overridden).
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"{path.parent}: directory does not exist; create it first")
    spec = pipeline_spec(pipeline)
    stage = get_stage(pipeline)
    merged = merge_layers(pipeline, layers)
    kwargs = merged.to_call_kwargs()
    if merged.before:  # steps of their own, not parameters of the pipeline
        log.warning("%s: the steps the profile runs before %s (%s) are not in this file; run "
                    "them with strun first (docs/workflows/corrections.md).", path.name,
                    stage.alias, ", ".join(c.step for c in merged.before if not c.skipped))

    def write(tmp: Path) -> None:
        if full:
            stage.load_class()(**kwargs).export_config(tmp)
            return
        import asdf

        with asdf.AsdfFile(_settings_tree(spec, stage.class_name, kwargs)) as af:
            af.write_to(tmp)

    return atomic_write(path, write)


def export_profile(
    profiles: Sequence[str | os.PathLike],
    outdir: str | os.PathLike,
    *,
    pipelines: Sequence[str] = tuple(STAGES),
    sets: Sequence[str] = (),
    full: bool = False,
) -> list[Path]:
    """Export ``<name>_<alias>.asdf`` (``fast_calwebb_image2.asdf``) for each stage
    into ``outdir``; an unprefixed ``--set`` key applies to the stages that have its step."""
    layers = load_profiles(profiles)
    outdir = Path(outdir)
    name = "+".join(p.name for p in layers) or "default"
    written = []
    for pipeline in pipelines:
        these = [*layers, parse_sets(sets, pipeline, pipelines=pipelines)]
        alias = pipeline_spec(pipeline).alias
        written.append(
            export_parameter_file(pipeline, these, outdir / f"{name}_{alias}.asdf", full=full)
        )
    return written
