"""Options shared by several commands, written once."""

from __future__ import annotations

import click

__all__ = [
    "crds_path_option",
    "crds_context_option",
    "json_option",
    "output_options",
    "add_output_options",
]


def crds_path_option(func):
    """``--crds-path``: a local CRDS cache (sets CRDS_PATH and serverless mode)."""
    return click.option(
        "--crds-path",
        type=click.Path(file_okay=False, path_type=str),
        default=None,
        envvar="JWSTRUN_CRDS_PATH",
        help="Local CRDS cache to use (sets CRDS_PATH; the server is not contacted "
        "unless CRDS_SERVER_URL points at a real server). Defaults to $CRDS_PATH.",
    )(func)


def crds_context_option(func):
    """``--crds-context``: pin a CRDS context such as jwst_1322.pmap."""
    return click.option(
        "--crds-context",
        default=None,
        metavar="jwst_NNNN.pmap",
        help="Pin the CRDS context (default: what the installed jwst would choose, "
        "or $CRDS_CONTEXT).",
    )(func)


def json_option(func):
    """``--json``: machine-readable output on stdout."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        func
    )


# --- -v / -q / --debug: the group's options, also accepted after any command ---------

#: (param name, flags, extra click.option settings, help)
_OUTPUT_OPTIONS = (
    ("debug", ("--debug",), {"is_flag": True}, "Show full tracebacks on errors."),
    ("verbose", ("-v", "--verbose"), {"count": True}, "More log output (repeat for more)."),
    ("quiet", ("-q", "--quiet"), {"is_flag": True}, "Only warnings and errors."),
)


def _record_output_option(ctx: click.Context, param: click.Parameter, value) -> None:
    """Keep -v/-q/--debug in the root context's ``obj``, wherever on the line they were given.

    ``obj["debug"]`` and ``obj["verbosity"]`` (-1 quiet, 0 default, >0 verbose) are what
    the group and the commands read. The group callback sets up logging once for every
    command; a flag given after the command is parsed later, so it sets logging up again.
    """
    root = ctx.find_root()
    state = root.ensure_object(dict)
    if param.name == "verbose":
        state["verbose"] = state.get("verbose", 0) + value
    else:
        state[param.name] = bool(state.get(param.name)) or value
    state["verbosity"] = -1 if state.get("quiet") else state.get("verbose", 0)
    if value and ctx is not root:  # after the command: the group callback has already run
        from ..console import setup_logging

        setup_logging(state["verbosity"])


def output_options(func):
    """``--debug``, ``-v/--verbose``, ``-q/--quiet`` (kept by :func:`_record_output_option`)."""
    for name, flags, settings, text in reversed(_OUTPUT_OPTIONS):
        func = click.option(
            *flags, name, expose_value=False, callback=_record_output_option, help=text,
            **settings,
        )(func)
    return func


def add_output_options(command: click.Command) -> None:
    """Accept ``--debug``, ``-v`` and ``-q`` after ``command`` and, for a group, after each of
    its commands, with the same meaning as before the command (``jwstrun validate FILE -v``)."""
    taken = {opt for param in command.params for opt in getattr(param, "opts", ())}
    names = {param.name for param in command.params}
    for name, flags, settings, text in _OUTPUT_OPTIONS:
        if name in names or taken.intersection(flags):
            raise RuntimeError(
                f"command {command.name!r} defines its own {'/'.join(flags)}: it would "
                "hide jwstrun's option of the same name; rename it."
            )
        command.params.append(
            click.Option((*flags, name), expose_value=False, callback=_record_output_option,
                         help=text, **settings)
        )
    for sub in getattr(command, "commands", {}).values():
        add_output_options(sub)


# --- step-parameter profiles (jwstrun.profiles) -----------------------------

__all__ += ["profile_option", "set_option", "no_crds_steppars_option"]


def profile_option(func):
    """``--profile NAME|FILE`` (repeatable): step-parameter profiles, layered in order."""
    return click.option(
        "--profile",
        "profiles",
        multiple=True,
        metavar="NAME|FILE.yaml",
        help="Step-parameter profile: a built-in name (see `jwstrun profiles list`) or a "
        "YAML file. Repeat to layer several; built-in profiles apply first, then files, "
        "each in the order given.",
    )(func)


def set_option(func):
    """``--set KEY=VALUE`` (repeatable): one parameter, above every profile."""
    return click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="KEY=VALUE",
        help="Set one parameter, overriding profiles: steps.STEP.PARAM=VALUE for a step "
        "(e.g. steps.tweakreg.snr_threshold=10) or PARAM=VALUE for the pipeline. "
        "Values are checked against the step's spec; lists as a,b; None for null.",
    )(func)


def no_crds_steppars_option(func):
    """``--no-crds-steppars``: do not apply CRDS pars-* parameter references."""
    return click.option(
        "--no-crds-steppars",
        is_flag=True,
        default=False,
        help="Do not apply the CRDS pars-* step-parameter reference files (stpipe's "
        "STPIPE_DISABLE_CRDS_STEPPARS / strun --disable-crds-steppars).",
    )(func)
