"""runlock.mlflow against real MLflow: an embedded SQLite store and a real ``mlflow server``.

Everything is read back with MLflow's own ``MlflowClient``. Run directories are built with
``dump_lock`` following the run.lock schema (the stage decorator has its own tests).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mlflow")

import mlflow
from mlflow import MlflowClient

import runlock.mlflow as rm
from runlock.cli import main as cli_main
from runlock.errors import MissingDependencyError
from runlock.record.lockfile import dump_lock, load_lock
from runlock.tracking import TrackingSession, log_metrics, read_metrics
from runlock.tracking.mlflow import MlflowTracker

START = "2026-11-25T16:30:12.000000+00:00"
END = "2026-11-25T16:31:12.500000+00:00"


def make_run(
    root: Path,
    stage: str,
    rid: str,
    *,
    status: str = "completed",
    config: Mapping[str, Any] | None = None,
    result: Any = None,
    upstream: Mapping[str, Any] | None = None,
    error: Mapping[str, Any] | None = None,
    history: list[dict[str, float]] | None = None,
    log_text: str = "epoch 1 done\n",
) -> Path:
    """A run directory as the lifecycle writes it (schema 1)."""
    d = root / stage / rid
    d.mkdir(parents=True)
    config = dict(config if config is not None else {"lr": 0.1, "optim": {"name": "adam"}})
    done = status != "running"
    lock: dict[str, Any] = {
        "schema": 1,
        "id": rid,
        "stage": stage,
        "status": status,
        "run_dir": str(d),
        "pid": 4242,
        "heartbeat": START,
        "timing": {
            "start": START,
            "end": END if done else None,
            "duration_s": 60.5 if done else None,
        },
        "function": {
            "name": stage,
            "qualname": stage,
            "module": "my_stage",
            "source_file": "/src/my_stage.py",
            "parameters": {},
            "altered_parameters": {},
        },
        "config": config,
        "seed": 123,
        "environment": {
            "argv": ["my_stage.py", "lr=0.1"],
            "python_version": "3.11.2",
            "user": "alice",
            "gpus": [{"name": "H100", "memory_gb": 80}],
        },
        "packages": {"numpy": "1.26.4", "torch": "2.3.0"},
        "editable": {},
        "git": {
            "root": "/src",
            "head": "abc123",
            "branch": "main",
            "dirty": False,
            "remotes": {"origin": "https://github.com/x/y.git"},
        },
        "data": {},
        "upstream": dict(upstream or {}),
        "outputs": {"algorithm": "xxh3_64", "files": {}},
    }
    if result is not None:
        lock["result"] = {"file": "result.json", "value": result}
    if error is not None:
        lock["error"] = dict(error)
    dump_lock(lock, d / "run.lock")
    (d / "config.yaml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in config.items()))
    (d / "run.log").write_text(log_text)
    if history:
        with (d / "metrics.jsonl").open("w") as f:
            for i, m in enumerate(history):
                f.write(json.dumps({"metrics": m, "step": i, "time": 1764088212.0 + i}) + "\n")
    return d


def runs_of(client: MlflowClient, experiment: str) -> list[Any]:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    return list(client.search_runs([exp.experiment_id], max_results=100))


def artifact_text(client: MlflowClient, run_id: str, path: str, tmp: Path) -> str:
    local = client.download_artifacts(run_id, path, str(tmp))
    return Path(local).read_text()


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results root (with a space) whose default store all tests share: creating a SQLite
    store costs seconds, so tests isolate themselves by stage (= experiment) names instead."""
    return tmp_path_factory.mktemp("results root")


@pytest.fixture(scope="module")
def store(shared_root: Path) -> str:
    return f"sqlite:///{shared_root / '.runlock' / 'mlflow.db'}"


@pytest.fixture(scope="module", autouse=True)
def _boot_server_early(request: pytest.FixtureRequest) -> None:
    """Start the real server now when a selected test needs it: it boots during the others."""
    if any(item.get_closest_marker("mlflow_server") for item in request.session.items):
        request.getfixturevalue("mlflow_server_process")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.chdir(tmp_path)  # no pyproject.toml above: project settings are the defaults


# --- log_run ---------------------------------------------------------------------------------


