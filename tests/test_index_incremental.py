"""When some folders holding runs changed, the index lists only those folders again (and folders
new in them) and keeps the rest: one running run's heartbeat must not cost a walk of the root.

A hand edit of a finished lock in a folder that did not change is therefore, by design, seen
only by ``--refresh``; these tests use that to tell which folders a refresh looked at."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from locks import settle as settle_folders

import runlock
from runlock.browse.index import RunIndex
from runlock.cli import main
from runlock.record.lockfile import dump_lock, load_lock


def write_run(root: Path, rel: str, rid: str, *, status: str = "completed") -> Path:
    d = root / rel
    d.mkdir(parents=True)
    lock: dict[str, Any] = {
        "schema": 1, "id": rid, "stage": "train", "status": status, "run_dir": str(d),
        "timing": {"start": "2026-11-25T10:00:00+00:00", "duration_s": 1.0},
        "config": {"lr": 0.1},
    }  # fmt: skip
    dump_lock(lock, d / "run.lock")
    return d


def settle(*tops: Path) -> None:
    """Settle the folders (locks.settle), then index the root."""
    settle_folders(*tops)
    runlock.runs(root=tops[0])


def edit_by_hand(run_dir: Path, lr: float) -> None:
    """Rewrite a lock in place as an editor would: its folder's mtime does not move."""
    lock = run_dir / "run.lock"
    lock.write_text(lock.read_text().replace("lr: 0.1", f"lr: {lr}"))


def lrs(root: Path, *, refresh: bool = False) -> dict[str, Any]:
    return {r.id: r.config["lr"] for r in runlock.runs(root=root, refresh=refresh)}


