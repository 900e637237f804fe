"""``runlock pull RUN_ID [--from REMOTE] [--copy] [--force]``: bring a run and its lineage back."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "pull",
        help="bring a run and its upstream runs back from the shared store",
        description="Bring RUN_ID and its lineage from the store into the results root (at "
        "the path each had there), and fetch their source snapshots. A store that is a local "
        "directory is symlinked unless --copy.",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="run id or unique id prefix on the store")
    p.add_argument("--from", dest="remote", metavar="REMOTE",
                   help="rclone remote; default: $RUNLOCK_REMOTE or [tool.runlock] remote")
    p.add_argument("--copy", action="store_true",
                   help="copy even from a local-directory store (default there: symlink)")
    p.add_argument("--force", action="store_true",
                   help="replace local runs that differ from the store")
    p.add_argument("--code-remote", metavar="NAME", help="git remote to fetch snapshots from")
    p.add_argument("--no-code", action="store_true", help="pull the data only")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..store import rclone
    from ..store.remote import pull

    report = pull(
        args.run_id,
        remote=args.remote,
        root=Path(args.root) if args.root else None,
        copy=args.copy,
        force=args.force,
        code=not args.no_code,
        code_remote=args.code_remote,
        progress=rclone.progress_wanted(quiet=bool(args.quiet)),
    )
    for w in report.warnings:
        print(f"runlock: warning: {w}")
    if not args.quiet:
        for m in report.runs:
            extra = f" ({m.stats.transfers} files)" if m.action in ("copied", "replaced") else ""
            print(f"{m.action:8} {m.id}  {m.local}{extra}")
        for ref in report.code_refs:
            print(f"fetched  {ref}")
    return 0
