"""Experiment trackers: one small protocol, a do-nothing default, MLflow as an extra.

The run lifecycle only uses :func:`metrics.activate_for_run` / :func:`metrics.deactivate_for_run`
/ :func:`metrics.finish_for_run` (a :class:`TrackingSession` around the configured tracker); the
MLflow tracker is imported lazily so that ``import runlock`` never imports mlflow.
"""

from __future__ import annotations

from .base import TRACKERS, NullTracker, Tracker, TrackingSession, default_tracker, get_tracker
from .metrics import (
    MetricRecord,
    MetricsLogger,
    activate,
    activate_for_run,
    current,
    deactivate,
    deactivate_for_run,
    finish_for_run,
    log_metrics,
    read_metrics,
)

__all__ = [  # noqa: RUF022 - grouped by topic, like joblib's
    # protocol and lifecycle
    "Tracker",
    "NullTracker",
    "TrackingSession",
    "TRACKERS",
    "default_tracker",
    "get_tracker",
    "activate_for_run",
    "deactivate_for_run",
    "finish_for_run",
    # metrics during a run
    "MetricRecord",
    "MetricsLogger",
    "activate",
    "current",
    "deactivate",
    "log_metrics",
    "read_metrics",
]
