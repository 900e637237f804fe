"""One current-run stack: ``runlock.current_run()`` and ``runlock.log_metrics()`` see the same run,
in a stage, in a stage called by a stage, in a thread of a stage and in a task of a map."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import runlock
from runlock.errors import RunlockError
from runlock.record.lockfile import load_lock
from runlock.tracking.metrics import read_metrics


@dataclass
class Cfg:
    x: int = 0


SEEN: dict[str, Any] = {}


@runlock.stage(snapshot=False, console=False)
def inner(cfg: Cfg) -> str:
    runlock.log_metrics({"inner": 1.0})
    return str(runlock.current_run().dir)


@runlock.stage(snapshot=False, console=False)
def outer(cfg: Cfg) -> str:
    mine = runlock.current_run()
    inner_dir = inner(x=cfg.x)
    assert runlock.current_run() is mine  # the inner run ended: the outer one is current again
    runlock.log_metrics({"outer": 2.0}, step=1)
    found: list[Any] = []
    t = threading.Thread(target=lambda: (found.append(runlock.current_run()), runlock.log_metrics({"thread": 3.0})))
    t.start()
    t.join()
    SEEN.update(outer_id=mine.id, outer_dir=mine.dir, thread_run=found[0], inner_dir=inner_dir)
    return inner_dir


@runlock.stage(snapshot=False, console=False)
def task(cfg: Cfg) -> str:
    runlock.log_metrics({"x": float(cfg.x)}, step=cfg.x)
    return str(runlock.current_run().dir)


def test_outside_a_run_current_run_raises_and_log_metrics_is_a_no_op() -> None:
    with pytest.raises(RunlockError, match=r"^No run in progress\.") as info:
        runlock.current_run()
    assert info.value.hint == "Call this inside a @runlock.stage function or after runlock.start()."
    runlock.log_metrics({"loss": 1.0})  # the plain function stays plain (issue 13)


def test_nested_stages_and_threads_share_one_stack(results: Path) -> None:
    SEEN.clear()
    inner_dir = Path(outer(x=1))
    outer_dir = SEEN["outer_dir"]
    assert inner_dir != outer_dir and load_lock(outer_dir)["id"] == SEEN["outer_id"]
    assert SEEN["thread_run"].dir == outer_dir  # process-wide: a stage's threads are in its run
    assert [r.metrics for r in read_metrics(inner_dir)] == [{"inner": 1.0}]
    assert [r.metrics for r in read_metrics(outer_dir)] == [{"outer": 2.0}, {"thread": 3.0}]
    with pytest.raises(RunlockError, match="No run in progress"):
        runlock.current_run()


def test_tasks_of_an_in_process_map(results: Path) -> None:
    res = task.map([0, 1, 2], key="x", backend="inprocess")
    assert res.ok
    # each task has its own directory; its metrics go to the map's one run
    assert res.results() == [str(res.run_dir / "tasks" / f"{i:06d}") for i in range(3)]
    assert [r.step for r in read_metrics(res.run_dir)] == [0, 1, 2]
    with pytest.raises(RunlockError, match="No run in progress"):
        runlock.current_run()
