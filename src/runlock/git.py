"""The git owner: everything runlock asks of git goes through this module (and the git CLI).

Source snapshots
----------------
:func:`snapshot` records the working tree (tracked changes, deletions and untracked files that
are not gitignored) as a commit on a *shadow branch* (``runlock/snapshots`` by default) without
touching the user's HEAD, index, worktree, stash or current branch. It uses git plumbing on a
temporary index: the real index is copied (its stat data lets git skip re-hashing unchanged
files), only the changed paths are hashed into the copy, then ``write-tree`` / ``commit-tree`` /
``update-ref`` (compare-and-swap, retried on races).

Each snapshot commit has the previous snapshot as its **first** parent (so
``git log --first-parent runlock/snapshots`` browses the snapshots, newest first) and the HEAD
the run started from as its **second** parent (so the code it was based on stays reachable and
survives ``git gc --prune=now``). The message ends with the trailers ``Runlock-Snapshot: 1`` and
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

import copy
import logging
import os
import random
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import xxhash

from . import _subprocess
from .errors import GitError
from .redact import redact_url
from .watch import DirWatch, watch_dirs

logger = logging.getLogger("runlock")

SNAPSHOT_TRAILER = "Runlock-Snapshot: 1"
HEAD_TRAILER = "Runlock-Head"
DEFAULT_BRANCH = "runlock/snapshots"
# The empty tree, by hash length (SHA-1, SHA-256): the base of a diff in a repo with no commits.
_EMPTY_TREE = {
    40: "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
    64: "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321",
}
_POLL_S = 0.02
# Read-only commands must not take the index lock for an opportunistic refresh (that would make
# the user's own git commands fail while a run starts).
_BASE_ENV = {"GIT_OPTIONAL_LOCKS": "0", "GIT_LITERAL_PATHSPECS": "0"}
# update-ref messages that mean "someone else moved or is moving the ref": re-read and retry.
_RACE_MARKERS = ("but expected", "reference already exists", "unable to resolve reference")
_MAX_RACES = 500  # a safety net only: each lost race is another snapshot's success
# The identity of snapshot commits when the user has not configured one (user.name/email).
_FALLBACK_NAME, _FALLBACK_EMAIL = "runlock", "runlock@localhost"


def _git(cwd: Path, *args: str) -> _subprocess.Completed:
    return _subprocess.run(["git", *args], cwd=cwd, extra_env=_BASE_ENV)


def repo_root(path: Path) -> Path | None:
    """Top-level directory of the work tree containing ``path``, or None outside git."""
    start = path if path.is_dir() else path.parent
    try:
        out = _git(start, "rev-parse", "--show-toplevel")
    except (_subprocess.CommandNotFound, FileNotFoundError):
        return None
    return Path(out.stdout.strip()) if out.ok else None


def repo_info(path: Path) -> dict[str, Any] | None:
    """Basic facts about the repository containing ``path`` (root, HEAD, branch, dirty, remotes)."""
    root = repo_root(path)
    if root is None:
        return None
    head = _git(root, "rev-parse", "--verify", "-q", "HEAD")
    branch = _git(root, "symbolic-ref", "-q", "--short", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=normal")
    remotes: dict[str, str] = {}
    for line in _git(root, "remote", "-v").stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-1] == "(fetch)":
            remotes[parts[0]] = redact_url(parts[1])
    return {
        "root": str(root),
        "head": head.stdout.strip() if head.ok else None,
        "branch": branch.stdout.strip() if branch.ok else None,
        "dirty": bool(status.stdout.strip()),
        "remotes": remotes,
    }


# --------------------------------------------------------------------------------------------
# snapshots


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


@dataclass(frozen=True)
class _Repo:
    root: Path
    git_dir: Path  # this worktree's git dir (linked worktrees have their own index and HEAD)
    index: Path


@dataclass(frozen=True)
class _Commit:
    sha: str
    tree: str
    message: str

    @property
    def is_snapshot(self) -> bool:
        return SNAPSHOT_TRAILER in self.message.splitlines()

    @property
    def recorded_head(self) -> str | None:
        prefix = f"{HEAD_TRAILER}: "
        for line in reversed(self.message.splitlines()):
            if line.startswith(prefix):
                value = line[len(prefix):].strip()
                return None if value == "none" else value
        return None


def cached_snapshot(path: Path, options: SnapshotOptions) -> dict[str, Any] | None:
    """The lock section of this process's last snapshot of ``path`` when nothing it depends on
    changed since (one ``lstat`` per tracked file and directory, no git process); else None."""
    start = path if path.is_dir() else path.parent
    memo = _MEMO.get(_memo_key(start, options))
    if memo is None or not memo.still_valid():
        return None
    reused = copy.deepcopy(memo.result)
    reused["snapshot"]["reused"] = True
    return reused


def snapshot(path: Path, options: SnapshotOptions, *, message: str, check_memo: bool = True) -> dict[str, Any]:
    """Commit the worktree containing ``path`` to the shadow branch; return the lock's git section.

    Keys: ``root, head, branch, dirty, remotes`` (as :func:`repo_info`, ``dirty`` meaning the
    snapshot differs from HEAD), ``snapshot: {commit, tree, branch, ref, parent_head, reused}``,
    ``files_of_interest: {relpath: blob sha | None}``, ``diffstat`` and ``skipped_large``.
    Outside a repository: ``{"repo": None, "skipped": reason}`` and one warning.
    """
    start = path if path.is_dir() else path.parent
    key = _memo_key(start, options)
    if check_memo:
        cached = cached_snapshot(path, options)
        if cached is not None:
            return cached
    t_start = time.time_ns()
    ref = _branch_ref(options.branch)
    try:
        repo = _locate(start)
    except _subprocess.CommandNotFound:
        return _skipped(path, "git is not installed")
    if repo is None:
        return _skipped(path, "not a git repository")
    head_ref = _symbolic_head(repo)
    if head_ref == ref:
        raise GitError(
            f"the snapshot branch {options.branch!r} is checked out in {repo.root}.",
            hint="check out another branch, or configure another snapshot branch "
            "(SnapshotOptions.branch).",
        )
    # The worktree scan (two git processes) and then hashing, write-tree and the commit are
    # the critical path. The other git calls run on threads while update-index and write-tree
    # (one process each) leave the second core free.
    with ThreadPoolExecutor(max_workers=4) as pool:
        side = _SideCalls(pool, repo.root, ref)
        try:
            tree, skipped, changed = _write_snapshot_tree(
                repo, options, on_scanned=side.start, on_index=side.start_diffstat)
            (head, tip), config = side.commits.result(), side.config.result()
            _check_owned(tip, options.branch)
            base_tree = head.tree if head else _EMPTY_TREE.get(len(tree), _EMPTY_TREE[40])
            pending_stat = side.diffstat or pool.submit(_shortstat, repo.root, base_tree, tree)
            blob_ids = _blob_ids(repo.root, tree, options.files_of_interest)
            head_sha = head.sha if head else None
            commit, reused = _advance(side.writers, ref, tree, head_sha, tip, message,
                                      config, options)
        finally:
            side.close()  # the commit writers left unused (a reused tip, an error)
        result = {
            "root": str(repo.root),
            "head": head_sha,
            "branch": head_ref.removeprefix("refs/heads/") if head_ref else None,
            "dirty": tree != base_tree or bool(skipped),
            "remotes": _remotes(config),
            "snapshot": {
                "commit": commit,
                "tree": tree,
                "branch": ref.removeprefix("refs/heads/"),
                "ref": ref,
                "parent_head": head_sha,
                "reused": reused,
            },
            "files_of_interest": blob_ids,
            "diffstat": pending_stat.result(),
            "skipped_large": skipped,
        }
        if len(_MEMO) >= _MEMO_MAX:
            _MEMO.pop(next(iter(_MEMO)), None)
        # a few stats now; the worktree list is only built if this process snapshots again
        _MEMO[key] = _Memo(copy.deepcopy(result), repo, tree, head_ref, ref, list(skipped), t_start,
                           changed)
        return result


# --------------------------------------------------------------------------------------------
# in-process memo: a process running stages again on an unchanged tree skips git entirely

#: (start dir, filters) -> the last snapshot of this process and what it depends on
_MEMO: dict[tuple[Any, ...], _Memo] = {}
_MEMO_MAX = 16
#: margin for the filesystem's coarse timestamps: a worktree entry whose ctime is not at least
#: this much older than the snapshot's start may have changed during or after it
_RACY_NS = 1_000_000_000


class _Memo:
    """A snapshot and the proof that it still describes the worktree.

    The worktree is unchanged when every entry of the snapshot's tree (and every directory above
    or next to one, whose ctime moves when a file is added, removed or renamed in it) has a
    ctime older than the snapshot's start: a write, ``touch``, ``cp -p``, ``rsync -t`` or rename
    all set ctime to *now*, even when they set mtime back. git's metadata (HEAD, refs, the user's
    index, config, excludes) must be byte-for-byte the same files (stat signature).
    """

    def __init__(self, result: dict[str, Any], repo: _Repo, tree: str, head_ref: str | None,
                 ref: str, skipped: list[str], t_start: int, changed: Sequence[str] = ()) -> None:
        self.result, self.repo, self.tree = result, repo, tree
        self.head_ref, self.ref, self.skipped, self.t_start = head_ref, ref, skipped, t_start
        self.meta = _meta_paths(repo, ref, head_ref)
        self.meta_sig = _stat_sig(self.meta)  # after update-ref: our own ref move is included
        # The files that differed from HEAD are the ones being edited: checked first, they turn
        # "the user edited a file again" into a few stats instead of listing the whole tree.
        root = str(repo.root)
        self.hot = [(p, os.path.lexists(p)) for p in (os.path.join(root, rel) for rel in changed)]
        self.work: list[str] | None = None
        self.watch: DirWatch | None = None  # set with the first full check (Linux)

    def still_valid(self) -> bool:
        if _stat_sig(self.meta) != self.meta_sig:
            return False
        limit = self.t_start - _RACY_NS
        for path, existed in self.hot:
            try:
                if os.lstat(path).st_ctime_ns >= limit:
                    return False
            except OSError:
                if existed:
                    return False
        if self.watch is not None:
            # Watched since the full check below passed: no event, no change since.
            return not self.watch.changed()
        if self.work is None:  # first reuse in this process: list the tree once (one git call)
            files, dirs = _work_paths(self.repo, self.tree, self.skipped)
            self.work = files + dirs
            # Watches start before the stat check: a change after it is an event, one before
            # it a new ctime. Later checks then read the watch instead of stat-ing everything.
            self.watch = watch_dirs(dirs, root=str(self.repo.root))
        lstat = os.lstat
        for p in self.work:
            try:
                if lstat(p).st_ctime_ns >= limit:
                    self.close()
                    return False
            except OSError:
                self.close()
                return False
        return True

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
            self.watch = None


def _memo_key(start: Path, options: SnapshotOptions) -> tuple[Any, ...]:
    # a run directory inside an excluded results root changes nothing that is captured
    dirs = sorted({os.path.abspath(d) for d in options.exclude_dirs})
    kept = tuple(d for d in dirs if not any(d != o and d.startswith(o + os.sep) for o in dirs))
    return (os.path.abspath(start), options.branch, options.include, options.exclude,
            options.max_file_bytes, options.files_of_interest, kept)


def _stat_sig(paths: Sequence[str]) -> list[tuple[int, int, int, int] | None]:
    out: list[tuple[int, int, int, int] | None] = []
    lstat = os.lstat
    for p in paths:
        try:
            st = lstat(p)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode))
    return out


def _meta_paths(repo: _Repo, ref: str, head_ref: str | None) -> list[str]:
    common = repo.git_dir
    try:
        common = (repo.git_dir / (repo.git_dir / "commondir").read_text().strip()).resolve()
    except OSError:
        pass
    meta = [repo.git_dir / "HEAD", repo.index, common / "packed-refs", common / "config",
            common / "info" / "exclude", common / ref]
    if head_ref:
        meta.append(common / head_ref)
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    meta.append(Path(xdg) / "git" / "ignore")
    return [str(p) for p in meta]


def _work_paths(repo: _Repo, tree: str, skipped: Sequence[str]) -> tuple[list[str], list[str]]:
    """Every entry of ``tree`` and the large files left out; every directory above them and the
    directories next to those (a new untracked file changes its directory's ctime)."""
    out = _run(repo.root, ["ls-tree", "-r", "-z", "--name-only", "--full-tree", tree])
    files = [p for p in out.stdout.split("\0") if p] + list(skipped)
    root = str(repo.root)
    dirs = {""}
    for rel in files:
        parent = rel.rpartition("/")[0]
        while parent not in dirs:
            dirs.add(parent)
            parent = parent.rpartition("/")[0]
    siblings: set[str] = set()
    for d in dirs:
        try:
            with os.scandir(os.path.join(root, d)) as it:
                for e in it:
                    if e.name != ".git" and e.is_dir(follow_symlinks=False):
                        siblings.add(f"{d}/{e.name}" if d else e.name)
        except OSError:
            pass
    return [os.path.join(root, p) for p in files], [os.path.join(root, d) for d in sorted(dirs | siblings)]


def snapshot_diff(
    repo: Path, commit_a: str, commit_b: str, patch: bool = False
) -> dict[str, list[str]] | str:
    """Files changed from ``commit_a`` to ``commit_b``, or the patch text when ``patch``.

    Typical use: ``snapshot_diff(root, git.snapshot.parent_head, git.snapshot.commit)`` shows a
    run's uncommitted changes; two runs' snapshot commits show how their code differs.
    """
    if patch:
        # Bytes, decoded leniently: a patch may contain non-UTF-8 file content.
        out = _run(repo, ["diff", "--no-color", commit_a, commit_b], text=False)
        return cast(bytes, out.stdout).decode("utf-8", "replace")
    out = _run(repo, ["diff", "--name-status", "-z", "--no-renames", commit_a, commit_b])
    changes: dict[str, list[str]] = {"added": [], "modified": [], "deleted": []}
    fields = out.stdout.split("\0")
    for status_letter, name in zip(fields[0::2], fields[1::2]):
        key = {"A": "added", "D": "deleted"}.get(status_letter[:1], "modified")
        changes[key].append(name)
    return {k: sorted(v) for k, v in changes.items()}


def delete_snapshot_ref(repo: Path, branch: str = DEFAULT_BRANCH) -> bool:
    """Delete the shadow branch (its commits become garbage for ``git gc``); False if absent.

    Refuses a branch that is not a runlock snapshot branch, so a misconfigured name cannot
    delete user work.
    """
    root = repo_root(repo)
    if root is None:
        raise GitError(f"{repo} is not inside a git repository.", hint="pass a repository path.")
    ref = _branch_ref(branch)
    (tip,) = _read_commits(root, [ref])
    if tip is None:
        return False
    _check_owned(tip, branch)
    _run(root, ["update-ref", "-d", ref, tip.sha])
    _drop_private_indexes(root)
    return True


def _drop_private_indexes(root: Path) -> None:
    """Remove the private indexes of every worktree of ``root``'s repository.

    Their entries may name blobs that only the deleted snapshots kept reachable: after a
    ``git gc`` those are gone, and a snapshot built on such an index would reference them.
    """
    common = Path(_run(root, ["rev-parse", "--path-format=absolute", "--git-common-dir"]
                       ).stdout.strip())
    for folder in [common / "runlock", *common.glob("worktrees/*/runlock")]:
        for index in folder.glob("index*"):
            index.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# snapshot steps


def _skipped(path: Path, reason: str) -> dict[str, Any]:
    logger.warning("runlock: source code not snapshotted: %s (%s)", reason, path)
    return {"repo": None, "skipped": reason}


def _branch_ref(branch: str) -> str:
    return branch if branch.startswith("refs/") else f"refs/heads/{branch}"


#: start dir + discovery environment -> its repository, found earlier in this process
_LOCATED: dict[tuple[str, ...], _Repo] = {}
_DISCOVERY_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_CEILING_DIRECTORIES",
                  "GIT_DISCOVERY_ACROSS_FILESYSTEM", "GIT_COMMON_DIR", "GIT_INDEX_FILE")


