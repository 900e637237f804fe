"""Push and pull runs, with their whole lineage, to and from a shared store (any rclone remote).

Store layout (``STORE_VERSION`` 1), under the remote ``R`` (``b2:bucket/prefix``, ``sftp:dir``,
``/srv/runs``...)::

    R/runs/<run_id>/...             the run directory's files, as they are locally
    R/index/<run_id>.json           one JSON line: id, stage, status, start, relpath, commit,
                                    upstream ids, pushed_at, store version

Runs are stored by id, not by their local path: ids are unique across machines, run directory
names (``train/2026-11-25_16-30``) are not. The local path relative to the results root is kept
in the index entry (``relpath``) so a pull puts the run back where it was. The index entry is
written last, after the data arrived and was verified: a run listed by ``runlock remote ls`` is
complete on the store, and ``remote ls`` is one ``rclone cat`` whatever the number of runs.

Source snapshots go to the git code remote as ``refs/runlock/runs/<run_id>``, outside
``refs/heads`` so the user's branches are untouched.

Verification: ``rclone copy --checksum`` compares by hash and checks the hash of each file it
transferred, and the data hashes recorded in each lock (``outputs.files``) are checked on the
side that has the files (before push, after pull). A copy is incremental, so an interrupted
push or pull re-run sends only what is missing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import git
from ..errors import (
    AmbiguousRunError,
    DataError,
    LineageError,
    RemoteError,
    RunNotFoundError,
    UnsafeNameError,
    UsageError,
)
from ..record.lock import Lock
from ..record.lockfile import load_lock
from ..record.rundir import LOCK_NAME, atomic_write
from ..record.safe import check_name, check_run_id, confined
from ..record.walk import iter_run_dirs
from ..settings import project_settings, results_root
from . import rclone

logger = logging.getLogger("runlock")

STORE_VERSION = 1
RUNS_DIR = "runs"
INDEX_DIR = "index"
REF_PREFIX = "refs/runlock/runs/"
DEFAULT_CODE_REMOTE = "origin"
_PULL_TMP = ".runlock-pull-"


# --------------------------------------------------------------------------- settings


def resolve_remote(remote: str | None = None, *, start: Path | None = None) -> str:
    """The store: ``remote`` when given, else ``$RUNLOCK_REMOTE``, else ``[tool.runlock] remote``."""
    value = remote or os.environ.get("RUNLOCK_REMOTE") or project_settings(start).get("remote")
    if not value:
        raise UsageError(
            "No remote store configured.",
            hint='pass --to/--from/--remote REMOTE, set RUNLOCK_REMOTE, or add `remote = "b2:bucket/runs"` '
            "to [tool.runlock] in pyproject.toml",
        )
    return str(value).rstrip("/") if len(str(value)) > 1 else str(value)


def resolve_code_remote(code_remote: str | None = None, *, start: Path | None = None) -> str:
    """The git remote for source snapshots: argument, ``$RUNLOCK_CODE_REMOTE``,
    ``[tool.runlock] code_remote``, else ``origin``."""
    return str(
        code_remote
        or os.environ.get("RUNLOCK_CODE_REMOTE")
        or project_settings(start).get("code_remote")
        or DEFAULT_CODE_REMOTE
    )


# --------------------------------------------------------------------------- local runs


@dataclass(frozen=True)
class LocalRun:
    """A run directory on this machine and its lock (``view`` answers questions about it)."""

    id: str
    path: Path
    view: Lock = field(repr=False, compare=False)

    @property
    def lock(self) -> Mapping[str, Any]:
        """The whole lock, as loaded."""
        return self.view.data

    @property
    def stage(self) -> str:
        return self.view.stage or "run"

    @property
    def commit(self) -> str | None:
        """The commit holding the run's exact source (see ``Lock.source_commit``)."""
        return self.view.source_commit

    @property
    def upstream_ids(self) -> list[str]:
        return self.view.upstream_ids


