"""The run lifecycle (the one orchestrator): directory, config, lock, logging, call, result.

    resolve config -> seed -> create run dir -> config.yaml -> collectors start -> run.lock
    (running) -> call the stage function (logging to run.log) -> result file -> collectors
    finish -> run.lock (completed | failed | interrupted)

Capture happens at call time, from the running interpreter, with a collision-free directory:
the flaws of pycrumbs (decoration-time git state, same-second overwrite), footsteps and
savethat that the issue lists.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._current import CurrentRun, get_current_run, pop_run, push_run
from ..capture import seeding
from ..capture.collectors import Collector, RunContext
from ..capture.environment import capture_environment, hostname
from ..capture.packages import inventory
from ..config import ConfigOps, config_ops
from ..config import plain as plainconfig
from ..config.plain import PlainConfig
from ..config.schema import Schema
from ..errors import ConfigError, UsageError
from ..logs import logger, run_logging
from ..record import lockfile
from ..record.rundir import RunDir
from ..record.runid import new_run_id
from ..settings import results_root

if TYPE_CHECKING:
    from omegaconf import DictConfig

HEARTBEAT_S = 30.0
#: A result is embedded in the lock when its JSON is at most this long.
RESULT_INLINE_BYTES = 4096


@dataclass
class StageOptions:
    """How a stage places, seeds and records its runs (see :func:`runlock.stage`)."""

    name: str
    #: run directory template (OmegaConf interpolations: ${stage}, ${now:FMT}, ${run.id}, config keys)
    save_dir: str | None = None
    #: config field that holds the run directory: its value is the template, and it receives the
    #: final directory (like the user's ``cfg.save_dir``). Default: ``save_dir`` if present.
    dir_field: str | None = None
    #: config field whose value names a sub-directory of the run directory template
    subdir_field: str | None = None
    include_timestamp: bool = False
    include_uuid: bool = False
    #: config field / parameter that receives the final run directory
    inject_dir: str | None = None
    #: config field holding the seed (None disables seeding)
    seed_field: str | None = "seed"
    #: config fields or literal paths whose data is hashed into the lock
    track_data: tuple[str, ...] = ()
    #: snapshot the source into a shadow git branch
    snapshot: bool = True
    snapshot_branch: str | None = None
    snapshot_include: tuple[str, ...] = ()
    snapshot_exclude: tuple[str, ...] = ()
    snapshot_max_file_mb: float = 10.0
    files_of_interest: tuple[str, ...] = ()
    #: record hashes of the run's output files at the end (for lineage and reproduce)
    hash_outputs: bool = True
    #: results root override (default: from pyproject.toml / $RUNLOCK_RESULTS / ./results)
    root: str | None = None
    log_level: int = logging.INFO
    console: bool = True
    #: the user's collectors (lock sections), after the built-in ones; each serves every run
    collectors: tuple[Collector, ...] = ()


@dataclass
class Outcome:
    """What a run produced; ``Stage.debug`` and ``Stage.invoke`` return it."""

    run_id: str
    run_dir: Path
    status: str
    value: Any = None
    error: BaseException | None = None
    traceback: str | None = None
    locals: dict[str, Any] = field(default_factory=dict)
    lock: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def __repr__(self) -> str:
        err = f", error={type(self.error).__name__}" if self.error else ""
        return f"Outcome(run_id={self.run_id!r}, status={self.status!r}, run_dir='{self.run_dir}'{err})"


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM received during a run (recorded as ``interrupted``)."""


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds")


def _function_info(fn: Callable[..., Any]) -> dict[str, Any]:
    inner = fn
    while hasattr(inner, "__wrapped__"):
        inner = inner.__wrapped__
    code = getattr(inner, "__code__", None)
    source = code.co_filename if code is not None else None
    module = getattr(inner, "__module__", None)
    if module and module.startswith("__runlock_main_"):  # a script re-imported in a worker
        module = "__main__"
    return {
        "name": getattr(inner, "__name__", repr(inner)),
        "qualname": getattr(inner, "__qualname__", None),
        "module": module,
        "source_file": str(Path(source).absolute()) if source and not source.startswith("<") else source,
    }


