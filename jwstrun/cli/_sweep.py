"""``--sweep`` and ``--truth`` of ``jwstrun image2`` / ``jwstrun image3``, and the sweep's
printed table (:mod:`jwstrun.runner._sweep`, :mod:`jwstrun.compare.sweep`)."""

from __future__ import annotations

import click

__all__ = ["sweep_options", "render_sweep"]


def sweep_options(func):
    options = [
        click.option(
            "--sweep", "sweep", multiple=True, metavar="KEY=V1,V2,...",
            help="Run every task once per value of one parameter (KEY as --set takes it, "
            "values separated by commas), each variant into OUTDIR/sweep/KEY=VALUE/, and "
            "write the variants' table OUTDIR/sweep.ecsv (outlier fraction, sources, "
            "tweakreg fit RMS). Repeat it to run every combination of the values. No HTML "
            "report is written (jwstrun report OUTDIR writes one).",
        ),
        click.option(
            "--truth", type=click.Path(dir_okay=False, exists=True, path_type=str),
            default=None,
            help="With --sweep: ECSV catalog of injected sources (ra, dec; the simulator's "
            "truth_sources.ecsv): the table counts the catalog sources matched to it and the "
            "RMS of their offsets from it (the common offset taken out).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def render_sweep(summary) -> None:
    """The sweep's table, one row per variant."""
    from rich.markup import escape
    from rich.table import Table

    from ..console import out
    from ..runner._sweep import SWEEP_TABLE

    rows = summary.sweep
    if not rows:
        return
    keys = list(rows[0]["values"])
    table = Table(title=escape(f"sweep: {summary.outdir / SWEEP_TABLE}"), title_justify="left")
    for column in ("variant", *keys, "outlier fraction", "sources", "tweakreg RMS\"",
                   "matched", "alignment RMS\""):
        table.add_column(escape(column), overflow="fold")
    for row in rows:
        failed = f" ({row['tasks_failed']} failed)" if row["tasks_failed"] else ""
        table.add_row(
            escape(row["variant"] + failed), *(escape(row["values"][k]) for k in keys),
            _g(row["outlier_fraction"], ".3%"), _g(row["n_sources"], "d"),
            _g(row["tweakreg_rmse_arcsec"], ".4f"), _g(row["n_matched"], "d"),
            _g(row["alignment_rms_arcsec"], ".4f"))
    out(table)


def _g(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)
