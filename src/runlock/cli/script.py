"""``runlock.main(stage)``: the same file runs as a CLI script and in an interactive session.

From a shell: ``python train.py lr=0.1 epochs=5 --config base.yaml --experiment ablation/no_aug``.
In IPython / Jupyter / VS Code (``%run train.py lr=0.1``, run cell, or a call from a cell, also
``runlock.main(stage, argv=[...])``): the arguments typed after ``%run`` are used, the kernel's own
argv (``-f kernel.json``) is ignored, the stage runs, and its local variables land in the
interactive namespace, also when it raises (the traceback, from the user's frames on, is printed,
the run is recorded as failed, the kernel lives; nothing raises SystemExit).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import plain as plainconfig
from ..config.schema import REQUIRED, describe_fields
from ..errors import ConfigError, RunlockError, UsageError
from ..logs import verbosity_level
from ..settings import script_results_root
from ..stages.decorator import Stage
from ..stages.interactive import (
    in_interactive_session,
    push_to_namespace,
    run_magic_args,
    show_traceback,
)
from ..stages.run import Outcome, RunInterrupted, _resend_sigterm

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _fields_epilog(stage: Stage[Any, Any]) -> str:
    rows = describe_fields(stage.schema)
    if not rows:
        return "This stage has no config fields."
    width = max(len(r[0]) for r in rows)
    twidth = max(len(r[1]) for r in rows)
    values = ["REQUIRED" if default == REQUIRED else f"= {default}" for _, _, default, _ in rows]
    vwidth = max(len(v) for v in values)
    lines = ["config fields (override with key=value; REQUIRED ones have no default):"]
    for (name, typ, _, help_), value in zip(rows, values, strict=True):
        line = f"  {name:<{width}}  {typ:<{twidth}}  {value:<{vwidth}}  {help_}"
        lines.append(line.rstrip())
    return "\n".join(lines)


class _StageParser(argparse.ArgumentParser):
    """The script's parser: its epilog (the config fields, with the comments read from the
    source) is built only when the help is printed, not on every run."""

    stage: Stage[Any, Any] | None = None

    def format_help(self) -> str:
        if self.epilog is None and self.stage is not None:
            self.epilog = _fields_epilog(self.stage)
        return super().format_help()


def _jobs(text: str) -> int:
    """``--jobs``: a number of parallel runs (argparse reports a bad one, exit 2)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if n == 0 or n < -1:
        raise argparse.ArgumentTypeError(f"{n} parallel runs: give 1 or more (or -1: one per CPU)")
    return n


