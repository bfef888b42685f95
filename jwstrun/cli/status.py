"""``jwstrun status``: what is done, failed, running and missing in an OUTDIR, across shards."""

from __future__ import annotations

import json

import click

from .options import json_option

__all__ = ["register", "status_command"]

_STYLES = {"done": "green", "failed": "red", "running": "yellow", "missing": "magenta",
           "empty": "dim"}


@click.command("status")
@click.argument("outdir", type=click.Path(file_okay=False, path_type=str))
@click.option("--all", "show_all", is_flag=True,
              help="List every task, not only those that are not done.")
@json_option
def status_command(outdir, show_all, as_json):
    """Say which tasks of OUTDIR are done, failed, running or missing.

    Reads OUTDIR alone (the manifest, the plans the runs recorded and the locks
    of the runs working there), so it works while shards of a job array run and
    after some were killed: a task is 'running' while a live run has claimed it,
    'missing' when it was planned but never finished (re-run that shard, or the
    whole command, to complete the set). Lists the tasks that are not done (all
    with --all), then the counts; --json gives everything.

    \b
    Examples:
      jwstrun status out/
      jwstrun status out/ --all
      jwstrun status out/ --json | jq .counts
    """
    from ..runner.status import outdir_status

    status = outdir_status(outdir)
    if as_json:
        click.echo(json.dumps(status.to_dict(), indent=1))
        return
    _render(status, show_all)


def _render(status, show_all: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ..console import out

    shown = [t for t in status.tasks if show_all or t.state != "done"]
    if shown:
        table = Table(title=escape(f"tasks in {status.outdir}"), title_justify="left")
        for column in ("task", "stage", "shard", "state", "detail"):
            table.add_column(column, overflow="fold")
        for task in shown:
            table.add_row(escape(task.task_id), task.stage or "-",
                          str(task.shard) if task.shard else "-",
                          f"[{_STYLES[task.state]}]{task.state}[/]", escape(task.detail or ""))
        out(table)
    for run in status.runs:
        shard = f"shard {run['shard']}, " if run.get("shard") else ""
        out(escape(f"running: {shard}pid {run.get('pid')} on {run.get('host')} since "
                   f"{run.get('started')}: {run.get('command', '?')}"), soft_wrap=True)
    counts = status.counts
    out(f"{len(status.tasks)} task(s): " + ", ".join(f"{counts[s]} {s}" for s in counts)
        + ("; complete" if status.complete else ""))


def register(group: click.Group) -> None:
    """Add status to the jwstrun group."""
    group.add_command(status_command)
