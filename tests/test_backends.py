"""Backends (inprocess, joblib; slurm's error paths) and execute_map without a cluster."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from runlock.errors import BackendError, TaskError, UsageError
from runlock.scale.backends import DEADLINE_ENV, RequeueRequest, get_backend
from runlock.scale.taskmap import MapSummary, execute_map
from runlock.scale.tasks import TaskCounts

SRC = Path(__file__).resolve().parents[1] / "src"

# --- task functions: module level, so workers import them by reference -----------------------


def square(x: int) -> int:
    if x % 5 == 3:
        raise ValueError(f"bad input {x}")
    return x * x


def counted(calls: str, fail: bool, x: int) -> int:
    """Leaves one marker file per call, so tests can count executions across processes."""
    Path(calls, f"{x}-{uuid.uuid4().hex}").touch()
    if fail and x % 4 == 1:
        raise RuntimeError(f"transient failure on {x}")
    return -x


def slow(calls: str, x: int) -> int:
    Path(calls, f"{x}-{uuid.uuid4().hex}").touch()
    time.sleep(0.2)
    return x


def chatty(x: int) -> int:
    logger = logging.getLogger("user.task")
    for line in range(20):
        logger.info("task=%d line=%d %s", x, line, "x" * 2000)
    if x == 7:
        raise ValueError("seven")
    return x


def _calls(calls: Path) -> dict[int, int]:
    out: dict[int, int] = {}
    for p in calls.iterdir():
        k = int(p.name.split("-")[0])
        out[k] = out.get(k, 0) + 1
    return out


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state with space 'q'\nnl"


# --- registry and bad input --------------------------------------------------------------------


# The protocol itself (order, failures, pickling, n_jobs) is checked for every registered
# backend by tests/test_backend_conformance.py.


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (
            lambda d: get_backend("sge"),
            UsageError,
            r"unknown backend 'sge'.*inprocess, joblib, slurm",
        ),
        (lambda d: execute_map(square, [1], state_dir=d, n_jobs=0), UsageError, "n_jobs"),
        (
            lambda d: execute_map(
                square, [1], state_dir=d, backend=get_backend("inprocess"), n_jobs=1, folder="x"
            ),
            UsageError,
            r"backend options \['folder'\]",
        ),
        (
            lambda d: execute_map(square, [1], state_dir=d, backend="nope"),
            UsageError,
            "unknown backend",
        ),
    ],
    ids=["unknown-backend", "zero-jobs", "options-with-instance", "unknown-backend-in-map"],
)
def test_bad_input(state_dir: Path, call: Any, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=re.compile(pattern, re.DOTALL)):
        call(state_dir)


def test_state_dir_of_another_task_list(state_dir: Path) -> None:
    execute_map(square, [1, 2], state_dir=state_dir, backend="inprocess")
    with pytest.raises(TaskError, match="different task list"):
        execute_map(square, [1, 2, 3], state_dir=state_dir, backend="inprocess")


def test_missing_submitit_names_the_extra(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["submitit"] = None  # as if not installed
        from runlock.scale.backends import get_backend
        from runlock.errors import MissingDependencyError
        try:
            get_backend("slurm", folder=sys.argv[1])
        except MissingDependencyError as exc:
            assert isinstance(exc, ImportError)
            print("ERR", exc)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "ERR submitit is not installed" in out.stdout
    assert "pip install 'runlock[slurm]'" in out.stdout


def test_no_sbatch_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendError, match="SLURM is not available on this machine") as info:
        get_backend("slurm", folder=tmp_path / "submitit")
    assert isinstance(info.value, RuntimeError)


# --- execute_map on the local backends ---------------------------------------------------------


@pytest.mark.parametrize("backend", ["inprocess", "joblib"])
@pytest.mark.parametrize("worker_pool", [False, True], ids=["chunks", "pool"])
def test_map_records_failures_and_continues(
    state_dir: Path, backend: str, worker_pool: bool
) -> None:
    tasks = list(range(23))
    s = execute_map(
        square,
        tasks,
        state_dir=state_dir,
        backend=backend,
        n_jobs=2,
        chunk_size=4,
        worker_pool=worker_pool,
        progress=False,
    )
    bad = [x for x in tasks if x % 5 == 3]
    assert (s.total, s.done, s.failed, s.todo, s.running) == (23, 23 - len(bad), len(bad), 0, 0)
    assert not s.ok and s.worker_errors == ()
    assert s.results(default=None) == [None if x in bad else x * x for x in tasks]
    with pytest.raises(TaskError):
        s.results()
    rec = s.failures[s.ids[3]]
    assert rec["type"] == "builtins.ValueError" and rec["message"] == "bad input 3"
    assert "in square" in rec["traceback"] and rec["launch"] == s.launch
    json.dumps(s.to_dict())  # serializable, e.g. into run.lock


def test_resume_runs_only_what_is_left_and_retries_failures(
    state_dir: Path, tmp_path: Path
) -> None:
    calls = tmp_path / "calls"
    calls.mkdir()
    tasks = list(range(20))
    s1 = execute_map(partial(counted, str(calls), True), tasks, state_dir=state_dir, n_jobs=2)
    failed = [x for x in tasks if x % 4 == 1]
    assert s1.failed == len(failed) and s1.done == 20 - len(failed)
    assert _calls(calls) == {x: 1 for x in tasks}
    # Lose two results as if their worker died before finishing; then resume.
    (state_dir / "results" / f"{s1.ids[0]}.pkl").unlink()
    (state_dir / "results" / f"{s1.ids[2]}.pkl").unlink()
    s2 = execute_map(partial(counted, str(calls), False), tasks, state_dir=state_dir, n_jobs=2)
    assert s2.ok and s2.failures == {}
    again = set(failed) | {0, 2}
    assert _calls(calls) == {x: 2 if x in again else 1 for x in tasks}
    assert s2.results() == [-x for x in tasks]
    s3 = execute_map(partial(counted, str(calls), False), tasks, state_dir=state_dir, n_jobs=2)
    assert s3.ok and _calls(calls) == {x: 2 if x in again else 1 for x in tasks}  # nothing left


def test_inprocess_raise_errors_gives_the_real_exception(state_dir: Path) -> None:
    with pytest.raises(ValueError, match="bad input 3") as info:
        execute_map(square, range(10), state_dir=state_dir, backend="inprocess", raise_errors=True)
    assert info.traceback[-1].name == "square"
    rec = json.loads((state_dir / "failed" / "000003.json").read_text())
    assert rec["message"] == "bad input 3"  # recorded before raising


def test_lambdas_and_partials_work(state_dir: Path) -> None:
    s = execute_map(lambda x: x + 1, [1, 2, 3], state_dir=state_dir, n_jobs=2)
    assert s.results() == [2, 3, 4]


_KILLED = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from runlock.scale.taskmap import execute_map
    def fn(x):
        if x == 3:
            print("blocking", flush=True)
            time.sleep(3600)
        return -x
    execute_map(fn, list(range(10)), state_dir=Path(sys.argv[1]), backend="inprocess", lease_s=1.0)
    """
)


