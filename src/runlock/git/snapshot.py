"""A run's source snapshot: the tree, the commit on the shadow branch, and the lock section."""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .. import _subprocess
from ..errors import GitError
from .commands import (
    EMPTY_TREE,
    RUN_REF_PREFIX,
    Commit,
    branch_ref,
    read_commits,
    run_git,
    run_ref,
)
from .locate import locate, symbolic_head
from .memo import MEMO, MEMO_MAX, Memo, memo_key
from .options import SnapshotOptions, split_secret_files
from .shadow import CommitWriters, advance, check_owned, read_config, remote_urls
from .tree import IndexLockedError, link_or_copy, write_snapshot_tree

logger = logging.getLogger("runlock")


def cached_snapshot(path: Path, options: SnapshotOptions, run_id: str | None = None
                    ) -> dict[str, Any] | None:
    """The lock section of this process's last snapshot of ``path`` when nothing it depends on
    changed since (one ``lstat`` per tracked file and directory, no git process); else None.

    With ``run_id`` the section names the run's own ref, which is not written yet: call
    :func:`keep_snapshot` (one git process, off the run's critical path)."""
    start = path if path.is_dir() else path.parent
    memo = MEMO.get(memo_key(start, options))
    if memo is None or not memo.still_valid():
        return None
    reused = copy.deepcopy(memo.result)
    reused["snapshot"]["reused"] = True
    reused["snapshot"]["ref"] = run_ref(run_id) if run_id is not None else memo.ref
    return reused


#: Runs' own refs waiting to be written, per repository root (see :func:`keep_snapshot`).
_PENDING_REFS: dict[Path, list[tuple[str, str]]] = {}
_REFS_LOCK = threading.Lock()
_REFS_WRITER: threading.Thread | None = None


def keep_snapshot(section: dict[str, Any]) -> None:
    """Queue the run's own ref (``git.snapshot.ref``) to its snapshot commit: what
    :func:`snapshot` does in its ``update-ref`` transaction, for a :func:`cached_snapshot`.

    A warm process reusing its memo must not pay a git process per run (~4 ms of CPU, and the
    run's end used to wait for it): one background thread writes the queued refs in batches,
    one ``update-ref --stdin`` per batch. The commit stays reachable from the shared branch
    meanwhile, and the thread is not a daemon, so the refs are written before the process exits.
    """
    global _REFS_WRITER
    snap = section.get("snapshot") or {}
    ref = snap.get("ref")
    if not (isinstance(ref, str) and ref.startswith(RUN_REF_PREFIX) and snap.get("commit")):
        return
    with _REFS_LOCK:
        _PENDING_REFS.setdefault(Path(section["root"]), []).append((ref, str(snap["commit"])))
        if _REFS_WRITER is None:
            _REFS_WRITER = threading.Thread(target=_write_pending_refs, name="runlock-refs")
            _REFS_WRITER.start()


def _write_pending_refs() -> None:
    global _REFS_WRITER
    while True:
        with _REFS_LOCK:
            batch = dict(_PENDING_REFS)
            _PENDING_REFS.clear()
            if not batch:
                _REFS_WRITER = None
                return
        for root, refs in batch.items():
            lines = "".join(f"update {ref} {commit}\n" for ref, commit in refs)
            try:
                run_git(root, ["update-ref", "-m", "runlock snapshot", "--stdin"], input=lines)
            except (GitError, OSError) as exc:  # the branch still holds the commits
                logger.warning("runlock: could not write the runs' snapshot refs: %s", exc)


def flush_run_refs(timeout_s: float = 30.0) -> None:
    """Wait until the queued runs' refs are written (``runlock rm`` and tests call this)."""
    with _REFS_LOCK:
        writer = _REFS_WRITER
    if writer is not None:
        writer.join(timeout_s)