def _iter_run_dirs(root: Path) -> Iterator[Path]:
    """Run directories under ``root``: the one walker's (``record.walk``), so push finds what ls
    lists (pulled, symlinked runs included)."""
    return iter_run_dirs(root)


def _load_run(path: Path) -> LocalRun:
    view = Lock.from_dict(load_lock(path))
    return LocalRun(view.id or path.name, path, view)


def find_local_run(ref: str | os.PathLike[str], root: Path | None = None) -> LocalRun:
    """A run by path (its directory or anything inside) or by id / unique id prefix under the
    results root."""
    root = results_root(root)
    p = Path(ref)
    if p.exists():
        from ..record.lockfile import find_run_dir

        d = find_run_dir(p)
        if d is None:
            raise RunNotFoundError(f"{p} is not inside a run directory (no run.lock).")
        return _load_run(d)
    text = os.fspath(ref)
    matches: dict[str, LocalRun] = {}
    for d in _iter_run_dirs(root):
        try:
            run = _load_run(d)
        except Exception:  # noqa: BLE001 - a broken lock is not the run we look for
            logger.debug("skipping %s: unreadable run.lock", d)
            continue
        if run.id == text:
            return run
        if run.id.startswith(text) or d.name == text:
            matches.setdefault(run.id, run)
    if len(matches) == 1:
        return next(iter(matches.values()))
    if matches:
        raise AmbiguousRunError(
            f"Run id prefix {text!r} matches {len(matches)} runs under {root}: "
            f"{', '.join(sorted(matches)[:5])}...",
            hint="give more characters of the id",
        )
    raise RunNotFoundError(f"No run {text!r} under {root}.", hint="see `runlock ls`")


def local_lineage(run: LocalRun, root: Path | None = None) -> list[LocalRun]:
    """``run`` then every upstream run of its lineage (recursively, each once) found locally.

    An upstream is looked for at the path its consumer recorded, then by id under the root.
    """
    root = results_root(root)
    out: dict[str, LocalRun] = {run.id: run}
    todo = [run]
    while todo:
        cur = todo.pop(0)
        for up in cur.view.upstream:
            uid, key, rec = up.id, up.key, up.path
            if uid is None or uid in out:
                continue
            found: LocalRun | None = None
            if rec:
                from ..record.lockfile import find_run_dir

                d = find_run_dir(Path(rec)) if Path(rec).exists() else None
                if d is not None:
                    cand = _load_run(d)
                    found = cand if cand.id == uid else None
            if found is None:
                try:
                    found = find_local_run(uid, root)
                except RunNotFoundError:
                    raise LineageError(
                        f"Upstream run {uid} (config key {key!r} of run {cur.id}) is not on this "
                        f"machine (looked at {rec!r} and under {root}).",
                        hint=f"pull it first: runlock pull {uid}",
                    ) from None
            out[uid] = found
            todo.append(found)
    return list(out.values())


def verify_run_data(path: Path, lock: Lock) -> list[str]:
    """Recorded output files of a run that changed or are missing (``outputs.files`` hashes).

    Files added after the run are not errors (notes, plots made later).
    """
    manifest = lock.outputs_manifest
    if not manifest or not manifest["files"]:
        return []
    from ..hashing import verify_outputs

    res = verify_outputs(path, manifest)
    return [f"changed: {r}" for r in res["changed"]] + [f"missing: {r}" for r in res["missing"]]


# --------------------------------------------------------------------------- store index


