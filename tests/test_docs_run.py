"""The command blocks of the README and docs/workflows/*.md, run for real on simulated data.

Each shell block carries a marker comment (tests/_docs.py says which): the
``run`` blocks of a page run in order, in one directory, with bash's ``-e`` and
``pipefail``, as a user pastes them; a block that fails fails the page's test with
its output.  tests/test_docs_commands.py checks every ``jwstrun`` line's options
against the commands without running them, including the blocks marked
``not run``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _docs import PAGES, ROOT, code_blocks, shell_blocks

BIN = Path(sys.executable).parent
# Fresh chains simulate and reduce a program of their own (a minute or more each) and
# run with `python -m pytest -m slow`, but on these pages, whose subject they are.
# (background.md's runs by default in tests/test_background_e2e.py, which checks its
# products: here it would be a second run of the same commands.)
FRESH_IN_DEFAULT_SUITE: set[str] = set()
# Prepared-directory chains that repeat, on the same data, runs the default suite makes
# elsewhere (profiles exported to strun: test_profiles; offline prefetch and image2:
# test_refs; image2 -> asn -> image3: test_cli_run; refs refcat and image3 with
# abs_refcat: test_refcat, test_image3_equal; jwstrun step over files: test_step; diff,
# report --compare and sweeps: test_compare, test_sweep; the nircam-clean profile before
# image2: test_corrections): slow, for the 15-minute budget.
SLOW_PREPARED_PAGES = {"parameters.md", "offline.md", "real-data.md", "astrometry.md", "step.md",
                       "compare.md", "corrections.md"}
_PREPARE = """
jwstrun simulate sim/ --dithers 2 --subarray SUB320 --seed 7
jwstrun image2 'sim/*_rate.fits' -o out/ --crds-env sim/crds.env --no-progress
jwstrun image3 'out/*_cal.fits' -o out/ --crds-env sim/crds.env --no-progress
"""


def _environment() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _bash(script: str, cwd: Path, what: str) -> subprocess.CompletedProcess:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd,
                          env=_environment(), capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"{what} exited {done.returncode}\n--- script\n{script}\n--- stdout\n"
                    f"{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}", pytrace=False)
    return done


@pytest.fixture(scope="session")
def reduced(tmp_path_factory) -> Path:
    """sim/ (a small simulated program), data/ (the same) and out/ (image2 + image3)."""
    root = tmp_path_factory.mktemp("docs-prepared")
    _bash(_PREPARE, root, "preparing sim/ and out/")
    (root / "data").symlink_to("sim")
    shutil.copy(root / "sim" / "crds.env", root / "crds.env")  # as `prefetch --write-env` writes
    return root


def chains(page: Path) -> list[list]:
    """The page's run blocks in chains that share a directory: the ``run`` blocks before
    the first ``run: fresh`` one (in the prepared directory), then each ``run: fresh``
    block with the ``run`` blocks after it (in an empty directory of its own)."""
    found: list[list] = []
    for block in code_blocks(page):
        if not block.shell or block.marker not in ("run", "run: fresh"):
            continue
        if block.marker == "run: fresh" or not found:
            found.append([])
        found[-1].append(block)
    return found


def _chain_params():
    params = []
    for page in PAGES:
        for chain in chains(page):
            fresh = chain[0].marker == "run: fresh"
            slow = (page.name not in FRESH_IN_DEFAULT_SUITE if fresh
                    else page.name in SLOW_PREPARED_PAGES)
            params.append(pytest.param(chain, id=chain[0].id + (" fresh" if fresh else ""),
                                       marks=[pytest.mark.slow] if slow else []))
    return params


def test_every_shell_block_is_marked():
    unmarked = [b.id for b in shell_blocks() if b.marker is None]
    assert not unmarked, (
        "shell blocks without a <!-- run -->, <!-- run: fresh --> or <!-- not run: REASON --> "
        f"comment above them (tests/_docs.py): {unmarked}")


def test_pages_have_blocks_that_run():
    running = {p.id.split(":")[0] for p in _chain_params()}
    for name in ("README.md", "background.md", "offline.md", "parameters.md", "results.md",
                 "validate.md", "real-data.md", "cluster.md", "step.md"):
        assert name in running, f"{name} has no block marked to run"


@pytest.mark.parametrize("chain", _chain_params())
def test_blocks_run(chain: list, request, tmp_path):
    if chain[0].marker == "run: fresh":
        workdir = tmp_path / "fresh"
        workdir.mkdir()
    else:
        workdir = tmp_path / "prepared"
        shutil.copytree(request.getfixturevalue("reduced"), workdir, symlinks=True)
    run_chain(chain, workdir)


def run_chain(chain: list, workdir: Path) -> list[subprocess.CompletedProcess]:
    """Run a chain's blocks in ``workdir`` as test_blocks_run does (the ``run`` blocks with
    ``sim/crds.env``'s variables exported when there is one); their completed processes."""
    done = []
    for block in chain:
        crds = ("[ ! -f sim/crds.env ] || { set -a; . sim/crds.env; set +a; }\n"
                if block.marker == "run" else "")
        done.append(_bash(crds + block.text, workdir, f"{block.id} ({block.marker})"))
    return done


def help_session() -> str:
    """The "Typical session" lines of ``jwstrun --help`` as a script."""
    from click.testing import CliRunner

    from jwstrun.cli import cli

    text = CliRunner().invoke(cli, ["--help"], terminal_width=200).output
    lines = text.split("Typical session:", 1)[1].splitlines()[1:]
    return "\n".join(line.strip() for line in lines
                     if line.strip().startswith("jwstrun ")) + "\n"


def test_help_session_is_complete():
    script = help_session()
    assert script.splitlines()[0] == "jwstrun simulate sim/                 # a small simulated program + CRDS cache"
    assert len(script.splitlines()) == 6 and "jwstrun demo" in script


@pytest.mark.slow
def test_help_session_runs(tmp_path):
    _bash(help_session(), tmp_path, "the typical session of jwstrun --help")
    assert sorted(tmp_path.glob("out/*_i2d.fits"))


def test_marker_parsing(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("x\n<!-- run -->\n```bash\njwstrun a\n```\n\n<!-- not run: needs the CRDS "
                    "server -->\n\n```bash\njwstrun b\n```\n```text\nlisting\n```\n"
                    "<!-- run: fresh -->\n```sh\njwstrun c\n```\n```bash\njwstrun d\n```\n")
    got = [(b.language, b.marker, b.reason, b.text) for b in code_blocks(page)]
    assert got == [("bash", "run", "", "jwstrun a\n"),
                   ("bash", "not run", "needs the CRDS server", "jwstrun b\n"),
                   ("text", None, "", "listing\n"),
                   ("sh", "run: fresh", "", "jwstrun c\n"),
                   ("bash", None, "", "jwstrun d\n")]
    assert ROOT.joinpath("README.md") in PAGES


@pytest.mark.parametrize("anchor, words", [
    ("test-command", ("python3.11 -m venv .venv", "pip install '.[test]'", "-m pytest")),
    ("demo-command", ("python3.11 -m venv .venv", "pip install .", "jwstrun demo")),
])
def test_ci_reads_the_readme_commands(anchor, words):
    """.ci/run takes the second line after the anchor verbatim: it must be the command."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    awk = next(line for line in ci.splitlines() if "awk" in line and "test-command" in line)
    program = awk.split("awk '", 1)[1].split("'", 1)[0].replace("test-command", anchor)
    line = subprocess.run(["awk", program, str(ROOT / "README.md")], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert not line.startswith(("```", "<!--")), line
    for word in words:
        assert word in line, line
