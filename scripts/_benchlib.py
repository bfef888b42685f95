"""What the benchmark scripts share: the venv's commands, simulated inputs reused
between runs, a CRDS environment for subprocesses, the three timed arms (a strun loop,
``xargs -P J strun``, one jwstrun command) and appending to docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
STRUN = str(BIN / "strun")
JWSTRUN = str(BIN / "jwstrun")
BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def fresh(path: Path) -> Path:
    """An empty directory at ``path``."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def time_strun_loop(files: list[str], strun_args: list[str], out: Path, env: dict) -> float:
    """Seconds of ``strun ALIAS FILE ARGS --output_dir OUT`` run on each file in turn;
    ``strun_args`` is ``[alias, *options]``."""
    alias, *options = strun_args
    start = time.perf_counter()
    for path in files:
        subprocess.run([STRUN, alias, path, *options, "--output_dir", str(out)],
                       env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - start


def time_strun_xargs(files: list[str], strun_args: list[str], out: Path, env: dict,
                     jobs: int) -> float:
    """Seconds of the same strun calls as :func:`time_strun_loop` through ``xargs -P jobs``."""
    alias, *options = strun_args
    given = "".join(f" {option}" for option in options)
    start = time.perf_counter()
    subprocess.run(
        ["xargs", "-P", str(jobs), "-n", "1", "sh", "-c",
         f'"{STRUN}" {alias} "$0"{given} --output_dir "{out}" > /dev/null 2>&1'],
        input="\n".join(files), env=env, text=True, check=True,
    )
    return time.perf_counter() - start


def time_command(command: list[str], env: dict) -> float:
    """Seconds of one command (a jwstrun run), which must succeed."""
    start = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - start


def simulated(work: Path, subarray: str, n: int, seed: int, instrument: str = "NIRCAM",
              uncal_groups: int | None = None) -> tuple[list[str], Path, dict]:
    """(rate files, crds.env, subprocess environment) of a one-detector NIRCam program
    (NRCB1, F200W; MIRIMAGE, F770W with ``instrument="MIRI"``), simulated once under
    ``work`` and reused by later runs; with ``uncal_groups``, its ``_uncal`` ramps of that
    many groups in one integration instead of the rate files."""
    from jwstrun.refs import read_env_file
    from jwstrun.simulate import simulate_program

    miri = instrument.upper() == "MIRI"
    sim_dir = work / (f"sim-miri-{subarray}-{n}" if miri else f"sim-{subarray}-{n}")
    ramps = {} if uncal_groups is None else dict(uncal=True, ngroups=uncal_groups,
                                                 uncal_nints=1)
    if ramps:
        sim_dir = sim_dir.with_name(f"{sim_dir.name}-g{uncal_groups}")
    env_file = sim_dir / "crds.env"
    if not env_file.exists():
        simulate_program(sim_dir, detectors=["MIRIMAGE" if miri else "NRCB1"],
                         filters=["F770W" if miri else "F200W"], subarray=subarray,
                         n_dithers=n, seed=seed, force=True, **ramps)
    kind = "_uncal" if ramps else "_rate"
    files = sorted(str(p) for p in sim_dir.glob(f"*{kind}.fits"))
    if len(files) != n:
        raise SystemExit(f"expected {n} {kind} files in {sim_dir}, found {len(files)}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env.update(read_env_file(env_file))
    return files, env_file, env


def machine() -> str:
    """One line on where and when: date, CPUs, load average."""
    load = os.getloadavg()
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, "
            f"{os.cpu_count()} CPUs, load average {load[0]:.1f}")


class Recorder:
    """``say(line)``: print a line at once and keep it for :func:`record` (``say.text``)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def record(title: str, script: str, text: str, note: str = "") -> None:
    """Write a section with the command that produced ``text`` to docs/benchmarks.md: in
    place of the section of the same title when there is one (one current section per
    question; its reading, written by hand after the figures, goes with it), else at the end."""
    command = f"python scripts/{script} " + " ".join(sys.argv[1:])
    section = (f"## {title}\n\nCommand: `{command.strip()}` ({machine()}).\n\n"
               f"```\n{text}\n```\n" + (f"\n{note}\n" if note else ""))
    lines = BENCHMARKS_MD.read_text().splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == f"## {title}"), None)
    if start is None:
        BENCHMARKS_MD.write_text("".join(lines).rstrip("\n") + "\n\n" + section)
        return
    end, fenced = len(lines), False
    for i in range(start + 1, len(lines)):
        fenced ^= lines[i].startswith("```")
        if not fenced and lines[i].startswith("## "):
            end = i
            break
    tail = "\n" if end < len(lines) else ""
    BENCHMARKS_MD.write_text("".join(lines[:start]) + section + tail + "".join(lines[end:]))
