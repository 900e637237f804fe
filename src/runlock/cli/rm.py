"""``runlock rm``: delete runs chosen by RUN references or filters, after confirmation.

Safety rules: never anything outside the results root (symlinks resolved first), never a run
whose process is alive, never without a "y" on a terminal or ``--force``. A symlinked run (what
``runlock pull`` leaves: ``<root>/<stage>/<id> -> <store>/runs/<id>``) is in the root as its link:
rm removes the link and never anything under its target (a store is shared); a link whose
store is gone (dangling) is removed by its path, or by its name when no run has that id.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .ls import add_filter_arguments, add_root_argument, root_of, select_from_args, warn_broken

if TYPE_CHECKING:
    from ..browse.query import RunRecord


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "rm",
        help="delete runs",
        description="Delete runs given as RUN ids/prefixes/paths, or every run matching the "
        "filters. Lists what will go and asks first; --force skips the question (needed when "
        "stdin is not a terminal).",
    )
    p.add_argument("run_refs", nargs="*", metavar="RUN")
    add_filter_arguments(p, stage_option=True)
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.add_argument("-n", "--dry-run", action="store_true", help="only list what would be deleted")
    p.add_argument(
        "--keep-snapshots",
        action="store_true",
        help="keep each deleted run's snapshot ref (refs/runlock/runs/<id>); the shared "
        "snapshot branch is always kept",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="JSON output on stdout: what was (or, with --dry-run, would be) deleted; the "
        "listing and the question go to stderr",
    )
    add_root_argument(p)
    p.set_defaults(func=run)
    return p


def _has_filters(args: argparse.Namespace) -> bool:
    return bool(
        args.stage or args.status or args.since or args.where or args.experiment or args.sweep
    )


class Deletion(NamedTuple):
    """What deleting one run removes: its directory tree, or only its link."""

    record: RunRecord
    #: the resolved run directory, or a link's own path (its parent resolved, not the link)
    path: Path
    #: where the link points (kept); None for a real directory
    link_target: Path | None


def check_inside(records: Sequence[RunRecord], root: Path) -> list[Deletion]:
    """What deleting ``records`` removes, every path confined to the results root; refuses
    (deleting nothing) when any is outside.

    A run directory that is a symlink is removed as a link: the link itself must lie in the root
    (its parent resolved, not the link), wherever it points. Any other run directory must
    resolve inside the root (one reached through a linked folder out of the root is refused).
    """
    from ..errors import UsageError

    root_real = root.resolve()
    plan, outside = [], []
    for r in records:
        d = Path(os.path.abspath(r.dir))
        if d.is_symlink():
            path, target = d.parent.resolve() / d.name, d.resolve()
        else:
            path, target = d.resolve(), None
        if path == root_real or not path.is_relative_to(root_real):
            outside.append(f"{r.dir}" + (f" (-> {path})" if path != r.dir else ""))
        plan.append(Deletion(r, path, target))
    if outside:
        raise UsageError(
            f"Refusing to delete {len(outside)} run director{'y' if len(outside) == 1 else 'ies'} "
            f"outside the results root {root_real}:\n    " + "\n    ".join(outside),
            hint="runlock rm only deletes runs under the results root; pass --root, or delete "
            "the directory yourself.",
        )
    return plan


def dangling_links(refs: Sequence[str], root: Path) -> tuple[list[Path], list[str]]:
    """Split RUN references into dangling links (a pulled run whose store is gone: nothing to
    resolve, only the link to remove) and the rest. A link is named by its path, or by its name
    (a run id) when no run has that id and ``ls`` lists one dangling link of that name.

    Each link is confined by its parent directory, never resolved: it must lie in the root.
    """
    from ..browse.index import RunIndex
    from ..browse.resolve import looks_like_path, resolve_run
    from ..errors import RunNotFoundError, UsageError

    known: list[str] | None = None
    links: dict[Path, None] = {}
    rest = []
    for ref in refs:
        found: Path | None = None
        if looks_like_path(ref):
            path = Path(ref).expanduser()
            candidates = [path] if path.is_absolute() else [Path.cwd() / path, root / path]
            found = next((c for c in candidates if c.is_symlink() and not c.exists()), None)
        else:
            try:
                resolve_run(ref, root)
            except RunNotFoundError:
                if known is None:
                    with RunIndex(root) as idx:
                        idx.refresh()
                        known = idx.dangling()
                named = [Path(k) for k in known if os.path.basename(k) == ref]
                found = named[0] if len(named) == 1 else None
        if found is None:
            rest.append(ref)
            continue
        link = Path(os.path.abspath(found))
        where = link.parent.resolve() / link.name
        root_real = root.resolve()
        if where == root_real or not where.is_relative_to(root_real):
            raise UsageError(
                f"Refusing to remove the link {found}: it is outside the results root {root_real}.",
                hint="pass --root, or remove the link yourself.",
            )
        links[where] = None
    return list(links), rest


def _confirm(count: int, *, prompt_to_stderr: bool = False) -> bool:
    from ..errors import RunlockError

    if not sys.stdin or not sys.stdin.isatty():
        raise RunlockError(
            f"Refusing to delete {count} run{'s' if count != 1 else ''} without confirmation: "
            "stdin is not a terminal.",
            hint="re-run with --force to delete without asking (or --dry-run to only list).",
        )
    question = f"Delete {count} run{'s' if count != 1 else ''}? [y/N] "
    try:
        if prompt_to_stderr:  # stdout carries only the JSON document
            print(question, end="", file=sys.stderr, flush=True)
            question = ""
        answer = input(question)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _delete(item: Deletion) -> None:
    """Remove a run directory tree, or only the link of a symlinked run (never its target)."""
    import shutil

    if item.link_target is not None:
        os.unlink(item.path)
    else:
        shutil.rmtree(item.path)


def _drop_run_refs(deleted: Sequence[RunRecord]) -> list[str]:
    """Delete each deleted run's own snapshot ref (``refs/runlock/runs/<id>``, when it still
    points to the run's snapshot commit); returns the refs removed.

    Never the shared shadow branch: runs in another results root of the repository, or still
    starting (no lock yet to find them by), need it, and ``git gc`` would take their snapshots.
    """
    from .. import git as git_mod
    from ..errors import RunlockError
    from ..record.runid import is_run_id

    removed = []
    for r in deleted:
        if not (r.git_root and r.snapshot and is_run_id(r.id) and Path(r.git_root).is_dir()):
            continue
        try:
            if git_mod.delete_run_ref(Path(r.git_root), r.id, r.snapshot):
                removed.append(f"{git_mod.RUN_REF_PREFIX}{r.id}")
        except (RunlockError, OSError) as exc:
            print(f"runlock: warning: could not delete the snapshot ref of {r.id} in "
                  f"{r.git_root}: {exc}", file=sys.stderr)  # fmt: skip
    return removed


def _entry(r: RunRecord, **extra: Any) -> dict[str, Any]:
    return {"id": r.id, "stage": r.stage, "status": r.status, "dir": str(r.dir), **extra}


def run(args: argparse.Namespace) -> int:
    from ..browse.index import RunIndex
    from ..browse.render import fmt_time, print_json, print_table
    from ..browse.resolve import resolve_runs
    from ..errors import UsageError

    root = root_of(args)
    if args.run_refs and _has_filters(args):
        raise UsageError(
            "Give RUN references or filters (--stage/--status/--since/--where/--experiment/"
            "--sweep), not both."
        )
    links: list[Path] = []
    if args.run_refs:
        links, run_refs = dangling_links(args.run_refs, root)
        records = list(resolve_runs(run_refs, root))
    elif _has_filters(args):
        found, broken = select_from_args(args)
        warn_broken(broken)
        records = list(found)
    else:
        raise UsageError(
            "Nothing selected: refusing to delete every run.",
            hint="name runs (ids, prefixes, paths) or filter them: --stage, --status, --since, "
            "--where, --experiment, --sweep.",
        )
    as_json = bool(getattr(args, "json", False))
    out = sys.stderr if as_json else sys.stdout  # with --json, stdout is the JSON document
    report: dict[str, Any] = {
        "dry_run": bool(args.dry_run), "deleted": [], "unlinked": [], "dangling_links": [],
        "skipped_running": [], "snapshot_refs": [], "failed": [],
    }  # fmt: skip
    plan = check_inside(records, root)
    live = [d.record for d in plan if d.record.status in ("running", "stopped")]
    if live:
        names = ", ".join(r.id for r in live)
        print(f"runlock: skipping {len(live)} run(s) still running: {names}",
              file=sys.stderr)  # fmt: skip
        plan = [d for d in plan if d.record.status not in ("running", "stopped")]
        report["skipped_running"] = [_entry(r) for r in live]
    if not plan and not links:
        print("runlock: no runs to delete", file=sys.stderr)
        if as_json:
            print_json(report)
        return 0
    shown = [d.record for d in plan]
    print_table(
        ["id", "stage", "status", "start", "dir"],
        [[r.id, r.stage, r.status, fmt_time(r.start), str(r.dir)] for r in shown]
        + [["?", "?", "dangling", "-", str(link)] for link in links],
        status_column=2,
        stream=out,
    )
    n_links = sum(d.link_target is not None for d in plan) + len(links)
    if args.dry_run:
        kept = f"; {n_links} of them links: only the link would go" if n_links else ""
        print(f"(dry run: {len(plan) + len(links)} run(s) would be deleted{kept})", file=out)
        if as_json:
            for d in plan:
                key = "deleted" if d.link_target is None else "unlinked"
                extra = {} if d.link_target is None else {"target": str(d.link_target)}
                report[key].append(_entry(d.record, **extra))
            report["dangling_links"] = [str(link) for link in links]
            print_json(report)
        return 0
    if not args.force and not _confirm(len(plan) + len(links), prompt_to_stderr=as_json):
        print("runlock: nothing deleted", file=sys.stderr)
        return 1
    deleted: list[RunRecord] = []
    unlinked: list[RunRecord] = []
    failed = []
    for link in links:
        try:
            target = os.readlink(link)
            os.unlink(link)
        except OSError as exc:
            failed.append(f"{link}: {exc}")
            report["failed"].append({"path": str(link), "error": str(exc)})
            continue
        report["dangling_links"].append(str(link))
        print(f"removed dangling link {link} -> {target}", file=out)
    for d in plan:
        try:
            _delete(d)
        except OSError as exc:
            failed.append(f"{d.record.dir}: {exc}")
            report["failed"].append({"path": str(d.record.dir), "error": str(exc)})
            continue
        if d.link_target is None:
            deleted.append(d.record)
            report["deleted"].append(_entry(d.record))
        else:
            unlinked.append(d.record)
            report["unlinked"].append(_entry(d.record, target=str(d.link_target)))
            print(f"removed link {d.record.dir} -> {d.link_target} (the store copy is kept)",
                  file=out)  # fmt: skip
    with RunIndex(root) as idx:
        idx.forget(str(r.lock_path) for r in (*deleted, *unlinked))
    if deleted or not (unlinked or links):
        print(f"deleted {len(deleted)} run(s)", file=out)
    if not args.keep_snapshots:  # a linked run's store copy still uses its snapshot
        refs = _drop_run_refs(deleted)
        report["snapshot_refs"] = refs
        if refs:
            print(f"deleted {len(refs)} snapshot ref(s) (the shadow branch is kept)", file=out)
    if as_json:
        print_json(report)
    if failed:
        print("runlock: error: could not delete:\n    " + "\n    ".join(failed), file=sys.stderr)
        return 1
    return 0
