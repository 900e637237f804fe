"""footsteps' API on runlock: ``import runlock.footsteps as footsteps`` replaces ``import footsteps``.

``footsteps.output_dir`` starts the run on first use (the name from ``$FOOTSTEPS_NAME``, a
prompt or piped stdin); ``footsteps.initialize(name)`` names it explicitly.
"""

from __future__ import annotations

import os
from typing import Any

from .stages.compat.footsteps import ScriptRun, start

__all__ = ["initialize", "output_dir"]  # noqa: F822 - output_dir is served by __getattr__ (footsteps: lazily)

_run: ScriptRun | None = None


def initialize(run_name: str | None = None, output_root: str | os.PathLike[str] = "results/") -> None:
    """Start the script's run in ``<output_root>/<run_name>`` (footsteps: only once per process)."""
    global _run
    if _run is not None:
        raise RuntimeError("footsteps can only be initialized once")
    _run = start(run_name or None, root=output_root)


def __getattr__(name: str) -> Any:
    if name == "output_dir":
        if _run is None:
            initialize()
        assert _run is not None
        return _run.output_dir
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
