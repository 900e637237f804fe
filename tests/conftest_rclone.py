"""pytest plugin: real rclone for the remote-store tests.

Fixtures: ``rclone_bin`` (the program; the test is skipped, or failed under ``CI=true``, when
it is missing), ``rclone_env`` (rclone isolated from the user's config), ``sftp_remote`` (a real
``rclone serve sftp`` on 127.0.0.1, started once per session on a free port, configured only
through ``RCLONE_CONFIG_<NAME>_*`` variables like a real deployment), ``code_remote`` (a bare
git repository).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _ci import unavailable

SFTP_NAME = "RLTEST"
SFTP_USER = "runlock"
SFTP_PASS = "s3cr3t-Pa55word"


@pytest.fixture(scope="session")
def rclone_bin() -> str:
    """Path of rclone; skip (or fail in CI) when it is not installed."""
    found = shutil.which("rclone")
    if found is None:
        msg = "rclone is not installed (apt-get install rclone, https://rclone.org/install/)"
        unavailable(msg)
    return found


@pytest.fixture(scope="session")
def _rclone_session_env(rclone_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # No user config file: remotes come from the environment only (and no notice about it).
    # An empty file of our own, never /dev/null: rclone saves its config by writing a temp file
    # and renaming it over the config path, which as root replaced /dev/null with a plain file
    # (and then git, reading "/dev/null", read old log lines as revisions).
    config = tmp_path_factory.mktemp("rclone-config") / "rclone.conf"
    config.write_text("")
    old = os.environ.get("RCLONE_CONFIG")
    os.environ["RCLONE_CONFIG"] = str(config)
    yield
    if old is None:
        os.environ.pop("RCLONE_CONFIG", None)
    else:
        os.environ["RCLONE_CONFIG"] = old


@pytest.fixture
def rclone_env(_rclone_session_env: None) -> str:
    return os.environ["RCLONE_CONFIG"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class SftpRemote:
    """A served directory: ``remote`` is the rclone remote string, ``root`` what it serves."""

    remote: str
    root: Path
    port: int
    password: str


@pytest.fixture(scope="session")
def sftp_remote(
    rclone_bin: str, _rclone_session_env: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SftpRemote]:
    """``rclone serve sftp`` (keeps hashes and mtimes) on 127.0.0.1 for the whole session."""
    base = tmp_path_factory.mktemp("sftp serve")
    data = base / "data"
    data.mkdir()
    port = _free_port()
    log = open(base / "serve.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [rclone_bin, "serve", "sftp", "--addr", f"127.0.0.1:{port}", "--user", SFTP_USER,
         "--pass", SFTP_PASS, "--cache-dir", str(base / "cache"), str(data)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )
    obscured = subprocess.run(
        [rclone_bin, "obscure", SFTP_PASS], capture_output=True, text=True, check=True
    ).stdout.strip()
    env = {
        f"RCLONE_CONFIG_{SFTP_NAME}_TYPE": "sftp",
        f"RCLONE_CONFIG_{SFTP_NAME}_HOST": "127.0.0.1",
        f"RCLONE_CONFIG_{SFTP_NAME}_PORT": str(port),
        f"RCLONE_CONFIG_{SFTP_NAME}_USER": SFTP_USER,
        f"RCLONE_CONFIG_{SFTP_NAME}_PASS": obscured,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deadline = time.monotonic() + 15
        while True:
            ok = subprocess.run([rclone_bin, "lsf", f"{SFTP_NAME.lower()}:"],
                                capture_output=True, check=False).returncode == 0
            if ok:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"rclone serve sftp did not start: {(base / 'serve.log').read_text()}")
            time.sleep(0.1)
        yield SftpRemote(f"{SFTP_NAME.lower()}:", data, port, SFTP_PASS)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def code_remote(tmp_path: Path) -> Path:
    """A bare git repository standing in for the project's code remote."""
    bare = tmp_path / "code remote.git"
    subprocess.run(["git", "init", "--bare", "-q", str(bare)], check=True)
    return bare
