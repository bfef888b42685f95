"""``jwstrun image2 --from uncal``: detector1, then image2, into one OUTDIR.

Both runs record their tasks in OUTDIR's manifest (task ids ``detector1-...`` and
``image2-...``), so a re-run skips what is up to date in either stage; image2 takes
the ``_rate`` files detector1 wrote (or found up to date) and nothing else.  One
``--set`` list serves both: a key without a stage prefix goes to the stages that have
its step or parameter (:func:`stage_prefixed`), as ``jwstrun profiles`` reads it.
When image2's corrections read the ``_jump`` files (persist), detector1 saves them.
"""

from __future__ import annotations

import logging

from ..errors import ConfigError
from ..products import product_suffix

__all__ = ["image2_from_uncal", "stage_prefixed", "FROM_TYPES"]

log = logging.getLogger(__name__)

#: what ``from_type`` / ``--from`` of image2 takes: the raw input of detector1
FROM_TYPES = ("uncal",)

#: image2's own parameters, not detector1's
_IMAGE2_ONLY = ("save_bsub", "sweep", "truth")


def image2_from_uncal(run_detector1, run_image2, from_type: str, inputs, outdir, **options):
    """Run ``run_detector1`` over ``inputs`` then ``run_image2`` over the ``_rate``
    files it made, with the same ``options``; image2's summary with detector1's as its
    ``before`` (detector1's alone when none of its tasks made a _rate file)."""
    if from_type not in FROM_TYPES:
        raise ConfigError(f"from_type={from_type!r}: image2 starts from "
                          f"{' or '.join(FROM_TYPES)} only (detector1 first, then image2).")
    options["sets"] = stage_prefixed(options.get("sets") or ())
    options["sets"] += _jumps_kept(options.get("profiles") or (), options["sets"])
    first = run_detector1(inputs, outdir, **{k: v for k, v in options.items()
                                             if k not in _IMAGE2_ONLY})
    rates = [first.outdir / name for result in first.results if result.status != "failed"
             for name in result.outputs if product_suffix(name) == "rate"]
    if not rates:
        log.warning("detector1 made no _rate file: image2 has nothing to run on.")
        return first
    summary = run_image2(rates, outdir, **options)
    summary.before = first
    return summary


def _jumps_kept(profiles, sets: list[str]) -> list[str]:
    """``detector1.steps.jump.save_results=true`` when image2's corrections read the
    ``_jump`` files (snowblind's persist) and no ``--set`` says otherwise: detector1 then
    keeps them in OUTDIR/intermediate/, where the correction finds them."""
    from ..stages import SET_STEPS
    from .plan import correction_list

    if any(item.partition("=")[0].strip().endswith("steps.jump.save_results") for item in sets):
        return []
    if not any(c["class"] in SET_STEPS for c in correction_list("image2", profiles, sets)):
        return []
    log.info("image2's corrections read the _jump files: detector1 saves them "
             "(steps.jump.save_results=true)")
    return ["detector1.steps.jump.save_results=true"]


def stage_prefixed(sets) -> list[str]:
    """``sets`` with each unprefixed ``KEY=VALUE`` given the prefix of the stage(s) of the
    chain that have it (``steps.jump.x=1`` -> ``detector1.steps.jump.x=1``); a key
    neither has, or a malformed one, is left as it is for the stages' own message."""
    from ..profiles import parse_sets

    chain = ("detector1", "image2")
    prefixed = []
    for item in sets:
        if item.partition("=")[0].strip().partition(".")[0] in chain:
            prefixed.append(item)
            continue
        owners = []
        for stage in chain:
            try:
                section = parse_sets([item], stage, pipelines=chain).section(stage)
            except ConfigError:
                owners = []
                break
            if not section.is_empty():
                owners.append(stage)
        prefixed += [f"{stage}.{item.strip()}" for stage in owners] or [item]
    return prefixed
