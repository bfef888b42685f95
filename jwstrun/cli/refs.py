"""``jwstrun refs``: best references, prefetch, a CRDS check-up, and the local
astrometric catalogue tweakreg's ``abs_refcat`` reads (``refs refcat``).

Every command first settles the CRDS environment (``--crds-path``,
``--crds-env``, ``--offline``, ``--crds-context``) and applies it before crds
is imported, then makes one call into :mod:`jwstrun.refs`.
"""

from __future__ import annotations

import json

import click

from ..stages import stage_names
from .options import crds_context_option, crds_path_option, json_option

__all__ = ["register", "refs_group"]


def _env_options(func):
    func = click.option(
        "--offline",
        is_flag=True,
        help="Never contact the CRDS server (serverless mode): use the local cache only.",
    )(func)
    func = click.option(
        "--crds-env",
        "env_file",
        type=click.Path(dir_okay=False, path_type=str),
        default=None,
        help="A crds.env file (lines 'export NAME=value'), as written by `jwstrun refs "
        "prefetch --write-env` or `jwstrun simulate`.",
    )(func)
    func = crds_context_option(func)
    func = crds_path_option(func)
    return func


def _setup(crds_path, env_file, offline, crds_context):
    """Compute and apply the CRDS environment (before anything imports crds)."""
    from .. import refs

    env = refs.crds_environment(crds_path=crds_path, context=crds_context, env_file=env_file,
                                offline=offline)
    refs.apply_crds_environment(env)
    return refs


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


@click.group("refs")
def refs_group():
    """CRDS reference files: which ones, fetch them, check the set-up.

    \b
    Examples:
      jwstrun refs doctor
      jwstrun refs bestrefs sim/*_rate.fits --crds-env sim/crds.env
      jwstrun refs prefetch 'data/*_rate.fits' --write-env crds.env
      jwstrun refs bestrefs 'out/*_cal.fits' --crds-env crds.env --json
      jwstrun refs refcat gaia.ecsv 'out/*_cal.fits' -o field.ecsv
    """


@refs_group.command("bestrefs")
@click.argument("inputs", nargs=-1, required=True)
@_env_options
@click.option("--pipeline", "pipelines", multiple=True, type=click.Choice(stage_names()),
              help="Only the references of this pipeline (repeatable; default: image2 and image3 "
              "for rate files, image3 for cal/crf files).")
@click.option("--all", "show_all", is_flag=True, help="Also list reftypes that are N/A.")
@json_option
def bestrefs_command(inputs, crds_path, crds_context, env_file, offline, pipelines, show_all,
                     as_json):
    """Show the reference files CRDS picks for INPUTS, per group of matching parameters.

    INPUTS are files, glob patterns, directories (their rate/cal files) or association
    JSON files (their members).  Exposures that share every CRDS matching parameter
    (instrument, detector, filter, pupil, ... and the same UseAfter interval of their
    date) form one group and cost one CRDS lookup.
    The reftypes are those the image2/image3 pipelines will request, step-parameter
    (pars-*) references included.

    \b
    Examples:
      jwstrun refs bestrefs sim/*_rate.fits --crds-env sim/crds.env
      jwstrun refs bestrefs 'data/*_cal.fits' --pipeline image3 --json
      jwstrun refs bestrefs l2_asn.json --crds-context jwst_1322.pmap --all
    """
    refs = _setup(crds_path, env_file, offline, crds_context)
    resolution = refs.resolve_bestrefs(list(inputs), context=crds_context,
                                       pipelines=tuple(pipelines) or None)
    if as_json:
        click.echo(json.dumps(resolution.to_dict(), indent=2))
    else:
        _render_resolution(resolution, show_all)
    if resolution.problems:
        raise click.exceptions.Exit(1)


