"""``runlock.runs(...)``: the Python API for finding runs (the CLI's ls/rm use it too).

Reads lock files only (through the index), never the live environment, except for one thing a
lock cannot say about itself: whether a ``running`` run's process is still alive.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import MissingDependencyError, UsageError
from ..record.lock import Lock, short_commit  # stdlib only: cheap
from .filters import Condition, parse_since, parse_statuses, parse_where_all, split_key

if TYPE_CHECKING:
    import sqlite3

    import pandas  # type: ignore[import-untyped,unused-ignore]

#: A ``running`` lock of another host whose heartbeat is older than this is shown as ``crashed``
#: unless SLURM still holds its job (``$RUNLOCK_HEARTBEAT_STALE_S`` overrides it, e.g. in tests).
HEARTBEAT_STALE_S = 120.0
_MISSING = object()
#: Columns every listing has, in this order; others are config/result keys.
BUILTIN_KEYS = ("id", "stage", "status", "start", "duration", "commit", "dir")


@cache
def _this_host() -> str:
    from ..capture.environment import hostname  # only when a running run must be judged

    return hostname()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def heartbeat_stale_s() -> float:
    """Seconds after which a heartbeat is stale (:data:`HEARTBEAT_STALE_S` or the env override)."""
    value = os.environ.get("RUNLOCK_HEARTBEAT_STALE_S")
    try:
        return float(value) if value else HEARTBEAT_STALE_S
    except ValueError:
        return HEARTBEAT_STALE_S


def effective_status(
    status: str,
    *,
    pid: int | None,
    hostname: str | None,
    heartbeat_ts: float | None,
    now_ts: float | None = None,
    this_host: str | None = None,
    pid_start: Callable[[], str | None] | None = None,
    slurm_status: Callable[[], str | None] | None = None,
) -> str:
    """``crashed`` for a ``running`` lock whose process died without finalising the lock,
    ``stopped`` for one whose process is stopped (Ctrl-Z, SIGSTOP, a suspended SLURM job).

    On this host the process decides, not the heartbeat (a stopped process beats no heart): the
    run is alive while its pid exists and, where the lock recorded it (``pid_start``, read
    lazily: only for a stale heartbeat), started when the run's process did, so a reused pid is
    no alibi. On another host a stale heartbeat means crashed, unless ``slurm_status`` (called
    only then) says what SLURM makes of the run's job: ``running``, ``stopped`` (suspended) or
    ``crashed`` (gone); None when it cannot tell. No heartbeat cannot be judged.
    """
    if status != "running":
        return status
    now_ts = time.time() if now_ts is None else now_ts
    stale = heartbeat_ts is not None and now_ts - heartbeat_ts > heartbeat_stale_s()
    host = this_host or _this_host()
    if not (pid and hostname and hostname == host):
        if not stale:
            return "running"
        verdict = slurm_status() if slurm_status is not None else None
        return verdict or "crashed"
    if not pid_alive(pid):
        return "crashed"
    from ..capture.environment import process_start, process_state  # /proc reads, Linux only

    state = process_state(pid)
    if state in ("Z", "X", "x"):  # exited, not yet reaped by its parent
        return "crashed"
    if stale:
        current = process_start(pid)
        recorded = pid_start() if pid_start is not None else None
        if current is not None and recorded != current:
            # another process under a reused pid (or a lock of a version without pid_start,
            # whose stale heartbeat is all there is to judge by)
            return "crashed"
    return "stopped" if state in ("T", "t") else "running"


def recorded_pid_start(lock_file: str | os.PathLike[str]) -> str | None:
    """The ``pid_start`` of a lock file (None when absent or unreadable)."""
    from ..errors import LockFileError
    from ..record.lockfile import load_lock_sections

    try:
        with open(lock_file, "rb") as f:
            data = load_lock_sections(f.read(), ("pid_start",), source=str(lock_file))
    except (OSError, LockFileError):
        return None
    value = data.get("pid_start")
    return str(value) if value is not None else None


_T = TypeVar("_T")


class _cached(Generic[_T]):  # noqa: N801 - used like functools.cached_property
    """``functools.cached_property`` without Python 3.11's per-class lock, which every first
    access takes: a listing touches four cached fields of each of hundreds of records."""

    def __init__(self, fn: Callable[[Any], _T]) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __get__(self, obj: Any, owner: type | None = None) -> _T:
        value = obj.__dict__[self.name] = self.fn(obj)  # later reads hit __dict__, not here
        return value


def _load_json(text: str) -> Any:
    """``json.loads`` of the index's JSON columns (written by ``json.dumps``: no surrounding
    whitespace), skipping the whitespace scans that were half of the time of a small one."""
    try:
        return _raw_decode(text)[0]
    except ValueError:
        return json.loads(text)


_raw_decode = json.JSONDecoder().raw_decode


@cache
def _parse_key(key: str) -> tuple[bool, tuple[str, ...], str, tuple[str, ...]]:
    """(is builtin, sections to look in, name, name's parts): parsed once per key, not per run."""
    if key in BUILTIN_KEYS:
        return True, (), key, ()
    section, name = split_key(key)
    return False, (section,) if section else ("config", "result"), name, tuple(name.split("."))


class RunRecord:
    """One run as listed: cheap fields from the index, the full lock loaded on first access.

    A plain class, not a dataclass: ``runlock ls`` builds one per listed run, and importing
    ``dataclasses`` (it pulls in ``inspect``) was a tenth of that command's time.
    """

    def __init__(
        self,
        id: str,  # noqa: A002 - the run id, as everywhere in runlock
        stage: str,
        status: str,
        dir: Path,  # noqa: A002
        start: datetime | None,
        duration: float | None,
        recorded_status: str = "",
        git_commit: str | None = None,
        git_dirty: bool | None = None,
        snapshot: str | None = None,
        snapshot_ref: str | None = None,
        git_root: str | None = None,
        hostname: str | None = None,
        pid: int | None = None,
        _config_json: str = "{}",
        _result_json: str = "null",
    ) -> None:
        self.id = id
        self.stage = stage
        self.status = status
        self._lock_file = os.path.join(dir, "run.lock")
        self.__dict__["dir"] = dir  # seeds the lazy field
        self.__dict__["start"] = start
        self.start_ts = None if start is None else start.timestamp()
        self.duration = duration
        self.recorded_status = recorded_status
        self.git_commit = git_commit
        self.git_dirty = git_dirty
        self.snapshot = snapshot
        self.snapshot_ref = snapshot_ref
        self.git_root = git_root
        self.hostname = hostname
        self.pid = pid
        self._config_json = _config_json
        self._result_json = _result_json

    def __repr__(self) -> str:
        return f"RunRecord(id={self.id!r}, stage={self.stage!r}, status={self.status!r}, dir={self.dir!r})"

    # ``dir`` and ``start`` are built on first use: a Path and a datetime per row were a third
    # of a 10,000-run ``runlock ls``, which shows neither
    @_cached
    def dir(self) -> Path:  # noqa: A003
        """The run directory (where it is listed: a symlinked run's link path)."""
        return Path(os.path.dirname(self._lock_file))

    @_cached
    def start(self) -> datetime | None:
        return None if self.start_ts is None else datetime.fromtimestamp(self.start_ts, UTC)

    @property
    def lock_path(self) -> Path:
        return self.dir / "run.lock"

    @_cached
    def lock(self) -> dict[str, Any]:
        """The full run.lock (read from disk on first access)."""
        from ..record.lockfile import load_lock

        return load_lock(self.lock_path)

    @_cached
    def view(self) -> Lock:
        """The typed view of the full lock (what ``show``, ``diff`` and ``lineage`` ask of it)."""
        return Lock.from_dict(self.lock)

    @_cached
    def config(self) -> dict[str, Any]:
        value = _load_json(self._config_json)
        return value if isinstance(value, dict) else {}

    @_cached
    def result(self) -> Any:
        """The result value stored in the lock (dict or scalar), or None."""
        section = _load_json(self._result_json)
        return section.get("value") if isinstance(section, dict) else None

    @_cached
    def params(self) -> dict[str, Any]:
        """Flattened ``config.*`` and ``result.*`` values."""
        from .index import flatten

        out = {f"config.{k}": v for k, v in flatten(self.config).items()}
        out.update({f"result.{k}": v for k, v in self.result_fields.items()})
        return out

    @_cached
    def result_fields(self) -> dict[str, Any]:
        """Flattened result: a dict result by its keys, a scalar one as ``value``."""
        from .index import result_fields

        return result_fields({"value": self.result})

    @property
    def commit(self) -> str | None:
        """Short HEAD commit, ``*`` when the work tree was dirty (a display of HEAD, from the
        index row; ``view.source_commit`` is the commit holding the run's exact source)."""
        return short_commit(self.git_commit, self.git_dirty)

    def has(self, key: str) -> bool:
        return self._lookup(key)[0]

    def get(self, key: str, default: Any = None) -> Any:
        """A builtin field (``id``, ``status``...), ``config.x``, ``result.y`` or a bare key
        (config first, then result)."""
        found, value = self._lookup(key)
        return value if found else default

    def _lookup(self, key: str) -> tuple[bool, Any]:
        builtin, sections, name, parts = _parse_key(key)
        if builtin:
            return True, getattr(self, key)
        for sec in sections:  # walk the tree: a leaf ("optim.lr") or a sub-tree ("optim")
            node: Any = self.config if sec == "config" else self._result_tree
            for part in parts:
                if not isinstance(node, dict):
                    node = _MISSING
                    break
                node = node.get(part, _MISSING)
            if node is not _MISSING:
                return True, node
        if len(parts) == 1:
            return False, None
        params = self.params  # keys that themselves contain dots
        for sec in sections:
            if f"{sec}.{name}" in params:
                return True, params[f"{sec}.{name}"]
        return False, None

    @_cached
    def _result_tree(self) -> Any:
        return self.result if isinstance(self.result, dict) else {"value": self.result}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``--json`` of ls)."""
        return {
            "id": self.id,
            "stage": self.stage,
            "status": self.status,
            "start": self.start.isoformat() if self.start else None,
            "duration_s": self.duration,
            "commit": self.git_commit,
            "dirty": self.git_dirty,
            "dir": str(self.dir),
            "config": self.config,
            "result": self.result,
        }

    @classmethod
    def from_row(
        cls, row: sqlite3.Row | Mapping[str, Any], *, now_ts: float, this_host: str | None = None
    ) -> RunRecord:
        """A record from an index row (by column name)."""
        from .index import COLUMNS

        return cls.from_values([row[c] for c in COLUMNS], now_ts=now_ts, this_host=this_host)

    @classmethod
    def from_values(
        cls, values: Sequence[Any], *, now_ts: float, this_host: str | None = None,
        slurm_pending: list[tuple[RunRecord, str]] | None = None,
    ) -> RunRecord:
        """A record from an index row as a tuple in ``index.COLUMNS`` order (what a listing
        builds for every run: no name lookups, ``dir`` and ``start`` left for first use).

        A stale run of another host that ran in a SLURM job is crashed unless SLURM holds the
        job: with ``slurm_pending`` the question is left to :func:`settle_slurm` (one squeue
        call for a whole listing) and the record appended there; without it, asked at once."""
        (path, id_, stage, recorded, _start, start_ts, duration, pid, hostname, heartbeat_ts,
         git_commit, git_dirty, git_root, snapshot, snapshot_ref, config, result) = values  # fmt: skip
        status = recorded
        job: list[str] = []  # the SLURM job left for settle_slurm
        if recorded == "running":

            def slurm_status() -> str | None:
                from .slurm_state import job_states, recorded_job, status_for_state

                key = recorded_job(path)
                if key is None:
                    return None
                if slurm_pending is not None:
                    job.append(key)
                    return None  # crashed until settle_slurm says otherwise
                states = job_states([key])
                return None if states is None else status_for_state(states.get(key))

            status = effective_status(
                recorded, pid=pid, hostname=hostname, heartbeat_ts=heartbeat_ts, now_ts=now_ts,
                this_host=this_host, pid_start=lambda: recorded_pid_start(path),
                slurm_status=slurm_status,
            )  # fmt: skip
            if duration is None and status in ("running", "stopped") and start_ts is not None:
                duration = max(0.0, now_ts - start_ts)  # elapsed so far
        self = cls.__new__(cls)
        self.__dict__.update(
            id=id_, stage=stage, status=status, _lock_file=path, start_ts=start_ts,
            duration=duration, recorded_status=recorded, git_commit=git_commit,
            git_dirty=None if git_dirty is None else bool(git_dirty), snapshot=snapshot,
            snapshot_ref=snapshot_ref, git_root=git_root, hostname=hostname, pid=pid,
            _config_json=config or "{}", _result_json=result or "null",
        )  # fmt: skip
        if job and slurm_pending is not None:
            slurm_pending.append((self, job[0]))
        return self


def settle_slurm(pending: Sequence[tuple[RunRecord, str]], now_ts: float) -> None:
    """Give the runs :meth:`RunRecord.from_values` left pending the status SLURM has for their
    jobs, asked in one ``squeue`` call; nothing pending, nothing spawned. When squeue is missing
    or fails they stay crashed, as their stale heartbeat says."""
    if not pending:
        return
    from .slurm_state import job_states, status_for_state

    states = job_states(job for _, job in pending)
    if states is None:
        return
    for record, job in pending:
        record.status = status_for_state(states.get(job))
        if record.status != "crashed" and record.duration is None and record.start_ts is not None:
            record.duration = max(0.0, now_ts - record.start_ts)  # elapsed so far


class RunList(list[RunRecord]):
    """A list of runs with table helpers."""

    #: ``{section: every key the index holds}`` when these runs came from one index read: lets
    #: :meth:`keys` stop at the first runs that show them all instead of parsing every run
    index_keys: Mapping[str, frozenset[str]] | None = None

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self]

    def keys(self, section: str) -> list[str]:
        """All flattened keys of ``section`` ("config" or "result") over these runs, in order
        (first seen first)."""
        from .index import flatten

        known = self.index_keys.get(section) if self.index_keys is not None else None
        left = set(known) if known is not None else None
        seen: dict[str, None] = {}
        for r in self:
            fields = r.result_fields if section == "result" else flatten(r.config)
            seen.update(dict.fromkeys(fields))
            if left is not None:
                left.difference_update(fields)
                if not left:  # the index has no other key: later runs add nothing
                    break
        return [f"{section}.{k}" for k in seen]

    def varying_config_keys(self) -> list[str]:
        """``config.*`` keys whose value differs between the runs (all keys for one run)."""
        keys = self.keys("config")
        if len(self) <= 1:
            return keys
        out = []
        for k in keys:
            values = {
                json.dumps(r.params.get(k, "<missing>"), sort_keys=True, default=str) for r in self
            }
            if len(values) > 1:
                out.append(k)
        return out

    def to_pandas(self) -> pandas.DataFrame:
        """One row per run: builtin columns then ``config.*`` and ``result.*`` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise MissingDependencyError("pandas", "pandas") from exc
        cols = self.keys("config") + self.keys("result")
        records = []
        for r in self:
            row: dict[str, Any] = {
                "id": r.id,
                "stage": r.stage,
                "status": r.status,
                "start": r.start,
                "duration_s": r.duration,
                "commit": r.git_commit,
                "dir": str(r.dir),
            }
            row.update({k: r.params.get(k) for k in cols})
            records.append(row)
        columns = ["id", "stage", "status", "start", "duration_s", "commit", "dir", *cols]
        return pd.DataFrame.from_records(records, columns=columns)


