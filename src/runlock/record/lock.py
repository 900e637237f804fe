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

__all__ = [
    "RUNLOCK_SECTIONS",
    "DataInput",
    "ErrorInfo",
    "FunctionInfo",
    "GitInfo",
    "Lock",
    "Upstream",
    "short_commit",
    "to_timestamp",
]


#: Top-level lock sections runlock itself writes; any other was added by a user's collector
#: (``@runlock.stage(collectors=[...])``). ``stages.decorator`` keeps its own copy of the
#: reserved names.
RUNLOCK_SECTIONS = frozenset({
    "schema", "id", "stage", "status", "run_dir", "experiment", "pid", "pid_start", "hostname",
    "heartbeat", "timing", "function", "config", "seed", "seeded", "environment", "packages",
    "editable", "resumed", "result", "error", "warnings", "data", "git", "upstream", "outputs",
    "map", "tasks", "sweep", "reproduces", "package_sources",
})  # fmt: skip


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


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _strs(value: Any) -> tuple[str, ...] | None:
    """A list of strings as a tuple (non-strings dropped); None when not a list."""
    if not isinstance(value, (list, tuple)):
        return None
    return tuple(v for v in value if isinstance(v, str))


def _str_map(value: Any) -> Mapping[str, str]:
    """``{name: text}`` sections (packages, remotes...), values as text (versions may load as
    numbers from YAML)."""
    return {str(k): str(v) for k, v in _map(value).items() if v is not None}


def short_commit(head: str | None, dirty: bool | None) -> str | None:
    """How listings show a run's HEAD: 8 hex digits, ``*`` when the work tree was dirty."""
    return None if not head else head[:8] + ("*" if dirty else "")


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
    snapshot_branch: str | None = None
    remotes: Mapping[str, str] = {}  # {name: url}

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
            snapshot_branch=_str(snap.get("branch")),
            remotes=_str_map(git.get("remotes")),
        )

    @property
    def short_head(self) -> str | None:
        """HEAD as listings show it (see :func:`short_commit`)."""
        return short_commit(self.head, self.dirty)

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
    file: str | None = None  # the file inside the upstream run the config key named
    outputs_match: bool | None = None  # its outputs matched when used (None: not checked)
    warning: str | None = None
    ref: bool = False  # its lock is ``{ref: id}``: embedded in full elsewhere in the lineage
    entry: Mapping[str, Any] = {}  # the raw entry, as ``data`` is the raw lock

    @classmethod
    def from_item(cls, key: str, entry: Any) -> Upstream:
        e = _map(entry)
        embedded = e.get("lock")
        ref = isinstance(embedded, Mapping) and "ref" in embedded
        return cls(
            key=str(key),
            id=_str(e.get("id")),
            stage=_str(e.get("stage")),
            path=_str(e.get("path")),
            status=_str(e.get("status")),
            lock=embedded if isinstance(embedded, Mapping) and not ref else None,
            file=_str(e.get("file")),
            outputs_match=_bool(e.get("outputs_match")),
            warning=_str(e.get("warning")),
            ref=ref,
            entry=e,
        )


class ErrorInfo(NamedTuple):
    """The lock's ``error`` section (a failed or interrupted run)."""

    type: str | None
    message: str | None
    traceback: str | None


class FunctionInfo(NamedTuple):
    """The lock's ``function`` section: which function ran, and the arguments it was called with."""

    name: str | None
    qualname: str | None
    module: str | None
    source_file: str | None
    parameters: Mapping[str, Any] | None  # as called (None when not recorded)

    @classmethod
    def from_dict(cls, fn: Any) -> FunctionInfo | None:
        if not isinstance(fn, Mapping) or not fn:
            return None
        params = fn.get("parameters")
        return cls(
            name=_str(fn.get("name")),
            qualname=_str(fn.get("qualname")),
            module=_str(fn.get("module")),
            source_file=_str(fn.get("source_file")),
            parameters=params if isinstance(params, Mapping) else None,
        )


