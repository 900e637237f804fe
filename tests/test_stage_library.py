"""The stage as library code: calls, run directory, lock, results, failures, pickling."""

from __future__ import annotations

import json
import pickle
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import runlock
from runlock.record.lockfile import load_lock


@dataclass
class Config:
    lr: float = 1e-3
    epochs: int = 3
    name: str = "base"
    seed: int | None = None


@runlock.stage(snapshot=False)
def train(cfg: Config) -> dict[str, float]:
    """A tiny stage used across tests (module level: pickles by reference)."""
    return {"acc": 0.5 + cfg.lr, "draw": random.random()}


@runlock.stage(snapshot=False)
def boom(cfg: Config) -> None:
    secret_local = cfg.lr * 2  # noqa: F841 - inspected through .debug()
    raise ValueError("bad lr")


@runlock.stage(snapshot=False)
def returns_object(cfg: Config) -> object:
    return {1, 2, 3}


def only_run(root: Path, stage: str = "train") -> Path:
    runs = sorted((root / stage).iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def test_library_call_forms_return_value(results: Path) -> None:
    assert train(Config(lr=0.25))["acc"] == pytest.approx(0.75)
    assert train(lr=0.5)["acc"] == pytest.approx(1.0)
    assert train(Config(lr=0.25), epochs=7)["acc"] == pytest.approx(0.75)
    assert train.__wrapped__(Config(lr=0.0))["acc"] == 0.5  # the plain function: no run
    assert len(list((results / "train").iterdir())) == 3
    cfgs = sorted(yaml.safe_load((d / "config.yaml").read_text())["epochs"] for d in (results / "train").iterdir())
    assert cfgs == [3, 3, 7]


def test_run_directory_contents_and_lock(results: Path) -> None:
    value = train(lr=0.1)
    run_dir = only_run(results)
    assert {p.name for p in run_dir.iterdir()} >= {"config.yaml", "run.lock", "run.log", "result.json"}
    assert json.loads((run_dir / "result.json").read_text()) == value
    lock = load_lock(run_dir)
    assert lock["schema"] == 1
    assert lock["status"] == "completed"
    assert lock["stage"] == "train"
    assert lock["config"]["lr"] == 0.1
    assert lock["result"]["value"] == value
    assert lock["timing"]["duration_s"] >= 0 and lock["timing"]["end"] >= lock["timing"]["start"]
    assert lock["function"]["name"] == "train"
    assert lock["function"]["module"] == __name__
    assert lock["function"]["source_file"] == str(Path(__file__).absolute())
    env = lock["environment"]
    for key in ("argv", "orig_argv", "platform", "python_version", "python_executable", "cwd", "hostname", "user", "cpu_count", "memory_bytes", "gpus", "env"):
        assert key in env, key
    assert lock["packages"]["omegaconf"]
    assert "runlock" in lock["editable"]  # installed with pip install -e
    assert "run " + lock["id"] in (run_dir / "run.log").read_text()


def test_failure_records_traceback_and_reraises(results: Path) -> None:
    with pytest.raises(ValueError, match="bad lr"):
        boom(lr=0.2)
    lock = load_lock(only_run(results, "boom"))
    assert lock["status"] == "failed"
    assert lock["error"]["type"] == "builtins.ValueError"
    tb = lock["error"]["traceback"]
    assert 'raise ValueError("bad lr")' in tb and "in boom" in tb
    assert "runlock/run.py" not in tb  # runlock's own frames are trimmed


def test_debug_returns_locals_even_on_failure(results: Path) -> None:
    out = boom.debug(lr=0.2)
    assert out.status == "failed"
    assert isinstance(out.error, ValueError)
    assert out.locals["secret_local"] == pytest.approx(0.4)
    assert out.locals["cfg"].lr == 0.2
    assert out.run_dir.parent == results / "boom"
    ok = train.debug(lr=0.3)
    assert ok.ok and ok.value["acc"] == pytest.approx(0.8) and "cfg" in ok.locals


def test_keyboard_interrupt_is_recorded_as_interrupted(results: Path) -> None:
    @runlock.stage(snapshot=False)
    def stopped(cfg: Config) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stopped()
    assert load_lock(only_run(results, "stopped"))["status"] == "interrupted"


def test_unserialisable_result_is_pickled(results: Path) -> None:
    assert returns_object() == {1, 2, 3}
    run_dir = only_run(results, "returns_object")
    assert pickle.loads((run_dir / "result.pkl").read_bytes()) == {1, 2, 3}
    assert load_lock(run_dir)["result"]["file"] == "result.pkl"


def test_unknown_keyword_is_a_config_error_and_creates_nothing(results: Path) -> None:
    with pytest.raises(runlock.ConfigKeyError, match="Unknown config key 'lrr'.*Valid keys: lr, epochs, name, seed"):
        train(lrr=0.1)
    with pytest.raises(runlock.ConfigTypeError, match="'epochs'.*expected int"):
        train(epochs="many")
    assert not results.exists()


def test_now_resolves_once_and_run_id_stage_interpolate(results: Path) -> None:
    @dataclass
    class C:
        a: str = "${now:%H%M%S%f}"
        b: str = "${now:%H%M%S%f}"
        who: str = "${stage}/${run.id}"

    @runlock.stage(snapshot=False, save_dir=str(results) + "/custom/${stage}-${now:%Y}")
    def interp(cfg: C) -> dict[str, str]:
        return {"a": cfg.a, "b": cfg.b, "who": cfg.who}

    out = interp()
    assert out["a"] == out["b"]
    run_dir = next((results / "custom").iterdir())
    lock = load_lock(run_dir)
    assert out["who"] == f"interp/{lock['id']}"
    assert run_dir.name.startswith("interp-20")


def test_seed_drawn_recorded_and_reproducible(results: Path) -> None:
    first = train()
    lock = load_lock(only_run(results))
    seed = lock["seed"]
    assert isinstance(seed, int) and lock["config"]["seed"] == seed
    assert lock["function"]["altered_parameters"] == {"seed": seed}
    again = train(seed=seed)
    assert again["draw"] == first["draw"]


def test_no_seed_field_means_no_reseeding(results: Path) -> None:
    @dataclass
    class NoSeed:
        x: int = 1

    @runlock.stage(snapshot=False)
    def draws(cfg: NoSeed) -> float:
        return random.random()

    random.seed(1234)
    expected = [random.random() for _ in range(2)]
    random.seed(1234)
    got = [draws(), draws()]
    assert got == expected  # the global generator was not reseeded between calls


def test_numpy_seeded_when_imported_later(results: Path) -> None:
    np = pytest.importorskip("numpy")

    @runlock.stage(snapshot=False)
    def np_draw(cfg: Config) -> float:
        return float(np.random.rand())

    a = np_draw(seed=42)
    b = np_draw(seed=42)
    assert a == b


def test_pickles_by_reference_and_runs_in_joblib_workers(results: Path) -> None:
    assert pickle.loads(pickle.dumps(train)) is train
    joblib = pytest.importorskip("joblib")
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)  # fresh workers inherit this test's RUNLOCK_RESULTS
    values = joblib.Parallel(n_jobs=2)(joblib.delayed(train)(lr=lr) for lr in (0.1, 0.2))
    assert [v["acc"] for v in values] == pytest.approx([0.6, 0.7])
    assert len(list((results / "train").iterdir())) == 2


