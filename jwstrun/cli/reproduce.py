"""``jwstrun reproduce`` and ``jwstrun export``: redo a recorded run, with or without
jwstrun (:mod:`jwstrun.reproduce`)."""

from __future__ import annotations

import json

import click

from .options import json_option, set_option

__all__ = ["register", "reproduce_command", "export_command"]


def _crds_path_option(func):
    """``--crds-path``: another cache than the one the run recorded."""
    return click.option(
        "--crds-path", type=click.Path(file_okay=False, path_type=str), default=None,
        help="CRDS cache to use instead of the one the run recorded (it must hold the "
        "run's context; contexts and references never change once published).")(func)


@click.command("reproduce")
@click.argument("source", metavar="OUTDIR_OR_MANIFEST", type=click.Path(path_type=str))
@click.option("-o", "--outdir", required=True, type=click.Path(file_okay=False, path_type=str),
              help="New output directory (new or empty) for the reproduced run.")
@click.option("--go-on", is_flag=True,
              help="Reproduce even what differs from the recorded run (an input changed or "
              "missing, other versions installed, a context not in the cache): one warning "
              "per difference, recorded in the new manifest (reproduced_from).")
@set_option
@_crds_path_option
@click.option("-j", "--jobs", type=int, default=None, help="Parallel workers (default: what "
              "the CPUs and memory allow).")
@json_option
@click.pass_context
def reproduce_command(ctx, source, outdir, go_on, sets, crds_path, jobs, as_json):
    """Re-run exactly what a run's manifest recorded, into a new OUTDIR.

    OUTDIR_OR_MANIFEST is the -o directory of a jwstrun run (image2, image3,
    step, or several of them in one OUTDIR) or its jwstrun-manifest.json. Each
    stage is run again in the recorded order, on the recorded inputs and
    associations, with the recorded parameters and corrections (profile
    before: steps), --no-crds-steppars as recorded, and the recorded CRDS
    context from the recorded cache (--crds-path: another cache). Files an
    earlier stage of the run wrote are read from the new OUTDIR.

    Refused, with one Error line, when anything differs from the recorded
    run: an input missing or changed (sha256), another jwst (or step package)
    version installed, a CRDS context not in the cache, a setting the manifest
    does not record. --go-on reproduces anyway (a warning per difference).
    --set changes one parameter (STAGE.KEY=VALUE for one stage: a variant of
    the run, to compare with jwstrun diff).

    \b
    Examples:
      jwstrun reproduce out/ -o out-again/ && jwstrun diff out/ out-again/
      jwstrun reproduce out/ -o out-pixfrac/ --set image3.steps.resample.pixfrac=0.5
      jwstrun reproduce old/jwstrun-manifest.json -o new/ --go-on --json
    """
    from ..reproduce import read_recorded, reproduce_run

    recorded = read_recorded(source, crds_path=crds_path)
    summary = reproduce_run(source, outdir, go_on=go_on, sets=sets, crds_path=crds_path,
                            jobs=jobs, recorded=recorded)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=1, default=str))
    else:
        for run in summary.summaries:
            click.echo(f"{run.pipeline}: {len(run.succeeded)} ok, {len(run.skipped)} skipped, "
                       f"{len(run.failed)} failed (CRDS context {run.crds_context})")
        click.echo(f"reproduced {summary.recorded.source} into {summary.outdir} with "
                   f"{len(recorded.differences)} difference(s); compare: jwstrun diff "
                   f"{summary.recorded.source} {summary.outdir}")
    if summary.failed:
        click.secho(f"Error: {len(summary.failed)} task(s) failed in the reproduction; see "
                    f"their logs in {summary.outdir}/logs.", err=True, fg="red")
        ctx.exit(1)


@click.command("export")
@click.argument("source", metavar="OUTDIR_OR_MANIFEST", type=click.Path(path_type=str))
@click.option("-o", "--outdir", "bundle", required=True,
              type=click.Path(file_okay=False, path_type=str),
              help="Bundle directory to write (new or empty).")
@_crds_path_option
@json_option
def export_command(source, bundle, crds_path, as_json):
    """Write a bundle that reproduces a run with strun alone (no jwstrun).

    The bundle holds one stpipe parameter file per stage or step (what strun
    --save-parameters writes, with the resolved parameters the manifest
    recorded), the associations, crds.env (the CRDS context and cache the run
    used), a README and run.sh: the strun commands in the run's order, a
    profile's corrections (before: steps) first, each as its own strun
    command. run.sh INPUT_DIR [OUTPUT_DIR] writes the run's products into
    OUTPUT_DIR from the inputs in INPUT_DIR (found by name).

    \b
    Examples:
      jwstrun export out/ -o bundle/
      bundle/run.sh data/ bundle-out/
      INPUT=data/ OUTPUT=bundle-out/ CRDS_PATH=/shared/crds bundle/run.sh
    """
    from ..reproduce import export_run

    result = export_run(source, bundle, crds_path=crds_path)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
        return
    click.echo(f"wrote {result.script} ({len(result.parameter_files)} parameter file(s), "
               f"{len(result.associations)} association(s)); run: {result.script} INPUT_DIR "
               "[OUTPUT_DIR]")
    for note in result.notes:
        click.echo(f"Warning: not exported: {note}", err=True)


def register(group: click.Group) -> None:
    """Add reproduce and export to the jwstrun group."""
    group.add_command(reproduce_command)
    group.add_command(export_command)