class DataInput(NamedTuple):
    """One entry of the lock's ``data`` section: an input file or directory and its hash."""

    label: str
    path: str | None
    kind: str | None  # "file" | "dir"
    algorithm: str | None
    hash: str | None
    size: int | None
    match: tuple[str, ...] | None  # the patterns that selected a directory's files (they
    ignore: tuple[str, ...] | None  # change its hash, so re-hashing must pass them again)
    error: str | None  # why it could not be hashed

    @classmethod
    def from_item(cls, label: str, entry: Any) -> DataInput:
        e = _map(entry)
        return cls(
            label=str(label),
            path=_str(e.get("path")),
            kind=_str(e.get("kind")),
            algorithm=_str(e.get("algorithm")),
            hash=_str(e.get("hash")),
            size=_int(e.get("size")),
            match=_strs(e.get("match")),
            ignore=_strs(e.get("ignore")),
            error=_str(e.get("error")),
        )


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
    # Fields below were added with their readers; defaults keep ``Lock(...)`` calls working.
    git_skipped: str | None = None  # why git was not recorded (``git: {repo: null, skipped}``)
    function: FunctionInfo | None = None
    seed: int | None = None
    inputs: tuple[DataInput, ...] = ()  # the ``data`` section (``data`` is the whole lock)
    outputs_recorded: bool = False  # the lock has an ``outputs.files`` manifest (maybe empty)
    outputs_exclude: tuple[str, ...] | None = None
    packages: Mapping[str, str] = {}  # {} defaults are shared: typed Mapping (read-only)
    editable: Mapping[str, str] = {}
    # {name: {kind: vcs|archive|directory, ...}} for packages not from an index; {} in old locks
    package_sources: Mapping[str, Mapping[str, Any]] = {}
    environment: Mapping[str, Any] = {}
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Lock:
        """The typed view of a loaded lock (see ``lockfile.load_lock``); never raises."""
        timing = _map(data.get("timing"))
        result = _map(data.get("result"))
        outputs = _map(data.get("outputs"))
        files = _map(outputs.get("files"))
        error = data.get("error")
        git = data.get("git")
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
            upstream=tuple(  # an entry that is not a mapping reads as missing
                Upstream.from_item(k, v)
                for k, v in _map(data.get("upstream")).items()
                if isinstance(v, Mapping)
            ),
            outputs={str(k): str(v) for k, v in files.items()},
            outputs_algorithm=_str(outputs.get("algorithm")),
            error=ErrorInfo(
                _str(error.get("type")), _str(error.get("message")), _str(error.get("traceback"))
            )
            if isinstance(error, Mapping) and error
            else None,
            reproduces=_str(data.get("reproduces")),
            git_skipped=_str(git.get("skipped")) if isinstance(git, Mapping) else None,
            function=FunctionInfo.from_dict(data.get("function")),
            seed=_int(data.get("seed")),
            inputs=tuple(DataInput.from_item(k, v) for k, v in _map(data.get("data")).items()),
            outputs_recorded=isinstance(outputs.get("files"), Mapping),
            outputs_exclude=_strs(outputs.get("exclude")),
            packages=_str_map(data.get("packages")),
            editable=_str_map(data.get("editable")),
            package_sources={
                str(k): v for k, v in _map(data.get("package_sources")).items() if isinstance(v, Mapping)
            },
            environment=_map(data.get("environment")),
            warnings=tuple(str(w) for w in data.get("warnings") or () if w is not None)
            if isinstance(data.get("warnings"), list)
            else (),
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
    def outputs_manifest(self) -> dict[str, Any] | None:
        """The recorded outputs manifest in :func:`runlock.hashing.hash_outputs`' shape, for
        ``verify_outputs``; None when the run recorded none."""
        if not self.outputs_recorded:
            return None
        out: dict[str, Any] = {"files": dict(self.outputs)}
        if self.outputs_algorithm is not None:
            out["algorithm"] = self.outputs_algorithm
        if self.outputs_exclude is not None:
            out["exclude"] = list(self.outputs_exclude)
        return out

    @property
    def start_ts(self) -> float | None:
        return to_timestamp(self.start)

    @property
    def end_ts(self) -> float | None:
        return to_timestamp(self.end)

    @property
    def heartbeat_ts(self) -> float | None:
        return to_timestamp(self.heartbeat)