def source_file_of(fn: Callable[..., Any]) -> Path | None:
    src = _function_info(fn)["source_file"]
    return Path(src) if src and not src.startswith("<") else None


# ---------------------------------------------------------------------------------------------
# directory placement (covers pycrumbs' options)


def _dir_template(options: StageOptions, cfg: DictConfig | PlainConfig, *, experiment: str | None) -> tuple[str, str | None]:
    """The run directory template and the config field it came from (if any)."""
    field_name = options.dir_field
    if field_name is None and "save_dir" in cfg:
        field_name = "save_dir"
    if field_name is not None:
        if field_name not in cfg:
            raise ConfigError(f"dir_field '{field_name}' is not a config key.")
        value = cfg[field_name]
        if value not in (None, ""):
            return str(value), field_name
    if options.save_dir is not None:
        return options.save_dir, field_name
    root = results_root(options.root)
    parts = [str(root), "${stage}"]
    if experiment:
        parts.append(experiment)
    parts.append("${now:%Y%m%d-%H%M%S}")
    return "/".join(parts), field_name


def place_run_dir(
    options: StageOptions,
    cfg: DictConfig | PlainConfig,
    *,
    now: datetime,
    run_id: str,
    experiment: str | None,
) -> tuple[Path, str | None]:
    template, field_name = _dir_template(options, cfg, experiment=experiment)
    resolved = plainconfig.quick_template(template, now=now, run_id=run_id, stage=options.name)
    if "${" in resolved:  # config keys in the template: OmegaConf resolves them
        from ..config import omega as cfgmod

        resolved = cfgmod.resolve_template(template, cfg, now=now, run_id=run_id, stage=options.name)
    path = Path(resolved).expanduser()
    if options.subdir_field:
        if options.subdir_field not in cfg:
            raise ConfigError(f"subdir_field '{options.subdir_field}' is not a config key.")
        path = path / str(cfg[options.subdir_field])
    suffix = ""
    if options.include_timestamp:
        suffix += f"_{now:%Y%m%d-%H%M%S}"
    if options.include_uuid:
        import uuid  # only for this option

        suffix += f"_{uuid.uuid4()}"
    if suffix:
        path = path.with_name(path.name + suffix)
    return path.absolute(), field_name


# ---------------------------------------------------------------------------------------------
# the lock


