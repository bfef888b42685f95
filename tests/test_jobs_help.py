"""Each command's ``-j`` help quotes its own stage's memory figure, from the stage table."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from jwstrun.cli import cli
from jwstrun.stages import _STEP_MEMORY, FULL_FRAME_PIXELS, STAGES


def _jobs_help(command: str) -> str:
    result = CliRunner().invoke(cli, [command, "--help"], terminal_width=2000)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "-j, --jobs" in line)
    return " ".join(line.split())


@pytest.mark.parametrize(("command", "figure"), [
    ("detector1", f"about {STAGES['detector1'].bytes_per_task(10 * FULL_FRAME_PIXELS) / 1e9:g} "
                  "GB per full-frame exposure of 10 groups"),
    ("image2", f"about {STAGES['image2'].bytes_per_task(FULL_FRAME_PIXELS) / 1e9:g} GB per "
               "full-frame exposure"),
    ("image3", f"about {STAGES['image3'].memory[0] / 1e9:g} GB plus "
               f"{STAGES['image3'].memory[1] / 1e9:g} GB per full-frame exposure of an "
               "association, or its mosaic's estimate"),
    ("step", f"about {sum(_STEP_MEMORY) / 1e9:g} GB per full-frame exposure"),
])
def test_each_command_quotes_its_own_stage(command, figure):
    assert _jobs_help(command).endswith(
        "Parallel pipeline workers (default: what fits the CPUs and the available memory, "
        f"{figure}). [x>=1]")


def test_the_figures_differ():
    assert len({_jobs_help(c) for c in ("detector1", "image2", "image3", "step")}) == 4
    assert "2.75 GB" in _jobs_help("detector1") and "1.2 GB" in _jobs_help("image2")