def build_parser(stage: Stage[Any, Any], prog: str | None = None) -> argparse.ArgumentParser:
    doc = (stage.__doc__ or "").strip().splitlines()
    parser = _StageParser(
        prog=prog,
        description=f"runlock stage '{stage.name}'" + (f": {doc[0]}" if doc else ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.stage = stage
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (OmegaConf dotlist)")
    parser.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML config file(s) merged over the defaults")
    parser.add_argument("--overrides", dest="overrides_files", action="append", default=[], metavar="FILE", help="YAML file(s) of overrides merged last")
    parser.add_argument("--experiment", metavar="NAME", help="named sub-config from the experiments file ('a/b'; wildcards with --sweep)")
    parser.add_argument("--experiments-file", metavar="FILE", help="YAML tree of named experiments (default: experiments.yaml next to the script)")
    parser.add_argument("--save-dir", metavar="DIR", help="run directory template (default: <results>/<stage>/<timestamp>)")
    parser.add_argument("--show-config", action="store_true", help="print the composed config and exit (no run)")
    group = parser.add_argument_group("sweeps and parallel runs")
    group.add_argument("--sweep", action="store_true", help="run the grid of comma-separated values (lr=0.1,0.01) and/or every experiment matching --experiment")
    group.add_argument("--jobs", "-j", type=_jobs, default=1, metavar="N", help="parallel runs (default 1; -1: one per CPU)")
    group.add_argument("--backend", default=None, choices=["inprocess", "joblib", "slurm"], help="where sweep points run (default: joblib when --jobs > 1, else inprocess)")
    group.add_argument("--force", action="store_true", help="re-run points already completed with the same config and source")
    group.add_argument("--map", dest="map_file", metavar="TASKS", help="run the stage on every task of a YAML/JSON list or text file, inside one run")
    group.add_argument("--map-key", metavar="KEY", help="config key that receives each task's value (tasks that are not mappings)")
    group.add_argument("--resume", metavar="RUN_DIR", help="with --map: continue the map in an earlier run directory (only what is not done; same config, tasks and source)")
    group.add_argument("--worker-pool", action="store_true", help="with --map: --jobs long-lived workers pull tasks from the pool until none is left (on SLURM they requeue themselves before their time limit)")
    group.add_argument("--chunk-size", type=int, metavar="N", help="with --map: tasks per backend call (default: about 4 chunks per worker)")
    group.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE", help="SLURM resources for --backend slurm (timeout_min=60, partition=gpu, gpus_per_node=1, mem_gb=16, cpus_per_task=4)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less log output")
    return parser


def _experiments_tree(stage: Stage[Any, Any], args: argparse.Namespace) -> Any:
    """The experiments tree and its file: --experiments-file, an ``experiments:`` key of a
    --config file, else experiments.yaml next to the script or in the current directory."""
    from omegaconf import DictConfig

    from ..config import omega as cfgmod

    candidates: list[tuple[Path, bool]] = []  # (file, only if it has an `experiments:` key)
    if args.experiments_file:
        path = Path(args.experiments_file)
        if not path.is_file():
            raise ConfigError(f"Experiments file not found: {path}.")
        candidates.append((path, False))
    candidates.extend((Path(f), True) for f in args.config)
    src = getattr(stage.fn, "__code__", None)
    if src is not None and not src.co_filename.startswith("<"):
        candidates.append((Path(src.co_filename).parent / "experiments.yaml", False))
    candidates.append((Path.cwd() / "experiments.yaml", False))
    for path, keyed in candidates:
        if path.is_file():
            data = cfgmod.load_yaml(path)
            if "experiments" in data:
                data = data["experiments"]  # type: ignore[index]
            elif keyed:  # a plain config file (lr: 0.5) is no tree of experiments
                continue
            if not isinstance(data, DictConfig):
                raise ConfigError(f"Experiments file {path} must hold a mapping of named experiments.")
            return data, path
    raise ConfigError(
        f"--experiment {args.experiment}: no experiments file found.",
        hint="Pass --experiments-file FILE or put an experiments.yaml next to the script.",
    )


def _with_options(stage: Stage[Any, Any], **changes: Any) -> Stage[Any, Any]:
    """A copy of ``stage`` with other options (same function, pickles the same way)."""
    import copy

    clone = copy.copy(stage)
    clone.options = dataclasses.replace(stage.options, **changes)
    return clone


def _in_script_project(stage: Stage[Any, Any]) -> Stage[Any, Any]:
    """The stage writing under the results root of its script's project (the pyproject.toml
    above the script), wherever the command is typed from."""
    code = getattr(stage.fn, "__code__", None)
    if stage.options.root is not None or code is None or code.co_filename.startswith("<"):
        return stage
    root = script_results_root(code.co_filename)
    return stage if root is None else _with_options(stage, root=str(root))


def _parse_kv(items: Sequence[str]) -> dict[str, Any]:
    from .. import _yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--slurm '{item}' is not of the form key=value.")
        out[key.strip()] = _yaml.load(value)
    return out


def _main_sweep(stage: Stage[Any, Any], args: argparse.Namespace, interactive: bool) -> Any:
    from ..stages import sweep

    experiments: list[tuple[str, Any]] = []
    if args.experiment:
        from ..config import omega as cfgmod

        tree, path = _experiments_tree(stage, args)
        experiments = cfgmod.select_experiments(tree, args.experiment, stage.schema.field_names, source=str(path))
    points = sweep.plan(
        stage,
        overrides=args.overrides,
        experiments=experiments,
        config_files=args.config,
        overrides_files=args.overrides_files,
    )
    backend = args.backend or ("joblib" if args.jobs != 1 else "inprocess")
    result = sweep.run_sweep(
        stage,
        points,
        backend=backend,
        n_jobs=args.jobs,
        force=args.force,
        backend_options=_parse_kv(args.slurm) if args.slurm else None,
    )
    width = max(len(p["label"]) for p in result.points)
    print(f"sweep {result.sweep_id}: {len(result.points)} points ({result.record})")
    for p in result.points:
        tail = f"  {p['error']}" if p.get("error") else ""
        print(f"  {p['label']:<{width}}  {p['status']:<11} {p.get('run_id') or '-'}{tail}")
    if result.failed and not interactive:
        raise SystemExit(EXIT_FAILED)
    return result


def _main_map(stage: Stage[Any, Any], args: argparse.Namespace, interactive: bool) -> Any:
    from ..stages.stage_map import MapInterrupted, load_tasks, map_stage

    if args.chunk_size is not None and args.chunk_size < 1:
        raise UsageError(f"--chunk-size must be at least 1, got {args.chunk_size}.")
    if args.chunk_size is not None and args.worker_pool:
        raise UsageError("--chunk-size and --worker-pool do not go together: pool workers take any pending task.")
    tasks = load_tasks(args.map_file)
    cfg, _experiment = compose_from_args(stage, args)
    try:
        result = map_stage(
            stage,
            tasks,
            key=args.map_key,
            config=cfg,
            n_jobs=args.jobs,
            backend=args.backend or ("joblib" if args.jobs != 1 else "inprocess"),
            resume=args.resume,
            chunk_size=args.chunk_size,
            worker_pool=args.worker_pool,
            resume_hint=lambda run_dir: f"retry them with: {resume_command(args, run_dir)}",
            **(_parse_kv(args.slurm) if args.slurm else {}),
        )
    except MapInterrupted as exc:
        t = exc.tasks
        done = f", {t.get('done', '?')}/{t.get('total', '?')} tasks done" if t else ""
        print(f"runlock: map run {exc.run_id} interrupted{done}; resume with: {resume_command(args, exc.run_dir)}", file=sys.stderr)
        if interactive:
            return None
        raise SystemExit(EXIT_INTERRUPTED) from None
    s = result.summary
    print(f"map run {result.run_id}: {s.done}/{s.total} tasks done, {s.failed} failed ({result.run_dir})")
    for task_id, failure in sorted(s.failures.items())[:20]:
        print(f"  task {task_id}: {failure.get('type')}: {failure.get('message')}")
    if not result.ok and not interactive:
        raise SystemExit(EXIT_FAILED)  # the run's error (logged) gives the --resume command
    return result


def _check_resume(args: argparse.Namespace) -> None:
    """``--resume RUN_DIR``: with --map, an earlier run's directory (bad input: exit 2)."""
    if not args.map_file:
        raise UsageError(f"--resume {args.resume}: resuming needs --map TASKS (the tasks of that map).")
    run_dir = Path(args.resume)
    if not (run_dir / "run.lock").is_file():
        what = "does not exist" if not run_dir.exists() else "is not a run directory (no run.lock)"
        raise UsageError(f"--resume {args.resume}: {what}.", hint="Give the run directory of an earlier map.")


def resume_command(args: argparse.Namespace, run_dir: Path) -> str:
    """The command line that resumes the map in ``run_dir``: this one with ``--resume RUN_DIR``."""
    import shlex

    argv = list(getattr(args, "argv", None) or [])
    kept: list[str] = []
    skip = False
    for item in argv:
        if skip:
            skip = False
        elif item == "--resume":
            skip = True
        elif not item.startswith("--resume="):
            kept.append(item)
    orig = list(getattr(sys, "orig_argv", []) or [])
    n = len(sys.argv) - 1
    if orig and len(orig) > n and orig[len(orig) - n :] == sys.argv[1:] and Path(orig[len(orig) - n - 1]).name == Path(sys.argv[0]).name:
        prefix = orig[: len(orig) - n]  # the interpreter and the script as the user typed them
    else:
        prefix = ["python", sys.argv[0] or "script.py"]
    return shlex.join([*prefix, *kept, "--resume", str(run_dir)])


def compose_from_args(stage: Stage[Any, Any], args: argparse.Namespace) -> tuple[Any, str | None]:
    if not (args.experiment or args.config or args.overrides_files or args.overrides):
        # `python train.py`: the defaults, nothing to merge or validate (see plainconfig)
        plain = plainconfig.plain_config(stage.schema.cls) if stage.schema.cls is not None else None
        if plain is not None:
            return plain, None
    from ..config import omega as cfgmod

    experiment = None
    name = None
    if args.experiment:
        tree, path = _experiments_tree(stage, args)
        chosen = cfgmod.select_experiments(tree, args.experiment, stage.schema.field_names, source=str(path))
        if len(chosen) > 1:
            raise ConfigError(
                f"--experiment '{args.experiment}' matches {len(chosen)} experiments "
                f"({', '.join(n for n, _ in chosen)}) in {path}.",
                hint="Add --sweep to run them all, or name one.",
            )
        name, experiment = chosen[0]
    cfg = stage.compose(
        config_files=args.config,
        overrides_files=args.overrides_files,
        overrides=args.overrides,
        experiment=experiment,
        experiment_name=name,
    )
    return cfg, name


def _fresh(stage: Stage[Any, Any]) -> Stage[Any, Any]:
    """In a long-lived kernel, re-import the stage's module if its file changed since import."""
    module_name = stage.__module__
    module = sys.modules.get(module_name)
    if module is None or module_name == "__main__":
        return stage  # %run / run-cell re-execute the file themselves
    src = getattr(module, "__file__", None)
    if not src:
        return stage
    loaded = getattr(module, "__runlock_mtime__", None)
    mtime = os.stat(src).st_mtime_ns
    if loaded is None:
        module.__runlock_mtime__ = mtime  # type: ignore[attr-defined]
        return stage
    if mtime == loaded:
        return stage
    module = importlib.reload(module)
    module.__runlock_mtime__ = mtime  # type: ignore[attr-defined]
    obj: Any = module
    for part in stage.__qualname__.split("."):
        obj = getattr(obj, part)
    return obj if isinstance(obj, Stage) else stage


def main(stage: Stage[Any, Any], argv: Sequence[str] | None = None) -> Any:
    """Run ``stage`` from the command line or an interactive session (see module doc).

    Script: exits 2 on bad config (no run directory created), 1 if the stage failed, 130 if
    interrupted; returns the stage's value on success. Interactive (an IPython session, with or
    without ``argv``): returns the :class:`~runlock.stages.run.Outcome` (None for bad arguments
    or config, whose message is printed) and never raises SystemExit.
    """
    if not isinstance(stage, Stage):
        raise TypeError(f"runlock.main() expects a @runlock.stage function, got {stage!r}")
    from ..stages import decorator as stages

    if stages._WORKER_IMPORT:  # noqa: SLF001 - a worker importing a script without a __main__ guard
        return None
    # in a session, also with an explicit argv: no SystemExit, the locals land in the namespace
    interactive = in_interactive_session()
    if argv is None:
        argv = run_magic_args() if interactive else sys.argv[1:]
    parser = build_parser(stage, prog=None if interactive else Path(sys.argv[0]).name or None)
    if interactive:
        stage = _fresh(stage)
    stage = _in_script_project(stage)
    try:
        # key=value anywhere on the line: `train.py a=1 --config base.yaml b=2`
        args = parser.parse_intermixed_args(list(argv))
    except SystemExit as exc:
        if interactive:
            return None
        raise exc
    args.argv = list(argv)  # a map's resume hint repeats the command line
    try:
        return _main_parsed(stage, args, interactive)
    except RunlockError as exc:  # bad config, template, task file, unwritable directory...
        if interactive:
            exc.show()
            return None
        exc.show(prog=parser.prog)
        raise SystemExit(exc.exit_code) from None


def _main_parsed(stage: Stage[Any, Any], args: argparse.Namespace, interactive: bool) -> Any:
    """:func:`main` after parsing; a RunlockError raised here is rendered by :func:`main`."""
    level = verbosity_level(args.verbose, args.quiet)
    if args.resume is not None:
        _check_resume(args)
    if args.sweep:
        stage = _with_options(stage, log_level=level)
        return _main_sweep(stage, args, interactive)
    if args.map_file:
        stage = _with_options(stage, log_level=level)
        return _main_map(stage, args, interactive)
    cfg, experiment = compose_from_args(stage, args)
    if args.show_config:
        if isinstance(cfg, plainconfig.PlainConfig):
            print(plainconfig.to_yaml(cfg), end="")
        else:
            from ..config import omega as cfgmod

            print(cfgmod.to_yaml(cfg, resolve=False), end="")
        return None
    options = dataclasses.replace(stage.options, log_level=level)
    if args.save_dir:
        options = dataclasses.replace(options, save_dir=args.save_dir, dir_field=None)
    outcome: Outcome = stage._execute(  # noqa: SLF001 - the CLI is the stage's own front end
        cfg,
        options=options,
        experiment=experiment,
        capture_locals=interactive,
        reraise=False,
    )
    if interactive:
        push_to_namespace(outcome.locals)
        if outcome.error is not None:
            show_traceback(outcome.error)
            print(f"runlock: run {outcome.run_id} {outcome.status}; locals are in the namespace; run dir {outcome.run_dir}", file=sys.stderr)
        return outcome
    if outcome.error is not None:
        print(outcome.traceback or "", file=sys.stderr, end="")
        print(f"runlock: run {outcome.run_id} {outcome.status} ({outcome.run_dir})", file=sys.stderr)
        if isinstance(outcome.error, RunInterrupted):
            _resend_sigterm()  # die of SIGTERM, as the sender (SLURM, a supervisor) expects
        raise SystemExit(EXIT_INTERRUPTED if outcome.status == "interrupted" else EXIT_FAILED)
    logging.getLogger("runlock").debug("run dir %s", outcome.run_dir)
    return outcome.value
