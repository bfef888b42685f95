"""The default -j and the image3 memory budget see a batch job's memory limit:
the cgroup limit (SLURM task/cgroup, Kubernetes, docker --memory) and SLURM's --mem."""

from jwstrun._system import (
    available_memory,
    batch_memory_limit,
    cgroup_memory_available,
    default_jobs,
)
from jwstrun.mosaic import memory_budget

GB = 2**30


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_the_tightest_limit_up_the_tree_minus_what_is_used(tmp_path):
    proc = tmp_path / "proc-cgroup"
    _write(proc, "0::/system.slice/slurmstepd.scope/job_42/step_0\n")
    root = tmp_path / "sys"
    job = root / "system.slice/slurmstepd.scope/job_42"
    _write(job / "memory.max", f"{8 * GB}\n")
    _write(job / "memory.current", f"{3 * GB}\n")
    _write(job / "memory.stat", f"anon {2 * GB}\ninactive_file {GB}\n")
    _write(job / "step_0/memory.max", "max\n")  # the step itself: no limit of its own
    _write(job / "step_0/memory.current", f"{GB}\n")
    _write(root / "memory.max", "max\n")
    # 8 GB - (3 GB used - 1 GB of page cache it can drop)
    assert cgroup_memory_available(str(proc), str(root)) == 6 * GB


def test_cgroup_v1_inside_a_container_uses_the_namespace_root(tmp_path):
    proc = tmp_path / "proc-cgroup"
    _write(proc, "5:cpu,cpuacct:/x\n4:memory:/process_api/4aa07919\n0::/\n")
    memory = tmp_path / "sys" / "memory"  # /process_api/... is not visible inside
    _write(memory / "memory.limit_in_bytes", f"{4 * GB}\n")
    _write(memory / "memory.usage_in_bytes", f"{GB}\n")
    _write(memory / "memory.stat", f"cache {GB}\ntotal_inactive_file {GB // 2}\n")
    assert cgroup_memory_available(str(proc), str(tmp_path / "sys")) == 4 * GB - GB // 2


def test_no_limit_or_no_cgroups(tmp_path):
    proc = tmp_path / "proc-cgroup"
    _write(proc, "4:memory:/\n")
    _write(tmp_path / "sys/memory/memory.limit_in_bytes", "9223372036854771712\n")
    assert cgroup_memory_available(str(proc), str(tmp_path / "sys")) is None
    assert cgroup_memory_available(str(tmp_path / "absent"), str(tmp_path / "sys")) is None


def test_slurm_memory_request():
    assert batch_memory_limit({"SLURM_MEM_PER_NODE": "4000"}) == (4000 * 2**20, "SLURM --mem")
    assert batch_memory_limit({"SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_ON_NODE": "3"}) == (
        3000 * 2**20, "SLURM --mem-per-cpu")
    assert batch_memory_limit({}) is None
    assert batch_memory_limit({"SLURM_MEM_PER_NODE": "lots"}) is None


def test_default_jobs_and_image3_budget_follow_a_slurm_job(monkeypatch):
    monkeypatch.delenv("SLURM_MEM_PER_CPU", raising=False)
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "1500")  # 1.57 GB: one 1.2 GB worker
    assert available_memory() == (1500 * 2**20, "SLURM --mem")
    jobs, reason = default_jobs(8, 1.2e9)
    assert jobs == 1
    assert "SLURM --mem" in reason
    budget, source = memory_budget()
    assert budget == int(1500 * 2**20 * 0.8)
    assert "SLURM --mem" in source