def test_sigkilled_worker_tasks_are_reclaimed_after_lease(state_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED, str(state_dir)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "blocking"
    assert (state_dir / "running" / "000003").exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    calls = tmp_path / "calls"
    calls.mkdir()
    s = execute_map(
        partial(counted, str(calls), False),
        list(range(10)),
        state_dir=state_dir,
        n_jobs=2,
        lease_s=1.0,
    )
    assert s.ok and s.running == 0
    assert _calls(calls) == {x: 1 for x in range(3, 10)}  # 0-2 were done before the kill
    assert s.results() == [0, -1, -2] + [-x for x in range(3, 10)]


def test_worker_logs_are_whole_lines_in_log_file(state_dir: Path, tmp_path: Path) -> None:
    log_file = tmp_path / "run.log"
    s = execute_map(
        chatty, list(range(16)), state_dir=state_dir, n_jobs=2, chunk_size=2, log_file=log_file
    )
    assert s.done == 15 and s.failed == 1
    lines = log_file.read_text().splitlines()
    user = [ln for ln in lines if " user.task: " in ln]
    assert len(user) == 16 * 20
    pattern = re.compile(r"^\S+ \S+ INFO \[[^\]]+\] user\.task: task=\d+ line=\d+ x{2000}$")
    assert all(pattern.match(ln) for ln in user)
    assert any("runlock.scale.taskmap: task 000007 failed: ValueError: seven" in ln for ln in lines)


def test_worker_logs_default_to_per_worker_files(state_dir: Path) -> None:
    execute_map(chatty, list(range(4)), state_dir=state_dir, n_jobs=2, chunk_size=1)
    files = list((state_dir / "logs").glob("*.log"))
    assert files
    assert sum(f.read_text().count(" user.task: ") for f in files) == 4 * 20


def test_events_and_progress_bar(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events: list[tuple[str, TaskCounts]] = []
    s = execute_map(
        partial(counted, str(state_dir.parent), False),
        list(range(8)),
        state_dir=state_dir,
        n_jobs=2,
        progress=True,
        on_event=lambda name, c: events.append((name, c)),
    )
    assert isinstance(s, MapSummary) and s.ok
    assert events[0][0] == "start" and events[0][1].todo == 8
    assert events[-1][0] == "finish" and events[-1][1].done == 8
    assert "tasks" in capsys.readouterr().err


def test_empty_and_fully_done_maps_start_nothing(state_dir: Path) -> None:
    assert execute_map(square, [], state_dir=state_dir / "empty").total == 0
    s = execute_map(square, [1, 2], state_dir=state_dir, backend="inprocess")
    assert s.ok
    s2 = execute_map(square, [1, 2], state_dir=state_dir, backend="inprocess")
    assert s2.ok and s2.results() == [1, 4]


def test_worker_stops_before_its_deadline_and_resumes(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "calls"
    calls.mkdir()
    tasks = list(range(12))
    monkeypatch.setenv(DEADLINE_ENV, repr(time.time() + 0.7))  # as SLURM's backend sets it
    with pytest.raises(RequeueRequest):
        execute_map(partial(slow, str(calls)), tasks, state_dir=state_dir, backend="inprocess")
    first = _calls(calls)
    assert 2 <= len(first) <= 5 and set(first.values()) == {1}  # stopped between tasks
    assert not list((state_dir / "running").iterdir())  # claims released for the next start
    monkeypatch.delenv(DEADLINE_ENV)
    s = execute_map(partial(slow, str(calls)), tasks, state_dir=state_dir, n_jobs=2)
    assert s.ok and _calls(calls) == {x: 1 for x in tasks}  # nothing ran twice
