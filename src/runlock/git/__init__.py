"""The git owner: everything runlock asks of git goes through this package (and the git CLI).

Modules: ``commands`` (running git, reading commits), ``locate`` (which repository),
``options`` (what a snapshot captures), ``tree`` (the worktree as a tree, via a temporary
index), ``shadow`` (commits on the shadow branch), ``memo`` (re-use within a process),
``snapshot`` (the whole step), ``remotes`` (code remotes and worktrees for push/pull/reproduce).

Source snapshots
----------------
:func:`snapshot` records the working tree (tracked changes, deletions and untracked files that
are not gitignored) as a commit on a *shadow branch* (``runlock/snapshots`` by default) without
touching the user's HEAD, index, worktree, stash or current branch. It uses git plumbing on a
temporary index: a hard link of the real index, or of the private index the previous snapshot
left (its stat data lets git skip re-hashing unchanged files); only the changed paths are
hashed into it, then ``write-tree``, ``hash-object -t commit`` and ``update-ref --stdin``
(compare-and-swap, retried on races). The user's identity comes from ``git var -l``.

Each snapshot commit has the previous snapshot as its **first** parent (so
``git log --first-parent runlock/snapshots`` browses the snapshots, newest first) and the HEAD
the run started from as its **second** parent (so the code it was based on stays reachable and
survives ``git gc --prune=now``). Each run also keeps its snapshot commit with its own ref,
``refs/runlock/runs/<run_id>`` (the name ``runlock push`` gives it on the code remote), set in
the same ``update-ref`` transaction as the branch: ``runlock rm`` deletes that ref only, never
the shared branch, so runs in other results roots or still starting keep their snapshots.
The message ends with the trailers ``Runlock-Snapshot: 1`` and
``Runlock-Head: <sha>``. A run's uncommitted changes are ``git diff <parent_head> <commit>``
with both ids from the lock's ``git.snapshot`` section.

What is captured: the snapshot is "HEAD + staged changes + the worktree changes that pass the
filters". ``include`` / ``exclude`` globs, ``exclude_dirs`` and ``max_file_bytes`` decide which
worktree changes are read; a path that is filtered out keeps its version from the user's index
(usually HEAD's), so ``git diff HEAD <snapshot>`` only shows captured changes. Globs follow
gitignore conventions: ``*.py`` or ``data`` (no slash) match at any depth, ``src/*.py`` is
relative to the repository root, ``**`` crosses directories.

Submodules: the snapshot is of the repository that contains ``path``. Run from code inside a
submodule and the submodule's own repository gets the shadow branch; the superproject's
snapshot records a submodule only as its checked-out commit (the gitlink). Untracked nested
repositories that are not submodules are skipped. Linked worktrees (``git worktree add``) share
one shadow branch with the main worktree.

Good to know: a snapshot waits (``lock_timeout_s``) while another git command holds
``.git/index.lock``, so it sees that command's result. New blobs and trees are loose objects;
a process that loses a race on the ref leaves its commit dangling until ``git gc``. Because
snapshots form a chain, pushing one snapshot commit also transfers the earlier ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .commands import DEFAULT_BRANCH, HEAD_TRAILER, RUN_REF_PREFIX, SNAPSHOT_TRAILER
from .locate import repo_info, repo_root
from .options import SnapshotOptions
from .shadow import delete_run_ref, delete_snapshot_ref, snapshot_diff
from .snapshot import cached_snapshot, flush_run_refs, keep_snapshot, snapshot

if TYPE_CHECKING:
    from .remotes import detached_worktree, fetch_refs, has_commit, push_refs, update_ref

_LAZY = ("detached_worktree", "fetch_refs", "has_commit", "push_refs", "update_ref")


def __getattr__(name: str) -> Any:
    """The code-remote helpers load on first use: a run's snapshot needs none of them (and
    ``tempfile`` / ``shutil``, ~5 ms in a fresh process)."""
    if name in _LAZY:
        from . import remotes

        return getattr(remotes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "DEFAULT_BRANCH",
    "HEAD_TRAILER",
    "RUN_REF_PREFIX",
    "SNAPSHOT_TRAILER",
    "SnapshotOptions",
    "cached_snapshot",
    "delete_run_ref",
    "delete_snapshot_ref",
    "detached_worktree",
    "fetch_refs",
    "flush_run_refs",
    "has_commit",
    "keep_snapshot",
    "push_refs",
    "repo_info",
    "repo_root",
    "snapshot",
    "snapshot_diff",
    "update_ref",
]
