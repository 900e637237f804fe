"""``runlock remote ls|rm``: administer the shared store."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "remote", help="list or delete runs on the shared store",
        description="Administer the shared store (layout: <remote>/runs/<id>/, "
        "<remote>/index/<id>.json).",
    )
    remote_help = "rclone remote; default: $RUNLOCK_REMOTE or [tool.runlock] remote"
    p.add_argument("--remote", dest="remote", metavar="REMOTE", help=remote_help)
    rs = p.add_subparsers(dest="remote_command", metavar="ACTION")
    ls = rs.add_parser("ls", help="list runs on the store")
    ls.add_argument("stages", nargs="*", metavar="STAGE", help="only these stages")
    ls.add_argument("--stage", action="append", default=[], help="only this stage (repeatable)")
    ls.add_argument("--status", action="append", help="completed, failed, ... (repeatable)")
    ls.add_argument("--since", help="started within an age (3h, 2d) or after a date")
    ls.add_argument("--ids", action="store_true", help="print ids only")
    # after the action too (``remote ls --remote X``); SUPPRESS keeps one given before it
    ls.add_argument("--remote", default=argparse.SUPPRESS, metavar="REMOTE", help=remote_help)
    ls.set_defaults(func=run_ls)
    rm = rs.add_parser("rm", help="delete runs from the store (and their snapshot refs)")
    rm.add_argument("runs", nargs="+", metavar="RUN", help="run ids or unique prefixes")
    rm.add_argument("--force", action="store_true",
                    help="no confirmation; also delete runs other stored runs depend on")
    rm.add_argument("--keep-code", action="store_true", help="keep refs/runlock/runs/<id>")
    rm.add_argument("--remote", default=argparse.SUPPRESS, metavar="REMOTE", help=remote_help)
    rm.set_defaults(func=run_rm)
    def usage(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)
    return p


def run_ls(args: argparse.Namespace) -> int:
    from ..record.safe import printable
    from ..store.remote import list_remote

    entries = list_remote(args.remote, stage=[*args.stages, *args.stage] or None,
                          status=args.status, since=args.since)
    if args.ids:
        for e in entries:
            print(printable(e.id))
        return 0
    rows = [("ID", "STAGE", "STATUS", "START", "PATH", "UPSTREAM")]
    rows += [(e.id, e.stage, e.status or "-", (e.start or "-")[:19], e.relpath or "-",
              ",".join(e.upstream) or "-") for e in entries]
    shown = [[printable(c) for c in r] for r in rows]  # no forged line breaks
    widths = [max(len(r[i]) for r in shown) for i in range(len(shown[0]))]
    for r in shown:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def run_rm(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..store.remote import _match_id, read_index, remove_remote, resolve_remote

    store = resolve_remote(args.remote)
    if not args.force:
        index = read_index(store)
        names = [_match_id(index, r, store).id for r in args.runs]
        if not sys.stdin.isatty():
            raise UsageError("Refusing to delete runs from the store without confirmation.",
                             hint="pass --force")
        answer = input(f"Delete {len(names)} run(s) from the store: {', '.join(names)}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    removed = remove_remote(args.runs, remote=store, code=not args.keep_code, force=args.force)
    if not args.quiet:
        for e in removed:
            print(f"deleted {e.id}")
    return 0
