"""execute_map on a real single-node SLURM cluster (scripts/slurm-up.sh): arrays, worker pools,
time-limit requeue, a cancelled worker. Registered fixtures come from conftest_slurm."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from runlock.scale.backends.slurm import SlurmBackend
from runlock.scale.taskmap import execute_map

pytestmark = pytest.mark.slurm


def where(calls: str, sleep_s: float, x: int) -> tuple[int, str, str]:
    """Runs on a SLURM worker: leaves a call marker, returns where and in which start it ran."""
    Path(calls, f"{x}-{uuid.uuid4().hex}").touch()
    time.sleep(sleep_s)
    if x == 5:
        raise ValueError("five is bad")
    return x, os.environ["SLURM_JOB_ID"], os.environ.get("SLURM_RESTART_COUNT", "0")


def _calls(calls: Path) -> dict[int, int]:
    out: dict[int, int] = {}
    for p in calls.iterdir():
        k = int(p.name.split("-")[0])
        out[k] = out.get(k, 0) + 1
    return out


def _in_thread(action: Callable[[list[Any]], None]) -> Callable[[list[Any]], None]:
    """on_submit hook that acts on the jobs while execute_map waits for them."""

    def hook(jobs: list[Any]) -> None:
        threading.Thread(target=action, args=(jobs,), daemon=True).start()

    return hook


def _wait(cond: Callable[[], bool], timeout_s: float = 60) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError("condition not met")
        time.sleep(0.2)


@pytest.fixture
def calls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("calls")


def test_array_over_chunks(slurm_cluster: Any, calls: Path) -> None:
    opts = slurm_cluster.backend_options("array")
    backend = SlurmBackend(**opts)
    state = slurm_cluster.shared_dir / "array state"
    s = execute_map(
        partial(where, str(calls), 0.0),
        list(range(12)),
        state_dir=state,
        backend=backend,
        n_jobs=3,
        chunk_size=4,
    )
    assert len(backend.jobs) == 3 and s.worker_errors == ()
    assert (s.done, s.failed) == (11, 1)
    assert "five is bad" in s.failures[s.ids[5]]["message"]
    results = [r for r in s.results(default=None) if r is not None]
    assert len({r[1] for r in results}) == 3  # each array element is its own SLURM job
    assert _calls(calls) == {x: 1 for x in range(12)}
    assert list(Path(opts["folder"]).glob("*_log.out"))  # submitit logs in its folder


def test_worker_pool_across_several_jobs(slurm_cluster: Any, calls: Path) -> None:
    state = slurm_cluster.shared_dir / "pool state"
    opts = slurm_cluster.backend_options("pool")
    del opts["folder"]  # defaults to <state_dir>/jobs
    s = execute_map(
        partial(where, str(calls), 0.3),
        list(range(20)),
        state_dir=state,
        backend="slurm",
        n_jobs=2,
        worker_pool=True,
        **opts,
    )
    assert (s.done, s.failed, s.todo, s.running) == (19, 1, 0, 0)
    assert list((state / "jobs").glob("*_log.out"))
    jobs = {r[1] for r in s.results(default=None) if r is not None}
    assert len(jobs) == 2  # both workers pulled from the same pool
    assert _calls(calls) == {x: 1 for x in range(20)}


def test_timeout_requeues_and_resumes_on_the_same_state(slurm_cluster: Any, calls: Path) -> None:
    state = slurm_cluster.shared_dir / "requeue state"

    def interrupt(jobs: list[Any]) -> None:
        _wait(lambda: len(list((state / "results").glob("*.pkl"))) >= 3)
        jobs[0]._interrupt(timeout=True)  # what SLURM sends before the time limit (USR2)

    opts = {**slurm_cluster.backend_options("requeue"), "max_num_timeout": 2}
    s = execute_map(
        partial(where, str(calls), 0.5),
        list(range(12)),
        state_dir=state,
        backend="slurm",
        n_jobs=1,
        worker_pool=True,
        on_submit=_in_thread(interrupt),
        **opts,
    )
    assert (s.done, s.failed) == (11, 1), s
    starts = {r[2] for r in s.results(default=None) if r is not None}
    assert starts == {"0", "1"}  # some tasks ran before the requeue, the rest after
    counts = _calls(calls)
    assert set(counts) == set(range(12))
    assert sum(counts.values()) <= 13  # at most the interrupted task ran twice; done only once


def test_cancelled_worker_tasks_are_reclaimed(slurm_cluster: Any, calls: Path) -> None:
    state = slurm_cluster.shared_dir / "scancel state"
    killed: list[str] = []

    def kill_one(jobs: list[Any]) -> None:
        running = state / "running"
        _wait(
            lambda: (
                running.is_dir() and sum(not n.startswith(".") for n in os.listdir(running)) >= 2
            )
        )
        # scancel sends SIGTERM, which submitit ignores, then SIGKILL after KillWait (10 s here):
        # the worker is killed mid-task some 10 s later, while the other one keeps pulling.
        subprocess.run(["scancel", jobs[0].job_id], check=True)
        killed.append(jobs[0].job_id)

    n = 60  # 0.5 s each on 2 workers: still running when KillWait ends
    s = execute_map(
        partial(where, str(calls), 0.5),
        list(range(n)),
        state_dir=state,
        backend="slurm",
        n_jobs=2,
        worker_pool=True,
        lease_s=3.0,
        on_submit=_in_thread(kill_one),
        **slurm_cluster.backend_options("scancel"),
    )
    assert killed, "the cancelling thread did not run"
    assert (s.done, s.failed, s.todo, s.running) == (n - 1, 1, 0, 0), s
    assert len(s.worker_errors) == 1 and "did not complete" in s.worker_errors[0]
    counts = _calls(calls)
    assert set(counts) == set(range(n))
    reran = [x for x, c in counts.items() if c == 2]
    assert len(reran) == 1 and sum(counts.values()) == n + 1  # killed mid-task, reclaimed once
    assert sorted(r[0] for r in s.results(default=None) if r is not None) == [
        x for x in range(n) if x != 5
    ]


def test_worker_requeues_itself_before_its_time_limit(slurm_cluster: Any, calls: Path) -> None:
    """No signal from outside: the worker sees its deadline coming and requeues between tasks."""
    state = slurm_cluster.shared_dir / "deadline state"
    # 1-minute limit, signal 15 s before, stop 37 s before that: 8 s of work per start.
    opts = {
        **slurm_cluster.backend_options("deadline"),
        "timeout_min": 1,
        "signal_delay_s": 15,
        "stop_margin_s": 37,
    }
    n = 12
    s = execute_map(
        partial(where, str(calls), 1.0),
        list(range(n)),
        state_dir=state,
        backend="slurm",
        n_jobs=1,
        worker_pool=True,
        **opts,
    )
    assert (s.done, s.failed) == (n - 1, 1), s
    starts = {r[2] for r in s.results(default=None) if r is not None}
    assert len(starts) >= 2  # requeued at least once
    assert _calls(calls) == {x: 1 for x in range(n)}  # never interrupted mid-task
