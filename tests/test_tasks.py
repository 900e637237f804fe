"""TaskStore: atomic states on plain files, leases, reclaim, done-is-final, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from runlock.errors import TaskError
from runlock.scale.tasks import TaskStore, tasks_digest

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    # Awkward on purpose: spaces, quotes and a newline must not matter anywhere.
    return tmp_path / "state dir 'q' \"dq\"\nline"


def test_layout_and_ids(state_dir: Path) -> None:
    store = TaskStore(state_dir)
    ids = store.initialize(12, tasks_digest(list(range(12))))
    assert ids[0] == "000000" and ids[-1] == "000011" and ids == sorted(ids)
    for sub in ("running", "results", "failed", "logs"):
        assert (state_dir / sub).is_dir()
    manifest = json.loads((state_dir / "tasks.json").read_text())
    assert manifest["schema"] == 1 and manifest["n_tasks"] == 12
    assert store.counts(ids).to_dict() == {
        "total": 12,
        "todo": 12,
        "running": 0,
        "done": 0,
        "failed": 0,
    }


def test_ids_widen_for_large_maps(tmp_path: Path) -> None:
    ids = TaskStore(tmp_path).initialize(1_234_567)
    assert ids[-1] == "1234566" and len(ids[0]) == 7


@pytest.mark.parametrize(
    ("n", "tasks"),
    [(3, [1, 2, 3]), (2, [1, 2]), (3, [1, 2, 4])],
    ids=["same", "other-count", "other-content"],
)
def test_resume_checks_task_list(tmp_path: Path, n: int, tasks: list[int]) -> None:
    TaskStore(tmp_path).initialize(3, tasks_digest([1, 2, 3]))
    if tasks == [1, 2, 3]:
        assert len(TaskStore(tmp_path).initialize(n, tasks_digest(tasks))) == 3
    else:
        with pytest.raises(TaskError, match="different task list") as info:
            TaskStore(tmp_path).initialize(n, tasks_digest(tasks))
        assert "new state_dir" in str(info.value)


def test_unpicklable_tasks_have_no_digest() -> None:
    import threading

    assert tasks_digest([threading.Lock()]) is None  # only the task count is checked then
    assert tasks_digest([1, 2]) != tasks_digest([2, 1])


def test_claim_is_exclusive(state_dir: Path) -> None:
    a, b = TaskStore(state_dir, owner="a"), TaskStore(state_dir, owner="b")
    ids = a.initialize(2)
    assert a.claim(ids[0])
    assert not b.claim(ids[0])
    assert a.claim_owner(ids[0]) == "a"
    b.release(ids[0])  # not b's claim: must stay
    assert a.claim_owner(ids[0]) == "a"
    a.release(ids[0])
    assert b.claim(ids[0])


def test_expired_claim_is_reclaimed_fresh_one_is_not(state_dir: Path) -> None:
    a = TaskStore(state_dir, owner="a", lease_s=5)
    b = TaskStore(state_dir, owner="b", lease_s=5)
    ids = a.initialize(2)
    assert a.claim(ids[0]) and a.claim(ids[1])
    old = time.time() - 60
    os.utime(state_dir / "running" / ids[0], (old, old))  # a stopped heart-beating long ago
    assert b.claim(ids[0]) and b.claim_owner(ids[0]) == "b"
    assert not b.claim(ids[1])
    assert not [p for p in (state_dir / "running").iterdir() if p.name.startswith(".")]


def test_done_is_final_late_finisher_discarded(state_dir: Path) -> None:
    a = TaskStore(state_dir, owner="a", lease_s=1)
    b = TaskStore(state_dir, owner="b", lease_s=1)
    (tid,) = a.initialize(1)
    assert a.claim(tid)
    old = time.time() - 10
    os.utime(state_dir / "running" / tid, (old, old))
    assert b.claim(tid)
    assert b.complete(tid, "from b")
    assert not a.complete(tid, "from a")  # late finisher of a reclaimed task
    assert a.result(tid) == "from b"
    a.fail(tid, RuntimeError("late failure"))  # a failure after done changes nothing
    assert a.failure(tid) is None
    assert not b.claim(tid)  # done: nothing to claim
    assert a.counts([tid]).done == 1
    assert not [p for p in (state_dir / "results").iterdir() if p.name.startswith(".")]


def test_failure_record_and_retry(state_dir: Path) -> None:
    store = TaskStore(state_dir, owner="w")
    (tid,) = store.initialize(1)
    assert store.claim(tid)
    try:
        raise KeyError("missing key")
    except KeyError as exc:
        store.fail(tid, exc, launch="L1")
    rec = store.failure(tid)
    assert rec is not None
    assert rec["type"] == "builtins.KeyError" and "missing key" in rec["message"]
    assert "Traceback" in rec["traceback"] and "raise KeyError" in rec["traceback"]
    assert rec["launch"] == "L1" and rec["owner"] == "w"
    assert store.counts([tid]).failed == 1
    assert store.claim(tid)  # failed is not final: a later launch retries it
    assert store.complete(tid, 42)
    assert store.failure(tid) is None and store.result(tid) == 42


def test_missing_result_is_a_task_error(state_dir: Path) -> None:
    store = TaskStore(state_dir)
    (tid,) = store.initialize(1)
    with pytest.raises(TaskError, match=tid):
        store.result(tid)
    with pytest.raises(TaskError, match="lease_s"):
        TaskStore(state_dir, lease_s=0)


def test_heartbeat_keeps_claims_fresh(state_dir: Path) -> None:
    a = TaskStore(state_dir, owner="a", lease_s=0.4)
    b = TaskStore(state_dir, owner="b", lease_s=0.4)
    (tid,) = a.initialize(1)
    assert a.claim(tid)
    a.start_heartbeat()
    try:
        time.sleep(1.0)
        assert not b.claim(tid)
    finally:
        a.stop_heartbeat()
    time.sleep(0.6)
    assert b.claim(tid)  # heart stopped: the lease runs out


def test_release_all_frees_every_claim(state_dir: Path) -> None:
    a = TaskStore(state_dir, owner="a")
    ids = a.initialize(3)
    assert all(a.claim(i) for i in ids)
    a.release_all()
    assert a.running_ids() == set()


_CLAIMER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from runlock.scale.tasks import TaskStore
    store = TaskStore(Path(sys.argv[1]), lease_s=float(sys.argv[2]))
    ids = store.initialize(int(sys.argv[3]))
    mode = sys.argv[4]
    if mode == "hold":          # claim everything, heartbeat, then hang until killed
        for i in ids:
            store.claim(i)
        store.start_heartbeat()
        print("claimed", flush=True)
        time.sleep(3600)
    else:                       # race: claim and complete whatever we can
        for _ in range(3):
            for i in ids:
                if store.claim(i):
                    store.complete(i, store.owner)
    """
)


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-c", _CLAIMER, *args], env=env, stdout=subprocess.PIPE, text=True
    )


