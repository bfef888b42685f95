#!/usr/bin/env python
"""Benchmark: best references for N alike exposures, per exposure vs grouped.

Side by side in one process on one local CRDS cache (serverless, no network):

* per exposure - what each pipeline run does: open the datamodel, take
  ``get_crds_parameters()`` and ask crds through stpipe's adapter
  (``stpipe.crds_client.get_multiple_reference_paths``), once per exposure;
* grouped - ``jwstrun.refs.resolve_bestrefs``: primary headers only, one crds
  call per group of equal matching parameters (here: one).

Both answers are compared, then the ratio of wall times is printed.

    python scripts/bench_refs.py            # 500 exposures
    python scripts/bench_refs.py -n 100 --keep /tmp/bench_refs
    python scripts/bench_refs.py --record   # append to docs/benchmarks.md with date, machine
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from _benchlib import machine, record


def build(workdir: Path, n: int) -> tuple[Path, list[Path]]:
    """A small real CRDS cache and ``n`` NIRCam exposures of one detector/filter over 10 days."""
    import numpy as np
    from astropy.io import fits
    from stdatamodels.jwst import datamodels

    from jwstrun.simulate.crds_cache import RefEntry, write_crds_cache

    det = "META.INSTRUMENT.DETECTOR"
    dfp = ((det, "NRCB1"), ("META.INSTRUMENT.FILTER", "F200W"), ("META.INSTRUMENT.PUPIL", "CLEAR"))
    early = "2014-01-01 00:00:00"
    rules = [
        RefEntry("nircam", "distortion", "jwst_nircam_distortion_0001.asdf", ((det, "NRCB1"),)),
        RefEntry("nircam", "flat", "jwst_nircam_flat_0001.fits", dfp, early),
        RefEntry("nircam", "flat", "jwst_nircam_flat_0002.fits", dfp, "2023-06-01 00:00:00"),
        RefEntry("nircam", "photom", "jwst_nircam_photom_0001.fits", ((det, "NRCB1"),)),
        RefEntry("nircam", "apcorr", "jwst_nircam_apcorr_0001.fits", ((det, "NRCB1"),)),
        RefEntry("nircam", "abvegaoffset", "jwst_nircam_abvegaoffset_0001.asdf", ((det, "NRCB1"),)),
    ]
    cache = workdir / "crds_cache"
    refdir = cache / "references" / "jwst" / "nircam"
    refdir.mkdir(parents=True)
    for entry in rules:  # placeholders: bestrefs only needs the names
        (refdir / entry.filename).write_bytes((entry.filename.encode() * 100)[:2880])
    write_crds_cache(cache, rules)

    data = workdir / "data"
    data.mkdir()
    model = datamodels.ImageModel(np.zeros((64, 64), dtype=np.float32))
    meta = model.meta
    meta.telescope = "JWST"
    meta.instrument.name, meta.instrument.detector = "NIRCAM", "NRCB1"
    meta.instrument.filter, meta.instrument.pupil = "F200W", "CLEAR"
    meta.instrument.module, meta.instrument.channel = "B", "SHORT"
    meta.exposure.type, meta.subarray.name = "NRC_IMAGE", "SUB64P"
    meta.observation.date, meta.observation.time = "2024-03-01", "00:00:00"
    template = data / "template.fits"
    model.save(template)
    paths = []
    for i in range(n):
        path = data / f"jw01234001001_02101_{i + 1:05d}_nrcb1_rate.fits"
        shutil.copy(template, path)
        with fits.open(path, mode="update") as hdul:
            hdul[0].header["DATE-OBS"] = f"2024-03-{1 + i % 10:02d}"
            hdul[0].header["TIME-OBS"] = f"{i % 24:02d}:{(7 * i) % 60:02d}:00.000"
        paths.append(path)
    template.unlink()
    return cache, paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500, help="number of exposures (default 500)")
    parser.add_argument("--keep", type=Path, default=None, help="work directory to keep")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    started = machine()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench_refs_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        cache, paths = build(workdir, args.n)
        from jwstrun import refs

        refs.apply_crds_environment(refs.crds_environment(crds_path=cache, base={}))
        types = refs.reftypes_for("image2") + refs.reftypes_for("image3")
        types = list(dict.fromkeys(types))

        import crds
        from stdatamodels.jwst import datamodels
        from stpipe import crds_client

        refs.resolve_bestrefs(paths[:1])  # warm both paths: crds config, context, schema
        pmap = crds.get_pickled_mapping(refs.context_in_use())
        known = [t for t in types if t in pmap.get_imap("NIRCAM").selections]

        start = time.perf_counter()
        per_exposure = {}
        for path in paths:
            with datamodels.open(path) as model:
                params = model.get_crds_parameters()
            found = crds_client.get_multiple_reference_paths(params, known, "jwst")
            per_exposure[str(path)] = {k: Path(v).name if v != "N/A" else "N/A" for k, v in found.items()}
        t_each = time.perf_counter() - start

        start = time.perf_counter()
        resolution = refs.resolve_bestrefs([str(p) for p in paths])
        t_grouped = time.perf_counter() - start

        mismatches = sum(
            1 for p in paths
            if any(resolution.references_for(p)[t] != per_exposure[str(p)][t] for t in known)
        )
        text = "\n".join([
            f"started {started}",
            f"exposures:                 {len(paths)} (one detector and filter, 10 days)",
            f"per exposure (stpipe way): {t_each:7.3f} s, {len(paths)} crds lookups",
            f"grouped (jwstrun refs):    {t_grouped:7.3f} s, {resolution.n_crds_calls} crds "
            f"lookup(s), {len(resolution.groups)} group(s)",
            f"answers differing:         {mismatches}",
            f"speed-up:                  {t_each / t_grouped:.1f}x",
        ])
        print(text)
        if args.record and not mismatches:
            record(f"refs: best references for {len(paths)} alike exposures, per exposure vs "
                   "grouped", "bench_refs.py", text)
        if mismatches:
            raise SystemExit(1)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
