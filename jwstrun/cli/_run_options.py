"""The options of ``jwstrun image2`` and ``jwstrun image3``, written once.

:func:`run_options` (output, parallelism, resume, profiles, CRDS, validation, progress)
and :func:`dask_options` are shared by both commands; :func:`memory_options` is image3's
memory budget and mosaic-size limit. The commands map the parsed values to the runner's
keyword parameters (``cli/run.py``).
"""

from __future__ import annotations

import click

from .options import (
    crds_context_option,
    crds_path_option,
    json_option,
    no_crds_steppars_option,
    profile_option,
    set_option,
)

__all__ = [
    "run_options",
    "dask_options",
    "memory_options",
    "no_report_option",
    "parse_cluster_option",
    "PixelCount",
]

no_report_option = click.option(
    "--no-report", is_flag=True,
    help="Do not write OUTDIR/jwstrun-report.html (see 'jwstrun report').",
)



def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.2f}".rstrip("0").rstrip(".")


def jobs_help(stage: str) -> str:
    """``-j``'s help for ``stage`` (a stage name, or ``step``), quoting its own memory
    figure from the stage table (:attr:`jwstrun.stages.Stage.memory`, the one home of
    those figures: a full-frame exposure, 10 groups for detector1's ramps)."""
    from ..stages import _STEP_MEMORY, FULL_FRAME_PIXELS, STAGES

    if stage == "step":
        base, per = _STEP_MEMORY
        figure = f"about {_gb(base + per)} GB per full-frame exposure"
    elif stage == "detector1":
        figure = (f"about {_gb(STAGES[stage].bytes_per_task(10 * FULL_FRAME_PIXELS))} GB per "
                  "full-frame exposure of 10 groups")
    elif stage == "image3":
        base, per = STAGES[stage].memory
        figure = (f"about {_gb(base)} GB plus {_gb(per)} GB per full-frame exposure of an "
                  "association, or its mosaic's estimate")
    else:
        figure = (f"about {_gb(STAGES[stage].bytes_per_task(FULL_FRAME_PIXELS))} GB per "
                  "full-frame exposure")
    return ("Parallel pipeline workers (default: what fits the CPUs and the available "
            f"memory, {figure}).")


def run_options(stage: str):
    """The options of a command that runs ``stage`` (detector1, image2, image3 or step)."""
    return lambda func: _run_options(func, stage)


