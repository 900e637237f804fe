"""One suite over every registered tracker (``none``, ``mlflow`` with a local store, and the
example below): a tracker mirrors a run (start, metrics, finish with the final lock) and never
raises into the run, and a tracker that fails never fails a run.

A new tracker joins by being registered (``runlock.register_tracker``): :class:`ListTracker`
below is the whole of one (copy it) and passes the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import runlock
from runlock.tracking import TRACKERS, TrackingSession, get_tracker, log_metrics, read_metrics
from runlock.tracking.metrics import MetricRecord

# --- the example: a complete tracker in a few lines --------------------------------------------


class ListTracker:
    """Keeps what it is told in memory (an example, registered as "list")."""

    name = "list"
    seen: list[tuple[str, Any]] = []  # class level: the suite reads it after the session

    def start(self, run_dir: Path, lock: Mapping[str, Any]) -> None:
        self.seen.append(("start", lock["status"]))

    def log_metrics(self, records: Sequence[MetricRecord]) -> None:
        self.seen.extend(("metrics", dict(r.metrics)) for r in records)

    def finish(self, run_dir: Path, lock: Mapping[str, Any]) -> list[str]:
        self.seen.append(("finish", lock["status"]))
        return []


runlock.register_tracker("list", ListTracker)

TRACKER_NAMES = sorted(TRACKERS)


@pytest.fixture(params=TRACKER_NAMES)
def tracker_name(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name: str = request.param
    if name == "mlflow":
        pytest.importorskip("mlflow", reason="the mlflow tracker needs pip install 'runlock[mlflow]'")
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the local store under the root
        monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    yield name


def _running_lock(run_dir: Path, stage: str) -> dict[str, Any]:
    return {
        "schema": 1, "id": "20261125T163012-000001", "stage": stage, "status": "running",
        "run_dir": str(run_dir), "config": {"lr": 0.1}, "seed": 1,
        "timing": {"start": "2026-11-25T16:30:12.000000+00:00", "end": None, "duration_s": None},
    }


def test_is_a_tracker_with_its_registered_name(tracker_name: str, tmp_path: Path) -> None:
    tracker = get_tracker(tracker_name, root=tmp_path / "results")
    assert isinstance(tracker, runlock.Tracker)
    assert isinstance(tracker.name, str) and tracker.name


def test_a_session_start_metrics_finish_never_raises(tracker_name: str, tmp_path: Path) -> None:
    root = tmp_path / "results root"
    run_dir = root / "conformance" / "run 1"
    run_dir.mkdir(parents=True)
    lock = _running_lock(run_dir, "conformance")
    session = TrackingSession(run_dir, lock, get_tracker(tracker_name, root=root))
    for step in range(5):
        log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    warnings = session.flush(timeout_s=60, start_timeout_s=120)
    final = {**lock, "status": "completed", "timing": {**lock["timing"], "end": "2026-11-25T16:31:12.000000+00:00", "duration_s": 60.0}}
    warnings += session.finish(final, timeout_s=60)
    assert warnings == []  # a working tracker has nothing to report
    assert [r.step for r in read_metrics(run_dir)] == [0, 1, 2, 3, 4]  # the file has it all
    if tracker_name == "list":
        assert ListTracker.seen[0] == ("start", "running") and ListTracker.seen[-1] == ("finish", "completed")
        assert len([s for s in ListTracker.seen if s[0] == "metrics"]) == 5


class FailingTracker:
    """Every method raises: what a broken integration looks like."""

    name = "failing"

    def __init__(self, where: str = "all") -> None:
        self.where = where

    def _fail(self, method: str) -> None:
        if self.where in ("all", method):
            raise ConnectionError(f"tracker down in {method}")

    def start(self, run_dir: Path, lock: Mapping[str, Any]) -> None:
        self._fail("start")

    def log_metrics(self, records: Sequence[MetricRecord]) -> None:
        self._fail("log_metrics")

    def finish(self, run_dir: Path, lock: Mapping[str, Any]) -> list[str]:
        self._fail("finish")
        return []


@pytest.mark.parametrize("where", ["start", "log_metrics", "finish"])
def test_a_failing_tracker_costs_a_warning_not_the_session(where: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lock = _running_lock(run_dir, "failing")
    session = TrackingSession(run_dir, lock, FailingTracker(where))
    log_metrics({"loss": 0.5}, step=0)
    warnings = session.close({**lock, "status": "completed"}, timeout_s=30, finish_timeout_s=30)
    assert any("ConnectionError" in w or "not sent" in w for w in warnings), warnings
    assert [r.metrics for r in read_metrics(run_dir)] == [{"loss": 0.5}]


_SCRIPT = """
import runlock

