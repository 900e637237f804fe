"""``runlock mlflow sync``: (re-)log past runs to MLflow with today's logging function.

The run directories stay the truth; this rebuilds their MLflow copies, e.g. after adding a plot
to your ``log_fn``, without re-running anything.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..logs import use_rich


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "mlflow",
        help="log runs to MLflow",
        description="Mirror runs into MLflow (default store: sqlite under <root>/.runlock).",
    )

    def usage(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)
    msub = p.add_subparsers(dest="mlflow_command", metavar="COMMAND")
    s: argparse.ArgumentParser = msub.add_parser(
        "sync",
        help="(re-)log matching runs to MLflow",
        description="Log every matching run to MLflow, updating runs logged before (found by "
        "their runlock.id tag), then call --log-fn inside each MLflow run. One run's failure "
        "is reported and the others go on; the exit code is 1 if any failed.",
    )
    s.add_argument("stage", nargs="?", help="only runs of this stage (glob allowed: 'train*')")
    s.add_argument(
        "--status",
        action="append",
        metavar="STATUS",
        help="completed, failed, running, interrupted or crashed (repeat or comma-separate)",
    )
    s.add_argument(
        "--since", metavar="AGE|DATE", help="started within 30m, 3h, 2d, 1w or since a date"
    )
    s.add_argument(
        "-w",
        "--where",
        action="append",
        default=[],
        metavar="KEY<OP>VALUE",
        help="config/result filter, e.g. lr=0.1 'acc>0.8' (repeat = AND)",
    )
    s.add_argument(
        "--log-fn",
        metavar="MODULE:FUNCTION",
        help="extra logging, called as fn(run_dir, lock, mlflow_active_run) inside each run "
        "(module path or file.py; the current directory is importable)",
    )
    s.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
        "[tool.runlock] mlflow_tracking_uri, else sqlite under the results root)",
    )
    s.add_argument("--experiment", help="MLflow experiment (default: the run's stage)")
    s.add_argument("--root", default=argparse.SUPPRESS, help="results root")
    s.set_defaults(func=run)
    return p


def load_log_fn(spec: str) -> Callable[..., object]:
    """``package.module:function`` or ``path/to/file.py:function`` -> the function."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise UsageError(
            f"--log-fn {spec!r} is not MODULE:FUNCTION.", hint="e.g. --log-fn my_stage:log_run"
        )
    try:
        if target.endswith(".py") or "/" in target:
            path = Path(target).expanduser().absolute()
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            if module_spec is None or module_spec.loader is None or not path.is_file():
                raise UsageError(f"--log-fn: no Python file at {path}.")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules.setdefault(path.stem, module)
            module_spec.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))  # like `python -m`: the project is importable
            module = importlib.import_module(target)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(
            f"--log-fn: cannot import {target!r}: {type(exc).__name__}: {exc}"
        ) from exc
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UsageError(f"--log-fn: {target!r} has no function {name!r}.")
    return fn  # type: ignore[no-any-return]


def select_run_dirs(
    root: Path,
    *,
    stage: str | None = None,
    status: Sequence[str] | None = None,
    since: str | None = None,
    where: Sequence[str] = (),
) -> list[Path]:
    """Run directories matching the filters (the same language as ``runlock ls``), oldest first."""
    from ..browse.filters import parse_since, parse_statuses, parse_where_all
    from ..browse.query import select_runs

    records = select_runs(
        root,
        stage=stage,
        statuses=parse_statuses(status),
        since=parse_since(since),
        conditions=parse_where_all(list(where)),
    )
    return [r.dir for r in reversed(records)]  # oldest first: MLflow lists them in run order


def run(args: argparse.Namespace) -> int:
    from ..settings import results_root

    root = results_root(getattr(args, "root", None))
    log_fn = load_log_fn(args.log_fn) if args.log_fn else None
    dirs = select_run_dirs(
        root, stage=args.stage, status=args.status, since=args.since, where=args.where
    )
    if not dirs:
        print(f"No matching runs under {root}.", file=sys.stderr)
        return 0

    from ..redact import redact_url
    from ..tracking.mlflow import resolve_tracking_uri, sync_runs

    uri = resolve_tracking_uri(args.tracking_uri, root=root)
    failures: list[tuple[Path, str]] = []
    interactive = use_rich()

    def note(path: Path, run_id: str | None, error: str | None) -> None:
        if error is not None:
            failures.append((path, error))
            if not interactive:
                print(f"FAILED {path}: {error}", file=sys.stderr)
        elif not interactive:
            print(f"logged {path} -> {run_id}", file=sys.stderr)

    if interactive:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        console = Console(stderr=True)
        with Progress(
            TextColumn("[bold]mlflow sync"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
        ) as progress:
            task = progress.add_task("", total=len(dirs))

            def advance(path: Path, run_id: str | None, error: str | None) -> None:
                note(path, run_id, error)
                if error is not None:
                    progress.console.print(
                        f"[red]FAILED[/red] {path}: {error}", markup=True, highlight=False
                    )
                progress.update(task, advance=1, description=path.name)

            report = sync_runs(
                dirs, tracking_uri=uri, experiment=args.experiment, log_fn=log_fn, on_done=advance
            )
    else:
        report = sync_runs(
            dirs, tracking_uri=uri, experiment=args.experiment, log_fn=log_fn, on_done=note
        )

    where = redact_url(report.tracking_uri)
    print(f"Logged {len(report.logged)} run(s) to {where}; {len(report.failed)} failed.")
    return 1 if report.failed else 0
