"""``runlock push RUN [--to REMOTE]``: send a run, its lineage and its source snapshots."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "push",
        help="send a run and its upstream runs to the shared store (rclone) and their code to git",
        description="Send RUN and every upstream run of its lineage to the store "
        "(<remote>/runs/<id>/), and their source snapshots to the code remote as "
        "refs/runlock/runs/<id>. Re-run after an interruption: only what is missing is sent.",
    )
    p.add_argument("run", metavar="RUN", help="run directory, id or unique id prefix")
    p.add_argument("--to", dest="remote", metavar="REMOTE",
                   help="rclone remote (b2:bucket/runs, sftp:dir, /srv/runs); default: "
                   "$RUNLOCK_REMOTE or [tool.runlock] remote")
    p.add_argument("--code-remote", metavar="NAME",
                   help="git remote for source snapshots (default: [tool.runlock] code_remote "
                   "or origin)")
    p.add_argument("--no-code", action="store_true", help="push the data only")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..store import rclone
    from ..store.remote import push

    report = push(
        args.run,
        remote=args.remote,
        root=Path(args.root) if args.root else None,
        code=not args.no_code,
        code_remote=args.code_remote,
        progress=rclone.progress_wanted(quiet=bool(args.quiet)),
    )
    for w in report.warnings:
        print(f"runlock: warning: {w}")
    if not args.quiet:
        for m in report.runs:
            s = m.stats
            print(f"pushed {m.id}  {s.transfers} files sent, {s.checks} already there  -> {m.remote}")
        for ref in report.code_refs:
            print(f"pushed code {ref}")
    return 0