def _locate(start: Path) -> _Repo | None:
    """The work tree, git dir and index of ``start``'s repository (None outside).

    One git call, remembered for the process: a later run from the same directory checks with
    a few stats that the repository is still there and that no nested one appeared on the way
    up, instead of paying a process (~3 ms) on every snapshot.
    """
    key = (os.path.abspath(start), *(os.environ.get(k, "") for k in _DISCOVERY_ENV))
    known = _LOCATED.get(key)
    if known is not None and _still_located(Path(key[0]), known):
        return known
    repo = _locate_uncached(start)
    if repo is not None:
        _LOCATED[key] = repo
    else:
        _LOCATED.pop(key, None)
    return repo


def _still_located(start: Path, repo: _Repo) -> bool:
    if not os.path.isfile(repo.git_dir / "HEAD"):
        return False
    try:
        below = start.relative_to(repo.root)
    except ValueError:
        return False
    d = start
    for _ in below.parts:  # a .git created between start and the root would now win
        if os.path.lexists(d / ".git"):
            return False
        d = d.parent
    return True


def _locate_uncached(start: Path) -> _Repo | None:
    out = _subprocess.run(
        ["git", "rev-parse", "--show-toplevel", "--absolute-git-dir", "--git-path", "index"],
        cwd=start,
        extra_env=_BASE_ENV,
    )
    lines = out.stdout.splitlines()
    if not out.ok or len(lines) < 3:
        return None  # not a repository, or a bare one (no work tree to snapshot)
    return _Repo(Path(lines[0]), Path(lines[1]), start / lines[2])