def snapshot(path: Path, options: SnapshotOptions, *, message: str, check_memo: bool = True,
             run_id: str | None = None) -> dict[str, Any]:
    """Commit the worktree containing ``path`` to the shadow branch; return the lock's git section.

    Keys: ``root, head, branch, dirty, remotes`` (as :func:`repo_info`, ``dirty`` meaning the
    snapshot differs from HEAD), ``snapshot: {commit, tree, branch, ref, parent_head, reused}``,
    ``files_of_interest: {relpath: blob sha | None}``, ``diffstat`` and ``skipped_large``.
    ``ref`` is what keeps the commit reachable: with ``run_id``, the run's own
    ``refs/runlock/runs/<run_id>`` (moved with the branch, in one transaction; ``runlock rm``
    deletes it and never the shared branch), else the branch.
    Outside a repository: ``{"repo": None, "skipped": reason}`` and one warning. While another
    git process holds ``.git/index.lock`` longer than ``options.lock_timeout_s``: HEAD, branch
    and remotes (read without the index), ``snapshot: None``, ``skipped`` and ``warning``.
    """
    start = path if path.is_dir() else path.parent
    key = memo_key(start, options)
    keep_ref = run_ref(run_id) if run_id is not None else None
    if check_memo:
        cached = cached_snapshot(path, options, run_id)
        if cached is not None:
            if keep_ref is not None:
                keep_snapshot(cached)
            return cached
    t_start = time.time_ns()
    ref = branch_ref(options.branch)
    try:
        repo = locate(start)
    except _subprocess.CommandNotFound:
        return _skipped(path, "git is not installed")
    if repo is None:
        return _skipped(path, "not a git repository")
    head_ref = symbolic_head(repo)
    if head_ref == ref:
        raise GitError(
            f"the snapshot branch {options.branch!r} is checked out in {repo.root}.",
            hint="check out another branch, or configure another snapshot branch "
            "(SnapshotOptions.branch).",
        )
    # The worktree scan (two git processes) and then hashing, write-tree and the commit are
    # the critical path; the other git calls run beside it on threads.
    with ThreadPoolExecutor(max_workers=4) as pool:
        side = _SideCalls(pool, repo.root, ref)
        side.read_meta()
        try:
            try:
                tree, skipped, changed = write_snapshot_tree(
                    repo, options, on_scanned=side.start, on_index=side.start_diffstat)
            except IndexLockedError as exc:
                return _index_locked(repo.root, head_ref, side, exc)
            (head, tip), config = side.commits.result(), side.config.result()
            check_owned(tip, options.branch)
            base_tree = head.tree if head else EMPTY_TREE.get(len(tree), EMPTY_TREE[40])
            blob_ids = _blob_ids(repo.root, tree, options.files_of_interest)
            head_sha = head.sha if head else None
            commit, reused = advance(side.writers, ref, tree, head_sha, tip, message, config,
                                     options, keep_ref)
        finally:
            side.close()  # the commit writers left unused (a reused tip, an error)
        result = {
            "root": str(repo.root),
            "head": head_sha,
            "branch": head_ref.removeprefix("refs/heads/") if head_ref else None,
            "dirty": tree != base_tree or bool(skipped),
            "remotes": remote_urls(config),
            "snapshot": {
                "commit": commit,
                "tree": tree,
                "branch": ref.removeprefix("refs/heads/"),
                "ref": keep_ref or ref,
                "parent_head": head_sha,
                "reused": reused,
            },
            "files_of_interest": blob_ids,
            "diffstat": side.diffstat_or(base_tree, tree),
            "skipped_large": skipped,
            # untracked/modified secret files (.env, *.pem, .aws/...) not captured
            "secrets_left_out": split_secret_files(changed, options)[1],
        }
        if len(MEMO) >= MEMO_MAX:
            MEMO.pop(next(iter(MEMO)), None)
        # a few stats now; the worktree list is only built if this process snapshots again
        MEMO[key] = Memo(copy.deepcopy(result), repo, tree, head_ref, ref, list(skipped), t_start,
                           changed)
        return result


