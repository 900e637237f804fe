"""The backend protocol and the registry of backends by name."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from runlock.errors import UsageError

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

# Set by backends with a time limit (SLURM) in the worker process: the epoch time after which
# the worker should not start new work. An environment variable, so any worker code can read it.
DEADLINE_ENV = "RUNLOCK_WORKER_DEADLINE"

C = TypeVar("C")

#: The entry-point group through which installed packages add backends (see register_backend).
ENTRY_POINT_GROUP = "runlock.backends"

# name -> "module:Class" (imported on first use, so that optional dependencies such as submitit
# are only needed by the backend that uses them) or a factory registered by the user.
_REGISTRY: dict[str, str | Callable[..., Backend]] = {
    "inprocess": "runlock.scale.backends.inprocess:InProcessBackend",
    "joblib": "runlock.scale.backends.processes:ProcessBackend",
    "slurm": "runlock.scale.backends.slurm:SlurmBackend",
}
_PLUGINS_LOADED = False


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


def register_backend(name: str, factory: Callable[..., Backend] | str) -> None:
    """Make a backend available by name, like joblib's ``register_parallel_backend``.

    ``factory`` is a backend class (or any callable returning a :class:`Backend`), or its
    ``"module:Class"`` path, imported on first use. ``get_backend(name, **options)`` calls it
    with the map's options (``n_jobs``, ``folder``...): accept ``**_ignored`` for the options a
    backend has no use for. Registering an existing name replaces that backend::

        runlock.register_backend("ray", RayBackend)
        train.map(tasks, backend="ray", n_jobs=8)  # train: a @runlock.stage

    An installed package can instead declare an entry point in the ``runlock.backends`` group
    (``[project.entry-points."runlock.backends"] ray = "runlock_ray:RayBackend"``): it is listed
    the first time backends are looked up, and imported only when used.
    """
    if not isinstance(name, str) or not name:
        raise UsageError(f"a backend name must be a non-empty string, not {name!r}")
    if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
        raise UsageError(
            f"cannot register {factory!r} as backend {name!r}",
            hint="pass a backend class (or factory) or its 'module:Class' path",
        )
    _REGISTRY[name] = factory


def _load_plugins() -> None:
    """Add the backends of installed packages (entry points), once; names taken stay."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    from importlib.metadata import entry_points  # here: ~5 ms that `import runlock` skips

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _REGISTRY.setdefault(ep.name, ep.value)


def available_backends() -> list[str]:
    """The names :func:`get_backend` accepts: built in, registered, and from entry points."""
    _load_plugins()
    return sorted(_REGISTRY)


def get_backend(name: str, **options: Any) -> Backend:
    """Instantiate the backend registered as ``name`` with its options (e.g. ``n_jobs``)."""
    _load_plugins()
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise UsageError(
            f"unknown backend {name!r}",
            hint=f"use one of: {', '.join(available_backends())}",
        ) from None
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        try:
            factory: Callable[..., Backend] = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            if module_name.startswith("runlock."):
                raise  # ours: a missing optional dependency says which extra to install
            raise UsageError(
                f"backend {name!r} cannot be loaded from {target!r}: {type(exc).__name__}: {exc}",
                hint="check that the package that registers it is installed in this environment",
            ) from exc
    else:
        factory = target
    return factory(**options)
