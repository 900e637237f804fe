"""Task maps: one run, many items (seed 002, step 2).

``train.map(tasks)`` applies the stage to each task — a dict merged into the config, or a value
set at ``key`` — inside ONE run directory with ONE run.lock. Each task's outputs go under
``<run>/tasks/<task_id>/``; task state lives in ``<run>/.runlock/tasks`` (see
:mod:`runlock.scale.tasks`), so re-launching the same run directory runs only what is not done.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .._current import CurrentRun, get_current_run, pop_run, push_run
from ..config import omega as cfgmod
from ..config.schema import fill_secrets
from ..errors import ConfigError, RunlockError, TaskError
from .run import ActiveRun

TASKS_DIR = "tasks"


@dataclass
class TaskRun:
    """What ``runlock.current_run()`` returns inside a task of a map."""

    id: str
    task_id: str
    dir: Path
    run_dir: Path
    #: the run that was current when the task started: the map's own run when the task runs in
    #: its process, None in a worker process
    parent: CurrentRun | None = field(default=None, repr=False)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Metrics go to the map's run where it lives in this process; in a worker process (no
        map run there) to the task's own ``tasks/<task_id>/metrics.jsonl``."""
        if self.parent is None:
            from ..tracking.metrics import MetricsLogger

            logger = MetricsLogger(self.dir)
            try:
                logger.log(metrics, step)
            finally:
                logger.close()
            return
        self.parent.log_metrics(metrics, step)


@dataclass
class MapResult:
    """The map's run and its task summary; ``results()`` gives each task's return value."""

    run_id: str
    run_dir: Path
    status: str
    summary: Any

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def results(self, default: Any = None) -> list[Any]:
        return list(self.summary.results(default))


class MapInterrupted(KeyboardInterrupt):
    """A map stopped by Ctrl-C (or SIGTERM): its run is recorded ``interrupted`` with the task
    progress so far; ``run_dir`` is what to resume."""

    def __init__(self, run_id: str, run_dir: Path, tasks: Mapping[str, Any] | None) -> None:
        super().__init__(f"map run {run_id} interrupted ({run_dir})")
        self.run_id = run_id
        self.run_dir = run_dir
        self.tasks = dict(tasks or {})


def task_seed(seed: int, index: int) -> int:
    """A distinct, reproducible seed per task derived from the run's seed."""
    return zlib.crc32(f"{seed}:{index}".encode()) & 0x7FFFFFFF


class _TaskRunner:
    """Picklable callable run by workers: compose the task's config and call the function."""

    def __init__(self, stage: Any, base: dict[str, Any], key: str | None, run_id: str, run_dir: Path, seed: int | None, now: str) -> None:
        self.stage = stage
        self.base = base
        self.key = key
        self.run_id = run_id
        self.run_dir = run_dir
        self.seed = seed
        self.now = now

    def __call__(self, item: tuple[int, Any]) -> Any:
        from datetime import datetime

        from ..capture import seeding

        index, task = item
        stage = self.stage
        cfg = task_config(stage, stage.compose(base=self.base), task, self.key, index)
        seed_field = stage.options.seed_field
        task_sets_seed = self.key == seed_field or (isinstance(task, Mapping) and seed_field in task)
        if self.seed is not None and seed_field and seed_field in cfg and not task_sets_seed:
            cfg[seed_field] = task_seed(self.seed, index)  # distinct per task, reproducible
        resolved = cfgmod.resolve(cfg, now=datetime.fromisoformat(self.now), run_id=self.run_id, stage=stage.name)
        task_id = str(index).zfill(6)
        out_dir = self.run_dir / TASKS_DIR / task_id
        out_dir.mkdir(parents=True, exist_ok=True)
        if seed_field and seed_field in resolved and resolved[seed_field] is not None:
            seeding.apply_seed(int(resolved[seed_field]))
        arg = fill_secrets(cfgmod.to_argument(resolved, stage.schema))  # "<secret: ENV>" values
        ctx = TaskRun(self.run_id, task_id, out_dir, self.run_dir, parent=get_current_run(silent=True))
        push_run(ctx)
        try:
            if stage.schema.mode == "dataclass":
                return stage.fn(arg)
            return stage.fn(**arg)
        finally:
            pop_run(ctx)
            seeding.remove_hook()


def task_config(stage: Any, base: DictConfig, task: Any, key: str | None, index: int) -> DictConfig:
    """The config of one task: ``task`` merged into ``base`` (a mapping) or set at ``key``."""
    if key is not None:
        if OmegaConf.select(base, key, default="__missing__") == "__missing__":
            raise cfgmod.unknown_key(key, list(base.keys()), source="map key")
        update: Any = OmegaConf.from_dotlist([f"{key}=x"])
        OmegaConf.update(update, key, task, force_add=True)
    elif isinstance(task, Mapping):
        update = task
    else:
        raise TaskError(
            f"Task {index} is {type(task).__name__} {task!r}, not a mapping of config keys.",
            hint="Give key=... to set each task's value at one config key.",
        )
    try:
        return cfgmod.merge(base, update, schema=stage.schema, source=f"task {index}")
    except ConfigError as exc:
        raise TaskError(str(exc)) from None


