"""Shared fixtures. No test depends on the current directory: runs go to tmp dirs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

# Deterministic git identity for the real git repositories the tests create.
for _k, _v in {
    "GIT_AUTHOR_NAME": "runlock tests",
    "GIT_AUTHOR_EMAIL": "tests@runlock.invalid",
    "GIT_COMMITTER_NAME": "runlock tests",
    "GIT_COMMITTER_EMAIL": "tests@runlock.invalid",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}.items():
    os.environ.setdefault(_k, _v)

# Fixtures for the real components, one plugin module each.
pytest_plugins = ["conftest_rclone", "conftest_slurm", "conftest_mlflow"]

# Skip on a laptop, fail in CI (one helper, tests/_ci.py); re-exported for the test modules.
from _ci import IN_CI, need_component, unavailable  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _dev_null_stays_a_device() -> Iterator[None]:
    """Fail the test that turns /dev/null into a plain file (as root, a tool renaming a temp file
    over a path set to /dev/null does that): every later git, rclone or shell redirect would
    read or keep old output, and the failure would show up far away."""
    yield
    import stat

    if not stat.S_ISCHR(os.stat(os.devnull).st_mode):
        pytest.fail(f"{os.devnull} is no longer a character device after this test")


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated results root (also exported as RUNLOCK_RESULTS for subprocesses)."""
    root = tmp_path / "results"
    monkeypatch.setenv("RUNLOCK_RESULTS", str(root))
    return root


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return out.stdout


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A real git repository with one commit, its results dir git-ignored."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("results/\n")
    (repo / "README.md").write_text("hello\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    return repo


def write_script(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def run_py(script: Path, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
           timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd or script.parent,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
