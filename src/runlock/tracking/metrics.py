"""Metrics logged during a run: ``metrics.jsonl`` (the local truth) plus non-blocking forwarding.

``metrics.jsonl`` holds one JSON object per ``log`` call, keys sorted::

    {"metrics": {"loss": 0.25, "acc": 0.9}, "step": 3, "time": 1764088212.125}

``step`` is an int or null, ``time`` is Unix seconds (float). Each line is flushed as soon as it
is written, so a crashed run keeps every value logged before the crash.

Forwarding to a tracker (MLflow...) happens on one daemon thread: ``log`` never waits for the
network. The queue is bounded; what cannot be forwarded (queue full, tracker slow or down) stays
in the file, and ``runlock mlflow sync`` (or the tracker's own finish) re-sends it later.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self

from .._current import get_current_run
from ..errors import RunlockError, UsageError
from ..record.rundir import METRICS_NAME

__all__ = [
    "ForwardingUnavailable",
    "MetricRecord",
    "MetricsLogger",
    "Worker",
    "log_metrics",
    "outside_run_error",
    "read_metrics",
]

#: Most metric values handed to a forwarder in one call (MLflow's log_batch limit is 1000).
BATCH_SIZE = 1000


@dataclass(frozen=True)
class MetricRecord:
    """One ``log`` call: several named values sharing a step and a time."""

    metrics: Mapping[str, float]
    step: int | None
    time: float

    def to_json(self) -> str:
        body = {"metrics": dict(sorted(self.metrics.items())), "step": self.step, "time": self.time}
        return json.dumps(body, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> MetricRecord:
        data = json.loads(line)
        if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
            raise ValueError("not a metrics record")  # noqa: TRY004 - read_metrics skips it
        step = data.get("step")
        return cls(
            metrics={str(k): float(v) for k, v in data["metrics"].items()},
            step=None if step is None else int(step),
            time=float(data.get("time") or 0.0),
        )

    def __len__(self) -> int:
        return len(self.metrics)


def read_metrics(path: Path) -> Iterator[MetricRecord]:
    """Records of a ``metrics.jsonl`` (or of the run directory holding it).

    A torn last line (the run was killed mid-write) or a foreign line is skipped, not fatal:
    the file is an append-only log written by running programs.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_NAME
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                yield MetricRecord.from_json(line)
            except (ValueError, TypeError):
                continue


def _coerce(metrics: Mapping[str, Any]) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise UsageError(
            f"log_metrics expects a mapping of name -> number, got {type(metrics).__name__}."
        )
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            raise UsageError(f"Metric names must be non-empty strings, got {name!r}.")
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            raise UsageError(
                f"Metric {name!r} is not a number: {value!r}.",
                hint="Log numbers only; save other objects as files in the run directory.",
            ) from None
    return out


