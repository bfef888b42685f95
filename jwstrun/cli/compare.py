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
    are compared: per-array statistics of the SCI, ERR, DQ (WHT, CON) differences
    (max |B-A|, median B-A, pixels differing) and the DQ bits that changed;
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
            for part, text in _product_lines(product):
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


def _product_lines(product: dict) -> list[tuple[str, str]]:
    """(part, text) lines of one pair of products."""
    if product.get("missing"):
        return [("file", "missing: " + ", ".join(product["missing"]))]
    lines = []
    for ext, stats in (product.get("arrays") or {}).items():
        if not stats["differs"]:
            lines.append((ext, "same"))
        elif "missing_in" in stats:
            lines.append((ext, f"missing in {stats['missing_in'].upper()}"))
        elif "shape_a" in stats:
            lines.append((ext, f"shape {stats['shape_a']} -> {stats['shape_b']}"))
        elif "bits" in stats:
            bits = ", ".join(f"{b['name']} +{b['gained']}/-{b['lost']}" for b in stats["bits"])
            lines.append((ext, f"{stats['n_differ']} of {stats['n_pixels']} px changed: {bits}"))
        else:
            lines.append((ext, f"{stats['n_differ']} of {stats['n_pixels']} px differ; max "
                          f"|diff| {stats['max_abs_diff']:.4g}, median {_g(stats['median_diff'])}"))
    wcs = product.get("wcs")
    if wcs:
        text = wcs.get("error") or (f"max offset {wcs['max_offset_arcsec']:.4g} arcsec (centre "
                                    f"{wcs['offsets_arcsec']['centre']:.4g})")
        lines.append(("WCS", text))
    cat = product.get("catalog")
    if cat:
        lines.append(("catalog", f"{cat['n_a']} -> {cat['n_b']} sources, {cat['n_matched']} "
                      f"matched; median flux ratio {_g(cat['median_flux_ratio'])}, median "
                      f"offset {_g(cat['median_offset_arcsec'])} arcsec"))
    if not lines:
        lines.append(("file", "same bytes" if product["bytes_equal"] else "bytes differ"))
    return lines


def _g(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def register(group: click.Group) -> None:
    """Add diff to the jwstrun group."""
    group.add_command(diff_command)
