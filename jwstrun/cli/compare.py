"""``jwstrun diff``: what differs between two runs."""

from __future__ import annotations

import json

import click

from .options import json_option

__all__ = ["register", "diff_command"]


@click.command("diff")
@click.argument("run_a", type=click.Path(path_type=str))
@click.argument("run_b", type=click.Path(path_type=str))
@click.option("--tolerance", type=float, default=0.0, show_default=True, metavar="REL",
              help="Relative tolerance: pixels differing by more than REL times the larger "
              "value count (0: exact); also flux ratios (|B/A - 1|) and WCS offsets (in "
              "pixels) up to it are equal.")
@click.option("--all", "all_products", is_flag=True,
              help="List every pair of products compared, not only those that differ.")
@json_option
def diff_command(run_a, run_b, tolerance, all_products, as_json):
    """Compare two runs: their products pair by pair and their manifests.

    RUN_A and RUN_B are -o directories of jwstrun runs (image2, image3, step,
    demo), each with its jwstrun-manifest.json. Products of the same file name
    are compared: per-array statistics of the SCI, ERR, DQ (WHT, CON, VAR_POISSON,
    VAR_RNOISE, VAR_FLAT) differences (max |B-A|, median B-A, pixels differing) and
    the DQ bits that changed; the keywords of the primary and SCI headers that
    differ (not the file's date, name, checksums or the FITS structure);
    the WCS offsets at the centre and corners (_cal, _crf, _i2d); catalogs
    matched by position (counts, median flux ratio, median offset). From the
    manifests, task by task: the versions, CRDS context, reference files and
    resolved parameters that differ. Products only in one run are listed.

    Exit status: 0 identical (within --tolerance), 1 different, 2 bad input.

    \b
    Examples:
      jwstrun diff out/ out-pixfrac/
      jwstrun diff old/ new/ --tolerance 1e-6
      jwstrun diff old/ new/ --json | jq '.settings[] | select(.kind == "parameter")'
    """
    from ..compare import diff_runs

    result = diff_runs(run_a, run_b, tolerance=tolerance, all_products=all_products)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
    else:
        _render(result)
    click.get_current_context().exit(0 if result.identical else 1)


def _render(result) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ..compare.text import product_lines
    from ..console import out

    if result.settings:
        table = Table(title="settings that differ (A -> B)", title_justify="left")
        for column in ("task", "kind", "name", "A", "B"):
            table.add_column(column, overflow="fold")
        for row in result.settings:
            table.add_row(escape(row["task"]), row["kind"], escape(row["name"]),
                          escape(repr(row["a"])), escape(repr(row["b"])))
        out(table)
    if result.products:
        table = Table(title="products (B - A)", title_justify="left")
        for column in ("product", "part", "difference"):
            table.add_column(column, overflow="fold")
        for product in result.products:
            for part, text in product_lines(product):
                table.add_row(escape(product["name"]), part, escape(text))
        out(table)
    for label, names in (("only in A", result.only_in_a), ("only in B", result.only_in_b),
                         ("tasks only in A", result.tasks_only_in_a),
                         ("tasks only in B", result.tasks_only_in_b)):
        for name in names:
            out(escape(f"{label}: {name}"), soft_wrap=True)
    changed = len(result.changed_products)
    verdict = "identical" if result.identical else "different"
    tolerance = f" (tolerance {result.tolerance:g})" if result.tolerance else ""
    out(escape(f"{result.run_a} vs {result.run_b}: {verdict}{tolerance}; {result.n_compared} "
               f"product(s) compared, {changed} differ, {len(result.only_in_a)} only in A, "
               f"{len(result.only_in_b)} only in B; {len(result.settings)} setting(s) differ"),
        soft_wrap=True)


def register(group: click.Group) -> None:
    """Add diff to the jwstrun group."""
    group.add_command(diff_command)
