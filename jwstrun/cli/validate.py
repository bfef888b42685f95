"""``jwstrun validate`` and ``jwstrun info``: check products and summarise them."""

from __future__ import annotations

import json

import click

from ..errors import JwstrunError
from ..validate import VALIDATED_TYPES
from .options import json_option

__all__ = ["register", "validate_command", "info_command"]


def _expand(files) -> list[str]:
    """Globs and directories expanded by the one input expander; an argument that names
    nothing is kept as given, so its row says what is wrong and the others are still checked."""
    from ..errors import InputError
    from ..inputs import expand_inputs

    suffixes = tuple(t if t != "cat" else "cat.ecsv" for t in VALIDATED_TYPES)
    paths: dict[str, None] = {}
    for item in files:
        try:
            paths.update(dict.fromkeys(str(p) for p in expand_inputs([item], suffixes=suffixes)))
        except InputError:
            paths[item] = None
    return list(paths)


def _required_status(steps) -> dict[str, str]:
    """``--require`` values (step aliases or S_* keywords) -> {keyword: step}."""
    from ..errors import InputError
    from ..profiles.steps import correction_step_spec

    required = {}
    for step in steps:
        if step.upper().startswith("S_"):
            required[step.upper()] = step.upper()
            continue
        spec = correction_step_spec(step, "--require")
        if not spec.status_keyword:
            raise InputError(f"--require {step}: {spec.class_name} records no status keyword; "
                             "nothing to check.")
        required[spec.status_keyword] = step
    return required


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "--expect",
    type=click.Choice(VALIDATED_TYPES),
    default=None,
    help="Validate every file as this product type (default: from the file-name suffix, "
    "then DATAMODL).",
)
@click.option(
    "--skip",
    "expected_skips",
    multiple=True,
    metavar="STEP",
    help="A step the profile skipped on purpose (tweakreg, skymatch, S_OUTLIR ...): its "
    "SKIPPED status is not an error. Repeat for several.",
)
@click.option(
    "--require",
    "required_steps",
    multiple=True,
    metavar="STEP",
    help="A step run on the exposures before the stage (a profile's before: list: "
    "clean_flicker_noise, snowblind, persist ...) or its status keyword (S_SNOWBL): it must "
    "read COMPLETE in the products of one exposure. Repeat for several.",
)
@click.option(
    "--background",
    "expect_background",
    is_flag=True,
    help="Background exposures were given: S_BKDSUB must be COMPLETE.",
)
@click.option(
    "--headers-only",
    is_flag=True,
    help="Skip the pixel-data checks (SCI not all NaN/zero, OUTLIER flags in crf DQ).",
)
@json_option
@click.pass_context
def validate_command(
    ctx, files, expect, expected_skips, required_steps, expect_background, headers_only, as_json
):
    """Check that JWST products are complete and what they claim to be.

    FILES are *_rate, *_rateints, *_bsub(ints), *_cal(ints), *_crf(ints), *_i2d,
    *_segm FITS files and *_cat.ecsv catalogs. Each file gets a list of findings
    (error or warning): missing extensions, wrong dtypes or shapes, a missing or
    truncated ASDF extension, steps that were SKIPPED without being asked to,
    wrong BUNIT, missing photometry keywords, empty science data, catalogs without
    sky coordinates. Exit code 1 when any file has an error.

    \b
    Examples:
      jwstrun validate out/*_cal.fits
      jwstrun validate out/*_i2d.fits out/*_cat.ecsv --json > report.json
      jwstrun validate mosaic.fits --expect i2d --skip tweakreg
      jwstrun validate out/*_cal.fits --require clean_flicker_noise --require snowblind
    """
    from ..validate import validate_files

    reports = validate_files(
        _expand(files),
        expect=expect,
        expected_skips=expected_skips,
        expect_background=expect_background,
        check_data=not headers_only,
        required_status=_required_status(required_steps),
    )
    n_bad = sum(1 for r in reports if not r.ok)
    if as_json:
        payload = {
            "files": [r.to_dict() for r in reports],
            "n_files": len(reports),
            "n_invalid": n_bad,
            "valid": n_bad == 0,
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        _render_reports(reports)
    if n_bad:
        raise click.exceptions.Exit(1)


def _render_reports(reports) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ..console import out

    for report in reports:
        n_err, n_warn = len(report.errors), len(report.warnings)
        kind = report.product_type or "?"
        if n_err:
            verdict = f"[bold red]INVALID[/] ({n_err} error{'s' * (n_err != 1)}"
            verdict += f", {n_warn} warning{'s' * (n_warn != 1)})" if n_warn else ")"
        elif n_warn:
            verdict = f"[yellow]valid[/] ({n_warn} warning{'s' * (n_warn != 1)})"
        else:
            verdict = "[green]valid[/]"
        out(f"{escape(report.path)}  [cyan]{kind}[/]  {verdict}")
        if not report.findings:
            continue
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("  severity", no_wrap=True)
        table.add_column("check", no_wrap=True)
        table.add_column("finding", overflow="fold")
        for finding in report.findings:
            style = "red" if finding.severity == "error" else "yellow"
            table.add_row(
                f"  [{style}]{finding.severity}[/]", finding.check, escape(finding.message)
            )
        out(table)
    if len(reports) > 1:
        n_bad = sum(1 for r in reports if not r.ok)
        n_warn = sum(len(r.warnings) for r in reports)
        out(f"{len(reports)} files: {len(reports) - n_bad} valid, {n_bad} invalid, "
            f"{n_warn} warning{'s' * (n_warn != 1)}.")


def _pair(ctx, param, value):
    return tuple(value) if value else None


@click.command("info")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "--pixel",
    nargs=2,
    type=float,
    default=None,
    callback=_pair,
    metavar="X Y",
    help="Convert this 0-based pixel to RA/Dec with the WCS stored in the ASDF extension.",
)
@click.option(
    "--sky",
    nargs=2,
    type=float,
    default=None,
    callback=_pair,
    metavar="RA DEC",
    help="Convert this sky position (degrees) to a 0-based pixel (inverse WCS).",
)
@json_option
@click.pass_context
def info_command(ctx, files, pixel, sky, as_json):
    """Summarise JWST products: type, instrument, shape, steps, CRDS context, references.

    With --json, one shape for any number of FILES: {"files": [one summary per
    file], "errors": [{"path": ..., "error": ...} per file that could not be read]}.

    \b
    Examples:
      jwstrun info out/jw01288015001_04101_00001_mirimage_cal.fits
      jwstrun info mosaic_i2d.fits --pixel 100 200
      jwstrun info mosaic_i2d.fits --sky 83.8315 -5.4138 --json
    """
    from ..validate import product_info

    results, failures = [], []
    files = _expand(files)
    for path in files:
        try:
            results.append(product_info(path, pixel=pixel, sky=sky))
        except JwstrunError as exc:
            failures.append({"path": path, "error": str(exc)})
    if as_json:
        payload = {"files": results, "errors": failures}
        click.echo(json.dumps(payload, indent=2, default=str))
    else:
        for info in results:
            _render_info(info)
        for failure in failures:
            click.secho(f"Error: {failure['error']}", err=True, fg="red")
    if failures:
        raise click.exceptions.Exit(1)


