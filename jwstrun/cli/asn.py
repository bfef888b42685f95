"""``jwstrun asn``: build, show and check JWST image associations."""

from __future__ import annotations

import json

import click

from .options import json_option

__all__ = ["register", "asn_command"]

_MAX_MEMBERS_SHOWN = 3


def _expand_files(files: tuple[str, ...]) -> list:
    """FILES: files, glob patterns, or directories: their files of the product types an
    association takes (_rate/_rateints/_cal/_calints), leaving out the products a stage
    writes per member (image3's _crf copies of the _cal files beside them), and the
    _uncal files, which the build leaves out saying what to run on them."""
    from ..asn import LEVEL_INPUTS
    from ..inputs import expand_inputs
    from ..stages import EXTERNAL_INPUTS, STAGES, raw_types

    per_member = {name for stage in STAGES.values() for name in stage.member_writes}
    suffixes = [
        s for types in LEVEL_INPUTS.values() for s in types if f"{s}.fits" not in per_member
    ]
    return expand_inputs(files, suffixes=[*suffixes, *EXTERNAL_INPUTS, *raw_types()])


def _expand_backgrounds(values: tuple[str, ...]) -> list:
    """``--background`` values: file names, comma-separated lists, quoted glob patterns or
    directories (their _rate/_rateints files)."""
    from ..asn import LEVEL_INPUTS
    from ..errors import InputError
    from ..inputs import expand_inputs

    items = [v.strip() for value in values for v in value.split(",") if v.strip()]
    if not items:
        return []
    try:
        return expand_inputs(items, suffixes=LEVEL_INPUTS[2])
    except InputError as exc:
        raise InputError(f"--background {exc}") from None


def _short_members(names: list[str]) -> str:
    shown = names[:_MAX_MEMBERS_SHOWN]
    text = "\n".join(shown)
    if len(names) > len(shown):
        text += f"\n… and {len(names) - len(shown)} more"
    return text


def _render_build(result) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from ..console import out

    level = result.level
    if result.group_by:
        groups = [a.group for a in result.associations]
        # Keys with one value for all groups go to the title; the others are columns.
        varying = [k for k in result.group_by if len({g.get(k) for g in groups}) > 1]
        constant = [f"{k}={groups[0].get(k) or '-'}" for k in result.group_by if k not in varying]
        title = f"Level-{level} associations grouped by {', '.join(result.group_by)}"
        if constant:
            title += f" ({', '.join(constant)})"
        table = Table(title=title, box=box.SIMPLE_HEAD)
        for key in varying:
            table.add_column(key, no_wrap=True)
        table.add_column("n", justify="right", no_wrap=True)
        table.add_column("association / members", overflow="fold")
        for asn in result.associations:
            names = [m["expname"] for p in asn.data["products"] for m in p["members"]]
            table.add_row(
                *[asn.group.get(k) or "-" for k in varying],
                str(len(names)),
                f"[bold]{escape(asn.path.name)}[/bold]\n" + _indented(names),
            )
        out(table)
        out(escape(f"Wrote {len(result.associations)} association(s) to "
                   f"{result.associations[0].path.parent}"))
    else:
        asn = result.associations[0]
        _render_products(asn.data["products"], title=f"{asn.path} ({asn.data['asn_type']})")
        out(escape(f"Wrote {asn.path}"))


def _indented(names: list[str]) -> str:
    from rich.markup import escape

    return "\n".join("  " + escape(line) for line in _short_members(names).splitlines())


def _render_products(products, title: str, details=None) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from ..console import out

    table = Table(title=escape(title), box=box.SIMPLE_HEAD)
    table.add_column("product", overflow="fold")
    table.add_column("member", overflow="fold")
    table.add_column("exptype", no_wrap=True)
    if details is not None:
        for column in ("type", "filter", "pupil"):
            table.add_column(column, no_wrap=True)
    for product in products:
        for index, member in enumerate(product["members"]):
            row = [
                escape(product["name"]) if index == 0 else "",
                escape(member["expname"]),
                member["exptype"],
            ]
            if details is not None:
                info = details.get(member["expname"], {})
                row += [str(info.get(k) or "-") for k in ("product_type", "filter", "pupil")]
            table.add_row(*row)
    out(table)


def _show(path: str, allow_outside: bool, as_json: bool) -> None:
    from ..asn import load_association

    asn = load_association(path, allow_outside=allow_outside, check_members_exist=False)
    if as_json:
        click.echo(json.dumps(asn.data, indent=2))
    else:
        _render_products(
            asn.data["products"], title=f"{asn.path} ({asn.asn_type}, Level {asn.level})"
        )


def _check(ctx: click.Context, path: str, allow_outside: bool, as_json: bool) -> None:
    from ..asn import check_association

    report = check_association(path, allow_outside=allow_outside)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        details = {m["expname"]: m for p in report.to_dict()["products"] for m in p["members"]}
        _render_products(
            report.association.data["products"],
            title=f"{report.association.path} ({report.association.asn_type})",
            details=details,
        )
        from rich.markup import escape

        from ..console import out

        if report.ok:
            out(escape(f"OK: {report.association.path} is a valid "
                       f"Level-{report.association.level} association."))
        else:
            for problem in report.all_problems:
                click.secho(f"Problem: {problem}", err=True, fg="red")
    if not report.ok:
        click.secho(
            f"Error: {path}: {len(report.all_problems)} problem(s) found.", err=True, fg="red"
        )
        ctx.exit(1)


