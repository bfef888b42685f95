"""How long `jwstrun refs refcat` and image3's abs_refcat check take on a large catalogue.

A Gaia DR3 download for a NIRCam mosaic field is 10^4-10^6 rows. This writes a
synthetic Gaia-like catalogue of N rows (ECSV and FITS) around four 20" footprints,
then times, each the median of --rounds:

- ``cut_catalogue`` (what `jwstrun refs refcat` runs): read, move by proper motion,
  select, write;
- ``check_abs_refcat`` on the raw catalogue (what image3 runs before anything when
  abs_refcat is a big file) and on the cut one (the recommended use).

Usage: python scripts/bench_refcat.py [--rows 1000000] [--rounds 3] [--work /tmp/bench-refcat]
Prints one table; nothing is appended to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np


def _footprints(work: Path) -> list[Path]:
    from astropy.io import fits

    paths = []
    ra0, dec0, half = 53.16, -27.79, 10.0 / 3600
    c = np.cos(np.radians(dec0))
    for k in range(4):
        ra = ra0 + k * 5.0 / 3600 / c
        corners = [(ra - half / c, dec0 - half), (ra + half / c, dec0 - half),
                   (ra + half / c, dec0 + half), (ra - half / c, dec0 + half)]
        sci = fits.ImageHDU(np.zeros((2, 2), np.float32), name="SCI")
        sci.header["S_REGION"] = "POLYGON ICRS " + " ".join(f"{a:.9f} {d:.9f}" for a, d in corners)
        primary = fits.PrimaryHDU()
        primary.header["DATE-BEG"] = "2024-04-01T00:00:00.000"
        path = work / f"jw0000{k}_cal.fits"
        fits.HDUList([primary, sci]).writeto(path, overwrite=True)
        paths.append(path)
    return paths


def _catalogue(work: Path, rows: int) -> dict[str, Path]:
    from astropy.table import Table

    rng = np.random.default_rng(1)
    table = Table({
        "source_id": np.arange(rows, dtype=np.int64),
        "ra": 53.16 + rng.uniform(-0.5, 0.5, rows), "dec": -27.79 + rng.uniform(-0.5, 0.5, rows),
        "ra_error": rng.uniform(0.1, 2, rows), "dec_error": rng.uniform(0.1, 2, rows),
        "pmra": rng.normal(0, 5, rows), "pmdec": rng.normal(0, 5, rows),
        "ref_epoch": np.full(rows, 2016.0), "phot_g_mean_mag": rng.uniform(12, 21, rows),
    })
    out = {}
    for fmt, suffix in (("ascii.ecsv", "ecsv"), ("fits", "fits")):
        out[suffix] = work / f"gaia_{rows}.{suffix}"
        if not out[suffix].exists():
            table.write(out[suffix], format=fmt, overwrite=True)
    return out


def _median(func, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    from jwstrun.refs.refcat import check_abs_refcat, cut_catalogue

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-refcat"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cal = _footprints(args.work)
    catalogues = _catalogue(args.work, args.rows)
    offline = {"CRDS_PATH": str(args.work), "CRDS_SERVER_URL": "https://jwst-serverless-mode.stsci.edu"}
    print(f"{args.rows} rows, 4 footprints of 20\", median of {args.rounds}")
    print(f"{'what':<40} {'seconds':>8}")
    for suffix, path in catalogues.items():
        out = args.work / f"field_{suffix}.ecsv"
        cut_s = _median(lambda: cut_catalogue(path, cal, out, force=True), args.rounds)
        print(f"{'refs refcat (' + suffix + ')':<40} {cut_s:8.2f}")
        check_s = _median(lambda: check_abs_refcat(str(path), [("asn", cal)], minobj=1,
                                                   crds_env=offline), args.rounds)
        print(f"{'abs_refcat check, raw ' + suffix:<40} {check_s:8.2f}")
    cut = args.work / "field_ecsv.ecsv"
    check_s = _median(lambda: check_abs_refcat(str(cut), [("asn", cal)], minobj=1,
                                               crds_env=offline), args.rounds)
    print(f"{'abs_refcat check, cut ecsv':<40} {check_s:8.2f}")


if __name__ == "__main__":
    main()
