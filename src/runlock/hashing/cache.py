"""Persistent stat cache for content digests: (st_dev, st_ino, size, mtime_ns) -> xxh3 digest.

Why: re-hashing an unchanged multi-GB dataset at every run would dominate short runs; like
dvc-data's state database we trust a file whose inode, size and modification time are unchanged.

Storage is one SQLite file (default ``<results_root>/.runlock/hashcache.sqlite``) in WAL mode so
that several runs (processes) can read and write it at once. Every entry carries the cache
format version; entries of another version are misses. The cache is an optimisation only: a
corrupt file is moved aside and rebuilt (one warning), and any other database failure (locked
for too long, read-only disk) disables the cache for this process with one warning. It never
fails a run.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Self, TypeVar

if TYPE_CHECKING:
    import sqlite3  # imported when the cache is first used: keeps `import runlock.hashing` light

__all__ = [
    "FORMAT_VERSION",
    "HashCache",
    "StatKey",
    "default_cache_path",
    "is_corruption",
    "move_aside",
    "stat_key",
]

logger = logging.getLogger("runlock")

#: Bump when the meaning of a stored digest changes (algorithm, chunking, key fields).
FORMAT_VERSION = 1

#: "st_dev:st_ino:st_size:st_mtime_ns" of a file (see :func:`stat_key`).
StatKey = str

_T = TypeVar("_T")

# sqlite's primary result codes for a damaged file (not "busy" or "locked", which are transient).
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_BUSY_TIMEOUT_S = 30.0
_IN_CHUNK = 900  # stays under SQLITE_MAX_VARIABLE_NUMBER (999) of old sqlite builds

# `trees` holds, per hashed directory, the (key, digest) pairs of its files as one text value
# "k\td\tk\td...": re-checking an unchanged directory reads one row and builds the lookup
# dict with C-level str.split / dict(zip()), about 5x cheaper than fetching 20,000 rows.
# `entries` stays the per-file truth (single files, moved or partly changed directories).
# `key` is the whole stat key as text: one covering-index range scan returns (key, digest)
# pairs that go straight into a dict, and a hit is one dict lookup (no per-row Python work).
# (dev, ino) is the primary key so that a changed file replaces its stale row.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    key TEXT NOT NULL,
    digest TEXT NOT NULL,
    version INTEGER NOT NULL,
    path BLOB NOT NULL,
    PRIMARY KEY (dev, ino)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_path ON entries (path, version, key, digest);
CREATE INDEX IF NOT EXISTS entries_key ON entries (key);
CREATE TABLE IF NOT EXISTS trees (
    root BLOB NOT NULL PRIMARY KEY,
    version INTEGER NOT NULL,
    pairs TEXT NOT NULL
);
"""


def default_cache_path(results_root: str | os.PathLike[str]) -> Path:
    """Where a results root keeps its hash cache."""
    return Path(results_root) / ".runlock" / "hashcache.sqlite"


