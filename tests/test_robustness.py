"""Caches and robustness (issue 11, items 9, 10, 12, 13): damaged caches are moved aside and
rebuilt, hostile or truncated locks are refused, garbage in a task store is reported and
skipped, and map workers stop when their parent dies. Real files, real SQLite, real processes."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from locks import make_run

import runlock
from runlock import _yaml
from runlock.browse.index import RunIndex, index_path
from runlock.browse.query import runs
from runlock.cli import main
from runlock.errors import LockFileError
from runlock.hashing import hash_path
from runlock.hashing.cache import HashCache
from runlock.record import lockfile
from runlock.record.lockfile import load_lock
from runlock.record.walk import iter_run_dirs
from runlock.scale.taskmap import execute_map


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _index_with_runs(root: Path, n: int) -> list[Path]:
    made = [make_run(root, config={"lr": i, "name": f"run number {i} " * 4}) for i in range(n)]
    assert len(runs(root=root)) == n  # builds the index; closing it checkpoints the WAL
    for suffix in ("-wal", "-shm"):
        assert not Path(f"{index_path(root)}{suffix}").exists()
    return made


def _warnings(caplog: pytest.LogCaptureFixture, word: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if word in r.getMessage()]


# -- item 9: the run index and the hash cache are caches -------------------------------------


def test_index_with_damaged_pages_is_moved_aside_and_rebuilt_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    _index_with_runs(tmp_path, 200)
    path = index_path(tmp_path)
    data = bytearray(path.read_bytes())
    assert len(data) > 3 * 4096
    for page in range(4096, len(data), 4096):  # the header stays valid: only pages are bad
        data[page + 100 : page + 400] = b"\xff" * 300
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="runlock.browse.index"):
        assert len(runs(root=tmp_path)) == 200
        assert len(runs(root=tmp_path, where=["lr>=100"])) == 100
        code, out, _ = cli(capsys, "--root", str(tmp_path), "ls", "--limit", "3")
    assert code == 0 and len(out.splitlines()) == 4
    assert len(_warnings(caplog, "corrupt")) == 1  # said once, then a healthy index
    # moved aside once (with its -wal/-shm when sqlite had opened them), then rebuilt
    aside = [p.name for p in path.parent.glob("index.sqlite.corrupt-*")
             if not p.name.endswith(("-wal", "-shm", "-journal"))]
    assert len(aside) == 1, aside


def test_undecodable_text_in_the_index_is_corruption_not_an_error_forever(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _index_with_runs(tmp_path, 3)
    with sqlite3.connect(index_path(tmp_path)) as conn:  # a bad cell, as a damaged page gives
        conn.execute("UPDATE runs SET config = CAST(x'ff80' AS TEXT), stage = CAST(x'c3' AS TEXT)")
    with caplog.at_level(logging.WARNING, logger="runlock.browse.index"):
        assert sorted(r.config["lr"] for r in runs(root=tmp_path)) == [0, 1, 2]
        assert len(runs(root=tmp_path, stage="train")) == 3
    assert len(_warnings(caplog, "corrupt")) == 1
    assert list(tmp_path.joinpath(".runlock").glob("index.sqlite.corrupt-*"))


def _tree(root: Path) -> Path:
    for i in range(30):
        f = root / f"part{i % 3}" / f"f{i}.txt"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(str(i) * 50)
    return root


def test_hash_cache_with_undecodable_cells_is_rebuilt_once_not_disabled_every_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = _tree(tmp_path / "data")
    path = tmp_path / ".runlock" / "hashcache.sqlite"
    with HashCache(path) as cache:
        good = hash_path(d, cache=cache)["hash"]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE trees SET pairs = CAST(x'ff' || pairs AS TEXT)")
        conn.execute("UPDATE entries SET digest = CAST(x'fe' AS TEXT)")
    with caplog.at_level(logging.WARNING, logger="runlock"):
        for _ in range(3):  # three later "runs", each with its own cache object
            with HashCache(path) as cache:
                assert hash_path(d, cache=cache)["hash"] == good
                assert not cache._disabled
    messages = [r.getMessage() for r in caplog.records if r.name == "runlock"]
    assert len(messages) == 1 and "corrupt" in messages[0], messages
    assert len(list(path.parent.glob("hashcache.sqlite.corrupt-*[0-9]"))) == 1


@dataclass
class _DataCfg:
    data: str = runlock.Input("")


@runlock.stage(snapshot=False, hash_outputs=False)
def _consume(cfg: _DataCfg) -> int:
    return 1


def test_runs_after_a_damaged_hash_cache_still_record_data_hashes(results: Path) -> None:
    d = _tree(results.parent / "data")
    _consume(data=str(d))
    path = results / ".runlock" / "hashcache.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE trees SET pairs = CAST(x'ff' || pairs AS TEXT)")
    _consume(data=str(d))
    _consume(data=str(d))
    run_dirs = sorted((results / "_consume").iterdir())
    hashes = {load_lock(p)["data"]["data"].get("hash") for p in run_dirs}
    assert len(run_dirs) == 3 and len(hashes) == 1 and None not in hashes
    # the run that found the damage said so once; the next one used a rebuilt cache quietly
    # (before: "hash cache ... unavailable" in every later run, the cache never repaired)
    second, third = ((p / "run.log").read_text() for p in run_dirs[1:])
    assert second.count("hash cache") == 1 and "corrupt" in second, second
    assert "hash cache" not in third, third


# -- item 10: locks never hold aliases; a bounded size ------------------------------------------


def _billion_laughs(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["schema: 1", "id: bomb", "stage: train", "status: completed",
             'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']  # fmt: skip
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    lines += ["config: {lr: *a9}", "result: {value: *a9}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_billion_laughs_lock_is_refused_by_every_reader(tmp_path: Path) -> None:
    good = make_run(tmp_path)
    bomb = _billion_laughs(tmp_path / "train" / "bomb" / "run.lock")
    assert bomb.stat().st_size < 700
    with pytest.raises(LockFileError, match="alias") as exc:
        load_lock(bomb)
    assert exc.value.exit_code == 2 and str(bomb) in str(exc.value)
    # the CLI in a child process: without the fix it ran for minutes (the timeout fails it)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for args in (["ls"], ["show", str(bomb.parent)]):
        res = subprocess.run(
            [sys.executable, "-m", "runlock", "--root", str(tmp_path), *args],
            capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
        )  # fmt: skip
        assert "alias" in res.stderr, res.stderr
        if args == ["ls"]:
            assert res.returncode == 0 and good.name in res.stdout and "bomb" not in res.stdout
        else:
            assert res.returncode == 2
    with RunIndex(tmp_path) as idx:
        idx.refresh()
        assert [p for p, _ in idx.broken()] == [str(bomb)]


def test_other_yaml_keeps_aliases() -> None:
    # task files and CLI values are the user's YAML; only runlock's own files refuse aliases
    assert _yaml.load("base: &b {lr: 1}\nrun: *b\n") == {"base": {"lr": 1}, "run": {"lr": 1}}
    with pytest.raises(_yaml.AliasError):
        _yaml.load_data("base: &b {lr: 1}\nrun: *b\n")


def test_a_lock_larger_than_the_bound_is_refused_unparsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make_run(tmp_path, config={"blob": "x" * 5000})
    monkeypatch.setattr(lockfile, "MAX_LOCK_BYTES", 4096)
    with pytest.raises(LockFileError, match="larger than"):
        load_lock(run)
    with RunIndex(tmp_path, in_memory=True) as idx:
        idx.refresh()
        [(path, reason)] = idx.broken()
    assert path == str(run / "run.lock") and "larger than" in reason


# -- item 12: truncated locks, a stray lock in the root, garbage in a task store --------------


def test_a_truncated_lock_is_unreadable_not_a_completed_run_missing_sections(
    tmp_path: Path,
) -> None:
    kept = make_run(tmp_path)
    cut = make_run(tmp_path, result={"acc": 0.75})
    raw = (cut / "run.lock").read_bytes()
    (cut / "run.lock").write_bytes(raw[: raw.rindex(b"0.75") + 2])  # "...acc: 0." parses!
    with pytest.raises(LockFileError, match="truncated"):
        load_lock(cut)
    assert [r.dir for r in runs(root=tmp_path)] == [kept]
    with RunIndex(tmp_path) as idx:
        idx.refresh()
        [(path, reason)] = idx.broken()
    assert path == str(cut / "run.lock") and "truncated" in reason


def test_a_stray_lock_in_the_results_root_hides_no_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run(tmp_path, stage="prep")
    b = make_run(tmp_path, sub="exp", stage="train")
    shutil.copy(a / "run.lock", tmp_path / "run.lock")
    assert sorted(iter_run_dirs(tmp_path)) == sorted([a, b])
    assert sorted(r.dir for r in runs(root=tmp_path)) == sorted([a, b])
    code, out, err = cli(capsys, "--root", str(tmp_path), "ls")
    assert code == 0 and a.name in out and b.name in out
    assert str(tmp_path / "run.lock") in err and "not a run" in err
    (tmp_path / "run.lock").unlink()  # once removed, no longer reported
    code, out, err = cli(capsys, "--root", str(tmp_path), "ls")
    assert code == 0 and "run.lock" not in err


def _double(x: int) -> int:
    if x == 2:
        raise ValueError(f"task {x} fails")
    return 2 * x


def test_garbage_failure_records_are_reported_and_the_task_runs_again(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = execute_map(
        _double, list(range(5)), state_dir=state, backend="inprocess", progress=False
    )
    assert (first.done, first.failed) == (4, 1)
    for garbage in (b"\xff\xfe{ not json", b"[1, 2]", None):
        record = state / "failed" / "000002.json"
        if record.is_dir():
            shutil.rmtree(record)
        else:
            record.unlink()
        if garbage is None:
            record.mkdir()  # not even a file
        else:
            record.write_bytes(garbage)
        again = execute_map(
            _double, list(range(5)), state_dir=state, backend="inprocess", progress=False
        )  # fmt: skip
        assert (again.done, again.failed) == (4, 1), garbage
        assert again.failures["000002"]["message"] == "task 2 fails"  # run again, re-recorded


def test_a_claim_that_is_a_directory_is_reclaimed_after_its_lease(tmp_path: Path) -> None:
    state = tmp_path / "state"
    execute_map(_double, [0, 1], state_dir=state, backend="inprocess", progress=False)
    shutil.rmtree(state / "results")
    (state / "results").mkdir()
    claim = state / "running" / "000001"
    (claim / "inside").mkdir(parents=True)
    long_ago = time.time() - 3600  # a lease expired long ago, whatever the machine's speed
    os.utime(claim, (long_ago, long_ago))
    summary = execute_map(
        _double, [0, 1], state_dir=state, backend="inprocess", progress=False, lease_s=1.0
    )  # fmt: skip
    assert summary.ok and summary.results() == [0, 2]
    assert not claim.exists()


# -- item 13: workers stop when their parent dies ---------------------------------------------

_PARENT = """
import os, sys, time
from pathlib import Path
from runlock.scale.taskmap import execute_map

