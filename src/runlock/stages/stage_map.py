"""Task maps: one run, many items (seed 002, step 2).

``train.map(tasks)`` applies the stage to each task — a dict merged into the config, or a value
set at ``key`` — inside ONE run directory with ONE run.lock. Each task's outputs go under
``<run>/tasks/<task_id>/``; task state lives in ``<run>/.runlock/tasks`` (see
:mod:`runlock.scale.tasks`), so re-launching the same run directory runs only what is not done.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
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
        """Metrics go to the map's run where it lives in this process; a worker has none."""
        if self.parent is None:
            from ..tracking.metrics import outside_run_error

            raise outside_run_error()
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
    **backend_options: Any,
) -> MapResult:
    """Run the stage on every task inside one tracked run (see module doc)."""
    from ..scale.taskmap import execute_map

    tasks = list(tasks)
    if not tasks:
        raise TaskError("No tasks to map over.")
    cfg = stage.compose(base=config, overrides=overrides)
    for i, task in enumerate(tasks):  # validate every task before anything runs
        task_config(stage, cfg, task, key, i)
    reuse = Path(resume) if resume is not None else None
    if reuse is not None and not (reuse / "run.lock").is_file():
        raise RunlockError(f"Cannot resume {reuse}: no run.lock there.", hint="Give the run directory of an earlier map.")
    from .run import _function_info, source_file_of

    active = ActiveRun.open(
        _function_info(stage.fn),
        cfg,
        stage.options,
        source_file=source_file_of(stage.fn),
        extra_lock={"map": {"tasks": len(tasks), "key": key, "backend": backend}},
        reuse_dir=reuse,
    )
    error: BaseException | None = None
    summary = None
    try:
        base = OmegaConf.to_container(cfg, resolve=False)
        runner = _TaskRunner(stage, base, key, active.id, active.dir, active.seed, active.ctx.start.isoformat())  # type: ignore[arg-type]
        summary = execute_map(
            runner,
            list(enumerate(tasks)),
            state_dir=active.rd.state / "tasks",
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
            error = TaskError(f"{summary.failed} of {summary.total} tasks failed, {summary.todo + summary.running} not done.", hint=f"Re-run with resume={active.dir} to retry them.")
    except BaseException as exc:  # noqa: BLE001 - recorded in the lock, then re-raised
        error = exc
    outcome = active.close(None, error)
    if isinstance(error, (KeyboardInterrupt, SystemExit)) or (error is not None and summary is None):
        raise error
    return MapResult(outcome.run_id, outcome.run_dir, outcome.status, summary)