def stat_key(st: os.stat_result) -> StatKey:
    """The cache key of a stat result: a file is trusted unchanged while this is unchanged."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _dev_ino(key: StatKey) -> tuple[int, int]:
    dev, ino, _ = key.split(":", 2)
    return _s64(int(dev)), _s64(int(ino))


def _s64(value: int) -> int:
    # SQLite integers are signed 64-bit; st_dev / st_ino are unsigned on some filesystems.
    return value - (1 << 64) if value >= (1 << 63) else value


def is_corruption(exc: BaseException) -> bool:
    """Whether ``exc``, raised by a query on a SQLite cache file, means the file is damaged
    (then it is moved aside and rebuilt) rather than busy, locked or read-only.

    Damaged pages show as SQLITE_CORRUPT / SQLITE_NOTADB, and damaged text cells as a failed
    UTF-8 decode (an OperationalError without an sqlite error code, or UnicodeDecodeError):
    both stay until the file is replaced, so treating them as transient warns at every run.
    """
    import sqlite3

    if isinstance(exc, UnicodeDecodeError):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in _CORRUPT_CODES:
        return True
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text or "could not decode" in text


def move_aside(path: Path, *, inode: int | None = None) -> Path | None:
    """Move a corrupt SQLite file (and its -wal / -shm) to ``<name>.corrupt-<timestamp>``.

    Kept, not deleted: a user can still look at it. ``inode``: of the file the caller found
    corrupt; when ``path`` is another file now, another process already moved the corrupt one
    aside and made a new one, which is left alone (None is returned).
    """
    try:
        if inode is not None and os.stat(path).st_ino != inode:
            return None
    except FileNotFoundError:
        return None
    except OSError:
        pass
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():  # two corruptions within a second: keep both
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    for suffix in ("", "-wal", "-shm", "-journal"):
        src = Path(f"{path}{suffix}")
        try:
            os.replace(src, f"{aside}{suffix}")
        except FileNotFoundError:
            pass  # another process may have moved it already: that is fine
        except OSError:
            try:
                src.unlink()
            except OSError:
                pass
    return aside


class HashCache:
    """Stat cache of file digests in a SQLite file, safe to share between processes.

    The connection opens lazily (constructing a HashCache costs nothing, so the background
    hasher can create it on the caller's thread) and is guarded by a lock so that one instance
    can be used from several threads.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._disabled = False
        self._recovered = False
        self._inode: int | None = None  # of the file we opened: see _move_aside

    def __repr__(self) -> str:
        return f"HashCache({str(self.path)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API ---------------------------------------------------------------------------

    def get(self, key: StatKey) -> str | None:
        """The cached digest of one file, or None."""
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[StatKey], *, under: str | None = None) -> list[str | None]:
        """Digests for ``keys`` (None for a miss), in their order.

        ``under`` is the real path of the directory the files were found in: see
        :meth:`get_tree`. Keys not found that way (files moved, reached through symlinks) are
        looked up by key in batches.
        """
        return self.get_tree(under, keys)[0]

    def get_tree(self, under: str | None, keys: Sequence[StatKey]) -> tuple[list[str | None], bool]:
        """Digests for the files ``keys`` found under directory ``under``, and whether the
        stored snapshot of ``under`` is exactly these files (no need to write it again).

        Batch lookups: the snapshot of ``under`` (one row), then its entries (one range query
        on the path index), then the remaining keys in batches. Never one query per file.
        """
        if not keys:
            return [], False

        def op(conn: sqlite3.Connection) -> tuple[list[str | None], bool]:
            found: dict[str, str] = {}
            exact = False
            out: list[str | None] = [None] * len(keys)
            missing: list[int] = list(range(len(keys)))
            if under is not None:
                root = os.fsencode(under)
                row = conn.execute(
                    "SELECT pairs FROM trees WHERE root = ? AND version = ?", (root, FORMAT_VERSION)
                ).fetchone()
                if row is not None and row[0]:
                    parts = row[0].split("\t")
                    found = dict(zip(parts[::2], parts[1::2]))
                get = found.get
                out = [get(k) for k in keys]
                missing = [n for n, d in enumerate(out) if d is None]
                if not missing:
                    exact = len(found) == len(keys) or len(found) == len(set(keys))
                    return out, exact
                lo = os.fsencode(under.rstrip(os.sep) + os.sep)
                hi = lo[:-1] + bytes([lo[-1] + 1])
                found.update(
                    conn.execute(
                        "SELECT key, digest FROM entries WHERE path >= ? AND path < ? AND version = ?",
                        (lo, hi, FORMAT_VERSION),
                    ).fetchall()
                )
                missing = [n for n in missing if keys[n] not in found]
            for start in range(0, len(missing), _IN_CHUNK):
                chunk = [keys[n] for n in missing[start : start + _IN_CHUNK]]
                marks = ",".join("?" * len(chunk))
                found.update(
                    conn.execute(
                        f"SELECT key, digest FROM entries WHERE key IN ({marks}) AND version = ?",
                        [*chunk, FORMAT_VERSION],
                    ).fetchall()
                )
            get = found.get
            return [get(k) for k in keys], False

        result = self._run(op)
        return result if result is not None else ([None] * len(keys), False)

    def put(self, key: StatKey, path: str, digest: str) -> None:
        """Record the digest of one file."""
        self.put_many([(key, path, digest)])

    def put_many(
        self,
        items: Iterable[tuple[StatKey, str, str]],
        *,
        tree: tuple[str, Mapping[StatKey, str]] | None = None,
    ) -> None:
        """Record digests in one transaction: ``(stat key, real path, digest)`` triples, and
        optionally the snapshot ``(directory real path, {key: digest})`` of a whole directory.
        """
        rows = [
            (*_dev_ino(k), k, digest, FORMAT_VERSION, os.fsencode(path))
            for k, path, digest in items
        ]
        if not rows and tree is None:
            return

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)", rows)
                if tree is not None:
                    pairs = "\t".join(f"{k}\t{d}" for k, d in tree[1].items())
                    conn.execute(
                        "INSERT OR REPLACE INTO trees VALUES (?, ?, ?)",
                        (os.fsencode(tree[0]), FORMAT_VERSION, pairs),
                    )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

        self._run(op)

    def close(self) -> None:
        """Close the connection (reopened on next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- internals ----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        import sqlite3

        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            self._inode = os.stat(self.path).st_ino
        except OSError:
            self._inode = None
        try:
            # The first statement reads the header: garbage bytes fail here (SQLITE_NOTADB).
            conn.execute("PRAGMA journal_mode=WAL")
            # Losing the last entries on a power loss is fine for a cache: skip the fsyncs.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self, op: Callable[[sqlite3.Connection], _T]) -> _T | None:
        """Run ``op`` on the connection; recover from corruption once, never raise."""
        import sqlite3

        with self._lock:
            if self._disabled:
                return None
            for attempt in (0, 1):
                try:
                    if self._conn is None:
                        self._conn = self._connect()
                    return op(self._conn)
                except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
                    if attempt == 0 and not self._recovered and is_corruption(exc):
                        self._move_aside(exc)
                        continue
                    self._disable(exc)
                    return None
                except (sqlite3.Error, OSError) as exc:  # e.g. cache directory not creatable
                    self._disable(exc)
                    return None
            return None  # pragma: no cover - loop always returns

    def _close_connection(self) -> None:
        import sqlite3

        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    def _move_aside(self, exc: BaseException) -> None:
        self._recovered = True
        self._close_connection()
        aside = move_aside(self.path, inode=self._inode)
        if aside is None:
            # Another process already moved the corrupt file aside and made a new one: use it.
            return
        logger.warning(
            "hash cache %s is corrupt (%s); moved it to %s and rebuilding it",
            self.path,
            exc,
            aside,
        )

    def _disable(self, exc: BaseException) -> None:
        self._disabled = True
        self._close_connection()
        logger.warning("hash cache %s unavailable (%s); hashing without it", self.path, exc)