def _order(v: Any) -> tuple[int, Any]:
    if isinstance(v, datetime):
        return (0, v.timestamp())
    if isinstance(v, (bool, int, float)):
        return (0, float(v))
    return (1, str(v))


def sort_runs(records: list[RunRecord], sort: str | Sequence[str] | None) -> list[RunRecord]:
    """Sort by keys (``-key`` descending); default newest first. Missing values go last."""
    keys = [sort] if isinstance(sort, str) else list(sort or ["-start"])
    out = list(records)
    out.sort(key=attrgetter("id"), reverse=True)  # stable tie-break: newest id first
    for key in reversed(keys):
        desc = key.startswith("-")
        name = key.lstrip("-+")
        # "start" orders by its timestamp: the same order, without a datetime per run
        values = [r.start_ts for r in out] if name == "start" else [r.get(name) for r in out]
        present = [(_order(v), r) for v, r in zip(values, out, strict=True) if v is not None]
        missing = [r for v, r in zip(values, out, strict=True) if v is None]
        present.sort(key=itemgetter(0), reverse=desc)
        out = [r for _, r in present] + missing
    return out


def runs(
    stage: str | None = None,
    status: str | Iterable[str] | None = None,
    since: str | datetime | timedelta | None = None,
    where: Iterable[str] | Mapping[str, Any] | str | None = None,
    root: str | os.PathLike[str] | None = None,
    *,
    experiment: str | None = None,
    sweep: str | None = None,
    sort: str | Sequence[str] | None = None,
    limit: int | None = None,
    refresh: bool = False,
) -> RunList:
    """Runs under the results root matching every filter, newest first.

    ``stage`` may be a glob (``train*``); ``status`` includes ``crashed``; ``since`` is an age
    (``3h``, ``2d``), a date or a datetime; ``where`` holds conditions like ``"lr=0.1"`` and
    ``"acc>0.8"`` or a ``{key: value}`` mapping. Keys address ``config.*`` or ``result.*``; a
    bare key is looked up in the config, then the result. ``experiment``: an experiment name
    or glob (``ablation/*``); ``sweep``: the points of one sweep (its id or an id prefix). ``refresh``: check every lock file
    for changes (slower), e.g. to pick up a finished run.lock edited by hand; runs added,
    removed or finished are picked up without it.
    """
    from ..settings import results_root

    return select_runs(
        results_root(root),
        stage=stage,
        statuses=parse_statuses(status),
        since=parse_since(since),
        conditions=parse_where_all(where),
        experiment=experiment,
        sweep=sweep,
        sort=sort,
        limit=limit,
        refresh=refresh,
    )


