"""Upstream runs found in config values, embedded (once) in the lock, checked against outputs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

import runlock
from runlock.capture.lineage import (
    embedded_locks,
    find_candidates,
    iter_upstream,
    lineage_tree,
    upstream_dirs,
)
from runlock.record.lockfile import load_lock


@dataclass
class PrepCfg:
    rows: int = 3
    fail: bool = False
    out: str = ""
    seed: int | None = None


@dataclass
class StepCfg:
    prev: str = ""  # a path into an earlier run
    other: str = ""  # a second one (diamond, two keys)
    nested: dict[str, str] = field(default_factory=dict)
    many: list[str] = field(default_factory=list)
    out: str = ""
    seed: int | None = None


@runlock.stage(snapshot=False, inject_dir="out")
def prep(cfg: PrepCfg) -> None:
    (Path(cfg.out) / "features.csv").write_text("\n".join(str(i) for i in range(cfg.rows)))
    if cfg.fail:
        raise RuntimeError("prep failed on purpose")


@runlock.stage(snapshot=False, inject_dir="out")
def train(cfg: StepCfg) -> None:
    (Path(cfg.out) / "model.txt").write_text(f"trained on {cfg.prev}")


@runlock.stage(snapshot=False, inject_dir="out")
def evaluate(cfg: StepCfg) -> dict[str, float]:
    (Path(cfg.out) / "scores.txt").write_text("0.9")
    return {"acc": 0.9}


def last_run(root: Path, stage: str) -> Path:
    runs = sorted((root / stage).iterdir(), key=lambda d: load_lock(d)["timing"]["start"])
    return runs[-1]


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_two_stages_upstream_entry(results: Path) -> None:
    prep()
    prep_dir = last_run(results, "prep")
    train(prev=str(prep_dir / "features.csv"))
    lock = load_lock(last_run(results, "train"))
    prep_lock = load_lock(prep_dir)
    entry = lock["upstream"]["prev"]
    assert entry["id"] == prep_lock["id"]
    assert entry["stage"] == "prep"
    assert entry["path"] == str(prep_dir)
    assert entry["file"] == "features.csv"
    assert entry["status"] == "completed"
    assert entry["outputs_match"] is True
    assert entry["lock"] == prep_lock  # the whole upstream lock, as it is on disk
    assert list(lock["upstream"]) == ["prev"]  # `out` (the run's own directory) is not upstream
    assert "warnings" not in lock


def test_three_stages_embedded_recursively(results: Path) -> None:
    prep()
    prep_dir = last_run(results, "prep")
    train(prev=str(prep_dir / "features.csv"))
    train_dir = last_run(results, "train")
    evaluate(prev=str(train_dir))  # the run directory itself
    lock = load_lock(last_run(results, "evaluate"))
    model = lock["upstream"]["prev"]
    assert model["stage"] == "train" and "file" not in model and model["outputs_match"] is True
    inner = model["lock"]["upstream"]["prev"]
    assert inner["id"] == load_lock(prep_dir)["id"]
    assert inner["lock"]["stage"] == "prep"
    assert inner["lock"]["outputs"]["files"].keys() == {"features.csv"}

    assert [(d, k, e["stage"]) for d, k, e in iter_upstream(lock)] == [(1, "prev", "train"), (2, "prev", "prep")]
    assert upstream_dirs(lock) == [train_dir, prep_dir]
    tree = lineage_tree(lock)
    assert tree["stage"] == "evaluate" and tree["key"] is None
    assert tree["path"] == str(last_run(results, "evaluate"))
    (child,) = tree["children"]
    assert (child["key"], child["stage"], child["outputs_match"]) == ("prev", "train", True)
    (grandchild,) = child["children"]
    assert (grandchild["stage"], grandchild["children"], grandchild["ref"]) == ("prep", [], False)


def test_diamond_embeds_each_run_once(results: Path) -> None:
    prep()
    prep_dir = last_run(results, "prep")
    prep_id = load_lock(prep_dir)["id"]
    train(prev=str(prep_dir / "features.csv"))
    left = last_run(results, "train")
    train(prev=str(prep_dir))
    right = last_run(results, "train")
    evaluate(prev=str(left), other=str(right))
    run_dir = last_run(results, "evaluate")
    lock = load_lock(run_dir)

    first = lock["upstream"]["prev"]["lock"]["upstream"]["prev"]
    second = lock["upstream"]["other"]["lock"]["upstream"]["prev"]
    assert first["lock"]["id"] == prep_id  # embedded in full where first met
    assert second["lock"] == {"ref": prep_id}  # then referred to by id
    assert (second["id"], second["stage"], second["path"]) == (prep_id, "prep", str(prep_dir))
    assert (run_dir / "run.lock").read_text().count(f"run_dir: {prep_dir}\n") == 1  # one full copy
    assert embedded_locks(lock)[prep_id] == load_lock(prep_dir)
    assert upstream_dirs(lock) == [left, prep_dir, right]
    refs = [c for c in lineage_tree(lock)["children"][1]["children"]]
    assert refs[0]["ref"] is True and refs[0]["children"] == []


def test_two_keys_naming_one_run(results: Path) -> None:
    prep()
    prep_dir = last_run(results, "prep")
    train(prev=str(prep_dir / "features.csv"), nested={"again": str(prep_dir)}, many=["x", str(prep_dir)])
    up = load_lock(last_run(results, "train"))["upstream"]
    assert list(up) == ["prev", "nested.again", "many[1]"]
    assert up["prev"]["lock"]["stage"] == "prep"
    assert up["nested.again"]["lock"] == {"ref": up["prev"]["id"]}
    assert up["many[1]"]["lock"] == {"ref": up["prev"]["id"]}


def test_outputs_match_false_after_an_upstream_file_changes(results: Path) -> None:
    prep()
    prep_dir = last_run(results, "prep")
    train(prev=str(prep_dir / "features.csv"))
    assert load_lock(last_run(results, "train"))["upstream"]["prev"]["outputs_match"] is True

    (prep_dir / "features.csv").write_text("tampered")
    (prep_dir / "notes.txt").write_text("added later: not a mismatch by itself")
    train(prev=str(prep_dir / "features.csv"))
    lock = load_lock(last_run(results, "train"))
    entry = lock["upstream"]["prev"]
    assert entry["outputs_match"] is False
    assert entry["outputs_diff"] == {"changed": ["features.csv"], "added": ["notes.txt"]}
    assert any("changed since it ran" in w and str(prep_dir) in w for w in lock["warnings"])


def test_failed_upstream_is_a_warning(results: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(RuntimeError):
        prep(fail=True)
    prep_dir = last_run(results, "prep")
    with caplog.at_level(logging.WARNING, logger="runlock"):
        train(prev=str(prep_dir / "features.csv"))
    run_dir = last_run(results, "train")
    lock = load_lock(run_dir)
    assert lock["status"] == "completed"  # a warning, not a failure
    entry = lock["upstream"]["prev"]
    assert entry["status"] == "failed" and str(prep_dir) in entry["warning"]
    assert any("failed" in w and str(prep_dir) in w for w in lock["warnings"])
    assert str(prep_dir) in (run_dir / "run.log").read_text()  # logged during the run


def test_corrupt_upstream_lock_is_a_warning(results: Path) -> None:
    prep()
    prep_dir = last_run(results, "prep")
    (prep_dir / "run.lock").write_text("{not: [valid yaml")
    train(prev=str(prep_dir / "features.csv"))
    lock = load_lock(last_run(results, "train"))
    entry = lock["upstream"]["prev"]
    assert entry["id"] is None and entry["path"] == str(prep_dir) and "unreadable" in entry["warning"]
    assert any(str(prep_dir) in w and "unreadable" in w for w in lock["warnings"])


def test_dangling_paths_under_the_results_root_are_warnings(results: Path) -> None:
    prep()
    prep_dir = last_run(results, "prep")
    lockless = results / "prep" / "20200101-000000"
    lockless.mkdir()
    (lockless / "features.csv").write_text("1")
    train(
        prev=str(prep_dir / "does-not-exist.csv"),
        other=str(results / "prep" / "19990101-000000"),
        nested={"lost": str(lockless / "features.csv")},
    )
    lock = load_lock(last_run(results, "train"))
    assert list(lock["upstream"]) == ["prev"]  # inside a run: recorded, with a warning
    warnings = "\n".join(lock["warnings"])
    assert f"{prep_dir / 'does-not-exist.csv'}, inside run {prep_dir}, but that path does not exist" in warnings
    assert f"'other' names {results / 'prep' / '19990101-000000'} under the results root, which does not exist" in warnings
    assert f"'nested.lost' names {lockless / 'features.csv'} under the results root, but no run.lock" in warnings


def test_plain_strings_and_outside_paths_are_not_upstream(results: Path, tmp_path: Path) -> None:
    data = tmp_path / "elsewhere.csv"
    data.write_text("1")
    train(prev=str(data), other="adam", many=["relu", "s3://bucket/key", ""])
    lock = load_lock(last_run(results, "train"))
    assert "upstream" not in lock and "warnings" not in lock


def test_symlinked_run_directory_is_found(results: Path, tmp_path: Path) -> None:
    prep()
    prep_dir = last_run(results, "prep")
    latest = tmp_path / "latest"
    latest.symlink_to(prep_dir, target_is_directory=True)
    train(prev="latest/features.csv")  # relative to the current directory
    entry = load_lock(last_run(results, "train"))["upstream"]["prev"]
    assert entry["path"] == str(prep_dir) and entry["stage"] == "prep"
    assert entry["file"] == "features.csv"


def test_upstream_with_outputs_disabled_has_unknown_match(results: Path) -> None:
    @runlock.stage(snapshot=False, inject_dir="out", hash_outputs=False)
    def raw(cfg: PrepCfg) -> None:
        (Path(cfg.out) / "x.txt").write_text("x")

    raw()
    train(prev=str(last_run(results, "raw")))
    assert load_lock(last_run(results, "train"))["upstream"]["prev"]["outputs_match"] is None


def test_find_candidates_skips_the_current_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "results" / "s" / "now"
    run_dir.mkdir(parents=True)
    cfg = {"out": str(run_dir), "inside": str(run_dir / "ckpt.pt"), "n": 3, "text": "hello world"}
    assert find_candidates(cfg, run_dir=run_dir, results_root=tmp_path / "results", cwd=tmp_path) == []


def test_readers_handle_locks_without_upstream() -> None:
    lock = {"id": "x", "stage": "s", "status": "completed", "run_dir": "/r"}
    assert list(iter_upstream(lock)) == []
    assert upstream_dirs(lock) == []
    assert lineage_tree(lock)["children"] == []
    yaml.safe_dump(lineage_tree(lock))  # plain data
