"""The run's files (issue 13): run.log is the whole log (prints, warnings, logging, the failure's
traceback) while the console still gets everything; files get the user's umask; the console's
"completed in" is the lock's duration; Input(match=, ignore=) reaches the hashes; the snapshot
size warning names the stage option. Real stage scripts run as subprocesses, real files."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git, write_script

from runlock.record.lockfile import load_lock


def _run(script: Path, *args: str, umask: int = -1) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    raw = subprocess.run([sys.executable, str(script), *args], cwd=script.parent, capture_output=True,
                         env=env, umask=umask, timeout=120)
    # decoded by hand: text=True would turn the carriage returns into newlines
    return subprocess.CompletedProcess(raw.args, raw.returncode, raw.stdout.decode(), raw.stderr.decode())


def _only_run(results: Path, stage: str) -> Path:
    runs = [p.parent for p in (results / stage).glob("*/run.lock")]
    assert len(runs) == 1, runs
    return runs[0]


TEE_SCRIPT = """
import logging, sys, warnings
import runlock

log = logging.getLogger("user")

@runlock.stage(snapshot=False)
def train(epochs: int = 3, fail: bool = False):
    print("hello from print")
    print("partial", end="")
    print(" line")
    assert sys.stdout.isatty() == sys.__stdout__.isatty()
    assert sys.stdout.fileno() == sys.__stdout__.fileno() and sys.stdin is sys.__stdin__
    warnings.warn("careful: deprecated thing")
    log.info("a logging record")
    for i in range(1, epochs + 1):                      # a tqdm-style bar on stderr
        sys.stderr.write(f"\\rprogress {i}/{epochs}")
    sys.stderr.write("\\n")
    if fail:
        raise ValueError("boom in the stage")
    return 1

if __name__ == "__main__":
    before = (sys.stdout, sys.stderr)
    try:
        runlock.main(train)
    finally:
        assert (sys.stdout, sys.stderr) == before, "streams not restored"
        print("after the run")