@click.command("asn")
@click.argument("files", nargs=-1, metavar="FILES...")
@click.option(
    "-o",
    "--output",
    metavar="OUT.json|DIR",
    help="Association file to write (.json); with --group-by, a directory for one file per group.",
)
@click.option(
    "--level",
    type=click.Choice(["2", "3"]),
    default=None,
    help="Force the association level (default: 2 for _rate/_rateints, 3 for _cal/_calints/_crf).",
)
@click.option(
    "--product-name",
    metavar="NAME",
    help="Product name (as asn_from_list). Default: the DMS Level-3 name, e.g. "
    "jw01234-o001_t001_nircam_clear-f200w. It may use group keys as fields, 'mosaic_{filter}': "
    "with --group-by the group's, else values all exposures share.",
)
@click.option(
    "-b",
    "--background",
    multiple=True,
    metavar="FILES",
    help="Background exposures for calwebb_image2's background step (Level 2), besides the "
    "BKGDTARG=T exposures among FILES. Repeat it, separate files with commas, or give a "
    "QUOTED pattern: --background 'bkg/*_rate.fits'.",
)
@click.option(
    "--group-by",
    metavar="KEYS",
    help="Write one association per group into the -o directory. KEYS: 'default' (the DMS "
    "Level-3 rules: program, observation, instrument, filter, pupil, subarray, target, "
    "bkgdtarg) or a comma-separated list of program, observation, visit, instrument, "
    "detector, module, channel, filter, pupil, subarray, exp_type, target, bkgdtarg.",
)
@click.option(
    "--merge-observations",
    is_flag=True,
    help="One Level-3 product per target and optical path across observations (a c1000 "
    "name), instead of one per observation as DMS makes them: drops 'observation' from the "
    "default keys.",
)
@click.option(
    "--allow-mixed",
    is_flag=True,
    help="Allow one Level-3 product to mix filters, pupils or targets.",
)
@click.option(
    "--allow-outside",
    is_flag=True,
    help="Allow members outside the association's directory (written as relative paths with '..').",
)
@click.option("--force", is_flag=True, help="Overwrite existing association files.")
@click.option(
    "--show",
    "show_path",
    metavar="ASN.json",
    help="Show the products and members of an association.",
)
@click.option(
    "--check",
    "check_path",
    metavar="ASN.json",
    help="Check an association: JSON, schema, asn_type, names, members exist and are the right "
    "product type, no duplicates, one instrument/filter per Level-3 product.",
)
@json_option
@click.pass_context
def asn_command(
    ctx: click.Context,
    files: tuple[str, ...],
    output: str | None,
    level: str | None,
    product_name: str | None,
    background: tuple[str, ...],
    group_by: str | None,
    merge_observations: bool,
    allow_mixed: bool,
    allow_outside: bool,
    force: bool,
    show_path: str | None,
    check_path: str | None,
    as_json: bool,
) -> None:
    """Build a Level-2 or Level-3 image association from exposures, or show/check one.

    Level 2 (from _rate/_rateints files) has one product per science exposure, with
    the matching background exposures as background members: those given with
    --background and the dedicated backgrounds (BKGDTARG=T) among FILES, matched on
    instrument, detector, filter, pupil and subarray. Level 3 (from _cal files) has one
    product, named and grouped by the DMS Level-3 imaging rules (one product per
    observation, target and optical path); exposures that DMS puts in different
    products are refused unless grouped (--group-by), merged across observations
    (--merge-observations) or --allow-mixed. FILES may be glob patterns or directories
    (their _rate/_rateints/_cal/_calints files). Exposures that are not direct imaging
    and _uncal files are left out with one line (--json lists them). Only FITS headers
    are read. Members are written relative to the association (bare names when they sit
    beside it).

    \b
    Examples:
      jwstrun asn data/*_rate.fits -o data/l2_asn.json
      jwstrun asn data/science/ data/background/ -o data/l2_asn.json
      jwstrun asn data/*_rate.fits -b 'data/bkg/*_rate.fits' -o data/l2_asn.json
      jwstrun asn out/*_cal.fits -o out/l3_asn.json --product-name mosaic
      jwstrun asn out/*_cal.fits --group-by default -o out/
      jwstrun asn out/*_cal.fits --group-by default --merge-observations -o out/
      jwstrun asn out/ --group-by default -o out/
      jwstrun asn --show out/l3_asn.json
      jwstrun asn --check out/l3_asn.json --json
    """
    from ..asn import make_associations

    if show_path and check_path:
        raise click.UsageError("give either --show or --check, not both.")
    inspect_path = show_path or check_path
    if inspect_path:
        building = (files, output, background, group_by, product_name, level, merge_observations)
        if any(building):
            raise click.UsageError(
                "--show/--check take one association file; do not combine them with FILES or "
                "build options."
            )
        if show_path:
            _show(show_path, allow_outside, as_json)
        else:
            _check(ctx, check_path, allow_outside, as_json)
        return

    if not files:
        raise click.UsageError(
            "give exposures to associate (FILES...), or --show/--check ASN.json."
        )
    if not output:
        raise click.UsageError("give -o OUT.json (or -o DIR with --group-by).")
    result = make_associations(
        _expand_files(files),
        output,
        level=int(level) if level else None,
        product_name=product_name,
        background=_expand_backgrounds(background),
        group_by=group_by,
        merge_observations=merge_observations,
        force=force,
        allow_mixed=allow_mixed,
        allow_outside=allow_outside,
    )
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _render_build(result)




def register(group: click.Group) -> None:
    """Add the ``asn`` command to the ``jwstrun`` group."""
    group.add_command(asn_command)