def load_tasks(path: str | Path) -> list[Any]:
    """Tasks from a YAML/JSON list or a text file (one task per line)."""
    p = Path(path)
    if not p.is_file():
        raise TaskError(f"Task file not found: {p}.")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() in (".yaml", ".yml", ".json"):
        from .. import _yaml

        try:
            data = _yaml.load(text) if p.suffix.lower() != ".json" else json.loads(text)
        except (_yaml.YAMLError, ValueError) as exc:
            raise TaskError(f"Cannot parse task file {p}: {str(exc).splitlines()[0]}.") from None
        if isinstance(data, Mapping) and "tasks" in data:
            data = data["tasks"]
        if not isinstance(data, list):
            raise TaskError(f"Task file {p} must hold a list of tasks (or a 'tasks:' list).")
        return data
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def map_stage(
    stage: Any,
    tasks: Sequence[Any],
    *,
    key: str | None = None,
    config: Any = None,
    overrides: Sequence[str] = (),
    n_jobs: int = -1,
    backend: str = "joblib",
    resume: str | Path | None = None,
    chunk_size: int | None = None,
    worker_pool: bool = False,
    progress: bool | None = None,
    resume_hint: Callable[[Path], str] | None = None,
    **backend_options: Any,
) -> MapResult:
    """Run the stage on every task inside one tracked run (see module doc).

    ``resume_hint(run_dir)``: how a failed map tells the user to retry (the CLI gives its own
    command line; the default names ``resume=``)."""
    from ..scale.taskmap import execute_map

    tasks = list(tasks)
    if not tasks:
        raise TaskError("No tasks to map over.")
    cfg = stage.compose(base=config, overrides=overrides)
    for i, task in enumerate(tasks):  # validate every task before anything runs
        task_config(stage, cfg, task, key, i)
    reuse = Path(resume) if resume is not None else None
    from .run import _function_info, source_file_of

    if reuse is not None:
        check_resume(stage, reuse, cfg, tasks, source_file_of(stage.fn))

    active = ActiveRun.open(
        _function_info(stage.fn),
        cfg,
        stage.options,
        source_file=source_file_of(stage.fn),
        extra_lock={"map": {"tasks": len(tasks), "key": key, "backend": backend, "worker_pool": worker_pool, "chunk_size": chunk_size}},
        reuse_dir=reuse,
    )
    error: BaseException | None = None
    summary = None
    state_dir = active.rd.state / "tasks"
    try:
        base = OmegaConf.to_container(cfg, resolve=False)
        runner = _TaskRunner(stage, base, key, active.id, active.dir, active.seed, active.ctx.start.isoformat())  # type: ignore[arg-type]
        summary = execute_map(
            runner,
            list(enumerate(tasks)),
            state_dir=state_dir,
            backend=backend,
            n_jobs=n_jobs,
            chunk_size=chunk_size,
            worker_pool=worker_pool,
            progress=progress,
            log_file=active.rd.log,
            raise_errors=False,
            **backend_options,
        )
        info = summary.to_dict()
        failures = info.pop("failures")
        info["failures"] = {k: {"type": v.get("type"), "message": v.get("message")} for k, v in list(failures.items())[:50]}
        active.lock["tasks"] = info
        if not summary.ok:
            error = TaskError(f"{summary.failed} of {summary.total} tasks failed, {summary.todo + summary.running} not done.", hint=resume_hint(active.dir) if resume_hint else f"Re-run with resume={active.dir} to retry them.")
    except BaseException as exc:  # noqa: BLE001 - recorded in the lock, then re-raised
        error = exc
        counts = _progress(state_dir, len(tasks))  # an interrupted map says how far it got
        if counts is not None:
            active.lock["tasks"] = counts
    outcome = active.close(None, error)
    if isinstance(error, KeyboardInterrupt) and not isinstance(error, MapInterrupted):
        raise MapInterrupted(outcome.run_id, outcome.run_dir, active.lock.get("tasks")) from error
    if isinstance(error, SystemExit) or (error is not None and summary is None):
        raise error
    return MapResult(outcome.run_id, outcome.run_dir, outcome.status, summary)


