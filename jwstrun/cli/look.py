"""``jwstrun preview``, ``jwstrun report`` and ``jwstrun view``: see the results."""

from __future__ import annotations

import json

import click

from .options import json_option

__all__ = ["register", "preview_command", "report_command", "view_command"]

# Kept here (not imported from jwstrun.look) so that building the CLI imports nothing heavy.
_STRETCHES = ("asinh", "zscale")
_VIEWERS = ("ginga", "glue", "ds9")


@click.command("preview")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "-o", "--output-dir", "outdir", required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Directory for the PNGs (created if needed).",
)
@click.option(
    "--stretch", type=click.Choice(_STRETCHES), default="asinh", show_default=True,
    help="asinh between the 0.5 and 99.8 percentiles, or ds9-style zscale (linear).",
)
@click.option("--dq", is_flag=True,
              help="Colour DQ-flagged pixels: OUTLIER, other DO_NOT_USE, other flags (with counts).")
@click.option("--integration", type=click.IntRange(min=1), default=None, metavar="N",
              help="Integration of a _rateints/_calints product to draw (1-based; default 1).")
@click.option("--catalog", type=click.Path(dir_okay=False, exists=True, path_type=str), default=None,
              help="Source catalog (ECSV with xcentroid/ycentroid) to circle on the image "
              "(default for an _i2d: its own _cat.ecsv when present).")
@click.option("--no-catalog", is_flag=True, help="Do not circle catalog sources.")
@click.option("--no-maps", is_flag=True, help="Do not draw the WHT and CON maps of an _i2d.")
@json_option
def preview_command(files, outdir, stretch, dq, integration, catalog, no_catalog, no_maps, as_json):
    """PNG quick looks of rate, cal, crf and i2d products.

    Each image is drawn with a robust stretch and a colour bar in the product's
    units (BUNIT). An _i2d also gets its weight (WHT) and contributing-exposure
    count (CON) maps, and the sources of its _cat.ecsv circled. No display is
    needed.

    \b
    Examples:
      jwstrun preview out/*_i2d.fits -o previews/
      jwstrun preview out/*_crf.fits -o previews/ --dq --stretch zscale
      jwstrun preview sim/*_rateints.fits -o previews/ --integration 2 --json
    """
    from ..look import preview_files

    previews = preview_files(
        files, outdir, stretch=stretch, dq=dq, integration=integration,
        catalog=False if no_catalog else catalog, maps=not no_maps,
    )
    written = [str(p) for preview in previews for p in preview.files]
    if as_json:
        click.echo(json.dumps({"files": written, "previews": [p.to_dict() for p in previews]},
                              indent=1))
        return
    for preview in previews:
        extra = []
        if preview.n_catalog_sources is not None:
            extra.append(f"{preview.n_catalog_sources} catalog sources")
        if preview.dq_counts:
            extra.append("DQ " + ", ".join(f"{k} {v}" for k, v in preview.dq_counts.items()))
        note = f"  ({'; '.join(extra)})" if extra else ""
        click.echo(f"{preview.source.name}{note}")
        for path in preview.files:
            click.echo(f"  {path}")


@click.command("report")
@click.argument("outdir", type=click.Path(file_okay=False, path_type=str))
@click.option("--no-previews", is_flag=True, help="Leave out the image thumbnails (faster).")
@click.option("--max-previews", type=click.IntRange(min=0), default=60, show_default=True,
              help="Draw at most this many image products.")
@click.option("--truth", type=click.Path(dir_okay=False, exists=True, path_type=str), default=None,
              metavar="CATALOG",
              help="ECSV catalog of injected sources (ra, dec, abmag; e.g. the truth_sources.ecsv "
              "of 'jwstrun simulate') to compare the catalog magnitudes with.")
@click.option("--compare", "compare", type=click.Path(path_type=str), default=None,
              metavar="OTHER_OUTDIR",
              help="Another run's -o directory: add a section with what 'jwstrun diff OUTDIR "
              "OTHER_OUTDIR' finds (settings, versions, references that differ; per product the "
              "array statistics, header keywords, WCS offsets and catalog matches).")
@json_option
def report_command(outdir, no_previews, max_previews, truth, compare, as_json):
    """Write OUTDIR/jwstrun-report.html: one static page about a run.

    OUTDIR is the -o directory of 'jwstrun image2' / 'jwstrun image3' (or of
    'jwstrun demo'). The page lists every task with status, time, peak memory,
    validation findings, CRDS context and references and the resolved
    parameters; shows thumbnails linking to full previews (written to
    previews/), how far tweakreg moved each exposure (its cal and crf WCS), the
    skymatch levels and the catalog magnitudes (against --truth, a catalog of
    injected sources, when given; 'jwstrun demo' passes the simulator's) and,
    with --compare, what differs from another run (as 'jwstrun diff'). It
    needs no network and no JavaScript: open it anywhere, or copy OUTDIR with
    it.

    \b
    Examples:
      jwstrun report out/
      jwstrun report out/ --truth sim/truth_sources.ecsv
      jwstrun report out-pixfrac/ --compare out/
      jwstrun report jwstrun-demo --json
    """
    from ..look import write_report

    path = write_report(outdir, previews=not no_previews, max_previews=max_previews, truth=truth,
                        compare=compare)
    if as_json:
        click.echo(json.dumps({"report": str(path)}))
    else:
        click.echo(f"report: {path}")


@click.command("view")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--with", "viewer", type=click.Choice(_VIEWERS), default=None,
              help="Viewer to use (default: the first of ginga, glue, ds9 that is installed).")
@click.option("--check", is_flag=True,
              help="Load the file through the viewer's own Python API without opening a "
              "window, and print what it saw (ginga or glue).")
@json_option
def view_command(file, viewer, check, as_json):
    """Open a product in ginga, glue or SAOImage DS9.

    The viewer starts in the background; jwstrun does not wait for it. A
    viewer that is not installed gives the command that installs it.

    \b
    Examples:
      jwstrun view out/jw01234-o001_t001_nircam_clear-f200w_i2d.fits
      jwstrun view out/jw01234001001_02101_00001_nrcb1_cal.fits --with ds9
      jwstrun view mosaic_i2d.fits --with ginga --check
    """
    from ..look import load_in_viewer, view_file

    if check:
        info = load_in_viewer(file, viewer or "ginga")
        if as_json:
            click.echo(json.dumps(info, indent=1))
        else:
            radec = info.get("center_radec")
            where = f", centre RA/Dec {radec[0]:.6f} {radec[1]:.6f}" if radec else ""
            click.echo(f"{info['viewer']} loaded {file}: shape {tuple(info['shape'])}"
                       f"{', ' + info['bunit'] if info.get('bunit') else ''}{where}")
        return
    info = view_file(file, viewer)
    if as_json:
        click.echo(json.dumps(info))
    else:
        click.echo(f"opened {file} in {info['viewer']} (pid {info['pid']})")


def register(group: click.Group) -> None:
    """Add preview, report and view to the jwstrun group."""
    group.add_command(preview_command)
    group.add_command(report_command)
    group.add_command(view_command)
