"""The MLflow owner: mirror run directories into MLflow (the only module that imports mlflow).

A run directory is the truth; its MLflow run is a browsable copy that can be rebuilt at any
time. Logging is idempotent: the MLflow run is found again through its ``runlock.id`` tag, and
metric points keep their original timestamps so that MLflow's store drops the repeats.

What goes where:

- params: the lock's stable fields, flattened with dots (``config.lr``, ``git.head``,
  ``packages.numpy``). Fields that change while a run goes on (status, timing, outputs, result,
  error...) are tags or metrics instead, because MLflow params cannot change once logged.
  Values longer than MLflow's limit are truncated in the param and kept whole in the artifact
  ``runlock/long_params.json`` (with keys too long or with characters MLflow refuses).
- metrics: the result's numbers, ``runlock.duration_s``, and ``metrics.jsonl`` as histories.
- artifacts: ``run.lock``, ``config.yaml``, ``run.log`` (secrets redacted).
- tags: ``runlock.*`` (id, stage, status, run_dir, upstream lineage, error), MLflow's own
  source tags, and the MLflow run status / start / end times from the lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LockFileError, MissingDependencyError, RunlockError
from ..record.lock import Lock, Upstream
from ..record.lockfile import load_lock
from ..record.rundir import CONFIG_NAME, LOCK_NAME, LOG_NAME, RESULT_JSON, STATE_DIR
from ..redact import REDACTED, is_secret_name, redact_remote, redact_text, redact_url
from ..settings import project_settings, results_root
from .metrics import BATCH_SIZE, MetricRecord, read_metrics

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "LogFn",
    "MlflowTracker",
    "SyncReport",
    "default_tracking_uri",
    "find_mlflow_run",
    "flatten",
    "log_run",
    "resolve_tracking_uri",
    "sync_runs",
]

#: ``log_fn(run_dir, lock, active_run)``: the user's extra logging, called inside the MLflow run.
LogFn = Callable[[Path, dict[str, Any], Any], object]

ID_TAG = "runlock.id"
LONG_PARAMS_ARTIFACT = "runlock/long_params.json"
#: Lock sections that change during or after a run: never params (MLflow params are immutable).
VOLATILE = frozenset(
    {"status", "pid", "heartbeat", "timing", "outputs", "result", "error", "warnings", "run_dir"}
)
STATUS = {
    "running": "RUNNING",
    "completed": "FINISHED",
    "failed": "FAILED",
    "interrupted": "KILLED",
}
# Limits of MLflow 3 (mlflow.utils.validation); read from mlflow when it is importable.
_LIMITS = {
    "MAX_ENTITY_KEY_LENGTH": 250,
    "MAX_PARAM_VAL_LENGTH": 6000,
    "MAX_TAG_VAL_LENGTH": 8000,
    "MAX_PARAMS_TAGS_PER_BATCH": 100,
    "MAX_METRICS_PER_BATCH": 1000,
}
_BAD_KEY_CHARS = re.compile(r"[^\w.\- ]")  # MLflow's allowed set, minus ':' and '/' (portable)
_TRUNCATED = " …[truncated; full value in artifact runlock/long_params.json]"


# --- mlflow import and configuration ---------------------------------------------------------


def _mlflow() -> Any:
    """Import mlflow lazily, with telemetry off unless the user chose otherwise."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        import mlflow
    except ImportError as exc:
        raise MissingDependencyError("mlflow", "mlflow") from exc
    try:
        from mlflow.utils import validation

        for name, default in _LIMITS.items():
            _LIMITS[name] = int(getattr(validation, name, default))
    except Exception:  # noqa: BLE001, S110 - keep the documented defaults
        pass
    return mlflow


