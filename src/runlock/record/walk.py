"""The results-root walker: every run directory under a root, with one symlink policy.

Listing, resolving, pushing and sweeps all ask "which runs are under this root?"; they ask this
module, so a run that one command sees, every command sees (a pulled run is a symlink into the
store: a walker that skipped symlinks hid it from ``ls`` while ``push`` found it).

The policy:

* a directory holding a ``run.lock`` is a run; its contents (outputs, possibly huge) are never
  walked;
* a symlinked run directory is a run wherever it points, listed under its link path inside the
  root (paths stay confined to the root);
* a symlink to a directory that is not a run is walked like a directory, but each real
  directory at most once (link loops end, a folder linked twice is listed once);
* the same real run reached by two paths is listed once: under its real path when that lies in
  the root, else under the smallest link path;
* hidden directories (``.runlock`` state, ``.git``) are skipped;
* a symlink whose target is gone (a pulled run's store removed) is reported as ``dangling``;
* a ``run.lock`` directly in the root is not a run (runs live in ``<root>/<stage>/...``): it
  is reported as ``stray`` and the walk goes on (a stray lock once hid every run).

Cost: one ``stat`` of ``<dir>/run.lock`` per directory, plus one ``stat`` and one ``scandir``
per non-run directory (a "container": the root, stage and experiment folders; few).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from .rundir import LOCK_NAME

__all__ = ["RootScan", "iter_run_dirs", "scan"]


class RootScan(NamedTuple):
    """What one walk of a results root found."""

    #: ``{lock path: stat of the lock}`` of every run, under the path it is listed at
    runs: dict[str, os.stat_result]
    #: ``{container directory: mtime_ns}``: adding, removing, renaming or pulling a run changes
    #: its container's mtime (and ``lockfile.dump_lock`` bumps it when a lock is rewritten)
    containers: dict[str, int]
    #: lock paths of runs that are themselves symlinks (pulled runs): the directory holding their
    #: lock lies outside the root, so only a stat of the lock sees it rewritten
    linked: frozenset[str]
    #: symlinks in a container whose target is gone (a pulled run whose store was removed or
    #: unmounted): broken entries, reported like unreadable locks; creating or removing one
    #: changes its container's mtime, its target coming back does not (see ``browse.index``)
    dangling: frozenset[str] = frozenset()
    #: ``<root>/run.lock`` when there is one: not a run, reported like an unreadable lock
    stray: frozenset[str] = frozenset()


def scan(root: Path | str) -> RootScan:
    """Walk ``root`` once (see the module docstring for the policy)."""
    top = os.fspath(root)
    runs: dict[str, os.stat_result] = {}
    containers: dict[str, int] = {}
    # (st_dev, st_ino) of a run's lock -> (reached through a link, the path it is listed under)
    seen_runs: dict[tuple[int, int], tuple[bool, str]] = {}
    seen_dirs: set[tuple[int, int]] = set()
    stat = os.stat
    tail = os.sep + LOCK_NAME

    def add_run(lock: str, st: os.stat_result, via_link: bool) -> None:
        key = (st.st_dev, st.st_ino)
        prev = seen_runs.get(key)
        if prev is not None:
            if prev <= (via_link, lock):
                return
            del runs[prev[1]]
        seen_runs[key] = (via_link, lock)
        runs[lock] = st

    # A lock in the root itself is stray, never the root's run: the walk goes on (one stat).
    stray = frozenset([top + tail]) if os.path.lexists(top + tail) else frozenset[str]()
    # Directories reached without a link are all walked before any reached through one, so a
    # folder or run that is both in the root and linked to is listed under its real path.
    real: list[str] = [top]
    through_links: list[str] = []
    symlinked_runs: set[str] = set()
    dangling: set[str] = set()
    while real or through_links:
        via_link = not real
        d = real.pop() if real else through_links.pop()
        try:
            # stat before scandir: a change during the scan leaves a newer mtime, seen next time
            dst = stat(d)
        except OSError:
            continue
        ident = (dst.st_dev, dst.st_ino)
        if ident in seen_dirs:
            continue  # a link loop, or a folder linked twice
        seen_dirs.add(ident)
        containers[d] = dst.st_mtime_ns
        try:
            it = os.scandir(d)
        except OSError:
            continue
        subdirs: list[str] = []
        linked_dirs: list[str] = []
        with it:
            for entry in it:
                if entry.name[0] == ".":
                    continue
                try:
                    if not entry.is_dir():  # follows symlinks: a linked run is a run
                        # a link to nothing: one more stat, for links to files only (rare)
                        if entry.is_symlink() and not os.path.exists(entry.path):
                            dangling.add(entry.path)
                        continue
                    is_link = entry.is_symlink()
                except OSError:
                    continue
                lock = entry.path + tail
                try:
                    st = stat(lock)
                except (FileNotFoundError, NotADirectoryError):
                    (linked_dirs if via_link or is_link else subdirs).append(entry.path)
                    continue
                except OSError:
                    continue
                add_run(lock, st, via_link or is_link)
                if is_link:
                    symlinked_runs.add(lock)
        # popped in path order: the smaller link path wins a tie, whatever scandir's order
        real.extend(sorted(subdirs, reverse=True))
        through_links.extend(sorted(linked_dirs, reverse=True))
    return RootScan(
        runs, containers, frozenset(symlinked_runs & runs.keys()), frozenset(dangling), stray
    )


def iter_run_dirs(root: Path | str, *, stage: str | None = None) -> Iterator[Path]:
    """Run directories under ``root``, sorted by path; ``stage``: only those under
    ``<root>/<stage>`` (the folder a stage writes its runs to)."""
    base = Path(root) / stage if stage is not None else Path(root)
    if not base.is_dir():
        return
    for lock in sorted(scan(base).runs):
        yield Path(lock).parent
