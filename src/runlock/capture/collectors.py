"""Collectors add sections to a run's lock: at the start (synchronously, e.g. the source
snapshot) and at the end (e.g. data hashes computed in the background meanwhile).

A collector failure becomes a warning in the lock; it never fails the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol


class CaptureOptions(Protocol):
    """The stage options the built-in collectors read (read-only).

    :class:`runlock.stages.run.StageOptions` has them all; declared here so that capture
    depends on nothing above it (the run lifecycle imports capture, never the reverse).
    """

    @property
    def snapshot(self) -> bool:
        """Snapshot the source into a shadow git branch."""
        ...

    @property
    def snapshot_branch(self) -> str | None: ...

    @property
    def snapshot_include(self) -> tuple[str, ...]: ...

    @property
    def snapshot_exclude(self) -> tuple[str, ...]: ...

    @property
    def snapshot_max_file_mb(self) -> float: ...

    @property
    def snapshot_lock_timeout_s(self) -> float: ...

    @property
    def files_of_interest(self) -> tuple[str, ...]: ...

    @property
    def track_data(self) -> tuple[str, ...]:
        """Config fields or literal paths whose data is hashed into the lock."""
        ...

    @property
    def hash_outputs(self) -> bool:
        """Record hashes of the run's output files at the end."""
        ...


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
    options: CaptureOptions
    #: the source file of the stage function (where to look for the git repository)
    source_file: Path | None
    lock: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: the run's outcome at finish: "completed" | "failed" | "interrupted"
    status: str = "running"
    #: ``publish(key, section)`` writes a section into the running lock as soon as a background
    #: job knows it (the snapshot, the data hashes), so a run killed by SIGKILL or the OOM killer
    #: still records its code and data; thread-safe, best effort, a no-op once the lock is final
    publish: Callable[[str, Any], None] | None = None

    def publish_section(self, key: str, value: Any) -> None:
        """Call :attr:`publish` if set; never raises (a collector never fails the run)."""
        if self.publish is None or value is None:
            return
        try:
            self.publish(key, value)
        except Exception:  # noqa: BLE001, S110 - the end of the run writes the section again
            pass


class Collector(Protocol):
    """One lock section. ``start`` runs before the stage function, ``finish`` after it."""

    key: str

    def start(self, ctx: RunContext) -> Any:
        """Value of the lock section at start (None: nothing yet)."""

    def finish(self, ctx: RunContext) -> Any:
        """Final value of the lock section (None: keep the start value)."""
