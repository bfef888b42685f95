"""``jwstrun profiles``: list, show, check and export step-parameter profiles."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..stages import STAGES
from .options import json_option, set_option

__all__ = ["register", "profiles_group"]

_PIPELINE_CHOICE = click.Choice(list(STAGES))


def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2))


def _value_text(value) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@click.group("profiles")
def profiles_group() -> None:
    """Step-parameter profiles: YAML files of calwebb_image2/image3 parameters.

    \b
    Layering, lowest first:
      step spec default < CRDS pars-* reference < built-in profile
        < --profile FILE.yaml < --set KEY=VALUE

    \b
    Examples:
      jwstrun profiles list
      jwstrun profiles show fast --pipeline image2 --resolved
      jwstrun profiles check my_profile.yaml
      jwstrun profiles export deep --pipeline image3 -o deep_image3.asdf
    """


@profiles_group.command("list")
@json_option
def list_command(as_json: bool) -> None:
    """List the built-in profiles with their descriptions.

    \b
    Example:
      jwstrun profiles list
    """
    from ..profiles import list_profiles

    found = list_profiles()
    if as_json:
        _echo_json(
            [{"name": p.name, "description": p.description, "path": str(p.path)} for p in found]
        )
        return
    from rich.table import Table

    from ..console import out

    table = Table(box=None, show_header=True, header_style="bold")
    table.add_column("profile")
    table.add_column("description")
    for profile in found:
        table.add_row(profile.name, profile.description)
    out(table)


@profiles_group.command("show")
@click.argument("name")
@click.option("--pipeline", type=_PIPELINE_CHOICE, default=None, help="Only this pipeline.")
@click.option(
    "--resolved",
    is_flag=True,
    help="Every effective parameter of every step (spec defaults included), with the "
    "layer each value came from. CRDS pars-* references depend on the input data and "
    "are applied by stpipe at run time; they are not shown here.",
)
@click.option(
    "--changed",
    is_flag=True,
    help="Only the values that differ from the steps' spec defaults, with the layer each "
    "came from (with --resolved: as its table).",
)
@set_option
@json_option
def show_command(
    name: str, pipeline: str | None, resolved: bool, changed: bool, sets, as_json: bool
) -> None:
    """Show the settings of profile NAME (a built-in name or a YAML file).

    Without --pipeline both pipelines are shown, and a --set key without an
    image2./image3. prefix applies to the pipelines that have its step.

    \b
    Examples:
      jwstrun profiles show fast
      jwstrun profiles show crowded --pipeline image3 --resolved
      jwstrun profiles show deep --changed
      jwstrun profiles show my.yaml --set steps.tweakreg.snr_threshold=10 --json
    """
    from ..profiles import load_profile, parse_sets, resolve_parameters

    profile = load_profile(name)
    pipelines = [pipeline] if pipeline else list(STAGES)
    sections = {}
    for pipe in pipelines:
        layers = [profile, parse_sets(sets, pipe, pipelines=pipelines)] if sets else [profile]
        sections[pipe] = resolve_parameters(
            pipe, layers, include_defaults=resolved, changed_only=changed
        )

    if as_json:
        _echo_json(
            {
                "profile": profile.name,
                "path": str(profile.path),
                "description": profile.description,
                "resolved": resolved,
                "changed": changed,
                "pipelines": {pipe: sec.to_dict() for pipe, sec in sections.items()},
            }
        )
        return

    from rich.text import Text

    from ..console import out

    out(Text(f"{profile.name}: ", style="bold") + Text(profile.description or ""))
    out(Text(str(profile.path), style="dim"))
    for pipe, section in sections.items():
        if section.is_empty():
            what = ("no value differs from the spec defaults" if changed
                    else "no settings (spec defaults and CRDS pars-* apply)")
            out(Text(f"{pipe}: {what}", style="dim"))
        elif resolved:
            _print_table(pipe, section)
        else:
            _print_settings(pipe, section)


def _print_settings(pipe: str, section) -> None:
    """``steps.STEP.PARAM = value    [origin]`` per setting, and why it is there."""
    from rich.padding import Padding
    from rich.text import Text

    from ..console import out

    out(Text(pipe, style="bold"))
    _print_before(section)
    for step, key, setting in section.items():
        where = key if step is None else f"steps.{step}.{key}"
        out(
            Text(f"  {where} = {_value_text(setting.value)}")
            + Text(f"    [{setting.origin}]", style="dim")
        )
        if setting.why:
            out(Padding(Text(setting.why, style="italic"), (0, 0, 0, 6)))


def _print_before(section) -> None:
    """``before: N. STEP (class, package version)`` and its settings, in order."""
    from rich.padding import Padding
    from rich.text import Text

    from ..console import out

    for number, correction in enumerate(section.before or (), 1):
        spec = correction.spec
        skipped = " (skipped)" if correction.skipped else ""
        out(Text(f"  before {number}. {correction.step}{skipped}")
            + Text(f"  {spec.class_name}, {spec.package} {spec.version}"
                   f"    [{correction.origin}]", style="dim"))
        if correction.why:
            out(Padding(Text(correction.why, style="italic"), (0, 0, 0, 6)))
        for key, setting in correction.params.items():
            out(Text(f"      {key} = {_value_text(setting.value)}")
                + Text(f"    [{setting.origin}]", style="dim"))


def _print_table(pipe: str, section) -> None:
    """One row per parameter: spec defaults plain, the layers' values bold."""
    from rich.table import Table

    from ..console import out

    _print_before(section)
    table = Table(title=pipe, title_justify="left", box=None, header_style="bold")
    table.add_column("step")
    table.add_column("parameter")
    table.add_column("value", overflow="fold")
    table.add_column("source")
    for step, key, setting in section.items():
        style = "dim" if setting.origin.kind == "spec" else "bold"
        table.add_row(
            step or "(pipeline)",
            key,
            _value_text(setting.value),
            str(setting.origin),
            style=style,
        )
    out(table)


