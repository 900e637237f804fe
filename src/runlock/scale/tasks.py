"""On-disk task state for task maps: todo / running / done / failed, as plain files.

Why files and not SQLite: the state directory is shared by SLURM jobs on different nodes over
NFS/Lustre, where SQLite locking is unreliable. Every transition is one atomic filesystem
operation, so a worker killed at any point (SIGKILL, ``scancel``, node loss) never leaves a
half-written state behind:

```
<state_dir>/
  tasks.json            manifest {schema, n_tasks, width, digest}: written once, checked on resume
  running/<id>          claim: O_EXCL create, content = owner id, mtime = heartbeat (lease)
  results/<id>.pkl      done: the pickled result. Created with os.link() from a complete temporary
                        file, which fails if it exists -> a task is done at most once, and "done"
                        is final (a late finisher of a reclaimed task loses the race and discards)
  failed/<id>.json      {type, message, traceback, owner, launch}: tmp + rename
  logs/                 per-worker log files (see runlock.scale.taskmap)
  jobs/                 submitit pickles and job logs, when the SLURM backend runs without `folder`
```

"todo" is implicit: a task with no file in any of the three folders. Counting states is one
``os.scandir`` per folder, so resuming 10,000 tasks does not open 10,000 files.
A claim whose mtime is older than ``lease_s`` belongs to a dead worker and may be reclaimed;
live workers refresh their claims' mtime from a heartbeat thread.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import pickle
import shutil
import threading
import time
import traceback
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runlock.errors import TaskError

__all__ = ["SCHEMA_VERSION", "TaskCounts", "TaskStore", "new_owner_id", "tasks_digest"]

log = logging.getLogger("runlock.scale.tasks")

SCHEMA_VERSION = 1
_RESULT_SUFFIX = ".pkl"
_FAILED_SUFFIX = ".json"


def new_owner_id() -> str:
    """A worker identity that is unique across hosts, processes and requeued SLURM jobs."""
    from ..capture.environment import hostname

    host = hostname().split(".")[0]
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def tasks_digest(tasks: Sequence[Any]) -> str | None:
    """sha256 of the pickled task list, to refuse resuming a state dir made for other tasks.

    ``None`` when the tasks cannot be pickled (then only the task count is checked).
    """
    try:
        data = pickle.dumps(list(tasks), protocol=4)
    except Exception:  # noqa: BLE001 - any unpicklable task: fall back to the count check
        return None
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class TaskCounts:
    """How many tasks are in each state (a snapshot)."""

    total: int
    todo: int
    running: int
    done: int
    failed: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _scan_ids(folder: Path, suffix: str = "") -> set[str]:
    """Task ids with a file in ``folder`` (one scandir; temporary dot-files skipped)."""
    ids: set[str] = set()
    try:
        with os.scandir(folder) as it:
            for entry in it:
                name = entry.name
                if name.startswith("."):
                    continue
                if suffix:
                    if not name.endswith(suffix):
                        continue
                    name = name[: -len(suffix)]
                ids.add(name)
    except FileNotFoundError:
        pass
    return ids


def _remove_grave(grave: str) -> None:
    """Remove an expired claim moved aside. A claim is a file; anything else there (a directory
    someone made) is garbage that would block the task forever: reported and removed."""
    try:
        os.unlink(grave)
    except FileNotFoundError:
        pass
    except OSError:
        log.warning("removing %s: an expired task claim that is not a file", grave)
        shutil.rmtree(grave, ignore_errors=True)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class TaskStore:
    """Task state for one task map, stored under ``state_dir``; safe across processes and hosts.

    ``owner`` identifies the worker using this instance for claims; ``lease_s`` is how long a
    claim without heartbeat stays valid before another worker may take the task over.
    """

    def __init__(self, state_dir: Path, *, owner: str | None = None, lease_s: float = 60.0) -> None:
        if lease_s <= 0:
            raise TaskError(f"lease_s must be > 0, got {lease_s!r}")
        self.state_dir = Path(state_dir)
        self.owner = owner or new_owner_id()
        self.lease_s = float(lease_s)
        self.running_dir = self.state_dir / "running"
        self.results_dir = self.state_dir / "results"
        self.failed_dir = self.state_dir / "failed"
        self.logs_dir = self.state_dir / "logs"
        self.manifest_path = self.state_dir / "tasks.json"
        # Plain-string prefixes for the per-task hot path: pathlib objects cost more than the
        # syscalls they wrap when a map runs 10,000 trivial tasks.
        self._run = os.path.join(self.running_dir, "")
        self._res = os.path.join(self.results_dir, "")
        self._fail = os.path.join(self.failed_dir, "")
        self._held: dict[str, int] = {}  # task id -> inode of our claim file
        self._held_lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None
        self._stop = threading.Event()

    # --- setup -----------------------------------------------------------------------------
    def initialize(self, n_tasks: int, digest: str | None = None) -> list[str]:
        """Create the folders and the manifest, or check them on resume; return the task ids.

        Raises TaskError when ``state_dir`` was made for a different task list, since mixing
        results of two task lists would silently corrupt the map.
        """
        for d in (self.running_dir, self.results_dir, self.failed_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        width = max(6, len(str(max(n_tasks - 1, 0))))
        manifest = {"schema": SCHEMA_VERSION, "n_tasks": n_tasks, "width": width, "digest": digest}
        try:
            old = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            data = json.dumps(manifest, sort_keys=True, indent=1).encode()
            try:  # O_EXCL: two launchers racing on a fresh dir agree on one manifest
                fd = os.open(self.manifest_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return self.initialize(n_tasks, digest)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            old = manifest
        except (OSError, ValueError) as exc:
            raise TaskError(f"unreadable task manifest {self.manifest_path}: {exc}") from exc
        if old.get("schema") != SCHEMA_VERSION:
            raise TaskError(
                f"{self.manifest_path}: unknown task state schema {old.get('schema')!r}"
            )
        if old.get("n_tasks") != n_tasks or (
            digest is not None and old.get("digest") not in (None, digest)
        ):
            raise TaskError(
                f"{self.state_dir} holds the state of a different task list "
                f"({old.get('n_tasks')} tasks, digest {str(old.get('digest'))[:12]}; "
                f"now {n_tasks} tasks, digest {str(digest)[:12]})",
                hint="use a new state_dir, or delete this one to start over",
            )
        w = int(old.get("width", width))
        return [str(i).zfill(w) for i in range(n_tasks)]

    # --- reading ---------------------------------------------------------------------------
    def done_ids(self) -> set[str]:
        return _scan_ids(self.results_dir, _RESULT_SUFFIX)

    def failed_ids(self) -> set[str]:
        return _scan_ids(self.failed_dir, _FAILED_SUFFIX)

    def running_ids(self) -> set[str]:
        return _scan_ids(self.running_dir)

    def counts(self, ids: Sequence[str]) -> TaskCounts:
        """State counts for ``ids`` from three scandirs (done wins over failed and running)."""
        all_ids = set(ids)
        done = self.done_ids() & all_ids
        failed = (self.failed_ids() & all_ids) - done
        running = (self.running_ids() & all_ids) - done - failed
        todo = len(all_ids) - len(done) - len(failed) - len(running)
        return TaskCounts(len(all_ids), todo, len(running), len(done), len(failed))

    def pending(self, ids: Iterable[str]) -> list[str]:
        """Ids that are not done, in the given order (failed and running ones included)."""
        done = self.done_ids()
        return [i for i in ids if i not in done]

    def is_done(self, task_id: str) -> bool:
        return os.path.exists(self._res + task_id + _RESULT_SUFFIX)

    def has_failure(self, task_id: str) -> bool:
        return os.path.exists(self._fail + task_id + _FAILED_SUFFIX)

    def result(self, task_id: str) -> Any:
        """The stored result of a done task (KeyError-compatible TaskError otherwise)."""
        try:
            with open(self.results_dir / f"{task_id}{_RESULT_SUFFIX}", "rb") as f:
                return pickle.load(f)
        except FileNotFoundError:
            raise TaskError(f"task {task_id} has no result in {self.results_dir}") from None

    def failure(self, task_id: str) -> dict[str, Any] | None:
        """The error record of a failed task: {type, message, traceback, owner, launch}.

        A record that cannot be read (garbage, a directory, a torn copy) is reported as such,
        with no ``launch``: the task counts as failed in an earlier launch, so it runs again.
        """
        path = self.failed_dir / f"{task_id}{_FAILED_SUFFIX}"
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # ValueError: bad JSON or UTF-8
            problem = f"{type(exc).__name__}: {exc}"
        else:
            if isinstance(data, dict):
                return data
            problem = f"a JSON {type(data).__name__}, not an object"
        log.warning(
            "task %s: unreadable failure record %s (%s); running it again", task_id, path, problem
        )
        return {
            "type": "runlock.UnreadableFailureRecord",
            "message": f"unreadable failure record {path}: {problem}",
            "traceback": "",
            "owner": None,
            "launch": None,
        }

    def claim_age(self, task_id: str) -> float | None:
        """Seconds since the claim's last heartbeat, or None when the task is not claimed."""
        try:
            return time.time() - os.stat(self.running_dir / task_id).st_mtime
        except FileNotFoundError:
            return None

    def claim_owner(self, task_id: str) -> str | None:
        try:
            return (self.running_dir / task_id).read_text(errors="replace")
        except FileNotFoundError:
            return None
        except OSError:  # not a file (a directory someone made): nobody's claim
            return ""

    # --- transitions ----------------------------------------------------------------------
    def claim(self, task_id: str) -> bool:
        """Try to claim a task; True when this owner now holds it.

        An existing claim older than the lease is taken over: it is first renamed away (rename is
        atomic, so exactly one of several reclaimers wins), then re-created with O_EXCL.
        """
        path = self._run + task_id
        if self._create_claim(path, task_id):
            if self.is_done(task_id):  # finished by someone between our scan and our claim
                self.release(task_id)
                return False
            return True
        age = self.claim_age(task_id)
        if age is None or age <= self.lease_s:
            return age is None and self.claim(task_id)  # vanished meanwhile: try once more
        grave = f"{self._run}.{task_id}.expired.{self.owner}"
        try:
            os.rename(path, grave)
        except FileNotFoundError:
            return False  # another reclaimer won
        try:
            # Check-then-rename race: the file we moved may be a fresh claim made in between.
            if time.time() - os.stat(grave).st_mtime <= self.lease_s:
                try:
                    os.link(grave, path)  # give it back unless someone claimed meanwhile
                except FileExistsError:
                    pass
                return False
        finally:
            _remove_grave(grave)
        return self.claim(task_id) if not os.path.exists(path) else False

    def _create_claim(self, path: str, task_id: str) -> bool:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, self.owner.encode())
            inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        with self._held_lock:
            self._held[task_id] = inode
        return True

    def release(self, task_id: str) -> None:
        """Drop this owner's claim (only if it is still ours: it may have been reclaimed)."""
        with self._held_lock:
            inode = self._held.pop(task_id, None)
        path = self._run + task_id
        try:
            # Ours if it is the very file we created (one stat, no open); otherwise compare owners.
            if inode is not None:
                if os.stat(path).st_ino != inode:
                    return
            elif self.claim_owner(task_id) != self.owner:
                return
            os.unlink(path)
        except FileNotFoundError:
            pass

    def release_all(self) -> None:
        """Release every claim held, e.g. before a SLURM requeue so the next job starts at once."""
        with self._held_lock:
            held = list(self._held)
        for task_id in held:
            self.release(task_id)

    def complete(self, task_id: str, result: Any) -> bool:
        """Store the result and mark the task done; False if it was already done (discarded).

        The result file is written completely under a temporary name, then hard-linked to its
        final name: link() fails when the target exists, so "done" happens once and is final.
        """
        final = self._res + task_id + _RESULT_SUFFIX
        tmp = f"{self._res}.{task_id}.{self.owner}.tmp"
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        try:
            os.link(tmp, final)
            won = True
        except FileExistsError:
            won = False
        except OSError as exc:  # filesystems without hard links: exclusive create instead
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            won = self._exclusive_copy(data, final)
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if won:
            try:
                os.unlink(self._fail + task_id + _FAILED_SUFFIX)  # an earlier launch's failure
            except FileNotFoundError:
                pass
            except OSError:  # not a file: garbage that must not undo "done"
                shutil.rmtree(self._fail + task_id + _FAILED_SUFFIX, ignore_errors=True)
        self.release(task_id)
        return won

    @staticmethod
    def _exclusive_copy(data: bytes, dst: str) -> bool:
        try:
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def fail(self, task_id: str, exc: BaseException, *, launch: str = "") -> None:
        """Record a task failure (type, message, traceback); a done task stays done."""
        record = {
            "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "message": str(exc),
            "traceback": "".join(traceback.format_exception(exc)),
            "owner": self.owner,
            "launch": launch,
            "time": time.time(),
        }
        path = self.failed_dir / f"{task_id}{_FAILED_SUFFIX}"
        if not self.is_done(task_id):
            if path.is_dir() and not path.is_symlink():  # garbage in its place: reported above
                shutil.rmtree(path, ignore_errors=True)
            _write_atomic(path, json.dumps(record, sort_keys=True, indent=1).encode())
        self.release(task_id)

    # --- heartbeat --------------------------------------------------------------------------
    def start_heartbeat(self) -> None:
        """Refresh held claims every lease_s / 4 from a daemon thread, so they never expire
        while this process is alive (even during a long task)."""
        if self._heartbeat is not None:
            return
        self._stop.clear()
        self._heartbeat = threading.Thread(target=self._beat, name="runlock-heartbeat", daemon=True)
        self._heartbeat.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None

    def _beat(self) -> None:
        interval = max(self.lease_s / 4, 0.05)
        while not self._stop.wait(interval):
            with self._held_lock:
                held = list(self._held)
            for task_id in held:
                try:
                    os.utime(self._run + task_id)
                except FileNotFoundError:
                    pass  # released or reclaimed meanwhile
