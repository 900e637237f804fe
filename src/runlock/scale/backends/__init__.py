"""Execution backends: one small submit protocol, registered by name (like joblib's backends).

Backends know nothing of runs or tasks: they call ``fn(chunk)`` for each chunk, somewhere.
"""

from runlock.scale.backends.base import (
    DEADLINE_ENV,
    ENTRY_POINT_GROUP,
    Backend,
    RequeueRequest,
    available_backends,
    get_backend,
    register_backend,
    worker_deadline,
)

__all__ = [
    "DEADLINE_ENV",
    "ENTRY_POINT_GROUP",
    "Backend",
    "RequeueRequest",
    "available_backends",
    "get_backend",
    "register_backend",
    "worker_deadline",
]
