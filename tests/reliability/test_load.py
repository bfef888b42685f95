"""Load: calwebb_image2 over 50 simulated exposures in one run (slow: about two minutes).

Every product valid, the manifest complete (one ok record per exposure with every field
a user relies on), worker memory bounded (recycled workers, no growth from task to task).
``scripts/bench_memory.py`` measures the single-worker growth ratio for docs/benchmarks.md.
"""

from __future__ import annotations

import json
import statistics

import pytest

from ._helpers import Run, assert_no_traceback, assert_nothing_half_written

N_EXPOSURES = 50
RECORD_FIELDS = ("status", "inputs", "outputs", "output_sizes", "versions", "crds_context",
                 "references", "parameters", "resolved_parameters", "fingerprint", "start",
                 "end", "wall_s", "step_times", "peak_rss_mb", "worker_peak_rss_mb",
                 "rss_after_mb", "tasks_in_worker", "worker_pid", "log_file")


@pytest.mark.slow
def test_image2_over_50_exposures(tmp_path):
    """image2 over 50 exposures, -j 2: every product valid, the manifest complete, workers
    recycled and their memory flat (slow)."""
    from jwstrun.simulate import simulate_program

    sim = simulate_program(tmp_path / "sim", subarray="SUB160", n_dithers=N_EXPOSURES, seed=5)
    outdir = tmp_path / "out"
    run = Run(["image2", *sim.rate_files, "-o", outdir, "-j", "2", "--crds-env", sim.env_file,
               "--no-progress", "--json", "--max-tasks-per-worker", "20"], tmp_path)
    assert run.wait(3600) == 0, run.stderr[-3000:]
    assert_no_traceback(run.stderr)
    summary = json.loads(run.stdout)
    assert summary["counts"] == {"total": N_EXPOSURES, "ok": N_EXPOSURES, "skipped": 0,
                                 "failed": 0}
    products = assert_nothing_half_written(outdir)
    assert len(products) == 2 * N_EXPOSURES

    records = json.loads((outdir / "jwstrun-manifest.json").read_text())["tasks"]
    assert len(records) == N_EXPOSURES
    for task_id, record in records.items():
        missing = [k for k in RECORD_FIELDS if record.get(k) in (None, "", [], {})
                   and not (k == "parameters" and record.get(k) == {})]  # no profile given
        assert not missing, (task_id, missing)
        assert (outdir / record["log_file"]).stat().st_size > 0
    # Workers are replaced after 20 tasks; memory does not creep up from task to task.
    assert max(r["tasks_in_worker"] for r in records.values()) <= 20
    assert len({r["worker_pid"] for r in records.values()}) >= 3
    ordered = sorted(records.values(), key=lambda r: r["start"])
    early = statistics.median(r["peak_rss_mb"] for r in ordered[:6])
    late = max(r["peak_rss_mb"] for r in ordered[-10:])
    worst_worker = max(r["worker_peak_rss_mb"] for r in ordered)
    print(f"task peak RSS: first 6 median {early:.0f} MB, last 10 max {late:.0f} MB; "
          f"worker peak {worst_worker:.0f} MB")
    assert late <= 1.15 * early
    assert worst_worker <= 1.25 * early
