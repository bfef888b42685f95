"""``jwstrun simulate``: a simulated imaging program with its own CRDS cache."""

from __future__ import annotations

import json

import click

__all__ = ["register", "simulate"]


@click.command("simulate")
@click.argument("outdir", type=click.Path(file_okay=False, path_type=str))
@click.option("--instrument", type=click.Choice(["NIRCAM", "MIRI"], case_sensitive=False),
              default=None, help="Instrument (default NIRCAM, or the detectors' instrument).")
@click.option("--detector", "detectors", multiple=True, metavar="NAME",
              help="Detector, repeatable: NRCA1-4, NRCB1-4, NRCALONG, NRCBLONG, MIRIMAGE "
              "(default NRCB1, or MIRIMAGE for --instrument MIRI).")
@click.option("--filter", "filters", multiple=True, metavar="NAME",
              help="Filter, repeatable (default F200W short-wave, F444W long-wave, F770W MIRI). "
              "Each filter is used on the detectors that have it.")
@click.option("--subarray", default="SUB640", show_default=True,
              help="FULL or a SIAF imaging subarray (SUB640, SUB320, SUB160, SUB400P, ... "
              "BRIGHTSKY, SUB256, SUB128, SUB64 for MIRI).")
@click.option("--dithers", "n_dithers", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Science exposures (dither positions) per detector and filter.")
@click.option("--background", "n_background", type=click.IntRange(0, 16), default=0,
              show_default=True,
              help="Dedicated background exposures per detector and filter (for the Stage 2 "
              "background step).")
@click.option("--rateints", is_flag=True, help="Write 3-D _rateints products (one plane per integration).")
@click.option("--nints", type=click.IntRange(1, 50), default=3, show_default=True,
              help="Integrations per exposure with --rateints.")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed (same seed, same files).")
@click.option("--pointing-error", type=click.FloatRange(0, 5), default=0.1, show_default=True,
              help="RMS pointing error per exposure in arcsec (what tweakreg has to fix).")
@click.option("--extra", "extras", multiple=True, type=click.Choice(["ta", "grism", "uncal"]),
              help="Also write what else a MAST download holds, repeatable: ta (a "
              "target-acquisition _rate, NRC_TACQ or MIR_TACQ), grism (an NRC_WFSS GRISMR "
              "_rate; MIRI: MIR_LRS-SLITLESS), uncal (the _uncal raw ramps of the first "
              "exposure, a Level1bModel). Not science: image2, image3 and asn leave them out.")
@click.option("--crds-path", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Where to write the CRDS cache (default OUTDIR/crds_cache).")
@click.option("--force", is_flag=True, help="Write into a non-empty OUTDIR.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def simulate(outdir, instrument, detectors, filters, subarray, n_dithers, n_background,
             rateints, nints, seed, pointing_error, extras, crds_path, force, as_json):
    """Simulate a JWST imaging program and a local CRDS cache that reduces it offline.

    Writes *_rate.fits (or *_rateints.fits) named by the JWST convention, background
    exposures, truth tables of the injected sources, pointing errors and cosmic rays
    (ECSV), a CRDS cache, and OUTDIR/crds.env with the CRDS environment to use.
    --extra adds the other files of a MAST download (target acquisition, grism, _uncal).

    \b
    Examples:
      jwstrun simulate sim/
      jwstrun simulate sim/ --detector NRCB1 --detector NRCBLONG --filter F200W --filter F444W
      jwstrun simulate sim/ --instrument MIRI --subarray FULL --dithers 4 --background 2
      jwstrun simulate sim/ --rateints --nints 4 --subarray SUB320
      jwstrun simulate mast/ --background 1 --extra ta --extra grism --extra uncal
      source sim/crds.env && strun calwebb_image2 sim/jw01234001001_02101_00001_nrcb1_rate.fits
    """
    from ..simulate import simulate_program

    result = simulate_program(
        outdir,
        instrument=instrument,
        detectors=detectors,
        filters=filters,
        subarray=subarray,
        n_dithers=n_dithers,
        n_background=n_background,
        rateints=rateints,
        nints=nints,
        seed=seed,
        pointing_error=pointing_error,
        extras=extras,
        crds_path=crds_path,
        force=force,
    )
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    n_sci, n_bkg = len(result.rate_files), len(result.background_files)
    click.echo(f"Simulated {n_sci} science and {n_bkg} background exposures in "
               f"{result.seconds:.1f} s into {result.outdir}/")
    for group in result.groups:
        click.echo(f"  {group['detector']:<9} {group['filter']:<7} "
                   f"{len(group['science'])} science, {len(group['background'])} background")
    if result.extra_files:
        click.echo(f"  not science: {', '.join(p.name for p in result.extra_files)}")
    click.echo(f"Truth: {result.truth_file.name}, {result.pointing_file.name}, "
               f"{result.cosmic_ray_file.name}")
    click.echo(f"CRDS cache: {result.crds_path} (context {result.crds_context})")
    click.echo("To use it from a shell (no CRDS server needed):")
    for name, value in result.env.items():
        click.echo(f"  export {name}={value}")
    click.echo(f"or: source {result.env_file}")


def register(group: click.Group) -> None:
    group.add_command(simulate)
