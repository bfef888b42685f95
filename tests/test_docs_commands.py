"""Every ``jwstrun ...`` line a user may paste from the README and the workflow pages
names commands and options that exist, with a plausible number of arguments.

The lines are parsed by the installed Click commands themselves (``make_context`` with
``resilient_parsing``: no callbacks, no file checks), so a renamed or removed command or
option fails here instead of in a user's terminal.  The blocks marked to run are run
for real on simulated data by tests/test_docs_run.py.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from _docs import PAGES, SHELL_LANGUAGES
from jwstrun.cli import cli

OPERATORS = {"|", "||", "&&", ";", ">", ">>", "2>", "2>&1", "<", "&"}
TOP_LEVEL_FLAGS = {"--debug", "-v", "-vv", "-vvv", "--verbose", "-q", "--quiet"}


def shell_lines(text: str):
    """Logical lines of the shell code blocks (continuations joined, prompts removed)."""
    fence = None  # the language of the open code block, None outside blocks
    pending = ""
    heredoc_end = None
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip()
            pending, heredoc_end = "", None
            continue
        if fence not in SHELL_LANGUAGES:
            continue
        if heredoc_end is not None:
            if stripped == heredoc_end:
                heredoc_end = None
            continue
        line = pending + stripped
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        heredoc = re.search(r"<<-?\s*['\"]?(\w+)", line)
        if heredoc:
            heredoc_end = heredoc.group(1)
        yield line.removeprefix("$ ")


def jwstrun_invocations(line: str):
    """The argument lists of every ``jwstrun`` command on one shell line."""
    try:
        lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        tokens = list(lexer)
    except ValueError:
        return
    segment: list[str] = []
    for token in [*tokens, ";"]:
        if token in OPERATORS or set(token) <= set("|&;<>"):
            words = list(segment)
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                words.pop(0)  # VAR=value prefixes
            if words and words[0] in ("time", "exec"):
                words.pop(0)
            if words and Path(words[0]).name == "jwstrun":
                yield words[1:]
            segment = []
        else:
            segment.append(token)


def check_invocation(args: list[str]) -> None:
    """Raise click.UsageError when ``jwstrun ARGS`` would not parse.

    Uses the command's own option parser (unknown options, options missing their value,
    extra arguments), then checks that required arguments and options are present and
    that literal values of choice and range options are accepted.  Paths are not
    checked: the documented files do not exist here.
    """
    while args and args[0] in TOP_LEVEL_FLAGS:
        args = args[1:]
    command: click.Command = cli
    path = ["jwstrun"]
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        name = args.pop(0)
        sub = command.commands.get(name)
        if sub is None:
            raise click.UsageError(f"no command '{' '.join(path)} {name}'")
        command, path = sub, [*path, name]
    if isinstance(command, click.Group) or set(args) & {"--help", "-h", "--version"}:
        return
    # A context that inherits the group's settings (-h/--help): Click caches each
    # command's help option on first use, so a bare Context would change later --help.
    root = click.Context(cli, info_name="jwstrun", **cli.context_settings)
    ctx = click.Context(command, parent=root, info_name=" ".join(path[1:]))
    values, extra, _order = command.make_parser(ctx).parse_args(list(args))
    if extra:
        raise click.UsageError(f"{' '.join(path)}: unexpected extra arguments {extra}")
    for param in command.params:
        value = values.get(param.name)
        given = value is not None and value != () and value != []
        # the mutually exclusive modes of `asn` (--show/--check) need no FILES/-o
        if param.required and not given and not ({"show", "check"} & set(values)):
            raise click.UsageError(f"{' '.join(path)}: missing {param.human_readable_name}")
        if given and isinstance(param.type, (click.Choice, click.IntRange, click.FloatRange)):
            for item in value if isinstance(value, (list, tuple)) else [value]:
                if not str(item).startswith("$"):
                    param.type.convert(item, param, ctx)


def invocations():
    found = []
    for page in PAGES:
        for line in shell_lines(page.read_text(encoding="utf-8")):
            for args in jwstrun_invocations(line):
                found.append(pytest.param(args, id=f"{page.name}: jwstrun {' '.join(args)}"[:150]))
    return found


def test_pages_have_commands():
    ids = {p.id.split(":")[0] for p in invocations()}
    assert "README.md" in ids
    for name in ("real-data.md", "background.md", "parameters.md", "offline.md",
                 "cluster.md", "results.md", "validate.md"):
        assert name in ids, f"docs/workflows/{name} has no jwstrun command"


@pytest.mark.parametrize("args", invocations())
def test_documented_command_parses(args):
    check_invocation(list(args))


@pytest.mark.parametrize(
    "line",
    [
        "jwstrun image2 x_rate.fits -o out/ --no-such-option",
        "jwstrun refs prefetchh x_rate.fits",
        "jwstrun profiles show fast extra-argument",
        "CRDS_PATH=/c jwstrun validate x_cal.fits --expect nonsense --skipp tweakreg",
    ],
)
def test_checker_catches_bad_lines(line):
    (args,) = list(jwstrun_invocations(line))
    with pytest.raises(click.UsageError):
        check_invocation(args)


def test_line_splitting():
    line = "jwstrun refs doctor 'd/*.fits' --offline || exit 1  # comment"
    assert list(jwstrun_invocations(line)) == [["refs", "doctor", "d/*.fits", "--offline"]]
    assert list(jwstrun_invocations("pip install jwstrun")) == []
    text = "```bash\njwstrun image2 a \\\n    -o out/\ncat > f <<'Y'\njwstrun nonsense\nY\n```\n"
    assert list(shell_lines(text)) == ["jwstrun image2 a  -o out/", "cat > f <<'Y'"]
