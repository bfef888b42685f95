"""``jwstrun detector1``, ``image2``, ``image3`` and ``demo``: run the pipelines.

Each command parses its options, makes one library call
(:func:`jwstrun.runner.run_detector1`, :func:`~jwstrun.runner.run_image2`,
:func:`~jwstrun.runner.run_image3`,
:func:`jwstrun.demo.run_demo`) and renders progress and the summary.
"""

from __future__ import annotations

import contextlib
import json
import re

import click

from ..mosaic.tiles import GRID_PADDING
from ._progress import RunProgress, cli_verbosity, live_wanted, progress_display
from ._run_options import dask_options, memory_options, no_report_option, run_options
from ._sweep import render_sweep, sweep_options
from .options import json_option

__all__ = ["register", "detector1_command", "image2_command", "image3_command", "demo_command"]


# --------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------
def _render_summary(summary) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ..console import out

    table = Table(title=escape(f"{summary.pipeline} in {summary.outdir}"), title_justify="left")
    table.add_column("task", overflow="fold")
    table.add_column("status")
    table.add_column("wall", justify="right")
    table.add_column("peak RSS", justify="right")
    table.add_column("products")
    styles = {"ok": "green", "skipped": "dim", "failed": "red", "empty": "dim"}
    for result in summary.results:
        table.add_row(
            result.task_id,
            f"[{styles.get(result.status, '')}]{result.status}[/]",
            f"{result.wall_s:.1f} s" if result.wall_s is not None else "-",
            _peak_text(summary, result),
            ", ".join(_short_products(result.outputs)) or "-",
        )
    out(table)
    for result in summary.failed:
        # soft_wrap: paths and reasons stay on one line, easy to copy and to grep
        out(f"[red]FAILED[/] {escape(f'{result.task_id}: {result.error}')}", soft_wrap=True)
        if result.log_file:
            out(escape(f"       log: {result.log_file}"), soft_wrap=True)
    counts = (
        f"{len(summary.results)} task(s): {len(summary.succeeded)} ok, "
        f"{len(summary.skipped)} up to date (skipped), {len(summary.failed)} failed"
    )
    out(
        escape(f"{counts} in {summary.wall_s:.1f} s with -j {summary.jobs}; CRDS context "
               f"{summary.crds_context}; manifest {summary.manifest}"),
        soft_wrap=True,
    )
    if summary.parallelism:  # detector1: exposures side by side, or cores inside steps
        mode = {"in_step": "one exposure at a time, cores inside "
                + " and ".join(summary.parallelism["steps"]),
                "exposures": "exposures side by side"}.get(summary.parallelism["mode"], "serial")
        out(escape(f"parallelism: {mode} ({summary.parallelism['reason']})"), soft_wrap=True)
    for line in _kept_lines(summary):
        out(escape(line), soft_wrap=True)


def _kept_lines(summary) -> list[str]:
    """Where the intermediate files and the kept temporary directories are."""
    from ..runner import INTERMEDIATE_DIRNAME, TMP_DIRNAME

    lines = []
    intermediates = sum(len(r.intermediates) for r in summary.results)
    if intermediates:
        lines.append(f"{intermediates} intermediate file(s), not products, in "
                     f"{summary.outdir / INTERMEDIATE_DIRNAME}/<task-id>/")
    kept = [r.temp_dir for r in summary.results if r.temp_dir]
    if len(kept) == 1:
        lines.append(f"temporary directory kept (--keep-temp): {kept[0]}")
    elif kept:
        lines.append(f"{len(kept)} temporary directories kept (--keep-temp) in "
                     f"{summary.outdir / TMP_DIRNAME}/<task-id>")
    return lines


def _peak_text(summary, result) -> str:
    # image3: the estimate made before the run, and the mode it chose (jwstrun.mosaic)
    peak = f"{result.peak_rss_mb:.0f} MB" if result.peak_rss_mb else "-"
    task = summary.tasks.get(result.task_id)
    memory = getattr(task, "memory", None)
    if not memory or result.status == "skipped":
        return peak
    mode = "on disk" if memory.get("mode") == "on_disk" else "in memory"
    return f"{peak} (est. {memory['estimate_mb']:.0f} MB, {mode})"


