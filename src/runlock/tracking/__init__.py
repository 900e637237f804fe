"""Experiment trackers: one small protocol, a do-nothing default, MLflow as an extra.

The run lifecycle only uses :func:`base.activate_for_run` / :func:`base.deactivate_for_run`
/ :func:`base.finish_for_run` (a :class:`TrackingSession` around the configured tracker); the
MLflow tracker is imported lazily so that ``import runlock`` never imports mlflow.
"""

from __future__ import annotations

from .base import (
    TRACKERS,
    NullTracker,
    Tracker,
    TrackingSession,
    activate_for_run,
    deactivate_for_run,
    default_tracker,
    finish_for_run,
    get_tracker,
    register_tracker,
)
from .metrics import MetricRecord, MetricsLogger, log_metrics, read_metrics

__all__ = [  # noqa: RUF022 - grouped by topic, like joblib's
    # protocol and lifecycle
    "Tracker",
    "NullTracker",
    "TrackingSession",
    "TRACKERS",
    "default_tracker",
    "get_tracker",
    "register_tracker",
    "activate_for_run",
    "deactivate_for_run",
    "finish_for_run",
    # metrics during a run
    "MetricRecord",
    "MetricsLogger",
    "log_metrics",
    "read_metrics",
]
