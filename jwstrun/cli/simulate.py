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
              "(default NRCB1, or MIRIMAGE for --instrument MIRI). The detectors are read out "
              "together: each exposure is one file per detector, with one pointing.")
@click.option("--module", "modules", multiple=True,
              type=click.Choice(["A", "B", "ALL"], case_sensitive=False),
              help="All detectors of NIRCam module A, B or both (ALL), short- and long-wave; "
              "adds to --detector.")
@click.option("--filter", "filters", multiple=True, metavar="NAME",
              help="Filter, repeatable (default F200W short-wave, F444W long-wave, F770W MIRI). "
              "NIRCam reads short- and long-wave at once: the n-th SW filter is paired with the "
              "n-th LW filter (the channel with fewer repeats its last); each pair is one "
              "exposure set (_02101, _02103, ...).")
@click.option("--subarray", default="SUB640", show_default=True,
              help="FULL or a SIAF imaging subarray (SUB640, SUB320, SUB160, SUB400P, ... "
              "BRIGHTSKY, SUB256, SUB128, SUB64 for MIRI).")
@click.option("--dithers", "n_dithers", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Science exposures (dither positions) per filter set, each read out on "
              "every detector.")
@click.option("--background", "n_background", type=click.IntRange(0, 16), default=0,
              show_default=True,
              help="Dedicated background exposures per filter set, in visit 002 (for the "
              "Stage 2 background step).")
@click.option("--rateints", is_flag=True, help="Write 3-D _rateints products (one plane per integration).")
@click.option("--nints", type=click.IntRange(1, 50), default=None,
              help="Integrations per exposure with --rateints (default 3) or --uncal "
              "(default: as many as make the _rate's exposure time).")
@click.option("--uncal", is_flag=True,
              help="Also write the raw ramps of every science and background exposure "
              "(<name>_uncal.fits, with bias, dark, non-linearity, saturation, amplifier "
              "offsets, cosmic rays and snowballs), their truth (truth_uncal/*_slope.fits, "
              "truth_uncal_jumps.ecsv, truth_uncal_saturated.ecsv) and the calwebb_detector1 "
              "references in the CRDS cache.")
@click.option("--ngroups", type=click.IntRange(2, 200), default=None,
              help="Groups per integration of the _uncal ramps (default: 4-10 NIRCam, up to "
              "100 MIRI, with the readout pattern, as close to the exposure time as they go).")
@click.option("--readpatt", default=None, metavar="NAME",
              help="READPATT of the _uncal ramps: RAPID, BRIGHT1/2, SHALLOW2/4, MEDIUM2/8, "
              "DEEP2/8 (NIRCam), FASTR1 (MIRI); default: chosen with --ngroups.")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed (same seed, same files).")
@click.option("--pointing-error", type=click.FloatRange(0, 5), default=0.1, show_default=True,
              help="RMS pointing error per exposure in arcsec (what tweakreg has to fix).")
@click.option("--extra", "extras", multiple=True, type=click.Choice(["ta", "grism", "uncal"]),
              help="Also write what else a MAST download holds, repeatable: ta (a "
              "target-acquisition _rate, NRC_TACQ or MIR_TACQ), grism (an NRC_WFSS GRISMR "
              "_rate; MIRI: MIR_LRS-SLITLESS), uncal (the _uncal raw ramps of the first "
              "exposure, a Level1bModel). Not science: image2, image3 and asn leave them out.")
@click.option("--effect", "effects", multiple=True, metavar="NAME",
              type=click.Choice(["flicker", "snowballs", "persistence"]),
              help="Inject what a correction step removes, with its truth, repeatable: "
              "flicker (NIRCam 1/f row stripes per amplifier, for clean_flicker_noise), "
              "snowballs (JUMP_DET cores with unflagged biased halos, for snowblind), "
              "persistence (saturated stars, their afterimages in the detector's later "
              "exposures and a _jump.fits per exposure, for snowblind's persist). _rate only.")
