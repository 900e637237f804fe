"""runlock: every ML experiment run reproducible, browsable and scalable.

A plain function with a dataclass config becomes a tracked *stage* with ``@runlock.stage``;
each run gets its own directory with the resolved config and a ``run.lock`` that pins config,
environment, packages, seeds, source snapshot, data hashes and upstream runs.

Attributes are imported lazily so that ``import runlock`` stays fast and imports no optional
dependency.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `from typing import ...`: typing costs ~5-10 ms of `import runlock`

__version__ = "0.1.0"

# public name -> module that defines it, grouped by topic (like joblib's __all__)
_LAZY = {
    # stages and runs
    "stage": "runlock.stages.decorator",
    "Stage": "runlock.stages.decorator",
    "main": "runlock.cli.script",
    "Input": "runlock.config.schema",
    "Secret": "runlock.config.schema",
    "Outcome": "runlock.stages.run",
    "current_run": "runlock.stages.run",
    # pycrumbs / footsteps style
    "tracked": "runlock.stages.compat",
    "start": "runlock.stages.compat",
    # logging during a run
    "log_metrics": "runlock.tracking.metrics",
    # browsing
    "runs": "runlock.browse.query",
    "load_lock": "runlock.record.lockfile",
    # persistence
    "push": "runlock.store.remote",
    "pull": "runlock.store.remote",
    # extension points: execution backends, trackers, lock sections
    "register_backend": "runlock.scale.backends.base",
    "Backend": "runlock.scale.backends.base",
    "register_tracker": "runlock.tracking.base",
    "Tracker": "runlock.tracking.base",
    "Collector": "runlock.capture.collectors",
    "RunContext": "runlock.capture.collectors",
    # errors
    "RunlockError": "runlock.errors",
    "ConfigError": "runlock.errors",
    "ConfigKeyError": "runlock.errors",
    "ConfigTypeError": "runlock.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

    from .browse.query import runs
    from .capture.collectors import Collector, RunContext
    from .cli.script import main
    from .config.schema import Input, Secret
    from .errors import ConfigError, ConfigKeyError, ConfigTypeError, RunlockError
    from .record.lockfile import load_lock
    from .scale.backends.base import Backend, register_backend
    from .stages.compat import start, tracked
    from .stages.decorator import Stage, stage
    from .stages.run import Outcome, current_run
    from .store.remote import pull, push
    from .tracking.base import Tracker, register_tracker
    from .tracking.metrics import log_metrics


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runlock' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
