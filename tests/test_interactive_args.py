"""Issue 13, interactive: ``%run train.py key=value`` uses the typed arguments, ``runlock.main``
with ``argv`` stays in the session, the traceback starts at the user's frames, and the plain
function (``stage.__wrapped__``) may call ``runlock.log_metrics`` outside a run.

Real IPython (an ``InteractiveShell``, what Jupyter consoles and VS Code interactive windows run).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_script

import runlock
from runlock.record.lockfile import load_lock

IPython = pytest.importorskip("IPython")
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402

KERNEL_ARGV = ["ipykernel_launcher.py", "-f", "/tmp/kernel-123.json"]

STAGE = """
from dataclasses import dataclass
import runlock

@dataclass
class Config:
    data_run: str
    fail_at_epoch: int = -1
    epochs: int = 3

@runlock.stage(snapshot=False)
def train(cfg: Config):
    losses = []
    for epoch in range(cfg.epochs):
        if epoch == cfg.fail_at_epoch:
            raise RuntimeError(f"diverged at epoch {epoch}")
        losses.append(1.0 / (epoch + 1))
        runlock.log_metrics({"loss": losses[-1]}, step=epoch)
    return {"data_run": cfg.data_run, "final": losses[-1]}

if __name__ == "__main__":
    runlock.main(train)
"""


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    # a Jupyter kernel's own argv: it must never be read as the stage's arguments
    monkeypatch.setattr(sys, "argv", list(KERNEL_ARGV))
    sh = InteractiveShell.instance()
    sh.colors = "nocolor"  # plain text tracebacks, so frames can be read off the output
    yield sh
    sh.reset()
    InteractiveShell.clear_instance()


def _only_run(results: Path) -> Path:
    (run_dir,) = (results / "train").iterdir()
    return run_dir


def test_run_magic_uses_the_typed_arguments(shell: InteractiveShell, tmp_path: Path, results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = write_script(tmp_path / "train.py", STAGE)
    res = shell.run_cell(f"%run {script} data_run=results/prepare/X epochs=2")
    out = capsys.readouterr()
    assert res.success, out.out + out.err
    assert "Missing value" not in out.out + out.err
    assert shell.user_ns["cfg"].data_run == "results/prepare/X"
    assert shell.user_ns["losses"] == pytest.approx([1.0, 0.5])
    lock = load_lock(_only_run(results))
    assert lock["status"] == "completed"
    assert lock["config"]["data_run"] == "results/prepare/X" and lock["config"]["epochs"] == 2
    assert sys.argv == KERNEL_ARGV  # %run put the kernel's argv back


def test_run_magic_arguments_reach_a_failing_run_and_its_locals(shell: InteractiveShell, tmp_path: Path, results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = write_script(tmp_path / "train.py", STAGE)
    res = shell.run_cell(f"%run {script} data_run=results/prepare/X fail_at_epoch=1")
    assert res.success  # the kernel lives: no exception escapes the cell
    assert "diverged at epoch 1" in capsys.readouterr().out
    assert shell.user_ns["losses"] == [1.0]  # locals up to the failure
    lock = load_lock(_only_run(results))
    assert lock["status"] == "failed" and lock["config"]["fail_at_epoch"] == 1


def test_a_call_from_a_cell_ignores_the_kernel_argv(shell: InteractiveShell, tmp_path: Path, results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # module names differ per test: sys.modules outlives the shell
    write_script(tmp_path / "stage_defaults.py", STAGE.replace("data_run: str", "data_run: str = 'd'"))
    shell.run_cell(f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import runlock, stage_defaults")
    res = shell.run_cell("out = runlock.main(stage_defaults.train)")
    out = capsys.readouterr()
    assert res.success and shell.user_ns["out"].status == "completed", out.out + out.err
    assert "kernel-123.json" not in out.out + out.err
    assert load_lock(_only_run(results))["config"]["data_run"] == "d"


def test_main_with_argv_stays_in_the_session_and_pushes_locals(shell: InteractiveShell, tmp_path: Path, results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_script(tmp_path / "stage_argv.py", STAGE)
    shell.run_cell(f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import runlock, stage_argv")
    res = shell.run_cell("out = runlock.main(stage_argv.train, argv=['data_run=D', 'fail_at_epoch=2'])")
    assert res.success and res.error_in_exec is None  # no SystemExit for a failed stage
    assert shell.user_ns["out"].status == "failed"
    assert shell.user_ns["losses"] == [1.0, 0.5] and shell.user_ns["cfg"].data_run == "D"
    # bad arguments and a missing required key: a message, no SystemExit, no run
    capsys.readouterr()
    for argv in (["--no-such-option"], []):
        res = shell.run_cell(f"bad = runlock.main(stage_argv.train, argv={argv!r})")
        assert res.success and res.error_in_exec is None, argv
        assert shell.user_ns["bad"] is None
    err = capsys.readouterr().err
    assert "--no-such-option" in err and "data_run" in err
    assert len(list((results / "train").iterdir())) == 1


def test_traceback_starts_at_the_users_frames(shell: InteractiveShell, tmp_path: Path, results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    failing = STAGE.replace("data_run: str", "data_run: str = 'd'").replace("fail_at_epoch: int = -1", "fail_at_epoch: int = 0")
    script = write_script(tmp_path / "train.py", failing)
    shell.run_cell(f"%run {script}")
    shown = capsys.readouterr().out
    frames = re.findall(r"^File (\S+?):\d+", shown, flags=re.MULTILINE)
    assert frames, shown
    package = str(Path(runlock.__file__).parent)
    assert frames[0] == str(script) and not [f for f in frames if f.startswith(package)], shown
    assert "interactive.py" not in shown and "call_capturing_locals" not in shown


def test_plain_function_may_log_metrics_outside_a_run(tmp_path: Path, results: Path, caplog: pytest.LogCaptureFixture) -> None:
    # no shell: a unit test of the undecorated function, as a user writes one
    import importlib.util

    path = write_script(tmp_path / "plain_stage.py", STAGE)
    spec = importlib.util.spec_from_file_location("plain_stage", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    logger = logging.getLogger("runlock.metrics")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        value = module.train.__wrapped__(module.Config(data_run="D", epochs=2))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert value == {"data_run": "D", "final": 0.5}
    assert not results.exists()  # nothing recorded, no run directory
    assert [r.levelno for r in records] == [logging.DEBUG, logging.DEBUG]
    assert "loss" in records[0].getMessage()