def default_tracking_uri(root: str | os.PathLike[str] | None = None) -> str:
    """The embedded store: ``sqlite:///<results root>/.runlock/mlflow.db`` (nothing to start)."""
    db = results_root(root) / STATE_DIR / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def resolve_tracking_uri(
    tracking_uri: str | None = None, *, root: str | os.PathLike[str] | None = None
) -> str:
    """Explicit URI, else ``$MLFLOW_TRACKING_URI``, else ``[tool.runlock] mlflow_tracking_uri``,
    else the embedded SQLite store under the results root."""
    uri = (
        tracking_uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or project_settings().get("mlflow_tracking_uri")
    )
    return str(uri) if uri else default_tracking_uri(root)


def _artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store live next to the database, not under the current directory
    (MLflow's default is ``./mlruns``: it would depend on where the command ran)."""
    if not uri.startswith("sqlite:///"):
        return None  # a server decides (proxied artifacts)
    db = Path(uri[len("sqlite:///") :])
    return (db.parent / "mlartifacts").absolute().as_uri()


_experiments: dict[tuple[str, str], str] = {}
_experiment_locks: dict[tuple[str, str], threading.Lock] = {}
_experiments_lock = threading.Lock()


def _experiment_id(client: MlflowClient, uri: str, name: str) -> str:
    """Get or create the experiment once per process and use its id from then on.

    ``set_experiment(name)`` from parallel workers can race and land runs in the Default
    experiment; creating it once here and passing ids avoids that. One lock per (store,
    name): a store that hangs must not block the others.
    """
    key = (uri, name)
    with _experiments_lock:
        if key in _experiments:
            return _experiments[key]
        lock = _experiment_locks.setdefault(key, threading.Lock())
    with lock:
        if key in _experiments:
            return _experiments[key]
        exp = client.get_experiment_by_name(name)
        if exp is None:
            try:
                exp_id = client.create_experiment(name, artifact_location=_artifact_location(uri))
            except Exception:  # another process created it meanwhile
                exp = client.get_experiment_by_name(name)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        else:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            exp_id = exp.experiment_id
        with _experiments_lock:
            _experiments[key] = exp_id
        return exp_id


@contextlib.contextmanager
def _using_tracking_uri(mlflow: Any, uri: str) -> Iterator[None]:
    """Point mlflow's fluent API (``mlflow.log_*`` in a log_fn) at ``uri`` for a while."""
    try:
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri
    except ImportError:  # pragma: no cover - private helper moved
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(previous)
        return
    with _use_tracking_uri(uri):
        yield


# --- flattening and limits -------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``. Lists of scalars stay one JSON value; lists of
    mappings are indexed (``gpus.0.name``). Values are text (JSON for non-strings)."""
    out: dict[str, str] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))  # an empty section adds nothing
        elif isinstance(v, (list, tuple)) and any(isinstance(i, Mapping) for i in v):
            for i, item in enumerate(v):
                if isinstance(item, Mapping):
                    out.update(flatten(item, f"{key}.{i}."))
                else:
                    out[f"{key}.{i}"] = _text(item)
        else:
            out[key] = _text(v)
    return out


def _mlflow_key(key: str) -> str:
    """A key MLflow accepts: its characters, its length, no path tricks."""
    safe = _BAD_KEY_CHARS.sub("_", key).strip() or "_"
    if safe in (".", ".."):
        safe = "_"
    limit = _LIMITS["MAX_ENTITY_KEY_LENGTH"]
    if len(safe) > limit:
        digest = hashlib.sha1(key.encode()).hexdigest()[:8]
        safe = f"{safe[: limit - 9]}_{digest}"
    return safe


def _fit(value: str, limit: int, marker: str = _TRUNCATED) -> str:
    return value if len(value) <= limit else value[: limit - len(marker)] + marker


def _redact_flat(flat: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in flat.items():
        leaf = k.rsplit(".", 1)[-1]
        out[k] = REDACTED if is_secret_name(leaf) and v not in ("null", "") else redact_remote(v)
    return out


def _secret_values(*trees: Any) -> list[str]:
    """Literal secrets (values of credential-like keys) to scrub from text artifacts."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                if isinstance(v, str) and is_secret_name(str(k)) and v != REDACTED:
                    found.append(v)
                else:
                    walk(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v)

    for tree in trees:
        walk(tree)
    found += [v for k, v in os.environ.items() if is_secret_name(k)]
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


@dataclass
class _Params:
    params: dict[str, str] = field(default_factory=dict)  # MLflow key -> fitted value
    long: dict[str, str] = field(default_factory=dict)  # original key -> full value


def lock_params(lock: Mapping[str, Any]) -> _Params:
    """The lock's stable fields as MLflow params (redacted, keys and values within limits)."""
    stable: dict[str, Any] = {k: v for k, v in lock.items() if k not in VOLATILE}
    upstream = stable.get("upstream")
    if isinstance(upstream, Mapping):  # embedded upstream locks are artifacts' business
        stable["upstream"] = {
            k: {kk: vv for kk, vv in (v or {}).items() if kk in ("id", "stage", "path")}
            for k, v in upstream.items()
        }
    out = _Params()
    limit = _LIMITS["MAX_PARAM_VAL_LENGTH"]
    for key, value in sorted(_redact_flat(flatten(stable)).items()):
        mkey = _mlflow_key(key)
        if mkey != key or len(value) > limit:
            out.long[key] = value
        out.params[mkey] = _fit(value, limit)
    return out


def _numbers(value: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a result (bools are not metrics)."""
    if isinstance(value, bool) or value is None:
        return {}
    if isinstance(value, (int, float)):
        return {prefix or "result": float(value)}
    out: dict[str, float] = {}
    if isinstance(value, Mapping):
        for k, v in value.items():
            out.update(_numbers(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _result_value(run_dir: Path, lock: Lock) -> Any:
    if lock.result is not None:
        return lock.result
    path = run_dir / RESULT_JSON
    if path.is_file() and path.stat().st_size < 10_000_000:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
    return None


def _ms(iso: Any) -> int | None:
    if not iso:
        return None
    try:
        return int(datetime.fromisoformat(str(iso)).timestamp() * 1000)
    except ValueError:
        return None


def _metric_entities(records: Iterable[MetricRecord]) -> list[Any]:
    from mlflow.entities import Metric

    out: list[Any] = []
    for r in records:
        ts = int(r.time * 1000)  # the same timestamp on every re-send: the store drops repeats
        step = r.step or 0
        out.extend(Metric(_mlflow_key(k), v, ts, step) for k, v in sorted(r.metrics.items()))
    return out


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --- finding and logging runs ----------------------------------------------------------------


def _find_run(client: MlflowClient, experiment_id: str, runlock_id: str) -> str | None:
    safe = runlock_id.replace("'", "")
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{ID_TAG}` = '{safe}'",
        max_results=10,
        order_by=["attributes.start_time ASC"],
    )
    return runs[0].info.run_id if runs else None


def _experiment_name(lock: Lock, experiment: str | None) -> str:
    name = experiment or project_settings().get("mlflow_experiment") or lock.stage
    if not name:
        raise LockFileError("The run.lock has no 'stage'; pass an experiment name.")
    return str(name)


def find_mlflow_run(
    run_dir: str | os.PathLike[str],
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    root: str | os.PathLike[str] | None = None,
) -> str | None:
    """The MLflow run id a run directory was logged to, or None when it was not logged yet."""
    mlflow = _mlflow()
    lock = Lock.from_dict(load_lock(Path(run_dir)))
    uri = resolve_tracking_uri(tracking_uri, root=root)
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(_experiment_name(lock, experiment))
    if exp is None:
        return None
    return _find_run(client, exp.experiment_id, str(lock.id))


class _RunLogger:
    """One run directory -> one MLflow run (created on first use, updated afterwards)."""

    def __init__(self, client: MlflowClient, uri: str, experiment: str | None) -> None:
        self.client = client
        self.uri = uri
        self.experiment = experiment

    def ensure_run(self, run_dir: Path, lock: Lock) -> str:
        exp_id = _experiment_id(self.client, self.uri, _experiment_name(lock, self.experiment))
        rid = lock.id
        if not rid:
            raise LockFileError(f"{run_dir / LOCK_NAME} has no 'id'.")
        found = _find_run(self.client, exp_id, rid)
        if found is not None:
            return found
        stage = lock.stage or "run"
        run = self.client.create_run(
            exp_id,
            start_time=_ms(lock.start),
            tags={ID_TAG: rid},
            run_name=f"{stage}-{rid}",
        )
        return str(run.info.run_id)

    def log(
        self, run_dir: Path, lock: Mapping[str, Any], *, full: bool = True
    ) -> tuple[str, list[str]]:
        """Log ``lock`` (and, when ``full``, metrics, histories and artifacts); returns the
        MLflow run id and warnings. The run status is :meth:`set_status`'s job."""
        from mlflow.entities import Metric, Param, RunTag

        view = Lock.from_dict(lock)
        run_id = self.ensure_run(run_dir, view)
        warnings: list[str] = []
        existing = self.client.get_run(run_id).data.params
        p = lock_params(lock)
        new: list[Any] = []
        tags: dict[str, str] = self._tags(run_dir, view)
        for k, v in p.params.items():
            if k not in existing:
                new.append(Param(k, v))
            elif existing[k] != v:  # params are immutable in MLflow: keep the new value as a tag
                tag = f"runlock.param_changed.{k}"[: _LIMITS["MAX_ENTITY_KEY_LENGTH"]]
                tags[tag] = v
                warnings.append(f"MLflow param {k!r} changed since it was logged; see tag {tag!r}.")
        if p.long:
            tags["runlock.long_params"] = _fit(
                ", ".join(sorted(p.long)), _LIMITS["MAX_TAG_VAL_LENGTH"], " …"
            )
        batch = _LIMITS["MAX_PARAMS_TAGS_PER_BATCH"]
        for part in _chunks(new, batch):
            self.client.log_batch(run_id, params=list(part))
        tag_list = [
            RunTag(
                _mlflow_key(k) if not k.startswith("mlflow.") else k,
                _fit(v, _LIMITS["MAX_TAG_VAL_LENGTH"], " …"),
            )
            for k, v in sorted(tags.items())
        ]
        for part in _chunks(tag_list, batch):
            self.client.log_batch(run_id, tags=list(part))
        if not full:
            return run_id, warnings

        when = _ms(view.end) or _ms(view.start) or 0
        history = list(read_metrics(run_dir))
        # The result as the last point of any history of the same name: MLflow shows the
        # value at the highest step as the run's metric.
        last = max((r.step or 0 for r in history), default=0)
        metrics = [
            Metric(_mlflow_key(k), v, when, last)
            for k, v in sorted(_numbers(_result_value(run_dir, view)).items())
        ]
        if view.duration_s is not None:
            metrics.append(Metric("runlock.duration_s", view.duration_s, when, 0))
        metrics += _metric_entities(history)
        for part in _chunks(metrics, min(BATCH_SIZE, _LIMITS["MAX_METRICS_PER_BATCH"])):
            self.client.log_batch(run_id, metrics=list(part))
        self._artifacts(run_id, run_dir, view, p.long)
        return run_id, warnings

    def _tags(self, run_dir: Path, lock: Lock) -> dict[str, str]:
        tags = {
            ID_TAG: str(lock.id),
            "runlock.stage": str(lock.stage),
            "runlock.status": lock.status,
            "runlock.run_dir": str(run_dir.absolute()),
            "runlock.schema": str(lock.schema),
        }
        if lock.git:
            if lock.git.head:
                tags["mlflow.source.git.commit"] = lock.git.head
            if lock.git.branch:
                tags["mlflow.source.git.branch"] = lock.git.branch
        if lock.function and lock.function.source_file:
            tags["mlflow.source.name"] = lock.function.source_file
        user = lock.environment.get("user")
        if user:
            tags["mlflow.user"] = str(user)
        if lock.upstream:
            ids = []
            for up in sorted(lock.upstream, key=lambda u: u.key):
                key = up.key
                ids.append(str(up.id))
                tags[f"runlock.upstream.{key}"] = str(up.id)
                if up.stage:
                    tags[f"runlock.upstream.{key}.stage"] = up.stage
                if up.path:
                    tags[f"runlock.upstream.{key}.path"] = up.path
                linked = self._upstream_run(up)
                if linked:
                    tags[f"runlock.upstream.{key}.mlflow_run_id"] = linked
            tags["runlock.upstream"] = ",".join(ids)
        if lock.error:
            tags["runlock.error.type"] = str(lock.error.type)
            tags["runlock.error.message"] = redact_text(str(lock.error.message))
        if lock.warnings:
            tags["runlock.warnings"] = redact_text("\n".join(lock.warnings))
        return {k: redact_remote(v) for k, v in tags.items()}

    def _upstream_run(self, up: Upstream) -> str | None:
        """The MLflow run of an upstream run, when it was logged to this store (a link)."""
        if not up.id or not up.stage:
            return None
        try:
            exp = self.client.get_experiment_by_name(up.stage)
            return None if exp is None else _find_run(self.client, exp.experiment_id, up.id)
        except Exception:  # noqa: BLE001 - a missing link is not an error
            return None

    def _artifacts(self, run_id: str, run_dir: Path, lock: Lock, long: Mapping[str, str]) -> None:
        secrets = _secret_values(lock.config, lock.data)
        with tempfile.TemporaryDirectory(prefix="runlock-mlflow-") as tmp:
            for name in (LOCK_NAME, CONFIG_NAME, LOG_NAME):
                src = run_dir / name
                if not src.is_file():
                    continue
                text = src.read_text(encoding="utf-8", errors="replace")
                dst = Path(tmp) / name
                dst.write_text(redact_text(text, secrets), encoding="utf-8")
                self.client.log_artifact(run_id, str(dst))
            if long:
                dst = Path(tmp) / "runlock" / Path(LONG_PARAMS_ARTIFACT).name
                dst.parent.mkdir()
                dst.write_text(json.dumps(dict(long), indent=1, sort_keys=True), encoding="utf-8")
                self.client.log_artifact(run_id, str(dst), artifact_path="runlock")

    def set_status(self, run_id: str, lock: Mapping[str, Any]) -> None:
        view = Lock.from_dict(lock)
        status = STATUS.get(view.status, "RUNNING")
        if status == "RUNNING":
            self.client.update_run(run_id, status="RUNNING")
        else:
            end = _ms(view.end)
            self.client.set_terminated(run_id, status=status, end_time=end)


def _client(tracking_uri: str | None, root: str | os.PathLike[str] | None) -> tuple[Any, str]:
    mlflow = _mlflow()
    uri = resolve_tracking_uri(tracking_uri, root=root)
    return mlflow.MlflowClient(uri), uri


def _log_one(rl: _RunLogger, run_dir: Path, log_fn: LogFn | None) -> tuple[str, list[str]]:
    run_dir = Path(run_dir).absolute()
    lock = load_lock(run_dir)
    run_id, warnings = rl.log(run_dir, lock)
    try:
        if log_fn is not None:
            mlflow = _mlflow()
            with _using_tracking_uri(mlflow, rl.uri), mlflow.start_run(run_id=run_id) as active:
                log_fn(run_dir, lock, active)
    finally:
        rl.set_status(run_id, lock)  # start_run/end_run rewrote status and end time
    return run_id, warnings


def log_run(
    run_dir: str | os.PathLike[str],
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    log_fn: LogFn | None = None,
    root: str | os.PathLike[str] | None = None,
) -> str:
    """Log a run directory to MLflow and return the MLflow run id.

    Creates the MLflow run on the first call and updates the same run afterwards (found by
    its ``runlock.id`` tag). ``log_fn(run_dir, lock, active_run)`` runs inside the active
    MLflow run after the standard logging, so ``mlflow.log_*`` calls in it land there.
    The experiment defaults to the lock's stage; the store to :func:`resolve_tracking_uri`.
    """
    client, uri = _client(tracking_uri, root)
    run_id, _ = _log_one(_RunLogger(client, uri, experiment), Path(run_dir), log_fn)
    return run_id


@dataclass
class SyncReport:
    """Outcome of :func:`sync_runs`: MLflow run ids of the logged runs, errors of the others."""

    tracking_uri: str
    logged: dict[Path, str] = field(default_factory=dict)
    failed: dict[Path, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def sync_runs(
    run_dirs: Iterable[str | os.PathLike[str]],
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    log_fn: LogFn | None = None,
    root: str | os.PathLike[str] | None = None,
    on_done: Callable[[Path, str | None, str | None], None] | None = None,
) -> SyncReport:
    """(Re-)log many runs; one run's failure is recorded and the others go on.

    ``on_done(run_dir, mlflow_run_id, error)`` is called after each run (progress display).
    """
    client, uri = _client(tracking_uri, root)
    rl = _RunLogger(client, uri, experiment)
    report = SyncReport(uri)
    for d in run_dirs:
        path = Path(d).absolute()
        try:
            run_id, _ = _log_one(rl, path, log_fn)
        except Exception as exc:  # noqa: BLE001 - report and continue with the next run
            msg = redact_text(f"{type(exc).__name__}: {exc}")
            report.failed[path] = msg
            if on_done is not None:
                on_done(path, None, msg)
        else:
            report.logged[path] = run_id
            if on_done is not None:
                on_done(path, run_id, None)
    return report


def _probe(uri: str, timeout_s: float = 2.0) -> None:
    """Fail fast when a tracking server does not answer: MLflow's own client retries for
    minutes, which would keep the run's end waiting for nothing."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(uri)
    netloc = parts.netloc.rpartition("@")[2]  # credentials are MLflow's business, not the probe's
    health = urllib.parse.urlunsplit(
        (parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", "")
    )
    try:
        with urllib.request.urlopen(health, timeout=timeout_s):
            pass
    except urllib.error.HTTPError:
        return  # it answered (auth proxy, no /health route): reachable
    except (OSError, ValueError) as exc:
        raise RunlockError(
            f"MLflow tracking server {redact_url(uri)} is unreachable: {exc}.",
            hint="Start it (scripts/mlflow-up.sh) or unset MLFLOW_TRACKING_URI; "
            "log the run later with `runlock mlflow sync`.",
        ) from None


class MlflowTracker:
    """The MLflow tracker of the run lifecycle (see :class:`runlock.tracking.base.Tracker`).

    ``start`` creates (or finds) the MLflow run and logs params and tags; ``log_metrics``
    forwards live values; ``finish`` logs everything again from the run directory, so values
    that could not be forwarded live are filled in, and sets the final status.
    """

    name = "mlflow"

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        root: str | os.PathLike[str] | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.root = root
        self._rl: _RunLogger | None = None
        self.run_id: str | None = None

    def _logger(self) -> _RunLogger:
        if self._rl is None:
            client, uri = _client(self.tracking_uri, self.root)
            self._rl = _RunLogger(client, uri, self.experiment)
        return self._rl

    def start(self, run_dir: Path, lock: Mapping[str, Any]) -> None:
        _probe(resolve_tracking_uri(self.tracking_uri, root=self.root))  # before importing mlflow
        rl = self._logger()
        self.run_id, _ = rl.log(Path(run_dir), lock, full=False)
        rl.set_status(self.run_id, lock)

    def log_metrics(self, records: Sequence[MetricRecord]) -> None:
        if self.run_id is None:
            raise RunlockError("MlflowTracker.log_metrics called before start().")
        metrics = _metric_entities(records)
        rl = self._logger()
        for part in _chunks(metrics, min(BATCH_SIZE, _LIMITS["MAX_METRICS_PER_BATCH"])):
            rl.client.log_batch(self.run_id, metrics=list(part))

    def finish(self, run_dir: Path, lock: Mapping[str, Any]) -> list[str]:
        rl = self._logger()
        self.run_id, warnings = rl.log(Path(run_dir), lock)
        rl.set_status(self.run_id, lock)
        return warnings
