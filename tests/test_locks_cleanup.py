"""Shards leave no ``.jwstrun-locks`` behind: the last one to finish removes the folder
with the manifest's merge guard; a live shard's run lock keeps it."""

from __future__ import annotations

import json
import subprocess
import sys

_SHARD = """
import sys
from jwstrun.locking import OutdirLock, TaskLocks
from jwstrun.manifest import Manifest
outdir, shard = sys.argv[1], int(sys.argv[2])
with OutdirLock(outdir, command=f"shard {shard}", shard=f"{shard}/4"):
    locks = TaskLocks(outdir, {"shard": f"{shard}/4"})
    manifest = Manifest.load(outdir, shared=True)
    for i in range(10):
        assert locks.claim(f"t{shard}-{i}") is None
        manifest.record({"task_id": f"t{shard}-{i}", "status": "ok"})
        locks.release(f"t{shard}-{i}")
    manifest.add_run({"command": f"shard {shard}", "shard": f"{shard}/4"})
    locks.close()
"""


def test_four_shards_leave_no_lock_folder(tmp_path):
    shards = [subprocess.Popen([sys.executable, "-c", _SHARD, str(tmp_path), str(k)])
              for k in range(1, 5)]
    assert [s.wait(timeout=120) for s in shards] == [0] * 4
    data = json.loads((tmp_path / "jwstrun-manifest.json").read_text())
    assert len(data["tasks"]) == 40 and len(data["runs"]) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jwstrun-manifest.json"]


def test_a_live_shard_keeps_the_folder(tmp_path):
    from jwstrun.locking import LOCKS_DIRNAME, MANIFEST_GUARD, OutdirLock
    from jwstrun.manifest import Manifest

    with OutdirLock(tmp_path, command="a", shard="1/2"):
        with OutdirLock(tmp_path, command="b", shard="2/2"):
            manifest = Manifest.load(tmp_path, shared=True)
            manifest.record({"task_id": "t", "status": "ok"})
            manifest.add_run({"command": "b", "shard": "2/2"})
        names = sorted(p.name for p in (tmp_path / LOCKS_DIRNAME).iterdir())
        assert MANIFEST_GUARD not in names or len(names) > 1  # shard 1/2's run lock
        assert any(n.startswith("run-") for n in names)
    assert not (tmp_path / LOCKS_DIRNAME).exists()
