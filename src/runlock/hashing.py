"""Content hashes of data inputs and run outputs.

Files hash to the xxh3_64 hex digest of their content. Directories hash to exactly what
``dirhash.dirhash(path, algorithm=xxhash.xxh3_64, match=..., ignore=...)`` (dirhash 0.5) returns,
so a hash in a run.lock can be checked with that package alone. We reimplement its protocol
rather than call it because dirhash reads every file on every call, in one process (or a
process pool for ``jobs>1``); here files are read by threads (xxhash and file reads release the
GIL) and unchanged files come from a stat cache (:mod:`runlock.hashcache`).

dirhash protocol, as implemented by dirhash 0.5 / scantree 0.0.4, reproduced below:

* walk the tree following symlinks (to files and directories); a symlink to a directory on the
  current branch is a cycle (dirhash raises, so do we);
* directories are always walked; only *files* are matched, by their path relative to the root
  (``a/b.txt``), against gitwildmatch patterns ``match + ["!" + p for p in ignore]``
  (default ``["*"]``); sockets, fifos and broken symlinks are skipped by dirhash (we raise for a
  broken symlink that the patterns would include: a dangling input is almost always a bug);
* a directory without included files (recursively) is left out (``empty_dirs=False``);
* entry descriptor: ``"data:<file hash>\\0name:<name>"`` or ``"dirhash:<dir hash>\\0name:<name>"``;
  directory descriptor: the sorted entry descriptors joined by ``"\\0\\0"``; directory hash:
  ``xxh3_64(descriptor.encode("utf-8")).hexdigest()``.

dirhash refuses a directory with nothing to hash; we hash its empty descriptor so that an empty
input is recorded instead of failing the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat as stat_mod
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import xxhash

from .errors import DataError, UsageError
from .hashcache import HashCache, StatKey, stat_key

__all__ = [
    "ALGORITHM",
    "BackgroundHasher",
    "HashCache",
    "hash_outputs",
    "hash_path",
    "verify_outputs",
]

logger = logging.getLogger("runlock")

ALGORITHM = "xxh3_64"
# First read of every file: a small file is read whole in one call. 128 KiB, not 1 MiB: on
# 20,000 files of 4-64 KiB the 1 MiB request ran at 0.6x a plain loop here, 128 KiB at 1.0x.
CHUNK_BYTES = 1 << 17
# Reads after the first chunk (large files): fewer calls per byte.
LARGE_CHUNK_BYTES = 1 << 20
# A digest is cached only for files whose mtime is this much older than the start of the
# hash: a write right after our read could otherwise keep the same (coarse) mtime and be
# missed forever ("racy git" problem). 2 s covers the coarsest common filesystems (FAT, SMB).
RACY_WINDOW_NS = 2_000_000_000
# Files at least this large are read by a thread of their own; smaller ones by the caller
# (see _read_all).
_THREAD_MIN_BYTES = 4 << 20
_PROGRESS_MIN_BYTES = 1 << 30
_PROGRESS_MIN_FILES = 10_000

Advance = Callable[[int], None]


@dataclass(slots=True, frozen=True)
class _Where:
    """A walked directory: how the files found in it are named."""

    real: str  # resolved path ("" for "/")
    rel: str  # relative to the hashed root, "/"-separated ("" for the root)


# A file found by the walk: (directory, name, stat before reading, resolved path if a symlink).
# A plain tuple, not an object: building one per file is a measurable part of re-checking
# 20,000 cached files, so paths are derived only when needed (_rel, _real).
# The stat is None when the walk did not stat (no cache): files are then fstat-ed when opened.
_File = tuple[_Where, str, "os.stat_result | None", "str | None"]


def _rel(f: _File) -> str:
    """Path relative to the hashed root ("/"-separated); the name for a single-file input."""
    return f"{f[0].rel}/{f[1]}" if f[0].rel else f[1]


def _real(f: _File) -> str:
    """Resolved path: what is opened and what the cache stores."""
    return f[3] if f[3] is not None else f"{f[0].real}/{f[1]}"


_SCANDIR_FD = os.scandir in os.supports_fd
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(slots=True)
class _Dir:
    name: str
    files: list[int] = field(default_factory=list)  # indices in the file list
    dirs: list[_Dir] = field(default_factory=list)


# -- walking ----------------------------------------------------------------------------------


def _matcher(
    match: Sequence[str] | None, ignore: Sequence[str] | None
) -> Callable[[str], bool] | None:
    """dirhash's file filter (``get_match_patterns`` + scantree's ``RecursionFilter``)."""
    if isinstance(match, str) or isinstance(ignore, str):
        raise UsageError("match and ignore take a list of patterns, not a string")
    patterns = ["*"] if match is None else list(match)
    patterns += ["!" + p for p in (ignore or [])]
    patterns = list(dict.fromkeys(patterns))  # dirhash deduplicates, keeping the order
    if patterns == ["*"]:
        return None
    try:
        from pathspec import PathSpec
        from pathspec.patterns.gitwildmatch import GitWildMatchPattern
    except ImportError as exc:  # pragma: no cover - pathspec ships with dirhash
        raise UsageError(
            "match/ignore patterns need the 'pathspec' package", hint="pip install pathspec"
        ) from exc
    import warnings

    with warnings.catch_warnings():
        # pathspec >= 1 deprecates GitWildMatchPattern, but it is what dirhash matches with.
        warnings.simplefilter("ignore", DeprecationWarning)
        spec = PathSpec.from_lines(GitWildMatchPattern, patterns)
    # pathspec.util.match_file: the last pattern that matches decides. Walking the regexes
    # backwards and stopping at the first hit is the same and 3x cheaper per file. Our relative
    # paths are already normalized ("/"-separated, no leading "/" or "./").
    rules = [
        (p.regex.search, bool(p.include))
        for p in reversed(spec.patterns)
        if p.include is not None and p.regex is not None
    ]

    def matches(rel: str) -> bool:
        for search, include in rules:
            if search(rel) is not None:
                return include
        return False

    return matches


def _scan(
    root: str,
    matcher: Callable[[str], bool] | None,
    *,
    broken: Literal["raise", "skip"] = "raise",
    prune: Callable[[str], bool] | None = None,
    stat: bool = True,
) -> tuple[_Dir, list[_File]]:
    """Walk ``root`` like scantree does for dirhash; stat every included file once."""
    files: list[_File] = []
    root_real = os.path.realpath(root)
    ancestors = {root_real}

    def walk(abs_dir: str, real_dir: str, rel_dir: str, name: str) -> _Dir:
        node = _Dir(name)
        where = _Where(real_dir, rel_dir)
        node_files = node.files
        fd = -1
        try:
            if _SCANDIR_FD:
                # Listing through a directory fd makes DirEntry.stat() an fstatat(fd, name):
                # no path lookup per file, which is most of the cost of re-checking a dataset.
                fd = os.open(abs_dir, _DIR_FLAGS)
                entries = list(os.scandir(fd))
            else:  # pragma: no cover - Windows
                entries = list(os.scandir(abs_dir))
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            raise DataError(f"cannot list data directory {abs_dir}: {exc.strerror}") from exc
        try:
            for e in entries:
                ename = e.name
                try:
                    is_link = e.is_symlink()
                    if e.is_dir():
                        rel = f"{rel_dir}/{ename}" if rel_dir else ename
                        if prune is not None and prune(rel):
                            continue
                        epath = f"{abs_dir}/{ename}"
                        real = os.path.realpath(epath) if is_link else f"{real_dir}/{ename}"
                        if is_link and real in ancestors:
                            raise DataError(f"symlink cycle in data: {epath} -> {real}")
                        ancestors.add(real)
                        child = walk(epath, real, rel, ename)
                        ancestors.discard(real)
                        if child.files or child.dirs:
                            node.dirs.append(child)
                        continue
                    if matcher is not None or prune is not None:
                        rel = f"{rel_dir}/{ename}" if rel_dir else ename
                        if prune is not None and prune(rel):
                            continue
                        if matcher is not None and not matcher(rel):
                            continue
                    if e.is_file():
                        node_files.append(len(files))
                        if is_link:
                            files.append(
                                (
                                    where,
                                    ename,
                                    e.stat() if stat else None,
                                    os.path.realpath(f"{abs_dir}/{ename}"),
                                )
                            )
                        else:
                            files.append((where, ename, e.stat() if stat else None, None))
                    elif is_link and broken == "raise":
                        epath = f"{abs_dir}/{ename}"
                        if not os.path.exists(epath):
                            raise DataError(
                                f"broken symlink in data: {epath} -> {os.readlink(epath)}",
                                hint="fix or remove the link, or exclude it with an ignore pattern",
                            )
                    # sockets, fifos, devices: skipped, as dirhash does
                except DataError:
                    raise
                except FileNotFoundError as exc:  # deleted between listing and stat
                    raise _VanishedError(
                        f"data file vanished while hashing: {abs_dir}/{ename}"
                    ) from exc
                except OSError as exc:
                    raise DataError(
                        f"cannot access data file {abs_dir}/{ename}: {exc.strerror}"
                    ) from exc
        finally:
            if fd >= 0:
                os.close(fd)
        return node

    return walk(root, root_real.rstrip("/"), "", os.path.basename(root)), files


def _dir_digest(node: _Dir, files: Sequence[_File], digests: Sequence[str]) -> str:
    entries = [f"dirhash:{_dir_digest(d, files, digests)}\0name:{d.name}" for d in node.dirs]
    entries += [f"data:{digests[i]}\0name:{files[i][1]}" for i in node.files]
    entries.sort()
    return xxhash.xxh3_64_hexdigest("\0\0".join(entries).encode("utf-8", "surrogateescape"))


# -- reading ----------------------------------------------------------------------------------

_tls = threading.local()
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)

# What reading one file returns: (digest, stat before reading, stat after reading).
_Read = tuple[str, os.stat_result, os.stat_result]


class _VanishedError(DataError):
    """A file listed by the walk and deleted before it was opened."""


def _buffer(size: int = CHUNK_BYTES) -> memoryview:
    """This thread's reusable read buffer of ``size`` bytes."""
    name = f"buf{size}"
    buf: memoryview | None = getattr(_tls, name, None)
    if buf is None:
        buf = memoryview(bytearray(size))
        setattr(_tls, name, buf)
    return buf


