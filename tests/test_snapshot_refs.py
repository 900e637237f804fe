"""Nothing is lost on the git side: each run keeps its snapshot with its own ref, ``runlock rm``
deletes only that ref (never the shared shadow branch), and a run that meets a held
``.git/index.lock`` still records HEAD and why it has no snapshot. Real git, real stage runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git, run_py, write_script

from runlock.errors import GitError
from runlock.git.commands import run_ref
from runlock.record.lockfile import load_lock

SCRIPT = """
from dataclasses import dataclass
import runlock


@dataclass
class Config:
    lr: float = 0.1


@runlock.stage(snapshot_lock_timeout_s=0.3)
def train(cfg: Config):
    return {"lr": cfg.lr}


if __name__ == "__main__":
    runlock.main(train)
"""
BRANCH = "refs/heads/runlock/snapshots"


def _run(repo: Path, root: Path) -> dict:
    """Run the stage as a script with ``root`` as results root; the new run's lock."""
    before = set(root.glob("train/*/run.lock"))
    res = run_py(repo / "train.py", env={"RUNLOCK_RESULTS": str(root)})
    assert res.returncode == 0, res.stderr
    (new,) = set(root.glob("train/*/run.lock")) - before
    return load_lock(new.parent)


def _rm(root: Path, run_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runlock", "--root", str(root), "rm", run_id,
                           "--force"], capture_output=True, text=True, cwd=root.parent,
                          stdin=subprocess.DEVNULL, check=False)  # fmt: skip


def _has(repo: Path, rev: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", rev], cwd=repo, check=False).returncode == 0


def _ref(repo: Path, ref: str) -> str | None:
    out = subprocess.run(["git", "rev-parse", "--verify", "-q", ref], cwd=repo,
                         capture_output=True, text=True, check=False)  # fmt: skip
    return out.stdout.strip() if out.returncode == 0 else None


def _gc(repo: Path) -> None:
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "-q", "--prune=now")


@pytest.fixture
def repo(git_repo: Path) -> Path:
    write_script(git_repo / "train.py", SCRIPT)
    return git_repo


def test_each_run_keeps_its_snapshot_with_its_own_ref(repo: Path, tmp_path: Path) -> None:
    first = _run(repo, tmp_path / "a")
    again = _run(repo, tmp_path / "a")  # same tree, same HEAD: the tip is reused
    for lock in (first, again):
        snap = lock["git"]["snapshot"]
        assert snap["ref"] == f"refs/runlock/runs/{lock['id']}"
        assert _ref(repo, snap["ref"]) == snap["commit"]
        assert snap["branch"] == "runlock/snapshots"
    assert again["git"]["snapshot"]["reused"] is True
    assert again["git"]["snapshot"]["commit"] == first["git"]["snapshot"]["commit"]


def test_rm_in_one_results_root_keeps_the_other_roots_snapshots(repo: Path, tmp_path: Path
                                                                ) -> None:
    root_a, root_b = tmp_path / "a", tmp_path / "b"
    (repo / "train.py").write_text(SCRIPT + "# a\n")
    a = _run(repo, root_a)
    (repo / "train.py").write_text(SCRIPT + "# b\n")
    b = _run(repo, root_b)
    commit_a, commit_b = a["git"]["snapshot"]["commit"], b["git"]["snapshot"]["commit"]
    assert commit_a != commit_b

    res = _rm(root_a, a["id"])
    assert res.returncode == 0, res.stderr
    assert _ref(repo, f"refs/runlock/runs/{a['id']}") is None  # rm deleted the run's ref...
    assert _ref(repo, BRANCH) == commit_b  # ...and never the shared branch
    _gc(repo)
    assert _has(repo, commit_b) and _ref(repo, f"refs/runlock/runs/{b['id']}") == commit_b

    # The run's own ref alone keeps its snapshot: even without the branch (deleted by hand).
    git(repo, "update-ref", "-d", BRANCH)
    _gc(repo)
    assert _has(repo, commit_b)
    assert git(repo, "show", f"{commit_b}:train.py").endswith("# b\n")


def test_rm_leaves_a_ref_that_points_elsewhere(repo: Path, tmp_path: Path) -> None:
    """A ref re-pointed since (e.g. the run pulled again) is not the deleted copy's to drop."""
    a = _run(repo, tmp_path / "a")
    ref = a["git"]["snapshot"]["ref"]
    head = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "update-ref", ref, head)
    assert _rm(tmp_path / "a", a["id"]).returncode == 0
    assert _ref(repo, ref) == head


@pytest.mark.parametrize("bad", ["../heads/main", "main", "20261125T163012-3f9a2c\n",
                                 "20261125T163012-3f9a2c refs/heads/main"])
def test_run_ref_refuses_what_is_not_a_run_id(bad: str) -> None:
    with pytest.raises(GitError, match="not a run id"):
        run_ref(bad)


def test_held_index_lock_records_head_and_the_reason(repo: Path, tmp_path: Path) -> None:
    lock_file = repo / ".git" / "index.lock"
    lock_file.write_text("")  # another git command (or a stale lock) holds the index
    (repo / "train.py").write_text(SCRIPT + "# uncommitted\n")
    lock = _run(repo, tmp_path / "a")
    assert lock["status"] == "completed"
    section = lock["git"]
    assert section["head"] == git(repo, "rev-parse", "HEAD").strip()
    assert section["branch"] == "main"
    assert Path(section["root"]).resolve() == repo.resolve()
    assert section["skipped"] == "index locked" and section["snapshot"] is None
    assert "index.lock" in section["warning"]
    assert lock_file.exists()  # the user's lock is left alone
    assert _ref(repo, BRANCH) is None  # nothing committed without the index

    show = subprocess.run([sys.executable, "-m", "runlock", "--root", str(tmp_path / "a"), "show",
                           lock["id"]], capture_output=True, text=True, check=False)  # fmt: skip
    assert show.returncode == 0, show.stderr
    assert "index locked" in show.stdout and section["head"][:7] in show.stdout


def test_a_memoised_snapshot_still_gets_the_runs_ref(repo: Path) -> None:
    """A process snapshotting an unchanged tree again answers from its memo (no new commit) and
    still writes the new run's own ref."""
    from runlock.git import SnapshotOptions, flush_run_refs, snapshot

    first = snapshot(repo, SnapshotOptions(), message="one", run_id="20261125T163012-000001")
    again = snapshot(repo, SnapshotOptions(), message="two", run_id="20261125T163013-000002")
    flush_run_refs()  # written in batches by a background thread
    commit = first["snapshot"]["commit"]
    assert again["snapshot"]["reused"] is True and again["snapshot"]["commit"] == commit
    assert again["snapshot"]["ref"] == "refs/runlock/runs/20261125T163013-000002"
    assert _ref(repo, "refs/runlock/runs/20261125T163012-000001") == commit
    assert _ref(repo, "refs/runlock/runs/20261125T163013-000002") == commit
