"""A typed, read-only view of a run.lock: what readers ask of a lock, answered in one place.

``lockfile`` loads and dumps the YAML (the whole dict stays the source of truth and is kept as
``Lock.data``); this module answers the questions every reader asks (the run's status, its source
commit, its upstream ids, its outputs...) so that "the run's commit" is computed once, not once
per command. ``Lock.from_dict`` never raises on odd values: a field of the wrong type reads as
missing (locks come from other machines, older versions and stores).

Plain ``NamedTuple`` classes, not dataclasses: the index builds one per lock, and ``runlock ls``
must not pay for importing ``dataclasses`` (it pulls in ``inspect``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

__all__ = ["ErrorInfo", "GitInfo", "Lock", "Upstream", "to_timestamp"]


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


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


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat()
    return _str(value)


class GitInfo(NamedTuple):
    """The lock's ``git`` section (``None`` fields when absent)."""

    root: str | None
    head: str | None
    branch: str | None
    dirty: bool | None
    snapshot: str | None  # the snapshot commit on the shadow branch
    snapshot_tree: str | None
    snapshot_ref: str | None
    diffstat: str | None

    @classmethod
    def from_dict(cls, git: Any) -> GitInfo | None:
        if not isinstance(git, Mapping) or not git.get("repo", True):
            return None
        snap = _map(git.get("snapshot"))
        dirty = git.get("dirty")
        return cls(
            root=_str(git.get("root")),
            head=_str(git.get("head")),
            branch=_str(git.get("branch")),
            dirty=None if dirty is None else bool(dirty),
            snapshot=_str(snap.get("commit")),
            snapshot_tree=_str(snap.get("tree")),
            snapshot_ref=_str(snap.get("ref")),
            diffstat=_str(git.get("diffstat")),
        )

    @property
    def source_commit(self) -> str | None:
        """The commit holding the run's exact source: its snapshot, else HEAD when the tree was
        clean (a dirty tree without a snapshot has no such commit)."""
        if self.snapshot:
            return self.snapshot
        if self.head and not self.dirty:
            return self.head
        return None


class Upstream(NamedTuple):
    """One entry of the lock's ``upstream`` section: a run this one consumed."""

    key: str  # the config key that pointed into the upstream run
    id: str | None
    stage: str | None
    path: str | None
    status: str | None
    lock: Mapping[str, Any] | None  # the embedded upstream lock (``None`` for ``{ref: id}``)

    @classmethod
    def from_item(cls, key: str, entry: Any) -> Upstream:
        e = _map(entry)
        embedded = e.get("lock")
        return cls(
            key=str(key),
            id=_str(e.get("id")),
            stage=_str(e.get("stage")),
            path=_str(e.get("path")),
            status=_str(e.get("status")),
            lock=embedded if isinstance(embedded, Mapping) and "ref" not in embedded else None,
        )


class ErrorInfo(NamedTuple):
    type: str | None
    message: str | None
    traceback: str | None


class Lock(NamedTuple):
    """What readers ask of a run.lock. ``data`` is the whole (migrated) lock."""

    data: Mapping[str, Any]
    schema: int | None
    id: str | None
    stage: str | None
    status: str  # as recorded ("running" when missing); see browse.query for "crashed"
    experiment: str | None
    run_dir: str | None
    pid: int | None
    hostname: str | None
    heartbeat: str | None
    start: str | None
    end: str | None
    duration_s: float | None
    config: Mapping[str, Any]
    result: Any  # the inline result value (dict or scalar), None when not inline
    result_file: str | None
    git: GitInfo | None
    upstream: tuple[Upstream, ...]
    outputs: Mapping[str, str]  # {relpath: hash}
    outputs_algorithm: str | None
    error: ErrorInfo | None
    reproduces: str | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Lock:
        """The typed view of a loaded lock (see ``lockfile.load_lock``); never raises."""
        timing = _map(data.get("timing"))
        result = _map(data.get("result"))
        outputs = _map(data.get("outputs"))
        files = _map(outputs.get("files"))
        error = data.get("error")
        hostname = _str(data.get("hostname")) or _str(_map(data.get("environment")).get("hostname"))
        return cls(
            data=data,
            schema=_int(data.get("schema")),
            id=_str(data.get("id")),
            stage=_str(data.get("stage")),
            status=_str(data.get("status")) or "running",
            experiment=_str(data.get("experiment")),
            run_dir=_str(data.get("run_dir")),
            pid=_int(data.get("pid")),
            hostname=hostname,
            heartbeat=_iso(data.get("heartbeat")),
            start=_iso(timing.get("start")),
            end=_iso(timing.get("end")),
            duration_s=_float(timing.get("duration_s")),
            config=_map(data.get("config")),
            result=result.get("value"),
            result_file=_str(result.get("file")),
            git=GitInfo.from_dict(data.get("git")),
            upstream=tuple(
                Upstream.from_item(k, v) for k, v in _map(data.get("upstream")).items()
            ),
            outputs={str(k): str(v) for k, v in files.items()},
            outputs_algorithm=_str(outputs.get("algorithm")),
            error=ErrorInfo(
                _str(error.get("type")), _str(error.get("message")), _str(error.get("traceback"))
            )
            if isinstance(error, Mapping)
            else None,
            reproduces=_str(data.get("reproduces")),
        )

    @property
    def source_commit(self) -> str | None:
        """The commit holding the run's exact source (snapshot, or a clean HEAD), or None."""
        return self.git.source_commit if self.git else None

    @property
    def upstream_ids(self) -> list[str]:
        """Ids of the direct upstream runs, each once, in config-key order."""
        out: list[str] = []
        for up in self.upstream:
            if up.id and up.id not in out:
                out.append(up.id)
        return out

    @property
    def start_ts(self) -> float | None:
        return to_timestamp(self.start)

    @property
    def heartbeat_ts(self) -> float | None:
        return to_timestamp(self.heartbeat)
