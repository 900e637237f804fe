"""Stages on a real SLURM cluster: a sweep as array jobs and a task map across several jobs,
then browsing the results."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import run_py, write_script

import runlock
from runlock.record.lockfile import load_lock

pytestmark = pytest.mark.slurm


@dataclass
class Cfg:
    item: int = 0
    seed: int | None = None


@runlock.stage(snapshot=False)
def square(cfg: Cfg) -> int:
    import os

    (runlock.current_run().dir / "job.txt").write_text(os.environ.get("SLURM_JOB_ID", "none"))
    return cfg.item * cfg.item


def test_task_map_across_several_slurm_jobs(slurm_cluster: Any, results: Path) -> None:
    opts = slurm_cluster.backend_options("stage map")
    res = square.map(list(range(8)), key="item", backend="slurm", n_jobs=2, chunk_size=2, **opts)
    assert res.ok, res.summary.to_dict()
    assert res.results() == [i * i for i in range(8)]
    jobs = {p.read_text() for p in (res.run_dir / "tasks").glob("*/job.txt")}
    assert len(jobs) >= 2 and "none" not in jobs  # ran inside several SLURM jobs
    lock = load_lock(res.run_dir)
    assert lock["status"] == "completed" and lock["tasks"]["done"] == 8
    assert "worker" in (res.run_dir / "run.log").read_text() or lock["tasks"]["launch"]


def test_sweep_on_slurm_and_ls(slurm_cluster: Any, tmp_path: Path, results: Path) -> None:
    script = write_script(
        tmp_path / "sweep_stage.py",
        """
        from dataclasses import dataclass
        import os, runlock
        @dataclass
        class C:
            lr: float = 0.1
        @runlock.stage(snapshot=False)
        def fit(cfg: C):
            return {"score": cfg.lr * 10, "job": os.environ.get("SLURM_JOB_ID")}
        if __name__ == "__main__":
            runlock.main(fit)
        """,
    )
    folder = slurm_cluster.shared_dir / "sweep jobs"
    res = run_py(script, "lr=0.1,0.2,0.3", "--sweep", "--backend", "slurm", "--jobs", "3", "--slurm", f"folder={folder}", "--slurm", "timeout_min=5", timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    locks = [load_lock(p.parent) for p in (results / "fit").glob("*/run.lock")]
    assert sorted(lk["config"]["lr"] for lk in locks) == [0.1, 0.2, 0.3]
    assert all(lk["result"]["value"]["job"] for lk in locks)  # each point ran in a SLURM job
    assert all(lk["environment"]["slurm"].get("SLURM_JOB_ID") for lk in locks)
    out = subprocess.run([sys.executable, "-m", "runlock", "--root", str(results), "ls", "fit", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"completed"}
