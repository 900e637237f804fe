"""The index answers "nothing changed" from folder mtimes, without a stat per lock: it must still
see every run added, finished, deleted, pulled or symlinked since the last query."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from locks import settle

import runlock
from runlock.browse.index import RunIndex
from runlock.record.lockfile import dump_lock, load_lock


def write_run(
    root: Path, rel: str, rid: str, *, status: str = "completed", lr: float = 0.1
) -> Path:
    d = root / rel
    d.mkdir(parents=True)
    lock: dict[str, Any] = {
        "schema": 1, "id": rid, "stage": "train", "status": status, "run_dir": str(d),
        "timing": {"start": "2026-11-25T10:00:00+00:00", "duration_s": 1.0},
        "config": {"lr": lr},
    }  # fmt: skip
    dump_lock(lock, d / "run.lock")
    return d




def ids(root: Path) -> list[str]:
    return sorted(r.id for r in runlock.runs(root=root))


def fast_path_armed(root: Path) -> bool:
    """After a query of a settled root, the next one needs no walk."""
    with RunIndex(root) as idx:
        return idx._unchanged() is not None


def test_added_runs_are_seen(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_run(root, "train/r1", "r1")
    settle(root)
    assert ids(root) == ["r1"] and fast_path_armed(root)
    write_run(root, "train/r2", "r2")  # into a known folder
    assert ids(root) == ["r1", "r2"]
    settle(root)
    assert ids(root) == ["r1", "r2"] and fast_path_armed(root)
    write_run(root, "my exp/train/r3", "r3")  # in a new experiment folder
    assert ids(root) == ["r1", "r2", "r3"]
    write_run(root, "train/r4", "r4")  # right after a query: same clock tick, still seen
    assert ids(root) == ["r1", "r2", "r3", "r4"]


def test_a_run_finishing_in_place_is_seen(tmp_path: Path) -> None:
    root = tmp_path / "results"
    d = write_run(root, "exp/train/r1", "r1", status="running")
    settle(root)
    assert runlock.runs(root=root, status="running").ids == ["r1"] and fast_path_armed(root)
    lock = load_lock(d)
    dump_lock({**lock, "status": "completed", "result": {"value": 0.5}}, d / "run.lock")
    [run] = runlock.runs(root=root)
    assert run.recorded_status == "completed" and run.result == 0.5


def test_deleted_runs_disappear(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_run(root, "train/r1", "r1")
    d2 = write_run(root, "exp/train/r2", "r2")
    settle(root)
    assert ids(root) == ["r1", "r2"] and fast_path_armed(root)
    shutil.rmtree(d2)
    assert ids(root) == ["r1"]
    settle(root)
    assert ids(root) == ["r1"] and fast_path_armed(root)
    shutil.rmtree(root / "train")  # a whole stage folder
    assert ids(root) == []


def test_pulled_and_symlinked_runs_are_seen_and_their_rewrites_too(tmp_path: Path) -> None:
    root = tmp_path / "results"
    store = tmp_path / "store"
    write_run(root, "train/r1", "r1")
    outside = write_run(store, "runs/r2", "r2", status="running")
    write_run(store, "team/train/r3", "r3")
    settle(root, store)
    assert ids(root) == ["r1"] and fast_path_armed(root)
    link = root / "train" / "r2 pulled"
    link.symlink_to(outside, target_is_directory=True)  # what `runlock pull` does
    assert ids(root) == ["r1", "r2"]
    (root / "team").symlink_to(store / "team", target_is_directory=True)  # a folder of runs
    assert ids(root) == ["r1", "r2", "r3"]
    settle(root, store)
    assert ids(root) == ["r1", "r2", "r3"] and fast_path_armed(root)
    # the linked run finishes in the store: its folder is outside the root
    dump_lock({**load_lock(outside), "status": "completed"}, outside / "run.lock")
    assert sorted(runlock.runs(root=root, status="completed").ids) == ["r1", "r2", "r3"]
    link.unlink()
    assert ids(root) == ["r1", "r3"]


def test_a_copied_pull_replacing_a_run_is_seen(tmp_path: Path) -> None:
    """``pull --force`` renames a fresh copy over the run directory."""
    root = tmp_path / "results"
    write_run(root, "train/r1", "r1", lr=0.1)
    settle(root)
    assert runlock.runs(root=root).ids == ["r1"] and fast_path_armed(root)
    tmp = write_run(root, "train/.r1.runlock-pull", "r1", lr=0.2)
    shutil.rmtree(root / "train" / "r1")
    tmp.rename(root / "train" / "r1")
    assert runlock.runs(root=root, where="lr=0.2").ids == ["r1"]