_INFO_FIELDS = (
    ("product_type", "type"),
    ("datamodl", "datamodel"),
    ("instrument", "instrument"),
    ("detector", "detector"),
    ("filter", "filter"),
    ("pupil", "pupil"),
    ("subarray", "subarray"),
    ("exp_type", "exp_type"),
    ("target", "target"),
    ("date_obs", "observed"),
    ("exposure_time", "exposure [s]"),
    ("shape", "shape (SCI)"),
    ("nints", "nints"),
    ("bunit", "units"),
    ("photmjsr", "PHOTMJSR"),
    ("pixar_sr", "PIXAR_SR"),
    ("cal_ver", "jwst version"),
    ("crds_context", "CRDS context"),
    ("n_sources", "sources"),
)


def _render_info(info: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ..console import out

    table = Table(title=escape(info["path"]), show_header=False, box=None, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, label in _INFO_FIELDS:
        value = info.get(key)
        if value in (None, "", []):
            continue
        if isinstance(value, list):
            value = " x ".join(str(v) for v in value)
        table.add_row(escape(label), escape(str(value)))  # "exposure [s]" is not markup
    if info.get("extensions"):
        parts = []
        for name, shape, dtype in info["extensions"]:
            if dtype == "table":
                rows = shape[0] if shape else 0
                parts.append(f"{name} ({rows} row{'s' * (rows != 1)})")
            else:
                parts.append(f"{name} {'x'.join(map(str, shape))} {dtype}".strip())
        table.add_row("extensions", escape(", ".join(parts)))
    steps = info.get("step_status") or {}
    if steps:
        parts = []
        for key, value in steps.items():
            color = "green" if value == "COMPLETE" else "yellow" if value == "SKIPPED" else "red"
            parts.append(f"{key}=[{color}]{value}[/]")
        table.add_row("steps", " ".join(parts))
    refs = info.get("references") or {}
    if refs:
        table.add_row("references", escape("\n".join(f"{k} {v}" for k, v in refs.items())))
    if info.get("footprint"):
        table.add_row(
            "footprint",
            " ".join(f"({ra:.6f}, {dec:+.6f})" for ra, dec in info["footprint"]),
        )
    if info.get("columns"):
        table.add_row("columns", escape(", ".join(info["columns"])))
    if info.get("pixel_to_sky"):
        p = info["pixel_to_sky"]
        table.add_row(
            "pixel -> sky",
            f"({p['pixel'][0]:g}, {p['pixel'][1]:g}) -> "
            f"RA {p['sky'][0]:.7f}  Dec {p['sky'][1]:+.7f}",
        )
    if info.get("sky_to_pixel"):
        p = info["sky_to_pixel"]
        table.add_row(
            "sky -> pixel",
            f"RA {p['sky'][0]:.7f}  Dec {p['sky'][1]:+.7f} -> "
            f"({p['pixel'][0]:.3f}, {p['pixel'][1]:.3f})",
        )
    out(table)
    out()


def register(group: click.Group) -> None:
    """Add ``validate`` and ``info`` to the top-level group."""
    group.add_command(validate_command)
    group.add_command(info_command)