def _symbolic_head(repo: _Repo) -> str | None:
    """The ref HEAD points to (``refs/heads/main``), None when detached.

    Reads the HEAD file (saves one git process per run); falls back to git for ref backends
    that do not store HEAD as a file.
    """
    try:
        content = (repo.git_dir / "HEAD").read_text().strip()
    except OSError:
        content = ""
    if content.startswith("ref: ") and not content.endswith("/.invalid"):
        return content[5:]
    if content and not content.startswith("ref:"):
        return None  # detached: the file holds a commit id
    out = _git(repo.root, "symbolic-ref", "-q", "HEAD")
    return out.stdout.strip() if out.ok else None


def _read_commits(root: Path, revs: Sequence[str]) -> list[_Commit | None]:
    """Resolve several revisions in one ``cat-file --batch`` call; None for a missing one."""
    request = "".join(f"{rev}^{{commit}}\n" for rev in revs).encode()
    # text=False: object sizes are in bytes; run() returns bytes then despite its annotation.
    out = _run(root, ["cat-file", "--batch"], input=cast(str, request), text=False)
    data = cast(bytes, out.stdout)
    commits: list[_Commit | None] = []
    pos = 0
    for _ in revs:
        end = data.index(b"\n", pos)
        header = data[pos:end].decode().split()
        pos = end + 1
        if len(header) != 3 or header[1] != "commit":
            commits.append(None)  # "<rev> missing"
            continue
        size = int(header[2])
        body = data[pos:pos + size].decode("utf-8", "replace")
        pos += size + 1
        headers, _, msg = body.partition("\n\n")
        tree = headers.split("\n", 1)[0].removeprefix("tree ")
        commits.append(_Commit(header[0], tree, msg))
    return commits


