"""What a source snapshot captures and where it goes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .commands import DEFAULT_BRANCH


@dataclass(frozen=True)
class SnapshotOptions:
    """What a source snapshot captures and where it goes.

    ``include`` / ``exclude``: gitignore-style globs filtering the worktree changes captured;
    ``exclude_dirs``: absolute paths never read (e.g. the results root, even when not
    gitignored); ``files_of_interest``: paths (repo-relative or absolute) whose blob ids are
    recorded; ``lock_timeout_s``: how long to wait for another git process holding a lock.
    """

    branch: str = DEFAULT_BRANCH
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_file_bytes: int = 10 * 2**20
    files_of_interest: tuple[str, ...] = ()
    exclude_dirs: tuple[Path, ...] = ()
    lock_timeout_s: float = 10.0
