"""``runlock ls``: one row per run, filtered by stage, status, age and config/result values."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..browse.query import RunList, RunRecord

#: How many result fields ls shows when no --columns is given.
DEFAULT_RESULT_COLUMNS = 5


def add_root_argument(parser: argparse.ArgumentParser) -> None:
    """``--root`` after the sub-command too (the global one stays the default)."""
    parser.add_argument("--root", default=argparse.SUPPRESS, help="results root")


def add_filter_arguments(parser: argparse.ArgumentParser, *, stage_option: bool = False) -> None:
    """Filters shared by ls and rm."""
    if stage_option:
        parser.add_argument("--stage", help="only runs of this stage (glob allowed: 'train*')")
    parser.add_argument(
        "--status",
        action="append",
        metavar="STATUS",
        help="completed, failed, running, interrupted or crashed (repeat or comma-separate)",
    )
    parser.add_argument(
        "--since", metavar="AGE|DATE", help="started within 30m, 3h, 2d, 1w or since a date"
    )
    parser.add_argument(
        "-w",
        "--where",
        action="append",
        default=[],
        metavar="KEY<OP>VALUE",
        help="config/result filter, e.g. lr=0.1 'acc>0.8' config.optim!=adam (repeat = AND)",
    )
    add_group_arguments(parser)


def add_group_arguments(parser: argparse.ArgumentParser) -> None:
    """``--experiment`` and ``--sweep``: the runs of one experiment or of one sweep."""
    parser.add_argument(
        "--experiment", metavar="NAME", help="only runs of this experiment (glob allowed: 'ablation/*')"
    )
    parser.add_argument(
        "--sweep", metavar="ID", help="only the points of this sweep (its id or an id prefix)"
    )


def describe_filters(args: argparse.Namespace) -> str:
    """The filters given, as the user spelt them (for "no runs match ...")."""
    parts = []
    if getattr(args, "stage", None):
        parts.append(f"stage {args.stage}")
    for name in ("experiment", "sweep", "since"):
        if getattr(args, name, None):
            parts.append(f"--{name} {getattr(args, name)}")
    for status in getattr(args, "status", None) or ():
        parts.append(f"--status {status}")
    parts += [f"--where {w}" for w in getattr(args, "where", None) or ()]
    return ", ".join(parts)


def no_match_message(args: argparse.Namespace) -> str:
    """Why a listing is empty: no runs at all, or filters that match none of them."""
    from ..browse.query import select_runs

    root = root_of(args)
    filters = describe_filters(args)
    if not filters:
        return f"no runs found under {root}"
    total = len(select_runs(root))
    return f"no runs match {filters} ({total} run{'' if total == 1 else 's'} in {root})"


def root_of(args: argparse.Namespace) -> Path:
    from ..settings import results_root

    return results_root(getattr(args, "root", None))


def select_from_args(
    args: argparse.Namespace, *, sort: Any = None, limit: int | None = None
) -> tuple[RunList, list[tuple[str, str]]]:
    """Runs matching the filter options, and the unreadable locks met on the way."""
    from ..browse.filters import parse_since, parse_statuses, parse_where_all
    from ..browse.query import select_runs

    broken: list[tuple[str, str]] = []
    records = select_runs(
        root_of(args),
        stage=getattr(args, "stage", None),
        statuses=parse_statuses(args.status),
        since=parse_since(args.since),
        conditions=parse_where_all(args.where),
        experiment=getattr(args, "experiment", None),
        sweep=getattr(args, "sweep", None),
        sort=sort,
        limit=limit,
        broken=broken,
        refresh=getattr(args, "refresh", False),
    )
    return records, broken


def warn_broken(broken: Sequence[tuple[str, str]]) -> None:
    from ..browse.index import DANGLING_LINK

    links = [path for path, reason in broken if reason == DANGLING_LINK]
    broken = [(path, reason) for path, reason in broken if reason != DANGLING_LINK]
    if links:
        more = f" (and {len(links) - 1} more)" if len(links) > 1 else ""
        print(
            f"runlock: warning: {len(links)} dangling link{'s' if len(links) > 1 else ''} "
            f"(store gone?): {links[0]}{more}; `runlock rm PATH` removes a link",
            file=sys.stderr,
        )
    if broken:
        path, reason = broken[0]
        more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
        print(
            f"runlock: warning: skipped {len(broken)} unreadable run.lock: {path}: {reason}{more}",
            file=sys.stderr,
        )


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "ls",
        help="list runs",
        description="List runs, newest first. Keys in --where/--columns/--sort address "
        "config.* and result.*; a bare key is looked up in the config, then the result.",
    )
    p.add_argument("stage", nargs="?", help="only runs of this stage (glob allowed: 'train*')")
    add_filter_arguments(p)
    p.add_argument(
        "-c",
        "--columns",
        action="append",
        default=[],
        metavar="KEYS",
        help="extra columns: config/result keys, comma-separated or repeated",
    )
    p.add_argument(
        "--sort",
        metavar="KEYS",
        help="sort keys, comma-separated; '-key' descends (default -start)",
    )
    p.add_argument("-n", "--limit", type=int, metavar="N", help="show at most N runs")
    p.add_argument(
        "--wide", action="store_true", help="add every config key that varies, and all results"
    )
    p.add_argument("--json", action="store_true", help="JSON output (a list of runs)")
    p.add_argument(
        "--refresh",
        action="store_true",
        help="check every run.lock for changes (slower): the way to pick up a finished lock "
        "edited by hand (sed -i, an editor, cp over it); new, removed, finished, running and "
        "unreadable runs are picked up without it",
    )
    add_root_argument(p)
    p.set_defaults(func=run)
    return p


def column_keys(
    records: RunList, *, where_labels: Sequence[str], columns: Sequence[str], wide: bool
) -> list[str]:
    """Extra (non-builtin) columns: --where keys, --columns keys, then varying config + results."""
    keys = list(where_labels)
    for spec in columns:
        keys.extend(k.strip() for k in spec.split(",") if k.strip())
    if wide:
        keys += records.varying_config_keys() + records.keys("result")
    elif not columns:
        keys += records.keys("result")[:DEFAULT_RESULT_COLUMNS]
    # "config.lr" and a bare "lr" are the same column when the config has lr
    seen: dict[str, str] = {}
    for k in keys:
        seen.setdefault(_canonical(records, k), k)
    return list(seen.values())


def _canonical(records: RunList, key: str) -> str:
    from ..browse.filters import split_key
    from ..browse.query import BUILTIN_KEYS

    if key in BUILTIN_KEYS:
        return key
    section, name = split_key(key)
    if section:
        return key
    if any(r.has(f"config.{name}") for r in records):
        return f"config.{name}"
    return f"result.{name}"


def header_names(keys: Sequence[str]) -> list[str]:
    """Drop the ``config.``/``result.`` prefix unless two columns would look the same."""
    from ..browse.filters import split_key

    bare = [split_key(k)[1] for k in keys]
    return [b if bare.count(b) == 1 else k for k, b in zip(keys, bare, strict=True)]


def table_rows(records: Sequence[RunRecord], keys: Sequence[str]) -> list[list[str]]:
    from ..browse.render import fmt_duration, fmt_timestamp, fmt_value

    rows = []
    for r in records:
        row = [
            r.id,
            r.stage,
            r.status,
            fmt_timestamp(r.start_ts),
            fmt_duration(r.duration),
            r.commit or "-",
        ]
        row += [fmt_value(r.get(k)) for k in keys]
        rows.append(row)
    return rows


BASE_HEADERS = ["id", "stage", "status", "start", "duration", "commit"]


def run(args: argparse.Namespace) -> int:
    import gc

    # A listing allocates a few objects per run and frees none of them before it prints: the
    # cyclic collector, triggered every 700 allocations, would walk them all again and again
    # (a fifth of a 10,000-run listing) to find nothing
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _list(args)
    finally:
        if was_enabled:
            gc.enable()


def _list(args: argparse.Namespace) -> int:
    from ..browse.filters import parse_where_all
    from ..browse.render import print_json, print_table

    sort = [s.strip() for s in args.sort.split(",") if s.strip()] if args.sort else None
    records, broken = select_from_args(args, sort=sort, limit=args.limit)
    warn_broken(broken)
    if args.json:
        print_json([r.to_dict() for r in records])
        return 0
    if not records:
        print(f"runlock: {no_match_message(args)}", file=sys.stderr)
        return 0
    labels = [c.label for c in parse_where_all(args.where)]
    keys = column_keys(records, where_labels=labels, columns=args.columns, wide=args.wide)
    print_table(
        BASE_HEADERS + header_names(keys),
        table_rows(records, keys),
        status_column=2,
    )
    return 0