def _run_options(func, stage: str):
    options = [
        click.option(
            "-o", "--output-dir", "outdir", required=True,
            type=click.Path(file_okay=False, path_type=str),
            help="Directory for products, logs/ and jwstrun-manifest.json (created if needed).",
        ),
        click.option(
            "-j", "--jobs", type=click.IntRange(min=1), default=None, help=jobs_help(stage),
        ),
        click.option("--force", is_flag=True, help="Redo tasks whose products are up to date."),
        click.option(
            "--checksum", is_flag=True,
            help="Re-hash every input to decide what is up to date, instead of trusting an "
            "unchanged size and modification time (like rsync --checksum).",
        ),
        profile_option,
        set_option,
        no_crds_steppars_option,
        crds_path_option,
        crds_context_option,
        click.option(
            "--offline", is_flag=True,
            help="Never contact the CRDS server (serverless mode): use the local cache only, "
            "e.g. after 'jwstrun refs prefetch' on a node with network.",
        ),
        click.option(
            "--crds-env", "crds_env_file", type=click.Path(dir_okay=False, exists=True),
            default=None, help="A crds.env file (export CRDS_...=...) such as the one "
            "'jwstrun refs prefetch --write-env' or 'jwstrun simulate' writes.",
        ),
        click.option(
            "--no-validate", is_flag=True,
            help="Do not check products with 'jwstrun validate' before moving them into place.",
        ),
        click.option(
            "--no-progress", is_flag=True,
            help="Plain progress lines instead of the live display (default when not a terminal).",
        ),
        click.option(
            "--max-tasks-per-worker", type=click.IntRange(min=1), default=25, show_default=True,
            help="Replace a worker process after this many tasks (bounds memory growth).",
        ),
        click.option(
            "--keep-temp", is_flag=True,
            help="Keep each task's temporary directory in OUTDIR/.jwstrun-tmp/ (the pipeline's "
            "working files, a failed task's partial products) for debugging; the summary "
            "names it. The next run in OUTDIR removes it.",
        ),
        click.option(
            "--shard", metavar="K/N|slurm", default=None,
            help="Run only shard K of N (1 <= K <= N): the tasks sorted by id, every Nth from "
            "the Kth. Shards share OUTDIR (each task is locked, the manifest merged), so "
            "the tasks of a SLURM job array run side by side; 'slurm' takes K and N from "
            "the array task (SLURM_ARRAY_TASK_ID...). 'jwstrun status OUTDIR' shows the "
            "whole. See docs/workflows/cluster.md.",
        ),
        json_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


# --------------------------------------------------------------------------
# Dask options (docs/dask.md)
# --------------------------------------------------------------------------
def parse_cluster_option(ctx, param, values):
    """KEY=VALUE pairs for the dask-jobqueue cluster; values are read as YAML scalars/lists."""
    import yaml

    parsed = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise click.BadParameter(
                f"{item!r}: give KEY=VALUE, e.g. --cluster-option queue=short "
                "--cluster-option account=abc123", param=param,
            )
        try:
            parsed[key] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed[key] = value
        if isinstance(parsed[key], (int, float)) and not isinstance(parsed[key], bool) \
                and key in ("queue", "account", "project", "interface", "walltime"):
            parsed[key] = value  # names that look like numbers stay text
    return parsed


def dask_options(func):
    options = [
        click.option(
            "--executor", type=click.Choice(["local", "dask"]), default=None,
            help="Where tasks run: 'local' worker processes (default) or 'dask' (a LocalCluster "
            "on 127.0.0.1 with -j workers, or --scheduler / --cluster). See docs/dask.md.",
        ),
        click.option(
            "--scheduler", metavar="ADDRESS", default=None,
            help="Run on a running Dask scheduler, e.g. tcp://node17:8786 or tls://... "
            "(implies --executor dask; inputs, OUTDIR and CRDS_PATH must be on shared storage).",
        ),
        click.option(
            "--cluster", type=click.Choice(["slurm", "pbs"]), default=None,
            help="Start Dask workers as SLURM/PBS batch jobs through dask-jobqueue "
            "(implies --executor dask).",
        ),
        click.option("--cluster-cores", type=click.IntRange(min=1), default=None,
                     help="--cluster: cores per batch job."),
        click.option("--cluster-memory", default=None, metavar="SIZE",
                     help="--cluster: memory per batch job, e.g. 16GB."),
        click.option("--cluster-walltime", default=None, metavar="HH:MM:SS",
                     help="--cluster: wall time per batch job."),
        click.option("--cluster-jobs", type=click.IntRange(min=1), default=1, show_default=True,
                     help="--cluster: number of batch jobs to start."),
        click.option(
            "--cluster-option", "cluster_options", multiple=True, metavar="KEY=VALUE",
            callback=parse_cluster_option,
            help="--cluster: any dask-jobqueue setting, e.g. queue=short, account=abc123, "
            "interface=ib0 (required unless in dask config). Repeatable.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


# --------------------------------------------------------------------------
# image3: memory budget and mosaic size (docs/image3-scale.md)
# --------------------------------------------------------------------------
class PixelCount(click.ParamType):
    """A whole number of pixels at least 1, written plainly, with underscores or as 2e9."""

    name = "pixels"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = str(value).strip().replace("_", "")
            try:
                number = int(text)
            except ValueError:
                try:
                    as_float = float(text)
                except ValueError:
                    self.fail(f"{value!r} is not a number of pixels (e.g. 2e9).", param, ctx)
                if not as_float.is_integer():
                    self.fail(f"{value!r} is not a whole number of pixels.", param, ctx)
                number = int(as_float)
        if number < 1:
            self.fail(f"{value!r}: the limit must be at least 1 pixel.", param, ctx)
        return number


def _parse_size(ctx, param, value):
    if value is None:
        return None
    from ..errors import ConfigError
    from ..mosaic import parse_size

    try:
        return parse_size(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def memory_options(func):
    options = [
        click.option(
            "--max-memory", metavar="SIZE", default=None, callback=_parse_size,
            help="Memory budget, e.g. 16GB (default: 80% of the available memory), split "
            "between the associations running at once. An association whose estimated peak "
            "exceeds its share runs in the pipeline's on-disk mode (in_memory=False), or is "
            "refused before anything runs when even that does not fit.",
        ),
        click.option(
            "--low-memory", is_flag=True,
            help="Always use the pipeline's on-disk mode (in_memory=False): one exposure in "
            "memory at a time, the outlier median from temporary files. Slower.",
        ),
        click.option(
            "--max-mosaic-pixels", type=PixelCount(), default=None, metavar="N",
            help="Refuse an output mosaic larger than N pixels (2000000000, 2_000_000_000 or "
            "2e9), naming the inputs far from the rest (default: the largest mosaic the "
            "memory budget can hold).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func