def test_kwargs_stage_under_click(results: Path) -> None:
    click = pytest.importorskip("click")
    from click.testing import CliRunner

    @click.command()
    @click.option("--lr", type=float, default=0.1)
    @runlock.stage(snapshot=False, name="clicked")
    def cli(lr: float, epochs: int = 2) -> None:
        click.echo(f"lr={lr} epochs={epochs}")

    res = CliRunner().invoke(cli, ["--lr", "0.5"])
    assert res.exit_code == 0, res.output
    assert "lr=0.5 epochs=2" in res.output
    lock = load_lock(only_run(results, "clicked"))
    assert lock["config"] == {"lr": 0.5, "epochs": 2}


def test_unwritable_results_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")

    @runlock.stage(snapshot=False, root=str(blocker / "results"))
    def nowhere(cfg: Config) -> None:
        raise AssertionError("must not run")

    with pytest.raises(runlock.RunlockError, match="Cannot create"):
        nowhere()


def test_torch_seeded_when_imported_inside_the_stage(tmp_path: Path, results: Path) -> None:
    """PyTorch is seeded even when first imported during the run (a post-import hook)."""
    pytest.importorskip("torch")  # optional: installed on machines that have it
    import subprocess
    import sys

    script = tmp_path / "t.py"
    script.write_text(
        "import sys, runlock\n"
        "assert 'torch' not in sys.modules\n"
        "@runlock.stage(snapshot=False)\n"
        "def draw(seed: int | None = None):\n"
        "    import torch\n"
        "    return float(torch.rand(1))\n"
        "print(draw(seed=int(sys.argv[1])))\n"
    )
    outs = [subprocess.run([sys.executable, str(script), s], capture_output=True, text=True, check=True).stdout for s in ("5", "5", "6")]
    assert outs[0] == outs[1] != outs[2]
    locks = sorted((results / "draw").iterdir())
    assert all(load_lock(d)["seed"] in (5, 6) for d in locks)


def test_gpus_from_nvidia_smi_on_path(results: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """GPUs are read from `nvidia-smi` when it is on PATH (a stand-in script here: the CI
    machine has no GPU), and a run without it records none."""
    from runlock.capture.environment import capture_environment

    monkeypatch.setenv("PATH", str(tmp_path / "nobin"))
    assert capture_environment()["gpus"] == []
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho '0, NVIDIA H100 80GB HBM3, GPU-1234, 81559, 550.54.15'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")

    @runlock.stage(root=results, snapshot=False)
    def probe(cfg: Config) -> int:
        return 1

    probe(Config())
    (lock_path,) = results.rglob("run.lock")
    assert load_lock(lock_path)["environment"]["gpus"] == [{
        "index": "0", "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1234",
        "memory.total": "81559", "driver_version": "550.54.15",
    }]
