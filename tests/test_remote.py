"""push / pull / remote ls / remote rm with real rclone (local path and SFTP remotes) and a real
bare git repository as the code remote."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from runlock.cli import main as cli_main
from runlock.errors import DataError, LineageError, RemoteError, RunNotFoundError
from runlock.hashing import hash_outputs
from runlock.record.lockfile import dump_lock, load_lock
from runlock.store import rclone
from runlock.store.remote import (
    REF_PREFIX,
    list_remote,
    pull,
    push,
    read_index,
    remove_remote,
)

pytestmark = [pytest.mark.rclone, pytest.mark.usefixtures("rclone_env")]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True,
        env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
             "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"},
    ).stdout.strip()


@pytest.fixture
def project(tmp_path: Path, code_remote: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git project (awkward name) whose `origin` is the bare code remote; cwd = project."""
    repo = tmp_path / "my project 'x'"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text("print('v1')\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "v1")
    git(repo, "remote", "add", "origin", str(code_remote))
    monkeypatch.chdir(repo)
    monkeypatch.delenv("RUNLOCK_REMOTE", raising=False)
    monkeypatch.delenv("RUNLOCK_RESULTS", raising=False)
    return repo


def snapshot(repo: Path, content: str) -> str:
    """A commit on a side ref standing in for runlock's shadow-branch snapshot."""
    (repo / "train.py").write_text(content)
    blob = git(repo, "hash-object", "-w", "train.py")
    tree = subprocess.run(["git", "mktree"], cwd=repo, input=f"100644 blob {blob}\ttrain.py\n",
                          capture_output=True, text=True, check=True).stdout.strip()
    commit = git(repo, "commit-tree", tree, "-m", f"snapshot {content[:10]}")
    git(repo, "update-ref", f"refs/test/{commit}", commit)
    git(repo, "checkout", "-q", "--", "train.py")
    return commit


def make_run(
    root: Path, stage: str, rid: str, *, files: dict[str, str] | None = None,
    upstream: dict[str, Any] | None = None, repo: Path | None = None, commit: str | None = None,
    status: str = "completed", start: str = "2026-11-25T10:00:00+00:00",
) -> Path:
    d = root / stage / f"2026-11-25 {rid[-6:]}"
    d.mkdir(parents=True)
    for rel, text in (files or {"model.txt": f"model of {rid}\n"}).items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    lock: dict[str, Any] = {
        "schema": 1, "id": rid, "stage": stage, "status": status, "run_dir": str(d),
        "timing": {"start": start, "end": start, "duration_s": 1.0},
        "config": {"lr": 0.1}, "seed": 1,
        "git": ({"root": str(repo), "head": commit, "dirty": True, "snapshot": {"commit": commit}}
                if repo else None),
        "upstream": upstream or {},
        "outputs": hash_outputs(d, exclude={"run.lock"}),
    }
    dump_lock(lock, d / "run.lock")
    return d


def up(rid: str, d: Path, stage: str) -> dict[str, Any]:
    return {"id": rid, "stage": stage, "path": str(d), "status": "completed", "outputs_match": True}


A, B, C = "20261125T100000-aaaaaa", "20261125T110000-bbbbbb", "20261125T120000-cccccc"


@pytest.fixture
def lineage(project: Path) -> dict[str, Any]:
    """prep(A) -> train(B) -> eval(C), C also reads A directly (A is pushed once)."""
    root = project / "results"
    ca, cb = snapshot(project, "print('a')\n"), snapshot(project, "print('b')\n")
    da = make_run(root, "prep", A, files={"data/x.csv": "1,2\n", "data/y.csv": "3,4\n"},
                  repo=project, commit=ca)
    db = make_run(root, "train", B, upstream={"data": up(A, da, "prep")}, repo=project, commit=cb)
    dc = make_run(root, "eval", C, upstream={"model": up(B, db, "train"), "data": up(A, da, "prep")},
                  repo=project, commit=cb, status="failed", start="2026-11-25T12:00:00+00:00")
    return {"root": root, "dirs": {A: da, B: db, C: dc}, "commits": {A: ca, B: cb, C: cb}}


def fresh_clone(code_remote: Path, tmp_path: Path) -> Path:
    other = tmp_path / "other machine"
    subprocess.run(["git", "clone", "-q", str(code_remote), str(other)], check=True)
    return other


# ----------------------------------------------------------------------------- push + pull


def test_push_pull_roundtrip_local_store_copy(lineage: dict[str, Any], tmp_path: Path,
                                              code_remote: Path) -> None:
    store = tmp_path / "store dir"
    report = push(C, remote=str(store), root=lineage["root"])
    assert [m.id for m in report.runs] == [C, B, A]  # each once, lineage order
    assert sorted(report.code_refs) == sorted(REF_PREFIX + r for r in (A, B, C))
    assert (store / "runs" / A / "data" / "x.csv").read_text() == "1,2\n"
    # code remote: snapshot refs, the user's branches untouched
    refs = git(code_remote, "for-each-ref", "--format=%(refname) %(objectname)")
    assert f"{REF_PREFIX}{A} {lineage['commits'][A]}" in refs
    assert "refs/heads/" not in refs

    other = fresh_clone(code_remote, tmp_path)
    new_root = other / "results"
    got = pull(C, remote=str(store), root=new_root, copy=True, repo=other)
    assert {m.id: m.action for m in got.runs} == {C: "copied", B: "copied", A: "copied"}
    for rid, d in lineage["dirs"].items():
        pulled = new_root / d.relative_to(lineage["root"])  # same relative path
        assert not pulled.is_symlink()
        assert load_lock(pulled)["id"] == rid
        assert rclone.check(d, pulled) == []
    assert not [p for p in new_root.rglob(".*runlock-pull*")]  # no temporary left
    assert git(other, "rev-parse", f"{REF_PREFIX}{A}") == lineage["commits"][A]
    # again: nothing moves, everything is "present"
    again = pull(C, remote=str(store), root=new_root, copy=True, repo=other)
    assert {m.action for m in again.runs} == {"present"}


def test_pull_from_local_store_symlinks(lineage: dict[str, Any], tmp_path: Path) -> None:
    store = tmp_path / "store"
    push(B, remote=str(store), root=lineage["root"], code=False)
    new_root = tmp_path / "elsewhere"
    got = pull(B, remote=str(store), root=new_root, code=False)
    assert {m.action for m in got.runs} == {"linked"}
    link = new_root / lineage["dirs"][B].relative_to(lineage["root"])
    assert link.is_symlink() and link.resolve() == (store / "runs" / B).resolve()


def test_push_pull_sftp_remote(lineage: dict[str, Any], tmp_path: Path, sftp_remote: Any,
                               code_remote: Path) -> None:
    remote = sftp_remote.remote + "team store"
    push(C, remote=remote, root=lineage["root"])
    assert (sftp_remote.root / "team store" / "runs" / B / "model.txt").is_file()
    entries = {e.id: e for e in list_remote(remote)}
    assert set(entries) == {A, B, C}
    assert entries[C].upstream == (B, A) and entries[C].status == "failed"
    other = fresh_clone(code_remote, tmp_path)
    got = pull(C, remote=remote, root=other / "results", repo=other)  # network store: copies
    assert {m.action for m in got.runs} == {"copied"}
    assert (other / "results" / "prep" / f"2026-11-25 {A[-6:]}" / "data" / "y.csv").read_text() == "3,4\n"


def test_interrupted_push_and_pull_resume_without_resending(
    lineage: dict[str, Any], tmp_path: Path
) -> None:
    src = lineage["dirs"][A]
    for i in range(20):
        (src / "data" / f"part{i:02}.bin").write_bytes(os.urandom(1000))
    lock = load_lock(src)
    lock["outputs"] = hash_outputs(src, exclude={"run.lock"})
    dump_lock(lock, src / "run.lock")
    files = sorted(p for p in src.rglob("*") if p.is_file())
    half = files[: len(files) // 2]
    store = tmp_path / "store"
    dest = store / "runs" / A
    for p in half:  # an interrupted push: half the files arrived (copy2 keeps mtimes)
        (dest / p.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, dest / p.relative_to(src))
    assert read_index(str(store)) == {}  # not listed until complete
    rep = push(A, remote=str(store), root=lineage["root"], code=False)
    assert rep.runs[0].stats.transfers == len(files) - len(half)
    assert rep.runs[0].stats.checks == len(half)
    assert set(read_index(str(store))) == {A}

    # an interrupted pull: the hidden temporary sibling holds half
    new_root = tmp_path / "new"
    target = new_root / src.relative_to(lineage["root"])
    tmp = target.with_name(f".{target.name}.runlock-pull-{A}")
    for p in half:
        (tmp / p.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(dest / p.relative_to(src), tmp / p.relative_to(src))
    got = pull(A, remote=str(store), root=new_root, copy=True, code=False)
    assert got.runs[0].stats.transfers == len(files) - len(half)
    assert not tmp.exists() and rclone.check(src, target) == []


def test_pull_never_overwrites_a_differing_local_run(lineage: dict[str, Any], tmp_path: Path) -> None:
    store = tmp_path / "store"
    push(B, remote=str(store), root=lineage["root"], code=False)
    new_root = tmp_path / "new"
    pull(B, remote=str(store), root=new_root, copy=True, code=False)
    local = new_root / lineage["dirs"][B].relative_to(lineage["root"])
    (local / "model.txt").write_text("locally changed\n")
    with pytest.raises(RemoteError, match="(?s)differs from run 20261125T110000-bbbbbb.*--force"):
        pull(B, remote=str(store), root=new_root, copy=True, code=False)
    assert (local / "model.txt").read_text() == "locally changed\n"
    got = pull(B, remote=str(store), root=new_root, copy=True, force=True, code=False)
    assert got.runs[0].action == "replaced"
    assert (local / "model.txt").read_text() == f"model of {B}\n"


def test_push_refuses_a_run_changed_since_it_finished(lineage: dict[str, Any], tmp_path: Path) -> None:
    (lineage["dirs"][A] / "data" / "x.csv").write_text("tampered\n")
    with pytest.raises(DataError, match=r"20261125T100000-aaaaaa.*changed: data/x\.csv"):
        push(B, remote=str(tmp_path / "store"), root=lineage["root"], code=False)


def test_pull_detects_corruption_on_the_store(lineage: dict[str, Any], tmp_path: Path) -> None:
    store = tmp_path / "store"
    push(A, remote=str(store), root=lineage["root"], code=False)
    (store / "runs" / A / "data" / "x.csv").write_text("bitrot\n")
    with pytest.raises(DataError, match="data/x.csv"):
        pull(A, remote=str(store), root=tmp_path / "new", code=False)  # symlink mode
    with pytest.raises(DataError, match="data/x.csv"):
        pull(A, remote=str(store), root=tmp_path / "new2", copy=True, code=False)
    assert not (tmp_path / "new2" / "prep" / f"2026-11-25 {A[-6:]}").exists()


# ----------------------------------------------------------------------------- errors


def test_errors_name_the_thing_at_fault(lineage: dict[str, Any], tmp_path: Path, code_remote: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    push(A, remote=str(store), root=lineage["root"], code=False)
    with pytest.raises(RunNotFoundError, match="No run '20991231' on the store"):
        pull("20991231", remote=str(store), root=tmp_path / "n", code=False)
    with pytest.raises(RunNotFoundError, match="No run 'nope'"):
        push("nope", remote=str(store), root=lineage["root"])
    # snapshot not on the code remote (A was pushed with --no-code)
    other = fresh_clone(code_remote, tmp_path)
    with pytest.raises(RemoteError, match=f"snapshot.*{A}.*not on the code remote 'origin'"):
        pull(A, remote=str(store), root=tmp_path / "n2", copy=True, repo=other)
    # upstream run missing locally
    shutil.rmtree(lineage["dirs"][A])
    with pytest.raises(LineageError, match=f"Upstream run {A}.*config key 'data'"):
        push(B, remote=str(store), root=lineage["root"], code=False)
    # missing rclone
    monkeypatch.setenv("RUNLOCK_RCLONE", "rclone-does-not-exist")
    with pytest.raises(RemoteError, match="rclone is not installed") as exc:
        list_remote(str(store))
    assert "apt-get install rclone" in str(exc.value) and "rclone.org/install" in str(exc.value)


def test_remote_that_does_not_answer_and_secrets_stay_out(sftp_remote: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    closed = rclone.join(sftp_remote.remote, "x")
    monkeypatch.setenv("RCLONE_CONFIG_RLTEST_PORT", "1")  # nothing listens there
    monkeypatch.setenv("RCLONE_CONFIG_RLTEST_PASS", "plain-secret-value")
    with pytest.raises(RemoteError, match="rltest:x") as exc:
        list_remote(closed)
    assert "plain-secret-value" not in str(exc.value)
    inline = ":sftp,host=127.0.0.1,port=1,user=u,pass=inline-Secret-42:x"
    with pytest.raises(RemoteError) as exc2:
        list_remote(inline)
    assert "inline-Secret-42" not in str(exc2.value)


# ----------------------------------------------------------------------------- ls / rm / CLI


def test_remote_ls_filters_and_rm(lineage: dict[str, Any], tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    push(C, remote=store, root=lineage["root"])
    assert [e.id for e in list_remote(store)] == [A, B, C]
    assert [e.id for e in list_remote(store, stage="train")] == [B]
    assert [e.id for e in list_remote(store, status="failed")] == [C]
    assert [e.id for e in list_remote(store, since="2026-11-25T11:30:00+00:00")] == [C]
    with pytest.raises(LineageError, match="upstream of run"):
        remove_remote([A], remote=store)
    removed = remove_remote([C[:17], B], remote=store)
    assert [e.id for e in removed] == [C, B]
    assert [e.id for e in list_remote(store)] == [A]
    assert not (tmp_path / "store" / "runs" / B).exists()


def test_cli(lineage: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch) -> None:
    store = str(tmp_path / "store")
    monkeypatch.setenv("RUNLOCK_REMOTE", store)
    root = str(lineage["root"])
    assert cli_main(["--root", root, "push", B, "--no-code"]) == 0
    out = capsys.readouterr().out
    assert f"pushed {B}" in out and f"pushed {A}" in out
    assert cli_main(["remote", "ls", "train"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("ID") and lines[1].startswith(B)
    assert cli_main(["remote", "ls", "--ids"]) == 0
    assert capsys.readouterr().out.split() == [A, B]
    assert cli_main(["--root", str(tmp_path / "n"), "pull", B, "--no-code", "--copy"]) == 0
    assert "copied" in capsys.readouterr().out
    assert cli_main(["pull", "nope"]) == 2  # an unknown run is bad input
    assert "No run 'nope'" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert cli_main(["remote", "rm", B]) == 2  # no confirmation possible without a terminal
    assert cli_main(["remote", "rm", "--force", B, "--keep-code"]) == 0
    assert f"deleted {B}" in capsys.readouterr().out


def test_progress_bar_copy_reports_the_same_stats(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(30):
        (src / f"f{i}").write_bytes(os.urandom(2000))
    quiet = rclone.copy(src, tmp_path / "a")
    shown = rclone.copy(src, tmp_path / "b", progress=True, label="test")
    assert quiet.transfers == shown.transfers == 30 and shown.bytes == 60_000
    with pytest.raises(RemoteError, match="rclone copy"):
        rclone.copy(tmp_path / "missing", tmp_path / "c", progress=True)


def test_a_symlinked_pull_pushes_back_to_another_store(lineage: dict[str, Any], tmp_path: Path) -> None:
    store = tmp_path / "store"
    push(B, remote=str(store), root=lineage["root"], code=False)
    new_root = tmp_path / "new"
    pull(B, remote=str(store), root=new_root, code=False)  # symlinks
    again = push(B, remote=str(store), root=new_root, code=False)  # same store: nothing to send
    assert {m.stats.transfers for m in again.runs} == {0}
    other = tmp_path / "other store"
    push(B, remote=str(other), root=new_root, code=False)
    entries = {e.id: e for e in list_remote(str(other))}
    assert entries[B].relpath == lineage["dirs"][B].relative_to(lineage["root"]).as_posix()
