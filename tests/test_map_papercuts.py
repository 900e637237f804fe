"""Task maps from the command line without papercuts (issue 13): a resume with another config or
source is refused and touches nothing, Ctrl-C prints one resume line, a failed map's hint is the
CLI command, ``runlock show`` tells a map's progress, the worker pool is an option."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import git, run_py, write_script

from runlock.record.lockfile import load_lock

SCRIPT = """
import os, pathlib, time
from dataclasses import dataclass
import runlock

@dataclass
class Config:
    item: int = 0
    scale: float = 1.0
    seed: int | None = None

@runlock.stage
def work(cfg: Config) -> float:
    if str(cfg.item) == os.environ.get("FAIL_ITEM"):
        raise ValueError(f"item {cfg.item} is bad")
    block = os.environ.get("BLOCK_ITEM")
    if block is not None and str(cfg.item) == block:
        pathlib.Path(os.environ["MARKER"]).write_text("started")
        time.sleep(120)  # until Ctrl-C
    return cfg.item * cfg.scale

if __name__ == "__main__":
    runlock.main(work)
"""


@pytest.fixture
def project(git_repo: Path, results: Path) -> Path:
    write_script(git_repo / "work.py", SCRIPT)
    (git_repo / "tasks.yaml").write_text("- 0\n- 1\n- 2\n- 3\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "stage")
    return git_repo


def _map_dir(results: Path) -> Path:
    (run_dir,) = (results / "work").iterdir()
    return run_dir


def _map(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_py(project / "work.py", "--map", "tasks.yaml", "--map-key", "item", "-q", *args, env=env)


def test_resume_with_other_config_is_refused_and_the_run_stays_completed(project: Path, results: Path) -> None:
    first = _map(project, "scale=2")
    assert first.returncode == 0, first.stderr
    run_dir = _map_dir(results)
    before = (run_dir / "run.lock").read_bytes()
    again = _map(project, "scale=3", "--resume", str(run_dir))
    assert again.returncode == 2, again.stderr
    assert "scale: 2.0 in the run, 3.0 now" in again.stderr
    assert (run_dir / "run.lock").read_bytes() == before  # not flipped to failed, not rewritten
    assert load_lock(run_dir)["status"] == "completed"
    # the same config resumes (nothing left to do) and keeps the drawn seed
    same = _map(project, "scale=2", "--resume", str(run_dir))
    assert same.returncode == 0, same.stderr
    assert load_lock(run_dir)["seed"] == load_lock_seed(before)


def load_lock_seed(text: bytes) -> object:
    from runlock import _yaml

    return _yaml.load(text.decode())["seed"]


def test_resume_with_changed_source_or_tasks_is_refused(project: Path, results: Path) -> None:
    assert _map(project).returncode == 0
    run_dir = _map_dir(results)
    before = (run_dir / "run.lock").read_bytes()
    (project / "tasks.yaml").write_text("- 0\n- 1\n- 2\n- 3\n- 4\n")
    other_tasks = _map(project, "--resume", str(run_dir))
    assert other_tasks.returncode == 2 and "different task list" in other_tasks.stderr
    assert (run_dir / "run.lock").read_bytes() == before  # refused before the run was reopened
    (project / "tasks.yaml").write_text("- 0\n- 1\n- 2\n- 3\n")
    with (project / "work.py").open("a") as f:
        f.write("# an edit after the run\n")
    edited = _map(project, "--resume", str(run_dir))
    assert edited.returncode == 2, edited.stderr
    assert "source changed" in edited.stderr
    assert (run_dir / "run.lock").read_bytes() == before


def test_resume_of_a_missing_dir_exits_2(project: Path, results: Path) -> None:
    res = _map(project, "--resume", str(project / "nonexistent"))
    assert res.returncode == 2 and "nonexistent" in res.stderr
    assert not (results / "work").exists()


def test_failed_map_hint_is_the_cli_command_and_it_resumes(project: Path, results: Path) -> None:
    failed = _map(project, "scale=2", env={"FAIL_ITEM": "2"})
    assert failed.returncode == 1
    run_dir = _map_dir(results)
    (hint,) = [line for line in failed.stderr.splitlines() if "resume" in line]
    assert "hint: retry them with: " in hint and "resume=" not in hint  # not the library's spelling
    command = shlex.split(hint.split("with: ", 1)[1])
    assert command[-2:] == ["--resume", str(run_dir)] and "scale=2" in command
    assert load_lock(run_dir)["tasks"]["failed"] == 1
    again = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    lock = load_lock(run_dir)
    assert lock["status"] == "completed" and lock["tasks"]["done"] == 4 and len(lock["resumed"]) == 1


def test_ctrl_c_prints_one_resume_line_and_records_progress(project: Path, results: Path, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    env = dict(os.environ, BLOCK_ITEM="2", MARKER=str(marker))
    proc = subprocess.Popen(
        [sys.executable, "work.py", "--map", "tasks.yaml", "--map-key", "item"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        for _ in range(1200):  # wait for the blocking task (no timing assert: just a bound)
            if marker.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert marker.exists()
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    run_dir = _map_dir(results)
    resume_lines = [line for line in err.splitlines() if "--resume" in line]
    assert len(resume_lines) == 1
    assert resume_lines[0].endswith(f"--resume {run_dir}")
    lock = load_lock(run_dir)
    assert lock["status"] == "interrupted"
    assert lock["tasks"]["done"] == 2 and lock["tasks"]["total"] == 4
    # the printed command finishes the map
    resumed = subprocess.run(shlex.split(resume_lines[0].split("with: ", 1)[1]), cwd=project,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert load_lock(run_dir)["status"] == "completed"


def test_show_of_a_map_run_tells_tasks_key_and_launches(project: Path, results: Path) -> None:
    assert _map(project, env={"FAIL_ITEM": "1"}).returncode == 1
    run_dir = _map_dir(results)
    assert _map(project, "--resume", str(run_dir)).returncode == 0
    shown = subprocess.run([sys.executable, "-m", "runlock", "show", str(run_dir)], cwd=project,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "map" in text and "item" in text
    assert "4 done, 0 failed, 0 todo" in text
    assert "launches" in text and "2:" in text


def test_worker_pool_and_chunk_size_from_the_cli(project: Path, results: Path) -> None:
    pool = _map(project, "--worker-pool", "--jobs", "2", "--backend", "joblib")
    assert pool.returncode == 0, pool.stderr
    lock = load_lock(_map_dir(results))
    assert lock["map"]["worker_pool"] is True and lock["tasks"]["done"] == 4
    bad = _map(project, "--chunk-size", "0")
    assert bad.returncode == 2 and "--chunk-size" in bad.stderr
    chunks = _map(project, "--chunk-size", "3")
    assert chunks.returncode == 0, chunks.stderr
    newest = max((results / "work").iterdir())
    assert load_lock(newest)["map"]["chunk_size"] == 3


def test_demo_shows_a_resumed_map_and_an_interactive_run_with_arguments(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    if not Path(sys.executable).with_name("ipython").exists():
        pytest.skip("IPython is not installed (pip install -e '.[demo]')")
    demo = Path(__file__).parents[1] / "examples" / "demo.py"
    env = {k: v for k, v in os.environ.items() if k != "RUNLOCK_RESULTS"}
    res = subprocess.run([sys.executable, str(demo), str(tmp_path / "demo")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert "--map sizes.yaml --map-key test_size -q --resume " in out  # the resume ran
    assert "4/4 tasks done, 0 failed" in out
    assert "%run train.py C=0.5 seed=1" in out
    assert "acc=" in out and "(a local of the stage, now in the namespace)" in out


@pytest.mark.slurm
def test_worker_pool_on_slurm_from_the_cli(slurm_cluster: Any, project: Path, results: Path) -> None:
    folder = slurm_cluster.shared_dir / "cli pool"
    res = _map(project, "--backend", "slurm", "--jobs", "2", "--worker-pool",
               "--slurm", "timeout_min=5", "--slurm", f"folder={folder}",
               *(["--slurm", f"partition={slurm_cluster.partition}"] if slurm_cluster.partition else []))
    assert res.returncode == 0, res.stderr
    lock = load_lock(_map_dir(results))
    assert lock["map"]["backend"] == "slurm" and lock["map"]["worker_pool"] is True
    assert lock["tasks"]["done"] == 4
