"""Options shared by several commands, written once."""

from __future__ import annotations

import click

__all__ = ["crds_path_option", "crds_context_option", "json_option", "debug_enabled"]


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


def debug_enabled(ctx: click.Context) -> bool:
    """True when the top-level ``--debug`` flag was given."""
    root = ctx.find_root()
    return bool(root.obj and root.obj.get("debug"))


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
