"""strun's spellings on jwstrun's command line: what to write instead.

strun takes every stpipe parameter as an option of its own
(``--steps.tweakreg.snr_threshold=10``, ``--save_bsub=true``, ``--output_dir=out``) and has
a few options of its own (``--disable-crds-steppars``, ``--save-parameters``,
``--log-level``). Click answers them with a bare "No such option"; :func:`strun_hint` says
what jwstrun takes instead, for the command that was given (only commands with ``--set``
are pointed at it). The group (:class:`jwstrun.cli.JwstrunGroup`) adds the hint to
Click's error, for every command.
"""

from __future__ import annotations

import shlex
from typing import Sequence

import click

__all__ = ["strun_hint", "option_value"]

#: strun's own options (stpipe ``_cmdline``) -> (the jwstrun option that must exist, hint).
_STRUN_OPTIONS = {
    "--disable-crds-steppars": (
        "--no-crds-steppars", "jwstrun's option is --no-crds-steppars (strun's "
        "--disable-crds-steppars)."),
    "--save-parameters": (
        None, "'jwstrun profiles export' writes stpipe parameter files (strun's "
        "--save-parameters)."),
    **{flag: ("--output-dir", "jwstrun writes each task's log to OUTDIR/logs/; -v or -q "
              f"set how much it prints (strun's {flag}).")
       for flag in ("--log-level", "--log-file", "--log-stream", "--logcfg")},
}

#: stpipe parameters jwstrun always sets itself, or takes as one of its own options.
_OWN_PARAMETERS = {
    "save_results": "jwstrun always saves the pipeline's products (strun's "
    "--save_results=true), into -o OUTDIR: drop the option.",
    "output_dir": "jwstrun image2 and image3 write every product into -o OUTDIR (strun's "
    "--output_dir).",
}


def option_value(args: Sequence[str], option: str) -> str | None:
    """The value given with ``option`` on the command line ``args``: after ``=`` or the
    next word (strun reads both), None when there is none."""
    for i, arg in enumerate(args):
        if arg.startswith(option + "="):
            return arg[len(option) + 1:]
        if arg == option:
            following = args[i + 1] if i + 1 < len(args) else None
            return following if following and not following.startswith("-") else None
    return None


def _options_of(command: click.Command) -> set[str]:
    return {opt for param in command.params
            for opt in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ()))}


def _spellings_of(command: click.Command, flag: str) -> str:
    """``-o/--output-dir`` for ``--output-dir``: every spelling of that option."""
    for param in command.params:
        if flag in getattr(param, "opts", ()):
            return "/".join(sorted(param.opts, key=len))
    return flag


def _is_stpipe_parameter(key: str) -> bool:
    """``steps.STEP.PARAM``, ``image3.PARAM``... or a pipeline parameter of a stage."""
    from ..profiles import pipeline_spec
    from ..profiles._hints import stage_aliases
    from ..stages import STAGES

    first = key.split(".")[0]
    if "." in key:
        return first == "steps" or first in STAGES or first in stage_aliases()
    return any(key in pipeline_spec(stage).params for stage in STAGES)


def strun_hint(option: str, value: str | None, command: click.Command) -> str | None:
    """What to write instead of strun's ``option`` (given ``value``) to ``command``;
    None when ``option`` is not one of strun's spellings that ``command`` has an answer to."""
    options = _options_of(command)
    if option in _STRUN_OPTIONS:
        needed, hint = _STRUN_OPTIONS[option]
        return hint if needed is None or needed in options else None
    key = option[2:] if option.startswith("--") else ""
    if not key or "-" in key:
        return None
    own = "--" + key.replace("_", "-")
    if own in options:  # --output_dir, --save_bsub: jwstrun's option of the same name
        return f"jwstrun's option is {_spellings_of(command, own)} (strun's {option})."
    if "--set" not in options:
        return None
    if key in _OWN_PARAMETERS:
        return _OWN_PARAMETERS[key]
    if command.name != "step" and not _is_stpipe_parameter(key):  # step: its spec's keys
        return None
    what = "step parameters" if "steps." in key or command.name == "step" \
        else "pipeline parameters"
    spelling = "--steps.STEP.PARAM" if "steps." in key else "--PARAM"
    setting = shlex.quote(f"{key}={value if value is not None else 'VALUE'}")
    return f"jwstrun takes {what} as --set {setting} (strun's {spelling}=VALUE spelling)."