def test_log_run_default_store_params_metrics_artifacts_tags(
    tmp_path: Path, shared_root: Path, store: str
) -> None:
    root = shared_root
    up = make_run(root, "prep", "20261125T160000-aaaaaa", result={"rows": 10})
    up_mlflow = rm.log_run(up, root=root)
    d = make_run(
        root,
        "train",
        "20261125T163012-3f9a2c",
        result={"acc": 0.9, "loss": 0.1, "ok": True},
        history=[{"loss": 1.0}, {"loss": 0.5}],
        upstream={
            "data_dir": {
                "id": "20261125T160000-aaaaaa",
                "stage": "prep",
                "path": str(up),
                "status": "completed",
                "outputs_match": True,
                "lock": {"big": 1},
            }
        },
    )
    run_id = rm.log_run(d, root=root)

    assert rm.resolve_tracking_uri(root=root) == store  # the default: sqlite under the root
    client = MlflowClient(store)
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "train"
    assert run.info.status == "FINISHED"
    assert run.info.start_time == 1795624212000 and run.info.end_time == 1795624272500
    assert run.info.artifact_uri.startswith((root / ".runlock").as_uri())  # not under the cwd
    params = run.data.params
    assert params["config.lr"] == "0.1" and params["config.optim.name"] == "adam"
    assert params["git.head"] == "abc123" and params["packages.numpy"] == "1.26.4"
    assert params["environment.gpus.0.name"] == "H100"
    assert params["upstream.data_dir.id"] == "20261125T160000-aaaaaa"
    assert not any(k.startswith(("status", "timing", "upstream.data_dir.lock")) for k in params)
    assert run.data.metrics["acc"] == 0.9 and "ok" not in run.data.metrics
    assert run.data.metrics["loss"] == 0.1  # the result is the last point of the history
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [1.0, 0.5, 0.1]
    assert run.data.metrics["runlock.duration_s"] == 60.5
    tags = run.data.tags
    assert tags["runlock.id"] == "20261125T163012-3f9a2c" and tags["runlock.stage"] == "train"
    assert tags["runlock.status"] == "completed" and tags["runlock.run_dir"] == str(d)
    assert tags["runlock.upstream"] == "20261125T160000-aaaaaa"
    assert tags["runlock.upstream.data_dir.stage"] == "prep"
    assert tags["runlock.upstream.data_dir.mlflow_run_id"] == up_mlflow
    assert tags["mlflow.source.git.commit"] == "abc123"
    assert sorted(a.path for a in client.list_artifacts(run_id)) == [
        "config.yaml",
        "run.lock",
        "run.log",
    ]
    lock_copy = artifact_text(client, run_id, "run.lock", tmp_path)
    assert "20261125T163012-3f9a2c" in lock_copy
    assert rm.find_mlflow_run(d, root=root) == run_id


def test_long_keys_and_values_are_kept_whole(tmp_path: Path, store: str) -> None:
    long_value = "v" * 7000 + "END"
    long_key = "k" * 300
    d = make_run(
        tmp_path,
        "long_values",
        "20261125T163012-000001",
        config={"long": long_value, long_key: 1, "odd[0]": "x"},
    )
    run_id = rm.log_run(d, tracking_uri=store)
    client = MlflowClient(store)
    run = client.get_run(run_id)
    param = run.data.params["config.long"]
    assert len(param) <= 6000 and "truncated" in param
    assert all(len(k) <= 250 for k in run.data.params)
    assert "config.odd_0_" in run.data.params
    full = json.loads(artifact_text(client, run_id, "runlock/long_params.json", tmp_path))
    assert full["config.long"] == long_value
    assert full[f"config.{long_key}"] == "1" and full["config.odd[0]"] == "x"
    assert "config.long" in run.data.tags["runlock.long_params"]


def test_many_params_in_batches(tmp_path: Path, store: str) -> None:
    config = {f"p{i:03d}": i for i in range(250)}  # > 100 per batch
    d = make_run(tmp_path, "many_params", "20261125T163012-000002", config=config)
    run = MlflowClient(store).get_run(rm.log_run(d, tracking_uri=store))
    assert all(run.data.params[f"config.p{i:03d}"] == str(i) for i in range(250))


def test_logging_twice_updates_the_same_run(tmp_path: Path, store: str) -> None:
    d = make_run(
        tmp_path,
        "idem",
        "20261125T163012-000003",
        status="running",
        history=[{"loss": 1.0}, {"loss": 0.7}],
    )
    first = rm.log_run(d, tracking_uri=store)
    client = MlflowClient(store)
    assert client.get_run(first).info.status == "RUNNING"

    lock = load_lock(d)  # the run ends: status, end time, result change
    lock.update(
        status="completed",
        result={"file": "result.json", "value": {"acc": 0.8}},
        timing={"start": START, "end": END, "duration_s": 60.5},
    )
    dump_lock(lock, d / "run.lock")
    with (d / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"metrics": {"loss": 0.2}, "step": 2, "time": 1764088300.0}) + "\n")
    second = rm.log_run(d, tracking_uri=store)
    third = rm.log_run(d, tracking_uri=store)

    assert first == second == third
    runs = runs_of(client, "idem")
    assert len(runs) == 1
    run = client.get_run(first)
    assert run.info.status == "FINISHED" and run.data.tags["runlock.status"] == "completed"
    assert run.data.metrics["acc"] == 0.8
    assert [m.value for m in client.get_metric_history(first, "loss")] == [1.0, 0.7, 0.2]