"""


def test_run_log_holds_prints_warnings_logging_and_console_still_gets_them(tmp_path: Path, results: Path) -> None:
    script = write_script(tmp_path / "train.py", TEE_SCRIPT)
    proc = _run(script)
    assert proc.returncode == 0, proc.stderr
    # the console gets everything, unchanged (carriage returns included)
    assert "hello from print\npartial line\n" in proc.stdout
    assert "after the run" in proc.stdout
    assert "\rprogress 1/3\rprogress 2/3\rprogress 3/3\n" in proc.stderr
    assert "careful: deprecated thing" in proc.stderr
    log = (_only_run(results, "train") / "run.log").read_text()
    assert "hello from print\npartial line\n" in log
    assert "careful: deprecated thing" in log
    assert "a logging record" in log
    assert "progress 3/3\n" in log and "progress 1/3" not in log  # a bar's last state
    assert "after the run" not in log  # the tee ended with the run
    assert log.count("hello from print") == 1


def test_run_log_holds_the_failure_traceback(tmp_path: Path, results: Path) -> None:
    script = write_script(tmp_path / "train.py", TEE_SCRIPT)
    proc = _run(script, "fail=true")
    assert proc.returncode == 1, proc.stderr
    assert "after the run" in proc.stdout  # streams restored after a failure too
    log = (_only_run(results, "train") / "run.log").read_text()
    assert "hello from print" in log
    assert "Traceback (most recent call last)" in log
    assert 'raise ValueError("boom in the stage")' in log
    assert "ValueError: boom in the stage" in log


def test_nested_runs_restore_the_streams_and_keep_their_own_prints(tmp_path: Path, results: Path) -> None:
    script = write_script(tmp_path / "nested.py", """
        import sys
        import runlock

        @runlock.stage(snapshot=False)
        def inner(x: int = 1):
            print("inner says hi")
            raise RuntimeError("inner fails")

        @runlock.stage(snapshot=False)
        def outer(x: int = 1):
            print("outer before")
            try:
                inner(x=2)
            except RuntimeError:
                pass
            print("outer after")

        if __name__ == "__main__":
            before = (sys.stdout, sys.stderr)
            outer()
            assert (sys.stdout, sys.stderr) == before
            print("restored")
    """)
    proc = _run(script)
    assert proc.returncode == 0, proc.stderr
    assert "restored" in proc.stdout
    outer_log = (_only_run(results, "outer") / "run.log").read_text()
    inner_log = (_only_run(results, "inner") / "run.log").read_text()
    assert "outer before" in outer_log and "outer after" in outer_log
    assert "inner says hi" in inner_log and "RuntimeError: inner fails" in inner_log
    assert "outer after" not in inner_log and "outer before" not in inner_log
    assert outer_log.count("inner says hi") == 1


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_get_the_users_umask(tmp_path: Path, results: Path, umask: int) -> None:
    script = write_script(tmp_path / "metrics.py", """
        import runlock

        @runlock.stage(snapshot=False)
        def train(lr: float = 0.1):
            runlock.log_metrics({"loss": 0.5}, step=1)
            return {"acc": 0.9}

        if __name__ == "__main__":
            runlock.main(train)
    """)
    proc = _run(script, umask=umask)
    assert proc.returncode == 0, proc.stderr
    run = _only_run(results, "train")
    for name in ("run.lock", "config.yaml", "result.json", "run.log", "metrics.jsonl"):
        mode = stat.S_IMODE((run / name).stat().st_mode)
        assert mode == 0o666 & ~umask, (name, oct(mode))


def test_completed_in_is_the_locks_duration(tmp_path: Path, results: Path) -> None:
    # a collector still busy after the function returned (like a large input still hashing)
    script = write_script(tmp_path / "slow.py", """
        import time
        import runlock

        class Slow:
            key = "slow"
            def start(self, ctx):
                return None
            def finish(self, ctx):
                time.sleep(0.6)
                return {"done": True}

        @runlock.stage(snapshot=False, collectors=[Slow()])
        def train(lr: float = 0.1):
            return 1

        if __name__ == "__main__":
            runlock.main(train)
    """)
    proc = _run(script)
    assert proc.returncode == 0, proc.stderr
    run = _only_run(results, "train")
    m = re.search(r"completed in ([0-9.]+) s \(the function returned after [0-9.]+ s; "
                  r"data hashes finished [0-9.]+ s later\)", proc.stderr)
    assert m, proc.stderr
    assert abs(float(m.group(1)) - load_lock(run)["timing"]["duration_s"]) < 0.0015
    assert m.group(0) in (run / "run.log").read_text()


def test_input_match_and_ignore_reach_the_hashes(tmp_path: Path, results: Path) -> None:
    data = tmp_path / "data"
    (data / "tmp").mkdir(parents=True)
    (data / "a.csv").write_text("1,2\n")
    (data / "b.csv").write_text("3,4\n")
    (data / "notes.txt").write_text("not data\n")
    (data / "tmp" / "c.csv").write_text("scratch\n")
    script = write_script(tmp_path / "inp.py", f"""
        from dataclasses import dataclass
        import runlock

        @dataclass
        class Config:
            data: str = runlock.Input({str(data)!r}, match=["*.csv"], ignore="tmp/*")
            whole: str = runlock.Input({str(data)!r})

        @runlock.stage(snapshot=False)
        def train(cfg: Config):
            return 1

        if __name__ == "__main__":
            runlock.main(train)
    """)
    proc = _run(script)
    assert proc.returncode == 0, proc.stderr
    lock = load_lock(_only_run(results, "train"))
    entry = lock["data"]["data"]
    assert entry["match"] == ["*.csv"] and entry["ignore"] == ["tmp/*"]
    assert entry["files"] == 2
    assert lock["data"]["whole"]["files"] == 4 and "match" not in lock["data"]["whole"]
    assert entry["hash"] != lock["data"]["whole"]["hash"]


@pytest.mark.parametrize("bad", [[""], [3], 5])
def test_input_refuses_bad_patterns(bad: object) -> None:
    import runlock
    from runlock.errors import UsageError

    with pytest.raises(UsageError, match="match=") as info:
        runlock.Input("data", match=bad)
    assert info.value.exit_code == 2


def test_snapshot_size_warning_names_the_stage_option(git_repo: Path, results: Path) -> None:
    (git_repo / "big.bin").write_bytes(b"x" * 4096)
    write_script(git_repo / "train.py", """
        import runlock

        @runlock.stage(snapshot_max_file_mb=0.001)
        def train(lr: float = 0.1):
            return 1

        if __name__ == "__main__":
            runlock.main(train)
    """)
    git(git_repo, "add", "train.py")
    git(git_repo, "commit", "-q", "-m", "stage")
    proc = _run(git_repo / "train.py")
    assert proc.returncode == 0, proc.stderr
    log = (_only_run(results, "train") / "run.log").read_text()
    assert "big.bin" in log and "snapshot_max_file_mb" in log and "snapshot_exclude" in log
