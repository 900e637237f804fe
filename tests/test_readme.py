"""The README's two commands, run as written (the other commands it shows have their own tests:
test_browse, test_sweep, test_map_papercuts, test_remote, test_reproduce, test_slurm_stage...)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from locks import make_run

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _readme_command(prefix: str) -> str:
    """The README's command line starting with ``prefix``, without its trailing comment."""
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        for line in block.splitlines():
            if line.startswith(prefix):
                return line.split("  #")[0].strip()
    raise AssertionError(f"the README shows no command starting with {prefix!r}")


def test_readme_demo_command_runs_as_written(tmp_path: Path) -> None:
    """Command 1, `bash scripts/demo.sh`: sets up .venv (already there in a test run) and runs
    the demo; its work directory is taken from the first argument instead of a temp dir."""
    command = _readme_command("bash scripts/demo.sh")
    assert command == "bash scripts/demo.sh"
    res = subprocess.run([*shlex.split(command), str(tmp_path / "demo")], cwd=ROOT,
                         capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "--sweep" in res.stdout and "--resume" in res.stdout and "%run" in res.stdout
    assert list((tmp_path / "demo" / "results" / "train").glob("*/run.lock"))


def test_readme_test_command_runs_as_written(tmp_path: Path) -> None:
    """Command 2, `bash scripts/test.sh`: here on one small file (its extra arguments go to
    pytest, as the script says); the whole suite is what CI runs through it."""
    command = _readme_command("bash scripts/test.sh")
    assert command == "bash scripts/test.sh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    res = subprocess.run([*shlex.split(command), "-q", "-p", "no:cacheprovider",
                          "tests/test_import.py"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert re.search(r"\d+ passed", res.stdout)


def test_readme_ls_command_runs_as_written(tmp_path: Path) -> None:
    """The browse section's `runlock ls` line, copied from the README, on runs made now."""
    command = _readme_command("runlock ls train")
    make_run(tmp_path, config={"lr": 0.1}, result={"acc": 0.9})
    make_run(tmp_path, config={"lr": 0.1}, result={"acc": 0.5})
    make_run(tmp_path, config={"lr": 0.01}, result={"acc": 0.95})
    args = shlex.split(command)[1:]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "RUNLOCK_RESULTS": str(tmp_path)}
    res = subprocess.run([sys.executable, "-m", "runlock", *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = [ln for ln in res.stdout.splitlines() if "0.9" in ln]
    assert len(rows) == 1 and "0.95" not in res.stdout and "0.5 " not in res.stdout