class Down:
    name = "down"
    def start(self, run_dir, lock):
        raise ConnectionError("tracker down")
    def log_metrics(self, records):
        raise ConnectionError("tracker down")
    def finish(self, run_dir, lock):
        raise ConnectionError("tracker down")

runlock.register_tracker("down", Down)

@runlock.stage(snapshot=False)
def fit(lr: float = 0.1) -> float:
    runlock.log_metrics({"loss": lr}, step=0)
    return lr * 2

print(fit(lr=0.5))
"""


def test_a_failing_tracker_never_fails_a_run(tmp_path: Path) -> None:
    """The whole path a user takes: register a tracker, name it in pyproject.toml, run."""
    project = tmp_path / "my project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[tool.runlock]\nresults = "results"\ntracker = "down"\n')
    (project / "fit.py").write_text(textwrap.dedent(_SCRIPT))
    env = {k: v for k, v in os.environ.items() if k not in ("RUNLOCK_RESULTS", "MLFLOW_TRACKING_URI")}
    out = subprocess.run(
        [sys.executable, "fit.py"], cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "1.0"
    (run_dir,) = (project / "results" / "fit").iterdir()
    lock = runlock.load_lock(run_dir)
    assert lock["status"] == "completed"
    assert any("tracker 'down' failed to start: ConnectionError: tracker down" in w for w in lock["warnings"])
    assert [json.loads(line)["metrics"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [{"loss": 0.5}]


def test_register_tracker_refuses_what_cannot_work() -> None:
    with pytest.raises(runlock.RunlockError, match="tracker"):
        runlock.register_tracker("x", 42)  # type: ignore[arg-type]
    with pytest.raises(runlock.RunlockError, match="(?s)Unknown tracker 'nope'.*list"):
        get_tracker("nope")


_BROKEN_TRACKERS = {
    # a user's class without ``name`` (the README registers a bare class)
    "nameless": ("class Broken:\n    def start(self, run_dir, lock): pass\n"
                 "    def log_metrics(self, records): pass\n    def finish(self, run_dir, lock): return []\n",
                 "completed", None),
    # a factory that raises (e.g. not logged in to the service)
    "raising": ("class Broken:\n    def __init__(self):\n        raise RuntimeError('not logged in')\n",
                "completed", "tracking disabled: RuntimeError: not logged in"),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(_BROKEN_TRACKERS))
def test_a_broken_user_tracker_never_fails_a_run(kind: str, tmp_path: Path) -> None:
    source, status, warning = _BROKEN_TRACKERS[kind]
    script = textwrap.dedent(_SCRIPT).replace("class Down:", source + "\nclass Down:")
    script = script.replace('register_tracker("down", Down)', 'register_tracker("down", Broken)')
    (tmp_path / "pyproject.toml").write_text('[tool.runlock]\nresults = "results"\ntracker = "down"\n')
    (tmp_path / "fit.py").write_text(script)
    env = {k: v for k, v in os.environ.items() if k not in ("RUNLOCK_RESULTS", "MLFLOW_TRACKING_URI")}
    out = subprocess.run(
        [sys.executable, "fit.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    (run_dir,) = (tmp_path / "results" / "fit").iterdir()
    lock = runlock.load_lock(run_dir)
    assert lock["status"] == status
    if warning is not None:
        assert any(warning in w for w in lock.get("warnings") or []), lock.get("warnings")
