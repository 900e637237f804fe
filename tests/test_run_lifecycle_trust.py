"""Nothing is lost (issue 11, items 7, 8, 11): a killed run keeps its provenance, a stopped run
is not called crashed, a vanished run directory or a full disk fails the run loudly.

Real processes, real signals, a real git repository and (as root) a real tiny tmpfs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import git, write_script

import runlock
from runlock.browse.query import effective_status
from runlock.capture.environment import hostname, process_start, process_state
from runlock.errors import RunDirError
from runlock.record.lockfile import load_lock

TIMEOUT_S = 90.0  # generous: only ever waited out when something is broken


def _wait_for(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _rmtree(path: Path) -> bool:
    """Delete a tree a live heartbeat writes into (a new temporary file can race the walk)."""
    try:
        shutil.rmtree(path)
    except OSError:
        return False
    return True


def _lock_or_none(run_dir: Path) -> dict[str, Any] | None:
    try:
        return load_lock(run_dir)
    except Exception:  # noqa: BLE001 - not written yet
        return None


def _only_run_dir(results: Path, stage: str) -> Path | None:
    base = results / stage
    dirs = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    return dirs[0] if dirs else None


SLEEPER = """
import time, runlock
from dataclasses import dataclass

@dataclass
class C:
    data: str = "{data}"
    s: float = 600

@runlock.stage(track_data=("data",))
def {stage}(cfg: C):
    print("started", flush=True)
    time.sleep(cfg.s)