def _open_fd(path: str) -> int:
    try:
        return os.open(path, _OPEN_FLAGS)
    except FileNotFoundError as exc:
        raise _VanishedError(f"data file vanished while hashing: {path}") from exc
    except OSError as exc:
        raise DataError(f"cannot read data file {path}: {exc.strerror}") from exc


def _start(path: str, advance: Advance | None) -> tuple[int, str | Any, os.stat_result]:
    """Open ``path``, read its first chunk and ``fstat`` it.

    A file that fits in the chunk is done: ``(-1, digest, stat)``, its descriptor closed after
    open/readv/fstat/close, fewer syscalls than a plain ``open().read()`` loop. A larger one
    comes back open as ``(fd, hasher, stat)`` for :func:`_finish`, on this or another thread.
    """
    fd = _open_fd(path)
    try:
        buf = _buffer()
        # readv into a reused buffer: no allocation per chunk, and the GIL is released.
        k = os.readv(fd, [buf])
        st = os.fstat(fd)
        if k < len(buf) and st.st_size == k:  # a short read of the whole file: EOF
            digest = xxhash.xxh3_64_hexdigest(buf[:k])
            os.close(fd)
            if advance is not None:
                advance(k)
            return -1, digest, st
        h = xxhash.xxh3_64(buf[:k])
    except OSError as exc:
        os.close(fd)
        raise DataError(f"cannot read data file {path}: {exc.strerror}") from exc
    except BaseException:
        os.close(fd)
        raise
    if advance is not None:
        advance(k)
    return fd, h, st