def _short_products(names) -> list[str]:
    # "jw..._nrcb1_cal.fits" -> "_cal": the task id already names the exposure.
    from ..products import product_suffix

    shown = []
    for name in names:
        suffix = product_suffix(name)
        shown.append(f"_{suffix}" if suffix else name)
    return shown


def _finish(ctx: click.Context, summary, as_json: bool) -> None:
    runs = [s for s in (summary.before, summary) if s is not None]
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=1, default=str))
    else:
        for run in runs:  # image2 --from uncal: detector1's table first
            _render_summary(run)
        render_sweep(summary)
    failed = sum(len(run.failed) for run in runs)
    if failed:
        click.secho(
            f"Error: {failed} of {sum(len(run.results) for run in runs)} task(s) failed; "
            "their reasons and log files are listed above. Fix and re-run: finished tasks "
            "are skipped.",
            err=True,
            fg="red",
        )
        ctx.exit(1)


def _write_report(outdir: str, as_json: bool, truth=None) -> None:
    """The HTML run report (jwstrun.look); a report problem never changes the run's outcome."""
    import logging

    from ..look import write_report

    try:
        path = write_report(outdir, truth=truth)
    except Exception as exc:  # noqa: BLE001 - the products are what matters
        logging.getLogger("jwstrun").warning("no HTML report: %s", exc)
        return
    click.echo(f"report: {path}", err=as_json)  # stdout stays pure JSON with --json


def _run_with_progress(ctx, label, no_progress, as_json, call):
    """``call(progress)`` (one runner call) with the progress display around it."""
    with progress_display(ctx, label, no_progress, as_json) as progress:
        return call(progress)


def _invocation(ctx: click.Context) -> str:
    """The command line of this run, for the manifest: rebuilt from what Click parsed
    (arguments, and every option not left at its default), so it can be pasted again."""
    import shlex

    parts = ["jwstrun", *ctx.command_path.split()[1:]]
    arguments = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(param, click.Argument):
            arguments.extend(value if isinstance(value, (list, tuple)) else [value])
            continue
        if value is None or value == param.default or value in ((), [], False):
            continue
        flag = max(param.opts, key=len)
        if getattr(param, "is_flag", False):
            parts.append(flag)
        elif getattr(param, "multiple", False):
            for item in value:
                parts += [flag, str(item)]
        else:
            parts += [flag, str(value)]
    return shlex.join([*parts, *map(str, arguments)])


#: The runner's errors name its parameters; the command line says them with its flags.
_FLAG_TERMS = [
    (r"\bjobs=(\d+)", r"-j \1"),
    (r"\bshard='([^']*)'", r"--shard \1"),
    (r"a scheduler or cluster in dask_options needs executor='dask'",
     "--scheduler and --cluster need --executor dask"),
    (r"\blow_memory=True asks", "--low-memory asks"),
    (r"\btruth= is for a sweep's table \(sweep=\)", "--truth is for a sweep's table (--sweep)"),
    (r"\btile_size=", "--tile-size "),
    (r"\bassemble=True\b", "--assemble"),
    (r"\bphase='(\w+)'", r"--phase \1"),
    (r"give tile_size too, or drop phase\.", "give --tile-size too, or drop --phase."),
    (r"give tile_size \(or a max_memory", "give --tile-size (or a --max-memory"),
    (r"\(profile or sets\)", "(profile or --set)"),
    (r"\b([Cc]hoose|use) another outdir([.;])", r"\1 another -o OUTDIR\2"),
    (r"Choose a directory you can write to as outdir\.",
     "Choose a directory you can write to with -o."),
]


@contextlib.contextmanager
def _in_flag_terms():
    """Re-raise a library error of run_image2/run_image3 in the command line's terms."""
    from ..errors import JwstrunError

    try:
        yield
    except JwstrunError as exc:
        if exc.args and isinstance(exc.args[0], str):
            text = exc.args[0]
            for pattern, flags in _FLAG_TERMS:
                text = re.sub(pattern, flags, text)
            exc.args = (text, *exc.args[1:])
        raise


