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