def _finish(fd: int, h: Any, path: str, advance: Advance | None) -> tuple[str, os.stat_result]:
    """Read the rest of a file opened by :func:`_start` (closing it); its digest and stat."""
    try:
        buf = _buffer(LARGE_CHUNK_BYTES)
        while k := os.readv(fd, [buf]):
            h.update(buf[:k])
            if advance is not None:
                advance(k)
        after = os.fstat(fd)
    except OSError as exc:
        raise DataError(f"cannot read data file {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    return str(h.hexdigest()), after


def _read_path(path: str, advance: Advance | None) -> _Read:
    fd, x, st = _start(path, advance)
    if fd < 0:
        return x, st, st
    digest, after = _finish(fd, x, path, advance)
    return digest, st, after


def _read_checked(path: str) -> _Read:
    """Digest with an ``fstat`` before and after the read: the pair shows a concurrent write."""
    fd = _open_fd(path)
    try:
        before = os.fstat(fd)
    except OSError as exc:  # pragma: no cover - fstat of an open fd does not fail in practice
        os.close(fd)
        raise DataError(f"cannot read data file {path}: {exc.strerror}") from exc
    digest, after = _finish(fd, xxhash.xxh3_64(), path, None)
    return digest, before, after


def _default_jobs() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _read_all(
    files: Sequence[_File], todo: Sequence[int], jobs: int, advance: Advance | None
) -> dict[int, _Read]:
    """Digest the files at ``todo``: small ones on this thread, large ones on ``jobs`` threads.

    Parallelism pays for large files only. For small ones the per-file work is short GIL-bound
    slices between syscalls, and two threads contending for the GIL ran at 0.54x a plain loop
    on 20,000 files of 4-64 KiB (2 cores), against 0.84x on one. A file is large when its size
    (``fstat`` after its first chunk) reaches ``_THREAD_MIN_BYTES``: it is handed, open, to a
    reader thread while this thread goes on with the next files. One large file cannot be
    split (xxh3 is not combinable).
    """
    if jobs <= 1 or len(todo) < 2:
        return {i: _read_path(_real(files[i]), advance) for i in todo}
    out: dict[int, _Read] = {}
    pool = None
    pending: list[tuple[int, os.stat_result, Any]] = []
    order = todo
    if files[todo[0]][2] is not None:  # sizes known from the walk: longest reads start first
        order = sorted(todo, key=lambda i: -files[i][2].st_size)  # type: ignore[union-attr]
    try:
        for i in order:
            path = _real(files[i])
            fd, x, st = _start(path, advance)
            if fd < 0:
                out[i] = (x, st, st)
                continue
            if st.st_size < _THREAD_MIN_BYTES:
                digest, after = _finish(fd, x, path, advance)
                out[i] = (digest, st, after)
                continue
            if pool is None:
                from concurrent.futures import ThreadPoolExecutor

                pool = ThreadPoolExecutor(jobs, thread_name_prefix="runlock-hash")
            try:
                future = pool.submit(_finish, fd, x, path, advance)
            except BaseException:
                os.close(fd)
                raise
            pending.append((i, st, future))
        for i, st, future in pending:
            digest, after = future.result()
            out[i] = (digest, st, after)
    finally:
        if pool is not None:
            # Submitted reads close their own descriptors: let them finish, even on an error.
            pool.shutdown(wait=True)
    return out


@contextlib.contextmanager
def _progress(label: str, nbytes: int, nfiles: int, show: bool | None) -> Iterator[Advance | None]:
    """A rich progress bar on a terminal for large inputs; nothing otherwise."""
    if show is None:
        show = (nbytes >= _PROGRESS_MIN_BYTES or nfiles >= _PROGRESS_MIN_FILES) and _stderr_tty()
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("hashing {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=nbytes)
        yield lambda n: bar.advance(task, n)


def _stderr_tty() -> bool:
    from .logs import use_rich

    return use_rich()


def _needs_stat(cache: HashCache | None, progress: bool | None) -> bool:
    """Whether the walk must stat every file: for cache keys, or to size a progress bar.

    Otherwise files are only fstat-ed once opened, which keeps a cold (uncached) hash of many
    small files as cheap as a plain read loop.
    """
    return cache is not None or progress is True or (progress is None and _stderr_tty())


def _digests(
    files: Sequence[_File],
    *,
    label: str,
    under: str | None,
    cache: HashCache | None,
    jobs: int | None,
    progress: bool | None,
) -> tuple[list[str], list[int], int]:
    """Digests of ``files`` (cache first, then read), indices of files that changed while
    hashed, and the total size."""
    if not files:  # e.g. a run without outputs: no cache round trip (sqlite open + write)
        return [], [], 0
    keys: list[StatKey] = []
    exact = False
    if cache is not None:
        with _gc_paused():
            keys = [stat_key(st) for _, _, st, _ in files]  # type: ignore[arg-type]
            cached, exact = cache.get_tree(under, keys)
    else:
        cached = [None] * len(files)
    todo = [i for i, d in enumerate(cached) if d is None]
    started_ns = time.time_ns()
    nbytes = sum(st.st_size for i in todo if (st := files[i][2]) is not None)
    with _progress(label, nbytes, len(todo), progress if nbytes or not todo else False) as advance:
        read = _read_all(files, todo, _default_jobs() if jobs is None else jobs, advance)
    changed: list[int] = []
    size = 0
    trusted: list[int] = []
    fresh = started_ns - RACY_WINDOW_NS
    for i in list(read):
        walked = files[i][2]
        if walked is None and read[i][1] is read[i][2] and read[i][2].st_mtime_ns >= fresh:
            # Read whole with one fstat, after the read, and written recently: a write during
            # the read cannot be told from one just before it. Read it again between two
            # fstats (only recent files: a dataset's are old, a run's fresh outputs are few).
            read[i] = _read_checked(_real(files[i]))
        _, before, after = read[i]
        if (walked is None or _same(walked, before)) and _same(before, after):
            if after.st_mtime_ns < fresh:
                trusted.append(i)
        else:
            changed.append(i)
    digests: list[str] = []
    for i, d in enumerate(cached):
        if d is None:
            r = read[i]
            digests.append(r[0])
            size += r[1].st_size
        else:
            digests.append(d)
            size += files[i][2].st_size  # type: ignore[union-attr]
    if cache is not None and (todo or (under is not None and not exact)):
        tree = None
        if under is not None:
            skip = set(todo) - set(trusted)  # racy or changed: not trusted next time
            tree = (under, {keys[i]: digests[i] for i in range(len(files)) if i not in skip})
        cache.put_many(
            ((stat_key(read[i][1]), _real(files[i]), digests[i]) for i in trusted), tree=tree
        )
    return digests, sorted(changed), size


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_dev, a.st_size, a.st_mtime_ns) == (
        b.st_ino,
        b.st_dev,
        b.st_size,
        b.st_mtime_ns,
    )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building per-file objects.

    Walking 20,000 files allocates ~40,000 tracked objects, which triggers several full
    collections: in a large ML process each one scans millions of objects. The pause lasts
    only for the walk and the cache lookup, never for reading file contents.
    """
    global _gc_pauses
    import gc

    with _gc_lock:
        _gc_pauses += 1
        if _gc_pauses == 1:
            was = gc.isenabled()
            _gc_state.append(was)
            gc.disable()
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_state.pop():
                gc.enable()


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_state: list[bool] = []


def _stat_input(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except FileNotFoundError as exc:
        if os.path.islink(path):
            raise DataError(
                f"data path is a broken symlink: {path} -> {os.readlink(path)}"
            ) from exc
        raise DataError(
            f"data path not found: {path}", hint="check the path given for this input"
        ) from exc
    except OSError as exc:
        raise DataError(f"cannot access data path {path}: {exc.strerror}") from exc


def _warn_changed(path: str, rels: list[str]) -> None:
    shown = ", ".join(rels[:5]) + (f" (+{len(rels) - 5} more)" if len(rels) > 5 else "")
    logger.warning("%s: %d file(s) changed while being hashed: %s", path, len(rels), shown)


# -- public API -------------------------------------------------------------------------------


def hash_path(
    path: str | os.PathLike[str],
    *,
    match: Sequence[str] | None = None,
    ignore: Sequence[str] | None = None,
    cache: HashCache | None = None,
    jobs: int | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Hash a data file or directory: the ``data`` entry of a run.lock.

    Returns ``{path, kind: "file"|"dir", algorithm: "xxh3_64", hash, size, files}``, plus
    ``match`` / ``ignore`` when given (they change the hash) and ``changed_during_hash``
    (relative paths) when files changed while being read. A directory hash equals
    ``dirhash.dirhash(path, xxhash.xxh3_64, match=match, ignore=ignore)``. ``jobs``: reader
    threads (default: CPUs, at most 8); ``progress``: None = a bar on a terminal for large
    inputs. Raises DataError for missing, unreadable or dangling paths.
    """
    p = os.path.abspath(os.fspath(path))
    st = _stat_input(p)
    if stat_mod.S_ISDIR(st.st_mode):
        kind = "dir"
        under: str | None = os.path.realpath(p)
        matcher = _matcher(match, ignore)
        with _gc_paused():
            tree, files = _scan(p, matcher, stat=_needs_stat(cache, progress))
    elif stat_mod.S_ISREG(st.st_mode):
        kind = "file"
        under = None
        real = os.path.realpath(p)
        files = [(_Where(os.path.dirname(real), ""), os.path.basename(p), st, real)]
        tree = None
    else:
        raise DataError(f"data path is neither a file nor a directory: {p}")
    digests, changed, size = _digests(
        files, label=os.path.basename(p), under=under, cache=cache, jobs=jobs, progress=progress
    )
    digest = digests[0] if tree is None else _dir_digest(tree, files, digests)
    out: dict[str, Any] = {
        "path": p,
        "kind": kind,
        "algorithm": ALGORITHM,
        "hash": digest,
        "size": size,
        "files": len(files),
    }
    if match is not None:
        out["match"] = list(match)
    if ignore:
        out["ignore"] = list(ignore)
    if changed:
        out["changed_during_hash"] = sorted(_rel(files[i]) for i in changed)
        _warn_changed(p, out["changed_during_hash"])
    return out


def _outputs(
    run_dir: str | os.PathLike[str],
    exclude: Collection[str],
    cache: HashCache | None,
    jobs: int | None,
    only: Collection[str] | None = None,
) -> tuple[str, dict[str, str], list[str], list[str]]:
    root = os.path.abspath(os.fspath(run_dir))
    st = _stat_input(root)
    if not stat_mod.S_ISDIR(st.st_mode):
        raise DataError(f"run directory is not a directory: {root}")
    excl = {e.strip("/") for e in exclude}
    for attempt in range(3):
        with _gc_paused():
            _, files = _scan(
                root,
                None,
                broken="skip",
                prune=(lambda rel: rel in excl) if excl else None,
                stat=cache is not None,
            )
        present = sorted(_rel(f) for f in files)
        if only is not None:
            files = [f for f in files if _rel(f) in only]
        try:
            digests, changed, _ = _digests(
                files,
                label=os.path.basename(root),
                under=os.path.realpath(root),
                cache=cache,
                jobs=jobs,
                progress=False,
            )
            break
        except _VanishedError:
            # A temporary file (an atomic write in progress) deleted between listing and
            # reading: list again; outputs are recorded, not validated.
            if attempt == 2:
                raise
    rels = [_rel(f) for f in files]
    manifest = {rels[i]: digests[i] for i in sorted(range(len(files)), key=rels.__getitem__)}
    return root, manifest, present, sorted(rels[i] for i in changed)


def hash_outputs(
    run_dir: str | os.PathLike[str],
    *,
    exclude: Collection[str] = frozenset(),
    cache: HashCache | None = None,
    jobs: int | None = None,
) -> dict[str, Any]:
    """Manifest of a run's outputs: ``{"algorithm", "files": {relpath: digest}}``, sorted.

    ``exclude`` holds relative paths (files or whole directories, e.g. ``run.lock``) left out;
    it is recorded in the manifest (``"exclude"``) so that :func:`verify_outputs` applies the
    same rule later. Broken symlinks are skipped: outputs are recorded, not validated.
    """
    root, files, _, changed = _outputs(run_dir, exclude, cache, jobs)
    out: dict[str, Any] = {"algorithm": ALGORITHM}
    excl = sorted({e.strip("/") for e in exclude})
    if excl:
        out["exclude"] = excl
    out["files"] = files
    if changed:
        out["changed_during_hash"] = changed
        _warn_changed(root, changed)
    return out


def verify_outputs(
    run_dir: str | os.PathLike[str],
    recorded: Mapping[str, Any],
    *,
    cache: HashCache | None = None,
    jobs: int | None = None,
) -> dict[str, Any]:
    """Compare a run directory with its recorded outputs manifest (from :func:`hash_outputs`).

    Returns ``{"match": bool, "changed": [...], "missing": [...], "added": [...]}`` (sorted
    relative paths). Only recorded files are read; added ones are only listed.
    """
    algorithm = recorded.get("algorithm", ALGORITHM)
    if algorithm != ALGORITHM:
        raise DataError(f"outputs were recorded with {algorithm!r}; runlock verifies {ALGORITHM!r}")
    want: Mapping[str, str] = recorded.get("files") or {}
    _, now, present, _ = _outputs(
        run_dir, recorded.get("exclude") or (), cache, jobs, only=set(want)
    )
    changed = sorted(rel for rel, d in now.items() if want.get(rel) != d)
    missing = sorted(rel for rel in want if rel not in now)
    added = sorted(set(present) - set(want))
    return {
        "match": not (changed or missing or added),
        "changed": changed,
        "missing": missing,
        "added": added,
    }


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