def _common_kwargs(kw: dict) -> dict:
    return {
        "jobs": kw["jobs"],
        "force": kw["force"],
        "checksum": kw["checksum"],
        "profiles": kw["profiles"],
        "sets": kw["sets"],
        "no_crds_steppars": kw["no_crds_steppars"],
        "crds_path": kw["crds_path"],
        "crds_context": kw["crds_context"],
        "crds_env_file": kw["crds_env_file"],
        "offline": kw["offline"],
        "validate": not kw["no_validate"],
        "max_tasks_per_worker": kw["max_tasks_per_worker"],
        "keep_temp": kw["keep_temp"],
        "shard": kw["shard"],
        # image2/image3 only (cli._sweep.sweep_options): detector1 and step do not sweep
        **({"sweep": kw["sweep"], "truth": kw["truth"]} if "sweep" in kw else {}),
    }


def _dask_kwargs(kw: dict) -> dict:
    """executor= and dask_options= for run_image2 / run_image3."""
    from ..executors import DaskOptions

    dask_options = DaskOptions(
        scheduler=kw["scheduler"], cluster=kw["cluster"], cluster_cores=kw["cluster_cores"],
        cluster_memory=kw["cluster_memory"], cluster_walltime=kw["cluster_walltime"],
        cluster_jobs=kw["cluster_jobs"], cluster_options=dict(kw["cluster_options"] or {}),
    )
    return {"executor": kw["executor"], "dask_options": dask_options}


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------
@click.command("detector1")
@click.argument("inputs", nargs=-1, required=True)
@run_options("detector1")
@dask_options
@click.option(
    "--report/--no-report", "report", default=False,
    help="Also write OUTDIR/jwstrun-report.html (off by default: 'jwstrun report OUTDIR' "
    "writes it later).",
)
@click.pass_context
def detector1_command(ctx, inputs, report, **kw):
    """Run calwebb_detector1 on _uncal ramps, in parallel and resumably.

    INPUTS are *_uncal.fits files, glob patterns or directories (their _uncal
    files). Each exposure is one task writing _rate and _rateints (one plane per
    integration) into OUTDIR once complete and validated; files a step is asked
    to save besides (--set save_calibrated_ramp=true, steps.jump.save_results=true)
    go to OUTDIR/intermediate/<task-id>/. Exposures that are not direct imaging
    are left out with one line. Re-running skips exposures whose products are up
    to date; 'jwstrun image2 OUTDIR/*_rate.fits' takes the _rate files next
    ('jwstrun image2 --from uncal' runs both).

    jump and ramp_fit can split one exposure over several cores themselves
    (maximum_cores). jwstrun uses either several exposures at once or one
    exposure at a time on every core, never both: with at least as many
    exposures as CPUs, one worker per exposure; with fewer, one worker and
    maximum_cores for jump and ramp_fit (the summary and the manifest say
    which). -j 2 with a maximum_cores setting is refused: it would start more
    processes than cores. Profiles' detector1: sections and --set apply.

    \b
    Examples:
      jwstrun detector1 data/*_uncal.fits -o stage1/
      jwstrun detector1 data/ -o stage1/ -j 4 --set steps.jump.expand_large_events=true
      jwstrun detector1 one_uncal.fits -o stage1/ --set steps.ramp_fit.maximum_cores=half
      jwstrun detector1 'data/*_uncal.fits' -o stage1/ --cluster slurm --cluster-cores 4
      jwstrun image2 'stage1/*_rate.fits' -o stage2/
    """
    from ..runner import run_detector1

    command = _invocation(ctx)
    with _in_flag_terms():
        summary = _run_with_progress(
            ctx, "detector1", kw["no_progress"], kw["as_json"],
            lambda progress: run_detector1(
                inputs, kw["outdir"], on_event=progress, command=command, previews=report,
                **_common_kwargs(kw), **_dask_kwargs(kw),
            ),
        )
    if report:
        _write_report(kw["outdir"], kw["as_json"])
    _finish(ctx, summary, kw["as_json"])


