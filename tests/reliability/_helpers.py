"""Helpers of the reliability suite: subprocess runs, process inspection, product checks."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIM_OPTIONS = {"subarray": "SUB160", "n_dithers": 3, "seed": 7}
# Two workers as the issue asks; SUB160 keeps a task at a few seconds.
JOBS = "2"

#: Files a run may leave in OUTDIR that do not look like finished products.
NOT_PRODUCTS = {"jwstrun-manifest.json", "jwstrun-report.html"}


# ----------------------------------------------------------------------------- helpers
def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_digest(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``root`` (inputs must stay byte-identical)."""
    return {
        str(p.relative_to(root)): sha256(p) for p in sorted(Path(root).rglob("*")) if p.is_file()
    }


def jwstrun_command(*args) -> list[str]:
    return [sys.executable, "-m", "jwstrun", *map(str, args)]


class Run:
    """A ``python -m jwstrun`` subprocess in its own session, output captured in files."""

    def __init__(self, args, workdir: Path, env=None, preexec_fn=None, name="run"):
        workdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        self.started = time.monotonic()
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(
                jwstrun_command(*args), stdout=out, stderr=err, env=env,
                start_new_session=True, preexec_fn=preexec_fn,
            )
        self.pid = self.proc.pid

    def wait(self, timeout=600) -> int:
        code = self.proc.wait(timeout)
        self.wall = time.monotonic() - self.started
        return code

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_for(self, predicate, timeout=180, poll=0.02) -> bool:
        """Wait until ``predicate()`` holds while the process runs; False if it ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if self.proc.poll() is not None:
                return bool(predicate())
            time.sleep(poll)
        raise TimeoutError("condition not reached")


def _proc_stats():
    """(pid, fields after the command name) of every process in /proc (Linux)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            data = (entry / "stat").read_text()
        except OSError:
            continue
        yield int(entry.name), data[data.rfind(")") + 2 :].split()


def session_processes(sid: int) -> list[int]:
    """Pids of live (non-zombie) processes in session ``sid`` (a run and its workers)."""
    # fields: state, ppid, pgrp, session, ...
    return [pid for pid, fields in _proc_stats() if fields[0] != "Z" and int(fields[3]) == sid]


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    return [child for child, fields in _proc_stats() if fields[0] != "Z" and int(fields[1]) == pid]


