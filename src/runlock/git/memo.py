"""In-process memo: a process running stages again on an unchanged tree skips git entirely."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .commands import Repo, run_git
from .options import SnapshotOptions

if TYPE_CHECKING:
    from .watch import DirWatch

#: (start dir, filters) -> the last snapshot of this process and what it depends on
MEMO: dict[tuple[Any, ...], Memo] = {}
MEMO_MAX = 16
#: margin for the filesystem's coarse timestamps: a worktree entry whose ctime is not at least
#: this much older than the snapshot's start may have changed during or after it
_RACY_NS = 1_000_000_000


class Memo:
    """A snapshot and the proof that it still describes the worktree.

    The worktree is unchanged when every entry of the snapshot's tree (and every directory above
    or next to one, whose ctime moves when a file is added, removed or renamed in it) has a
    ctime older than the snapshot's start: a write, ``touch``, ``cp -p``, ``rsync -t`` or rename
    all set ctime to *now*, even when they set mtime back. git's metadata (HEAD, refs, the user's
    index, config, excludes) must be byte-for-byte the same files (stat signature).
    """

    def __init__(self, result: dict[str, Any], repo: Repo, tree: str, head_ref: str | None,
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
            from .watch import watch_dirs  # (ctypes: ~10 ms to import; a run that snapshots
            # once never gets here)

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


def memo_key(start: Path, options: SnapshotOptions) -> tuple[Any, ...]:
    # a run directory inside an excluded results root changes nothing that is captured
    dirs = sorted({os.path.abspath(d) for d in options.exclude_dirs})
    kept = tuple(d for d in dirs if not any(d != o and d.startswith(o + os.sep) for o in dirs))
    return (os.path.abspath(start), options.branch, options.include, options.exclude,
            options.max_file_bytes, options.files_of_interest, kept, options.secret_files)


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


def _meta_paths(repo: Repo, ref: str, head_ref: str | None) -> list[str]:
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


def _work_paths(repo: Repo, tree: str, skipped: Sequence[str]) -> tuple[list[str], list[str]]:
    """Every entry of ``tree`` and the large files left out; every directory above them and the
    directories next to those (a new untracked file changes its directory's ctime)."""
    out = run_git(repo.root, ["ls-tree", "-r", "-z", "--name-only", "--full-tree", tree])
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