class _SideCalls:
    """The git calls of a snapshot that are off its critical path, on a thread pool: HEAD and
    the shadow tip, the config and identities, the diffstat, and the commit writers."""

    def __init__(self, pool: ThreadPoolExecutor, root: Path, ref: str) -> None:
        self.pool, self.root, self.ref = pool, root, ref
        self.diffstat: Future[str | None] | None = None
        self._writers: Future[CommitWriters] | None = None

    def read_meta(self) -> None:
        """HEAD, the shadow tip, the config and identities: started with the scan (two small
        processes; in a small repository they would otherwise end up on the critical path)."""
        self.commits = self.pool.submit(read_commits, self.root, ["HEAD", self.ref])
        self.config = self.pool.submit(read_config, self.root)

    def start(self) -> None:
        """Called once the worktree is scanned, while update-index hashes the changes: the
        commit writers start on the core it leaves free (during the scan both are busy; on
        5,000 files starting them earlier measured ~8% slower)."""
        if self._writers is not None:
            return  # (a second attempt at the tree)
        self._writers = self.pool.submit(CommitWriters, self.root)

    @property
    def writers(self) -> CommitWriters:
        assert self._writers is not None, "start() first"
        return self._writers.result()

    def start_diffstat(self, index: Path) -> None:
        """Called when ``index`` holds the snapshot's content: the diffstat against HEAD runs
        from it while write-tree runs, instead of after it."""
        if index.exists():
            frozen = index.with_name(index.name + ".stat")
            link_or_copy(index, frozen)  # write-tree replaces ``index`` meanwhile
            self.diffstat = self.pool.submit(_shortstat_of_index, self.root, self.commits, frozen)

    def diffstat_or(self, base_tree: str, tree: str) -> str:
        """The diffstat started from the index, else ``git diff --shortstat base tree``."""
        early = self.diffstat.result() if self.diffstat is not None else None
        return early if early is not None else _shortstat(self.root, base_tree, tree)

    def close(self) -> None:
        if self._writers is not None and self._writers.exception() is None:
            self._writers.result().close()


def _index_locked(root: Path, head_ref: str | None, side: _SideCalls, exc: IndexLockedError
                  ) -> dict[str, Any]:
    """The section when the index stayed locked: what git tells without reading the index (HEAD
    and the shadow tip come from ``cat-file``, the remotes from ``git var -l``)."""
    (head, _), config = side.commits.result(), side.config.result()
    warning = f"source code not snapshotted: {exc}"
    logger.warning("runlock: %s", warning)
    return {
        "root": str(root),
        "head": head.sha if head else None,
        "branch": head_ref.removeprefix("refs/heads/") if head_ref else None,
        "dirty": None,  # unknown: telling would take the index
        "remotes": remote_urls(config),
        "snapshot": None,
        "skipped": "index locked",
        "warning": warning,
    }


def _skipped(path: Path, reason: str) -> dict[str, Any]:
    logger.warning("runlock: source code not snapshotted: %s (%s)", reason, path)
    return {"repo": None, "skipped": reason}


def _blob_ids(root: Path, tree: str, files: Sequence[str]) -> dict[str, str | None]:
    """Blob id in the snapshot of each file of interest (None when not in the snapshot)."""
    if not files:
        return {}
    real_root = root.resolve()
    rels: list[str] = []
    for name in files:
        p = Path(name)
        rels.append(Path(os.path.relpath(p.resolve(), real_root)).as_posix() if p.is_absolute()
                    else p.as_posix())
    inside = [r for r in rels if r != ".." and not r.startswith("../")]  # git refuses others
    if not inside:
        return dict.fromkeys(sorted(rels))
    out = run_git(root, ["--literal-pathspecs", "ls-tree", "-r", "-z", "--full-tree", tree, "--",
                      *inside])
    found: dict[str, str] = {}
    for entry in out.stdout.split("\0"):
        meta, _, name = entry.partition("\t")
        if name:
            found[name] = meta.split()[2]
    return {rel: found.get(rel) for rel in sorted(rels)}


def _shortstat_of_index(root: Path, commits: Future[list[Commit | None]], index: Path
                        ) -> str | None:
    """``git diff --shortstat HEAD tree`` computed from the index the tree is written from;
    None without a HEAD commit."""
    try:
        head = commits.result()[0]
        if head is None:
            return None
        out = run_git(root, ["diff", "--cached", "--shortstat", head.tree],
                      extra_env={"GIT_INDEX_FILE": str(index)})
        return out.stdout.strip()
    finally:
        index.unlink(missing_ok=True)


def _shortstat(root: Path, base_tree: str, tree: str) -> str:
    if base_tree == tree:
        return ""
    return run_git(root, ["diff", "--shortstat", base_tree, tree]).stdout.strip()