@click.option("--crds-path", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Where to write the CRDS cache (default OUTDIR/crds_cache).")
@click.option("--force", is_flag=True, help="Write into a non-empty OUTDIR.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def simulate(outdir, instrument, detectors, modules, filters, subarray, n_dithers,
             n_background, rateints, nints, uncal, ngroups, readpatt, seed, pointing_error,
             extras, effects, crds_path, force, as_json):
    """Simulate a JWST imaging program and a local CRDS cache that reduces it offline.

    Writes *_rate.fits (or *_rateints.fits) named by the JWST convention, background
    exposures, truth tables of the injected sources, pointing errors and cosmic rays
    (ECSV), a Gaia-like astrometric catalogue of the field (refcat.ecsv, for `jwstrun
    refs refcat`), a CRDS cache, and OUTDIR/crds.env with the CRDS environment to use.
    As on the telescope, one NIRCam exposure is read out on all the detectors at once
    (one SW and one LW filter), its files share the exposure id and one pointing.
    --uncal adds the raw ramps of every exposure, for calwebb_detector1 (its references are
    in the cache); --extra the other files of a MAST download (target acquisition, grism,
    and with --extra uncal a 3-group _uncal of the first exposure, not for reduction).
    --effect adds 1/f noise, snowballs or persistence, with truth files (truth_flicker.fits,
    truth_snowballs.fits/.ecsv, truth_persistence.fits/.ecsv) to check the corrections by.

    \b
    Examples:
      jwstrun simulate sim/
      jwstrun simulate sim/ --module B --filter F200W --filter F444W --subarray SUB160
      jwstrun simulate sim/ --detector NRCB1 --detector NRCBLONG --filter F200W --filter F444W
      jwstrun simulate sim/ --instrument MIRI --subarray FULL --dithers 4 --background 2
      jwstrun simulate sim/ --rateints --nints 4 --subarray SUB320
      jwstrun simulate mast/ --background 1 --extra ta --extra grism --extra uncal
      jwstrun simulate raw/ --subarray SUB160 --uncal --ngroups 6 --nints 1
      jwstrun simulate fx/ --subarray SUB320 --effect flicker --effect snowballs --effect persistence
      source sim/crds.env && strun calwebb_image2 sim/jw01234001001_02101_00001_nrcb1_rate.fits
      source raw/crds.env && strun calwebb_detector1 raw/jw01234001001_02101_00001_nrcb1_uncal.fits
    """
    from ..simulate import simulate_program
    from ..simulate.layout import module_detectors

    if modules:
        detectors = (*detectors, *(d for m in modules for d in module_detectors(m)))
    result = simulate_program(
        outdir,
        instrument=instrument,
        detectors=detectors,
        filters=filters,
        subarray=subarray,
        n_dithers=n_dithers,
        n_background=n_background,
        rateints=rateints,
        nints=nints if nints is not None else 3,
        uncal=uncal,
        ngroups=ngroups,
        uncal_nints=nints,
        readpatt=readpatt,
        seed=seed,
        pointing_error=pointing_error,
        extras=extras,
        effects=effects,
        crds_path=crds_path,
        force=force,
    )
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    _echo_summary(result)
    if result.extra_files:
        click.echo(f"  not science: {', '.join(p.name for p in result.extra_files)}")
    if result.uncal_files:
        click.echo(f"  _uncal ramps: {len(result.uncal_files)} (for calwebb_detector1)")
    truth = [result.truth_file, result.pointing_file, result.cosmic_ray_file,
             *(p for p in result.effect_files if p.name.startswith("truth_")),
             *(p for p in result.uncal_truth_files if p.parent == result.outdir)]
    click.echo(f"Truth: {', '.join(p.name for p in truth)}")
    jumps = [p for p in result.effect_files if p.name.endswith("_jump.fits")]
    if jumps:
        click.echo(f"  _jump files (for persistence flagging): {len(jumps)}")
    if result.refcat_file:
        click.echo(f"Astrometric catalogue (Gaia-like, for tweakreg's abs_refcat): "
                   f"{result.refcat_file.name}")
    click.echo(f"CRDS cache: {result.crds_path} (context {result.crds_context})")
    click.echo("To use it from a shell (no CRDS server needed):")
    for name, value in result.env.items():
        click.echo(f"  export {name}={value}")
    click.echo(f"or: source {result.env_file}")


def _echo_summary(result) -> None:
    """Exposures and files, then one line per exposure set: its filters and detectors."""
    sets: dict[tuple[str, str], list[dict]] = {}
    for group in result.groups:
        sets.setdefault((group.get("observation", ""), group.get("activity", "")), []).append(group)
    n_sci = sum(len(groups[0]["science"]) for groups in sets.values())
    n_bkg = sum(len(groups[0]["background"]) for groups in sets.values())
    n_files = len(result.rate_files) + len(result.background_files)
    click.echo(f"Simulated {n_sci} science and {n_bkg} background exposures ({n_files} files) in "
               f"{result.seconds:.1f} s into {result.outdir}/")
    for (obs, act), groups in sets.items():
        by_filter: dict[str, list[str]] = {}
        for group in groups:
            by_filter.setdefault(group["filter"], []).append(group["detector"])
        readout = "; ".join(f"{f} on {', '.join(d)}" for f, d in by_filter.items())
        click.echo(f"  observation {obs} activity {act}: {len(groups[0]['science'])} science, "
                   f"{len(groups[0]['background'])} background exposures; {readout}")


def register(group: click.Group) -> None:
    group.add_command(simulate)
