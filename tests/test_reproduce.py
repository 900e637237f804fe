"""runlock reproduce: real git project, real @runlock.stage runs, real temporary worktrees."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runlock.cli import main as cli_main
from runlock.errors import DataError, GitError, RemoteError
from runlock.hashing import hash_outputs, hash_path
from runlock.record.lockfile import dump_lock, load_lock
from runlock.store.remote import find_local_run, push
from runlock.store.reproduce import compare_outputs, package_differences, reproduce, verify_inputs

STAGE = '''
import dataclasses, random, time
from pathlib import Path
import runlock

@dataclasses.dataclass
class Cfg:
    n: int = 5
    seed: int | None = None
    save_dir: str | None = None
    stamp: bool = False

@runlock.stage
def train(cfg: Cfg) -> dict:
    vals = [round(random.random(), 12) for _ in range(cfg.n)]
    Path(cfg.save_dir, "vals.txt").write_text(repr(vals) + "\\n")
    if cfg.stamp:  # a non-deterministic output
        Path(cfg.save_dir, "when.txt").write_text(repr(time.time_ns()))
    return {"total": sum(vals)}
'''
MAIN = '''
if __name__ == "__main__":
    import sys
    train(Cfg(stamp="stamp" in sys.argv))
'''
ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@x"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, **ENV}).stdout.strip()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git project with a package stage (src/mypkg/train.py, also runnable as a script)."""
    repo = tmp_path / "proj 'q'"
    (repo / "src" / "mypkg").mkdir(parents=True)
    (repo / "src" / "mypkg" / "__init__.py").write_text("")
    (repo / "src" / "mypkg" / "train.py").write_text(STAGE + MAIN)
    (repo / "pyproject.toml").write_text('[tool.runlock]\nresults = "results"\n')
    (repo / ".gitignore").write_text("results/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "init")
    monkeypatch.chdir(repo)
    for k in ("RUNLOCK_RESULTS", "RUNLOCK_REMOTE"):
        monkeypatch.delenv(k, raising=False)
    return repo


def run_stage(repo: Path, how: str, *extra: str) -> Path:
    """Run the stage in a fresh interpreter: as a script (module __main__) or as mypkg.train."""
    env = {**os.environ, **ENV, "PYTHONPATH": str(repo / "src")}
    env.pop("RUNLOCK_RESULTS", None)
    if how == "script":
        args = [sys.executable, "src/mypkg/train.py", *extra]
    else:
        code = f"from mypkg.train import train, Cfg; train(Cfg(stamp={'stamp' in extra}))"
        args = [sys.executable, "-c", code]
    subprocess.run(args, cwd=repo, env=env, check=True, capture_output=True)
    runs = sorted((repo / "results" / "train").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    return runs[-1]


@pytest.mark.parametrize("how", ["script", "module"])
def test_reproduce_from_snapshot_matches(project: Path, how: str) -> None:
    orig = run_stage(project, how)
    lock = load_lock(orig)
    assert lock["git"]["snapshot"]["commit"]
    # the user edits the code afterwards: reproduce must run the snapshot, not this
    src = project / "src" / "mypkg" / "train.py"
    src.write_text(src.read_text().replace("random.random()", "0.5"))
    rep = reproduce(orig)
    assert rep.ok, rep
    assert rep.result_match is True
    assert {f.path: f.status for f in rep.files}["vals.txt"] == "same"
    assert rep.new_run_dir is not None and rep.new_run_dir != orig
    new = load_lock(rep.new_run_dir)
    assert new["reproduces"] == lock["id"] and new["seed"] == lock["seed"]
    assert new["status"] == "completed"
    assert not rep.notes or "imported from" not in " ".join(rep.notes)
    assert "0.5" in src.read_text()  # working tree untouched
    assert git(project, "worktree", "list").count("\n") == 0  # temporary worktree removed


def test_reproduce_reports_differing_files(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    orig = run_stage(project, "module", "stamp")
    rep = reproduce(orig)
    status = {f.path: f.status for f in rep.files}
    assert status["when.txt"] == "differs" and status["vals.txt"] == "same"
    assert rep.outputs_match is False and not rep.ok
    assert cli_main(["reproduce", str(orig)]) == 1
    out = capsys.readouterr().out
    assert "differs  when.txt" in out and "NOT REPRODUCED" in out
    assert re.search(r"outputs: (\d)/\1 files identical", out) is None


def test_changed_data_input_is_refused(project: Path) -> None:
    orig = run_stage(project, "script")
    data = project / "data.csv"
    data.write_text("a,b\n1,2\n")
    lock = load_lock(orig)
    lock["data"] = {"train_csv": hash_path(data)}
    dump_lock(lock, orig / "run.lock")
    data.write_text("a,b\n1,3\n")
    with pytest.raises(DataError, match=r"Data input 'train_csv' \(.*data\.csv\).*no longer matches"):
        reproduce(orig)


def test_check_env_lists_package_differences(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    orig = run_stage(project, "script")
    lock = load_lock(orig)
    lock["packages"] = {**lock["packages"], "pyyaml": "0.0.1", "not-installed-pkg": "1.0"}
    diffs = {d.name: d for d in package_differences(lock)}
    assert diffs["pyyaml"].recorded == "0.0.1" and diffs["pyyaml"].current
    assert diffs["not-installed-pkg"].current is None
    dump_lock(lock, orig / "run.lock")
    assert cli_main(["reproduce", str(orig), "--check-env"]) == 0
    out = capsys.readouterr().out
    assert "not-installed-pkg: 1.0 -> (not installed)" in out and "REPRODUCED" in out


def test_snapshot_not_available_anywhere(project: Path, tmp_path: Path) -> None:
    orig = run_stage(project, "script")
    lock = load_lock(orig)
    lock["git"]["snapshot"]["commit"] = "0123456789abcdef0123456789abcdef01234567"
    dump_lock(lock, orig / "run.lock")
    bare = tmp_path / "code.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    git(project, "remote", "add", "origin", str(bare))
    with pytest.raises(RemoteError, match="snapshot.*not on the code remote 'origin'"):
        reproduce(orig)
    del lock["git"]
    dump_lock(lock, orig / "run.lock")
    with pytest.raises(GitError, match="no source snapshot"):
        reproduce(orig)


@pytest.mark.rclone
def test_missing_upstream_is_pulled_before_rerun(project: Path, tmp_path: Path,
                                                 rclone_env: str) -> None:
    up = run_stage(project, "script")
    down = run_stage(project, "module")
    up_id = load_lock(up)["id"]
    lock = load_lock(down)
    lock["upstream"] = {"data": {"id": up_id, "stage": "train", "path": str(up), "status": "completed"}}
    lock["outputs"] = hash_outputs(down, exclude={"run.lock"})
    dump_lock(lock, down / "run.lock")
    ul = load_lock(up)
    ul["outputs"] = hash_outputs(up, exclude={"run.lock"})
    dump_lock(ul, up / "run.lock")
    store = tmp_path / "store"
    push(down, remote=str(store), code=False)
    shutil.rmtree(up)
    pulled = verify_inputs(find_local_run(down), root=project / "results", remote=str(store))
    assert pulled == [up_id] and (up / "vals.txt").exists()


def test_compare_outputs_table() -> None:
    rows = compare_outputs(
        {"files": {"a": "1", "b": "2", "c": "3", "run.log": "x", ".runlock/t": "y"}},
        {"files": {"a": "1", "b": "9", "d": "4", "run.log": "z"}},
    )
    assert [(r.path, r.status) for r in rows] == [
        (".runlock/t", "ignored"), ("a", "same"), ("b", "differs"), ("c", "missing"),
        ("d", "added"), ("run.log", "ignored"),
    ]



def test_result_compared_from_files_when_not_in_lock(project: Path) -> None:
    orig = run_stage(project, "script")
    lock = load_lock(orig)
    lock["result"] = {"file": "result.json"}  # e.g. a result too large to inline
    dump_lock(lock, orig / "run.lock")
    assert reproduce(orig).result_match is True
    (orig / "result.json").write_text('{"total": -1}')
    assert reproduce(orig).result_match is False
