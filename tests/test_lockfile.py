"""run.lock as data: golden files of every schema keep loading; writes are atomic; bad files
are clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runlock.errors import LockFileError
from runlock.record.lockfile import (
    SCHEMA_VERSION,
    dump_lock,
    dumps_lock,
    find_run_dir,
    load_lock,
    loads_lock,
)
from runlock.redact import redact_env, redact_url

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("path", sorted(GOLDEN.rglob("*.lock")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden_locks_keep_loading(path: Path) -> None:
    lock = load_lock(path)
    assert lock["schema"] == SCHEMA_VERSION
    assert lock["status"] in ("running", "completed", "failed", "interrupted")
    assert lock["id"] and lock["stage"] and "config" in lock
    # round trip is stable
    assert loads_lock(dumps_lock(lock)) == lock


def test_dump_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "run.lock"
    dump_lock({"schema": 1, "id": "x", "traceback": "a\nb\n"}, target)
    dump_lock({"schema": 1, "id": "y", "path": Path("/p"), "t": (1, 2)}, target)
    assert load_lock(target) == {"schema": 1, "id": "y", "path": "/p", "t": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["run.lock"]


def test_killed_writer_never_leaves_a_half_lock(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    target = tmp_path / "run.lock"
    dump_lock({"schema": 1, "id": "old"}, target)
    code = (
        "import sys; from pathlib import Path; from runlock.record.lockfile import dump_lock\n"
        "big = {'schema': 1, 'id': 'new', 'blob': ['x' * 1000] * 20000}\n"
        "while True: dump_lock(big, Path(sys.argv[1]))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)])
    import time

    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lock = load_lock(target)  # whichever version: complete, parseable
    assert lock["id"] in ("old", "new")
    if lock["id"] == "new":
        assert len(lock["blob"]) == 20000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("schema: 1\nid: [unclosed\n", "not valid YAML"),
        ("just text\n", "not a runlock lock file"),
        ("schema: 99\nid: x\n", "newer runlock"),
        ("schema: zero\n", "invalid schema version"),
    ],
)
def test_bad_lock_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "run.lock"
    p.write_text(text)
    with pytest.raises(LockFileError, match=message):
        load_lock(p)


def test_missing_lock_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LockFileError, match="No run.lock"):
        load_lock(tmp_path)


def test_find_run_dir_walks_up(tmp_path: Path) -> None:
    run = tmp_path / "results" / "train" / "r1"
    (run / "sub").mkdir(parents=True)
    dump_lock({"schema": 1}, run / "run.lock")
    assert find_run_dir(run / "sub" / "file.npy") == run
    assert find_run_dir(tmp_path / "elsewhere") is None


def test_secrets_are_redacted() -> None:
    env = {
        "AWS_SECRET_ACCESS_KEY": "abc",
        "GITHUB_TOKEN": "ghp_x",
        "DB_PASSWORD": "pw",
        "MY_API_KEY": "k",
        "WANDB_API_KEY": "k2",
        "PATH": "/usr/bin",
        "SSH_AUTH_SOCK": "/tmp/agent",
        "MLFLOW_TRACKING_URI": "https://user:hunter2@mlflow.example.com",
    }
    red = redact_env(env)
    for k in ("AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "DB_PASSWORD", "MY_API_KEY", "WANDB_API_KEY"):
        assert red[k] == "***"
    assert red["PATH"] == "/usr/bin" and red["SSH_AUTH_SOCK"] == "/tmp/agent"
    assert red["MLFLOW_TRACKING_URI"] == "https://user:***@mlflow.example.com"
    assert redact_url("https://ghp_abc@github.com/o/r.git") == "https://***@github.com/o/r.git"
    assert redact_url("ssh://git@github.com/o/r.git") == "ssh://git@github.com/o/r.git"
    assert redact_url("git@github.com:o/r.git") == "git@github.com:o/r.git"


def test_secrets_never_reach_the_lock(tmp_path: Path, results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess


    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "remote", "add", "origin", "https://bob:s3cr3t-t0ken@example.com/r.git"], cwd=repo, check=True)
    monkeypatch.setenv("RUNLOCK_API_TOKEN", "s3cr3t-t0ken")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://bob:s3cr3t-t0ken@mlflow.invalid")
    monkeypatch.chdir(repo)
    script = repo / "s.py"
    script.write_text(
        "import runlock\n"
        "@runlock.stage\n"
        "def s(x: int = 1):\n"
        "    return x\n"
        "runlock.main(s)\n"
    )
    res = subprocess.run([os.sys.executable, str(script)], cwd=repo, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    (run_dir,) = (results / "s").iterdir()
    for f in run_dir.rglob("*"):
        if f.is_file():
            assert "s3cr3t-t0ken" not in f.read_text(errors="replace"), f
    lock = load_lock(run_dir)
    assert lock["environment"]["env"]["RUNLOCK_API_TOKEN"] == "***"
    assert lock["git"]["remotes"]["origin"] == "https://bob:***@example.com/r.git"
