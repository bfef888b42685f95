#!/usr/bin/env python
"""What a worker pays before its first task: ``import jwst.pipeline`` vs jwstrun's
import of the one pipeline it runs (jwstrun._jwst_import).

Each measurement is a fresh Python process that imports and reports its own
wall time and peak RSS; the two ways alternate, ``--rounds`` times each, and
the medians are compared.

    python scripts/bench_import.py --record
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from _benchlib import machine, record

PROBE = """
import json, resource, sys, time
start = time.perf_counter()
if sys.argv[1] == "package":
    import jwst.pipeline
    cls = getattr(jwst.pipeline, sys.argv[2])
else:
    from jwstrun._jwst_import import import_pipeline_module
    module = "jwst.pipeline.calwebb_" + sys.argv[2][:6].lower()  # Image2Pipeline -> ..._image2
    cls = getattr(import_pipeline_module(module), sys.argv[2])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "modules": len(sys.modules), "package_imported": "jwst.pipeline" in sys.modules}))
"""

WAYS = {"package": "import jwst.pipeline", "one": "jwstrun (one pipeline)"}


def probe(way: str, class_name: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, way, class_name],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="processes per way and pipeline")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()

    started = machine()
    probe("package", "Image2Pipeline")  # the first import after install reads cold files
    lines = [f"{'pipeline':<16}{'way':<26}{'median s':>9}{'peak MB':>9}{'modules':>9}"]
    ratios = []
    for class_name in ("Image2Pipeline", "Image3Pipeline"):
        runs: dict[str, list[dict]] = {way: [] for way in WAYS}
        for _ in range(args.rounds):
            for way in WAYS:
                runs[way].append(probe(way, class_name))
        medians = {}
        for way, label in WAYS.items():
            medians[way] = statistics.median(r["seconds"] for r in runs[way])
            rss = statistics.median(r["rss_mb"] for r in runs[way])
            modules = runs[way][-1]["modules"]
            lines.append(f"{class_name:<16}{label:<26}{medians[way]:9.2f}{rss:9.0f}{modules:9d}")
        if any(r["package_imported"] for r in runs["one"]):
            raise SystemExit("jwstrun's import pulled in jwst.pipeline: the measurement is void")
        ratio = medians["package"] / medians["one"]
        ratios.append(ratio)
        lines.append(f"{class_name:<16}ratio package / one pipeline: {ratio:.2f}x "
                     f"({medians['package'] - medians['one']:.2f} s less per worker)")
    text = "\n".join(lines)
    print(text)
    if args.record:
        record("import: jwst.pipeline vs one pipeline (worker start-up)", "bench_import.py",
               f"started {started}, {args.rounds} processes per row\n" + text)


if __name__ == "__main__":
    main()