@click.command("image2")
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--from", "from_type", type=click.Choice(["uncal"]), default=None,
    help="INPUTS are _uncal ramps: run 'jwstrun detector1' on them into OUTDIR first, "
    "then image2 on the _rate files it writes (both in the manifest).",
)
@click.option(
    "--save-bsub", is_flag=True,
    help="Also write the background-subtracted _bsub product (when background members exist).",
)
@run_options("image2")
@sweep_options
@dask_options
@click.option(
    "--report/--no-report", "report", default=False,
    help="Also write OUTDIR/jwstrun-report.html, the workers drawing its previews as they "
    "go (off by default for image2: 'jwstrun report OUTDIR' writes it later).",
)
@click.pass_context
def image2_command(ctx, inputs, from_type, save_bsub, report, **kw):
    """Run calwebb_image2 on _rate/_rateints exposures, in parallel and resumably.

    INPUTS are *_rate.fits / *_rateints.fits files, glob patterns, directories
    or Level-2 association files (with background members). Each science
    exposure is one task: it runs in a worker process, its products (_cal or
    _calints, _i2d unless the resample step is skipped, _bsub with --save-bsub)
    appear in OUTDIR only once they are complete and validated, and a failing
    exposure does not stop the others. Dedicated background exposures
    (BKGDTARG=T) among the files are not reduced as science: they become
    background members of the science exposures with the same instrument,
    detector, filter, pupil and subarray, as 'jwstrun asn' would write them.
    Exposures that are not direct imaging (target acquisition, grism...) and
    _uncal files among the inputs are left out with one line (--json lists
    them); with --from uncal, INPUTS are _uncal ramps that 'jwstrun detector1'
    reduces into OUTDIR first. Re-running skips exposures whose products are up
    to date. --report also writes the HTML run report OUTDIR/jwstrun-report.html.

    \b
    Examples:
      jwstrun image2 sim/*_rate.fits -o out/
      jwstrun image2 data/science/ data/background/ -o out/
      jwstrun image2 'data/*_rate.fits' -o out/ -j 4 --profile fast
      jwstrun image2 l2_asn.json -o out/ --save-bsub --set steps.resample.skip=true
      jwstrun image2 'data/*_rate.fits' -o out/ --scheduler tcp://node17:8786
      jwstrun image2 --from uncal 'data/*_uncal.fits' -o out/
    """
    from ..runner import run_image2

    command = _invocation(ctx)
    # No preload of the report's modules here (image3 has one): the workers draw the
    # previews and an image2 page has no plots, so its parent needs no numpy, astropy
    # or matplotlib, and importing them would take CPU from the workers.
    with _in_flag_terms():
        summary = _run_with_progress(
            ctx, "detector1" if from_type else "image2", kw["no_progress"], kw["as_json"],
            lambda progress: run_image2(
                inputs, kw["outdir"], save_bsub=save_bsub, on_event=progress, command=command,
                previews=report, from_type=from_type, **_common_kwargs(kw), **_dask_kwargs(kw),
            ),
        )
    if report and not kw["sweep"]:
        _write_report(kw["outdir"], kw["as_json"])
    _finish(ctx, summary, kw["as_json"])


def _memory_kwargs(kw: dict) -> dict:
    return {"max_memory": kw["max_memory"], "low_memory": kw["low_memory"],
            "max_mosaic_pixels": kw["max_mosaic_pixels"]}


@click.command("image3")
@click.argument("inputs", nargs=-1, required=True)
@run_options("image3")
@sweep_options
@memory_options
@click.option(
    "--grid", type=click.Path(dir_okay=False), default=None, metavar="GRID.asdf",
    help="Resample every association onto this grid ('jwstrun grid'; resample's output_wcs), "
    "so mosaics of different filters and programs are pixel-aligned.",
)
@click.option("--tile-size", metavar="N|ANGLE", default=None,
              help="Run Stage 3 as sky tiles of N x N grid pixels (or an angle: 2arcmin): "
              "tweakreg, skymatch and outlier_detection once per association, then resample "
              "and source_catalog per tile, in parallel. Without --grid, on the grid of the "
              f"inputs with room around them ('jwstrun grid --padding {GRID_PADDING}', "
              "written to OUTDIR) (docs/workflows/tiles.md).")
@click.option("--assemble", is_flag=True,
              help="With tiles: copy them into one <product>_i2d.fits as well (section by "
              "section, never the whole mosaic in memory; no resampling).")
