"""Map a function over thousands of tasks on a backend, with resumable on-disk task state.

Two shapes of work:

* chunks (default): the pending tasks are cut into chunks, one backend call (a joblib task, a
  SLURM array element) per chunk;
* ``worker_pool=True`` (seed step 4, "serial workers over a task pool"): ``n_jobs`` long-lived
  workers each pull any pending task, starting at different offsets, until none is left. On SLURM
  a worker whose next task would not end before its time limit (``RUNLOCK_WORKER_DEADLINE``,
  the longest task so far as the estimate) stops, releases its claims and requeues itself; the
  next job resumes on the same ``state_dir``. If SLURM's signal comes first (mid-task), submitit's
  checkpoint releases the claims and requeues the same way.

Either way a worker claims a task in the :class:`~runlock.scale.tasks.TaskStore` before running it, so
overlapping workers, requeued jobs and re-launches never run a done task again, and a task whose
worker died is reclaimed once its lease expires.

Delivery contract. A task's *recorded result* is exactly-once: ``results/<id>.pkl`` is created
by a hard link that fails when it exists, so however many workers ran a task, one result is
kept and "done" is final. A task's *side effects* (files it writes, requests it sends) are
at-least-once: a task whose worker was killed mid-task (SIGKILL, OOM, ``scancel``, node loss, a
killed parent) is run again by the next worker that claims it once the lease expires, or by
the next launch, and a lease that expires while a stopped worker still runs lets two run at
once. Make side effects idempotent: write outputs under a name derived from the task, to a
temporary name renamed at the end.

Workers stop when their parent dies: a local worker process (joblib/loky) whose launching
process is killed (even with SIGKILL, which runs no cleanup) notices within
``PARENT_POLL_S`` from a watchdog thread, releases its claims (a re-launch takes them over at
once) and exits, abandoning its task in flight; loky alone would let it run the rest of its
chunk for minutes. SLURM workers have no live parent to watch: they run until their job ends.

Logging: worker processes do not share the parent's handlers. Each worker adds a handler that
formats a record into one line and writes it with a single ``os.write`` on an ``O_APPEND`` file
descriptor: to ``log_file`` when given (e.g. the run's ``run.log``), else to
``<state_dir>/logs/<worker>.log``. One write per whole line keeps lines from different processes
from interleaving mid-line (on local filesystems; on NFS prefer the per-worker files). A
QueueHandler would need a live parent, which SLURM jobs do not have. In-process workers add no
handler: their records already reach the parent's handlers.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from runlock.errors import UsageError
from runlock.logs import use_rich
from runlock.scale.backends.base import Backend, RequeueRequest, get_backend, worker_deadline
from runlock.scale.tasks import TaskCounts, TaskStore, new_owner_id, tasks_digest

__all__ = ["PARENT_POLL_S", "Chunk", "ChunkWorker", "MapSummary", "execute_map"]

log = logging.getLogger("runlock.scale.taskmap")

EventHook = Callable[[str, TaskCounts], None]
_MISSING: Any = object()

#: How often a local worker process checks that its parent is alive (seconds).
PARENT_POLL_S = 0.25


def _watch_parent(parent_pid: int, store: TaskStore, stop: threading.Event) -> None:
    """Exit this worker process when ``parent_pid`` is no longer its parent (the parent died
    and the process was re-parented): the map it worked for is gone. A thread polling
    ``getppid()`` rather than ``prctl(PR_SET_PDEATHSIG)``: that signal fires when the parent
    *thread* that forked us ends, and loky re-spawns workers from a helper thread."""
    while not stop.wait(PARENT_POLL_S):
        if os.getppid() != parent_pid:
            log.warning(
                "worker %s: parent process %d died; releasing claims and exiting",
                store.owner, parent_pid,
            )  # fmt: skip
            try:
                store.release_all()
            finally:
                os._exit(1)


@dataclass(frozen=True)
class Chunk:
    """The tasks one worker call is responsible for (ids and task values, in claim order)."""

    index: int
    ids: tuple[str, ...]
    tasks: tuple[Any, ...]


@dataclass(frozen=True)
class MapSummary:
    """Outcome of :func:`execute_map`, read back from the task store."""

    state_dir: Path
    total: int
    done: int
    failed: int
    todo: int
    running: int
    elapsed_s: float
    launch: str
    failures: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    worker_errors: tuple[str, ...] = ()
    ids: tuple[str, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        """True when every task is done."""
        return self.done == self.total

    def results(self, default: Any = _MISSING) -> list[Any]:
        """Results in task order; a task without result gives ``default`` (or raises)."""
        store = TaskStore(self.state_dir)
        done = store.done_ids()
        out = []
        for task_id in self.ids:
            if task_id in done:
                out.append(store.result(task_id))
            elif default is _MISSING:
                store.result(task_id)  # raises TaskError naming the task
            else:
                out.append(default)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.state_dir),
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "todo": self.todo,
            "running": self.running,
            "elapsed_s": round(self.elapsed_s, 3),
            "launch": self.launch,
            "failures": {k: self.failures[k] for k in sorted(self.failures)},
            "worker_errors": list(self.worker_errors),
        }


class _AppendLineHandler(logging.Handler):
    """Writes each record as one whole line with a single write() on an O_APPEND descriptor."""

    def __init__(self, path: Path, owner: str) -> None:
        super().__init__(logging.INFO)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s [{owner}] %(name)s: %(message)s")
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record).replace("\n", "\n    ") + "\n"
            os.write(self.fd, line.encode("utf-8", "backslashreplace"))
        except Exception:  # noqa: BLE001 - logging must never break the task; stdlib reports it
            self.handleError(record)

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass
        super().close()


class ChunkWorker:
    """The picklable callable a backend runs once per chunk: claim, run, record, repeat.

    It loops until every task of its chunk is done or failed in this launch, reclaiming the
    claims of dead workers once their lease expires, and returns per-worker counts.
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        state_dir: Path,
        *,
        launch: str,
        lease_s: float,
        log_file: Path | None,
        raise_errors: bool,
        parent_pid: int,
    ) -> None:
        self.fn = fn
        self.state_dir = Path(state_dir)
        self.launch = launch
        self.lease_s = lease_s
        self.log_file = log_file
        self.raise_errors = raise_errors
        self.parent_pid = parent_pid
        self._store: TaskStore | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_store"] = None  # threads and locks stay in the process that made them
        return state

    def on_checkpoint(self) -> None:
        """Called before a SLURM requeue: free our claims so the next job takes them at once."""
        if self._store is not None:
            self._store.release_all()

    def __call__(self, chunk: Chunk) -> dict[str, Any]:
        store = TaskStore(self.state_dir, owner=new_owner_id(), lease_s=self.lease_s)
        self._store = store
        handler: _AppendLineHandler | None = None
        root = logging.getLogger()
        old_level = root.level
        if os.getpid() != self.parent_pid:
            target = self.log_file or store.logs_dir / f"{store.owner}.log"
            handler = _AppendLineHandler(Path(target), store.owner)
            root.addHandler(handler)
            if root.level > logging.INFO or root.level == logging.NOTSET:
                root.setLevel(logging.INFO)
        store.start_heartbeat()
        chunk_done = threading.Event()
        if os.getppid() == self.parent_pid:  # a local worker process (joblib): watch the parent
            threading.Thread(
                target=_watch_parent,
                args=(self.parent_pid, store, chunk_done),
                name="runlock-parent-watch",
                daemon=True,
            ).start()
        try:
            return self._work(store, chunk)
        finally:
            chunk_done.set()  # stops the watchdog
            store.stop_heartbeat()
            store.release_all()
            if handler is not None:
                root.removeHandler(handler)
                root.setLevel(old_level)
                handler.close()

    def _failed_here(self, store: TaskStore, task_id: str, cache: set[str]) -> bool:
        """Failed in this launch? (failures of earlier launches are retried)."""
        if task_id in cache:
            return True
        record = store.failure(task_id)
        if record is not None and record.get("launch") == self.launch:
            cache.add(task_id)
            return True
        return False

    def _work(self, store: TaskStore, chunk: Chunk) -> dict[str, Any]:
        task_of = dict(zip(chunk.ids, chunk.tasks, strict=True))
        remaining = list(chunk.ids)
        failed_cache: set[str] = set()
        n_done = n_failed = 0
        deadline = worker_deadline()
        longest_s = 0.0  # the longest task so far: our guess of how long the next one takes
        max_poll_s = min(1.0, self.lease_s / 4)
        poll_s = 0.02
        while remaining:
            done = store.done_ids()
            failed = store.failed_ids()
            remaining = [
                i
                for i in remaining
                if i not in done and not (i in failed and self._failed_here(store, i, failed_cache))
            ]
            progressed = False
            for task_id in remaining:
                if deadline is not None and time.time() + longest_s > deadline:
                    log.info("worker %s: time limit near, stopping to requeue", store.owner)
                    raise RequeueRequest(f"{len(remaining)} task(s) left at the deadline")
                # A stat first: in a pool, tasks ahead are often done by others since our scan,
                # and a claim would create and delete a file for nothing.
                if store.is_done(task_id) or not store.claim(task_id):
                    continue
                if task_id in failed_cache or (
                    store.has_failure(task_id) and self._failed_here(store, task_id, failed_cache)
                ):
                    store.release(task_id)  # failed by another worker of this launch meanwhile
                    continue
                progressed = True
                started = time.monotonic()
                try:
                    result = self.fn(task_of[task_id])
                except Exception as exc:
                    store.fail(task_id, exc, launch=self.launch)
                    failed_cache.add(task_id)
                    n_failed += 1
                    log.error("task %s failed: %s: %s", task_id, type(exc).__name__, exc)
                    if self.raise_errors:
                        raise
                else:
                    n_done += store.complete(task_id, result)
                longest_s = max(longest_s, time.monotonic() - started)
            if not progressed and remaining:
                # Everything left is claimed by other live workers (or leases not yet expired):
                # wait for them to finish, or for their leases to run out.
                time.sleep(poll_s)
                poll_s = min(poll_s * 2, max_poll_s)  # back off while others hold the rest
            else:
                poll_s = 0.02
        return {"owner": store.owner, "chunk": chunk.index, "done": n_done, "failed": n_failed}


