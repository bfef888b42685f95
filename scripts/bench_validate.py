"""Benchmark jwstrun.validate against opening the same products as stdatamodels datamodels.

Measures, side by side in one run:
  1. one full-frame (2048 x 2048) NIRCam cal and crf: validate_file vs datamodels.open
     (+ touching SCI/DQ and meta.wcs, what a datamodel-based check would need);
  2. N small products (copies of one 64 x 80 cal): validate_files header-level
     (check_data=False) and full, vs datamodels.open on the same files.

Usage:  python scripts/bench_validate.py [--n-small 1000] [--workdir DIR] [--record]
``--record`` writes the printed lines, the command, date and machine to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _benchlib import Recorder, machine, record


def make_cal(path: Path, shape, crf=False) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_validate import IMAGE2, IMAGE3, _fill_arrays, _set_meta
    from stdatamodels.jwst.datamodels import ImageModel

    rng = np.random.default_rng(0)
    model = ImageModel(shape)
    _fill_arrays(model, shape, rng, outliers=crf)
    _set_meta(model, steps=IMAGE2 + (IMAGE3 if crf else ()))
    model.meta.filename = path.name
    model.save(path)
    model.close()
    return path


def time_datamodel_open(paths) -> float:
    from stdatamodels.jwst import datamodels

    start = time.perf_counter()
    for path in paths:
        with datamodels.open(path) as model:
            float(np.nanmax(model.data))
            int(np.count_nonzero(model.dq & 16))
            model.meta.wcs  # noqa: B018 - force the WCS to load
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-small", type=int, default=1000)
    parser.add_argument("--n-datamodel", type=int, default=100,
                        help="small files opened as datamodels for the comparison")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()

    from jwstrun.validate import validate_file, validate_files

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_validate_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"workdir {work}")
    say = Recorder()

    say(f"started {machine()}")

    # warm imports and schema caches so both sides are measured warm
    small = make_cal(work / "small_cal.fits", (64, 80))
    validate_file(small)
    time_datamodel_open([small])

    say("== full frame 2048 x 2048")
    for kind in ("cal", "crf"):
        path = make_cal(work / f"full_{kind}.fits", (2048, 2048), crf=kind == "crf")
        size_mb = path.stat().st_size / 1e6
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            report = validate_file(path)
            runs.append(time.perf_counter() - start)
            assert report.ok, [f.message for f in report.findings]
        t_validate = min(runs)
        t_model = min(time_datamodel_open([path]) for _ in range(2))
        say(f"{kind}: {size_mb:.0f} MB  validate_file {t_validate:.3f} s  "
            f"datamodels.open {t_model:.3f} s  ratio {t_model / t_validate:.1f}x")

    say(f"== {args.n_small} small products (64 x 80 cal)")
    smalldir = work / "small"
    smalldir.mkdir(exist_ok=True)
    paths = []
    for i in range(args.n_small):
        target = smalldir / f"jw01234001001_02101_{i:05d}_nrcb1_cal.fits"
        shutil.copyfile(small, target)
        paths.append(target)
    start = time.perf_counter()
    reports = validate_files(paths, check_data=False)
    t_headers = time.perf_counter() - start
    assert all(r.ok for r in reports)
    start = time.perf_counter()
    validate_files(paths)
    t_full = time.perf_counter() - start
    n_dm = min(args.n_datamodel, len(paths))
    t_dm = time_datamodel_open(paths[:n_dm]) / n_dm * len(paths)
    say(f"header-level {t_headers:.2f} s ({t_headers / len(paths) * 1e3:.1f} ms/file)  "
        f"with data {t_full:.2f} s  datamodels.open {t_dm:.2f} s "
        f"(from {n_dm} files)  ratio {t_dm / t_headers:.1f}x")

    if args.record:
        record("validate: jwstrun.validate vs opening products as datamodels",
               "bench_validate.py", say.text)


if __name__ == "__main__":
    main()