def worker_pids(pid: int) -> list[int]:
    """The spawned pool workers of a jwstrun process (not multiprocessing's resource tracker)."""
    pids = []
    for child in children_of(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            pids.append(child)
    return pids


def drop_dac_override() -> None:
    """preexec_fn: run the child as root *without* the capabilities that ignore file modes.

    Root ignores ``chmod a-w``; without CAP_DAC_OVERRIDE (and DAC_READ_SEARCH,
    FOWNER) in the bounding set, the exec'd process obeys file permissions like
    any user, so a directory made read-only mid-run is read-only for it.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24
    for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def can_drop_dac_override() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "import os, sys; sys.exit(0 if os.access('/', os.W_OK) else 3)"],
        preexec_fn=drop_dac_override, capture_output=True,
    )
    return probe.returncode in (0, 3)


# ----------------------------------------------------------------------------- checks
def product_like(path: Path) -> bool:
    """A file a user would take for a finished product: visible, a FITS or ECSV file."""
    return (
        path.is_file()
        and not path.name.startswith(".")
        and path.name not in NOT_PRODUCTS
        and path.suffix.lower() in (".fits", ".ecsv")
    )


def assert_nothing_half_written(outdir: Path, expected_skips=()) -> list[Path]:
    """Every visible file in OUTDIR is complete and valid; returns the products.

    * each FITS/ECSV file validates with jwstrun.validate (no error finding);
    * the manifest, when present, is complete JSON and every ``ok`` record's
      products exist with their recorded sizes;
    * nothing else visible: temporary files are hidden (``.jwstrun-tmp/``,
      ``.jwstrun-manifest.json.*.tmp``, ``.jwstrun.lock*``), logs live in logs/.
    """
    from jwstrun.validate import validate_file

    products = []
    for path in sorted(outdir.iterdir()):
        if path.name.startswith(".") or (path.is_dir() and path.name in ("logs", "previews")):
            continue  # hidden temporaries; logs/ and the report's previews/
        if path.name in NOT_PRODUCTS or path.name.endswith("_asn.json"):
            continue
        assert product_like(path), f"unexpected file in OUTDIR: {path.name}"
        report = validate_file(path, expected_skips=expected_skips)
        assert not report.errors, f"{path.name}: {[f.message for f in report.errors]}"
        products.append(path)
    manifest_path = outdir / "jwstrun-manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())  # never truncated
        for task_id, record in manifest["tasks"].items():
            if record["status"] == "ok":
                for name in record["outputs"]:
                    assert (outdir / name).stat().st_size == record["output_sizes"][name], (
                        task_id, name
                    )
    return products


def read_manifest(outdir: Path) -> dict:
    return json.loads((outdir / "jwstrun-manifest.json").read_text())


def assert_same_products(outdir: Path, reference: Path, names=None) -> int:
    """Products of ``outdir`` equal the reference run's: same names, SCI/ERR/DQ (WHT, CON) equal."""
    from astropy.io import fits

    ours = sorted(p.name for p in outdir.glob("*.fits"))
    theirs = sorted(p.name for p in reference.glob("*.fits"))
    if names is not None:
        theirs = [n for n in theirs if any(n.startswith(k) for k in names)]
    assert ours == theirs
    compared = 0
    for name in ours:
        with fits.open(outdir / name) as a, fits.open(reference / name) as b:
            for ext in ("SCI", "ERR", "DQ", "WHT", "CON"):
                if ext in a or ext in b:
                    np.testing.assert_array_equal(a[ext].data, b[ext].data, err_msg=f"{name}[{ext}]")
                    compared += 1
    assert compared
    return compared


def assert_no_traceback(text: str, worker_killed: bool = False) -> None:
    """No traceback; no multiprocessing resource-tracker warning either, except after a
    worker was SIGKILLed (the tracker then rightly cleans up the semaphore crds made)."""
    assert "Traceback" not in text, text[-3000:]
    if not worker_killed:
        assert "leaked semaphore" not in text, text[-3000:]


def image2_args(sim, outdir, *inputs, jobs=JOBS, extra=()):
    """Arguments of ``jwstrun image2`` on the simulation (all exposures unless given)."""
    inputs = inputs or tuple(sim.rate_files)
    return ["image2", *inputs, "-o", outdir, "-j", jobs, "--crds-env", sim.env_file,
            "--no-progress", *extra]


def copy_tree_linked(source: Path, dest: Path) -> Path:
    """Copy a directory tree with hard links (cheap; a deleted link leaves the source intact)."""
    shutil.copytree(source, dest, copy_function=os.link)
    return dest


@contextlib.contextmanager
def mounted_tmpfs(mount: Path, size: str):
    """A tmpfs of ``size`` mounted at ``mount`` (made here), unmounted at the end; yields
    None where mounting is refused (the caller falls back to RLIMIT_FSIZE)."""
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def stop_worker_while_importing(tmp_path: Path, module: str) -> None:
    """Start a one-worker pool that warms ``module`` (in ``tmp_path``, written by the test:
    it touches ``<module>.inside`` where it hangs), shut the pool down once the worker is
    inside, and check the worker left at once with 143 and printed nothing."""
    (tmp_path / "parent.py").write_text(
        "import pathlib, sys, time\n"
        "from jwstrun.executors import LocalExecutor\n"
        "from jwstrun.runner import lost_task_result, run_task\n"
        "if __name__ == '__main__':\n"
        f"    pool = LocalExecutor(1, run_task, lost_task_result, warm=({module!r},))\n"
        "    pool.start()\n"
        "    (worker,) = pool._workers.values()\n"
        f"    inside = pathlib.Path(sys.argv[1]) / '{module}.inside'\n"
        "    while not inside.exists() and worker.process.is_alive():\n"
        "        time.sleep(0.01)\n"
        "    started = time.monotonic()\n"
        "    pool.shutdown(cancel=True)\n"
        "    print(worker.process.exitcode, round(time.monotonic() - started))\n"
    )
    proc = subprocess.run([sys.executable, str(tmp_path / "parent.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["143", "0"], proc.stdout + proc.stderr
    assert proc.stderr == ""
