"""Sweeps from the command line: grids, experiment wildcards, skipping completed points."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import git, run_py, write_script

from runlock.record.lockfile import load_lock
from runlock.stages.sweep import expand_grid, split_values

SCRIPT = """
from dataclasses import dataclass
import runlock

@dataclass
class Config:
    lr: float = 0.1
    model: str = "a"
    aug: bool = True
    seed: int | None = None

@runlock.stage
def train(cfg: Config):
    if cfg.model == "bad":
        raise ValueError("bad model")
    return {"score": cfg.lr * (2 if cfg.aug else 1)}

if __name__ == "__main__":
    runlock.main(train)
"""

EXPERIMENTS = """
baseline:
  lr: 0.1
ablation:
  no_aug:
    aug: false
  small_lr:
    lr: 0.01
"""


@pytest.fixture
def project(git_repo: Path, results: Path) -> Path:
    write_script(git_repo / "train.py", SCRIPT)
    (git_repo / "experiments.yaml").write_text(EXPERIMENTS)
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "stage")
    return git_repo


def statuses(stdout: str) -> list[str]:
    """The status column of the sweep summary rows."""
    return re.findall(r"^  .*?  (completed|skipped|failed|crashed) ", stdout, flags=re.M)


def locks(results: Path) -> list[dict]:
    return [load_lock(p.parent) for p in sorted(results.rglob("run.lock"))]


def test_split_and_grid() -> None:
    assert split_values("0.1,0.01") == ["0.1", "0.01"]
    assert split_values("[1,2],[3]") == ["[1,2]", "[3]"]
    assert split_values("'a,b',c") == ["'a,b'", "c"]
    assert expand_grid(["lr=0.1,0.01", "model=a,b", "epochs=3"]) == [
        ["lr=0.1", "model=a", "epochs=3"],
        ["lr=0.1", "model=b", "epochs=3"],
        ["lr=0.01", "model=a", "epochs=3"],
        ["lr=0.01", "model=b", "epochs=3"],
    ]


def test_grid_sweep_in_parallel_with_record(project: Path, results: Path) -> None:
    res = run_py(project / "train.py", "lr=0.1,0.2", "model=a,b", "--sweep", "--jobs", "2", "-q")
    assert res.returncode == 0, res.stderr
    all_locks = locks(results)
    assert len(all_locks) == 4
    assert sorted((lk["config"]["lr"], lk["config"]["model"]) for lk in all_locks) == [(0.1, "a"), (0.1, "b"), (0.2, "a"), (0.2, "b")]
    sweep_ids = {lk["sweep"]["id"] for lk in all_locks}
    assert len(sweep_ids) == 1
    (record,) = (results / "train" / ".sweeps").glob("*.json")
    data = json.loads(record.read_text())
    assert data["sweep"] in sweep_ids and [p["status"] for p in data["points"]] == ["completed"] * 4


def test_completed_points_are_skipped_unless_forced(project: Path, results: Path) -> None:
    assert run_py(project / "train.py", "lr=0.1,0.2", "--sweep", "-q").returncode == 0
    res = run_py(project / "train.py", "lr=0.1,0.2,0.3", "--sweep", "-q")
    assert res.returncode == 0, res.stderr
    assert statuses(res.stdout).count("skipped") == 2 and statuses(res.stdout).count("completed") == 1
    assert len(locks(results)) == 3
    # changed source: same config is no longer "done"
    (project / "train.py").write_text(SCRIPT.replace("cfg.lr * (2", "cfg.lr * (3"))
    res = run_py(project / "train.py", "lr=0.1", "--sweep", "-q")
    assert statuses(res.stdout) == ["completed"]
    res = run_py(project / "train.py", "lr=0.1", "--sweep", "--force", "-q")
    assert statuses(res.stdout) == ["completed"]
    assert len(locks(results)) == 5


def test_failed_points_exit_nonzero_and_rerun(project: Path, results: Path) -> None:
    res = run_py(project / "train.py", "model=a,bad", "--sweep", "-q")
    assert res.returncode == 1
    assert statuses(res.stdout) == ["completed", "failed"] and "ValueError: bad model" in res.stdout
    res = run_py(project / "train.py", "model=a,bad", "--sweep", "-q")
    assert statuses(res.stdout).count("skipped") == 1 and statuses(res.stdout).count("failed") == 1  # failed is re-run


def test_experiment_wildcards_become_subdirectories(project: Path, results: Path) -> None:
    res = run_py(project / "train.py", "--experiment", "ablation/*", "--sweep", "-q")
    assert res.returncode == 0, res.stderr
    names = sorted(lk["experiment"] for lk in locks(results))
    assert names == ["ablation/no_aug", "ablation/small_lr"]
    assert (results / "train" / "ablation" / "no_aug").is_dir()
    no_aug = next(lk for lk in locks(results) if lk["experiment"] == "ablation/no_aug")
    assert no_aug["config"]["aug"] is False and no_aug["result"]["value"] == {"score": 0.1}


def test_wildcard_without_sweep_is_an_error(project: Path, results: Path) -> None:
    res = run_py(project / "train.py", "--experiment", "ablation/*")
    assert res.returncode == 2 and "matches 2 experiments" in res.stderr
    assert not results.exists()


def test_bad_point_creates_nothing(project: Path, results: Path) -> None:
    res = run_py(project / "train.py", "lr=0.1,fast", "--sweep")
    assert res.returncode == 2 and "Invalid value for config key 'lr'" in res.stderr
    assert not results.exists()