def test_failed_run_status_and_error_tags(tmp_path: Path, store: str) -> None:
    d = make_run(
        tmp_path,
        "failing",
        "20261125T163012-000004",
        status="failed",
        error={"type": "builtins.ValueError", "message": "bad lr", "traceback": "..."},
    )
    run = MlflowClient(store).get_run(rm.log_run(d, tracking_uri=store))
    assert run.info.status == "FAILED"
    assert run.data.tags["runlock.error.type"] == "builtins.ValueError"
    assert run.data.tags["runlock.error.message"] == "bad lr"


def test_secrets_are_redacted(tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-ABCDEF123456")
    d = make_run(
        tmp_path,
        "secrets",
        "20261125T163012-000005",
        config={"db_password": "hunter2-pw", "url": "https://bob:pa55w0rd@example.com/x"},
        log_text="using tok-ABCDEF123456 and hunter2-pw\n",
    )
    run_id = rm.log_run(d, tracking_uri=store)
    client = MlflowClient(store)
    params = client.get_run(run_id).data.params
    assert params["config.db_password"] == "***"
    assert params["config.url"] == "https://bob:***@example.com/x"
    for name in ("run.log", "run.lock", "config.yaml"):
        text = artifact_text(client, run_id, name, tmp_path / name)
        assert "hunter2-pw" not in text and "pa55w0rd" not in text and "tok-ABCDEF" not in text


def test_log_fn_runs_inside_the_mlflow_run(tmp_path: Path, store: str) -> None:
    d = make_run(tmp_path, "with_log_fn", "20261125T163012-000006")
    seen: list[Any] = []

    def log_fn(run_dir: Path, lock: dict[str, Any], active: Any) -> None:
        seen.append((run_dir, lock["id"], active.info.run_id))
        mlflow.log_metric("extra", 42.0)
        mlflow.log_text("plot", "plots/p.txt")

    run_id = rm.log_run(d, tracking_uri=store, log_fn=log_fn)
    assert seen == [(d, "20261125T163012-000006", run_id)]
    client = MlflowClient(store)
    run = client.get_run(run_id)
    assert run.data.metrics["extra"] == 42.0
    assert run.info.status == "FINISHED" and run.info.end_time == 1795624272500  # kept
    assert [a.path for a in client.list_artifacts(run_id, "plots")] == ["plots/p.txt"]
    assert mlflow.active_run() is None


def test_missing_mlflow_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = make_run(tmp_path, "nomlflow", "20261125T163012-000007")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    with pytest.raises(MissingDependencyError, match=r"runlock\[mlflow\]"):
        rm.log_run(d)


def test_importing_runlock_mlflow_does_not_import_mlflow() -> None:
    code = "import sys, runlock.mlflow, runlock.tracking; assert 'mlflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- runlock mlflow sync ---------------------------------------------------------------------


def test_sync_relogs_matching_runs_with_log_fn_and_reports_failures(
    tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "results"
    good = [
        make_run(root, "sync_me", f"20261125T16301{i}-00000{i}", config={"i": i, "boom": False})
        for i in range(3)
    ]
    bad = make_run(root, "sync_me", "20261125T163019-000009", config={"i": 9, "boom": True})
    make_run(root, "sync_me", "20261125T163020-000010", status="failed")  # filtered by --status
    make_run(root, "other_stage", "20261125T163021-000011")  # filtered by stage
    (tmp_path / "my_logging.py").write_text(
        textwrap.dedent("""
        import mlflow

        def log_run(run_dir, lock, run):
            if lock["config"]["boom"]:
                raise RuntimeError("plot failed for " + lock["id"])
            mlflow.log_metric("i_squared", lock["config"]["i"] ** 2)
            mlflow.set_tag("logged_by", "my_logging")
    """)
    )
    argv = [
        "mlflow",
        "sync",
        "sync_me",
        "--status",
        "completed",
        "--log-fn",
        "my_logging:log_run",
        "--tracking-uri",
        store,
        "--root",
        str(root),
    ]
    sys.modules.pop("my_logging", None)
    assert cli_main(argv) == 1
    out, err = capsys.readouterr()
    assert "Logged 3 run(s)" in out and "1 failed" in out
    assert "plot failed for 20261125T163019-000009" in err and str(bad) in err

    client = MlflowClient(store)
    runs = {r.data.tags["runlock.id"]: r for r in runs_of(client, "sync_me")}
    assert sorted(runs) == sorted([d.name for d in good] + [bad.name])  # bad: standard part logged
    for i, d in enumerate(good):
        assert runs[d.name].data.metrics["i_squared"] == i * i
        assert runs[d.name].data.tags["logged_by"] == "my_logging"
        assert runs[d.name].info.status == "FINISHED"
    assert "i_squared" not in runs[bad.name].data.metrics
    assert client.get_experiment_by_name("other_stage") is None

    # re-sync without the failing run: same MLflow runs, exit code 0
    assert (
        cli_main(
            argv[:2]
            + [
                "sync_me",
                "--status",
                "completed",
                "--since",
                "2026-01-01",
                "--where",
                "boom=false",
                "--tracking-uri",
                store,
                "--root",
                str(root),
            ]
        )
        == 0
    )
    assert len(runs_of(client, "sync_me")) == 4


def test_sync_bad_log_fn_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_run(tmp_path / "r", "x", "20261125T163012-000012")
    assert (
        cli_main(
            ["mlflow", "sync", "--log-fn", "no_such_module_xyz:f", "--root", str(tmp_path / "r")]
        )
        == 2
    )
    assert "cannot import 'no_such_module_xyz'" in capsys.readouterr().err


# --- metrics during a run ----------------------------------------------------------------------


def test_log_metrics_outside_a_run_is_a_no_op() -> None:
    log_metrics({"loss": 1.0})  # a plain call of the undecorated function (issue 13)


def test_log_metrics_during_a_run_goes_to_file_and_mlflow(tmp_path: Path, store: str) -> None:
    d = make_run(tmp_path, "live", "20261125T163012-000013", status="running")
    session = TrackingSession(d, load_lock(d), MlflowTracker(tracking_uri=store))
    for step in range(50):
        log_metrics({"loss": 1.0 / (step + 1), "acc": step / 50}, step=step)
    assert session.flush(timeout_s=30) == []
    records = list(read_metrics(d))
    assert len(records) == 50 and records[3].step == 3 and records[3].metrics["loss"] == 0.25
    lines = (d / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0]).keys() == {"metrics", "step", "time"}

    client = MlflowClient(store)
    (run,) = runs_of(client, "live")
    assert run.info.status == "RUNNING"  # forwarded while running, before finish
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 50

    lock = load_lock(d)
    lock.update(status="completed", timing={"start": START, "end": END, "duration_s": 60.5})
    dump_lock(lock, d / "run.lock")
    assert session.finish(lock, timeout_s=30) == []
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 50  # no duplicates
    log_metrics({"loss": 0.0})  # the session is over: a no-op, as outside any run (issue 13)
    assert len(list(read_metrics(d))) == 50


def test_unreachable_server_never_slows_the_run(tmp_path: Path) -> None:
    d = make_run(tmp_path, "offline", "20261125T163012-000014", status="running")
    # Behaviour, not seconds (bench/overhead.py times it): logging returns, flush and finish
    # give up with warnings instead of waiting for a server that is not there.
    session = TrackingSession(d, load_lock(d), MlflowTracker(tracking_uri="http://127.0.0.1:9"))
    for step in range(200):
        log_metrics({"loss": float(step)}, step=step)
    warnings = session.flush(timeout_s=1.0)
    finish = session.finish(load_lock(d), timeout_s=1.0)
    assert len(list(read_metrics(d))) == 200  # the file has everything
    text = "\n".join(warnings)
    assert "200 metric value(s) were not sent" in text and "unreachable" in text
    assert finish == []  # never started: nothing to finish


class _SlowTracker:
    name = "slow"

    def start(self, run_dir: Path, lock: Mapping[str, Any]) -> None:
        time.sleep(3)

    def log_metrics(self, records: Any) -> None:
        pass

    def finish(self, run_dir: Path, lock: Mapping[str, Any]) -> list[str]:
        return []


class _BrokenTracker(_SlowTracker):
    name = "broken"

    def start(self, run_dir: Path, lock: Mapping[str, Any]) -> None:
        raise ConnectionError("no route to tracker")


def test_slow_or_broken_trackers_are_bounded_and_never_raise(tmp_path: Path) -> None:
    d = make_run(tmp_path, "fake_trackers", "20261125T163012-000020", status="running")
    session = TrackingSession(d, load_lock(d), _SlowTracker())
    log_metrics({"loss": 1.0})
    warnings = session.flush(timeout_s=0.2, start_timeout_s=0.5)  # gave up waiting, with a word
    assert session.finish(load_lock(d), timeout_s=0.5) == []
    assert any("did not start within 0.5 s" in w for w in warnings)

    session = TrackingSession(d, load_lock(d), _BrokenTracker())
    log_metrics({"loss": 2.0})
    warnings = session.close(load_lock(d), timeout_s=1.0)
    assert any("failed to start: ConnectionError: no route to tracker" in w for w in warnings)
    assert [r.metrics["loss"] for r in read_metrics(d)] == [1.0, 2.0]


def test_lifecycle_hooks_use_the_configured_tracker(
    tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runlock import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)  # configured -> the MLflow tracker
    d = make_run(tmp_path, "hooks", "20261125T163012-000021", status="running")
    token = tracking.activate_for_run(d)
    log_metrics({"loss": 0.5}, step=1)
    assert tracking.deactivate_for_run(token) == []
    lock = load_lock(d)
    lock.update(status="completed", timing={"start": START, "end": END, "duration_s": 60.5})
    dump_lock(lock, d / "run.lock")
    assert tracking.finish_for_run(token, lock) == []
    (run,) = runs_of(MlflowClient(store), "hooks")
    assert run.info.status == "FINISHED" and run.data.metrics["loss"] == 0.5


def test_a_real_stage_logs_metrics_to_file_and_mlflow(
    tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runlock

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)

    @dataclasses.dataclass
    class Cfg:
        epochs: int = 4

    def real_stage(cfg: Cfg) -> dict[str, float]:
        for epoch in range(cfg.epochs):
            runlock.log_metrics({"stage_loss": 1.0 / (epoch + 1)}, step=epoch)
        return {"stage_acc": 0.5}

    outcome = runlock.stage(root=str(tmp_path / "results"))(real_stage)(Cfg())
    assert outcome == {"stage_acc": 0.5}
    (run_dir,) = (tmp_path / "results").glob("real_stage/*")
    assert [r.step for r in read_metrics(run_dir)] == [0, 1, 2, 3]
    (run,) = runs_of(MlflowClient(store), "real_stage")
    history = MlflowClient(store).get_metric_history(run.info.run_id, "stage_loss")
    assert [m.value for m in history] == [1.0, 0.5, 1 / 3, 0.25]


# --- a real mlflow server --------------------------------------------------------------------


@pytest.mark.mlflow_server
def test_real_server_log_run_sync_and_live_metrics(
    tmp_path: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "results"
    d1 = make_run(
        root,
        "served",
        "20261125T163012-000015",
        result={"acc": 0.7},
        config={"lr": 0.1, "long": "z" * 6500},
        history=[{"loss": 2.0}, {"loss": 1.0}],
    )
    d2 = make_run(root, "served", "20261125T163013-000016", result={"acc": 0.75})
    run_id = rm.log_run(d1, tracking_uri=mlflow_server)
    assert rm.log_run(d1, tracking_uri=mlflow_server) == run_id
    assert (
        cli_main(["mlflow", "sync", "served", "--tracking-uri", mlflow_server, "--root", str(root)])
        == 0
    )
    assert "Logged 2 run(s)" in capsys.readouterr().out

    client = MlflowClient(mlflow_server)
    runs = {r.data.tags["runlock.id"]: r for r in runs_of(client, "served")}
    assert sorted(runs) == [d1.name, d2.name]
    run = client.get_run(run_id)
    assert run.data.params["config.lr"] == "0.1" and run.data.metrics["acc"] == 0.7
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [2.0, 1.0]
    assert "run.lock" in {a.path for a in client.list_artifacts(run_id)}
    full = json.loads(artifact_text(client, run_id, "runlock/long_params.json", tmp_path))
    assert full["config.long"] == "z" * 6500

    live = make_run(root, "served_live", "20261125T163014-000017", status="running")
    session = TrackingSession(live, load_lock(live), MlflowTracker(tracking_uri=mlflow_server))
    for step in range(20):
        log_metrics({"loss": float(step)}, step=step)
    assert session.flush(timeout_s=30) == []
    lock = load_lock(live)
    lock.update(status="interrupted", timing={"start": START, "end": END, "duration_s": 60.5})
    dump_lock(lock, live / "run.lock")
    assert session.finish(lock, timeout_s=30) == []
    (lrun,) = runs_of(client, "served_live")
    assert lrun.info.status == "KILLED"
    assert len(client.get_metric_history(lrun.info.run_id, "loss")) == 20