out = Path(sys.argv[1])

def task(i):
    with open(out / "log.txt", "a") as f:
        f.write(f"{os.getpid()} start {i}\\n")
    time.sleep(0.4)
    with open(out / "log.txt", "a") as f:
        f.write(f"{os.getpid()} end {i}\\n")
    return i

if __name__ == "__main__":
    execute_map(task, list(range(30)), state_dir=out / "state", backend="joblib", n_jobs=2,
                chunk_size=15, progress=False)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_map_workers_stop_when_their_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(_PARENT)
    log = tmp_path / "log.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env, cwd=tmp_path,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (log.exists() and log.read_text().count(" end ") >= 2):
            assert parent.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
    lines_at_kill = len(log.read_text().splitlines())
    workers = {int(line.split()[0]) for line in log.read_text().splitlines()}
    assert len(workers) == 2
    deadline = time.monotonic() + 120  # a bound for a slow machine, not a measured time
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = log.read_text().splitlines()
    started_after = [line for line in lines[lines_at_kill:] if " start " in line]
    # without a parent they went on with their chunks (15 tasks each); now at most the task
    # each began before it noticed
    assert len(started_after) <= 2 * len(workers), started_after
    assert not any(_alive(pid) for pid in workers)
    assert os.listdir(tmp_path / "state" / "running") == []  # claims released: resume at once
    assert len(os.listdir(tmp_path / "state" / "results")) < 30