def _render_resolution(resolution, show_all: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ..console import out

    out(
        f"Context [bold]{resolution.context}[/] (cache {escape(resolution.crds_path)}): "
        f"{resolution.n_exposures} exposure(s) in {len(resolution.groups)} group(s), "
        f"{resolution.n_crds_calls} CRDS lookup(s)."
    )
    for group in resolution.groups:
        dates = group.dates[0] if group.dates[0] == group.dates[1] else \
            f"{group.dates[0]} .. {group.dates[1]}"
        n = len(group.exposures)
        out()
        out(f"[bold cyan]{escape(group.label)}[/]  {n} exposure{'s' * (n != 1)}, "
            f"{escape(dates)}, {'+'.join(group.pipelines)}")
        first = ", ".join(group.exposures[:3]) + (" ..." if n > 3 else "")
        out(f"  [dim]{escape(first)}[/]")
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("  reftype", no_wrap=True)
        table.add_column("reference", overflow="fold")
        n_na = 0
        for reftype, name in group.references.items():
            if reftype in group.errors:
                table.add_row(f"  [red]{reftype}[/]", f"[red]{escape(group.errors[reftype])}[/]")
            elif name == "N/A" and not show_all:
                n_na += 1
            else:
                table.add_row(f"  {reftype}", "[dim]N/A[/]" if name == "N/A" else escape(name))
        out(table)
        if n_na:
            out(f"  [dim]{n_na} more reftypes are N/A (--all lists them)[/]")
    for text in resolution.problems:
        out(f"[red]problem:[/] {escape(text)}")


#: The header of the file `refs prefetch --write-env` writes.
_ENV_FILE_COMMENT = """\
Written by `jwstrun refs prefetch`: the CRDS cache and the context its references were
fetched for. jwstrun: --crds-env THIS_FILE; strun and other crds tools: source THIS_FILE.
The server stays the shell's CRDS_SERVER_URL; without one, crds uses this cache alone."""


@refs_group.command("prefetch")
@click.argument("inputs", nargs=-1, required=True)
@_env_options
@click.option("--pipeline", "pipelines", multiple=True, type=click.Choice(stage_names()),
              help="Only what this pipeline needs (repeatable; default: image2 and image3).")
@click.option("--write-env", "env_out", type=click.Path(dir_okay=False, path_type=str),
              default=None,
              help="Also write FILE with 'export CRDS_PATH=...' and 'export CRDS_CONTEXT=<the "
              "context used>': give it to later runs with --crds-env FILE (or `source` it).")
@json_option
def prefetch_command(inputs, crds_path, crds_context, env_file, offline, pipelines, env_out,
                     as_json):
    """Download every reference INPUTS need into CRDS_PATH, so runs need no network.

    Fetches the context's rules and every reference Image2/Image3 will ask for,
    step-parameter (pars-*) references included, with crds' own downloader (atomic
    writes, checksums).  Files already in the cache are counted, not fetched again.
    Run it once on a node with network, with CRDS_SERVER_URL=https://jwst-crds.stsci.edu
    and CRDS_PATH set (a directory crds creates).  It prints the context it used;
    --write-env FILE keeps the cache and that context for later runs (--crds-env FILE),
    and --json has it as "context".  Runs then need no network (workers use
    CRDS_READONLY_CACHE=1).

    \b
    Examples:
      export CRDS_SERVER_URL=https://jwst-crds.stsci.edu CRDS_PATH=$HOME/crds_cache
      jwstrun refs prefetch 'data/*_rate.fits' --write-env crds.env
      jwstrun image2 'data/*_rate.fits' -o out/ --crds-env crds.env
      jwstrun refs prefetch l2_asn.json --crds-context jwst_1322.pmap
      jwstrun refs prefetch sim/*_rate.fits --crds-env sim/crds.env --json > prefetch.json
    """
    refs = _setup(crds_path, env_file, offline, crds_context)
    report = refs.prefetch(list(inputs), context=crds_context,
                           pipelines=tuple(pipelines) or tuple(stage_names()))
    written = None
    if env_out:
        written = refs.write_env_file(env_out, report.run_environment(), _ENV_FILE_COMMENT)
    if as_json:
        data = report.to_dict()
        if written:
            data["env_file"] = str(written)
        click.echo(json.dumps(data, indent=2))
        return
    n_fetched, b_fetched = report.fetched
    n_present, b_present = report.present
    click.echo(f"Context {report.context}, cache {report.crds_path}")
    click.echo(f"  fetched:         {n_fetched} files, {_human(b_fetched)}"
               + (f" from {report.source}" if n_fetched else ""))
    click.echo(f"  already present: {n_present} files, {_human(b_present)}")
    n_refs = sum(1 for f in report.files if f.kind == "reference")
    click.echo(f"  {n_refs} reference files for {report.resolution.n_exposures} exposure(s) in "
               f"{len(report.resolution.groups)} group(s). Ready for offline runs "
               f"(--offline --crds-context {report.context}).")
    if written:
        click.echo(f"Wrote {written} (CRDS_PATH, CRDS_CONTEXT={report.context}): give later "
                   f"runs --crds-env {written}.")


@refs_group.command("doctor")
@click.argument("inputs", nargs=-1)
@_env_options
@json_option
def doctor_command(inputs, crds_path, crds_context, env_file, offline, as_json):
    """Check the CRDS set-up: cache, server, context, and coverage of INPUTS.

    Shows CRDS_PATH, CRDS_SERVER_URL, CRDS_CONTEXT, whether crds is online, offline
    (serverless, on purpose) or not configured, whether the server answers (a
    3-second probe, never crds' one-hour timeout), the cache size, the kind of
    storage it is on (shared NFS/Lustre/GPFS or local), and with INPUTS whether
    every reference they need is already cached.  Each problem comes with advice.

    \b
    The status line sums it up (exit 0 for the first two, 1 otherwise):
      ready              crds can work from this set-up
      to-fill            an empty or new CRDS_PATH and a server that answers:
                         `jwstrun refs prefetch INPUTS` fills it
      not-configured     neither CRDS_PATH nor CRDS_SERVER_URL is set
      no-cache-path      CRDS_SERVER_URL is set but CRDS_PATH is not
      empty-offline      an unfilled cache and no server (--offline, serverless)
      empty-unreachable  an unfilled cache and a server that does not answer
      incomplete         a filled cache that lacks the context or references

    \b
    Examples:
      jwstrun refs doctor
      jwstrun refs doctor sim/*_rate.fits --crds-env sim/crds.env
      jwstrun refs doctor 'data/*_rate.fits' --crds-env crds.env --offline || exit 1
      jwstrun refs doctor --json | jq .status
    """
    refs = _setup(crds_path, env_file, offline, crds_context)
    report = refs.doctor(list(inputs) or None, context=crds_context)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _render_doctor(report)
    if not report.ok:
        raise click.exceptions.Exit(1)


def _render_doctor(report) -> None:
    from rich.markup import escape

    from ..console import out
    from ..refs.doctor import MODES, STATUSES
    from ..refs.setup import fallback_text

    def row(name, value):
        out(f"  {name:<17} {escape(str(value))}")

    out("[bold]CRDS set-up[/]")
    row("CRDS_PATH", report.crds_path or f"(not set: {fallback_text(report.cache)})")
    row("CRDS_SERVER_URL", report.server_url or "(not set: no server)")
    row("CRDS_CONTEXT", report.context_env or "(not set)")
    row("mode", f"{report.mode} - {MODES[report.mode]}")
    server = ("serverless (no network use)" if report.serverless else
              ("reachable" if report.reachable else "NOT reachable")
              + f" - {report.reachable_detail} [{report.probe_seconds:.1f} s]")
    row("server", server)
    if report.cache_exists:
        row("cache", f"{report.cache_files} files, {_human(report.cache_bytes)}")
        row("contexts", ", ".join(report.contexts_in_cache) or "(none)")
    elif report.crds_path:
        row("cache", "(does not exist yet)")
    row("context in use", report.context or "(unknown)")
    if report.crds_path:
        row("storage", f"{report.storage} ({report.filesystem} at {report.mount_point})")
    if report.coverage is not None:
        cov = report.coverage
        covered = cov["needed"] - len(cov["missing"])
        row("inputs", f"{cov['n_exposures']} exposure(s), {cov['n_groups']} group(s): "
                      f"{covered}/{cov['needed']} reference files cached")
    colour = "green" if report.ok else "red"
    out(f"  {'status':<17} [{colour}]{report.status}[/] - {escape(STATUSES[report.status])}")
    for note in report.notes:
        out(f"[dim]note:[/] {escape(note)}")
    if report.ok:
        out("[green]No problems found.[/]")
    for item in report.problems:
        out(f"[red]problem:[/] {escape(item['problem'])}")
        out(f"  [yellow]advice:[/] {escape(item['advice'])}")


@refs_group.command("refcat")
@click.argument("catalogue", type=click.Path(dir_okay=False, path_type=str))
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="The catalogue to write (ECSV; FITS for a .fits name).")
@click.option("--margin", default=5.0, show_default=True, type=float, metavar="ARCSEC",
              help="Also keep sources this far outside the footprints (the inputs' WCS before "
              "alignment may be off by a fraction of an arcsecond).")