class _SideCalls:
    """The git calls of a snapshot that are off its critical path, on a thread pool: HEAD and
    the shadow tip, the config and identities, the diffstat, and the commit writers."""

    def __init__(self, pool: ThreadPoolExecutor, root: Path, ref: str) -> None:
        self.pool, self.root, self.ref = pool, root, ref
        self.diffstat: Future[str] | None = None
        self._writers: Future[_CommitWriters] | None = None

    def start(self) -> None:
        """Called once the worktree is scanned, while update-index hashes the changes."""
        if self._writers is not None:
            return  # (a second attempt at the tree)
        self.commits = self.pool.submit(_read_commits, self.root, ["HEAD", self.ref])
        self.config = self.pool.submit(_read_config, self.root)
        self._writers = self.pool.submit(_CommitWriters, self.root)

    @property
    def writers(self) -> _CommitWriters:
        assert self._writers is not None, "start() first"
        return self._writers.result()

    def start_diffstat(self, index: Path) -> None:
        """Called when ``index`` holds the snapshot's content: the diffstat against HEAD runs
        from it while write-tree runs, instead of after it."""
        head = self.commits.result()[0]
        if head is not None and index.exists():
            frozen = index.with_name(index.name + ".stat")
            _link_or_copy(index, frozen)  # write-tree replaces ``index`` meanwhile
            self.diffstat = self.pool.submit(_shortstat_of_index, self.root, head.tree, frozen)

    def close(self) -> None:
        if self._writers is not None and self._writers.exception() is None:
            self._writers.result().close()


