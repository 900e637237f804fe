"""Pulled runs are runs: ``runlock pull`` (a symlink into a local store, a copy with ``--copy``, a
copy from a real rclone SFTP remote) gives runs that ls, show, diff, lineage, compare, rm, push
and ``runlock.runs()`` all see, by id and by unique prefix. And the one results-root walker's
symlink policy (loops, links out of the root, one run reachable twice)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import runlock
from runlock.browse.index import discover
from runlock.cli import main
from runlock.hashing import hash_outputs
from runlock.record.lockfile import dump_lock
from runlock.record.walk import iter_run_dirs, scan
from runlock.store.remote import find_local_run

A, B = "20261125T100000-aaaaaa", "20261125T110000-bbbbbb"


def write_run(
    root: Path, rel: str, rid: str, *, stage: str = "train", upstream: dict[str, Any] | None = None,
    lr: float = 0.1,
) -> Path:  # fmt: skip
    """A finished run at ``root/rel`` with one output file and a lock that hashes it."""
    d = root / rel
    d.mkdir(parents=True)
    (d / "model.txt").write_text(f"model of {rid}\n")
    lock = {
        "schema": 1, "id": rid, "stage": stage, "status": "completed", "run_dir": str(d),
        "timing": {"start": "2026-11-25T10:00:00+00:00", "end": "2026-11-25T10:01:00+00:00",
                   "duration_s": 60.0},
        "config": {"lr": lr}, "result": {"value": {"acc": lr * 2}},
        "upstream": upstream or {}, "outputs": hash_outputs(d, exclude={"run.lock"}),
    }  # fmt: skip
    dump_lock(lock, d / "run.lock")
    return d


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def pushed(tmp_path: Path) -> dict[str, Any]:
    """prep run A -> train run B (B read A's output), in a source root with awkward names."""
    src = tmp_path / "source results 'q'"
    da = write_run(src, "prep/run a", A, stage="prep", lr=0.5)
    up = {"data": {"id": A, "stage": "prep", "path": str(da), "status": "completed",
                   "outputs_match": True}}  # fmt: skip
    db = write_run(src, "train/run b", B, upstream=up)
    return {"src": src, "dirs": {A: da, B: db}}


@pytest.fixture(params=["symlink", "copy", "rclone sftp"])
def pulled(
    request: pytest.FixtureRequest, pushed: dict[str, Any], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], rclone_env: str,
) -> dict[str, Any]:  # fmt: skip
    """B and its upstream A pushed to a store, then pulled into a new results root."""
    if request.param == "rclone sftp":
        remote = request.getfixturevalue("sftp_remote").remote + f"store {tmp_path.name}"
    else:
        remote = str(tmp_path / "store dir")
    root = tmp_path / "pulled results"
    code, _, err = cli(capsys, "--root", str(pushed["src"]), "push", B, "--to", remote, "--no-code")
    assert code == 0, err
    extra = ["--copy"] if request.param == "copy" else []
    code, out, err = cli(
        capsys, "--root", str(root), "pull", B, "--from", remote, "--no-code", *extra
    )
    assert code == 0, err
    for rid, d in pushed["dirs"].items():
        here = root / d.relative_to(pushed["src"])
        assert here.is_symlink() == (request.param == "symlink"), (rid, out)
    return {"root": root, "mode": request.param, "remote": remote, **pushed}