def test_sigkilled_worker_claims_expire_and_are_reclaimed(state_dir: Path) -> None:
    proc = _spawn(str(state_dir), "1.0", "5", "hold")
    assert proc.stdout is not None and proc.stdout.readline().strip() == "claimed"
    store = TaskStore(state_dir, owner="rescuer", lease_s=1.0)
    ids = store.initialize(5)
    assert not any(store.claim(i) for i in ids)  # the holder is alive and heart-beating
    time.sleep(1.5)
    assert not any(store.claim(i) for i in ids)  # still alive: leases refreshed
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.2)
    assert all(store.claim(i) for i in ids)
    for i in ids:
        assert store.complete(i, "rescued")
    assert store.counts(ids).done == 5


def test_concurrent_processes_complete_each_task_exactly_once(state_dir: Path) -> None:
    n = 200
    TaskStore(state_dir).initialize(n)
    procs = [_spawn(str(state_dir), "60", str(n), "race") for _ in range(4)]
    for p in procs:
        assert p.wait(timeout=60) == 0
    store = TaskStore(state_dir)
    ids = store.initialize(n)
    assert store.counts(ids).done == n
    owners = {store.result(i) for i in ids}
    assert 1 <= len(owners) <= 4
    assert store.running_ids() == set()
    assert not [p for p in (state_dir / "results").iterdir() if p.name.startswith(".")]


def test_resume_scan_is_one_scandir_per_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What makes resuming cheap, counted rather than timed (bench/taskmap.py times 10,000):
    # one directory scan per state folder, however many tasks.
    store = TaskStore(tmp_path)
    ids = store.initialize(2_000)
    for i in ids[:1_990]:
        os.close(os.open(tmp_path / "results" / f"{i}.pkl", os.O_CREAT | os.O_WRONLY))
    scanned: list[str] = []
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        scanned.append(Path(path).name)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    pending = store.pending(ids)
    counts = store.counts(ids)
    monkeypatch.undo()
    assert pending == ids[1_990:] and counts.done == 1_990 and counts.todo == 10
    assert sorted(scanned) == ["failed", "results", "results", "running"]  # pending + counts