def test_a_run_added_in_one_folder_is_seen_and_a_hand_edit_elsewhere_waits_for_refresh(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "results"
    write_run(root, "train/r1", "r1")
    e1 = write_run(root, "eval/e1", "e1")
    settle(root)
    write_run(root, "train/r2", "r2")
    edit_by_hand(e1, 0.25)
    assert lrs(root) == {"r1": 0.1, "r2": 0.1, "e1": 0.1}  # eval/ was not listed again
    assert main(["--root", str(root), "ls", "--refresh"]) == 0
    capsys.readouterr()
    assert lrs(root) == {"r1": 0.1, "r2": 0.1, "e1": 0.25}


def test_a_rewritten_lock_is_read_alone_and_its_folder_is_checked_whole(tmp_path: Path) -> None:
    root = tmp_path / "results"
    running = write_run(root, "train/r1", "r1", status="running")
    r2 = write_run(root, "train/r2", "r2")
    e1 = write_run(root, "eval/e1", "e1")
    settle(root)
    edit_by_hand(r2, 0.5)  # in the folder the heartbeat below touches: its lock is stat'ed
    edit_by_hand(e1, 0.25)
    dump_lock({**load_lock(running), "status": "completed"}, running / "run.lock")
    with RunIndex(root) as idx:
        stats = idx.refresh()
    assert (stats.total, stats.added, stats.updated, stats.removed) == (3, 0, 2, 0)
    assert lrs(root) == {"r1": 0.1, "r2": 0.5, "e1": 0.1}
    assert sorted(runlock.runs(root=root, status="completed").ids) == ["e1", "r1", "r2"]


def test_new_nested_folders_and_removed_runs_in_a_changed_folder(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_run(root, "train/r1", "r1")
    gone = write_run(root, "train/r2", "r2")
    e1 = write_run(root, "eval/e1", "e1")
    settle(root)
    write_run(root, "exp/a/train/r3", "r3")  # new folders under the root, walked whole
    shutil.rmtree(gone)
    edit_by_hand(e1, 0.25)
    assert lrs(root) == {"r1": 0.1, "r3": 0.1, "e1": 0.1}
    settle(root)
    write_run(root, "exp/a/train/r4", "r4")  # now a known folder: listed again alone
    assert sorted(lrs(root)) == ["e1", "r1", "r3", "r4"]
    assert lrs(root, refresh=True)["e1"] == 0.25


def test_a_folder_changed_a_moment_ago_is_listed_again(tmp_path: Path) -> None:
    root = tmp_path / "results"
    r1 = write_run(root, "train/r1", "r1")
    write_run(root, "eval/e1", "e1")
    settle(root)
    write_run(root, "train/r2", "r2")
    # whatever the machine's speed, train/'s mtime is not 2 s old at the next query: a change
    # in the same clock tick would leave it as it is, so the folder is not trusted yet
    soon = time.time() + 3600
    os.utime(root / "train", (soon, soon))
    assert sorted(lrs(root)) == ["e1", "r1", "r2"]
    edit_by_hand(r1, 0.5)
    assert lrs(root)["r1"] == 0.5


def test_a_new_link_to_a_run_linked_elsewhere_lists_it_once(tmp_path: Path) -> None:
    root, store = tmp_path / "results", tmp_path / "store"
    target = write_run(store, "train/p1", "p1")
    write_run(root, "a/r1", "r1")
    write_run(root, "b/r2", "r2")
    (root / "b" / "p1").symlink_to(target, target_is_directory=True)
    settle(root, store)
    (root / "a" / "p1").symlink_to(target, target_is_directory=True)  # only a/ changes
    runs = runlock.runs(root=root)
    assert sorted(runs.ids) == ["p1", "r1", "r2"]
    assert [r.dir for r in runs if r.id == "p1"] == [root / "a" / "p1"]  # the smaller path
    (root / "a" / "p1").unlink()
    assert [r.dir for r in runlock.runs(root=root) if r.id == "p1"] == [root / "b" / "p1"]


def test_a_folder_that_becomes_a_run_and_a_stray_lock_removed(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_run(root, "exp/train/r1", "r1")
    write_run(root, "eval/e1", "e1")
    shutil.copy(root / "eval" / "e1" / "run.lock", root / "run.lock")  # stray: not a run
    settle(root)
    with RunIndex(root) as idx:
        assert [p for p, _ in idx.broken()] == [str(root / "run.lock")]
    (root / "run.lock").unlink()
    with RunIndex(root) as idx:
        idx.refresh()
        assert idx.broken() == []
    settle(root)
    shutil.copy(root / "eval" / "e1" / "run.lock", root / "exp" / "run.lock")
    assert sorted(lrs(root)) == ["e1"]  # exp/ is one run now: its contents are not walked


def test_a_removed_run_that_a_link_also_reached_leaves_the_link_dangling(tmp_path: Path) -> None:
    root = tmp_path / "results"
    real = write_run(root, "train/r1", "r1")
    write_run(root, "eval/e1", "e1")
    (root / "eval" / "again").symlink_to(real, target_is_directory=True)  # listed as train/r1
    settle(root)
    assert sorted(lrs(root)) == ["e1", "r1"]
    shutil.rmtree(real)  # only train/ changes; the link in eval/ now points nowhere
    with RunIndex(root) as idx:
        idx.refresh()
        assert idx.dangling() == [str(root / "eval" / "again")]
    assert sorted(lrs(root)) == ["e1"]


def test_a_heartbeat_leaves_its_folder_alone_and_is_still_listed(tmp_path: Path) -> None:
    from runlock.stages.run import LockWriter

    root = tmp_path / "results"
    d = root / "train" / "r1"
    d.mkdir(parents=True)
    data: dict[str, Any] = {
        "schema": 1, "id": "r1", "stage": "train", "status": "running", "run_dir": str(d),
        "pid": 1000, "timing": {"start": "2026-11-25T10:00:00+00:00"}, "config": {"lr": 0.1},
    }  # fmt: skip
    writer = LockWriter(d / "run.lock", data)
    writer.write()
    settle(root)
    assert [(r.status, r.pid) for r in runlock.runs(root=root)] == [("running", 1000)]
    before = os.stat(root / "train").st_mtime_ns
    writer.write(pid=1001)  # a heartbeat: the folder is not bumped, the lock is stat'ed anyway
    assert os.stat(root / "train").st_mtime_ns == before
    assert [(r.status, r.pid) for r in runlock.runs(root=root)] == [("running", 1001)]
    writer.write(final=True, status="completed", timing={**data["timing"], "duration_s": 1.0})
    assert os.stat(root / "train").st_mtime_ns != before  # the end bumps it, as any new lock
    assert [r.status for r in runlock.runs(root=root)] == ["completed"]