class LockWriter:
    """Serialises lock rewrites (start, heartbeat, end) from several threads."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self, *, durable: bool = False, **updates: Any) -> None:
        with self._mutex:
            self.data.update(updates)
            self.data["heartbeat"] = _iso(datetime.now(UTC))
            lockfile.dump_lock(self.data, self.path, durable=durable)

    def start_heartbeat(self, interval_s: float = HEARTBEAT_S) -> None:
        def beat() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.write()
                except OSError:  # a full disk must not kill the run; the end write will tell
                    pass

        self._thread = threading.Thread(target=beat, name="runlock-heartbeat", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()


def _result_section(rd: RunDir, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        text = json.dumps(value, sort_keys=True, allow_nan=True, default=_json_default)
    except (TypeError, ValueError):
        text = None
    if text is not None:
        rd.write(rd.result_json.name, text + "\n")
        section: dict[str, Any] = {"file": rd.result_json.name}
        if len(text) <= RESULT_INLINE_BYTES:
            section["value"] = json.loads(text)
        return section
    try:
        import pickle  # only for results that JSON cannot hold

        rd.write(rd.result_pkl.name, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as exc:  # noqa: BLE001 - an unpicklable result must not lose the run
        return {"file": None, "error": f"result not saved: {type(exc).__name__}: {exc}", "repr": repr(value)[:500]}
    return {"file": rd.result_pkl.name, "type": f"{type(value).__module__}.{type(value).__qualname__}"}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        return item()
    raise TypeError(type(obj).__name__)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[list[int]]:
    """Turn SIGTERM into an exception so the lock records ``interrupted``; re-sent afterwards."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):  # someone else (submitit, a framework) owns it
        yield received
        return

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        raise RunInterrupted(f"received signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------------------------
# execute


def default_collectors(options: StageOptions) -> list[Collector]:
    from ..capture.builtin import default_collectors as _defaults

    return [*_defaults(options), *options.collectors]


def current_run() -> CurrentRun:
    """The innermost run in progress in this process (``.dir``, ``.id``; ``.lock`` for a stage's run).

    Use it inside a stage to write outputs next to the run's lock::

        np.save(runlock.current_run().dir / "weights.npy", w)
    """
    return get_current_run()


class ActiveRun:
    """One run between :meth:`open` and :meth:`close` (a stage call, or a ``runlock.start`` script)."""

    outcome: Outcome  # set by close()

    def __init__(self, rd: RunDir, lock: dict[str, Any], ctx: RunContext, collectors: list[Collector],
                 writer: LockWriter, resolved: DictConfig | PlainConfig, seed: int | None, started: float,
                 config_ops: ConfigOps) -> None:
        self.rd = rd
        self.lock = lock
        self.ctx = ctx
        self.collectors = collectors
        self.writer = writer
        self.resolved = resolved
        #: how ``resolved`` is handled (the plain path or OmegaConf), chosen in :meth:`open`
        self.config_ops = config_ops
        self.seed = seed
        self._started = started
        self._stack = ExitStack()
        self._metrics_token: Any = None
        self.seeded: list[str] = []
        self.closed = False

    @property
    def id(self) -> str:
        return self.ctx.run_id

    @property
    def dir(self) -> Path:
        return self.rd.path

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """``runlock.log_metrics`` in this run: metrics.jsonl, then the tracker (background)."""
        self._metrics_token.log_metrics(metrics, step)

    @classmethod
    def open(
        cls,
        info: dict[str, Any],
        cfg: DictConfig | PlainConfig,
        options: StageOptions,
        *,
        source_file: Path | None,
        called_params: dict[str, Any] | None = None,
        extra_lock: dict[str, Any] | None = None,
        experiment: str | None = None,
        collectors: list[Collector] | None = None,
        handle_sigterm: bool = True,
        reuse_dir: Path | None = None,
    ) -> ActiveRun:
        """Resolve, seed, create the directory, write config.yaml and the ``running`` lock.

        ``reuse_dir``: resume the run in that directory (same id; a task map re-launched or a
        requeued job) instead of creating a new one.
        """
        started = time.perf_counter()
        now_local = datetime.now().astimezone()
        previous: dict[str, Any] | None = None
        if reuse_dir is not None:
            previous = lockfile.load_lock(reuse_dir)
            if previous.get("stage") != options.name:
                raise UsageError(
                    f"{reuse_dir} is a run of stage '{previous.get('stage')}', not '{options.name}'.",
                    hint="Resume a run directory of the same stage.",
                )
            run_id = str(previous["id"])
            now_local = datetime.fromisoformat(previous["timing"]["start"]).astimezone()
        else:
            run_id = new_run_id(now_local)
        ops = config_ops(cfg)  # the plain path or OmegaConf, once for the whole run
        resolved = ops.resolve(cfg, now=now_local, run_id=run_id, stage=options.name)
        altered: dict[str, Any] = {}
        seed: int | None = None
        if options.seed_field and options.seed_field in resolved:
            seed = resolved[options.seed_field]
            if seed is None and previous is not None and previous.get("seed") is not None:
                seed = previous["seed"]  # a resumed run keeps its seed
                resolved[options.seed_field] = seed
            elif seed is None:
                seed = seeding.draw_seed()
                resolved[options.seed_field] = seed
                altered[options.seed_field] = seed

        target, dir_field = place_run_dir(options, resolved, now=now_local, run_id=run_id, experiment=experiment)
        for name in (dir_field, options.inject_dir):
            if name and name not in resolved:
                raise ConfigError(f"inject_dir '{name}' is not a config key.")
        rd = RunDir(Path(reuse_dir).absolute()) if reuse_dir is not None else RunDir.create(target)
        for name in {n for n in (dir_field, options.inject_dir) if n}:
            with ops.writable(resolved):
                resolved[name] = str(rd.path)
            altered[name] = str(rd.path)

        rd.write(rd.config.name, ops.to_yaml(resolved), durable=False)  # also in the (fsynced) final lock
        plain_cfg = ops.to_plain(resolved)
        info = dict(info)
        info["parameters"] = called_params if called_params is not None else ops.unresolved(cfg)
        info["altered_parameters"] = altered
        packages, editable = inventory()
        lock: dict[str, Any] = {
            "schema": lockfile.SCHEMA_VERSION,
            "id": run_id,
            "stage": options.name,
            "status": "running",
            "run_dir": str(rd.path),
            "experiment": experiment,
            "pid": os.getpid(),
            "hostname": hostname(),
            "heartbeat": None,
            "timing": {"start": _iso(now_local), "end": None, "duration_s": None},
            "function": info,
            "config": plain_cfg,
            "seed": seed,
            "environment": capture_environment(),
            "packages": packages,
            "editable": editable,
        }
        if previous is not None:
            lock["resumed"] = [*previous.get("resumed", []), _iso(datetime.now().astimezone())]
        if extra_lock:
            lock.update(extra_lock)
        ctx = RunContext(
            run_id=run_id,
            stage=options.name,
            run_dir=rd.path,
            results_root=results_root(options.root),
            start=now_local,
            config=plain_cfg,
            options=options,
            source_file=source_file,
            lock=lock,
        )
        active = list(collectors if collectors is not None else default_collectors(options))
        stack = ExitStack()
        # logging first: collectors' background threads log warnings into run.log
        stack.enter_context(run_logging(rd.log, level=options.log_level, console=options.console))
        logger.info("run %s of stage %s in %s", run_id, options.name, rd.path)
        try:
            for c in active:
                try:
                    section = c.start(ctx)
                    if section is not None:
                        lock[c.key] = section
                except Exception as exc:  # noqa: BLE001 - a collector never fails the run
                    if getattr(exc, "fatal", False):
                        _write_failed_at_start(rd, lock, ctx, exc)
                        raise
                    ctx.warnings.append(f"{c.key}: {type(exc).__name__}: {exc}")
            writer = LockWriter(rd.lock, lock)
            writer.write()
        except BaseException:
            stack.close()
            raise
        writer.start_heartbeat()
        run = cls(rd, lock, ctx, active, writer, resolved, seed, started, ops)
        run._stack = stack
        if handle_sigterm:
            run._stack.enter_context(_sigterm_as_interrupt())
        if seed is not None:
            run.seeded = seeding.apply_seed(int(seed))
        run._metrics_token = _activate_metrics(rd.path, lock, ctx.results_root)
        push_run(run)
        return run

    def close(self, value: Any = None, error: BaseException | None = None) -> Outcome:
        """Write the result, finish the collectors and the final lock; idempotent."""
        if self.closed:
            return self.outcome
        self.closed = True
        pop_run(self)
        lock, ctx, rd = self.lock, self.ctx, self.rd
        status = "completed"
        tb_text: str | None = None
        try:
            ctx.warnings.extend(_deactivate_metrics(self._metrics_token))
            seeding.remove_hook()
            if isinstance(error, SystemExit) and error.code in (0, None):
                error = None
            if error is None:
                try:
                    result = _result_section(rd, value)
                    if result is not None:
                        lock["result"] = result
                except OSError as exc:
                    error = exc
            if error is not None:
                status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
                logger.error("run %s %s: %s: %s", ctx.run_id, status, type(error).__name__, error)
            else:
                logger.info("run %s completed in %.3fs", ctx.run_id, time.perf_counter() - self._started)
            ctx.status = status
            for c in self.collectors:
                try:
                    section = c.finish(ctx)
                    if section is not None:
                        lock[c.key] = section
                except Exception as exc:  # noqa: BLE001
                    ctx.warnings.append(f"{c.key}: {type(exc).__name__}: {exc}")
        finally:
            self.writer.stop_heartbeat()
            self._stack.close()
            end = datetime.now().astimezone()
            if error is not None:
                tb_text = "".join(traceback.format_exception(type(error), error, _user_frames(error.__traceback__)))
                lock["error"] = {
                    "type": f"{type(error).__module__}.{type(error).__qualname__}",
                    "message": str(error),
                    "traceback": tb_text,
                }
            if self.seeded:
                lock["seeded"] = self.seeded
            if ctx.warnings:
                lock["warnings"] = list(ctx.warnings)
            self.writer.write(
                durable=True,
                status=status,
                timing={
                    "start": _iso(ctx.start),
                    "end": _iso(end),
                    "duration_s": round((end - ctx.start).total_seconds(), 6),
                },
            )
        _finish_tracking(self._metrics_token, lock)
        self.outcome = Outcome(ctx.run_id, rd.path, status, value, error, tb_text, {}, lock)
        return self.outcome


def execute(
    fn: Callable[..., Any],
    schema: Schema,
    cfg: DictConfig | PlainConfig,
    options: StageOptions,
    *,
    called_params: dict[str, Any] | None = None,
    capture_locals: bool = False,
    extra_lock: dict[str, Any] | None = None,
    experiment: str | None = None,
    collectors: list[Collector] | None = None,
    reraise: bool = True,
) -> Outcome:
    """Run ``fn`` once as a tracked run and return its :class:`Outcome`.

    With ``reraise`` the stage's exception propagates after the lock is final (library calls);
    without it, the exception is in ``Outcome.error`` (debugging, CLI).
    """
    run = ActiveRun.open(
        _function_info(fn),
        cfg,
        options,
        source_file=source_file_of(fn),
        called_params=called_params,
        extra_lock=extra_lock,
        experiment=experiment,
        collectors=collectors,
    )
    value: Any = None
    error: BaseException | None = None
    captured: dict[str, Any] = {}
    try:
        arg = run.config_ops.to_argument(run.resolved, schema)
        call_args: tuple[Any, ...] = (arg,) if schema.mode == "dataclass" else ()
        call_kwargs: dict[str, Any] = {} if schema.mode == "dataclass" else dict(arg)
        if capture_locals:
            value, error, captured = _call_with_locals(fn, call_args, call_kwargs)
        else:
            value = fn(*call_args, **call_kwargs)
    except BaseException as exc:  # noqa: BLE001 - recorded, then re-raised below
        error = exc
    outcome = run.close(value, error)
    outcome.locals = captured
    if outcome.error is not None and reraise:
        if isinstance(outcome.error, RunInterrupted):
            _resend_sigterm()
        raise outcome.error
    return outcome


_PACKAGE_DIR = str(Path(__file__).parent)


def _user_frames(tb: Any) -> Any:
    """Skip runlock's own leading frames: the traceback starts in the user's code."""
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    return tb


def _write_failed_at_start(rd: RunDir, lock: dict[str, Any], ctx: RunContext, error: BaseException) -> None:
    """A fatal collector error (e.g. a missing data input) stops the run before the stage
    function is called. Its directory exists already: leave a final lock saying why."""
    end = datetime.now().astimezone()
    lock.update(
        status="failed",
        heartbeat=_iso(end),
        timing={"start": _iso(ctx.start), "end": _iso(end), "duration_s": round((end - ctx.start).total_seconds(), 6)},
        error={
            "type": f"{type(error).__module__}.{type(error).__qualname__}",
            "message": str(error),
            "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
        },
    )
    if ctx.warnings:
        lock["warnings"] = list(ctx.warnings)
    lockfile.dump_lock(lock, rd.lock)


def _activate_metrics(run_dir: Path, lock: dict[str, Any], root: Path) -> Any:
    """Route ``runlock.log_metrics`` to this run (metrics.jsonl, tracker forwarding)."""
    from ..tracking import base

    # not the current run itself: this ActiveRun is, and forwards log_metrics to the session
    return base.activate_for_run(run_dir, lock, root=root, activate_logger=False)


def _finish_tracking(token: Any, lock: dict[str, Any]) -> None:
    """The final lock is written: let the tracker (MLflow) log it; problems are only logged."""
    if token is None:
        return
    from ..tracking import base

    for warning in base.finish_for_run(token, lock):
        logger.warning("%s", warning)


def _deactivate_metrics(token: Any) -> list[str]:
    if token is None:
        return []
    from ..tracking import base

    return list(base.deactivate_for_run(token) or [])


def _call_with_locals(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, BaseException | None, dict[str, Any]]:
    from .interactive import call_capturing_locals

    return call_capturing_locals(fn, args, kwargs)


def _resend_sigterm() -> None:
    """After recording ``interrupted``, die of SIGTERM as the sender intended."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGTERM)

