"""SQLite index of the run locks under a results root (``<root>/.runlock/index.sqlite``).

The lock files stay the source of truth: on every query the index is refreshed incrementally
from them, keyed by ``(path, mtime_ns, size)`` like dvc-data's hash cache, so a changed lock is
re-read, a deleted run disappears and an untouched one costs a ``stat``. Config and result values
are stored flattened (``optim.lr``) in a ``params`` table so ``--where`` filters run in SQL.

The index is a cache: a corrupt file is rebuilt with a warning, an index of another version is
rebuilt silently, and a read-only results root falls back to an in-memory index.
"""

from __future__ import annotations

import json
import marshal
import math
import os
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import xxhash

from ..errors import LockFileError, RunlockError
from ..record.rundir import LOCK_NAME, STATE_DIR
from .filters import Condition, as_text

if TYPE_CHECKING:
    import logging

    import yaml


@cache
def _log() -> logging.Logger:
    # imported on first use: a warm `runlock ls` neither logs nor parses YAML
    import logging

    return logging.getLogger("runlock.browse.index")


@cache
def _yaml_loader() -> type[yaml.SafeLoader]:
    """libyaml's loader when built in: ~10x faster than the pure-Python one (index builds)."""
    import yaml

    loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return loader


#: Bump when the tables or the extraction change: older index files are then rebuilt.
INDEX_VERSION = 2
INDEX_NAME = "index.sqlite"
#: Seconds a sqlite writer waits for another one (concurrent ``runlock ls`` refreshes).
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    rowid INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,      -- absolute path of the run.lock
    mtime_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    id TEXT, stage TEXT, status TEXT,
    start TEXT, start_ts REAL, duration REAL,
    pid INTEGER, hostname TEXT, heartbeat_ts REAL,
    git_commit TEXT, git_dirty INTEGER, git_root TEXT, snapshot TEXT, snapshot_ref TEXT,
    config TEXT, result TEXT,       -- JSON
    error TEXT                      -- set when the lock cannot be read
);
CREATE INDEX IF NOT EXISTS runs_id ON runs(id);
CREATE INDEX IF NOT EXISTS runs_stage ON runs(stage, start_ts);
-- unreadable locks are reported on every query: a partial index avoids scanning every row
CREATE INDEX IF NOT EXISTS runs_broken ON runs(path) WHERE error IS NOT NULL;
CREATE TABLE IF NOT EXISTS params (
    run INTEGER NOT NULL, section TEXT NOT NULL, key TEXT NOT NULL, num REAL, text TEXT,
    is_str INTEGER NOT NULL,        -- text ordering (< >) applies to strings only
    PRIMARY KEY (run, section, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS params_key ON params(key, section, num);
"""

#: Columns returned by :meth:`RunIndex.select`, in this order.
COLUMNS = (
    "path", "id", "stage", "status", "start", "start_ts", "duration", "pid", "hostname",
    "heartbeat_ts", "git_commit", "git_dirty", "git_root", "snapshot", "snapshot_ref", "config",
    "result",
)  # fmt: skip


def index_path(root: Path) -> Path:
    return Path(root) / STATE_DIR / INDEX_NAME


def discover(root: Path) -> dict[str, tuple[int, int]]:
    """``{lock path: (mtime_ns, size)}`` of every run under ``root``.

    A directory holding a run.lock is a run: its outputs are never walked (they can be huge).
    Hidden directories (``.runlock`` state, ``.git``) and symlinked directories (loops, runs
    counted twice) are skipped. One ``stat`` per directory plus one ``scandir`` per non-run one.
    """
    out: dict[str, tuple[int, int]] = {}
    top = os.fspath(root)
    try:
        st = os.stat(os.path.join(top, LOCK_NAME))
        out[os.path.join(top, LOCK_NAME)] = (st.st_mtime_ns, st.st_size)
        return out
    except OSError:
        pass
    stack = [top]
    tail = os.sep + LOCK_NAME
    stat = os.stat
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for entry in it:
                if entry.name[0] == ".":
                    continue
                try:
                    if not entry.is_dir(follow_symlinks=False):
                        continue
                except OSError:
                    continue
                lock = entry.path + tail
                try:
                    st = stat(lock)
                except (FileNotFoundError, NotADirectoryError):
                    stack.append(entry.path)
                    continue
                except OSError:
                    continue
                out[lock] = (st.st_mtime_ns, st.st_size)
    return out


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}``; lists and empty dicts stay leaves."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: value} if prefix else {}


def result_fields(result_section: Any) -> dict[str, Any]:
    """Flattened result fields: a dict result by its keys, a scalar one as ``value``."""
    value = result_section.get("value") if isinstance(result_section, Mapping) else None
    if isinstance(value, Mapping):
        return flatten(value)
    return {} if value is None else {"value": value}


def _json_default(obj: Any) -> Any:
    return obj.isoformat() if isinstance(obj, datetime) else str(obj)


def to_timestamp(value: Any) -> float | None:
    """Epoch seconds of an ISO string or datetime (naive = UTC, as runlock writes UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return float(value.timestamp())
    return None


def _num(value: Any) -> float | None:
    """The numeric column: ints and floats only (booleans compare as text, not as 0/1)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        f = float(value)
        return None if math.isnan(f) else f
    return None


def _param_row(run: int, section: str, key: str, value: Any) -> tuple[Any, ...]:
    return (run, section, key, _num(value), as_text(value), int(isinstance(value, str)))


class _Parsed(NamedTuple):
    path: str
    mtime_ns: int
    size: int
    lock: dict[str, Any] | None
    error: str | None


# A top-level key of a block-style YAML mapping: at column 0 (values, block scalars, wrapped flow
# collections and list items under a key are indented or start with "- ").
_TOP_KEY = re.compile(rb"^([A-Za-z_][A-Za-z0-9_.-]*):(?= |\r?\n|$)", re.M)
#: The top-level lock sections the index reads; the others (packages, environment, outputs,
#: upstream with its embedded locks...) are most of a lock's bytes and are skipped unparsed.
INDEX_SECTIONS = frozenset(
    {b"schema", b"id", b"stage", b"status", b"pid", b"hostname", b"heartbeat", b"timing",
     b"config", b"git", b"result"}
)  # fmt: skip


def _load_index_sections(raw: bytes) -> dict[str, Any] | None:
    """Parse only the sections the index needs; None when the text is not plainly block-style
    (anything unusual before the first key, aliases across sections...): then parse it all.

    This makes the first index build of a results root several times faster: a lock is mostly
    package versions, environment, output hashes and embedded upstream locks.
    """
    starts = [(m.start(), m.group(1)) for m in _TOP_KEY.finditer(raw)]
    if not starts or (raw[: starts[0][0]].strip(b" \t\r\n") and not raw.lstrip().startswith(b"#")):
        return None
    ends = [pos for pos, _ in starts[1:]] + [len(raw)]
    wanted = [
        raw[pos:end] for (pos, key), end in zip(starts, ends, strict=True) if key in INDEX_SECTIONS
    ]
    if b"hostname" not in {key for _, key in starts}:  # older locks: only environment.hostname
        wanted += [raw[pos:end] for (pos, key), end in zip(starts, ends, strict=True)
                   if key == b"environment"]  # fmt: skip
    import yaml

    try:
        data = yaml.load(
            b"".join(w if w.endswith(b"\n") else w + b"\n" for w in wanted), Loader=_yaml_loader()
        )
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _read_lock(path: str) -> _Parsed | None:
    """Read one lock; stat the open file so the stored key matches the content read."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            raw = f.read()
    except FileNotFoundError:
        return None  # deleted since discovery
    except OSError as exc:
        return _Parsed(path, 0, -1, None, f"cannot read: {exc.strerror}")
    import yaml

    from ..record.lockfile import SCHEMA_VERSION, loads_lock

    try:
        data = _load_index_sections(raw)
        if data is None:
            data = yaml.load(raw, Loader=_yaml_loader())
        if not (isinstance(data, dict) and data.get("schema") == SCHEMA_VERSION):
            # old schema (migrations) or not a lock at all: lockfile owns both cases
            data = loads_lock(raw.decode("utf-8"), source=path)
    except (yaml.YAMLError, LockFileError, UnicodeDecodeError) as exc:
        return _Parsed(path, st.st_mtime_ns, st.st_size, None, str(exc).splitlines()[0])
    return _Parsed(path, st.st_mtime_ns, st.st_size, data, None)


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, Mapping):
            return None
        d = d.get(k)
    return d


def _row(p: _Parsed) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Column values and flattened params of one parsed lock."""
    lock = p.lock or {}
    cols: dict[str, Any] = {
        "path": p.path,
        "mtime_ns": p.mtime_ns,
        "size": p.size,
        "error": p.error,
    }
    if p.lock is None:
        return cols, {}
    start = _get(lock, "timing", "start")
    duration = _get(lock, "timing", "duration_s")
    git: Mapping[str, Any] = lock["git"] if isinstance(lock.get("git"), Mapping) else {}
    pid = lock.get("pid")
    config = lock.get("config") if isinstance(lock.get("config"), Mapping) else {}
    result = result_fields(lock.get("result"))
    cols.update(
        id=str(lock.get("id") or Path(p.path).parent.name),
        stage=str(lock.get("stage") or ""),
        status=str(lock.get("status") or "running"),
        start=start.isoformat() if isinstance(start, datetime) else start,
        start_ts=to_timestamp(start),
        duration=float(duration) if isinstance(duration, (int, float)) else None,
        pid=pid if isinstance(pid, int) else None,
        hostname=lock.get("hostname") or _get(lock, "environment", "hostname"),
        heartbeat_ts=to_timestamp(lock.get("heartbeat")),
        git_commit=git.get("head"),
        git_dirty=None if git.get("dirty") is None else int(bool(git.get("dirty"))),
        git_root=git.get("root"),
        snapshot=_get(git, "snapshot", "commit"),
        snapshot_ref=_get(git, "snapshot", "ref"),
        config=json.dumps(config, default=_json_default),
        result=json.dumps(lock.get("result"), default=_json_default),
    )
    return cols, {"config": flatten(config), "result": result}


def lock_columns(lock_path: Path) -> dict[str, Any]:
    """Index columns of one lock read directly (a run outside the results root)."""
    parsed = _read_lock(os.fspath(lock_path))
    if parsed is None:
        raise LockFileError(f"No run.lock at {lock_path}.")
    if parsed.error is not None:
        raise LockFileError(f"Cannot read {lock_path}: {parsed.error}")
    return _row(parsed)[0]


def _match_sql(cond: Condition) -> list[tuple[str, list[Any]]]:
    """SQL over ``p.num`` / ``p.text`` for one condition (``!=`` is the negated ``=``), as
    alternatives that are OR-ed: each one is a range of the ``params(key, section, num)`` index."""
    v = cond.value
    if cond.op in ("=", "!="):
        if isinstance(v, bool) or v is None:
            return [("p.text = ?", [as_text(v)])]
        if isinstance(v, (int, float)):
            # A numeric row's text is its str(): only rows without a number (strings, booleans,
            # NaN) can match by text, so the text arm need not look at numeric rows at all.
            return [("p.num = ?", [float(v)]), ("p.num IS NULL AND p.text = ?", [as_text(v)])]
        return [("p.text = ?", [v])]
    if isinstance(v, bool) or v is None:
        return [("0", [])]  # booleans and null have no order
    if isinstance(v, (int, float)):
        return [(f"p.num {cond.op} ?", [float(v)])]
    return [(f"p.is_str AND p.text {cond.op} ?", [v])]


def condition_sql(cond: Condition, sections: Sequence[str]) -> tuple[str, list[Any]]:
    """An SQL predicate on ``runs`` for one ``--where`` condition.

    ``sections``: where the key exists in this index ("config", "result" or both). With one
    section the predicate is a non-correlated ``rowid IN (...)`` that SQLite answers from the
    ``params(key, section, num)`` index (one sub-select per alternative, joined by UNION ALL:
    SQLite does not split an OR into index ranges by itself); a bare key present in both needs
    the per-run choice "config when the run's config has it, else result".
    """
    arms = _match_sql(cond)
    sql_args: list[Any] = []
    if cond.section is not None or len(sections) <= 1:
        section = cond.section or (sections[0] if sections else "config")
        selects = []
        for match, args in arms:
            selects.append(f"SELECT p.run FROM params p WHERE p.key = ? AND p.section = ? AND {match}")
            sql_args += [cond.key, section, *args]
        sql = f"runs.rowid IN ({' UNION ALL '.join(selects)})"
    else:
        match = " OR ".join(f"({m})" for m, _ in arms)
        sql = (
            "EXISTS (SELECT 1 FROM params p WHERE p.run = runs.rowid AND p.key = ? AND "
            "p.section = CASE WHEN EXISTS (SELECT 1 FROM params q WHERE q.run = runs.rowid "
            f"AND q.section = 'config' AND q.key = ?) THEN 'config' ELSE 'result' END AND ({match}))"
        )
        sql_args = [cond.key, cond.key, *(a for _, args in arms for a in args)]
    return (f"NOT {sql}" if cond.op == "!=" else sql), sql_args


class RefreshStats(NamedTuple):
    """What one refresh did (for logs and tests)."""

    total: int
    added: int
    updated: int
    removed: int


class RunIndex:
    """An open index over one results root. Use as a context manager; always refresh first."""

    def __init__(self, root: Path, *, in_memory: bool = False) -> None:
        self.root = Path(root)
        self.path: Path | None = None if in_memory else index_path(self.root)
        self.conn = self._open()

    # -- opening -------------------------------------------------------------------------

    def _connect(self, target: str) -> sqlite3.Connection:
        conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.row_factory = sqlite3.Row
        if target != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")  # readers never block the one writer
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        row = conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        if row is None or row[0] != str(INDEX_VERSION):
            if row is not None:
                _log().debug("index %s has version %s, rebuilding", target, row[0])
            conn.executescript(
                "DROP TABLE IF EXISTS params; DROP TABLE IF EXISTS runs; DELETE FROM meta;"
            )
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(INDEX_VERSION),))
        return conn

    def _open(self) -> sqlite3.Connection:
        if self.path is None or not self.root.is_dir():
            # no results root yet: never create it just to list nothing
            self.path = None
            return self._connect(":memory:")
        try:
            self.path.parent.mkdir(exist_ok=True)
            return self._connect(os.fspath(self.path))
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise RunlockError(
                    f"The run index {self.path} stayed locked for {BUSY_TIMEOUT_S:.0f} s.",
                    hint="Another runlock process is rebuilding it; retry in a moment.",
                ) from exc
            _log().debug("cannot write the index %s (%s): using an in-memory one", self.path, exc)
        except sqlite3.DatabaseError as exc:
            self._warn_corrupt(exc)
            self._remove_files()
            try:
                return self._connect(os.fspath(self.path))
            except sqlite3.DatabaseError:
                pass
        except OSError as exc:
            _log().debug("cannot create %s (%s): using an in-memory index", self.path, exc)
        self.path = None
        return self._connect(":memory:")

    def _remove_files(self) -> None:
        assert self.path is not None
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(f"{self.path}{suffix}")
            except FileNotFoundError:
                pass

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> RunIndex:  # noqa: PYI034 - not subclassed
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- refresh -------------------------------------------------------------------------

    def refresh(self) -> RefreshStats:
        """Bring the index in line with the lock files on disk (incremental)."""
        try:
            return self._refresh()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise RunlockError(
                    f"The run index {self.path} stayed locked for {BUSY_TIMEOUT_S:.0f} s.",
                    hint="Another runlock process is rebuilding it; retry in a moment.",
                ) from exc
            if self.path is None:
                raise
            # e.g. a read-only index file pulled with the runs: list from memory instead
            _log().debug("cannot update the index %s (%s): using an in-memory one", self.path, exc)
            self.conn.close()
            self.path = None
            self.conn = self._connect(":memory:")
            return self._refresh()
        except sqlite3.DatabaseError as exc:  # corruption found past the header
            if self.path is None:
                raise
            self._warn_corrupt(exc)
            self.conn.close()
            self._remove_files()
            self.conn = self._connect(os.fspath(self.path))
            return self._refresh()

    def _warn_corrupt(self, exc: Exception) -> None:
        _log().warning(
            "runlock: the run index %s is corrupt (%s); rebuilding it from the run.lock files.",
            self.path, exc,
        )  # fmt: skip

    def _refresh(self) -> RefreshStats:
        found = discover(self.root) if self.root.is_dir() else {}
        # The common case, nothing changed since the last refresh, is answered by one digest of
        # every (path, mtime_ns, size) instead of reading 10,000 rows back. Rows always carry
        # the key of the content they hold, so a digest that differs just means "compare all".
        signature = xxhash.xxh3_128_hexdigest(marshal.dumps(found))
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'files'").fetchone()
        if row is not None and row[0] == signature:
            return RefreshStats(len(found), 0, 0, 0)
        cur = self.conn.cursor()
        cur.row_factory = None  # plain tuples: 10,000 rows on every query
        known = {r[0]: (r[1], r[2]) for r in cur.execute("SELECT path, mtime_ns, size FROM runs")}
        changed = [p for p, key in found.items() if known.get(p) != key]
        gone = [p for p in known if p not in found]
        if not changed and not gone:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('files', ?)", (signature,))
            return RefreshStats(len(found), 0, 0, 0)
        # Parse outside the write transaction: other readers and writers are not held up.
        parsed = [x for x in map(_read_lock, changed) if x is not None]
        gone += [p for p in changed if p not in {x.path for x in parsed}]
        self._write(parsed, gone, signature)
        added = sum(1 for x in parsed if x.path not in known)
        return RefreshStats(len(found), added, len(parsed) - added, len(gone))

    def _write(
        self, parsed: Sequence[_Parsed], gone: Iterable[str], signature: str | None = None
    ) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            # None (forget): the next refresh compares everything
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('files', ?)", (signature,))
            for path in gone:
                self._delete(path)
            for p in parsed:
                self._delete(p.path)
                cols, params = _row(p)
                names = ", ".join(cols)
                marks = ", ".join("?" * len(cols))
                cur = conn.execute(
                    f"INSERT INTO runs ({names}) VALUES ({marks})", list(cols.values())
                )
                run = cur.lastrowid
                assert run is not None
                conn.executemany(
                    "INSERT OR REPLACE INTO params VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        _param_row(run, section, key, value)
                        for section, flat in params.items()
                        for key, value in flat.items()
                    ],
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _delete(self, path: str) -> None:
        row = self.conn.execute("SELECT rowid FROM runs WHERE path = ?", (path,)).fetchone()
        if row is not None:
            self.conn.execute("DELETE FROM params WHERE run = ?", (row[0],))
            self.conn.execute("DELETE FROM runs WHERE rowid = ?", (row[0],))

    def forget(self, lock_paths: Iterable[str]) -> None:
        """Drop runs (deleted by ``runlock rm``) without waiting for the next refresh."""
        self._write([], list(lock_paths))

    # -- queries -------------------------------------------------------------------------

    def select(
        self,
        *,
        stage: str | None = None,
        statuses: Iterable[str] | None = None,
        since_ts: float | None = None,
        conditions: Sequence[Condition] = (),
        id_prefix: str | None = None,
        dir_name: str | None = None,
    ) -> list[sqlite3.Row]:
        """Rows (columns :data:`COLUMNS`) of readable locks matching all filters."""
        where = ["error IS NULL"]
        args: list[Any] = []
        if stage:
            glob = any(c in stage for c in "*?[")
            where.append("stage GLOB ?" if glob else "stage = ?")
            args.append(stage)
        if statuses is not None:
            wanted = sorted(set(statuses))
            where.append(f"status IN ({', '.join('?' * len(wanted))})")
            args.extend(wanted)
        if since_ts is not None:
            where.append("start_ts >= ?")
            args.append(since_ts)
        if id_prefix:
            where.append("substr(id, 1, ?) = ?")
            args.extend([len(id_prefix), id_prefix])
        if dir_name:
            tail = f"{os.sep}{dir_name}{os.sep}{LOCK_NAME}"
            where.append("substr(path, -?) = ?")
            args.extend([len(tail), tail])
        for cond in conditions:
            sql, cond_args = condition_sql(cond, self._sections_with(cond))
            where.append(sql)
            args.extend(cond_args)
        sql = f"SELECT {', '.join(COLUMNS)} FROM runs WHERE {' AND '.join(where)}"
        return list(self.conn.execute(sql, args))

    def _sections_with(self, cond: Condition) -> tuple[str, ...]:
        if cond.section is not None:
            return (cond.section,)
        return tuple(
            section
            for section in ("config", "result")
            if self.conn.execute(
                "SELECT 1 FROM params WHERE key = ? AND section = ? LIMIT 1", (cond.key, section)
            ).fetchone()
        )

    def broken(self) -> list[tuple[str, str]]:
        """``(lock path, reason)`` of locks that could not be read."""
        return [
            (r[0], r[1])
            for r in self.conn.execute(
                "SELECT path, error FROM runs WHERE error IS NOT NULL ORDER BY path"
            )
        ]

    def snapshot_ref_users(self, git_root: str, ref: str) -> list[str]:
        """Lock paths of runs whose code snapshot lives on ``ref`` of the repo at ``git_root``."""
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT path FROM runs WHERE git_root = ? AND snapshot_ref = ?", (git_root, ref)
            )
        ]
