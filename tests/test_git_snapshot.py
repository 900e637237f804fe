"""Source snapshots on the shadow branch, against the real git CLI in throwaway repositories."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import runlock
from runlock.errors import GitError
from runlock.git import SnapshotOptions, delete_snapshot_ref, snapshot, snapshot_diff

REF = "refs/heads/runlock/snapshots"


@pytest.fixture(autouse=True)
def _isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Identity from the environment, no user/system config, no discovery above tmp_path."""
    for key in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{key}_NAME", "Test User")
        monkeypatch.setenv(f"GIT_{key}_EMAIL", "test@example.invalid")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, f"git {args}: {out.stderr}"
    return out.stdout


def tree_files(cwd: Path, rev: str) -> dict[str, str]:
    """{path: blob id} of a commit or tree."""
    out = git(cwd, "ls-tree", "-r", "-z", rev)
    return {e.split("\t", 1)[1]: e.split()[2] for e in out.split("\0") if e}


def blob_id(cwd: Path, path: Path) -> str:
    return git(cwd, "hash-object", "--", str(path)).strip()


def user_state(repo: Path) -> tuple[str, bytes, str, str]:
    """What a snapshot must never change: status, index bytes, HEAD, stash."""
    status = git(repo, "status", "--porcelain=v2", "--branch", "--untracked-files=all")
    index = repo / ".git" / "index"
    index_bytes = index.read_bytes() if index.exists() else b""  # read after status refreshed it
    head = (repo / ".git" / "HEAD").read_text()
    return status, index_bytes, head, git(repo, "stash", "list")


