"""docs/cli.md is what the commands print, and Click's shell completion works for jwstrun."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jwstrun.cli.docs import END_MARKER, REGENERATE_COMMAND, START_MARKER, iter_commands, update_text

CLI_MD = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
JWSTRUN = shutil.which("jwstrun", path=str(Path(sys.executable).parent)) or shutil.which("jwstrun")


def test_cli_reference_is_up_to_date():
    text = CLI_MD.read_text(encoding="utf-8")
    assert START_MARKER in text and END_MARKER in text
    assert update_text(text) == text, (
        f"docs/cli.md differs from the commands' --help: run `{REGENERATE_COMMAND}` to update it"
    )


def test_cli_reference_covers_every_command():
    text = CLI_MD.read_text(encoding="utf-8")
    for path, _command in iter_commands():
        assert f"## `{' '.join(('jwstrun', *path))}`" in text, path


def test_regenerating_only_touches_the_marked_part(tmp_path):
    page = tmp_path / "cli.md"
    page.write_text(f"# hand-written\n\n{START_MARKER}\nstale\n{END_MARKER}\n\ntail\n")
    check = subprocess.run(
        [sys.executable, "-m", "jwstrun.cli.docs", "--check", str(page)],
        capture_output=True, text=True,
    )
    assert check.returncode == 1 and REGENERATE_COMMAND in check.stderr
    subprocess.run([sys.executable, "-m", "jwstrun.cli.docs", str(page)], check=True,
                   capture_output=True)
    new = page.read_text()
    assert new.startswith("# hand-written\n") and new.endswith(f"{END_MARKER}\n\ntail\n")
    assert "stale" not in new and "## `jwstrun image2`" in new
    again = subprocess.run([sys.executable, "-m", "jwstrun.cli.docs", "--check", str(page)],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr


def _completion_env(**extra) -> dict:
    env = dict(os.environ)
    env.update(extra)
    return env


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o nosort -F _jwstrun_completion jwstrun"),
     ("zsh", "#compdef jwstrun"),
     ("fish", "complete --no-files --command jwstrun")],
)
def test_completion_script_is_produced(shell, marker):
    assert JWSTRUN, "the jwstrun console script is not installed next to this python"
    out = subprocess.run([JWSTRUN], env=_completion_env(_JWSTRUN_COMPLETE=f"{shell}_source"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert marker in out.stdout, out.stdout[:500]
    assert "_JWSTRUN_COMPLETE" in out.stdout


def test_completion_answers_for_nested_commands_and_options():
    env = _completion_env(_JWSTRUN_COMPLETE="bash_complete", COMP_WORDS="jwstrun refs pre",
                          COMP_CWORD="2")
    out = subprocess.run([JWSTRUN], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["plain,prefetch"], out.stdout
    env.update(COMP_WORDS="jwstrun image2 --no-", COMP_CWORD="2")
    out = subprocess.run([JWSTRUN], env=env, capture_output=True, text=True, timeout=60)
    assert "plain,--no-crds-steppars" in out.stdout.split(), out.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_bash_completion_script_completes_in_bash():
    """Load the generated script in a real bash, as docs/cli.md tells users to."""
    script = (
        'eval "$(_JWSTRUN_COMPLETE=bash_source jwstrun)"\n'
        "COMP_WORDS=(jwstrun profiles sh); COMP_CWORD=2\n"
        "_jwstrun_completion jwstrun\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = _completion_env(PATH=f"{Path(JWSTRUN).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["show"], out.stdout
