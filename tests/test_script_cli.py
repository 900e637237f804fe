"""A stage file run as a script: overrides, files, experiments, --help, and bad input as a table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import run_py, write_script

from runlock.record.lockfile import load_lock

SCRIPT = """
from dataclasses import dataclass, field
import logging
import runlock

log = logging.getLogger("train")


@dataclass
class Model:
    depth: int = 2
    act: str = "relu"


@dataclass
class Config:
    lr: float = 0.001
    epochs: int = 3
    model: Model = field(default_factory=Model)
    seed: int | None = None


@runlock.stage(snapshot=False)
def train(cfg: Config):
    \"\"\"Train a tiny model.\"\"\"
    log.info("training lr=%s depth=%s", cfg.lr, cfg.model.depth)
    if cfg.epochs < 0:
        raise RuntimeError("negative epochs")
    return {"acc": 0.9, "lr": cfg.lr, "depth": cfg.model.depth}


if __name__ == "__main__":
    runlock.main(train)
"""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    return write_script(tmp_path / "train.py", SCRIPT)


def runs_of(results: Path) -> list[Path]:
    return sorted((results / "train").iterdir()) if (results / "train").exists() else []


def test_overrides_and_files(script: Path, results: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("lr: 0.5\nmodel:\n  depth: 8\n")
    more = tmp_path / "more.yaml"
    more.write_text("epochs: 9\n")
    res = run_py(script, "--config", str(base), "--overrides", str(more), "model.act=gelu", "epochs=5")
    assert res.returncode == 0, res.stderr
    (run_dir,) = runs_of(results)
    cfg = load_lock(run_dir)["config"]
    assert cfg["lr"] == 0.5 and cfg["model"] == {"depth": 8, "act": "gelu"}
    assert cfg["epochs"] == 5  # --overrides files are merged before the dotlist: key=value wins
    assert "training lr=0.5 depth=8" in (run_dir / "run.log").read_text()
    assert "training lr=0.5 depth=8" in res.stderr  # also on the console


def test_experiment_selects_named_subconfig(script: Path, results: Path, tmp_path: Path) -> None:
    (tmp_path / "experiments.yaml").write_text(
        "ablation:\n  no_aug:\n    lr: 0.2\n  deep:\n    model:\n      depth: 16\n"
    )
    res = run_py(script, "--experiment", "ablation/deep")
    assert res.returncode == 0, res.stderr
    run_dir = next((results / "train" / "ablation" / "deep").iterdir())
    lock = load_lock(run_dir)
    assert lock["config"]["model"]["depth"] == 16 and lock["experiment"] == "ablation/deep"


def test_help_lists_fields_with_types_and_defaults(script: Path, results: Path) -> None:
    res = run_py(script, "--help")
    assert res.returncode == 0
    assert "Train a tiny model." in res.stdout
    for pattern in (r"lr\s+float\s+= 0.001", r"model.depth\s+int\s+= 2", "seed"):
        assert re.search(pattern, res.stdout), pattern
    assert not results.exists()


def test_failed_stage_exits_nonzero(script: Path, results: Path) -> None:
    res = run_py(script, "epochs=-1")
    assert res.returncode == 1
    assert "negative epochs" in res.stderr
    (run_dir,) = runs_of(results)
    assert load_lock(run_dir)["status"] == "failed"


def test_sigterm_is_recorded_as_interrupted(tmp_path: Path, results: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    slow = write_script(
        tmp_path / "slow.py",
        """
        import time, runlock
        from dataclasses import dataclass
        @dataclass
        class C:
            s: float = 30
        @runlock.stage(snapshot=False)
        def slow(cfg: C):
            print("started", flush=True)
            time.sleep(cfg.s)
        runlock.main(slow)
        """,
    )
    proc = subprocess.Popen([sys.executable, str(slow)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM
    (run_dir,) = sorted((results / "slow").iterdir())
    lock = load_lock(run_dir)
    assert lock["status"] == "interrupted" and "signal 15" in lock["error"]["message"]


BAD_INPUT = [
    # (args, files to write, expected message fragment)
    (["lrr=0.1"], {}, "Unknown config key 'lrr'"),
    (["lrr=0.1"], {}, "Valid keys: lr, epochs, model, seed"),
    (["model.dept=3"], {}, "Unknown config key 'model.dept'"),
    (["lr=fast"], {}, "Invalid value for config key 'lr'"),
    (["epochs=2.5"], {}, "expected int"),
    (["lr"], {}, "is not of the form key=value"),
    (["--config", "broken.yaml"], {"broken.yaml": "lr: [1, 2\nepochs: 3\n"}, "Cannot parse YAML file"),
    (["--config", "missing.yaml"], {}, "Config file not found"),
    (["--config", "bad_key.yaml"], {"bad_key.yaml": "nope: 1\n"}, "Unknown config key 'nope' (from"),
    (["--experiment", "nope"], {"experiments.yaml": "a:\n  lr: 0.1\n"}, "No experiment named 'nope'"),
    (["--experiment", "../escape"], {"experiments.yaml": "a:\n  lr: 0.1\n"}, "not a relative path"),
    (["--experiment", "a"], {}, "no experiments file found"),
]


@pytest.mark.parametrize(("args", "files", "message"), BAD_INPUT)
def test_bad_input_exits_2_with_message_and_creates_nothing(
    script: Path, results: Path, tmp_path: Path, args: list[str], files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    res = run_py(script, *args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert message in res.stderr
    assert not results.exists()


def test_unwritable_results_directory_exits_2(script: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    res = run_py(script, env={"RUNLOCK_RESULTS": str(blocker / "results")})
    assert res.returncode == 2
    assert "Cannot create the results directory" in res.stderr


def test_twenty_processes_in_the_same_second_get_distinct_dirs(script: Path, results: Path) -> None:
    import subprocess
    import sys

    procs = [
        subprocess.Popen([sys.executable, str(script), f"epochs={i}", "-q"], cwd=script.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for i in range(20)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    dirs = runs_of(results)
    assert len(dirs) == 20
    epochs = sorted(load_lock(d)["config"]["epochs"] for d in dirs)
    assert epochs == list(range(20))
    assert len({load_lock(d)["id"] for d in dirs}) == 20