def test_pulled_runs_are_listed_shown_and_compared(
    pulled: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(pulled["root"])
    code, out, err = cli(capsys, "--root", root, "ls", "--json")
    assert code == 0, err
    listed = {r["id"]: r for r in json.loads(out)}
    assert set(listed) == {A, B}
    # listed under their path inside this root (a symlink's own path, not the store's)
    for rid, d in pulled["dirs"].items():
        assert listed[rid]["dir"] == str(pulled["root"] / d.relative_to(pulled["src"]))
    for ref in (B, B[:11]):  # the id, a unique prefix
        code, out, err = cli(capsys, "--root", root, "show", ref)
        assert code == 0 and B in out, err
    code, out, err = cli(capsys, "--root", root, "diff", A[:11], B)
    assert code == 0 and "lr" in out, err
    code, out, err = cli(capsys, "--root", root, "lineage", B[:11])
    assert code == 0 and A in out and B in out, err
    code, out, err = cli(capsys, "--root", root, "compare", A, B[:11], "--json")
    assert code == 0, err
    assert {A, B} <= set(out.replace('"', " ").split())
    assert {r.id for r in runlock.runs(root=pulled["root"])} == {A, B}
    assert runlock.runs(root=pulled["root"], where="lr=0.5").ids == [A]
    assert find_local_run(B[:11], pulled["root"]).id == B  # what push resolves


def test_rm_of_a_pulled_run(pulled: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """A copied run is deleted; a symlinked one loses its link only: the store is shared."""
    root = str(pulled["root"])
    link = pulled["root"] / pulled["dirs"][B].relative_to(pulled["src"])
    target = link.resolve()
    stored = sorted(p.relative_to(target) for p in target.rglob("*"))
    code, out, err = cli(capsys, "--root", root, "rm", B[:11], "--force")
    assert code == 0, err
    assert not link.exists() and not link.is_symlink()
    if pulled["mode"] == "symlink":
        assert f"removed link {link} -> {target} (the store copy is kept)" in out
        assert sorted(p.relative_to(target) for p in target.rglob("*")) == stored
    code, out, err = cli(capsys, "--root", root, "ls", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [A], err
    assert [r.id for r in runlock.runs(root=pulled["root"])] == [A]
    code, _, err = cli(capsys, "--root", root, "show", B)
    assert code != 0 and "No run" in err


# -- the walker ----------------------------------------------------------------------------


def test_symlink_loops_end_and_each_run_is_listed_once(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_run(root, "train/r1", "r1")
    (root / "train" / "loop").symlink_to(root, target_is_directory=True)  # to an ancestor
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "back").symlink_to(root / "a", target_is_directory=True)
    (root / "a" / "self").symlink_to(root / "a" / "self")  # a dangling self-link
    assert list(discover(root)) == [str(root / "train" / "r1" / "run.lock")]
    assert [r.id for r in runlock.runs(root=root)] == ["r1"]


def test_link_to_a_run_outside_the_root_is_a_run_under_the_link_path(tmp_path: Path) -> None:
    root = tmp_path / "results"
    outside = write_run(tmp_path / "elsewhere", "train/r2", "r2")
    (root / "train").mkdir(parents=True)
    link = root / "train" / "pulled r2"
    link.symlink_to(outside, target_is_directory=True)
    assert list(discover(root)) == [str(link / "run.lock")]
    [run] = runlock.runs(root=root)
    assert run.id == "r2" and run.dir == link
    assert list(iter_run_dirs(root, stage="train")) == [link]
    assert scan(root).linked == {str(link / "run.lock")}


def test_link_to_a_folder_of_runs_is_walked_under_the_link_path(tmp_path: Path) -> None:
    root = tmp_path / "results"
    other = tmp_path / "other results"
    write_run(other, "train/r3", "r3")
    write_run(other, "train/r4", "r4")
    root.mkdir()
    (root / "team").symlink_to(other, target_is_directory=True)
    (root / "team again").symlink_to(other, target_is_directory=True)  # the same folder twice
    found = sorted(discover(root))
    assert found == [str(root / "team" / "train" / r / "run.lock") for r in ("r3", "r4")]
    assert sorted(r.id for r in runlock.runs(root=root)) == ["r3", "r4"]


def test_the_same_real_run_reachable_twice_is_listed_once(tmp_path: Path) -> None:
    root = tmp_path / "results"
    real = write_run(root, "train/r5", "r5")
    (root / "alias").symlink_to(real, target_is_directory=True)  # sorts before "train"
    (root / "all train").symlink_to(root / "train", target_is_directory=True)
    assert list(discover(root)) == [str(real / "run.lock")]  # the real path wins
    outside = write_run(tmp_path / "store", "r6", "r6")
    for name in ("z link", "b link"):
        (root / name).symlink_to(outside, target_is_directory=True)
    found = discover(root)
    assert sorted(found) == [str(root / "b link" / "run.lock"), str(real / "run.lock")]
    code = main(["--root", str(root), "show", "r6"])  # not ambiguous: one run
    assert code == 0


def test_a_runs_contents_and_hidden_folders_are_not_walked(tmp_path: Path) -> None:
    root = tmp_path / "results"
    run = write_run(root, "train/r7", "r7")
    write_run(run, "outputs/nested", "inner")  # a run.lock inside a run's outputs
    write_run(root, ".trash/r8", "r8")
    assert list(discover(root)) == [str(run / "run.lock")]
    # a run.lock directly in the root is stray, never the root's run: it once hid every run
    # (issue 11, item 12); the index reports it, and the walk goes on
    assert scan(run).stray == {str(run / "run.lock")}
    assert list(discover(run)) == [str(run / "outputs" / "nested" / "run.lock")]
    assert discover(tmp_path / "missing") == {}
