"""User collectors: ``@runlock.stage(collectors=[...])`` adds lock sections after the built-in
ones; a collector that fails becomes a warning in the lock and never fails the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import runlock
from runlock.record.lockfile import load_lock


class GpuCollector:
    """What a user would write: a ``key`` and two methods (runlock.Collector)."""

    key = "gpu"

    def start(self, ctx: runlock.RunContext) -> Any:
        return {"devices": ["fake0"], "run": ctx.run_id, "stage": ctx.stage, "lr": ctx.config["lr"]}

    def finish(self, ctx: runlock.RunContext) -> Any:
        return {**ctx.lock["gpu"], "status": ctx.status, "wrote": sorted(p.name for p in ctx.run_dir.glob("*.txt"))}


class BrokenCollector:
    def __init__(self, key: str, where: str) -> None:
        self.key, self.where = key, where

    def start(self, ctx: runlock.RunContext) -> Any:
        if self.where == "start":
            raise RuntimeError("no driver at start")
        return {"started": True}

    def finish(self, ctx: runlock.RunContext) -> Any:
        if self.where == "finish":
            raise OSError("disk gone at finish")
        return None  # keep the start value


@runlock.stage(snapshot=False, collectors=[GpuCollector(), BrokenCollector("a", "start"), BrokenCollector("b", "finish")])
def fit(lr: float = 0.1) -> float:
    (runlock.current_run().dir / "weights.txt").write_text("w")
    return lr * 2


@runlock.stage(snapshot=False, collectors=[GpuCollector()])
def crash(lr: float = 0.1) -> None:
    raise ValueError("diverged")


def test_user_collector_section_lands_in_run_lock(results: Path) -> None:
    assert fit(lr=0.5) == 1.0
    (run_dir,) = (results / "fit").iterdir()
    lock = load_lock(run_dir)
    assert lock["status"] == "completed"
    assert lock["gpu"] == {
        "devices": ["fake0"], "run": lock["id"], "stage": "fit", "lr": 0.5,
        "status": "completed", "wrote": ["weights.txt"],
    }
    # built-in sections are still there: user collectors come after them
    assert "outputs" in lock and "weights.txt" in lock["outputs"]["files"]
    # the broken collectors cost a warning each, not the run
    assert lock["b"] == {"started": True} and "a" not in lock
    assert "a: RuntimeError: no driver at start" in lock["warnings"]
    assert "b: OSError: disk gone at finish" in lock["warnings"]


def test_user_collector_sees_a_failed_run(results: Path) -> None:
    with pytest.raises(ValueError, match="diverged"):
        crash()
    (run_dir,) = (results / "crash").iterdir()
    lock = load_lock(run_dir)
    assert lock["status"] == "failed" and lock["gpu"]["status"] == "failed"


@pytest.mark.parametrize(
    ("collectors", "message"),
    [
        ([object()], "is not a collector"),
        ([BrokenCollector("", "never")], "is not a collector"),
        ([BrokenCollector("git", "never")], "Collector key 'git' is runlock's own lock section"),
        ([GpuCollector(), GpuCollector()], "Collector key 'gpu' is another collector's lock section"),
    ],
    ids=["no-methods", "empty-key", "builtin-key", "same-key-twice"],
)
def test_collectors_that_cannot_work_fail_at_decoration(collectors: list[Any], message: str) -> None:
    with pytest.raises(runlock.RunlockError, match=message) as info:
        runlock.stage(collectors=collectors)(lambda lr=0.1: lr)
    assert isinstance(info.value, ValueError)
