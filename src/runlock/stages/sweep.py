"""Sweeps: one run per point of a grid (``lr=0.1,0.01 model=a,b``) and/or per named experiment.

Every point is composed and validated before any run starts (bad input creates nothing), points
already completed with the same config and the same source snapshot are skipped (unless
``force``), the rest go through an execution backend, and a sweep record ties the runs together.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError, RunlockError, UsageError
from ..record import lockfile
from ..record.lock import Lock
from ..record.rundir import atomic_write
from ..record.runid import new_run_id
from ..record.walk import iter_run_dirs
from ..settings import results_root

log = logging.getLogger("runlock")


def split_values(value: str) -> list[str]:
    """Split ``a,b,[1,2],"x,y"`` on top-level commas (brackets and quotes kept together)."""
    out, depth, quote, cur = [], 0, "", ""
    for ch in value:
        if quote:
            cur += ch
            if ch == quote:
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        cur += ch
    out.append(cur)
    return out


def expand_grid(overrides: Sequence[str]) -> list[list[str]]:
    """``["lr=0.1,0.01", "model=a,b", "epochs=3"]`` -> the 4 dotlists of the grid (in order)."""
    axes: list[list[str]] = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"Override '{item}' is not of the form key=value.")
        values = split_values(value)
        if any(v == "" for v in values) and len(values) > 1:
            raise ConfigError(f"Sweep values of '{key}' contain an empty item: '{value}'.")
        axes.append([f"{key}={v}" for v in values])
    return [list(p) for p in itertools.product(*axes)] if axes else [[]]


@dataclass
class Point:
    """One run of a sweep: its composed (unresolved) config and experiment name."""

    index: int
    overrides: list[str]
    experiment: str | None
    config: dict[str, Any]
    label: str = ""


@dataclass
class SweepResult:
    sweep_id: str
    record: Path
    points: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [p for p in self.points if p["status"] not in ("completed", "skipped")]


def plan(
    stage: Any,
    *,
    overrides: Sequence[str],
    experiments: Sequence[tuple[str, DictConfig]] = (),
    config_files: Sequence[str | Path] = (),
    overrides_files: Sequence[str | Path] = (),
) -> list[Point]:
    """Compose and validate every point of the sweep (grid x experiments)."""
    grid = expand_grid(overrides)
    exps: list[tuple[str | None, DictConfig | None]] = list(experiments) or [(None, None)]
    points: list[Point] = []
    for exp_name, exp_cfg in exps:
        for dotlist in grid:
            cfg = stage.compose(
                config_files=config_files,
                overrides_files=overrides_files,
                overrides=dotlist,
                experiment=exp_cfg,
                experiment_name=exp_name,
            )
            container = OmegaConf.to_container(cfg, resolve=False)
            assert isinstance(container, dict)
            label = " ".join(([f"[{exp_name}]"] if exp_name else []) + dotlist)
            points.append(Point(len(points), dotlist, exp_name, cast("dict[str, Any]", container), label or "(defaults)"))
    return points


def _source_tree(stage: Any) -> str | None:
    """Tree id of the current source snapshot (what a run started now would record)."""
    from ..capture.builtin import GitCollector
    from ..capture.collectors import RunContext
    from .run import source_file_of

    if not stage.options.snapshot:
        return None
    root = results_root(stage.options.root)
    ctx = RunContext(
        run_id="sweep",
        stage=stage.name,
        run_dir=root / stage.name,
        results_root=root,
        start=datetime.now().astimezone(),
        config={},
        options=stage.options,
        source_file=source_file_of(stage.fn),
    )
    collector = GitCollector(stage.options)
    section = collector.start(ctx) or collector.finish(ctx) or {}
    git = Lock.from_dict({"git": section}).git
    return git.snapshot_tree if git else None


def completed_runs(stage_name: str, root: Path) -> list[dict[str, Any]]:
    """Locks of the completed runs of a stage (the runs under ``<root>/<stage>``, found by the
    one results-root walker: pulled, symlinked runs count too)."""
    out: list[dict[str, Any]] = []
    for run_dir in iter_run_dirs(root, stage=stage_name):
        try:
            lock = lockfile.load_lock(run_dir)
        except RunlockError:
            continue
        view = Lock.from_dict(lock)
        if view.status == "completed" and view.stage == stage_name:
            out.append(lock)
    return out


def find_done(points: list[Point], stage: Any, *, force: bool) -> dict[int, Lock]:
    """Points already completed with the same config and source tree: ``{index: lock}``."""
    if force:
        return {}
    done: dict[int, Lock] = {}
    previous = completed_runs(stage.name, results_root(stage.options.root))
    if not previous:
        return done
    tree = _source_tree(stage)
    views = [Lock.from_dict(lock) for lock in previous]
    for p in points:
        for lock in views:
            params = lock.function.parameters if lock.function else None
            same_tree = (lock.git.snapshot_tree if lock.git else None) == tree
            if params == p.config and lock.experiment == p.experiment and same_tree:
                done[p.index] = lock
                break
    return done


def _run_point(task: tuple[Any, Point, dict[str, Any]]) -> dict[str, Any]:
    """Worker side: run one point as its own tracked run (module level: picklable)."""
    stage, point, sweep_info = task
    outcome = stage.invoke(
        point.config,
        experiment=point.experiment,
        extra_lock={"sweep": sweep_info},
        called_params=point.config,
        reraise=False,
    )
    return {
        "index": point.index,
        "label": point.label,
        "run_id": outcome.run_id,
        "run_dir": str(outcome.run_dir),
        "status": outcome.status,
        "error": None if outcome.error is None else f"{type(outcome.error).__name__}: {outcome.error}",
    }


def run_sweep(
    stage: Any,
    points: list[Point],
    *,
    backend: str = "joblib",
    n_jobs: int = 1,
    force: bool = False,
    backend_options: dict[str, Any] | None = None,
) -> SweepResult:
    """Run the points not already done; write the sweep record; return per-point outcomes."""
    from ..scale.backends import get_backend

    if not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise UsageError(f"n_jobs={n_jobs!r}: give 1 or more parallel runs (or -1: one per CPU).")
    sweep_id = new_run_id()
    root = results_root(stage.options.root)
    record = root / stage.name / ".sweeps" / f"{sweep_id}.json"
    done = find_done(points, stage, force=force)
    todo = [p for p in points if p.index not in done]
    results: dict[int, dict[str, Any]] = {}
    for idx, lock in done.items():
        results[idx] = {
            "index": idx,
            "label": points[idx].label,
            "run_id": lock.id,
            "run_dir": lock.run_dir,
            "status": "skipped",
            "error": None,
            "note": "already completed with the same config and source",
        }
        log.info("sweep point %s already done: run %s", points[idx].label, lock.id)
    if todo:
        opts = dict(backend_options or {})
        if backend != "inprocess":
            opts.setdefault("n_jobs", n_jobs)
        be = get_backend(backend, **opts)
        tasks = [(stage, p, {"id": sweep_id, "index": p.index, "size": len(points), "label": p.label}) for p in todo]
        outs = be.run(_run_point, tasks)
        for p, out in zip(todo, outs, strict=True):
            if isinstance(out, BaseException):
                out = {"index": p.index, "label": p.label, "run_id": None, "run_dir": None, "status": "crashed", "error": f"{type(out).__name__}: {out}"}
            results[p.index] = out
    ordered = [results[p.index] for p in points]
    atomic_write(
        record,
        json.dumps(
            {
                "sweep": sweep_id,
                "stage": stage.name,
                "created": datetime.now(UTC).isoformat(),
                "backend": backend,
                "points": ordered,
            },
            indent=2,
        )
        + "\n",
    )
    return SweepResult(sweep_id, record, ordered)