@dataclass(frozen=True)
class StoreEntry:
    """One run on the store (its ``index/<id>.json``)."""

    id: str
    stage: str
    status: str | None = None
    start: str | None = None
    relpath: str | None = None
    commit: str | None = None
    upstream: tuple[str, ...] = ()
    pushed_at: str | None = None
    store: int = STORE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "id": self.id,
            "stage": self.stage,
            "status": self.status,
            "start": self.start,
            "relpath": self.relpath,
            "commit": self.commit,
            "upstream": list(self.upstream),
            "pushed_at": self.pushed_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StoreEntry:
        return cls(
            id=str(d["id"]),
            stage=str(d.get("stage") or "run"),
            status=d.get("status"),
            start=d.get("start"),
            relpath=d.get("relpath"),
            commit=d.get("commit"),
            upstream=tuple(d.get("upstream") or ()),
            pushed_at=d.get("pushed_at"),
            store=int(d.get("store") or STORE_VERSION),
        )

    @property
    def start_time(self) -> datetime | None:
        try:
            dt = datetime.fromisoformat(str(self.start))
        except (TypeError, ValueError):
            return None
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def read_index(remote: str) -> dict[str, StoreEntry]:
    """Every run on the store, by id, in one rclone call."""
    text = rclone.cat(rclone.join(remote, INDEX_DIR), include="*.json")
    out: dict[str, StoreEntry] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            e = StoreEntry.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError):
            logger.warning("skipping an unreadable index entry on %s", rclone.redact(remote))
            continue
        if e.store > STORE_VERSION:
            raise RemoteError(
                f"The store {rclone.redact(remote)} was written by a newer runlock "
                f"(store version {e.store}).",
                hint="pip install -U runlock",
            )
        out[e.id] = e
    return out