def _check_owned(tip: _Commit | None, branch: str) -> None:
    """Refuse to append snapshots to a branch that holds the user's own commits."""
    if tip is not None and not tip.is_snapshot:
        raise GitError(
            f"branch {branch!r} exists and is not a runlock snapshot branch "
            f"(its tip {tip.sha[:12]} has no '{SNAPSHOT_TRAILER}' trailer).",
            hint="configure another snapshot branch (SnapshotOptions.branch), "
            "e.g. 'runlock/snapshots-<you>'.",
        )


def _read_config(root: Path) -> dict[str, list[str]]:
    """The configuration and git's author and committer idents (``GIT_AUTHOR_IDENT``...), in one
    git call (``git var -l``).

    ``EMAIL`` (git's last resort for an address) is set for this call when unset: without an
    address git would guess one from the host name, which may mean a slow DNS lookup.
    """
    env = {} if "EMAIL" in os.environ else {"EMAIL": _FALLBACK_EMAIL}
    out = _run(root, ["var", "-l"], extra_env=env)
    config: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config.setdefault(key, []).append(value)
    return config


def _idents(config: Mapping[str, list[str]]) -> tuple[str, str]:
    """Author and committer lines of a snapshot commit: the user's identity when configured,
    else a neutral runlock one (as runlock < 0.3 did)."""
    configured = "user.name" in config and "user.email" in config
    idents = []
    for role in ("AUTHOR", "COMMITTER"):
        who, _, when = config[f"GIT_{role}_IDENT"][-1].rpartition("> ")
        if not configured:
            name = os.environ.get(f"GIT_{role}_NAME", _FALLBACK_NAME)
            email = os.environ.get(f"GIT_{role}_EMAIL", _FALLBACK_EMAIL)
            who = f"{_ident_part(name)} <{_ident_part(email)}"
        idents.append(f"{who}> {when}")
    return idents[0], idents[1]


def _ident_part(value: str) -> str:
    """What git keeps of a name or address: no angle brackets or line breaks."""
    return " ".join(value.translate({ord("<"): None, ord(">"): None}).split()) or _FALLBACK_NAME


def _remotes(config: Mapping[str, list[str]]) -> dict[str, str]:
    urls = {k[len("remote."):-len(".url")]: v[0] for k, v in config.items()
            if k.startswith("remote.") and k.endswith(".url") and v}
    return {name: redact_url(urls[name]) for name in sorted(urls)}


def _write_snapshot_tree(
    repo: _Repo,
    options: SnapshotOptions,
    on_scanned: Callable[[], None] | None = None,
    on_index: Callable[[Path], None] | None = None,
) -> tuple[str, list[str], list[str]]:
    """Tree id of the filtered working tree, the paths skipped for their size, and the paths
    that differed from the (private) index.

    ``on_scanned()`` is called when the changed paths are known, ``on_index(index)`` when the
    temporary index holds the snapshot's content (just before write-tree); both may be called
    a second time when a stale private index is dropped.
    """
    _wait_for_lock(repo.index.with_name(repo.index.name + ".lock"), options.lock_timeout_s)
    # A private index kept from the previous snapshot (same user index, same filters) already
    # holds the hashed worktree changes with fresh stat data: git re-hashes only what changed
    # since, and write-tree reuses its cache-tree. Its name carries the user index's stat
    # signature, so a `git add` / commit / checkout (a new user index) starts a new one.
    private = _private_index(repo, options)
    if private is not None and private.exists():
        try:
            return _tree_from(repo, options, private, private, on_scanned, on_index)
        except GitError as exc:
            # It names blobs that no longer exist: the shadow branch was deleted behind
            # runlock's back (`git branch -D`) and garbage-collected. Start again from the
            # user's index.
            logger.debug("runlock: private index %s dropped: %s", private, exc)
            private.unlink(missing_ok=True)
    return _tree_from(repo, options, repo.index, private, on_scanned, on_index)


