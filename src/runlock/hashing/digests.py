"""Digests of walked files: the stat cache first, then reads; files that changed while read."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Sequence

from .cache import HashCache, StatKey, stat_key
from .progress import progress_bar
from .read import default_jobs, read_all, read_checked
from .walk import File, real_path

# A digest is cached only for files whose mtime is this much older than the start of the
# hash: a write right after our read could otherwise keep the same (coarse) mtime and be
# missed forever ("racy git" problem). 2 s covers the coarsest common filesystems (FAT, SMB).
RACY_WINDOW_NS = 2_000_000_000


def digest_files(
    files: Sequence[File],
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
        with gc_paused():
            keys = [stat_key(st) for _, _, st, _ in files]  # type: ignore[arg-type]
            cached, exact = cache.get_tree(under, keys)
    else:
        cached = [None] * len(files)
    todo = [i for i, d in enumerate(cached) if d is None]
    started_ns = time.time_ns()
    nbytes = sum(st.st_size for i in todo if (st := files[i][2]) is not None)
    with progress_bar(label, nbytes, len(todo), progress if nbytes or not todo else False) as advance:
        read = read_all(files, todo, default_jobs() if jobs is None else jobs, advance)
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
            read[i] = read_checked(real_path(files[i]))
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
            ((stat_key(read[i][1]), real_path(files[i]), digests[i]) for i in trusted), tree=tree
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
def gc_paused() -> Iterator[None]:
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
