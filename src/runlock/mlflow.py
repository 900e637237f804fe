"""``runlock.mlflow``: log run directories to MLflow (needs ``pip install 'runlock[mlflow]'``).

A thin public face of :mod:`runlock.tracking.mlflow`, which owns everything MLflow::

    import runlock.mlflow
    runlock.mlflow.log_run("results/train/20261125T163012-3f9a2c", log_fn=my_extra_logging)

Importing this module does not import mlflow; the first call does.
"""

from __future__ import annotations

from .tracking.mlflow import (
    LogFn,
    MlflowTracker,
    SyncReport,
    default_tracking_uri,
    find_mlflow_run,
    log_run,
    resolve_tracking_uri,
    sync_runs,
)

__all__ = [
    "LogFn",
    "MlflowTracker",
    "SyncReport",
    "default_tracking_uri",
    "find_mlflow_run",
    "log_run",
    "resolve_tracking_uri",
    "sync_runs",
]
