"""The ``jwstrun`` command line: a Click group and one module per command family.

Command modules only parse options, call one library function and render the
result.  They must not import jwst, crds or astropy at import time so that
``jwstrun --help`` stays fast.  Library errors (:class:`jwstrun.errors.JwstrunError`)
become ``Error: ...`` with a non-zero exit code; a traceback is shown only with
``--debug``.

The wiring every command shares lives here, once: the group callback sets up logging
(``-v`` debug, ``-q`` warnings only), and ``--debug``, ``-v`` and ``-q`` are accepted
before or after any command (:func:`jwstrun.cli.options.add_output_options`). A command
module listed in ``_COMMAND_MODULES`` that cannot be imported is an error at import.
"""

from __future__ import annotations

import atexit
import importlib
import os
import signal
import sys
import threading
from importlib import metadata

import click

from .._version import __version__
from ..console import setup_logging
from ..errors import JwstrunError
from .options import add_output_options, output_options

__all__ = ["main", "cli"]

# Command modules under jwstrun.cli; each exposes ``register(group)``.
_COMMAND_MODULES = (
    "simulate",
    "asn",
    "validate",
    "refs",
    "run",
    "step",
    "status",
    "profiles",
    "look",
    "compare",
    "grid",
)


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"jwstrun {__version__}")
    for dist in ("jwst", "stpipe", "crds", "stdatamodels"):
        click.echo(f"{dist} {_dist_version(dist)}")
    click.echo(f"python {sys.version.split()[0]}")
    ctx.exit()


#: SIGINT (Ctrl-C) and SIGTERM (a scheduler's wall-time kill): exit code and last line.
_STOP_SIGNALS = {signal.SIGINT: (130, "Interrupted."), signal.SIGTERM: (143, "Terminated.")}
#: The stop signal this process received first (set by :func:`_stop`).
_received: list[int] = []


def _stop(signum: int, _frame) -> None:
    """First SIGINT or SIGTERM: stop the command with KeyboardInterrupt; ignore later ones.

    The clean-up that follows (workers stopped, the run recorded as interrupted,
    the lock and temporary files removed) must not itself be interrupted by a
    second Ctrl-C or a scheduler's repeated SIGTERM.
    """
    _ignore_stop_signals()
    _received.append(signum)
    raise KeyboardInterrupt


def _ignore_stop_signals() -> None:
    """Ignore SIGINT/SIGTERM from now on where :func:`main` handles them (not in a caller's
    process that runs the commands itself, such as Click's test runner)."""
    if threading.current_thread() is threading.main_thread():
        for signum in _STOP_SIGNALS:
            if signal.getsignal(signum) is _stop:
                signal.signal(signum, signal.SIG_IGN)


class JwstrunGroup(click.Group):
    """Click group that turns library errors into one clear line, and answers strun's
    spellings of options (``--steps.STEP.PARAM=VALUE``) with what jwstrun takes."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["jwstrun.args"] = list(args)  # the words as given, for _strun_hint
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.NoSuchOption as exc:
            raise _strun_hint(exc, ctx.meta.get("jwstrun.args", ())) from None
        except JwstrunError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.secho(f"Error: {exc}", err=True, fg="red")
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            _ignore_stop_signals()
            if not _received:  # raised by other code (astropy re-raises a deferred Ctrl-C)
                _received.append(signal.SIGINT)
            code, text = _STOP_SIGNALS[_received[0]]
            click.secho(text, err=True, fg="red")
            ctx.exit(code)
        except Exception as exc:  # noqa: BLE001 - last line of defence for users
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.secho(
                f"Error: unexpected {type(exc).__name__}: {exc}\n"
                "Re-run with --debug for the full traceback and report it if it persists.",
                err=True,
                fg="red",
            )
            ctx.exit(1)


def _strun_hint(exc: click.NoSuchOption, args) -> click.NoSuchOption:
    """Click's "No such option" for a command, with what jwstrun takes instead when the
    option is strun's spelling (jwstrun.cli._strun); otherwise Click's own error."""
    command = exc.ctx.command if exc.ctx is not None else None
    if command is None or not exc.option_name.startswith("-"):
        return exc
    from ._strun import option_value, strun_hint

    hint = strun_hint(exc.option_name, option_value(args, exc.option_name), command)
    if hint is None:
        return exc
    return click.NoSuchOption(exc.option_name, f"{exc.message} {hint}", ctx=exc.ctx)


@click.group(
    cls=JwstrunGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show jwstrun, jwst, stpipe and crds versions and exit.",
)
@output_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Reduce JWST imaging with the official calwebb_image2/image3 pipelines.

    \b
    Typical session:
      jwstrun simulate sim/                 # a small simulated program + CRDS cache
      jwstrun asn sim/*_rate.fits -o l2_asn.json
      jwstrun image2 l2_asn.json -o out/ --crds-env sim/crds.env
      jwstrun image3 'out/*_cal.fits' -o out/ --crds-env sim/crds.env
      jwstrun validate out/*_i2d.fits
      jwstrun demo                          # all of the above, offline, in ~1 minute
    """
    # --debug, -v and -q are recorded in ctx.obj by their option callback (cli.options);
    # logging is set up here, once, for every command.
    state = ctx.ensure_object(dict)
    setup_logging(state.get("verbosity", 0))


def _register_commands(group: click.Group, names=_COMMAND_MODULES) -> None:
    """Import each command module ``jwstrun.cli.NAME`` and call its ``register(group)``;
    then accept --debug, -v and -q after every command.

    A listed module that is missing or has no ``register`` is an installation error,
    raised here (at import), never a command silently absent from ``jwstrun --help``.
    """
    for name in names:
        module_name = f"{__name__}.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise  # a module the command needs is missing: its own error says which
            raise ImportError(
                f"jwstrun command module {module_name} is listed in jwstrun.cli but cannot be "
                "found: the installation is incomplete. Reinstall jwstrun "
                "(pip install --force-reinstall jwstrun)."
            ) from exc
        register = getattr(module, "register", None)
        if not callable(register):
            raise ImportError(
                f"jwstrun command module {module_name} has no register(group) function, so "
                "its commands cannot be added to jwstrun."
            )
        register(group)
    for command in group.commands.values():
        add_output_options(command)


_register_commands(cli)


def main() -> None:
    """Console-script entry point (also ``python -m jwstrun``).

    SIGTERM is handled like Ctrl-C; once the command is stopping or over, both are
    ignored, so neither can cut its clean-up or the interpreter's teardown short.
    A stopped command leaves with 130 (SIGINT) or 143 (SIGTERM) through
    :func:`os._exit` once the exit handlers have run: CPython remembers a
    KeyboardInterrupt that passed through code run by ``exec`` of a string
    (dataclasses and crds do that while importing), even when it was handled, and
    under ``python -m`` would end the clean exit by killing itself with SIGINT.
    """
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _stop)
    try:
        cli(prog_name="jwstrun")
    except SystemExit:
        if not _received:
            _ignore_stop_signals()
            raise
    _ignore_stop_signals()
    if not _received:
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(_STOP_SIGNALS[_received[0]][0])
