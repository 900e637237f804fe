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

__all__ = ["Folder", "RootScan", "iter_run_dirs", "list_folder", "scan"]


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
    #: a symlink led to a folder, or one run was reached by two paths: which path lists a run
    #: then depends on other folders, so no folder can be re-listed alone (see ``list_folder``)
    aliased: bool = False


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

    aliased = False  # a symlink led to a folder, or one run was reached by two paths

    def add_run(lock: str, st: os.stat_result, via_link: bool) -> None:
        nonlocal aliased
        key = (st.st_dev, st.st_ino)
        prev = seen_runs.get(key)
        if prev is not None:
            aliased = True
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
        folder = list_folder(d, dst.st_mtime_ns)
        if folder is None:
            continue
        dangling.update(folder.dangling)
        for lock, st, is_link in folder.runs:
            add_run(lock, st, via_link or is_link)
            if is_link:
                symlinked_runs.add(lock)
        if folder.linked_dirs:
            aliased = True
        # popped in path order: the smaller link path wins a tie, whatever scandir's order
        if via_link:
            through_links.extend(sorted(folder.subdirs + folder.linked_dirs, reverse=True))
        else:
            real.extend(sorted(folder.subdirs, reverse=True))
            through_links.extend(sorted(folder.linked_dirs, reverse=True))
    return RootScan(
        runs,
        containers,
        frozenset(symlinked_runs & runs.keys()),
        frozenset(dangling),
        stray,
        aliased or bool(symlinked_runs - runs.keys()),
    )


class Folder(NamedTuple):
    """One folder's direct entries, classified by the walker's policy (hidden ones skipped)."""

    #: mtime_ns of the folder, stat'ed before it was listed
    mtime_ns: int
    #: ``(lock path, stat of the lock, the run directory is a symlink)`` of each run in it
    runs: list[tuple[str, os.stat_result, bool]]
    #: real folders in it that are not runs
    subdirs: list[str]
    #: symlinks in it to folders that are not runs
    linked_dirs: list[str]
    #: symlinks in it whose target is gone
    dangling: list[str]


def list_folder(d: str, mtime_ns: int | None = None) -> Folder | None:
    """The direct entries of the folder ``d`` (one ``stat`` of ``<entry>/run.lock`` per
    directory in it); None when it cannot be listed. ``mtime_ns``: its mtime, already stat'ed
    (else stat'ed here, before the listing: a change during it leaves a newer mtime)."""
    stat = os.stat
    tail = os.sep + LOCK_NAME
    try:
        if mtime_ns is None:
            mtime_ns = stat(d).st_mtime_ns
        it = os.scandir(d)
    except OSError:
        return None
    runs: list[tuple[str, os.stat_result, bool]] = []
    subdirs: list[str] = []
    linked_dirs: list[str] = []
    dangling: list[str] = []
    with it:
        for entry in it:
            if entry.name[0] == ".":
                continue
            try:
                if not entry.is_dir():  # follows symlinks: a linked run is a run
                    # a link to nothing: one more stat, for links to files only (rare)
                    if entry.is_symlink() and not os.path.exists(entry.path):
                        dangling.append(entry.path)
                    continue
                is_link = entry.is_symlink()
            except OSError:
                continue
            lock = entry.path + tail
            try:
                st = stat(lock)
            except (FileNotFoundError, NotADirectoryError):
                (linked_dirs if is_link else subdirs).append(entry.path)
                continue
            except OSError:
                continue
            runs.append((lock, st, is_link))
    return Folder(mtime_ns, runs, subdirs, linked_dirs, dangling)


def iter_run_dirs(root: Path | str, *, stage: str | None = None) -> Iterator[Path]:
    """Run directories under ``root``, sorted by path; ``stage``: only those under
    ``<root>/<stage>`` (the folder a stage writes its runs to)."""
    base = Path(root) / stage if stage is not None else Path(root)
    if not base.is_dir():
        return
    for lock in sorted(scan(base).runs):
        yield Path(lock).parent