def _progress(state_dir: Path, n_tasks: int) -> dict[str, Any] | None:
    """Task counts read back from the task store (after an interrupt: no summary exists)."""
    from ..scale.tasks import TaskStore

    try:
        store = TaskStore(state_dir)
        manifest = json.loads(store.manifest_path.read_text())
        width = int(manifest.get("width", 6))
        ids = [str(i).zfill(width) for i in range(n_tasks)]
        counts = store.counts(ids)
    except (OSError, ValueError):
        return None  # interrupted before the task store existed
    failed = sorted(store.failed_ids() - store.done_ids())
    failures = {i: {"type": r.get("type"), "message": r.get("message")} for i in failed[:50] if (r := store.failure(i))}
    return {"state_dir": str(state_dir), **counts.to_dict(), "failures": failures}


def _config_differences(old: Mapping[str, Any], new: Mapping[str, Any], skip: set[str]) -> list[str]:
    from ..browse.index import flatten

    a, b = flatten(old), flatten(new)
    return [
        f"{k}: {a.get(k, '<absent>')!r} in the run, {b.get(k, '<absent>')!r} now"
        for k in sorted(set(a) | set(b))
        if k not in skip and a.get(k, "<absent>") != b.get(k, "<absent>")
    ]


def check_resume(stage: Any, run_dir: Path, cfg: Any, tasks: Sequence[Any], source_file: Path | None) -> None:
    """Refuse (exit 2, touching nothing) to resume ``run_dir`` with another stage, config,
    task list or source than the run was launched with: one lock records one launch setup,
    so tasks run with two configs would be recorded as if they had run with one."""
    from datetime import datetime

    from ..config import config_ops
    from ..errors import UsageError
    from ..record import lockfile
    from ..scale.tasks import TaskStore, tasks_digest

    if not (run_dir / "run.lock").is_file():
        raise UsageError(f"Cannot resume {run_dir}: no run.lock there.", hint="Give the run directory of an earlier map.")
    previous = lockfile.load_lock(run_dir)
    if previous.get("stage") != stage.name:
        raise UsageError(
            f"Cannot resume {run_dir}: it is a run of stage '{previous.get('stage')}', not '{stage.name}'.",
            hint="Resume a run directory of the same stage.",
        )
    if not isinstance(previous.get("map"), Mapping):
        raise UsageError(f"Cannot resume {run_dir}: it is not a task map run.", hint="Give the run directory of an earlier map.")
    ops = config_ops(cfg)
    try:
        start = datetime.fromisoformat(previous["timing"]["start"])
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"Cannot resume {run_dir}: its run.lock has no start time.") from None
    now = ops.to_plain(ops.resolve(cfg, now=start, run_id=str(previous.get("id")), stage=stage.name))
    skip = {k for k in (stage.options.dir_field, stage.options.inject_dir) if k}
    altered = (previous.get("function") or {}).get("altered_parameters") or {}
    seed_field = stage.options.seed_field
    if seed_field and seed_field in altered and now.get(seed_field) is None:
        skip.add(seed_field)  # the seed drawn at the first launch is kept by the resume
    diffs = _config_differences(previous.get("config") or {}, now, skip)
    if diffs:
        raise UsageError(
            f"Cannot resume {run_dir} with a different config: " + "; ".join(diffs) + ".",
            hint="Resume with the run's own config (--config <run>/config.yaml), or start a new map.",
        )
    manifest = TaskStore(run_dir / ".runlock" / "tasks").manifest_path
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text())
        except (OSError, ValueError):
            old = {}
        digest = tasks_digest(list(enumerate(tasks)))  # what execute_map is given
        if old.get("n_tasks") not in (None, len(tasks)) or (digest is not None and old.get("digest") not in (None, digest)):
            raise UsageError(
                f"Cannot resume {run_dir} with a different task list ({old.get('n_tasks')} tasks in the run, {len(tasks)} now).",
                hint="Resume with the same tasks, or start a new map.",
            )
    old_tree = (((previous.get("git") or {}).get("snapshot")) or {}).get("tree")
    if old_tree and stage.options.snapshot:
        tree = _source_tree(stage.options, source_file, run_dir)
        if tree is not None and tree != old_tree:
            raise UsageError(
                f"Cannot resume {run_dir}: the source changed since the run started (snapshot tree {old_tree[:12]} then, {tree[:12]} now).",
                hint=f"Restore the run's source (git diff {old_tree[:12]} {tree[:12]}), or start a new map.",
            )


def _source_tree(options: Any, source_file: Path | None, run_dir: Path) -> str | None:
    """The tree the run's snapshot would record now (objects only: no commit, no ref moved)."""
    from .. import git
    from ..capture.builtin import snapshot_options, snapshot_settings
    from ..git.locate import locate
    from ..git.tree import write_snapshot_tree
    from ..settings import results_root

    where = source_file.parent if source_file is not None else Path.cwd()
    try:
        repo = locate(where)
        if repo is None:
            return None
        settings = snapshot_settings(options, results_root(options.root), run_dir.absolute())
        tree, _skipped, _changed = write_snapshot_tree(repo, snapshot_options(git, settings))
    except (RunlockError, OSError):
        return None  # cannot tell: the run's own snapshot will record what ran
    return tree
