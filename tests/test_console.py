"""Tables and lists on stdout: rich on a terminal, plain unwrapped lines in a pipe or a log.

Each command's own output off a terminal is checked in its test module (validate and
info in test_validate.py, refs in test_refs.py, asn in test_asn.py); here the one
function they all print through, the demo's and the run summary's renderers, and
``profiles show`` through a real pipe and a real pseudo-terminal.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jwstrun.console import out, plain_lines

JWSTRUN = [sys.executable, "-m", "jwstrun"]
BOX_DRAWING = re.compile("[\u2500-\u257f]")
ANSI = re.compile("\x1b\\[")


def long_dir(tmp_path: Path) -> Path:
    """A directory whose path is well over 150 characters (rich wrapped at 80)."""
    directory = tmp_path / ("d" * 60) / ("e" * 60) / ("f" * 40)
    directory.mkdir(parents=True)
    assert len(str(directory)) > 150
    return directory


def assert_plain(text: str) -> None:
    assert not BOX_DRAWING.search(text), text
    assert not ANSI.search(text), text


def test_plain_table_one_line_per_row(capsys):
    from rich.table import Table

    path = "/data/" + "x" * 150 + "_cal.fits"
    table = Table(title="[bold]results[/] in /out", box=None)
    table.add_column("  file", overflow="fold")
    table.add_column("n", justify="right")
    table.add_column("members", overflow="ellipsis", max_width=10)
    table.add_row(f"  [cyan]{path}[/]", "3", "a_cal.fits\n  b_cal.fits\n")
    table.add_row("  short", "12", "")
    out(table)
    assert capsys.readouterr().out.splitlines() == [
        "results in /out",
        "  file" + " " * (len(path) - 4) + "   n  members",
        f"  {path}   3  a_cal.fits, b_cal.fits",
        "  short" + " " * (len(path) - 5) + "  12",
    ]


def test_plain_markup_text_and_padding():
    from rich.padding import Padding
    from rich.text import Text

    assert plain_lines("[red]problem:[/] a \\[b] c") == ["problem: a [b] c"]
    assert plain_lines(Text("x", style="bold") + Text(" y")) == ["x y"]
    assert plain_lines(Padding(Text("why " * 40), (0, 0, 0, 6))) == ["      " + "why " * 40]
    assert plain_lines("") == [""]


def test_demo_products_and_run_summary_off_a_terminal(tmp_path, capsys):
    from jwstrun.cli.run import _render_demo, _render_summary
    from jwstrun.demo import DemoReport
    from jwstrun.runner._parent import RunSummary

    outdir = long_dir(tmp_path)
    products = [str(outdir / f"jw01234-o001_t001_nircam_clear-f200w-sub640_{s}") for s in
                ("i2d.fits", "cat.ecsv", "segm.fits")]
    report = DemoReport(
        outdir=outdir,
        stages=[{"name": "image3", "seconds": 27.6, "detail": "1 ran, 0 up to date, 0 failed"}],
        checks=[{"name": "flux recovery (median measured/true)", "value": "0.969",
                 "requirement": "0.85-1.15", "passed": True}],
        products=products,
    )
    _render_demo(report)
    from jwstrun.manifest import TaskResult

    ok = TaskResult("image2-jw01234001001_02101_00001_nrcb1", "ok", wall_s=30.0,
                    outputs=["jw01234001001_02101_00001_nrcb1_cal.fits"])
    error = f"Image2Pipeline step flat_field on {outdir / 'x_rate.fits'}: [errno 2] no flat"
    failed = TaskResult("image2-jw01234001001_02101_00002_nrcb1", "failed", error=error,
                        log_file=str(outdir / "logs" / "image2-x.log"))
    summary = RunSummary(pipeline="image2", outdir=outdir, manifest=outdir / "m.json",
                         results=[ok, failed], tasks={}, jobs=2, jobs_reason="", wall_s=1.0,
                         crds_context="jwst_0001.pmap")
    _render_summary(summary)
    text = capsys.readouterr().out
    assert_plain(text)
    lines = text.splitlines()
    check = "flux recovery (median measured/true)"
    assert lines[:6] == [
        f"jwstrun demo in {outdir}",
        "stage     time  result",
        "image3  27.6 s  1 ran, 0 up to date, 0 failed",
        "science checks against the truth",
        f"{'check':<{len(check)}}  value  requirement",
        f"{check}  0.969  0.85-1.15    pass",
    ]
    assert lines[6:10] == ["products:", *(f"  {p}" for p in products)]
    assert lines[10:] == [
        f"image2 in {outdir}",
        "task                                    status    wall  peak RSS  products",
        "image2-jw01234001001_02101_00001_nrcb1  ok      30.0 s         -  _cal",
        "image2-jw01234001001_02101_00002_nrcb1  failed       -         -  -",
        f"FAILED image2-jw01234001001_02101_00002_nrcb1: {error}",
        f"       log: {outdir / 'logs' / 'image2-x.log'}",
        "2 task(s): 1 ok, 0 up to date (skipped), 1 failed in 1.0 s with -j 2; "
        f"CRDS context jwst_0001.pmap; manifest {outdir / 'm.json'}",
    ]


PROFILE = """\
description: a profile kept in a deep directory
image3:
  steps:
    tweakreg:
      snr_threshold: 20
why:
  image3.steps.tweakreg.snr_threshold: {why}
"""


@pytest.fixture
def deep_profile(tmp_path) -> Path:
    path = long_dir(tmp_path) / "my_profile_with_a_long_name.yaml"
    path.write_text(PROFILE.format(why="bright isolated stars only " * 6))
    return path


def _jwstrun(*args, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    return subprocess.run([*JWSTRUN, *args], env=env, timeout=120, **kwargs)


def test_profiles_show_through_a_pipe(deep_profile):
    proc = _jwstrun("profiles", "show", str(deep_profile), "--pipeline", "image3",
                    capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert_plain(proc.stdout)
    lines = proc.stdout.splitlines()
    assert lines[1] == str(deep_profile)
    assert lines[2:] == [
        "image3",
        f"  steps.tweakreg.snr_threshold = 20.0    [{deep_profile}:5]",
        "      " + ("bright isolated stars only " * 6).strip(),
    ]
    resolved = _jwstrun("profiles", "show", str(deep_profile), "--pipeline", "image3",
                        "--resolved", capture_output=True, text=True)
    assert resolved.returncode == 0, resolved.stderr
    assert_plain(resolved.stdout)
    lines = resolved.stdout.splitlines()
    assert lines[2] == "image3" and lines[3].split() == ["step", "parameter", "value", "source"]
    rows = [line.split() for line in lines[4:]]
    assert ["tweakreg", "snr_threshold", "20.0", f"{deep_profile}:5"] in rows
    assert len(rows) > 100 and all(len(row) >= 4 for row in rows)  # one parameter a line


def test_profiles_show_on_a_terminal_is_rich(deep_profile):
    """A pseudo-terminal as stdout: rich renders (and wraps to COLUMNS) as before."""
    import pty

    leader, follower = pty.openpty()
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
        proc = subprocess.run([*JWSTRUN, "profiles", "show", str(deep_profile)],
                              stdout=follower, stderr=subprocess.PIPE, timeout=120,
                              env={**env, "COLUMNS": "80", "TERM": "xterm-256color"})
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the other end is closed and everything was read
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    assert proc.returncode == 0, proc.stderr
    text = b"".join(chunks).decode()
    assert ANSI.search(text)  # styles on a terminal
    assert str(deep_profile) not in text.replace("\r\n", "\n")  # wrapped at 80 columns