@click.option("--epoch", default="inputs", show_default=True, metavar="inputs|catalogue|YEAR",
              help="Move the positions by their proper motions (pmra, pmdec at ref_epoch) to "
              "the inputs' mean epoch, keep them ('catalogue'), or move them to a decimal year.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@json_option
def refcat_command(catalogue, inputs, output, margin, epoch, force, as_json):
    """Cut a local astrometric CATALOGUE to the footprints of INPUTS, for tweakreg.

    CATALOGUE is any table astropy reads (ECSV, FITS, CSV, VOTable), for example a
    Gaia DR3 download made on a login node, with RA and DEC columns (any case; Gaia's
    ra, dec) and optionally Gaia's pmra, pmdec (mas/yr) and ref_epoch. INPUTS are
    _cal, _crf or _i2d files (their S_REGION), directories or associations of them.
    OUTPUT holds the sources inside the footprints (plus --margin), with RA, DEC
    (degrees, moved to the inputs' epoch when the catalogue has proper motions;
    tweakreg itself never moves a file's positions), epoch, and the catalogue's
    identifiers, magnitudes and errors. Written atomically. Give it to image3 with
    --set steps.tweakreg.abs_refcat=OUTPUT; no network is needed.

    \b
    Examples:
      jwstrun refs refcat gaia_dr3.ecsv 'out/*_cal.fits' -o field.ecsv
      jwstrun image3 'out/*_cal.fits' -o mosaic/ --set steps.tweakreg.abs_refcat=field.ecsv
      jwstrun refs refcat gaia.fits l3_asn.json -o field.ecsv --margin 10 --json
      jwstrun refs refcat sim/refcat.ecsv cal/ -o field.ecsv --epoch catalogue
    """
    from ..refs.refcat import cut_catalogue

    cut = cut_catalogue(catalogue, list(inputs), output, margin_arcsec=margin, epoch=epoch,
                        force=force)
    if as_json:
        click.echo(json.dumps(cut.to_dict(), indent=2))
    else:
        click.echo(cut.summary())


def register(group: click.Group) -> None:
    """Add the ``refs`` command group to the top-level CLI."""
    group.add_command(refs_group)
