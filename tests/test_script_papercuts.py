"""A stage script's own command line, typed as a user types it: key=value anywhere, clear exit-2
errors for bad input (nothing created), plain config.yaml, replayed configs, the script's
project, and --help."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import run_py, write_script

from runlock.record.lockfile import load_lock

SCRIPT = """
from dataclasses import dataclass, field
from pathlib import Path
import runlock


@dataclass
class Config:
    lr: float = 0.001  # learning rate
    epochs: int = 3
    layers: list[int] = field(default_factory=lambda: [1, 2])
    out: Path = Path("out")
    data: str = runlock.Input("")
    name: str = field(default="x", metadata={"help": "the run's name"})
    save_dir: str = ""


@runlock.stage(snapshot=False)
def train(cfg: Config):
    return {"lr": cfg.lr, "epochs": cfg.epochs}


if __name__ == "__main__":
    runlock.main(train)
"""

REQUIRED = """
from dataclasses import dataclass
import runlock


@dataclass
class Config:
    data_run: str  # the prepare run to train on
    lr: float = 0.1


@runlock.stage(snapshot=False)
def train(cfg: Config):
    return 1


if __name__ == "__main__":
    runlock.main(train)
"""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    return write_script(tmp_path / "train.py", SCRIPT)


def runs(results: Path) -> list[Path]:
    return sorted(p.parent for p in results.rglob("run.lock"))


def test_key_value_anywhere_on_the_line(script: Path, results: Path, tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("lr: 0.5\nepochs: 7\n")
    res = run_py(script, "lr=1", "--config", "base.yaml", "epochs=2")
    assert res.returncode == 0, res.stderr
    (run_dir,) = runs(results)
    assert load_lock(run_dir)["config"]["lr"] == 1.0 and load_lock(run_dir)["config"]["epochs"] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["layers.0=5"], "'layers.0'"),
        (["--jobs", "0", "--sweep", "lr=1,2"], "--jobs"),
        (["--map", "tasks.yaml", "--map-key", "epochs", "--resume", "/nonexistent/run"], "/nonexistent/run"),
        (["--resume", "/nonexistent/run"], "--map"),
        (["data=does/not/exist.csv"], "does/not/exist.csv"),
        (["--experiment", "ablation/typo"], "'lrr'"),
        (["--experiment", "ablation/*", "--sweep"], "experiment 'ablation/typo'"),
    ],
    ids=["list-item", "jobs-0", "resume-missing", "resume-without-map", "missing-input",
         "experiment-typo", "experiment-typo-sweep"],
)
def test_bad_input_exits_2_naming_it_and_creates_nothing(
    script: Path, results: Path, tmp_path: Path, argv: list[str], message: str
) -> None:
    (tmp_path / "tasks.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "experiments.yaml").write_text(
        "baseline: {}\nablation:\n  typo:\n    lrr: 0.2\n  deep:\n    epochs: 9\n")
    res = run_py(script, *argv)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert not results.exists()


def test_an_empty_experiment_keeps_the_defaults(script: Path, results: Path, tmp_path: Path) -> None:
    (tmp_path / "experiments.yaml").write_text("baseline: {}\nablation:\n  deep:\n    epochs: 9\n")
    res = run_py(script, "--experiment", "baseline")
    assert res.returncode == 0, res.stderr
    (run_dir,) = runs(results)
    lock = load_lock(run_dir)
    assert lock["experiment"] == "baseline" and lock["config"]["epochs"] == 3


def test_experiments_next_to_the_script_with_a_config_file(script: Path, results: Path, tmp_path: Path) -> None:
    """A --config file without an `experiments:` key is a config, not the experiments tree."""
    (tmp_path / "base.yaml").write_text("lr: 0.5\n")
    (tmp_path / "experiments.yaml").write_text("ablation:\n  deep:\n    epochs: 9\n")
    res = run_py(script, "--config", "base.yaml", "--experiment", "ablation/deep")
    assert res.returncode == 0, res.stderr
    (run_dir,) = runs(results)
    assert load_lock(run_dir)["config"]["epochs"] == 9 and load_lock(run_dir)["config"]["lr"] == 0.5


def test_config_yaml_of_a_path_field_is_plain_yaml(script: Path, results: Path) -> None:
    res = run_py(script, "epochs=4")  # an override: the OmegaConf path
    assert res.returncode == 0, res.stderr
    (run_dir,) = runs(results)
    text = (run_dir / "config.yaml").read_text()
    assert "!!python" not in text
    assert yaml.safe_load(text)["out"] == "out"
    shown = run_py(script, "--show-config", "out=elsewhere")
    assert shown.returncode == 0 and "!!python" not in shown.stdout and "out: elsewhere" in shown.stdout


def test_replaying_a_runs_config_starts_a_fresh_run(script: Path, results: Path) -> None:
    assert run_py(script, "epochs=5").returncode == 0
    (old,) = runs(results)
    moved = old.with_name("old-run")  # no timestamp clash, whatever the clock says
    old.rename(moved)
    res = run_py(script, "--config", str(moved / "config.yaml"))
    assert res.returncode == 0, res.stderr
    new = next(p for p in runs(results) if p != moved)
    assert new.parent == results / "train" and re.fullmatch(r"\d{8}-\d{6}(-\d+)?", new.name)
    lock = load_lock(new)
    assert lock["config"]["epochs"] == 5  # the rest of the config is replayed
    assert lock["function"]["parameters"]["save_dir"] == ""


def test_results_root_is_the_scripts_project(tmp_path: Path) -> None:
    project = tmp_path / "my project"
    (project / "src").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "p"\n')
    script = write_script(project / "src" / "train.py", SCRIPT)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RUNLOCK_RESULTS"}
    res = subprocess.run([sys.executable, str(script)], cwd=elsewhere, env=env, capture_output=True,
                         text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    assert len(runs(project / "results")) == 1
    assert not (elsewhere / "results").exists() and not (project / "src" / "results").exists()


def test_help_marks_required_fields_and_shows_field_help(script: Path, tmp_path: Path) -> None:
    res = run_py(script, "--help")
    assert res.returncode == 0
    assert re.search(r"lr\s+float\s+= 0.001\s+learning rate", res.stdout)
    assert re.search(r"name\s+str\s+= 'x'\s+the run's name", res.stdout)
    assert re.search(r"out\s+Path\s+= 'out'", res.stdout)
    req = run_py(write_script(tmp_path / "req.py", REQUIRED), "--help")
    assert re.search(r"data_run\s+str\s+REQUIRED\s+the prepare run to train on", req.stdout), req.stdout
