"""The backend protocol and the registry of backends by name."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from runlock.errors import UsageError

__all__ = [
    "DEADLINE_ENV",
    "Backend",
    "RequeueRequest",
    "available_backends",
    "get_backend",
    "register_backend",
    "worker_deadline",
]

# Set by backends with a time limit (SLURM) in the worker process: the epoch time after which
# the worker should not start new work. An environment variable, so any worker code can read it.
DEADLINE_ENV = "RUNLOCK_WORKER_DEADLINE"

C = TypeVar("C")

# name -> "module:Class"; imported on first use so that optional dependencies (submitit) are
# only needed by the backend that uses them.
_REGISTRY: dict[str, str] = {
    "inprocess": "runlock.scale.backends.inprocess:InProcessBackend",
    "joblib": "runlock.scale.backends.processes:ProcessBackend",
    "slurm": "runlock.scale.backends.slurm:SlurmBackend",
}


class RequeueRequest(Exception):
    """Raised by a worker that stops early (its time limit is near) and wants to run again.

    Backends that can requeue (SLURM) run the same call again later; the others let it propagate.
    """


def worker_deadline() -> float | None:
    """The epoch time after which this worker should start no new work, if the backend set one."""
    value = os.environ.get(DEADLINE_ENV)
    return float(value) if value else None


@runtime_checkable
class Backend(Protocol):
    """Runs a picklable ``fn`` once per chunk and waits for all of them.

    ``run`` returns one item per chunk, in order: what ``fn`` returned, or the exception that
    stopped the worker (a crashed process, a cancelled job). Errors inside ``fn`` that the
    caller wants to see raised (debugging) propagate instead from the in-process backend.
    """

    name: str

    def run(self, fn: Callable[[C], Any], chunks: Sequence[C]) -> list[Any]: ...


def register_backend(name: str, target: str) -> None:
    """Register a backend class as ``"module:Class"`` under ``name`` (imported lazily)."""
    _REGISTRY[name] = target


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def get_backend(name: str, **options: Any) -> Backend:
    """Instantiate the backend registered as ``name`` with its options (e.g. ``n_jobs``)."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise UsageError(
            f"unknown backend {name!r}",
            hint=f"use one of: {', '.join(available_backends())}",
        ) from None
    module_name, _, cls_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    backend: Backend = cls(**options)
    return backend
