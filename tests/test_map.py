"""Task maps: one run directory and one lock for many tasks, resumable, failures recorded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import run_py, write_script

import runlock
from runlock.errors import TaskError, UsageError
from runlock.record.lockfile import load_lock


@dataclass
class Item:
    item: int = 0
    scale: float = 1.0
    seed: int | None = None


FLAKY: set[int] = set()


@runlock.stage(snapshot=False)
def process(cfg: Item) -> float:
    import logging
    import random

    if cfg.item in FLAKY:
        raise ValueError(f"item {cfg.item} is bad")
    logging.getLogger("process").info("processing item %s", cfg.item)
    out = runlock.current_run().dir / "out.json"
    out.write_text(json.dumps({"item": cfg.item, "draw": random.random()}))
    return cfg.item * cfg.scale


@runlock.stage(snapshot=False)
def other(cfg: Item) -> None:
    return None


@pytest.mark.parametrize("backend", ["inprocess", "joblib"])
def test_map_one_run_many_tasks(results: Path, backend: str) -> None:
    res = process.map(list(range(5)), key="item", config={"scale": 2.0}, backend=backend, n_jobs=2)
    assert res.ok and res.results() == [0.0, 2.0, 4.0, 6.0, 8.0]
    (run_dir,) = (results / "process").iterdir()
    assert run_dir == res.run_dir
    lock = load_lock(run_dir)
    assert lock["status"] == "completed"
    assert lock["tasks"]["total"] == 5 and lock["tasks"]["done"] == 5 and lock["tasks"]["failed"] == 0
    outs = sorted((run_dir / "tasks").glob("*/out.json"))
    assert [json.loads(p.read_text())["item"] for p in outs] == [0, 1, 2, 3, 4]
    log_text = (run_dir / "run.log").read_text()
    for i in range(5):
        assert f"processing item {i}" in log_text
    # every log line is whole: no interleaving between workers
    assert all(line[:4].isdigit() or line.startswith(" ") for line in log_text.splitlines() if line)


def test_dict_tasks_merge_into_config(results: Path) -> None:
    res = process.map([{"item": 1, "scale": 10.0}, {"item": 2}], backend="inprocess")
    assert res.results() == [10.0, 2.0]


def test_failed_task_recorded_others_continue_then_resume(results: Path) -> None:
    FLAKY.add(3)
    try:
        res = process.map(list(range(6)), key="item", backend="inprocess")
    finally:
        FLAKY.discard(3)
    assert not res.ok and res.status == "failed"
    lock = load_lock(res.run_dir)
    assert lock["tasks"]["done"] == 5 and lock["tasks"]["failed"] == 1
    assert lock["tasks"]["failures"]["000003"]["message"] == "item 3 is bad"
    draws_before = {p.parent.name: json.loads(p.read_text())["draw"] for p in (res.run_dir / "tasks").glob("*/out.json")}
    again = process.map(list(range(6)), key="item", backend="inprocess", resume=res.run_dir)
    assert again.ok and again.run_dir == res.run_dir and again.run_id == res.run_id
    assert again.results() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    lock = load_lock(res.run_dir)
    assert lock["status"] == "completed" and len(lock["resumed"]) == 1
    draws_after = {p.parent.name: json.loads(p.read_text())["draw"] for p in (res.run_dir / "tasks").glob("*/out.json")}
    assert all(draws_after[k] == v for k, v in draws_before.items())  # done tasks were not re-run
    assert len(list((results / "process").iterdir())) == 1


def test_tasks_get_distinct_reproducible_seeds(results: Path) -> None:
    a = process.map(list(range(3)), key="item", config={"seed": 7}, backend="inprocess")
    b = process.map(list(range(3)), key="item", config={"seed": 7}, backend="inprocess")

    def draws(run_dir: Path) -> list[float]:
        return [json.loads(p.read_text())["draw"] for p in sorted((run_dir / "tasks").glob("*/out.json"))]

    assert draws(a.run_dir) == draws(b.run_dir)
    assert len(set(draws(a.run_dir))) == 3


def test_bad_tasks_are_clear_errors_before_anything_runs(results: Path) -> None:
    with pytest.raises(TaskError, match="Unknown config key 'nope'"):
        process.map([{"nope": 1}], backend="inprocess")
    with pytest.raises(runlock.ConfigKeyError, match="'missing'"):
        process.map([1, 2], key="missing", backend="inprocess")
    with pytest.raises(TaskError, match="not a mapping"):
        process.map([1, 2], backend="inprocess")
    with pytest.raises(TaskError, match="No tasks"):
        process.map([], key="item")
    assert not results.exists()


def test_resume_of_another_stage_is_refused(results: Path) -> None:
    res = other.map([1], key="item", backend="inprocess")
    with pytest.raises(UsageError, match="is a run of stage 'other'"):
        process.map([1], key="item", backend="inprocess", resume=res.run_dir)


def test_unknown_backend_is_a_clear_error(results: Path) -> None:
    with pytest.raises(UsageError, match="unknown backend 'nope'"):
        process.map([1], key="item", backend="nope")


def test_map_from_the_command_line(tmp_path: Path, results: Path) -> None:
    script = write_script(
        tmp_path / "s.py",
        """
        from dataclasses import dataclass
        import runlock
        @dataclass
        class C:
            path: str = ""
        @runlock.stage(snapshot=False)
        def s(cfg: C):
            return len(cfg.path)
        runlock.main(s)
        """,
    )
    (tmp_path / "tasks.txt").write_text("a\nbb\n# comment\nccc\n")
    res = run_py(script, "--map", "tasks.txt", "--map-key", "path", "-j", "2")
    assert res.returncode == 0, res.stderr
    assert "3/3 tasks done" in res.stdout
    (tmp_path / "broken.yaml").write_text("[1, 2\n")
    res = run_py(script, "--map", "broken.yaml", "--map-key", "path")
    assert res.returncode == 2 and "Cannot parse task file" in res.stderr
    res = run_py(script, "--map", "absent.yaml", "--map-key", "path")
    assert res.returncode == 2 and "Task file not found" in res.stderr