def _resolve_workers(n_jobs: int) -> int:
    if n_jobs == 0:
        raise UsageError("n_jobs must not be 0", hint="use -1 for one worker per CPU")
    if n_jobs < 0:
        return max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    return n_jobs


def _make_chunks(
    ids: Sequence[str],
    tasks: Sequence[Any],
    pending: list[int],
    n_workers: int,
    chunk_size: int | None,
    worker_pool: bool,
) -> list[Chunk]:
    if not pending:
        return []
    if worker_pool:
        # Every worker sees the whole pool, starting at its own offset: little contention on
        # claims at first, then faster workers move on into the slower ones' share.
        n = min(n_workers, len(pending))
        chunks = []
        for w in range(n):
            start = w * len(pending) // n
            order = pending[start:] + pending[:start]
            chunks.append(Chunk(w, tuple(ids[k] for k in order), tuple(tasks[k] for k in order)))
        return chunks
    size = chunk_size or max(1, math.ceil(len(pending) / (n_workers * 4)))
    if size < 1:
        raise UsageError(f"chunk_size must be >= 1, got {chunk_size!r}")
    return [
        Chunk(c, tuple(ids[k] for k in part), tuple(tasks[k] for k in part))
        for c, part in enumerate(pending[s : s + size] for s in range(0, len(pending), size))
    ]