@click.option("--phase", type=click.Choice(["align", "tiles"]), default=None,
              help="With tiles: run only the align tasks, or only the tiles (whose aligns "
              "must be done): two job arrays, the second --dependency=afterok on the first "
              "(docs/workflows/cluster.md).")
@dask_options
@no_report_option
@click.pass_context
def image3_command(ctx, inputs, no_report, grid, **kw):
    """Run calwebb_image3 on Level-3 associations or on _cal files.

    INPUTS are Level-3 association files, or *_cal.fits files (globs allowed),
    which are grouped as DMS groups them (one product per observation, target,
    filter, pupil and subarray: 'jwstrun asn --group-by default') into
    associations written to OUTDIR; for one mosaic across observations, give
    image3 the associations of 'jwstrun asn --group-by default
    --merge-observations'. Each association is one task; several run
    side by side with -j. Products: _crf per exposure, _i2d mosaic, _cat.ecsv
    catalog and _segm segmentation map. Files that are not direct imaging are left
    out with one line (--json lists them).

    Before any step runs, each association's output mosaic and peak memory are
    estimated from the input footprints (docs/image3-scale.md): a mosaic too
    large for the budget is refused, naming the inputs far from the rest, and
    an association that does not fit its share of --max-memory runs in the
    pipeline's on-disk mode.

    \b
    Examples:
      jwstrun image3 out/*_cal.fits -o out/
      jwstrun image3 asn/*_image3_asn.json -o mosaics/ -j 2
      jwstrun image3 big_image3_asn.json -o mosaics/ --max-memory 8GB
      jwstrun image3 out/*_cal.fits -o sweep/ -j 3 \\
          --sweep steps.outlier_detection.snr="5.0 4.0,4.0 3.0,3.0 2.0"
      jwstrun image3 asn/*_image3_asn.json -o mosaics/ --grid grid.asdf
      jwstrun image3 asn/*_image3_asn.json -o tiles/ --tile-size 2arcmin -j 2
      jwstrun image3 wide_image3_asn.json -o tiles/ --max-memory 4GB --assemble
      jwstrun image3 asn/*_image3_asn.json -o mosaics/ --cluster slurm --cluster-cores 8 \\
          --cluster-memory 32GB --cluster-jobs 4 --cluster-option interface=ib0
    """
    from ..runner import run_image3

    command = _invocation(ctx)
    no_report = no_report or bool(kw["sweep"])  # the sweep's table instead
    if not no_report:
        from ..look import preload_report_modules

        preload_report_modules()  # while the parent waits for its workers
    with _in_flag_terms():
        summary = _run_with_progress(
            ctx, "image3", kw["no_progress"], kw["as_json"],
            lambda progress: run_image3(
                inputs, kw["outdir"], on_event=progress, command=command, previews=not no_report,
                tile_size=kw["tile_size"], grid=grid, assemble=kw["assemble"],
                phase=kw["phase"],
                **_common_kwargs(kw), **_memory_kwargs(kw), **_dask_kwargs(kw),
            ),
        )
    if not no_report:
        _write_report(kw["outdir"], kw["as_json"])
    _finish(ctx, summary, kw["as_json"])


@click.command("demo")
@click.argument("outdir", required=False, default="jwstrun-demo",
                type=click.Path(file_okay=False, path_type=str))
@click.option("--full-frame", is_flag=True,
              help="Full-frame NIRCam detectors (several minutes and ~1.5 GB per worker).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Parallel workers (default: from CPUs and memory).")
@click.option("--force", is_flag=True, help="Re-simulate and redo every stage.")
@click.option("--corrections", is_flag=True,
              help="Simulate 1/f noise, snowballs and persistence, and run the chain without "
                   "and with the nircam-clean corrections and an absolute reference catalogue.")
@click.option("--from", "from_type", type=click.Choice(["uncal"]), default=None,
              help="Start from simulated _uncal raw ramps: detector1, then image2 and image3, "
                   "with detector1's products checked against the ramps' truth.")
