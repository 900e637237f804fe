"""``runlock reproduce RUN [--check-env]``: re-run a stage from its snapshot and compare."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "reproduce",
        help="re-run a run from its source snapshot, config and seed; compare the outputs",
        description="Check out RUN's source snapshot into a temporary git worktree, verify its "
        "inputs against their recorded hashes (pulling missing upstream runs), re-run the stage "
        "with the recorded config and seed into a new run directory (lock key `reproduces`), "
        "and report file by file whether the outputs match. Exit 0 when they all match, 1 "
        "otherwise.",
    )
    p.add_argument("run", metavar="RUN", help="run directory, id or unique id prefix")
    p.add_argument("--check-env", action="store_true",
                   help="report installed packages that differ from the lock first")
    p.add_argument("--from", dest="remote", metavar="REMOTE",
                   help="store to pull missing upstream runs from")
    p.add_argument("--code-remote", metavar="NAME", help="git remote to fetch the snapshot from")
    p.add_argument("--no-pull", action="store_true", help="never pull missing upstream runs")
    p.add_argument("--save-dir", metavar="DIR", help="directory of the new run")
    p.add_argument("--all-files", action="store_true", help="list matching files too")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..store.reproduce import reproduce

    rep = reproduce(
        args.run,
        root=Path(args.root) if args.root else None,
        remote=args.remote,
        code_remote=args.code_remote,
        check_env=args.check_env,
        pull_missing=not args.no_pull,
        save_dir=args.save_dir,
    )
    if args.check_env:
        if rep.packages:
            print(f"{len(rep.packages)} package(s) differ from the lock:")
            for d in rep.packages:
                print(f"  {d.name}: {d.recorded or '(not recorded)'} -> {d.current or '(not installed)'}")
        else:
            print("packages: same as the lock")
    for rid in rep.pulled:
        print(f"pulled upstream run {rid}")
    print(f"reproduced {rep.run_id} (snapshot {(rep.commit or '?')[:12]}) -> {rep.new_run_dir}")
    if rep.error:
        print(f"the reproduction failed: {rep.error}")
    for f in rep.files:
        if (f.status == "same" and not args.all_files) or (f.status == "ignored" and not args.verbose):
            continue
        print(f"  {f.status:8} {f.path}")
    same = sum(f.status == "same" for f in rep.files)
    compared = sum(f.status != "ignored" for f in rep.files)
    if compared:
        print(f"outputs: {same}/{compared} files identical")
    if rep.result_match is not None:
        print(f"result: {'identical' if rep.result_match else 'DIFFERS'}")
    for n in rep.notes:
        print(f"note: {n}")
    print("REPRODUCED" if rep.ok else "NOT REPRODUCED")
    return 0 if rep.ok else 1
