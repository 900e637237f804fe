"""The stage file run in an interactive session (IPython's InteractiveShell: what Jupyter
consoles and VS Code interactive windows run)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_script

from runlock.record.lockfile import load_lock

IPython = pytest.importorskip("IPython")
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402

STAGE = """
from dataclasses import dataclass
import runlock

@dataclass
class Config:
    lr: float = 0.1
    fail: bool = {fail}
    seed: int | None = None

@runlock.stage(snapshot=False)
def train(cfg: Config):
    weights = [cfg.lr * i for i in range(3)]
    # %% a cell inside the function stays runnable once the locals are in the namespace
    total = sum(weights) + {offset}
    if cfg.fail:
        raise RuntimeError("diverged")
    return {{"total": total}}

if __name__ == "__main__":
    runlock.main(train)
"""


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    # what a Jupyter kernel's argv looks like: it must be ignored
    monkeypatch.setattr(sys, "argv", ["ipykernel_launcher.py", "-f", "/tmp/kernel-123.json"])
    sh = InteractiveShell.instance()
    yield sh
    sh.reset()
    InteractiveShell.clear_instance()


def test_run_puts_locals_in_namespace(shell: InteractiveShell, tmp_path: Path, results: Path) -> None:
    script = write_script(tmp_path / "stage.py", STAGE.format(fail=False, offset=0))
    res = shell.run_cell(f"%run {script}")
    assert res.success
    assert shell.user_ns["weights"] == pytest.approx([0.0, 0.1, 0.2])
    assert shell.user_ns["total"] == pytest.approx(0.3)
    assert shell.user_ns["cfg"].lr == 0.1
    (run_dir,) = (results / "train").iterdir()
    assert load_lock(run_dir)["status"] == "completed"


def test_failure_keeps_kernel_and_locals(shell: InteractiveShell, tmp_path: Path, results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = write_script(tmp_path / "stage.py", STAGE.format(fail=True, offset=0))
    shell.run_cell(f"%run {script}")
    out = capsys.readouterr()
    assert "diverged" in out.out + out.err  # the traceback is shown
    assert shell.user_ns["total"] == pytest.approx(0.3)  # locals up to the failure
    (run_dir,) = (results / "train").iterdir()
    lock = load_lock(run_dir)
    assert lock["status"] == "failed" and "diverged" in lock["error"]["traceback"]
    # the kernel lives on: run a line of the function body against the pushed locals
    assert shell.run_cell("fixed = [w * 2 for w in weights]").success
    assert shell.user_ns["fixed"] == pytest.approx([0.0, 0.2, 0.4])


def test_edits_are_picked_up_without_restarting(shell: InteractiveShell, tmp_path: Path, results: Path) -> None:
    script = write_script(tmp_path / "stage.py", STAGE.format(fail=False, offset=0))
    shell.run_cell(f"%run {script}")
    assert shell.user_ns["total"] == pytest.approx(0.3)
    write_script(script, STAGE.format(fail=False, offset=100))
    shell.run_cell(f"%run {script}")
    assert shell.user_ns["total"] == pytest.approx(100.3)
    assert len(list((results / "train").iterdir())) == 2


def test_main_from_a_cell_on_an_imported_module_reloads_edits(shell: InteractiveShell, tmp_path: Path, results: Path) -> None:
    mod = write_script(tmp_path / "mystage.py", STAGE.format(fail=False, offset=0))
    shell.run_cell(f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import runlock, mystage")
    shell.run_cell("out = runlock.main(mystage.train)")
    assert shell.user_ns["total"] == pytest.approx(0.3)
    import os
    import time

    write_script(mod, STAGE.format(fail=False, offset=7))
    st = mod.stat()
    os.utime(mod, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    time.sleep(0.01)
    shell.run_cell("out = runlock.main(mystage.train)")
    assert shell.user_ns["total"] == pytest.approx(7.3)
    assert shell.user_ns["out"].status == "completed"