def _tree_from(
    repo: _Repo,
    options: SnapshotOptions,
    source: Path,
    private: Path | None,
    on_scanned: Callable[[], None] | None,
    on_index: Callable[[Path], None] | None,
) -> tuple[str, list[str], list[str]]:
    """:func:`_write_snapshot_tree` starting from the index ``source``."""
    tmp_index = repo.git_dir / f"runlock-index-{os.getpid()}-{os.urandom(6).hex()}"
    try:
        if source.exists():  # (a missing index is an empty one)
            _link_or_copy(source, tmp_index)
    except OSError as exc:
        raise GitError(
            f"cannot create a temporary index in {repo.git_dir}: {exc}",
            hint="runlock needs write access to the repository's .git directory.",
        ) from exc
    try:
        env = {**_BASE_ENV, "GIT_INDEX_FILE": str(tmp_index)}
        scans = _start_scan(repo.root, _pathspecs(repo.root, options), env)
        # update-index starts (and reads the index) while the worktree is scanned; it waits
        # for the changed paths on stdin. No input: it leaves the index as it is.
        update = _subprocess.start(["git", "update-index", "-z", "--add", "--remove", "--stdin"],
                                   cwd=repo.root, extra_env=env)
        try:
            changed = _changed_paths(repo.root, scans)
            to_update, skipped = _filter_sizes(repo.root, changed, options.max_file_bytes)
        except BaseException:
            update.cancel()
            raise
        payload = "".join(f"{p}\0" for p in to_update)
        if to_update and _file_dir_swap(to_update):
            # A file became a directory or the reverse: only --replace accepts that, and it
            # makes git drop its cached trees (write-tree then rebuilds all of them, ~20 ms on
            # 5,000 files), so it is used only then.
            update.finish("")
            update = _subprocess.start(
                ["git", "update-index", "-z", "--add", "--remove", "--replace", "--stdin"],
                cwd=repo.root, extra_env=env)
        update.send(payload)  # hashing starts now; the side work below runs beside it
        if on_scanned is not None:
            on_scanned()
        _finish(update, "", repo.root)
        # (Not --missing-ok, though it would save a stat per loose object in each changed
        # directory: the check is what catches a private index naming blobs that are gone.)
        write_tree = _subprocess.start(["git", "write-tree"], cwd=repo.root, extra_env=env)
        try:
            if on_index is not None:
                # write-tree only adds cached trees to the index it rewrites: the entries, all
                # that on_index() reads, are the snapshot's content before and after.
                on_index(tmp_index)
        except BaseException:
            write_tree.cancel()
            raise
        tree = _finish(write_tree, "", repo.root,
                       hint="with a merge in progress, resolve the conflicts first (git status).")
        if private is not None and tmp_index.exists() and private == _private_index(repo, options):
            _keep_private(tmp_index, private)  # the user index did not change meanwhile
    finally:
        tmp_index.unlink(missing_ok=True)
    if skipped:
        logger.warning(
            "runlock: %d file(s) larger than %d bytes not snapshotted: %s "
            "(exclude them, or raise SnapshotOptions.max_file_bytes)",
            len(skipped), options.max_file_bytes, ", ".join(skipped),
        )
    return tree, skipped, changed


def _file_dir_swap(paths: Sequence[str]) -> bool:
    """Whether one changed path lies under another: ``foo`` deleted and ``foo/bar`` new (or the
    reverse) is a file replaced by a directory, which update-index accepts only with --replace."""
    changed = set(paths)
    for p in paths:
        parent = p.rpartition("/")[0]
        while parent:
            if parent in changed:
                return True
            parent = parent.rpartition("/")[0]
    return False


