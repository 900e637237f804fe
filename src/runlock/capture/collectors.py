"""Collectors add sections to a run's lock: at the start (synchronously, e.g. the source
snapshot) and at the end (e.g. data hashes computed in the background meanwhile).

A collector failure becomes a warning in the lock; it never fails the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol


@dataclass
class RunContext:
    """What a collector may read about the run it is collecting for."""

    run_id: str
    stage: str
    run_dir: Path
    results_root: Path
    start: datetime
    config: dict[str, Any]
    #: the stage's options (snapshot settings, inputs, ...)
    options: Any
    #: the source file of the stage function (where to look for the git repository)
    source_file: Path | None
    lock: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: the run's outcome at finish: "completed" | "failed" | "interrupted"
    status: str = "running"


class Collector(Protocol):
    """One lock section. ``start`` runs before the stage function, ``finish`` after it."""

    key: str

    def start(self, ctx: RunContext) -> Any:
        """Value of the lock section at start (None: nothing yet)."""

    def finish(self, ctx: RunContext) -> Any:
        """Final value of the lock section (None: keep the start value)."""
