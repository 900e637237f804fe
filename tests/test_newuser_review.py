"""Found by following README.md as a new user (two-stage numpy project)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import run_py, write_script

STAGE = """
from dataclasses import dataclass
import runlock

@dataclass
class Config:
    x: int = 0

@runlock.stage
def train(cfg: Config):
    runlock.log_metrics({"loss": 1.0 / (cfg.x + 1)}, step=0)
    return cfg.x

if __name__ == "__main__":
    runlock.main(train)
"""


def test_log_metrics_in_a_map_on_worker_processes_is_recorded_per_task(git_repo: Path, results: Path) -> None:
    """`--map ... --jobs 2` runs tasks in worker processes; a stage that logs metrics must not
    fail every task there (it used to raise 'called outside a running stage')."""
    script = write_script(git_repo / "train.py", STAGE)
    (git_repo / "tasks.yaml").write_text("- 0\n- 1\n- 2\n")
    out = run_py(script, "--map", "tasks.yaml", "--map-key", "x", "--jobs", "2", "-q")
    assert out.returncode == 0, out.stderr
    (run_dir,) = (results / "train").iterdir()
    for i in range(3):
        lines = (run_dir / "tasks" / f"{i:06d}" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["metrics"] for line in lines] == [{"loss": 1.0 / (i + 1)}]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RUNLOCK_REMOTE"}
    return subprocess.run([sys.executable, "-m", "runlock", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_no_remote_hint_names_the_option_remote_ls_takes(git_repo: Path, results: Path) -> None:
    """`runlock remote ls` takes --remote; the hint used to offer only --to/--from, which it refuses."""
    out = _cli("remote", "ls", cwd=git_repo)
    assert out.returncode == 2
    assert "--remote REMOTE" in out.stderr


def test_push_without_a_code_remote_points_at_no_code(git_repo: Path, results: Path, tmp_path: Path) -> None:
    """A new project has no git remote 'origin': push fails, and the hint names --no-code,
    with which the push of the run itself works."""
    script = write_script(git_repo / "train.py", STAGE)
    assert run_py(script, "-q").returncode == 0
    (run_dir,) = (results / "train").iterdir()
    store = tmp_path / "store"
    out = _cli("push", str(run_dir), "--to", str(store), cwd=git_repo)
    assert out.returncode == 1 and "--no-code" in out.stderr, out.stderr
    out = _cli("push", str(run_dir), "--to", str(store), "--no-code", cwd=git_repo)
    assert out.returncode == 0, out.stderr
    assert (store / "runs").is_dir()
