"""Hashing a run's data inputs in a daemon thread while the stage function runs."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .api import hash_path
from .cache import HashCache


class BackgroundHasher:
    """Hash a run's data inputs in a daemon thread while the stage function runs.

    ``start()`` only starts the thread (the stage starts within a millisecond whatever the
    data size); ``result()`` waits and returns ``{label: hash_path(...) dict}``, or
    ``{label: {"path": ..., "error": message}}`` for an input that could not be hashed, so that
    one bad input is reported in the lock instead of failing the run. ``match`` / ``ignore``
    map an input's label to its patterns.
    """

    def __init__(
        self,
        inputs: Mapping[str, str | os.PathLike[str]],
        *,
        cache_path: str | os.PathLike[str] | None = None,
        match: Mapping[str, Sequence[str]] | None = None,
        ignore: Mapping[str, Sequence[str]] | None = None,
        jobs: int | None = None,
        progress: bool | None = None,
    ) -> None:
        self.inputs = {label: Path(p) for label, p in inputs.items()}
        for name, table in (("match", match), ("ignore", ignore)):
            unknown = set(table or {}) - set(self.inputs)
            if unknown:
                raise UsageError(f"{name} patterns for unknown data inputs: {sorted(unknown)}")
        self.cache_path = None if cache_path is None else Path(cache_path)
        self._match = dict(match or {})
        self._ignore = dict(ignore or {})
        self._jobs = jobs
        self._progress = progress
        self._results: dict[str, dict[str, Any]] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> BackgroundHasher:
        """Start hashing in a daemon thread and return at once."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="runlock-data-hash", daemon=True)
            self._thread.start()
        return self

    @property
    def done(self) -> bool:
        """Whether every input has been hashed (or failed)."""
        return self._thread is not None and not self._thread.is_alive()

    def result(self, timeout: float | None = None) -> dict[str, dict[str, Any]]:
        """Wait for the hashes (starting them if needed); TimeoutError after ``timeout`` s."""
        self.start()
        assert self._thread is not None
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"data hashing still running after {timeout} s")
        return {label: self._results[label] for label in self.inputs}

    def _run(self) -> None:
        # The cache is opened here, not in start(): opening may wait on another process' lock.
        cache = HashCache(self.cache_path) if self.cache_path is not None else None
        try:
            for label, path in self.inputs.items():
                try:
                    self._results[label] = hash_path(
                        path,
                        match=self._match.get(label),
                        ignore=self._ignore.get(label),
                        cache=cache,
                        jobs=self._jobs,
                        progress=self._progress,
                    )
                except Exception as exc:  # noqa: BLE001 - reported in the lock, never raised here
                    self._results[label] = {"path": str(path), "error": str(exc)}
        finally:
            if cache is not None:
                cache.close()