@click.option("--no-progress", is_flag=True, help="Plain progress lines.")
@no_report_option
@json_option
@click.pass_context
def demo_command(ctx, outdir, full_frame, jobs, force, corrections, from_type, no_progress,
                 as_json, no_report):
    """Simulate, associate, run image2 and image3, validate and check the science.

    Everything runs offline on the CRDS cache the simulator writes into
    OUTDIR/sim. The summary lists the products, the time of each stage and
    science checks against the simulator's truth: alignment residual after
    tweakreg, flux recovery in the catalog and cosmic-ray recall of
    outlier_detection. The default size finishes in about a minute on 2 cores.

    With --corrections the simulated program (OUTDIR/sim-effects) has 1/f
    striping, snowballs and persistence afterimages, and a Gaia-like reference
    catalogue. It is reduced twice: OUTDIR/uncorrected as calwebb_image2/3 come,
    OUTDIR/corrected with the nircam-clean profile (clean_flicker_noise,
    snowblind, persist before image2) and tweakreg's abs_refcat set to the
    catalogue cut to the field. The checks: 1/f row noise power down 5x or
    more, point-source fluxes within 1 %, 90 % or more of the snowball and
    afterimage pixels flagged and under 1 % of the others, the mosaic within
    0.01" of the truth and the exposures' relative alignment unchanged. About
    1.5 minutes on 2 cores.

    With --from uncal the simulator writes the program's _uncal ramps (bias,
    dark, non-linearity, saturating stars, cosmic rays and snowballs) and the
    Stage-1 references (OUTDIR/sim-uncal); jwstrun detector1 reduces them into
    OUTDIR/stage1 and image2 and image3 go on from its _rate files into
    OUTDIR/out. The checks add detector1's against the ramps' truth: slopes
    within noise, jumps flagged (95 % or more), saturated pixels flagged; the
    cosmic-ray recall of outlier_detection is left out (the jump step took them).

    \b
    Examples:
      jwstrun demo
      jwstrun demo /tmp/demo --full-frame -j 2
      jwstrun demo --from uncal
      jwstrun demo --corrections
      jwstrun demo --corrections --json | jq '.checks[] | [.name, .value, .passed]'
    """
    from ..demo import run_demo

    verbosity = cli_verbosity(ctx)
    live = live_wanted(ctx, no_progress)
    current: dict = {}

    def stage(name: str):
        # A fresh progress display for each pipeline stage.
        if current.get("progress") is not None:
            current["progress"].__exit__(None, None, None)
        current["progress"] = RunProgress(name, live=live, verbosity=-1 if as_json else verbosity)
        current["progress"].__enter__()
        return current["progress"]

    if from_type and corrections:
        raise click.UsageError("--from uncal and --corrections are two different demos; "
                               "give one of them.")
    try:
        report = run_demo(outdir, full_frame=full_frame, jobs=jobs, force=force, stage=stage,
                          previews=not no_report, corrections=corrections, from_type=from_type)
    finally:
        if current.get("progress") is not None:
            current["progress"].__exit__(None, None, None)
    if not no_report:
        _write_report(str(report.run_dir or outdir), as_json, truth=report.truth_file)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1, default=str))
    else:
        _render_demo(report)
    if not report.ok:
        click.secho(f"Error: {report.problem_text()}", err=True, fg="red")
        ctx.exit(1)


def _render_demo(report) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ..console import out

    stages = Table(title=escape(f"jwstrun demo in {report.outdir}"), title_justify="left")
    stages.add_column("stage")
    stages.add_column("time", justify="right")
    stages.add_column("result")
    for item in report.stages:
        stages.add_row(item["name"], f"{item['seconds']:.1f} s", escape(item["detail"]))
    out(stages)
    title = ("corrections and absolute astrometry: checks against the truth"
             if report.run_dir is not None else "science checks against the truth")
    checks = Table(title=title, title_justify="left")
    checks.add_column("check")
    checks.add_column("value", justify="right")
    checks.add_column("requirement")
    checks.add_column("")
    for item in report.checks:
        mark = "[green]pass[/]" if item["passed"] else "[red]FAIL[/]"
        checks.add_row(item["name"], item["value"], item["requirement"], mark)
    out(checks)
    out("products:")
    for path in report.products:
        out(escape(f"  {path}"), soft_wrap=True)


def register(group: click.Group) -> None:
    """Add detector1, image2, image3 and demo to the jwstrun group."""
    group.add_command(detector1_command)
    group.add_command(image2_command)
    group.add_command(image3_command)
    group.add_command(demo_command)
