"""The filtered worktree as a git tree, built in a temporary index.

The user's index is never written: a temporary copy of it (or of the private index kept from
the last snapshot) gets the worktree changes, then ``write-tree``."""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import xxhash

from .. import _subprocess
from ..errors import GitError
from .commands import BASE_ENV, POLL_S, Repo, finish_git, run_git
from .options import SnapshotOptions, split_secret_files

logger = logging.getLogger("runlock")


def write_snapshot_tree(
    repo: Repo,
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
    repo: Repo,
    options: SnapshotOptions,
    source: Path,
    private: Path | None,
    on_scanned: Callable[[], None] | None,
    on_index: Callable[[Path], None] | None,
) -> tuple[str, list[str], list[str]]:
    """:func:`write_snapshot_tree` starting from the index ``source``."""
    _sweep_stale(repo.git_dir)
    tmp_index = repo.git_dir / f"{_TMP_PREFIX}{os.getpid()}-{os.urandom(6).hex()}"
    try:
        if source.exists():  # (a missing index is an empty one)
            link_or_copy(source, tmp_index)
    except OSError as exc:
        raise GitError(
            f"cannot create a temporary index in {repo.git_dir}: {exc}",
            hint="runlock needs write access to the repository's .git directory.",
        ) from exc
    try:
        env = {**BASE_ENV, "GIT_INDEX_FILE": str(tmp_index)}
        scans = _start_scan(repo.root, _pathspecs(repo.root, options), env)
        # update-index starts (and reads the index) while the worktree is scanned; it waits
        # for the changed paths on stdin. No input: it leaves the index as it is.
        update = _subprocess.start(["git", "update-index", "-z", "--add", "--remove", "--stdin"],
                                   cwd=repo.root, extra_env=env)
        try:
            changed = _changed_paths(repo.root, scans)
            # secret files (.env, keys...) never reach the index: the shadow branch is pushed
            captured, _ = split_secret_files(changed, options)
            to_update, skipped = _filter_sizes(repo.root, captured, options.max_file_bytes)
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
        try:
            if on_scanned is not None:
                on_scanned()
        except BaseException:
            update.finish()  # it exits before its index goes away below
            raise
        finish_git(update, "", repo.root)
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
        tree = finish_git(write_tree, "", repo.root,
                       hint="with a merge in progress, resolve the conflicts first (git status).")
        if private is not None and tmp_index.exists() and private == _private_index(repo, options):
            _keep_private(tmp_index, private)  # the user index did not change meanwhile
    finally:
        tmp_index.unlink(missing_ok=True)
    if skipped:
        logger.warning(
            "runlock: %d file(s) larger than %g MB not snapshotted: %s (keep them out with "
            "@runlock.stage(snapshot_exclude=[...]) or .gitignore, or raise "
            "@runlock.stage(snapshot_max_file_mb=...))",
            len(skipped), options.max_file_bytes / 2**20, ", ".join(skipped),
        )
    return tree, skipped, changed


_TMP_PREFIX = "runlock-index-"
#: a temporary index (or its lock, or its diffstat link) this old is a killed process's
_STALE_S = 3600.0


def _sweep_stale(git_dir: Path) -> None:
    """Remove temporary indexes left by snapshots that were killed (``kill -9``, a node lost).

    Age is the inode's ctime, which a hard link or a copy sets when it is made; no snapshot
    runs for an hour, and a process on another host sharing the repository cannot be asked.
    """
    limit = time.time() - _STALE_S
    try:
        with os.scandir(git_dir) as entries:
            for entry in entries:
                if entry.name.startswith(_TMP_PREFIX):
                    try:
                        if entry.stat(follow_symlinks=False).st_ctime < limit:
                            os.unlink(entry.path)
                    except OSError:
                        pass
    except OSError:  # housekeeping only
        pass


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


def _private_index(repo: Repo, options: SnapshotOptions) -> Path | None:
    """``.git/runlock/index-<filters>-<user index signature>``; None without a user index."""
    try:
        st = os.stat(repo.index)
    except OSError:
        return None
    dirs = sorted({os.path.abspath(d) for d in options.exclude_dirs})
    kept = [d for d in dirs if not any(d != o and d.startswith(o + os.sep) for o in dirs)]
    filters = repr((options.include, options.exclude, options.max_file_bytes, kept,
                    options.secret_files)).encode()
    sig = f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}".encode()
    return (repo.git_dir / "runlock" /
            f"index2-{xxhash.xxh3_64_hexdigest(filters)}-{xxhash.xxh3_64_hexdigest(sig)}")


def link_or_copy(src: Path, dst: Path) -> None:
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


def drop_private_indexes(root: Path) -> None:
    """Remove the private indexes of every worktree of ``root``'s repository.

    Their entries may name blobs that only the deleted snapshots kept reachable: after a
    ``git gc`` those are gone, and a snapshot built on such an index would reference them.
    """
    common = Path(run_git(root, ["rev-parse", "--path-format=absolute", "--git-common-dir"]
                       ).stdout.strip())
    for folder in [common / "runlock", *common.glob("worktrees/*/runlock")]:
        for index in folder.glob("index*"):
            index.unlink(missing_ok=True)


class IndexLockedError(GitError):
    """``.git/index.lock`` outlived the wait: the worktree cannot be snapshotted now (the run
    still records HEAD and the reason, see :func:`runlock.git.snapshot`)."""


def _wait_for_lock(lock: Path, timeout_s: float) -> None:
    """Wait for another git command to finish writing the index, so the snapshot sees its result."""
    deadline = time.monotonic() + timeout_s
    while lock.exists():
        if time.monotonic() >= deadline:
            raise IndexLockedError(
                f"{lock} still exists after {timeout_s:g} s: "
                "another git process is using the index.",
                hint=f"if no git command is running, the lock is stale: remove {lock}",
            )
        time.sleep(POLL_S)


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
        outputs = [finish_git(scan, "", root, strip=False) for scan in scans]
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
