"""pytest plugin: a real ``mlflow server`` for the MLflow tests.

Register it from ``tests/conftest.py`` with ``pytest_plugins = ["conftest_mlflow"]``.

Fixtures: ``mlflow_server`` (session): the URL of an ``mlflow server`` on a free 127.0.0.1 port
with a SQLite backend and proxied artifacts in a temporary directory (job execution off: 6 s and
~0.5 GB instead of 11 s and ~1.9 GB), using the ``mlflow`` program next to ``sys.executable``.
When it cannot start the test is skipped with the reason, or failed under ``CI=true``.
``mlflow_server_process`` (session): the same server, started without waiting, for a module
that wants the boot to overlap its other tests.
``mlflow_env``: a test-scoped environment without a user ``MLFLOW_TRACKING_URI``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from _ci import unavailable

START_TIMEOUT_S = 60.0


def _unavailable(reason: str) -> None:
    unavailable(f"mlflow server unavailable: {reason}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


class MlflowServer:
    """An ``mlflow server`` process; :meth:`start` returns at once, :meth:`url` waits for it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.problem: str | None = None
        self._log = base / "server.log"

    def start(self) -> None:
        if self.proc is not None or self.problem is not None:
            return
        exe = Path(sys.executable).with_name("mlflow")
        if not exe.is_file():
            self.problem = (
                f"no mlflow program next to {sys.executable} (pip install 'runlock[mlflow]')"
            )
            return
        env = dict(os.environ)
        env.update(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
        env.pop("MLFLOW_TRACKING_URI", None)
        with self._log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(exe),
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                    "--backend-store-uri",
                    f"sqlite:///{self.base / 'mlflow.db'}",
                    "--artifacts-destination",
                    str(self.base / "artifacts"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own process group: stopped with its uvicorn worker
            )

    def url(self) -> str:
        """Wait until healthy; skip (or fail under CI=true) when it cannot start."""
        self.start()
        if self.problem is not None:
            _unavailable(self.problem)
        assert self.proc is not None
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(url):
            if self.proc.poll() is not None:
                tail = self._log.read_text(errors="replace")[-2000:]
                self.problem = f"mlflow server exited with {self.proc.returncode}:\n{tail}"
                _unavailable(self.problem)
            if time.monotonic() > deadline:
                self.problem = f"mlflow server not healthy after {START_TIMEOUT_S:g} s"
                _unavailable(self.problem)
            time.sleep(0.2)
        return url

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


@pytest.fixture(scope="session")
def mlflow_server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """The server process, started without waiting (request it early to overlap its ~6-40 s
    boot with other tests); stopped at the end of the session."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow server"))  # a space: quoting matters
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_server(mlflow_server_process: MlflowServer) -> str:
    """URL of a real MLflow tracking server running for the whole test session."""
    return mlflow_server_process.url()


@pytest.fixture
def mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No tracking URI inherited from the user's shell; telemetry off."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
