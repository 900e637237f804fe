"""Changes the folder mtimes do not show: a lock replaced inside its run directory (rsync, a
repair, a removal, a hand edit), a pulled run's link left dangling by its store going away, and
lock sections added by user collectors in ``show``."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from locks import make_run, settle

import runlock
from runlock.browse.index import RunIndex
from runlock.cli import main


def settled_query(root: Path, *more: Path) -> None:
    """Index the root, then date it (and ``more``: stores) back so the next query takes the
    no-walk path."""
    runlock.runs(root=root)
    settle(root, *more)
    runlock.runs(root=root)
    with RunIndex(root) as idx:
        assert idx._unchanged() is not None  # the scenario: no folder the walker watches moves


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def statuses(root: Path) -> dict[str, str]:
    return {r.id: r.status for r in runlock.runs(root=root)}


def test_rsync_renaming_a_finished_lock_into_a_running_run_is_seen(tmp_path: Path) -> None:
    root, cluster = tmp_path / "results", tmp_path / "cluster"
    d = make_run(root, run_id="r1", status="running")
    done = make_run(cluster, run_id="r1", status="completed", result={"acc": 0.9})
    settled_query(root)
    assert statuses(root) == {"r1": "running"}
    # what `rsync -a cluster/ results/` does: a temp file in the run dir renamed over the lock,
    # with the source's mtime; the stage folder holding the run does not change
    tmp = d / ".run.lock.rsync"
    shutil.copy2(done / "run.lock", tmp)
    old = time.time() - 1800
    os.utime(tmp, (old, old))
    os.replace(tmp, d / "run.lock")
    assert statuses(root) == {"r1": "completed"}
    assert runlock.runs(root=root)[0].result == {"acc": 0.9}


def test_repairing_an_unreadable_lock_in_place_is_seen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "results"
    d = make_run(root, run_id="r1")
    good = (d / "run.lock").read_bytes()
    (d / "run.lock").write_text("id: [unclosed\n")
    settled_query(root)
    code, out, err = cli(capsys, "--root", str(root), "ls", "--json")
    assert code == 0 and json.loads(out) == [] and "skipped 1 unreadable" in err
    (d / "run.lock").write_bytes(good)  # `cp good RUN/run.lock`: same file, new content
    code, out, err = cli(capsys, "--root", str(root), "ls", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == ["r1"], err
    assert "unreadable" not in err


def test_removing_a_run_lock_drops_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "results"
    running = make_run(root, run_id="r1", status="running")
    finished = make_run(root, run_id="r2")
    settled_query(root)
    assert statuses(root) == {"r1": "running", "r2": "completed"}
    (running / "run.lock").unlink()
    assert statuses(root) == {"r2": "completed"}
    code, _, err = cli(capsys, "--root", str(root), "show", "r1")
    assert code != 0 and "No run 'r1'" in err
    # a finished run's lock removed: show says so (no traceback), --refresh drops it from ls
    settled_query(root)
    (finished / "run.lock").unlink()
    code, _, err = cli(capsys, "--root", str(root), "show", "r2")
    assert code != 0 and "No run 'r2'" in err
    code, out, err = cli(capsys, "--root", str(root), "ls", "--refresh", "--json")
    assert code == 0 and json.loads(out) == [], err


def test_ls_refresh_picks_up_a_finished_lock_edited_by_hand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "results"
    d = make_run(root, run_id="r1", config={"lr": 0.1}, result={"acc": 0.5})
    settled_query(root)
    lock = d / "run.lock"
    edited = d / "run.lock.sed"  # `sed -i`: a new file renamed over the lock
    edited.write_text(lock.read_text().replace("acc: 0.5", "acc: 0.75"))
    os.replace(edited, lock)
    code, out, err = cli(capsys, "--root", str(root), "ls", "--refresh", "--json")
    assert code == 0, err
    assert [r["result"] for r in json.loads(out)] == [{"acc": 0.75}]
    assert runlock.runs(root=root)[0].result == {"acc": 0.75}
    with pytest.raises(SystemExit):
        main(["ls", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--refresh" in out and "edited by hand" in out


def test_runs_refresh_true_picks_up_a_hand_edit(tmp_path: Path) -> None:
    root = tmp_path / "results"
    d = make_run(root, run_id="r1", result={"acc": 0.5})
    settled_query(root)
    lock = d / "run.lock"
    lock.write_text(lock.read_text().replace("acc: 0.5", "acc: 0.25"))
    assert runlock.runs(root=root, refresh=True)[0].result == {"acc": 0.25}


def test_a_pulled_link_whose_store_is_gone_is_reported_and_removable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, store = tmp_path / "results", tmp_path / "store dir"
    make_run(root, run_id="local")
    for rid in ("p1", "p2"):
        make_run(store, sub="runs", run_id=rid)
        (root / "train" / rid).symlink_to(store / "runs" / "train" / rid)
    settled_query(root, store)
    assert statuses(root) == {"local": "completed", "p1": "completed", "p2": "completed"}
    shutil.rmtree(store)  # the store unmounted
    code, out, err = cli(capsys, "--root", str(root), "ls", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == ["local"]
    assert "2 dangling links (store gone?)" in err and str(root / "train" / "p1") in err
    # by path: the link only, never its (gone) target
    link = root / "train" / "p1"
    code, out, err = cli(capsys, "--root", str(root), "rm", str(link), "--force")
    assert code == 0, err
    assert not link.is_symlink() and "removed dangling link" in out
    # by name, as the run was known
    code, out, err = cli(capsys, "--root", str(root), "rm", "p2", "--force")
    assert code == 0, err
    assert not (root / "train" / "p2").is_symlink()
    code, out, err = cli(capsys, "--root", str(root), "ls", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == ["local"]
    assert "dangling" not in err


def test_a_dangling_link_comes_back_with_its_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, store = tmp_path / "results", tmp_path / "store"
    make_run(root, run_id="local")
    make_run(store, run_id="p1")
    (root / "train" / "p1").symlink_to(store / "train" / "p1")
    mounted = tmp_path / "unmounted"
    store.rename(mounted)
    settled_query(root)
    code, _, err = cli(capsys, "--root", str(root), "ls", "--json")
    assert code == 0 and "1 dangling link (store gone?)" in err
    mounted.rename(store)  # mounted again: the folder holding the link does not change
    assert statuses(root) == {"local": "completed", "p1": "completed"}
    _, _, err = cli(capsys, "--root", str(root), "ls", "--json")
    assert "dangling" not in err


def test_rm_refuses_a_dangling_link_outside_the_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "results"
    make_run(root, run_id="local")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    link = outside / "p1"
    link.symlink_to(tmp_path / "gone")
    code, _, err = cli(capsys, "--root", str(root), "rm", str(link), "--force")
    assert code == 2 and "outside the results root" in err
    assert link.is_symlink()


def test_show_displays_sections_of_user_collectors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "results"
    many = {f"k{i:02d}": i for i in range(30)}
    make_run(
        root, run_id="r1", gpu_probe={"name": "A100", "memory": {"total_gb": 80}},
        cluster_note="queue=short", big=many,
    )  # fmt: skip
    code, out, err = cli(capsys, "--root", str(root), "show", "r1")
    assert code == 0, err
    tail = out[out.index("\nbig\n") :]  # after runlock's own sections, sorted by name
    assert "\ncluster_note\n" in tail and "queue=short" in tail
    assert "\ngpu_probe\n" in tail and "memory.total_gb" in tail and "A100" in tail
    assert "k29" not in tail and "18 more" in tail  # compact: the rest is in --json
    assert "packages" not in tail