runlock.main({stage})
"""


@pytest.fixture
def sleeper(git_repo: Path, tmp_path: Path, results: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start a real stage script (committed in a real git repository) that sleeps."""
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(1 << 16))
    procs: list[subprocess.Popen[str]] = []

    def start(stage: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        script = write_script(git_repo / f"{stage}.py", SLEEPER.format(data=data, stage=stage))
        git(git_repo, "add", script.name)
        git(git_repo, "commit", "-q", "-m", stage)
        proc = subprocess.Popen(
            [sys.executable, str(script), "-q"], cwd=git_repo, env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait(timeout=30)


# -- item 8: kill -9 keeps the code and data provenance ------------------------------------------


def test_sigkilled_run_keeps_snapshot_and_data_hash(sleeper: Callable[..., subprocess.Popen[str]],
                                                    results: Path) -> None:
    proc = sleeper("train")
    run_dir = _wait_for("the run directory", lambda: _only_run_dir(results, "train"))

    def provenance() -> dict[str, Any] | None:
        lock = _lock_or_none(run_dir)
        if not lock:
            return None
        commit = ((lock.get("git") or {}).get("snapshot") or {}).get("commit")
        return lock if commit and (lock.get("data") or {}).get("data", {}).get("hash") else None

    _wait_for("the snapshot and the data hash in the running lock", provenance)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    lock = load_lock(run_dir)
    assert lock["status"] == "running"  # never finalised: shown as crashed
    assert len(lock["git"]["snapshot"]["commit"]) == 40
    assert lock["data"]["data"]["hash"] and lock["data"]["data"]["algorithm"]
    (record,) = runlock.runs(root=results)
    assert record.status == "crashed"


# -- item 7: a stopped (or merely slow) live process is not crashed -------------------------------


def test_stopped_run_is_stopped_not_crashed(sleeper: Callable[..., subprocess.Popen[str]], results: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # the run beats once an hour; to the reader a heartbeat is stale after 0.2 s
    proc = sleeper("slow", env={"RUNLOCK_HEARTBEAT_S": "3600"})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    monkeypatch.setenv("RUNLOCK_HEARTBEAT_STALE_S", "0.2")
    time.sleep(0.5)
    (record,) = runlock.runs(root=results)
    assert record.status == "running"  # stale heartbeat, live pid that started with the run

    os.kill(proc.pid, signal.SIGSTOP)
    _wait_for("the process to stop", lambda: process_state(proc.pid) == "T")
    (record,) = runlock.runs(root=results)
    assert record.status == "stopped"
    assert runlock.runs(root=results, status="crashed") == []
    rm = subprocess.run(
        [sys.executable, "-m", "runlock", "rm", "--root", str(results), "--status", "crashed", "--force"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert rm.returncode == 0, rm.stderr
    assert Path(record.dir).is_dir()  # not deleted

    os.kill(proc.pid, signal.SIGCONT)
    _wait_for("the process to run again", lambda: process_state(proc.pid) != "T")
    (record,) = runlock.runs(root=results)
    assert record.status == "running"

    proc.kill()
    proc.wait(timeout=30)
    (record,) = runlock.runs(root=results)
    assert record.status == "crashed"


def test_reused_pid_is_no_alibi() -> None:
    """A live pid on this host with a stale heartbeat is the run only if it started with it."""
    me, host, now = os.getpid(), hostname(), time.time()
    stale = {"pid": me, "hostname": host, "heartbeat_ts": now - 3600, "now_ts": now, "this_host": host}
    mine = process_start(me)
    if mine is None:
        pytest.skip("no /proc here: judged by the pid alone")
    assert effective_status("running", pid_start=lambda: mine, **stale) == "running"  # type: ignore[arg-type]
    other = "1@" + mine.split("@", 1)[1]
    assert effective_status("running", pid_start=lambda: other, **stale) == "crashed"  # type: ignore[arg-type]
    # a lock without pid_start (older runlock): its stale heartbeat decides, as before
    assert effective_status("running", pid_start=lambda: None, **stale) == "crashed"  # type: ignore[arg-type]
    # a fresh heartbeat: running without reading the lock again
    fresh = {**stale, "heartbeat_ts": now}
    assert effective_status("running", pid_start=None, **fresh) == "running"  # type: ignore[arg-type]


VANISHING = """
import sys, time, runlock
from dataclasses import dataclass
from pathlib import Path

@dataclass
class C:
    go: str = "{go}"

@runlock.stage(snapshot=False)
def vanishing(cfg: C):
    print(runlock.current_run().dir, flush=True)
    while not Path(cfg.go).exists():
        time.sleep(0.02)
    time.sleep(0.3)  # a few heartbeats with the directory gone
    return {{"loss": 0.5}}

runlock.main(vanishing)
"""


def test_run_whose_directory_vanished_fails_loudly(tmp_path: Path, results: Path) -> None:
    go = tmp_path / "go"
    script = write_script(tmp_path / "vanishing.py", VANISHING.format(go=go))
    proc = subprocess.Popen(
        [sys.executable, str(script), "-q"], cwd=tmp_path, env={**os.environ, "RUNLOCK_HEARTBEAT_S": "0.05"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    run_dir = Path(proc.stdout.readline().strip())
    _wait_for("the running lock", lambda: _lock_or_none(run_dir))
    _wait_for("the directory deleted", lambda: _rmtree(run_dir))  # what `rm --force` did to a live run
    go.touch()
    _out, err = proc.communicate(timeout=TIMEOUT_S)

    assert proc.returncode == 1, err
    assert "was deleted while the run was going on" in err
    # the stage's own result file brought the directory back: the lock there says failed, and why
    lock = load_lock(run_dir)
    assert lock["status"] == "failed"
    assert lock["error"]["type"].endswith("RunDirLostError")
    assert "deleted" in lock["error"]["message"]


# -- item 11: a full disk ------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 512 KiB tmpfs (root only; skipped where mount is not permitted)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"mount not permitted here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(where: Path) -> None:
    """Fill the file system holding ``where`` to the last byte."""
    with open(where / "filler", "wb", buffering=0) as f:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    f.write(b"x" * size)
            except OSError:
                pass


def test_full_disk_at_start_leaves_no_lockless_directory(tiny_disk: Path) -> None:
    root = tiny_disk / "results"
    root.mkdir()
    _fill(tiny_disk)

    @runlock.stage(snapshot=False, root=str(root))
    def full(x: int = 1) -> int:
        return x

    with pytest.raises(RunDirError, match="No space left on device") as info:
        full()
    assert info.value.exit_code == 2
    assert "Traceback" not in str(info.value)
    left = [p for p in root.rglob("*") if p.is_dir()]
    assert all((p / "run.lock").is_file() for p in left if p.parent.name == "full"), left
    assert not (root / "full").exists() or not any((root / "full").iterdir())


FILLER = """
import runlock
from dataclasses import dataclass
from pathlib import Path

@dataclass
class C:
    n: int = 1

@runlock.stage(snapshot=False)
def filling(cfg: C):
    out = runlock.current_run().dir / "big.bin"
    with open(out, "wb") as f:  # the stage fills the disk; it catches the error itself
        try:
            while True:
                f.write(b"x" * 4096)
                f.flush()
        except OSError:
            pass
    return {"written": out.stat().st_size}

runlock.main(filling)
"""


def test_full_disk_at_the_end_records_failed_with_the_reason(tiny_disk: Path, tmp_path: Path) -> None:
    root = tiny_disk / "results"
    script = write_script(tmp_path / "filling.py", FILLER)
    done = subprocess.run(
        [sys.executable, str(script), "-q"], cwd=tmp_path, env={**os.environ, "RUNLOCK_RESULTS": str(root)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "No space left on device" in done.stderr
    (run_dir,) = (root / "filling").iterdir()
    lock = load_lock(run_dir)
    assert lock["status"] == "failed"  # not "running" (which readers show as crashed)
    assert "No space left on device" in lock["error"]["message"]
    assert lock["timing"]["end"] is not None
