"""The tracker protocol, the do-nothing default, and the session the run lifecycle drives.

A tracker mirrors runs into an experiment tracker (MLflow...). Its methods are plain blocking
calls; :class:`TrackingSession` runs them on one background thread with bounded waits, so a
slow, broken or unreachable tracker never slows down or fails a run: its problems come back
as warnings for the lock.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .._current import pop_run, push_run
from ..errors import ConfigError, RunlockError, UsageError
from ..settings import ProjectSettings, project_settings
from .metrics import ForwardingUnavailable, MetricRecord, MetricsLogger, Worker

__all__ = [
    "TRACKERS",
    "NullTracker",
    "Tracker",
    "TrackingSession",
    "activate_for_run",
    "deactivate_for_run",
    "default_tracker",
    "finish_for_run",
    "get_tracker",
    "register_tracker",
]


@runtime_checkable
class Tracker(Protocol):
    """What a tracker implements. Every method may block and may raise; callers isolate it.

    - ``start(run_dir, lock)``: the run began (lock status ``running``).
    - ``log_metrics(records)``: values logged with ``runlock.log_metrics`` (batched, in order).
    - ``finish(run_dir, lock)``: the run ended; ``lock`` is the final lock. Returns warnings.
    """

    name: str

    def start(self, run_dir: Path, lock: Mapping[str, Any]) -> None: ...

    def log_metrics(self, records: Sequence[MetricRecord]) -> None: ...

    def finish(self, run_dir: Path, lock: Mapping[str, Any]) -> list[str]: ...


class NullTracker:
    """The default: track nothing (metrics still go to ``metrics.jsonl``)."""

    name = "none"

    def start(self, run_dir: Path, lock: Mapping[str, Any]) -> None:
        return None

    def log_metrics(self, records: Sequence[MetricRecord]) -> None:
        return None

    def finish(self, run_dir: Path, lock: Mapping[str, Any]) -> list[str]:
        return []


def _mlflow_tracker(settings: ProjectSettings, root: Path | None) -> Tracker:
    from .mlflow import MlflowTracker  # lazy: keeps `import runlock` free of optional deps

    return MlflowTracker(root=root if root is not None else settings.results_root)


#: Trackers by the name used in ``[tool.runlock] tracker = "..."``.
TRACKERS: dict[str, Callable[[ProjectSettings, Path | None], Tracker]] = {
    "none": lambda settings, root: NullTracker(),
    "mlflow": _mlflow_tracker,
}


def get_tracker(name: str, *, root: Path | None = None, start: Path | None = None) -> Tracker:
    """The tracker registered as ``name`` (``none``, ``mlflow``)."""
    try:
        factory = TRACKERS[name]
    except KeyError:
        raise ConfigError(
            f"Unknown tracker {name!r} ([tool.runlock] tracker).",
            hint=f"Use one of: {', '.join(sorted(TRACKERS))}.",
        ) from None
    return factory(project_settings(start), root)


def register_tracker(name: str, factory: Callable[[], Tracker]) -> None:
    """Make a tracker available by name, for ``[tool.runlock] tracker = "<name>"``.

    ``factory`` is a :class:`Tracker` class (or any callable returning a tracker) called without
    arguments at the start of each run. Registering an existing name replaces that tracker. A
    tracker's methods may block and may raise: runs call them on a background thread with
    bounded waits, and its failures become warnings in the lock, never a failed run::

        runlock.register_tracker("wandb", WandbTracker)
    """
    if not isinstance(name, str) or not name:
        raise UsageError(f"a tracker name must be a non-empty string, not {name!r}")
    if not callable(factory):
        raise UsageError(
            f"cannot register {factory!r} as tracker {name!r}",
            hint="pass a Tracker class or a function that returns a tracker",
        )
    TRACKERS[name] = lambda settings, root: factory()


def default_tracker(*, root: Path | None = None, start: Path | None = None) -> Tracker:
    """The tracker a run uses when none is given.

    ``[tool.runlock] tracker`` when set; else MLflow when a tracking URI is configured
    (``[tool.runlock] mlflow_tracking_uri``, or ``$MLFLOW_TRACKING_URI`` with mlflow installed);
    else :class:`NullTracker`. ``root`` is the results root (where the default MLflow store
    lives).
    """
    settings = project_settings(start)
    name = settings.get("tracker")
    if not name:
        configured = bool(settings.get("mlflow_tracking_uri")) or (
            bool(os.environ.get("MLFLOW_TRACKING_URI"))
            and importlib.util.find_spec("mlflow") is not None
        )
        name = "mlflow" if configured else "none"
    return get_tracker(str(name), root=root, start=start)


class TrackingSession:
    """Tracker + metrics logger of one run; the only tracking object the lifecycle touches.

    Lifecycle::

        session = TrackingSession(run_dir, lock, tracker)  # after the 'running' lock is written
        try:
            ...call the stage...                           # runlock.log_metrics works here
        finally:
            warnings += session.flush()                    # metrics delivered (or reported)
        ...write the final lock...
        session.finish(final_lock)                         # the tracker logs the final state

    Nothing here raises because of the tracker; ``flush`` waits at most ``timeout_s`` for the
    tracker to catch up and ``finish`` at most its ``timeout_s`` for the final logging (only
    when the tracker started fine).

    With ``activate_logger`` (a session used on its own) the session is the current run until
    :meth:`flush`: ``runlock.log_metrics`` goes to it. The run lifecycle passes False: its
    :class:`~runlock.stages.run.ActiveRun` is the current run and forwards metrics here.
    """

    def __init__(
        self,
        run_dir: Path,
        lock: Mapping[str, Any],
        tracker: Tracker | None = None,
        *,
        activate_logger: bool = True,
    ) -> None:
        self.run_dir = Path(run_dir)
        self._id = str(lock.get("id") or self.run_dir.name)
        self.tracker: Tracker = tracker if tracker is not None else NullTracker()
        self._null = isinstance(self.tracker, NullTracker)
        self._warnings: list[str] = []
        self._started = threading.Event()  # start() returned (fine or not)
        self._start_ok = False
        # a user's tracker may lack ``name``: that must not fail the run either
        self._name = str(getattr(self.tracker, "name", None) or type(self.tracker).__name__)
        self._worker = None if self._null else Worker(name=f"runlock-{self._name}")
        self.logger = MetricsLogger(
            self.run_dir, forwarder=None if self._null else self._forward, worker=self._worker
        )
        self._active = activate_logger
        self._flushed: list[str] | None = None
        self._drained = True
        self._finished = False
        if activate_logger:
            push_run(self)
        if self._worker is not None:
            snapshot = copy.deepcopy(dict(lock))  # the lifecycle keeps mutating its dict
            if not self._worker.submit(lambda: self._start(snapshot)):  # pragma: no cover
                self._started.set()

    @property
    def id(self) -> str:
        return self._id

    @property
    def dir(self) -> Path:
        return self.run_dir

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Append to ``metrics.jsonl`` and forward (what ``runlock.log_metrics`` calls)."""
        self.logger.log(metrics, step)

    def add_warning(self, message: str) -> None:
        """A problem to report with the next :meth:`flush`."""
        self._warnings.append(message)

    def _label(self) -> str:
        return f"tracker {self._name!r}"

    def _start(self, lock: dict[str, Any]) -> None:
        try:
            self.tracker.start(self.run_dir, lock)
            self._start_ok = True
        except Exception as exc:  # noqa: BLE001 - a tracker failure never fails a run
            self._warnings.append(f"{self._label()} failed to start: {type(exc).__name__}: {exc}")
        finally:
            self._started.set()

    def _forward(self, records: Sequence[MetricRecord]) -> None:
        if not self._start_ok:
            raise ForwardingUnavailable("the tracker did not start")
        self.tracker.log_metrics(records)

    def flush(self, *, timeout_s: float = 5.0, start_timeout_s: float = 30.0) -> list[str]:
        """The stage returned: stop routing ``log_metrics`` here and wait until the tracker
        has the metrics. Returns warnings for the lock.

        Waits at most ``start_timeout_s`` for a tracker still starting (importing mlflow and
        creating a store take seconds; an unreachable server fails fast, see the tracker),
        then at most ``timeout_s`` for the metrics queue.
        """
        if self._active:
            pop_run(self)
            self._active = False
        if self._flushed is not None:
            return []
        started = self._worker is None or self._started.wait(start_timeout_s)
        warnings = self.logger.close(timeout_s if started else 0.0)
        self._drained = self.logger.drained
        if not started:
            warnings.append(
                f"{self._label()} did not start within {start_timeout_s:g} s (server slow?); "
                f"the run is not logged there. Log it later with `runlock mlflow sync`."
            )
        self._flushed = warnings
        return list(self._warnings) + warnings

    def finish(self, lock: Mapping[str, Any], *, timeout_s: float = 30.0) -> list[str]:
        """The final ``lock`` is written: let the tracker log it (bounded wait, only when the
        tracker started fine). Returns warnings (never raises)."""
        if self._flushed is None:
            self.flush()
        if self._worker is None or self._finished or not self._start_ok:
            return []
        self._finished = True
        if not self._drained:  # the worker is stuck (server gone mid-run): don't queue behind it
            return [
                (
                    f"{self._label()} is not responding; the final state of the run is not "
                    f"logged there. Re-log it with `runlock mlflow sync`."
                )
            ]
        snapshot = copy.deepcopy(dict(lock))
        result: list[str] = []

        def finish() -> None:
            try:
                result.extend(self.tracker.finish(self.run_dir, snapshot))
            except Exception as exc:  # noqa: BLE001 - a tracker failure never fails a run
                result.append(f"{self._label()} failed to finish: {type(exc).__name__}: {exc}")

        if not self._worker.wait(finish, timeout_s):
            return [
                (
                    f"{self._label()} did not finish within {timeout_s:g} s; the run may be "
                    f"incomplete there. Re-log it with `runlock mlflow sync`."
                )
            ]
        return list(result)

    def close(
        self,
        lock: Mapping[str, Any],
        *,
        timeout_s: float = 5.0,
        finish_timeout_s: float = 30.0,
    ) -> list[str]:
        """:meth:`flush` then :meth:`finish` with the final ``lock``; returns all warnings."""
        warnings = self.flush(timeout_s=timeout_s)
        return warnings + self.finish(lock, timeout_s=finish_timeout_s)