def select_runs(
    root: Path,
    *,
    stage: str | None = None,
    statuses: frozenset[str] | None = None,
    since: datetime | None = None,
    conditions: Sequence[Condition] = (),
    id_prefix: str | None = None,
    dir_name: str | None = None,
    experiment: str | None = None,
    sweep: str | None = None,
    sort: str | Sequence[str] | None = None,
    limit: int | None = None,
    broken: list[tuple[str, str]] | None = None,
    refresh: bool = False,
) -> RunList:
    """:func:`runs` with parsed filters (what the CLI calls). ``broken`` collects unreadable
    locks as ``(path, reason)`` and dangling links as ``(link, index.DANGLING_LINK)``.
    ``experiment``: a name or glob; ``sweep``: a sweep id or id prefix (the lock's ``sweep.id``)."""
    from .index import DANGLING_LINK, RunIndex

    if limit is not None and limit < 0:
        raise UsageError(f"--limit must be >= 0, not {limit}.")
    raw = None
    if statuses is not None:
        # "crashed" is a "running" lock whose process is gone: decided after the SQL
        raw = {"running" if s in ("crashed", "stopped") else s for s in statuses}
    with RunIndex(root) as idx:
        idx.refresh(full=refresh)
        with idx.snapshot():  # the rows and the keys of one state of the index
            rows = idx.select(
                stage=stage,
                statuses=raw,
                since_ts=since.timestamp() if since else None,
                conditions=conditions,
                id_prefix=id_prefix,
                dir_name=dir_name,
                experiment=experiment,
                sweep=sweep,
                raw=True,
            )
            index_keys = idx.param_keys()
        if broken is not None:
            broken.extend(idx.broken())
            broken.extend((link, DANGLING_LINK) for link in idx.dangling())
    now_ts, host = time.time(), None
    pending: list[tuple[RunRecord, str]] = []
    records = [
        RunRecord.from_values(r, now_ts=now_ts, this_host=host, slurm_pending=pending) for r in rows
    ]
    settle_slurm(pending, now_ts)
    if statuses is not None:
        records = [r for r in records if r.status in statuses]
    records = sort_runs(records, sort)
    if limit is not None:
        records = records[:limit]
    out = RunList(records)
    out.index_keys = index_keys
    return out