@profiles_group.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@json_option
@click.pass_context
def check_command(ctx: click.Context, files, as_json: bool) -> None:
    """Validate profile FILES against the installed pipelines' specs.

    Unknown pipelines, steps and parameters, values of the wrong type or outside
    the allowed options, YAML tags and keys that would name Python classes are
    reported as FILE:LINE: message. Exits 1 if any file has a problem.

    \b
    Example:
      jwstrun profiles check my_profile.yaml configs/*.yaml
    """
    from ..errors import ConfigError
    from ..profiles import load_profile

    results = []
    for file in files:
        try:
            profile = load_profile(Path(file))
        except ConfigError as exc:
            results.append({"file": file, "ok": False, "error": str(exc)})
            continue
        before = [c for sec in profile.sections.values() for c in sec.before or ()]
        count = sum(1 for sec in profile.sections.values() for _ in sec.items())
        count += sum(len(c.params) for c in before)
        results.append({"file": file, "ok": True, "settings": count,
                        **({"correction_steps": len(before)} if before else {})})

    if as_json:
        _echo_json(results)
    else:
        for result in results:
            if result["ok"]:
                steps = result.get("correction_steps")
                more = f", {steps} correction step{'s' if steps != 1 else ''}" if steps else ""
                click.echo(f"ok {result['file']} ({result['settings']} settings{more})")
            else:
                click.secho(f"Error: {result['error']}", err=True, fg="red")
    if not all(r["ok"] for r in results):
        ctx.exit(1)


@profiles_group.command("export")
@click.argument("name")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Directory for calwebb_image2/image3 parameter files, or with --pipeline a "
    "FILE.asdf.",
)
@click.option("--pipeline", type=_PIPELINE_CHOICE, default=None, help="Only this pipeline.")
@click.option(
    "--full",
    is_flag=True,
    help="Write every parameter (pipeline export_config). This freezes spec defaults, "
    "so CRDS pars-* references no longer apply under strun.",
)
@set_option
@json_option
def export_command(name: str, output: Path, pipeline, full: bool, sets, as_json: bool) -> None:
    """Write stpipe parameter files (ASDF) for profile NAME, to reproduce with strun.

    By default only the profile's settings are written, so the CRDS pars-*
    references apply under strun exactly as under jwstrun.

    \b
    Examples:
      jwstrun profiles export fast -o params/
      strun params/fast_calwebb_image2.asdf jw01234001001_01101_00001_nrca1_rate.fits
      jwstrun profiles export crowded --pipeline image3 -o crowded_image3.asdf
    """
    from ..errors import OutputError
    from ..profiles import export_parameter_file, load_profile, parse_sets

    pipelines = [pipeline] if pipeline else list(STAGES)
    if pipeline and output.suffix == ".asdf":
        profile = load_profile(name)
        written = [
            export_parameter_file(
                pipeline, [profile, parse_sets(sets, pipeline)], output, full=full
            )
        ]
    else:
        if output.suffix == ".asdf":
            raise click.UsageError(
                f"-o FILE.asdf needs --pipeline {'|'.join(STAGES)}; give a directory to export "
                "each stage"
            )
        if output.exists() and not output.is_dir():
            raise OutputError(f"{output}: exists and is not a directory")
        output.mkdir(parents=True, exist_ok=True)
        from ..profiles import export_profile

        written = export_profile([name], output, pipelines=pipelines, sets=sets, full=full)

    if as_json:
        _echo_json([str(p) for p in written])
        return
    for path in written:
        click.echo(f"wrote {path}")
    click.echo("reproduce with: strun <FILE.asdf> <input> [--disable-crds-steppars]")


def register(group: click.Group) -> None:
    """Add ``jwstrun profiles ...`` to the top-level group."""
    group.add_command(profiles_group)