# --- hooks of the run lifecycle (runlock.stages.run) ------------------------------------------


def activate_for_run(
    run_dir: Path,
    lock: Mapping[str, Any] | None = None,
    *,
    tracker: Tracker | None = None,
    root: Path | None = None,
    activate_logger: bool = True,
) -> TrackingSession:
    """Start tracking a run whose 'running' lock is written: returns the session (a token).

    ``lock`` defaults to the run's ``run.lock``; ``tracker`` to :func:`default_tracker` for the
    results ``root``. Never raises because of the tracker. ``activate_logger``: see
    :class:`TrackingSession`.
    """
    from ..record.lockfile import load_lock

    if lock is None:
        try:
            lock = load_lock(Path(run_dir))
        except RunlockError:
            lock = {}
    problem: str | None = None
    if tracker is None:
        try:
            tracker = default_tracker(root=root)
        except RunlockError as exc:  # a bad tracker setting must not stop the stage
            tracker, problem = NullTracker(), f"tracking disabled: {exc}"
        except Exception as exc:  # noqa: BLE001 - nor a user's tracker class that raises
            tracker, problem = NullTracker(), f"tracking disabled: {type(exc).__name__}: {exc}"
    session = TrackingSession(Path(run_dir), lock, tracker, activate_logger=activate_logger)
    if problem is not None:
        session.add_warning(problem)
    return session


def deactivate_for_run(session: TrackingSession, *, timeout_s: float = 5.0) -> list[str]:
    """The stage function returned: flush metrics (bounded wait); warnings for the lock."""
    return list(session.flush(timeout_s=timeout_s))


def finish_for_run(session: TrackingSession, lock: Mapping[str, Any], *, timeout_s: float = 30.0) -> list[str]:
    """The final lock is written: the tracker logs it (bounded wait); returns warnings."""
    return list(session.finish(lock, timeout_s=timeout_s))