def make_repo(root: Path, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    for rel, text in (files or {"a.txt": "a\n", "b.txt": "b\n", "src/c.py": "c = 1\n"}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def snap(path: Path, **options: Any) -> dict[str, Any]:
    return snapshot(path, SnapshotOptions(**options), message="test run")


def test_snapshot_captures_worktree_and_leaves_user_state_alone(repo: Path) -> None:
    (repo / ".gitignore").write_text("*.log\n")
    (repo / "a.txt").write_text("a changed\n")
    (repo / "b.txt").unlink()
    (repo / "new.txt").write_text("new\n")
    (repo / "debug.log").write_text("ignored\n")
    (repo / "src" / "c.py").write_text("c = 2  # staged\n")
    git(repo, "add", "src/c.py")
    (repo / "src" / "c.py").write_text("c = 3  # staged, then changed again\n")
    before = user_state(repo)

    info = snap(repo)

    assert user_state(repo) == before
    files = tree_files(repo, info["snapshot"]["commit"])
    assert set(files) == {".gitignore", "a.txt", "new.txt", "src/c.py"}
    for rel in files:
        assert files[rel] == blob_id(repo, repo / rel)  # the worktree content, not the staged one
    head = git(repo, "rev-parse", "HEAD").strip()
    assert info["head"] == info["snapshot"]["parent_head"] == head
    assert info["branch"] == "main" and info["dirty"] is True
    assert info["snapshot"]["ref"] == REF and info["snapshot"]["branch"] == "runlock/snapshots"
    assert info["diffstat"].startswith("5 files changed")
    assert info["skipped_large"] == []
    assert git(repo, "rev-parse", REF).strip() == info["snapshot"]["commit"]
    message = git(repo, "log", "-1", "--format=%B", REF)
    assert "Runlock-Snapshot: 1" in message and f"Runlock-Head: {head}" in message
    assert git(repo, "fsck", "--strict").strip() == ""
    # one command shows the run's uncommitted changes against the HEAD it ran on
    assert snapshot_diff(repo, head, info["snapshot"]["commit"]) == {
        "added": [".gitignore", "new.txt"],
        "modified": ["a.txt", "src/c.py"],
        "deleted": ["b.txt"],
    }
    patch = snapshot_diff(repo, head, info["snapshot"]["commit"], patch=True)
    assert isinstance(patch, str) and "+a changed" in patch


def test_snapshots_survive_gc_and_chain(repo: Path) -> None:
    (repo / "new.txt").write_text("v1\n")
    first = snap(repo)["snapshot"]
    (repo / "new.txt").write_text("v2\n")
    second = snap(repo)["snapshot"]
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "-q", "--prune=now")
    for obj in (first["commit"], second["commit"], first["tree"], second["tree"]):
        git(repo, "cat-file", "-e", obj)
    assert git(repo, "cat-file", "-p", f"{first['commit']}:new.txt") == "v1\n"
    parents = git(repo, "rev-parse", f"{second['commit']}^@").split()
    assert parents == [first["commit"], second["parent_head"]]  # chain first, HEAD second
    chain = git(repo, "rev-list", "--first-parent", "--grep=^Runlock-Snapshot: 1", REF).split()
    assert chain == [second["commit"], first["commit"]]
    assert git(repo, "fsck", "--strict").strip() == ""


def test_identical_tree_on_same_head_reuses_the_tip(repo: Path) -> None:
    (repo / "a.txt").write_text("changed\n")
    first = snap(repo)["snapshot"]
    again = snap(repo)["snapshot"]
    assert again["commit"] == first["commit"] and again["reused"] is True
    git(repo, "commit", "-q", "-am", "commit the change")  # same tree, new HEAD: new snapshot
    third = snap(repo)
    assert third["snapshot"]["commit"] != first["commit"] and third["dirty"] is False
    assert third["diffstat"] == ""


def test_results_dir_excluded_even_when_not_ignored(repo: Path, tmp_path: Path) -> None:
    (repo / "results" / "run1").mkdir(parents=True)
    (repo / "results" / "run1" / "model.bin").write_text("weights")
    (repo / "code.py").write_text("x = 1\n")
    outside = tmp_path / "elsewhere"
    info = snap(repo, exclude_dirs=(repo / "results", outside))
    files = tree_files(repo, info["snapshot"]["commit"])
    assert "code.py" in files
    assert not any(p.startswith("results/") for p in files)


def test_oversize_files_skipped_with_warning(repo: Path, caplog: pytest.LogCaptureFixture) -> None:
    (repo / "big.bin").write_bytes(b"x" * 200)
    (repo / "a.txt").write_text("y" * 200)  # tracked file grown past the limit
    (repo / "small.txt").write_text("small\n")
    head_files = tree_files(repo, "HEAD")
    with caplog.at_level(logging.WARNING, logger="runlock"):
        info = snap(repo, max_file_bytes=100)
    assert info["skipped_large"] == ["a.txt", "big.bin"]
    files = tree_files(repo, info["snapshot"]["commit"])
    assert "big.bin" not in files and "small.txt" in files
    assert files["a.txt"] == head_files["a.txt"]  # keeps the committed version
    big = blob_id(repo, repo / "big.bin")
    never_hashed = subprocess.run(["git", "cat-file", "-e", big], cwd=repo, check=False)
    assert never_hashed.returncode != 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "big.bin" in warnings[0] and "a.txt" in warnings[0]


def test_include_and_exclude_globs(repo: Path) -> None:
    for rel in ("notes.txt", "src/deep/m.py", "top.py", "data/x.py", "src/gen.tmp.py"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(rel)
    (repo / "a.txt").write_text("modified but not included\n")
    info = snap(repo, include=("*.py",), exclude=("data", "*.tmp.py"))
    files = tree_files(repo, info["snapshot"]["commit"])
    assert {"src/deep/m.py", "top.py"} <= set(files)
    assert not {"notes.txt", "data/x.py", "src/gen.tmp.py"} & set(files)
    assert files["a.txt"] == tree_files(repo, "HEAD")["a.txt"]
    anchored = snap(repo, include=("src/*.py",), branch="runlock/anchored")
    files = tree_files(repo, anchored["snapshot"]["commit"])
    assert "src/gen.tmp.py" in files and "src/deep/m.py" not in files and "top.py" not in files


def test_repo_without_commits(tmp_path: Path) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text("print('hi')\n")
    assert not (repo / ".git" / "index").exists()
    before = user_state(repo)
    info = snap(repo)
    assert user_state(repo) == before
    assert info["head"] is None and info["branch"] == "main" and info["dirty"] is True
    assert set(tree_files(repo, info["snapshot"]["commit"])) == {"train.py"}
    assert git(repo, "rev-parse", f"{info['snapshot']['commit']}^@").strip() == ""
    (repo / "staged.py").write_text("x = 1\n")
    git(repo, "add", "staged.py")  # now an index exists, still no commit
    info2 = snap(repo)
    assert set(tree_files(repo, info2["snapshot"]["commit"])) == {"train.py", "staged.py"}
    assert "2 files changed" in info2["diffstat"]


def test_merge_conflict_in_progress(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "other")
    (repo / "a.txt").write_text("other\n")
    git(repo, "commit", "-q", "-am", "other")
    git(repo, "checkout", "-q", "main")
    (repo / "a.txt").write_text("main\n")
    git(repo, "commit", "-q", "-am", "main")
    subprocess.run(["git", "merge", "-q", "other"], cwd=repo, capture_output=True, check=False)
    before = user_state(repo)
    info = snap(repo)
    assert user_state(repo) == before  # still mid-merge, conflict markers untouched
    content = git(repo, "cat-file", "-p", f"{info['snapshot']['commit']}:a.txt")
    assert "<<<<<<<" in content


def test_detached_head(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    (repo / "a.txt").write_text("detached edit\n")
    before = user_state(repo)
    info = snap(repo)
    assert user_state(repo) == before
    assert info["branch"] is None
    assert info["head"] == git(repo, "rev-parse", "HEAD").strip()
    assert git(repo, "cat-file", "-p", f"{info['snapshot']['commit']}:a.txt") == "detached edit\n"


def test_linked_worktree(repo: Path, tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(wt))
    (wt / "a.txt").write_text("in the worktree\n")
    (wt / "wt_only.txt").write_text("untracked\n")
    main_before, wt_before = user_state(repo), git(wt, "status", "--porcelain=v2", "--branch")
    info = snap(wt / "src")
    assert user_state(repo) == main_before
    assert git(wt, "status", "--porcelain=v2", "--branch") == wt_before
    assert info["root"] == str(wt) and info["branch"] == "feature"
    files = tree_files(repo, REF)  # the shadow branch is shared with the main worktree
    assert "wt_only.txt" in files and files["a.txt"] == blob_id(wt, wt / "a.txt")


def test_submodule_snapshots_its_own_repository(tmp_path: Path) -> None:
    lib = make_repo(tmp_path / "lib", {"lib.py": "v = 1\n"})
    sup = make_repo(tmp_path / "super", {"main.py": "import lib\n"})
    git(sup, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(sup, "commit", "-q", "-m", "add submodule")
    sub = sup / "lib"
    (sub / "lib.py").write_text("v = 2\n")
    info = snap(sub / "lib.py")
    assert info["root"] == str(sub)
    assert git(sub, "cat-file", "-p", f"{REF}:lib.py") == "v = 2\n"
    missing = subprocess.run(["git", "rev-parse", "-q", "--verify", REF], cwd=sup, check=False)
    assert missing.returncode != 0  # the superproject is untouched
    sup_info = snap(sup)  # the superproject records the submodule as its checked-out commit
    gitlink = git(sup, "ls-tree", sup_info["snapshot"]["commit"], "lib").split()
    assert gitlink[1] == "commit" and gitlink[2] == git(sub, "rev-parse", "HEAD").strip()


def test_spaces_and_non_ascii_paths(repo: Path) -> None:
    odd = repo / "dir with space" / "fïlé ü.txt"
    odd.parent.mkdir()
    odd.write_text("odd\n")
    (repo / "日本語.py").write_text("x = '日本'\n")
    git(repo, "add", "日本語.py")
    git(repo, "commit", "-q", "-m", "unicode")
    (repo / "日本語.py").write_text("x = '変更'\n")
    outside = repo.parent / "outside.txt"
    info = snap(repo, files_of_interest=("日本語.py", str(odd), "missing.txt", str(outside)))
    files = tree_files(repo, info["snapshot"]["commit"])
    assert files["dir with space/fïlé ü.txt"] == blob_id(repo, odd)
    assert info["files_of_interest"] == {
        "../outside.txt": None,
        "dir with space/fïlé ü.txt": blob_id(repo, odd),
        "missing.txt": None,
        "日本語.py": blob_id(repo, repo / "日本語.py"),
    }


def test_index_lock_is_waited_for_then_reported(repo: Path) -> None:
    lock = repo / ".git" / "index.lock"
    lock.write_text("")
    remover = threading.Timer(0.3, lock.unlink)
    remover.start()
    start = time.monotonic()
    snap(repo, lock_timeout_s=5)
    assert time.monotonic() - start >= 0.25
    remover.join()
    lock.write_text("")
    info = snap(repo, lock_timeout_s=0.2)  # HEAD and the reason instead of a snapshot
    assert info["snapshot"] is None and info["skipped"] == "index locked"
    assert info["head"] == git(repo, "rev-parse", "HEAD").strip()
    assert str(lock) in info["warning"] and "remove" in info["warning"]
    assert lock.exists()  # never removed by runlock


def test_stale_shadow_ref_lock_is_reported(repo: Path) -> None:
    snap(repo)
    lock = repo / ".git" / "refs" / "heads" / "runlock" / "snapshots.lock"
    lock.write_text("")
    (repo / "a.txt").write_text("changed\n")
    with pytest.raises(GitError) as err:
        snap(repo, lock_timeout_s=0.2)
    assert "snapshots.lock" in str(err.value) and "stale" in str(err.value)


CHILD = """
import sys
from pathlib import Path
from runlock.git import SnapshotOptions, snapshot
i = int(sys.argv[2])
info = snapshot(Path(sys.argv[1]), SnapshotOptions(exclude=(f"f{i}.txt",)), message=f"run {i}")
print(info["snapshot"]["commit"])
"""


def test_twenty_concurrent_processes(repo: Path) -> None:
    n = 20
    for i in range(n):
        (repo / f"f{i}.txt").write_text(f"{i}\n")
    env = dict(os.environ, PYTHONPATH=str(Path(runlock.__file__).parents[1]))
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, str(repo), str(i)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(n)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    commits = {out.strip() for out, _ in results}
    assert len(commits) == n  # each process excluded a different file: 20 different trees
    chain = set(git(repo, "rev-list", "--first-parent", REF).split())
    assert commits <= chain  # no snapshot lost to a race
    # Commits of lost races are left dangling (unreachable, pruned by gc); nothing is broken.
    assert git(repo, "fsck", "--strict", "--no-dangling").strip() == ""


def test_collision_with_a_user_branch(repo: Path) -> None:
    git(repo, "branch", "runlock/snapshots")
    tip = git(repo, "rev-parse", REF)
    with pytest.raises(GitError) as err:
        snap(repo)
    assert "runlock/snapshots" in str(err.value) and "SnapshotOptions.branch" in str(err.value)
    assert git(repo, "rev-parse", REF) == tip
    with pytest.raises(GitError):
        delete_snapshot_ref(repo)  # never deletes a user's branch
    info = snap(repo, branch="runlock/mine")
    assert info["snapshot"]["ref"] == "refs/heads/runlock/mine"


def test_checked_out_shadow_branch_is_refused(repo: Path) -> None:
    snap(repo)
    git(repo, "checkout", "-q", "runlock/snapshots")
    with pytest.raises(GitError, match="checked out"):
        snap(repo)


def test_outside_a_repository(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with caplog.at_level(logging.WARNING, logger="runlock"):
        assert snap(plain) == {"repo": None, "skipped": "not a git repository"}
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_remote_credentials_are_redacted(repo: Path) -> None:
    git(repo, "remote", "add", "origin", "https://alice:s3cret@example.com/x.git")
    info = snap(repo)
    assert info["remotes"] == {"origin": "https://alice:***@example.com/x.git"}


def test_delete_snapshot_ref(repo: Path) -> None:
    assert delete_snapshot_ref(repo) is False
    snap(repo)
    assert delete_snapshot_ref(repo) is True
    gone = subprocess.run(["git", "rev-parse", "-q", "--verify", REF], cwd=repo, check=False)
    assert gone.returncode != 0


def test_in_process_memo_reuses_only_an_unchanged_worktree(repo: Path) -> None:
    """A process running stages repeatedly skips git while nothing changed, never after a change."""
    (repo / "sub").mkdir()
    (repo / "sub" / "m.py").write_text("x = 1\n")
    time.sleep(1.2)  # older than the racy-timestamp margin
    first = snap(repo)
    again = snap(repo)
    assert again["snapshot"]["commit"] == first["snapshot"]["commit"] and again["snapshot"]["reused"]

    # a same-size edit with the old mtime put back must still be seen (ctime moves)
    st = (repo / "sub" / "m.py").stat()
    (repo / "sub" / "m.py").write_text("x = 2\n")
    os.utime(repo / "sub" / "m.py", ns=(st.st_atime_ns, st.st_mtime_ns))
    edited = snap(repo)
    assert edited["snapshot"]["tree"] != first["snapshot"]["tree"]

    time.sleep(1.2)
    assert snap(repo)["snapshot"]["tree"] == edited["snapshot"]["tree"]
    (repo / "sub" / "deeper").mkdir()
    (repo / "sub" / "deeper" / "new.py").write_text("y = 1\n")  # untracked, in a new directory
    added = snap(repo)
    assert added["snapshot"]["tree"] != edited["snapshot"]["tree"]
    listing = subprocess.run(["git", "ls-tree", "-r", "--name-only", added["snapshot"]["commit"]],
                             cwd=repo, capture_output=True, text=True, check=True).stdout.split()
    assert "sub/deeper/new.py" in listing


def test_file_replaced_by_directory_and_back(repo: Path) -> None:
    """A tracked file that became a directory (and the reverse) is snapshotted as the worktree
    has it; the user's index is left alone."""
    before = user_state(repo)
    (repo / "a.txt").unlink()
    (repo / "a.txt").mkdir()
    (repo / "a.txt" / "inner.txt").write_text("now a directory\n")
    files = tree_files(repo, snap(repo)["snapshot"]["commit"])
    assert "a.txt/inner.txt" in files and "a.txt" not in files

    os.remove(repo / "src" / "c.py")
    (repo / "src").rmdir()
    (repo / "src").write_text("now a file\n")
    files = tree_files(repo, snap(repo)["snapshot"]["commit"])
    assert files["src"] == blob_id(repo, repo / "src") and "src/c.py" not in files
    assert (repo / ".git" / "index").read_bytes() == before[1]


def test_memo_after_a_deletion(repo: Path) -> None:
    """A file deleted before a snapshot that stays deleted keeps the memo; restoring it does not."""
    (repo / "b.txt").unlink()
    time.sleep(1.2)
    first = snap(repo)
    assert "b.txt" not in tree_files(repo, first["snapshot"]["commit"])
    assert snap(repo)["snapshot"]["reused"]
    (repo / "b.txt").write_text("b\n")
    assert "b.txt" in tree_files(repo, snap(repo)["snapshot"]["commit"])


def test_repository_found_again_when_a_nested_one_appears(repo: Path) -> None:
    """The process remembers where the repository is, but not past a `git init` below it."""
    sub = repo / "sub"
    sub.mkdir()
    (sub / "m.py").write_text("x = 1\n")
    assert snap(sub)["root"] == str(repo)
    make_repo(sub, {"n.py": "n = 1\n"})
    assert snap(sub)["root"] == str(sub)


def test_memo_watches_the_worktree_after_its_first_full_check(repo: Path) -> None:
    """Reuse after reuse, a change is still seen: an edit, a new file, a rename, a chmod."""
    from runlock.git import memo as git_memo
    from runlock.git import watch

    (repo / "sub").mkdir()
    (repo / "sub" / "m.py").write_text("x = 1\n")
    time.sleep(1.2)  # older than the racy-timestamp margin
    base = snap(repo)["snapshot"]["tree"]
    edits = [
        lambda: (repo / "sub" / "m.py").write_text("x = 2\n"),
        lambda: (repo / "sub" / "new.py").write_text("n = 1\n"),
        lambda: (repo / "sub" / "new.py").rename(repo / "sub" / "renamed.py"),
        lambda: (repo / "a.txt").chmod(0o755),
    ]
    for edit in edits:
        assert snap(repo)["snapshot"]["reused"]  # first full check, then the watch
        assert snap(repo)["snapshot"]["reused"]
        (memo,) = [m for m in git_memo.MEMO.values() if m.repo.root == repo]
        if sys.platform == "linux" and watch.filesystem_type(str(repo)) in watch._LOCAL_FS:  # noqa: SLF001
            assert memo.watch is not None
        edit()
        changed = snap(repo)
        assert not changed["snapshot"]["reused"] and changed["snapshot"]["tree"] != base
        base = changed["snapshot"]["tree"]
        time.sleep(1.2)


def test_diffstat_is_git_diff_shortstat_of_head_and_snapshot(repo: Path) -> None:
    """The diffstat (taken from the index while the tree is written) is what `git diff
    --shortstat HEAD <snapshot>` prints: renames, deletions and new files included."""
    (repo / "a.txt").write_text("a\nmore\n")
    (repo / "b.txt").rename(repo / "b_renamed.txt")
    (repo / "src" / "c.py").unlink()
    (repo / "new.txt").write_text("new\n")
    info = snap(repo)
    expected = git(repo, "diff", "--shortstat", "HEAD", info["snapshot"]["commit"]).strip()
    assert info["diffstat"] == expected and "4 files changed" in expected
    assert not list((repo / ".git").glob("runlock-index-*"))  # no temporary index left behind


def test_deleting_the_branch_drops_private_indexes(repo: Path) -> None:
    """After the branch is deleted and gc'd, no snapshot may reuse blobs only it kept alive."""
    (repo / "a.txt").write_text("only in the first snapshot\n")
    first = snap(repo)
    assert list((repo / ".git" / "runlock").glob("index*"))  # the private index kept
    assert delete_snapshot_ref(repo) is True
    assert not list((repo / ".git" / "runlock").glob("index*"))
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "-q", "--prune=now")
    again = snap(repo)  # a.txt unchanged since: its blob must be written again
    assert again["snapshot"]["tree"] == first["snapshot"]["tree"]
    git(repo, "fsck", "--strict", "--no-progress")


def _commit_field(repo: Path, commit: str, field: str) -> str:
    line = next(x for x in git(repo, "cat-file", "-p", commit).splitlines()
                if x.startswith(field + " "))
    return line.split(" ", 1)[1].rsplit(" ", 2)[0]  # without the timestamp and zone


def test_commit_identity_from_config(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AUTHOR", "COMMITTER"):
        for part in ("NAME", "EMAIL"):
            monkeypatch.delenv(f"GIT_{key}_{part}")
    git(repo, "config", "user.name", "Ada Lovelace")
    git(repo, "config", "user.email", "ada@example.invalid")
    monkeypatch.setenv("GIT_AUTHOR_DATE", "@1700000000 +0100")
    commit = snap(repo)["snapshot"]["commit"]
    assert _commit_field(repo, commit, "author") == "Ada Lovelace <ada@example.invalid>"
    assert _commit_field(repo, commit, "committer") == "Ada Lovelace <ada@example.invalid>"
    author = next(x for x in git(repo, "cat-file", "-p", commit).splitlines()
                  if x.startswith("author "))
    assert author.endswith(" 1700000000 +0100")  # git's own date handling, via git var
    git(repo, "fsck", "--strict", "--no-progress")


def test_commit_identity_falls_back_when_unconfigured(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No user.name/email: a neutral identity (never a guess from the host name); a name or
    address given in the environment still wins."""
    for key in ("AUTHOR", "COMMITTER"):
        for part in ("NAME", "EMAIL"):
            monkeypatch.delenv(f"GIT_{key}_{part}")
    monkeypatch.delenv("EMAIL", raising=False)
    commit = snap(repo)["snapshot"]["commit"]
    assert _commit_field(repo, commit, "author") == "runlock <runlock@localhost>"
    assert _commit_field(repo, commit, "committer") == "runlock <runlock@localhost>"
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Grace <Hopper>")
    (repo / "a.txt").write_text("changed\n")
    commit = snap(repo)["snapshot"]["commit"]
    assert _commit_field(repo, commit, "author") == "Grace Hopper <runlock@localhost>"
    assert _commit_field(repo, commit, "committer") == "runlock <runlock@localhost>"
    git(repo, "fsck", "--strict", "--no-progress")


def test_branch_deleted_behind_runlocks_back(repo: Path) -> None:
    """`git branch -D` and gc leave the private index naming pruned blobs: the snapshot notices
    (write-tree checks every object), starts again from the user's index, and stays valid."""
    (repo / "a.txt").write_text("only in the first snapshot\n")
    first = snap(repo)
    git(repo, "branch", "-D", "runlock/snapshots")
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "-q", "--prune=now")
    again = snap(repo)
    assert again["snapshot"]["tree"] == first["snapshot"]["tree"]
    assert git(repo, "cat-file", "-p", f"{again['snapshot']['commit']}:a.txt") == (
        "only in the first snapshot\n")
    git(repo, "fsck", "--strict", "--no-progress")


def test_identity_without_git_var_idents(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should a git version list no GIT_*_IDENT, the neutral identity and the clock stand in."""
    from runlock.git.shadow import _idents

    for key in ("AUTHOR", "COMMITTER"):
        for part in ("NAME", "EMAIL"):
            monkeypatch.delenv(f"GIT_{key}_{part}")
    before = int(time.time())
    author, committer = _idents({"user.name": ["Ada"], "user.email": ["ada@example.invalid"]})
    who, stamp, zone = author.rsplit(" ", 2)
    assert who == "runlock <runlock@localhost>" and zone == "+0000"
    assert before <= int(stamp) <= time.time() + 1
    assert committer.rsplit(" ", 2)[0] == "runlock <runlock@localhost>"


def test_temporary_indexes_of_killed_snapshots_are_swept(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot killed mid-way leaves its temporary index in .git: a later snapshot removes
    it once it is an hour old, and never a recent one (another process may be using it)."""
    from runlock.git import tree

    git_dir = repo / ".git"
    leftovers = [git_dir / "runlock-index-4242-0123456789ab",
                 git_dir / "runlock-index-4242-0123456789ab.stat",
                 git_dir / "runlock-index-4242-0123456789ab.lock"]
    for path in leftovers:
        path.write_bytes(b"DIRC")
    snap(repo)
    assert all(p.exists() for p in leftovers)  # recent: kept
    monkeypatch.setattr(tree, "_STALE_S", -60.0)  # as if an hour had passed
    (repo / "a.txt").write_text("again\n")
    snap(repo)
    assert not any(p.exists() for p in leftovers)
    assert (git_dir / "index").exists() and not list(git_dir.glob("runlock-index-*"))