class Worker:
    """One daemon thread running submitted jobs in order, with a bounded queue.

    Daemon on purpose: a tracker stuck in network retries must never keep the interpreter
    alive after the run ended (the data is on disk anyway).
    """

    def __init__(self, name: str = "runlock-tracking", max_jobs: int = 1000) -> None:
        self._jobs: queue.Queue[Callable[[], None]] = queue.Queue(maxsize=max_jobs)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except BaseException:  # noqa: BLE001, S110 - jobs report their own errors; keep serving
                pass
            finally:
                self._jobs.task_done()

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue ``job``; False (job dropped) when the queue is full. Never blocks."""
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            return False
        return True

    def wait(self, job: Callable[[], None] | None = None, timeout_s: float = 5.0) -> bool:
        """Queue ``job`` (or a no-op) and wait until it has run; False after ``timeout_s``."""
        done = threading.Event()

        def marker() -> None:
            try:
                if job is not None:
                    job()
            finally:
                done.set()

        deadline = time.monotonic() + timeout_s
        while True:  # the queue may be full for a moment: retry until the deadline
            if self.submit(marker):
                break
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return done.wait(max(0.0, deadline - time.monotonic()))


class ForwardingUnavailable(Exception):
    """Raised by a forwarder whose tracker is known to be down (already reported elsewhere):
    forwarding stops without another warning."""


#: A forwarder receives batches of records on the worker thread; it may block or raise.
Forwarder = Callable[[Sequence[MetricRecord]], None]


@dataclass
class _Stats:
    queued: int = 0  # values handed to forwarding
    sent: int = 0  # values the forwarder accepted
    skipped: int = 0  # values never queued (queue full, forwarding stopped)
    error: str | None = None
    pending: list[MetricRecord] = field(default_factory=list)


class MetricsLogger:
    """Append metrics to ``<run_dir>/metrics.jsonl`` and forward them in the background.

    Thread-safe: several threads of one stage may log at once. ``log`` costs one small file
    write; forwarding batches whatever accumulated while the forwarder was busy.
    """

    def __init__(
        self,
        run_dir: Path,
        forwarder: Forwarder | None = None,
        *,
        worker: Worker | None = None,
        max_pending: int = 100_000,
    ) -> None:
        self.path = Path(run_dir) / METRICS_NAME
        self._forwarder = forwarder
        self._worker = worker if worker is not None or forwarder is None else Worker()
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._closed = False
        self._stats = _Stats()
        #: False when ``close`` gave up waiting for the forwarder
        self.drained = True

    @property
    def closed(self) -> bool:
        return self._closed

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> MetricRecord:
        """Record ``metrics`` at ``step`` (file first, then queued for the tracker)."""
        values = _coerce(metrics)
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            try:
                step = int(step)  # numpy ints
            except (TypeError, ValueError):
                raise UsageError(f"step must be an int or None, got {step!r}.") from None
        record = MetricRecord(values, step, time.time())
        with self._lock:
            if self._closed:
                raise RunlockError(
                    f"Cannot log metrics: the metrics log {self.path} is closed (the run ended)."
                )
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(record.to_json() + "\n")
            self._file.flush()  # one line at a time: a crash loses nothing already logged
            if self._forwarder is not None and values:
                self._enqueue(record)
        return record

    def _enqueue(self, record: MetricRecord) -> None:
        """Add to the pending batch; schedule a flush when the batch was empty (lock held)."""
        st = self._stats
        if st.error is not None or sum(len(r) for r in st.pending) >= self._max_pending:
            st.skipped += len(record)
            return
        st.queued += len(record)
        st.pending.append(record)
        if len(st.pending) == 1:
            assert self._worker is not None
            if not self._worker.submit(self._flush):
                st.pending.pop()
                st.queued -= len(record)
                st.skipped += len(record)

    def _flush(self) -> None:
        """On the worker: hand everything pending to the forwarder, in batches."""
        with self._lock:
            batch, self._stats.pending = self._stats.pending, []
        if not batch or self._forwarder is None:
            return
        chunk: list[MetricRecord] = []
        size = 0
        chunks: list[list[MetricRecord]] = []
        for record in batch:
            if chunk and size + len(record) > BATCH_SIZE:
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(record)
            size += len(record)
        if chunk:
            chunks.append(chunk)
        for part in chunks:
            with self._lock:
                failed = self._stats.error is not None
            if failed:  # after a failure stop calling a tracker that is likely down
                continue
            n = sum(len(r) for r in part)
            try:
                self._forwarder(part)
            except ForwardingUnavailable:
                with self._lock:
                    self._stats.error = ""  # stop forwarding; the reason is reported elsewhere
            except Exception as exc:  # noqa: BLE001 - a tracker failure never fails the run
                with self._lock:
                    self._stats.error = f"{type(exc).__name__}: {exc}"
            else:
                with self._lock:
                    self._stats.sent += n

    def close(self, timeout_s: float = 5.0) -> list[str]:
        """Flush and stop; returns warnings (values not forwarded, tracker errors).

        Waits at most ``timeout_s`` for the forwarder: a slow tracker delays the end of the
        run by that much at worst, and what it did not get is reported, not lost (it is in the
        file).
        """
        with self._lock:
            if self._closed:
                return []
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None
        warnings: list[str] = []
        if self._forwarder is None or self._worker is None:
            return warnings
        finished = self._worker.wait(self._flush, timeout_s)
        self.drained = finished
        with self._lock:
            st = self._stats
            unsent = st.queued - st.sent + st.skipped
            error = st.error
        if error:
            warnings.append(f"Forwarding metrics to the tracker failed: {error}")
        if unsent > 0:
            why = "" if finished else f" within {timeout_s:g} s"
            warnings.append(
                f"{unsent} metric value(s) were not sent to the tracker{why}; they are kept in "
                f"{self.path} (re-send them with `runlock mlflow sync`)."
            )
        return warnings

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def log_metrics(metrics: Mapping[str, Any], step: int | None = None) -> None:
    """Log numbers for the current run: ``metrics.jsonl`` now, the tracker in the background.

    Outside a run (``stage.__wrapped__(cfg)``, a unit test of the plain function) nothing is
    recorded: the values go to the ``runlock.metrics`` logger at debug level, so the undecorated
    function really is a plain function.
    """
    run = get_current_run(silent=True)
    if run is None:
        import logging  # already loaded by runlock.logs; only this path needs it here

        logging.getLogger("runlock.metrics").debug("outside a run, not recorded: step=%s %s", step, metrics)
        return
    run.log_metrics(metrics, step)


def outside_run_error() -> RunlockError:
    """The error of ``log_metrics`` where no run (or no run of this process) can take metrics."""
    return RunlockError(
        "runlock.log_metrics() was called outside a running stage.",
        hint="Call it from inside a function decorated with @runlock.stage "
        "(or use MetricsLogger(run_dir) directly).",
    )