def _match_id(index: dict[str, StoreEntry], ref: str, remote: str) -> StoreEntry:
    if ref in index:
        return index[ref]
    hits = [e for i, e in index.items() if i.startswith(ref)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise AmbiguousRunError(
            f"Run id prefix {ref!r} matches {len(hits)} runs on {rclone.redact(remote)}.",
            hint="give more characters of the id",
        )
    raise RunNotFoundError(
        f"No run {ref!r} on the store {rclone.redact(remote)}.",
        hint="see `runlock remote ls`",
    )


def store_lineage(index: dict[str, StoreEntry], ref: str, remote: str) -> list[StoreEntry]:
    """The run ``ref`` then all its upstream runs on the store (recursively, each once)."""
    first = _match_id(index, ref, remote)
    out: dict[str, StoreEntry] = {first.id: first}
    todo = [first]
    while todo:
        cur = todo.pop(0)
        for uid in cur.upstream:
            check_run_id(uid, source=f"the upstream of run {cur.id!r} in the store index")
            if uid in out:
                continue
            if uid not in index:
                raise RemoteError(
                    f"Upstream run {uid} of run {cur.id} is not on the store "
                    f"{rclone.redact(remote)}.",
                    hint=f"push it from a machine that has it: runlock push {uid}",
                )
            out[uid] = index[uid]
            todo.append(index[uid])
    return list(out.values())


# --------------------------------------------------------------------------- git (code remote)


def _repo_root(path: Path) -> Path | None:
    return git.repo_root(path) if path.exists() else None


def has_commit(repo: Path, commit: str) -> bool:
    return git.has_commit(repo, commit)


def push_snapshots(repo: Path, code_remote: str, commits: dict[str, str]) -> list[str]:
    """Push ``{run_id: commit}`` to ``refs/runlock/runs/<run_id>`` on ``code_remote``, in one push."""
    if not commits:
        return []
    for rid, c in commits.items():
        if not has_commit(repo, c):
            raise RemoteError(
                f"The source snapshot {c} of run {rid} is not in the repository {repo}.",
                hint="push from the machine (repository) where the run was made",
            )
    refs = [f"{c}:{REF_PREFIX}{rid}" for rid, c in sorted(commits.items())]
    proc = git.push_refs(repo, code_remote, refs)
    if not proc.ok:
        raise RemoteError(
            rclone.redact(
                f"git push of source snapshots to the code remote {code_remote!r} failed: "
                f"{proc.stderr.strip()[-800:]}"
            ),
            hint="check `git remote -v` and set [tool.runlock] code_remote (or --code-remote NAME), "
            "or push the data only with --no-code",
        )
    return [f"{REF_PREFIX}{rid}" for rid in sorted(commits)]


def fetch_snapshots(repo: Path, code_remote: str, commits: dict[str, str]) -> list[str]:
    """Fetch ``refs/runlock/runs/<id>`` for each ``{run_id: commit}`` not already present."""
    want = {rid: c for rid, c in commits.items() if not has_commit(repo, c)}
    have = {rid: c for rid, c in commits.items() if rid not in want}
    for rid, c in have.items():  # keep a ref so `git gc` never drops a local snapshot
        git.update_ref(repo, f"{REF_PREFIX}{rid}", c)
    if not want:
        return []
    refs = [f"+{REF_PREFIX}{rid}:{REF_PREFIX}{rid}" for rid in sorted(want)]
    proc = git.fetch_refs(repo, code_remote, refs)
    if not proc.ok:
        missing = ", ".join(f"{rid} ({c[:12]})" for rid, c in sorted(want.items()))
        raise RemoteError(
            rclone.redact(
                f"The source snapshot(s) of run(s) {missing} are not on the code remote "
                f"{code_remote!r}: {proc.stderr.strip()[-600:]}"
            ),
            hint="push them from the machine that made the runs (runlock push RUN), or pass "
            "--no-code to pull the data only",
        )
    return [f"{REF_PREFIX}{rid}" for rid in sorted(want)]


# --------------------------------------------------------------------------- push


@dataclass(frozen=True)
class Moved:
    """One run sent or received."""

    id: str
    local: Path
    remote: str
    stats: rclone.TransferStats
    action: str  # copied | linked | present | replaced


@dataclass
class TransferReport:
    """What a push or a pull moved: runs, code refs, and warnings for the user."""

    remote: str
    runs: list[Moved] = field(default_factory=list)
    code_refs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class PushReport(TransferReport):
    pass


def _relpath(path: Path, root: Path) -> str | None:
    """Path of a run under the results root; a pulled run may be a symlink into the store, so
    the unresolved path is tried first."""
    for p, r in ((path.absolute(), root.absolute()), (path.resolve(), root.resolve())):
        try:
            rel = p.relative_to(r)
        except ValueError:
            continue
        return rel.as_posix() if rel.parts else None
    return None


def push(
    run: str | os.PathLike[str],
    *,
    remote: str | None = None,
    root: Path | None = None,
    code: bool = True,
    code_remote: str | None = None,
    progress: bool = False,
) -> PushReport:
    """Send a run and every upstream run of its lineage to the store, and their source
    snapshots to the code remote (``refs/runlock/runs/<id>``).

    Each run's recorded output hashes are checked first (a run changed since it finished is
    not pushed: DataError), the copy is verified by hash, then its index entry is written.
    Re-running after an interruption sends only what is missing.
    """
    store = resolve_remote(remote)
    root = results_root(root)
    head = find_local_run(run, root)
    lineage = local_lineage(head, root)
    report = PushReport(rclone.redact(store))
    for r in lineage:  # ids and stages name store paths: all checked before anything is sent
        check_run_id(r.id, source=os.fspath(r.path / LOCK_NAME))
        check_name(r.stage, source=os.fspath(r.path / LOCK_NAME))
    for r in lineage:
        if r.view.status == "running":
            raise UsageError(
                f"Run {r.id} ({r.path}) is still running; push it when it has finished."
            )
        bad = verify_run_data(r.path, r.view)
        if bad:
            raise DataError(
                f"Run {r.id} ({r.path}) no longer matches the output hashes in its run.lock: "
                f"{', '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}.",
                hint="restore the files or re-run the stage; a changed run is not pushed",
            )
    rclone.binary()
    commits: dict[str, str] = {}
    repos: dict[str, Path] = {}
    if code:
        for r in lineage:
            c = r.commit
            if c is None:
                report.warnings.append(f"run {r.id} has no source snapshot (not made in git?)")
                continue
            git_root = r.view.git.root if r.view.git else None
            repo = _repo_root(Path(git_root or "")) or _repo_root(Path.cwd())
            if repo is None:
                report.warnings.append(f"run {r.id}: no git repository here to push its source from")
                continue
            commits[r.id] = c
            repos[r.id] = repo
    # Code first: a run on the store whose code cannot be fetched is the worse failure.
    by_repo: dict[Path, dict[str, str]] = {}
    for rid, c in commits.items():
        by_repo.setdefault(repos[rid], {})[rid] = c
    for repo, cs in by_repo.items():
        report.code_refs += push_snapshots(repo, resolve_code_remote(code_remote, start=repo), cs)

    now = datetime.now(UTC).isoformat(timespec="seconds")
    for r in lineage:
        dest = rclone.join(store, RUNS_DIR, r.id)
        local = rclone.local_path(store)
        if local is not None and r.path.resolve() == (local / RUNS_DIR / r.id).resolve():
            stats = rclone.TransferStats()  # a run pulled as a symlink into this very store
        else:
            stats = rclone.copy(r.path, dest, progress=progress, label=f"push {r.stage}/{r.id}")
        if stats.errors:
            raise RemoteError(f"rclone reported {stats.errors} errors pushing run {r.id}.")
        entry = StoreEntry(
            id=r.id,
            stage=r.stage,
            status=r.view.status,
            start=r.view.start,
            relpath=_relpath(r.path, root),
            commit=commits.get(r.id) or r.commit,
            upstream=tuple(r.upstream_ids),
            pushed_at=now,
        )
        line = json.dumps(entry.to_dict(), sort_keys=True) + "\n"
        if local is not None:  # a plain directory: no need to start rclone for one small file
            atomic_write(confined(local, INDEX_DIR, f"{r.id}.json", what="index entry"), line)
        else:
            rclone.rcat(rclone.join(store, INDEX_DIR, f"{r.id}.json"), line)
        report.runs.append(Moved(r.id, r.path, rclone.redact(dest), stats, "copied"))
    return report


# --------------------------------------------------------------------------- pull


class PullReport(TransferReport):
    pass


_COMMIT_CHARS = frozenset("0123456789abcdef")


def _check_entry(e: StoreEntry, remote: str) -> None:
    """Everything of a store entry that names a path or a git object, checked before a pull
    touches anything (a forged entry once made ``pull --force`` replace the user's ``src/``)."""
    where = f"the index entry of run {e.id!r} on {rclone.redact(remote)}"
    check_run_id(e.id, source=f"an index entry on {rclone.redact(remote)}")
    check_name(e.stage, source=where)
    if e.commit is not None and not (
        isinstance(e.commit, str) and 4 <= len(e.commit) <= 64 and set(e.commit) <= _COMMIT_CHARS
    ):
        raise UnsafeNameError(f"The commit {e.commit!r} (from {where}) is not a git object id; "
                              "refused.")


def _target(root: Path, e: StoreEntry, remote: str = "") -> Path:
    """Where a pulled run goes: its recorded ``relpath`` (else ``<stage>/<id>``), always strictly
    inside the results root, symlinks resolved (UnsafePathError otherwise)."""
    where = f"the index entry of run {e.id!r} on {rclone.redact(remote)}"
    if e.relpath:
        return confined(root, str(e.relpath), what="relpath", source=where)
    return confined(root, e.stage, e.id, what="run path", source=where)


def _is_run_dir(path: Path) -> bool:
    """A run (its run.lock) or a link (a pulled run): what ``--force`` may replace."""
    return path.is_symlink() or (path / LOCK_NAME).is_file()


def _same_as_store(local: Path, src: str, e: StoreEntry) -> bool:
    try:
        lock = load_lock(local)
    except Exception:  # noqa: BLE001 - no/corrupt lock: not the same run
        return False
    view = Lock.from_dict(lock)
    if view.id != e.id:
        return False
    return not rclone.check(src, local, one_way=True) and not verify_run_data(local, view)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _install(tmp: Path, target: Path, force: bool) -> str:
    """Rename the complete ``tmp`` into place (replacing ``target`` only under force)."""
    action = "copied"
    if target.exists() or target.is_symlink():
        if not force or not _is_run_dir(target):  # appeared meanwhile
            raise RemoteError(f"{target} appeared while pulling; not replaced.",
                              hint="move it away and pull again")
        aside = target.with_name(f".{target.name}.runlock-replaced")
        _remove(aside)
        os.replace(target, aside)
        os.replace(tmp, target)
        _remove(aside)
        action = "replaced"
    else:
        os.replace(tmp, target)
    return action


def pull(
    run_id: str,
    *,
    remote: str | None = None,
    root: Path | None = None,
    copy: bool = False,
    force: bool = False,
    code: bool = True,
    code_remote: str | None = None,
    repo: Path | None = None,
    progress: bool = False,
) -> PullReport:
    """Bring a run and its lineage from the store into the results root, at the path each had
    under its results root (else ``<root>/<stage>/<id>``), and fetch their source snapshots.

    A local-directory store is symlinked unless ``copy``. A copy goes to a hidden sibling
    (``.<name>.runlock-pull-<id>``, resumed by a re-run) and is renamed into place once verified,
    so a partial pull never looks like a run. A local run that differs from the store is never
    overwritten unless ``force``.
    """
    store = resolve_remote(remote)
    root = results_root(root)
    index = read_index(store)
    if not index:
        rclone.ping(store)  # distinguish "empty store" from "remote does not answer"
    lineage = store_lineage(index, run_id, store)
    report = PullReport(rclone.redact(store))
    local_store = None if copy else rclone.local_path(store)

    for e in lineage:  # every entry checked before anything is touched
        _check_entry(e, store)
    plans: list[tuple[StoreEntry, str, Path]] = []
    for e in lineage:
        src = rclone.join(store, RUNS_DIR, e.id)
        target = _target(root, e, store)
        if (target.exists() or target.is_symlink()) and not _is_run_dir(target):
            raise RemoteError(
                f"{target} exists and is not a run directory; run {e.id} is not pulled there.",
                hint="move it away and pull again (--force only ever replaces run directories)",
            )
        if (target.exists() or target.is_symlink()) and not force and not _same_as_store(
            target, src, e
        ):
            raise RemoteError(
                f"{target} exists and differs from run {e.id} on the store; not overwritten.",
                hint="move it away, or pass --force to replace it with the store's copy",
            )
        plans.append((e, src, target))

    for e, src, target in plans:
        if (target.exists() or target.is_symlink()) and not force:
            report.runs.append(Moved(e.id, target, rclone.redact(src), rclone.TransferStats(), "present"))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if local_store is not None:
            store_dir = confined(local_store, RUNS_DIR, e.id, what="store path")
            bad = verify_run_data(store_dir, Lock.from_dict(load_lock(store_dir)))
            if bad:
                raise DataError(
                    f"Run {e.id} on the store ({store_dir}) no longer matches its recorded "
                    f"output hashes: {', '.join(bad[:10])}.",
                )
            tmp = target.with_name(f".{target.name}{_PULL_TMP}{e.id}")
            _remove(tmp)
            os.symlink(store_dir, tmp, target_is_directory=True)
            action = _install(tmp, target, force)
            report.runs.append(Moved(e.id, target, str(store_dir), rclone.TransferStats(),
                                     "linked" if action == "copied" else action))
            continue
        tmp = target.with_name(f".{target.name}{_PULL_TMP}{e.id}")
        if tmp.is_symlink() or tmp.is_file():
            tmp.unlink()
        stats = rclone.copy(src, tmp, progress=progress, label=f"pull {e.stage}/{e.id}")
        try:
            lock = Lock.from_dict(load_lock(tmp))
        except Exception as exc:
            raise RemoteError(f"Run {e.id} on the store has no readable run.lock: {exc}") from exc
        if lock.id != e.id:
            raise RemoteError(f"The run.lock of {src} says id {lock.id!r}, not {e.id}.")
        bad = verify_run_data(tmp, lock)
        if bad:
            raise DataError(
                f"Run {e.id} pulled from the store does not match its recorded output hashes: "
                f"{', '.join(bad[:10])}; kept in {tmp} for inspection.",
            )
        action = _install(tmp, target, force)
        report.runs.append(Moved(e.id, target, rclone.redact(src), stats, action))

    if code:
        commits = {e.id: e.commit for e in lineage if e.commit}
        repo_dir = _repo_root(repo or Path.cwd())
        if commits and repo_dir is None:
            report.warnings.append("not in a git repository: source snapshots not fetched")
        elif commits and repo_dir is not None:
            report.code_refs = fetch_snapshots(
                repo_dir, resolve_code_remote(code_remote, start=repo_dir), commits
            )
    return report


# --------------------------------------------------------------------------- remote ls / rm


def list_remote(
    remote: str | None = None,
    *,
    stage: str | Sequence[str] | None = None,
    status: str | Iterable[str] | None = None,
    since: str | datetime | None = None,
) -> list[StoreEntry]:
    """Runs on the store, oldest first, filtered like ``runlock ls``."""
    from ..browse.filters import parse_since, parse_statuses

    store = resolve_remote(remote)
    index = read_index(store)
    if not index:
        rclone.ping(store)
    stages = {stage} if isinstance(stage, str) else set(stage or ())
    statuses = parse_statuses(status)
    after = parse_since(since)
    out = []
    for e in sorted(index.values(), key=lambda e: e.id):
        if stages and e.stage not in stages:
            continue
        if statuses and (e.status or "") not in statuses:
            continue
        if after is not None and (e.start_time is None or e.start_time < after):
            continue
        out.append(e)
    return out


def remove_remote(
    run_ids: Sequence[str],
    *,
    remote: str | None = None,
    code: bool = True,
    code_remote: str | None = None,
    force: bool = False,
) -> list[StoreEntry]:
    """Delete runs from the store (index entry first, so a half-deleted run is never listed),
    and their snapshot refs from the code remote. A run that another stored run depends on is
    kept unless ``force``."""
    store = resolve_remote(remote)
    index = read_index(store)
    doomed = [_match_id(index, r, store) for r in run_ids]
    for e in doomed:  # the id names what is purged: a forged one could name the whole store
        check_run_id(e.id, source=f"an index entry on {rclone.redact(store)}")
    ids = {e.id for e in doomed}
    if not force:
        for e in index.values():
            if e.id in ids:
                continue
            used = ids.intersection(e.upstream)
            if used:
                raise LineageError(
                    f"Run {', '.join(sorted(used))} is upstream of run {e.id} on the store.",
                    hint="remove the downstream run too, or pass --force",
                )
    for e in doomed:
        rclone.delete_file(rclone.join(store, INDEX_DIR, f"{e.id}.json"))
        rclone.purge(rclone.join(store, RUNS_DIR, e.id))
    if code:
        repo = _repo_root(Path.cwd())
        if repo is not None:
            name = resolve_code_remote(code_remote, start=repo)
            refs = [f":{REF_PREFIX}{e.id}" for e in doomed if e.commit]
            if refs:
                proc = git.push_refs(repo, name, refs)
                if not proc.ok:
                    logger.warning(
                        "could not delete snapshot refs on %s: %s",
                        name, rclone.redact(proc.stderr.strip()[-300:]),
                    )
    return doomed