def _private_index(repo: _Repo, options: SnapshotOptions) -> Path | None:
    """``.git/runlock/index-<filters>-<user index signature>``; None without a user index."""
    try:
        st = os.stat(repo.index)
    except OSError:
        return None
    dirs = sorted({os.path.abspath(d) for d in options.exclude_dirs})
    kept = [d for d in dirs if not any(d != o and d.startswith(o + os.sep) for o in dirs)]
    filters = repr((options.include, options.exclude, options.max_file_bytes, kept)).encode()
    sig = f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}".encode()
    return (repo.git_dir / "runlock" /
            f"index2-{xxhash.xxh3_64_hexdigest(filters)}-{xxhash.xxh3_64_hexdigest(sig)}")


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` with the content and mtime of the index ``src`` (git's racy-clean checks compare
    entries with the index file's mtime).

    A hard link where the filesystem allows: git never writes an index in place (it writes
    ``<index>.lock`` and renames it over), so the link keeps the content it had, at the cost of
    one directory entry instead of a 0.5 MB copy.
    """
    try:
        os.link(src, dst)
        return
    except FileExistsError:
        raise
    except OSError:  # no hard links here (some network or FUSE filesystems): copy
        pass
    st = os.stat(src)
    dst.write_bytes(src.read_bytes())
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def _keep_private(tmp_index: Path, private: Path) -> None:
    """Make ``tmp_index`` the private index (atomic rename); drop older ones of these filters."""
    try:
        private.parent.mkdir(exist_ok=True)
        os.replace(tmp_index, private)
        prefix = private.name.rsplit("-", 1)[0] + "-"
        for old in private.parent.iterdir():
            # older ones of these filters, and any of runlock < 0.2's naming ("index-...")
            if (old.name.startswith(prefix) or old.name.startswith("index-")) and old != private:
                old.unlink(missing_ok=True)
    except OSError:  # an optimisation only
        pass


def _wait_for_lock(lock: Path, timeout_s: float) -> None:
    """Wait for another git command to finish writing the index, so the snapshot sees its result."""
    deadline = time.monotonic() + timeout_s
    while lock.exists():
        if time.monotonic() >= deadline:
            raise GitError(
                f"{lock} still exists after {timeout_s:g} s: "
                "another git process is using the index.",
                hint=f"if no git command is running, the lock is stale: remove {lock}",
            )
        time.sleep(_POLL_S)


def _pathspecs(root: Path, options: SnapshotOptions) -> list[str]:
    specs = _glob_specs(options.include, "glob") + _glob_specs(options.exclude, "exclude,glob")
    real_root = root.resolve()
    for directory in options.exclude_dirs:
        rel = os.path.relpath(Path(directory).resolve(), real_root)
        if rel != "." and rel != ".." and not rel.startswith("../"):  # outside: nothing to do
            specs.append(f":(exclude,literal){Path(rel).as_posix()}")
    return specs


def _glob_specs(patterns: Iterable[str], magic: str) -> list[str]:
    """gitignore-style patterns as pathspecs: unanchored ones match at any depth, dirs recurse."""
    specs: list[str] = []
    for pattern in patterns:
        body = pattern.strip().strip("/")
        if not body:
            continue
        anchored = "/" in pattern.strip().rstrip("/")  # a leading or inner slash anchors
        base = body if anchored else f"**/{body}"
        # A glob pathspec does not match below a matched directory: add the "/**" form for that.
        specs += [f":({magic}){base}", f":({magic}){base}/**"]
    return specs


def _start_scan(root: Path, pathspecs: Sequence[str], env: Mapping[str, str]
                ) -> list[_subprocess.Started]:
    """Start listing the modified, deleted and untracked (not ignored) paths.

    Two ``ls-files`` at once, one comparing the tracked files' stat data, one walking for
    untracked files: on two cores ~15 ms instead of ~23 for one process doing both (5,000
    files), and this is the longest step of a snapshot.
    """
    return [_subprocess.start(["git", "ls-files", "-z", *args, "--", *pathspecs], cwd=root,
                              extra_env=env)
            for args in (["--modified"], ["--others", "--exclude-standard"])]


def _changed_paths(root: Path, scans: Sequence[_subprocess.Started]) -> list[str]:
    """The paths listed by :func:`_start_scan`'s commands, sorted."""
    try:
        outputs = [_finish(scan, "", root, strip=False) for scan in scans]
    finally:
        for scan in scans:
            scan.cancel()  # (a no-op for those that finished)
    return sorted({p for out in outputs for p in out.split("\0") if p})


def _filter_sizes(root: Path, paths: Iterable[str], max_bytes: int) -> tuple[list[str], list[str]]:
    """Split changed paths into those to hash and those too large to (never hashed)."""
    keep: list[str] = []
    skipped: list[str] = []
    for rel in paths:
        if rel.endswith("/"):
            continue  # an untracked nested repository: not part of this repository's content
        try:
            st = os.lstat(root / rel)
        except (FileNotFoundError, NotADirectoryError):  # (its directory became a file)
            keep.append(rel)  # deleted: update-index --remove drops it
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size > max_bytes:
            skipped.append(rel)
        else:
            keep.append(rel)
    return keep, skipped


class _CommitWriters:
    """``hash-object`` (writes the commit) and ``update-ref --stdin`` (moves the branch),
    started while the tree is still being written: each then costs a pipe write instead of a
    process start (~4 ms each) on the snapshot's critical path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.commit: _subprocess.Started | None = _start(
            root, ["hash-object", "-t", "commit", "-w", "--stdin"])
        self.ref: _subprocess.Started | None = _start(
            root, ["update-ref", "-m", "runlock snapshot", "--stdin"])

    def take(self) -> tuple[_subprocess.Started, _subprocess.Started]:
        """The started pair for the first attempt; fresh processes for a retry."""
        commit, ref = self.commit, self.ref
        if commit is None or ref is None:
            commit = _start(self.root, ["hash-object", "-t", "commit", "-w", "--stdin"])
            ref = _start(self.root, ["update-ref", "-m", "runlock snapshot", "--stdin"])
        self.commit = self.ref = None
        return commit, ref

    def close(self) -> None:
        for proc in (self.commit, self.ref):
            if proc is not None:
                proc.cancel()
        self.commit = self.ref = None


def _start(root: Path, args: Sequence[str]) -> _subprocess.Started:
    return _subprocess.start(["git", *args], cwd=root, extra_env=_BASE_ENV)


def _finish(started: _subprocess.Started, input: str, root: Path,
            hint: str = "check the repository with 'git status' and 'git fsck'.",
            strip: bool = True) -> str:
    """Feed and wait for a started git command; its output, or a GitError with git's words."""
    out = started.finish(input)
    if not out.ok:
        raise GitError(f"git {started.argv[1]} failed in {root}: {out.stderr.strip()}", hint=hint)
    return out.stdout.strip() if strip else out.stdout


def _advance(
    writers: _CommitWriters,
    ref: str,
    tree: str,
    head: str | None,
    tip: _Commit | None,
    message: str,
    config: Mapping[str, list[str]],
    options: SnapshotOptions,
) -> tuple[str, bool]:
    """Commit ``tree`` on top of the shadow tip and move the ref by compare-and-swap.

    Returns (commit, reused). Concurrent runs race on the ref: a lost race re-reads the tip and
    retries, so every snapshot lands in the chain. An unchanged tree on the same HEAD reuses the
    tip instead of piling up identical commits.
    """
    root = writers.root
    author, committer = _idents(config)
    trailers = f"{SNAPSHOT_TRAILER}\n{HEAD_TRAILER}: {head or 'none'}\n"
    body = f"{message.strip() or 'runlock snapshot'}\n\n{trailers}"
    locked_until: float | None = None
    for _ in range(_MAX_RACES):
        if tip is not None and tip.tree == tree and tip.recorded_head == head:
            return tip.sha, True
        parents = "".join(f"parent {p}\n" for p in (tip.sha if tip else None, head) if p)
        make_commit, move_ref = writers.take()
        try:
            commit = _finish(make_commit, f"tree {tree}\n{parents}author {author}\n"
                             f"committer {committer}\n\n{body}", root)
        except BaseException:
            move_ref.cancel()
            raise
        old = tip.sha if tip else "0" * len(commit)  # zeros: the ref must not exist yet
        out = move_ref.finish(f"update {ref} {commit} {old}\n")
        if out.ok:
            return commit, False
        if "File exists" in out.stderr:  # another process holds <ref>.lock: wait, bounded
            locked_until = locked_until or time.monotonic() + options.lock_timeout_s
            if time.monotonic() >= locked_until:
                raise GitError(
                    f"the snapshot branch {ref} stayed locked for {options.lock_timeout_s:g} s: "
                    f"{out.stderr.strip().splitlines()[0]}",
                    hint="if no git command is running, the lock is stale: remove the "
                    "'.lock' file named above.",
                )
        elif not any(marker in out.stderr for marker in _RACE_MARKERS):
            raise GitError(
                f"cannot update the snapshot branch {ref}: {out.stderr.strip()}",
                hint="configure another snapshot branch (SnapshotOptions.branch).",
            )
        # A lost race means another snapshot landed: re-read the tip and stack on top of it.
        time.sleep(random.uniform(0, _POLL_S))  # jitter: racing processes spread out
        (tip,) = _read_commits(root, [ref])
        _check_owned(tip, ref.removeprefix("refs/heads/"))
    raise GitError(f"gave up updating the snapshot branch {ref} after {_MAX_RACES} lost races.",
                   hint="too many concurrent runs: retry, or give groups of runs their own branch.")


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
    out = _run(root, ["--literal-pathspecs", "ls-tree", "-r", "-z", "--full-tree", tree, "--",
                      *inside])
    found: dict[str, str] = {}
    for entry in out.stdout.split("\0"):
        meta, _, name = entry.partition("\t")
        if name:
            found[name] = meta.split()[2]
    return {rel: found.get(rel) for rel in sorted(rels)}


def _shortstat_of_index(root: Path, base_tree: str, index: Path) -> str:
    """``git diff --shortstat base tree`` computed from the index the tree is written from."""
    try:
        out = _run(root, ["diff", "--cached", "--shortstat", base_tree],
                   extra_env={"GIT_INDEX_FILE": str(index)})
        return out.stdout.strip()
    finally:
        index.unlink(missing_ok=True)


def _shortstat(root: Path, base_tree: str, tree: str) -> str:
    if base_tree == tree:
        return ""
    return _run(root, ["diff", "--shortstat", base_tree, tree]).stdout.strip()


def _run(
    root: Path,
    args: Sequence[str],
    *,
    extra_env: Mapping[str, str] | None = None,
    input: str | None = None,
    text: bool = True,
    hint: str = "check the repository with 'git status' and 'git fsck'.",
) -> _subprocess.Completed:
    """Run git in ``root``; a failure becomes a GitError carrying git's own explanation."""
    out = _subprocess.run(["git", *args], cwd=root, extra_env={**_BASE_ENV, **(extra_env or {})},
                          input=input, text=text)
    if not out.ok:
        err = out.stderr if isinstance(out.stderr, str) else cast(bytes, out.stderr).decode(
            "utf-8", "replace")
        raise GitError(f"git {args[0]} failed in {root}: {err.strip()}", hint=hint)
    return out


# --------------------------------------------------------------------------- code remotes, worktrees
# Used by push/pull (refs under refs/runlock/runs/ on a code remote) and reproduce (a detached
# worktree of a snapshot). Network commands never prompt for credentials.
_REMOTE_ENV = {"GIT_TERMINAL_PROMPT": "0"}


def has_commit(repo: Path, commit: str) -> bool:
    """True when ``commit`` exists in ``repo``'s object store."""
    return _git(repo, "cat-file", "-e", f"{commit}^{{commit}}").ok


def update_ref(repo: Path, ref: str, commit: str) -> None:
    _run(repo, ["update-ref", ref, commit])


def push_refs(repo: Path, remote: str, refspecs: Sequence[str]) -> _subprocess.Completed:
    """``git push REMOTE REFSPEC...`` without hooks or prompts; the caller judges the result."""
    return _subprocess.run(
        ["git", "push", "--quiet", "--no-verify", remote, *refspecs],
        cwd=repo,
        extra_env={**_BASE_ENV, **_REMOTE_ENV},
    )


def fetch_refs(repo: Path, remote: str, refspecs: Sequence[str]) -> _subprocess.Completed:
    """``git fetch REMOTE REFSPEC...`` without tags or prompts; the caller judges the result."""
    return _subprocess.run(
        ["git", "fetch", "--quiet", "--no-tags", remote, *refspecs],
        cwd=repo,
        extra_env={**_BASE_ENV, **_REMOTE_ENV},
    )


@contextmanager
def detached_worktree(repo: Path, commit: str) -> Iterator[Path]:
    """A temporary detached worktree at ``commit`` (the user's work tree untouched), removed
    afterwards, also on errors."""
    import shutil

    tmp = Path(tempfile.mkdtemp(prefix="runlock-worktree-"))
    wt = tmp / "src"
    out = _git(repo, "worktree", "add", "--detach", "--quiet", str(wt), commit)
    if not out.ok:
        shutil.rmtree(tmp, ignore_errors=True)
        raise GitError(f"Cannot check out snapshot {commit} of {repo}: {out.stderr.strip()}")
    try:
        yield wt
    finally:
        _git(repo, "worktree", "remove", "--force", str(wt))
        shutil.rmtree(tmp, ignore_errors=True)
        _git(repo, "worktree", "prune")
