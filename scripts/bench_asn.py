"""Benchmark ``jwstrun asn`` grouping (headers only) against opening exposures as datamodels.

Measures, side by side in one run, on N small NIRCam ``_rate`` files (4 filters on
2 detectors, 64 x 64 pixels so the datamodel side is not slowed by pixel volume):
  1. ``jwstrun asn FILES --group-by default -o DIR`` as a fresh process (imports,
     header reads, grouping, writing the JSON files): the number users see;
  2. ``jwstrun.asn.make_associations`` in-process (warm imports);
  3. what grouping by opening each file with ``stdatamodels.jwst.datamodels.open``
     and reading its meta would cost (from ``--n-datamodel`` files, scaled to N).

Usage:  python scripts/bench_asn.py [--n 1000] [--n-datamodel 200] [--workdir DIR] [--record]
``--record`` writes the printed lines, the command, date and machine to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _benchlib import machine, record

SETUPS = [  # (detector, module, channel, filter)
    ("NRCB1", "B", "SHORT", "F150W"),
    ("NRCB1", "B", "SHORT", "F200W"),
    ("NRCBLONG", "B", "LONG", "F356W"),
    ("NRCBLONG", "B", "LONG", "F444W"),
]
LIMIT_SECONDS = 10.0


def make_template(path: Path) -> Path:
    from stdatamodels.jwst.datamodels import ImageModel

    model = ImageModel(np.ones((64, 64), dtype=np.float32))
    meta = model.meta
    meta.instrument.name = "NIRCAM"
    meta.instrument.detector = "NRCB1"
    meta.instrument.module = "B"
    meta.instrument.channel = "SHORT"
    meta.instrument.filter = "F150W"
    meta.instrument.pupil = "CLEAR"
    meta.exposure.type = "NRC_IMAGE"
    meta.observation.program_number = "01234"
    meta.observation.observation_number = "001"
    meta.observation.visit_number = "001"
    meta.observation.visit_group = "01"
    meta.observation.sequence_id = "1"
    meta.observation.activity_id = "01"
    meta.observation.exposure_number = "00001"
    meta.observation.date = "2024-04-01"
    meta.observation.time = "00:00:00"
    meta.target.proposer_name = "NGC-1"
    meta.subarray.name = "SUB64P"
    model.save(path)
    model.close()
    return path


def make_files(template: Path, directory: Path, n: int) -> list[Path]:
    from astropy.io import fits

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    with fits.open(template) as hdul:
        hdul.readall()
        for i in range(n):
            det, module, channel, filt = SETUPS[i % len(SETUPS)]
            header = hdul[0].header
            header["DETECTOR"], header["MODULE"], header["CHANNEL"] = det, module, channel
            header["FILTER"] = filt
            header["EXPOSURE"] = f"{i + 1:05d}"
            path = directory / f"jw01234001001_01101_{i + 1:05d}_{det.lower()}_rate.fits"
            hdul.writeto(path)
            paths.append(path)
    return paths


def time_datamodels(paths) -> float:
    from stdatamodels.jwst import datamodels

    start = time.perf_counter()
    groups: dict[tuple, list] = {}
    for path in paths:
        with datamodels.open(path) as model:
            m = model.meta
            key = (
                m.observation.program_number,
                m.instrument.name,
                m.instrument.channel,
                m.instrument.filter,
                m.instrument.pupil,
                m.target.proposer_name,
            )
            groups.setdefault(key, []).append(path.name)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument(
        "--n-datamodel",
        type=int,
        default=200,
        help="files opened as datamodels for the comparison (scaled to --n)",
    )
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()

    from jwstrun.asn import make_associations

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_asn_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"workdir {work}")
    started = machine()
    template = make_template(work / "template_rate.fits")
    data = work / "data"
    start = time.perf_counter()
    paths = make_files(template, data, args.n)
    print(f"wrote {len(paths)} rate files in {time.perf_counter() - start:.1f} s")

    # 1. the CLI as a user runs it: a fresh process, imports included
    outdir = data  # associations beside their members, the JWST convention
    cmd = [
        sys.executable,
        "-m",
        "jwstrun",
        "-q",
        "asn",
        *map(str, paths),
        "--group-by",
        "default",
        "-o",
        str(outdir),
        "--json",
    ]
    start = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    t_cli = time.perf_counter() - start
    if run.returncode:
        sys.exit(f"jwstrun asn failed:\n{run.stderr}")
    n_asn = len(list(outdir.glob("*_asn.json")))

    # 2. the library, warm
    make_associations(paths[:4], data, group_by="default", force=True)  # imports
    runs = []
    for _attempt in range(3):
        start = time.perf_counter()
        result = make_associations(paths, data, group_by="default", force=True)
        runs.append(time.perf_counter() - start)
    t_lib = min(runs)
    members = sum(a.n_members for a in result.associations)
    assert members == len(paths), members

    # 3. the datamodel way, same files
    time_datamodels(paths[:2])  # warm imports and schema caches
    n_dm = min(args.n_datamodel, len(paths))
    t_dm = time_datamodels(paths[:n_dm]) / n_dm * len(paths)

    verdict = "met" if t_cli < LIMIT_SECONDS else "NOT met"
    lines = [
        f"started {started}",
        f"{len(paths)} rate files -> {n_asn} Level-2 associations (group-by default)",
        f"jwstrun asn CLI (fresh process)   {t_cli:6.2f} s  "
        f"({t_cli / len(paths) * 1e3:.2f} ms/file)",
        f"make_associations (warm)          {t_lib:6.2f} s  "
        f"({t_lib / len(paths) * 1e3:.2f} ms/file)",
        f"datamodels.open + meta (from {n_dm})  {t_dm:6.2f} s  "
        f"({t_dm / len(paths) * 1e3:.2f} ms/file)",
        f"ratio datamodels / make_associations {t_dm / t_lib:.1f}x",
        f"target: {len(paths)} files grouped in < {LIMIT_SECONDS:.0f} s by the CLI: {verdict}",
    ]
    text = "\n".join(lines)
    print(text)
    if args.record:
        record(f"asn: grouping {len(paths)} rate files from headers vs opening them as datamodels",
               "bench_asn.py", text)
    if not args.workdir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
