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
from ..capture.environment import capture_environment, hostname, process_start
from ..capture.packages import inventory, package_sources
from ..config import ConfigOps, config_ops
from ..config import plain as plainconfig
from ..config.plain import PlainConfig
from ..config.schema import Schema, fill_secrets, scan_secrets
from ..errors import ConfigError, RunDirError, RunDirLostError, RunlockError, UsageError
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
    #: how long a snapshot waits for another git command's .git/index.lock; past it the run
    #: records HEAD and the reason instead of a snapshot
    snapshot_lock_timeout_s: float = 10.0
    files_of_interest: tuple[str, ...] = ()
    #: glob patterns per data input (a ``track_data`` entry / config key): hash only the files
    #: of a directory that match / none that match ``ignore`` (``runlock.Input(match=..., ignore=...)``)
    data_match: dict[str, tuple[str, ...]] = field(default_factory=dict)
    data_ignore: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: record hashes of the run's output files at the end (for lineage and reproduce)
    hash_outputs: bool = True
    #: results root override (default: from pyproject.toml / $RUNLOCK_RESULTS / ./results)
    root: str | None = None
    log_level: int = logging.INFO
    console: bool = True
    #: the user's collectors (lock sections), after the built-in ones; each serves every run
    collectors: tuple[Collector, ...] = ()

    def __post_init__(self) -> None:
        # The name becomes a directory and a ${stage} value: checked once, at decoration, and
        # never interpolated. A plain identifier (a function name) needs no import.
        if not (isinstance(self.name, str) and self.name.isidentifier()):
            from ..record.safe import check_name

            check_name(self.name, source="@runlock.stage(name=...)")


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
        from ..record.safe import check_experiment  # only runs of a named experiment pay

        parts.append(check_experiment(experiment, source="the experiment of the run"))
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
    """Serialises lock rewrites (start, sections as they become known, heartbeat, end) from
    several threads: one writer at a time, each an atomic rewrite of the whole lock.

    After the first write the run directory must stay: a rewrite never creates it again, and
    a lock that is gone (``runlock rm`` of a run it took for crashed) sets :attr:`vanished`;
    the heartbeat then stops and the end of the run fails loudly instead of "completing" with
    its outputs gone.
    """

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._written = False
        self._final = False
        #: why the lock can no longer be written where it was (None while all is well)
        self.vanished: str | None = None

    def set(self, key: str, value: Any) -> None:
        """Set a section without writing (the next write carries it)."""
        with self._mutex:
            self.data[key] = value

    def write(self, *, durable: bool = False, final: bool = False, force: bool = False, **updates: Any) -> None:
        """Rewrite the lock with ``updates``; a no-op once a ``final`` write succeeded.
        Raises :class:`RunDirLostError` when the lock vanished (``force``: write it anyway,
        into the directory if it still exists, e.g. re-created by the stage's own writes)."""
        with self._mutex:
            if self._final:
                return
            self.data.update(updates)
            self.data["heartbeat"] = _iso(datetime.now(UTC))
            if self._written and self.vanished is None and not os.path.exists(self.path):
                self.vanished = f"its run.lock ({self.path}) was deleted while the run was going on"
            if self.vanished is not None and not force:
                raise RunDirLostError(f"Run {self.data.get('id')}: {self.vanished}.")
            try:
                # a shallow copy (atomic under the GIL): the main thread may add a section meanwhile
                lockfile.dump_lock(
                    dict(self.data), self.path, durable=durable, create_parents=not self._written,
                    reserve=not final,  # room for the final status on a full disk
                    # a heartbeat bumps no folder: the run index stats every `running` lock on
                    # each refresh, and a bumped folder costs `ls` a listing of it (80,000 runs)
                    touch=final or not self._written,
                )
            except FileNotFoundError as exc:
                if not self._written:
                    raise
                self.vanished = f"its directory {self.path.parent} was deleted while the run was going on"
                raise RunDirLostError(f"Run {self.data.get('id')}: {self.vanished}.") from exc
            self._written = True
            self._final = final

    def publish(self, key: str, value: Any) -> None:
        """A collector's section, known now (the snapshot, the data hashes): into the lock at once,
        so that a run killed by SIGKILL or the OOM killer keeps its code and data provenance."""
        with self._mutex:
            if self._final:
                return
            self.data[key] = value
        try:
            self.write()
        except OSError:  # a full disk or a vanished directory: the end of the run reports it
            pass

    def start_heartbeat(self, interval_s: float | None = None) -> None:
        interval = heartbeat_s() if interval_s is None else interval_s

        def beat() -> None:
            while not self._stop.wait(interval):
                try:
                    self.write()
                except RunDirLostError as exc:
                    logger.error("%s The run will be recorded as failed.", exc)
                    return  # nothing to beat for: the end of the run fails loudly
                except OSError:  # a full disk must not kill the run; the end write will tell
                    pass

        self._thread = threading.Thread(target=beat, name="runlock-heartbeat", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()


def heartbeat_s() -> float:
    """Seconds between heartbeats: :data:`HEARTBEAT_S`, or ``$RUNLOCK_HEARTBEAT_S`` (tests)."""
    value = os.environ.get("RUNLOCK_HEARTBEAT_S")
    try:
        return max(0.05, float(value)) if value else HEARTBEAT_S
    except ValueError:
        return HEARTBEAT_S


_PID_START: list[tuple[int, str | None]] = []


def _own_pid_start() -> str | None:
    """This process's start (``capture.environment.process_start``), read once per process."""
    pid = os.getpid()
    if not _PID_START or _PID_START[0][0] != pid:  # a forked worker is another process
        _PID_START[:] = [(pid, process_start(pid))]
    return _PID_START[0][1]


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
        #: config values "<secret: ENV>" to fill in from the environment in the stage's argument
        self.has_secrets = False

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
        run_dir: Path | None = None,
    ) -> ActiveRun:
        """Resolve, seed, create the directory, write config.yaml and the ``running`` lock.

        ``reuse_dir``: resume the run in that directory (same id; a task map re-launched or a
        requeued job) instead of creating a new one. ``run_dir``: a new run in that existing
        directory, as given (pycrumbs' placement: the caller made it and keeps earlier locks).
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

        # "<secret: ENV>" values: checked before anything is written, filled in only in the
        # stage's argument; secret-looking values in clear are warned about
        secret_keys, clear_keys = scan_secrets(ops.to_plain(resolved))
        missing = sorted({env for env in secret_keys.values() if env not in os.environ})
        if missing:
            keys = ", ".join(k for k, env in secret_keys.items() if env in missing)
            raise ConfigError(
                f"config {keys} is a secret read from the environment, and "
                f"{', '.join('$' + m for m in missing)} is not set.",
                hint=f"export {missing[0]}=... (it is never written into the run's records).")
        if options.track_data and (collectors is None or any(getattr(c, "key", None) == "data" for c in collectors)):
            # a missing data input is bad input: reported before anything is created (exit 2)
            from ..capture.builtin import check_inputs, data_inputs

            early = ops.to_plain(resolved)
            check_inputs(data_inputs(options, early), early)
        if run_dir is not None:
            target, dir_field = Path(run_dir).absolute(), None
        else:
            target, dir_field = place_run_dir(options, resolved, now=now_local, run_id=run_id, experiment=experiment)
        for name in (dir_field, options.inject_dir):
            if name and name not in resolved:
                raise ConfigError(f"inject_dir '{name}' is not a config key.")
        # What the lock needs that takes time, before the directory exists: the lock follows
        # its creation at once (a kill in between leaves no directory ls and rm cannot see).
        packages, editable = inventory()
        environment = capture_environment()
        if reuse_dir is not None:
            rd = RunDir(Path(reuse_dir).absolute())
        else:
            rd = RunDir(target) if run_dir is not None else RunDir.create(target)
        for name in {n for n in (dir_field, options.inject_dir) if n}:
            with ops.writable(resolved):
                resolved[name] = str(rd.path)
            altered[name] = str(rd.path)

        plain_cfg = ops.to_plain(resolved)
        info = dict(info)
        info["parameters"] = called_params if called_params is not None else ops.unresolved(cfg)
        info["altered_parameters"] = altered
        lock: dict[str, Any] = {
            "schema": lockfile.SCHEMA_VERSION,
            "id": run_id,
            "stage": options.name,
            "status": "running",
            "run_dir": str(rd.path),
            "experiment": experiment,
            "pid": os.getpid(),
            "pid_start": _own_pid_start(),  # with the pid: this process, not a later one
            "hostname": hostname(),
            "heartbeat": None,
            "timing": {"start": _iso(now_local), "end": None, "duration_s": None},
            "function": info,
            "config": plain_cfg,
            "seed": seed,
            "environment": environment,
            "packages": packages,
            "editable": editable,
            # how the packages not from an index were installed (VCS, archive URL, directory)
            "package_sources": package_sources(),
        }
        if previous is not None:
            lock["resumed"] = [*previous.get("resumed", []), _iso(datetime.now().astimezone())]
        if extra_lock:
            lock.update(extra_lock)
        writer = LockWriter(rd.lock, lock)
        try:
            writer.write()  # from here on the directory is a run that ls and rm list
        except OSError as exc:
            if reuse_dir is None and run_dir is None:
                _remove_new_dir(rd.path)
            raise RunDirError(
                f"Cannot write the lock of run {run_id} in {rd.path}: {exc.strerror or exc}.",
                hint="Free disk space, or choose a writable location (save_dir= / --root / RUNLOCK_RESULTS).",
            ) from exc
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
            publish=writer.publish,
        )
        active = list(collectors if collectors is not None else default_collectors(options))
        stack = ExitStack()
        try:
            rd.write(rd.config.name, ops.to_yaml(resolved), durable=False)  # also in the (fsynced) final lock
            # logging first: collectors' background threads log warnings into run.log
            stack.enter_context(run_logging(rd.log, level=options.log_level, console=options.console))
        except BaseException as exc:
            failure = _failed_at_start(writer, ctx, exc, stack)
            if failure is exc:
                raise
            raise failure from exc
        logger.info("run %s of stage %s in %s", run_id, options.name, rd.path)
        if clear_keys:
            clear_warning = (
                f"config {', '.join(clear_keys)} look(s) like a secret written in clear into "
                "run.lock and config.yaml (and pushed with them): use runlock.Secret(\"ENV_NAME\")")
            ctx.warnings.append(clear_warning)
            logger.warning("runlock: %s", clear_warning)
        try:
            changed = False
            for c in active:
                try:
                    section = c.start(ctx)
                    if section is not None:
                        writer.set(c.key, section)
                        changed = True
                except Exception as exc:  # noqa: BLE001 - a collector never fails the run
                    if getattr(exc, "fatal", False):
                        raise
                    ctx.warnings.append(f"{c.key}: {type(exc).__name__}: {exc}")
            if changed:
                writer.write()
        except BaseException as exc:
            failure = _failed_at_start(writer, ctx, exc, stack)
            if failure is exc:
                raise
            raise failure from exc
        writer.start_heartbeat()
        run = cls(rd, lock, ctx, active, writer, resolved, seed, started, ops)
        run.has_secrets = bool(secret_keys)
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
        returned = time.perf_counter()  # the stage function is done; the collectors may wait on hashes
        end: datetime | None = None
        try:
            ctx.warnings.extend(_deactivate_metrics(self._metrics_token))
            seeding.remove_hook()
            if isinstance(error, SystemExit) and error.code in (0, None):
                error = None
            if error is None:
                try:
                    result = _result_section(rd, value)
                    if result is not None:
                        self.writer.set("result", result)
                except OSError as exc:
                    error = exc
            if error is not None:
                status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
                logger.error("run %s %s: %s: %s", ctx.run_id, status, type(error).__name__, error)
            ctx.status = status
            for c in self.collectors:
                try:
                    section = c.finish(ctx)
                    if section is not None:
                        self.writer.set(c.key, section)
                except Exception as exc:  # noqa: BLE001
                    ctx.warnings.append(f"{c.key}: {type(exc).__name__}: {exc}")
            end = datetime.now().astimezone()
            if status == "completed":
                # the lock's duration_s (start to end), and how long the data/output hashes
                # took after the function returned when that is noticeable (a large input)
                after_s = time.perf_counter() - returned
                later = (f" (the function returned after {returned - self._started:.2f} s; "
                         f"data hashes finished {after_s:.1f} s later)") if after_s >= 0.5 else ""
                logger.info("run %s completed in %.3f s%s", ctx.run_id, (end - ctx.start).total_seconds(), later)
        finally:
            self.writer.stop_heartbeat()
            if error is not None:
                tb_text = "".join(traceback.format_exception(type(error), error, _user_frames(error.__traceback__)))
                _append_log(rd.log, tb_text)  # run.log holds the failure's traceback too
            self._stack.close()
            if end is None:
                end = datetime.now().astimezone()
            if error is not None:
                lock["error"] = {
                    "type": f"{type(error).__module__}.{type(error).__qualname__}",
                    "message": str(error),
                    "traceback": tb_text,
                }
            if self.seeded:
                lock["seeded"] = self.seeded
            if ctx.warnings:
                lock["warnings"] = list(ctx.warnings)
            try:
                self.writer.write(
                    durable=True,
                    final=True,
                    status=status,
                    timing={
                        "start": _iso(ctx.start),
                        "end": _iso(end),
                        "duration_s": round((end - ctx.start).total_seconds(), 6),
                    },
                )
            except OSError as exc:  # the directory vanished, or the disk is full
                status, error = self._final_write_failed(exc, error)
                tb_text = "".join(traceback.format_exception(type(error), error, _user_frames(error.__traceback__)))
        _finish_tracking(self._metrics_token, lock)
        self.outcome = Outcome(ctx.run_id, rd.path, status, value, error, tb_text, {}, lock)
        return self.outcome


    def _final_write_failed(self, exc: OSError, error: BaseException | None) -> tuple[str, BaseException]:
        """The final lock could not be written: the run fails loudly, with the reason, recorded
        where the lock can still be written (in place as a last resort on a full disk)."""
        lost = exc if isinstance(exc, RunDirLostError) else RunDirLostError(
            f"Run {self.ctx.run_id}: its final lock could not be written to {self.rd.lock}: "
            f"{exc.strerror or exc}.",
            hint="Free disk space (or fix the permissions); the run's outputs may be incomplete.",
        )
        if error is None:
            error = lost
        else:  # the stage's own error stays the run's error; the lost lock is a warning
            self.ctx.warnings.append(str(lost))
        status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        logger.error("%s", lost)
        updates: dict[str, Any] = {
            "status": status,
            "error": {
                "type": f"{type(error).__module__}.{type(error).__qualname__}",
                "message": str(error),
                "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
            },
        }
        if self.ctx.warnings:
            updates["warnings"] = list(self.ctx.warnings)
        try:
            self.writer.write(durable=True, final=True, force=True, **updates)
        except OSError:
            # In place, into the room the running lock kept: the reason and the end time (the
            # traceback and the outputs manifest only if they fit too).
            slim = dict(self.lock)
            slim["error"] = {**updates["error"], "message": str(error)[:500], "traceback": None}
            slim.pop("outputs", None)
            try:
                try:
                    lockfile.rewrite_lock_in_place(dict(self.lock), self.rd.lock)
                except OSError:
                    lockfile.rewrite_lock_in_place(slim, self.rd.lock)
            except OSError as again:
                logger.error("run %s: its failure could not be recorded either: %s", self.ctx.run_id, again)
        return status, error


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
        if run.has_secrets:
            arg = fill_secrets(arg)
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


def _append_log(path: Path, text: str) -> None:
    """Add ``text`` to run.log (the failure's traceback, which the console shows after the run)."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
    except OSError:  # a vanished directory or a full disk: the lock records the error
        pass


def _failed_at_start(writer: LockWriter, ctx: RunContext, error: BaseException, stack: ExitStack) -> BaseException:
    """The run stops before the stage function is called (a missing data input, a full disk,
    an unwritable directory): its lock says ``failed`` and why, where it can still be written.
    Returns the error to raise: an OSError becomes a :class:`RunDirError` naming the run."""
    end = datetime.now().astimezone()
    if ctx.warnings:
        writer.set("warnings", list(ctx.warnings))
    try:
        writer.write(
            durable=True,
            final=True,
            force=True,
            status="interrupted" if isinstance(error, KeyboardInterrupt) else "failed",
            timing={"start": _iso(ctx.start), "end": _iso(end), "duration_s": round((end - ctx.start).total_seconds(), 6)},
            error={
                "type": f"{type(error).__module__}.{type(error).__qualname__}",
                "message": str(error),
                "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
            },
        )
    except OSError:
        logger.error("run %s failed at its start and its lock could not say so", ctx.run_id)
    stack.close()
    if isinstance(error, OSError) and not isinstance(error, RunlockError):
        return RunDirError(
            f"Run {ctx.run_id} could not write into {ctx.run_dir}: {error.strerror or error}.",
            hint="Free disk space, or choose a writable location (save_dir= / --root / RUNLOCK_RESULTS).",
        )
    return error


def _remove_new_dir(path: Path) -> None:
    """Remove a run directory this process just created and could not give a lock (a full
    disk): a directory without a lock is invisible to ``ls`` and ``rm``."""
    import shutil  # only on this failure path

    shutil.rmtree(path, ignore_errors=True)


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

