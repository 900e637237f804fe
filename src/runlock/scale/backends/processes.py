"""Local worker processes (joblib + loky; fn is pickled with cloudpickle)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

C = TypeVar("C")


class ProcessBackend:
    """Runs chunks on ``n_jobs`` local worker processes (-1: one per CPU)."""

    name = "joblib"

    def __init__(self, n_jobs: int = -1, *, joblib_backend: str = "loky", **_ignored: Any) -> None:
        self.n_jobs = n_jobs
        self.joblib_backend = joblib_backend

    def run(self, fn: Callable[[C], Any], chunks: Sequence[C]) -> list[Any]:
        # lazy: keeps `import runlock` light; joblib ships no type information
        from joblib import Parallel, delayed  # type: ignore[import-untyped,unused-ignore]

        if not chunks:
            return []
        n_jobs = min(self.n_jobs, len(chunks)) if self.n_jobs > 0 else self.n_jobs
        try:
            return list(
                Parallel(n_jobs=n_jobs, backend=self.joblib_backend)(delayed(fn)(c) for c in chunks)
            )
        except Exception as exc:
            # A killed worker (TerminatedWorkerError) aborts the whole Parallel call: report it
            # for every chunk, the task store knows what was actually done.
            if type(exc).__name__ == "TerminatedWorkerError":
                return [exc] * len(chunks)
            raise