class _Monitor:
    """Polls the store from a thread: rich progress bar on a terminal, and/or ``on_event``."""

    def __init__(
        self, store: TaskStore, ids: Sequence[str], show: bool, on_event: EventHook | None
    ) -> None:
        self.store, self.ids, self.show, self.on_event = store, ids, show, on_event
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="runlock-progress", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        progress: Any = None
        if self.show:
            from rich.console import Console
            from rich.progress import Progress

            progress = Progress(console=Console(stderr=True), transient=False)
            progress.start()
            bar = progress.add_task("tasks", total=len(self.ids))
        try:
            while True:
                stopping = self._stop.wait(0.5)
                counts = self.store.counts(self.ids)
                if progress is not None:
                    progress.update(
                        bar,
                        completed=counts.done + counts.failed,
                        description=f"tasks ({counts.failed} failed)" if counts.failed else "tasks",
                    )
                if self.on_event is not None and not stopping:
                    self.on_event("progress", counts)
                if stopping:
                    break
        finally:
            if progress is not None:
                progress.stop()


def execute_map(
    fn: Callable[[Any], Any],
    tasks: Sequence[Any],
    *,
    state_dir: Path,
    backend: str | Backend = "joblib",
    n_jobs: int = -1,
    chunk_size: int | None = None,
    worker_pool: bool = False,
    lease_s: float = 60.0,
    progress: bool | None = None,
    on_event: EventHook | None = None,
    log_file: Path | None = None,
    raise_errors: bool = False,
    **backend_options: Any,
) -> MapSummary:
    """Run ``fn(task)`` for every task not yet done in ``state_dir``; return the summary.

    Re-running with the same ``state_dir`` resumes: done tasks are skipped, failed ones run
    again. A task's exception is recorded (type, message, traceback) and does not stop the
    others, unless ``raise_errors`` (handy with ``backend="inprocess"`` under a debugger).
    ``n_jobs`` is the number of workers (processes, or SLURM jobs at once in pool mode);
    ``progress=None`` shows a bar only when stderr is a terminal. ``on_event(name, counts)`` gets
    "start", "progress" (about every 0.5 s) and "finish". Other keyword arguments go to the
    backend (e.g. ``timeout_min``, ``folder`` for SLURM; ``folder`` defaults to
    ``<state_dir>/jobs``).
    """
    t0 = time.perf_counter()
    state_dir = Path(state_dir)
    store = TaskStore(state_dir, lease_s=lease_s)
    ids = store.initialize(len(tasks), tasks_digest(tasks))
    done = store.done_ids()
    pending = [k for k, task_id in enumerate(ids) if task_id not in done]
    n_workers = _resolve_workers(n_jobs)
    chunks = _make_chunks(ids, tasks, pending, n_workers, chunk_size, worker_pool)
    if backend == "slurm":
        # submitit's pickles and logs next to the task state: both must be on a shared disk.
        backend_options.setdefault("folder", state_dir / "jobs")
    if isinstance(backend, str):
        be = get_backend(backend, n_jobs=n_workers, **backend_options)
    elif backend_options:
        raise UsageError(
            f"backend options {sorted(backend_options)} given with a Backend instance",
            hint="pass options to the backend's constructor, or pass the backend by name",
        )
    else:
        be = backend
    launch = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    worker = ChunkWorker(
        fn,
        state_dir,
        launch=launch,
        lease_s=lease_s,
        log_file=Path(log_file) if log_file is not None else None,
        raise_errors=raise_errors,
        parent_pid=os.getpid(),
    )
    show = use_rich() if progress is None else progress
    if on_event is not None:
        on_event("start", store.counts(ids))
    log.info(
        "task map: %d tasks, %d to run in %d chunk(s) on %s (state %s)",
        len(ids),
        len(pending),
        len(chunks),
        be.name,
        state_dir,
    )
    outcomes: list[Any] = []
    if chunks:
        if show or on_event is not None:
            with _Monitor(store, ids, show, on_event):
                outcomes = be.run(worker, chunks)
        else:
            outcomes = be.run(worker, chunks)
    counts = store.counts(ids)
    failed_ids = store.failed_ids() - store.done_ids()
    failures = {i: rec for i in sorted(failed_ids) if (rec := store.failure(i)) is not None}
    summary = MapSummary(
        state_dir=state_dir,
        total=counts.total,
        done=counts.done,
        failed=counts.failed,
        todo=counts.todo,
        running=counts.running,
        elapsed_s=time.perf_counter() - t0,
        launch=launch,
        failures=failures,
        worker_errors=tuple(
            f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)
        ),
        ids=tuple(ids),
    )
    if on_event is not None:
        on_event("finish", counts)
    log.info(
        "task map finished: %d done, %d failed, %d left (%.1f s)",
        counts.done,
        counts.failed,
        counts.todo + counts.running,
        summary.elapsed_s,
    )
    return summary
