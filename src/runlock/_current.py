"""The current-run stack: the one place that knows which run is in progress in this process.

Like click's ``globals.py``: :func:`push_run` / :func:`pop_run` around a run, and
:func:`get_current_run` for whoever needs it (``runlock.current_run()``,
``runlock.log_metrics()``). Nothing else keeps a list of active runs.

The stack is process-wide, not thread-local: threads started by a stage (data loaders, a
metrics thread) belong to its run, and ``current_run()`` / ``log_metrics()`` there must find it.
Kernel module: imports nothing from runlock but :mod:`runlock.errors` (lazily), so both the run
lifecycle (stages) and the trackers may use it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, overload

__all__ = ["CurrentRun", "get_current_run", "pop_run", "push_run"]


class CurrentRun(Protocol):
    """What readers of the current run rely on.

    A stage's run (:class:`runlock.stages.run.ActiveRun`), a task of a map
    (:class:`runlock.stages.stage_map.TaskRun`) and a stand-alone tracking session
    (:class:`runlock.tracking.base.TrackingSession`) implement it.
    """

    @property
    def id(self) -> str:
        """The run id (``20261125T163012-000013``)."""
        ...

    @property
    def dir(self) -> Path:
        """Where the run writes its outputs."""
        ...

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record metrics for this run (``runlock.log_metrics`` calls it)."""
        ...


_stack: list[CurrentRun] = []
_mutex = threading.Lock()


def push_run(run: CurrentRun) -> None:
    """Make ``run`` the current run (until :func:`pop_run`)."""
    with _mutex:
        _stack.append(run)


def pop_run(run: CurrentRun | None = None) -> None:
    """Undo :func:`push_run` of ``run`` (or of the innermost run); a run not on the stack is
    ignored, so closing twice is harmless. Runs of several threads may end out of order, hence
    the removal of the innermost occurrence of ``run`` rather than of the top."""
    with _mutex:
        if run is None:
            if _stack:
                _stack.pop()
            return
        for i in range(len(_stack) - 1, -1, -1):
            if _stack[i] is run:
                del _stack[i]
                return


@overload
def get_current_run(silent: Literal[False] = False) -> CurrentRun: ...
@overload
def get_current_run(silent: bool) -> CurrentRun | None: ...
def get_current_run(silent: bool = False) -> CurrentRun | None:
    """The innermost run in progress; outside a run None when ``silent``, else a RunlockError."""
    with _mutex:
        if _stack:
            return _stack[-1]
    if silent:
        return None
    from .errors import RunlockError

    raise RunlockError(
        "No run in progress.",
        hint="Call this inside a @runlock.stage function or after runlock.start().",
    )
