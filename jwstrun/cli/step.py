"""``jwstrun step NAME INPUTS... -o OUTDIR``: any stpipe step over many files.

One library call (:func:`jwstrun.runner.run_step`) with the options of ``jwstrun
image2`` (``cli/_run_options.py``), rendered as image2's summary is.
"""

from __future__ import annotations

import click

from ._run_options import dask_options, run_options
from .run import (
    _common_kwargs,
    _dask_kwargs,
    _finish,
    _in_flag_terms,
    _invocation,
    _run_with_progress,
    _write_report,
)

__all__ = ["register", "step_command"]


@click.command("step")
@click.argument("name")
@click.argument("inputs", nargs=-1, required=True)
@run_options("step")
@dask_options
@click.option(
    "--report/--no-report", "report", default=False,
    help="Also write OUTDIR/jwstrun-report.html, the workers drawing its previews as they "
    "go (off by default: 'jwstrun report OUTDIR' writes it later).",
)
@click.pass_context
def step_command(ctx, name, inputs, report, **kw):
    """Run any stpipe step (or pipeline) NAME over many files, in parallel and resumably.

    NAME is a class alias that strun knows (clean_flicker_noise, snowblind,
    persist, resample...: registered through stpipe's entry points, by jwst,
    snowblind or any installed package) or the import path of a Step class.
    Each input file is one task, writing into OUTDIR what 'strun NAME FILE'
    writes (FILE's name with the step's suffix, the class name lowercased:
    *_cleanflickernoisestep.fits); a step that works on a set of exposures
    (persist: snowblind's persistence flagging) runs as one task over all the
    files, in order of exposure start time, and reads each file's _jump file
    from beside it. Parameters: --set KEY=VALUE (autoparam=true) or a profile
    with a section named after the step's alias, checked against the step's
    spec. Products are validated (and the step's S_* status keyword must be
    COMPLETE) before they appear in OUTDIR; a re-run skips files whose
    products are up to date; --report also writes the HTML run report. A
    step that pipelines skip by default (clean_flicker_noise) runs, as strun
    runs it: a line says so.

    \b
    Examples:
      jwstrun step clean_flicker_noise sim/*_rate.fits -o clean/ -j 2
      jwstrun step clean_flicker_noise 'data/*_rate.fits' -o clean/ --set autoparam=true
      jwstrun step snowblind clean/*_cleanflickernoisestep.fits -o snow/
      jwstrun step persist detector1/*_rate.fits -o persist/
      jwstrun step jwst.step.CleanFlickerNoiseStep data/ -o clean/ --profile clean.yaml
    """
    from ..runner import run_step

    command = _invocation(ctx)
    with _in_flag_terms():
        summary = _run_with_progress(
            ctx, f"step {name}", kw["no_progress"], kw["as_json"],
            lambda progress: run_step(
                name, inputs, kw["outdir"], on_event=progress, command=command,
                previews=report, **_common_kwargs(kw), **_dask_kwargs(kw),
            ),
        )
    if report:
        _write_report(kw["outdir"], kw["as_json"])
    _finish(ctx, summary, kw["as_json"])


def register(group: click.Group) -> None:
    """Add step to the jwstrun group."""
    group.add_command(step_command)
