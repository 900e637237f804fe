"""``runlock compare RUN...``: the config keys that vary across runs, next to their results."""

from __future__ import annotations

import argparse
from typing import Any

from .ls import add_group_arguments, add_root_argument, header_names, root_of


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "compare",
        help="config keys that vary across runs, next to their results",
        description="A table of the selected runs: the config keys whose values differ between "
        "them, then every result field. RUN is an id, a unique id prefix or a path; --sweep and "
        "--experiment select runs too (with RUNs: the runs named, and those selected).",
    )
    p.add_argument("run_refs", nargs="*", metavar="RUN")
    add_group_arguments(p)
    p.add_argument("--json", action="store_true", help="JSON output")
    add_root_argument(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import sys

    from ..browse.query import RunList, select_runs
    from ..browse.render import fmt_value, print_json, print_table
    from ..browse.resolve import resolve_runs
    from ..errors import UsageError
    from .ls import no_match_message

    root = root_of(args)
    if not (args.run_refs or args.sweep or args.experiment):
        raise UsageError(
            "Nothing to compare.",
            hint="name runs (ids, prefixes, paths) or select them: --sweep ID, --experiment NAME.",
        )
    records = resolve_runs(args.run_refs, root)
    if args.sweep or args.experiment:
        selected = select_runs(root, experiment=args.experiment, sweep=args.sweep, sort="id")
        if not selected:
            print(f"runlock: {no_match_message(args)}", file=sys.stderr)
            if not records:
                return 0
        named = {r.dir.resolve() for r in records}
        records = RunList([*records, *(r for r in selected if r.dir.resolve() not in named)])
    config_keys = records.varying_config_keys()
    result_keys = records.keys("result")
    keys = config_keys + result_keys
    if args.json:
        print_json({
            "varying_config": config_keys,
            "results": result_keys,
            "runs": [{"id": r.id, "stage": r.stage, "status": r.status, "dir": str(r.dir),
                      **{k: r.params.get(k) for k in keys}} for r in records],
        })  # fmt: skip
        return 0
    rows = [[r.id, r.stage, r.status, *(fmt_value(r.params.get(k)) for k in keys)] for r in records]
    print_table(["id", "stage", "status", *header_names(keys)], rows, status_column=2)
    if len(records) > 1 and not config_keys:
        print("(the runs have identical configs)")
    return 0
