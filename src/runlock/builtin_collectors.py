"""The collectors every stage run uses: source (git), input data, upstream runs, outputs.

Slow work (the git snapshot, data hashing) starts in a background thread when the run starts,
so the stage function is not kept waiting, and is joined when the run ends.
"""

from __future__ import annotations

import concurrent.futures
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .collectors import Collector, RunContext

if TYPE_CHECKING:
    from .run import StageOptions

log = logging.getLogger("runlock")
_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="runlock")
    return _POOL


class GitCollector:
    """Repository basics and a snapshot of the source on the shadow branch."""

    key = "git"

    def __init__(self, options: StageOptions) -> None:
        self.options = options
        self._future: concurrent.futures.Future[Any] | None = None

    def _where(self, ctx: RunContext) -> Path:
        return ctx.source_file.parent if ctx.source_file is not None else Path.cwd()

    def start(self, ctx: RunContext) -> Any:
        from . import git

        where = self._where(ctx)
        snapshot = getattr(git, "snapshot", None)
        if not self.options.snapshot or snapshot is None:
            return git.repo_info(where)
        opts = git.SnapshotOptions(
            **{
                k: v
                for k, v in {
                    "branch": self.options.snapshot_branch,
                    "include": tuple(self.options.snapshot_include),
                    "exclude": tuple(self.options.snapshot_exclude),
                    "max_file_bytes": int(self.options.snapshot_max_file_mb * 2**20),
                    "files_of_interest": tuple(self.options.files_of_interest),
                    "exclude_dirs": (ctx.results_root, ctx.run_dir),
                }.items()
                if v is not None
            }
        )
        message = f"runlock snapshot of run {ctx.run_id} ({ctx.stage})"
        self._future = _pool().submit(snapshot, where, opts, message=message)
        return None

    def finish(self, ctx: RunContext) -> Any:
        if self._future is None:
            return None
        return self._future.result()


def default_collectors(options: StageOptions) -> list[Collector]:
    collectors: list[Collector] = [GitCollector(options)]
    return collectors
