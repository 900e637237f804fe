"""Upstream runs: found in config values, embedded in the lock, checked against their outputs.

A run is *upstream* of another when a string anywhere in the consumer's resolved config names
the upstream's run directory or a path inside it (``prev: results/prep/<id>/features.npy``).
The consumer's lock then holds, per config key (dotted, ``[i]`` for list items)::

    upstream:
      prev:
        id: 20261125T163012-3f9a2c
        stage: prep
        path: /abs/results/prep/20261125-163012     # the upstream run directory
        file: features.npy                          # only when the value names a path inside it
        status: completed
        outputs_match: true       # its files still match its recorded `outputs` (null: unknown)
        outputs_diff: {...}       # only when outputs_match is false: changed / missing / added
        warning: ...              # only for a dangling or unfinished upstream
        lock: {...the upstream's run.lock, which embeds its own upstream the same way...}

**Each run is embedded once.** The embedded locks form a tree walked depth-first in document
order (config keys in order, then each embedded lock's own ``upstream``); the first time a run
id is met its full lock is embedded, every later time (a diamond ``prep -> a, prep -> b,
(a, b) -> eval``, or two config keys naming files of the same run) the entry keeps its
``id / stage / path / status`` but its lock is ``{"ref": <id>}``. :func:`embedded_locks`
collects the full locks by id to resolve refs.

**Dangling upstreams are warnings, never errors.** A plain string field cannot tell runlock
whether it is an input or a place to write, so: a path inside an earlier run that does not
exist, a run directory whose run.lock is missing or unreadable, an upstream that failed, was
interrupted or is still running — each becomes a warning (lock ``warnings`` and the run log)
naming the config key and the path. Declare a field with ``runlock.Input`` for a path that must
exist: a missing input fails the run at its start.

Readers (:func:`lineage_tree`, :func:`iter_upstream`, :func:`upstream_dirs`) use lock data only.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LockFileError
from ..record.lock import Lock, Upstream
from ..record.lockfile import find_run_dir, load_lock
from ..record.rundir import BOOKKEEPING, LOCK_NAME, STATE_DIR

__all__ = [
    "OUTPUTS_EXCLUDE",
    "Candidate",
    "collect_upstream",
    "dedupe_embedded",
    "embedded_locks",
    "find_candidates",
    "iter_upstream",
    "lineage_tree",
    "upstream_dirs",
]

log = logging.getLogger("runlock")

#: What :func:`runlock.hashing.hash_outputs` leaves out of a run's outputs: runlock's own files.
OUTPUTS_EXCLUDE = frozenset(BOOKKEEPING | {STATE_DIR})
#: Upstream statuses that deserve a warning (the run did not finish cleanly, or not yet).
_UNFINISHED = {"failed": "failed", "interrupted": "was interrupted", "running": "is still running"}
_MAX_PATH_CHARS = 4096
_DIFF_SHOWN = 20


# -- finding upstream runs in a config ----------------------------------------------------------


@dataclass
class Candidate:
    """A config value that names a path inside an earlier run (or looks like it should)."""

    key: str
    value: str
    path: Path  # absolute
    run_dir: Path | None  # the enclosing run directory (holds a run.lock), None if not found
    exists: bool
    file: str | None = None  # the path inside run_dir ("/"-separated), None for run_dir itself
    warnings: list[str] = field(default_factory=list)


def _iter_strings(node: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, value) of every string in a plain config, depth first, in key order."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield from _iter_strings(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _iter_strings(v, f"{prefix}[{i}]")
    elif isinstance(node, str):
        yield prefix, node


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _plausible_path(value: str) -> bool:
    # URLs, free text and multi-line strings are not local paths; "" and "." would name the cwd.
    return (
        bool(value.strip())
        and value not in (".", "./")
        and len(value) <= _MAX_PATH_CHARS
        and "\n" not in value
        and "\0" not in value
        and "://" not in value
    )


def find_candidates(
    config: Mapping[str, Any],
    *,
    run_dir: Path | None = None,
    results_root: Path | None = None,
    cwd: Path | None = None,
) -> list[Candidate]:
    """Config values naming a path inside an earlier run directory.

    Relative values are taken from ``cwd`` (default: the current directory), as the stage
    function would open them. Values inside ``run_dir`` (the current run) are skipped. A value
    that does not exist is only considered when it is clearly a path (absolute or containing a
    separator) and lies inside a run directory or under ``results_root``; an existing value
    under ``results_root`` without any run.lock above it is reported too (a run directory that
    lost its lock). Fast: a few ``stat`` calls per string, no lock is read.
    """
    base = Path(cwd) if cwd is not None else Path.cwd()
    own = [Path(run_dir).absolute()] if run_dir is not None else []
    if run_dir is not None:
        own.append(Path(os.path.realpath(run_dir)))
    root = Path(results_root).absolute() if results_root is not None else None
    out: list[Candidate] = []
    for key, value in _iter_strings(config):
        if not _plausible_path(value):
            continue
        p = Path(value).expanduser()
        p = p if p.is_absolute() else base / p
        p = Path(os.path.normpath(p))
        try:
            exists = p.exists()
        except (OSError, ValueError):
            continue
        if not exists and not (Path(value).is_absolute() or os.sep in value or "/" in value):
            continue
        real = Path(os.path.realpath(p))
        if any(_is_within(p, o) or _is_within(real, o) for o in own):
            continue
        # Through a symlink too (a "latest" link to a run is common).
        found = find_run_dir(p) or (find_run_dir(real) if real != p else None)
        if found is not None:
            inside = p if _is_within(p, found) else real
            file = Path(os.path.relpath(inside, found)).as_posix() if inside != found else None
            if found.is_symlink():  # a "latest" link: record where the run really is
                found = Path(os.path.realpath(found))
            cand = Candidate(key, value, p, found, exists, file=file)
            if not exists:
                cand.warnings.append(
                    f"upstream: config key '{key}' names {p}, inside run {found}, "
                    "but that path does not exist"
                )
            out.append(cand)
            continue
        if root is None or not _is_within(p, root) or p == root or _is_within(p, root / STATE_DIR):
            continue
        if exists:
            msg = (f"upstream: config key '{key}' names {p} under the results root, but no "
                   f"{LOCK_NAME} was found in it or above it (a run directory without its lock?)")
        else:
            msg = (f"upstream: config key '{key}' names {p} under the results root, which does "
                   "not exist (no run there)")
        out.append(Candidate(key, value, p, None, exists, warnings=[msg]))
    return out


# -- building the lock section ------------------------------------------------------------------


def _outputs_check(run_dir: Path, lock: Mapping[str, Any], cache: Any) -> tuple[bool | None, dict[str, Any] | None]:
    """Whether the upstream's recorded outputs still match its files (None: nothing recorded).

    Files added after the run (notes, plots, a downstream run nested inside) do not count as a
    mismatch, as in ``runlock push``'s check: only changed or missing recorded files do.
    """
    recorded = Lock.from_dict(lock).outputs_manifest
    if recorded is None:
        return None, None
    from ..hashing import verify_outputs

    res = verify_outputs(run_dir, recorded, cache=cache)
    ok = not (res["changed"] or res["missing"])
    if ok:
        return True, None
    diff = {k: list(res[k])[:_DIFF_SHOWN] for k in ("changed", "missing", "added") if res[k]}
    return False, diff


def collect_upstream(
    config: Mapping[str, Any],
    *,
    run_dir: Path | None = None,
    results_root: Path | None = None,
    cwd: Path | None = None,
    candidates: list[Candidate] | None = None,
    cache: Any = None,
    verify: bool = True,
) -> tuple[dict[str, Any], list[str]]:
    """The ``upstream`` lock section for ``config`` and the warnings met on the way.

    ``candidates`` (from :func:`find_candidates`) may be given when already computed.
    ``verify`` compares each direct upstream's files with its recorded outputs (reads them:
    run it off the stage's thread). Embedded locks are deduplicated (:func:`dedupe_embedded`).
    """
    if candidates is None:
        candidates = find_candidates(config, run_dir=run_dir, results_root=results_root, cwd=cwd)
    section: dict[str, Any] = {}
    warnings: list[str] = []
    loaded: dict[Path, dict[str, Any] | LockFileError] = {}
    checks: dict[Path, tuple[bool | None, dict[str, Any] | None] | str] = {}
    for cand in candidates:
        warnings.extend(cand.warnings)
        if cand.run_dir is None:
            continue
        rd = cand.run_dir
        if rd not in loaded:
            try:
                loaded[rd] = load_lock(rd)
            except LockFileError as exc:
                loaded[rd] = exc
        lock = loaded[rd]
        entry: dict[str, Any]
        if isinstance(lock, LockFileError):
            msg = f"upstream: config key '{cand.key}' names run directory {rd}, but its {LOCK_NAME} is unreadable: {_exc_text(lock)}"
            warnings.append(msg)
            section[cand.key] = {"id": None, "stage": None, "path": str(rd), "status": None,
                                 "outputs_match": None, "warning": msg}
            continue
        view = Lock.from_dict(lock)
        entry = {
            "id": view.id,
            "stage": view.stage,
            "path": str(rd),
        }
        if cand.file is not None:
            entry["file"] = cand.file
        status = view.status
        entry["status"] = status
        if verify and rd not in checks:
            try:
                checks[rd] = _outputs_check(rd, lock, cache)
            except Exception as exc:  # noqa: BLE001 - a failed check is unknown, not fatal
                checks[rd] = f"{type(exc).__name__}: {exc}"
        check = checks.get(rd, (None, None))
        if isinstance(check, str):
            entry["outputs_match"] = None
            warnings.append(f"upstream: cannot check the outputs of run {rd} (config key '{cand.key}'): {check}")
        else:
            entry["outputs_match"] = check[0]
            if check[1] is not None:
                entry["outputs_diff"] = check[1]
                warnings.append(
                    f"upstream: outputs of run {entry['id']} ({rd}, config key '{cand.key}') "
                    f"changed since it ran: {_diff_text(check[1])}"
                )
        if status in _UNFINISHED:
            msg = (f"upstream: run {entry['id']} ({rd}, config key '{cand.key}') "
                   f"{_UNFINISHED[status]}")
            entry["warning"] = msg
            warnings.append(msg)
        entry["lock"] = copy.deepcopy(lock)
        section[cand.key] = entry
    dedupe_embedded(section)
    return section, warnings


def _exc_text(exc: BaseException) -> str:
    return getattr(exc, "message", None) or str(exc)


def _diff_text(diff: Mapping[str, list[str]]) -> str:
    return "; ".join(f"{k}: {', '.join(v[:5])}{' ...' if len(v) > 5 else ''}" for k, v in diff.items())


def dedupe_embedded(section: dict[str, Any], seen: set[str] | None = None) -> set[str]:
    """Replace every repeated embedded lock of ``section`` (an ``upstream`` mapping) by
    ``{"ref": id}``, in place, keeping the first in depth-first document order."""
    seen = set() if seen is None else seen
    for entry in section.values():
        if not isinstance(entry, dict):
            continue
        lock = entry.get("lock")
        uid = entry.get("id")
        if not isinstance(lock, dict) or "ref" in lock:
            continue
        if uid is not None and uid in seen:
            entry["lock"] = {"ref": uid}
            continue
        if uid is not None:
            seen.add(str(uid))
        inner = lock.get("upstream")
        if isinstance(inner, dict):
            dedupe_embedded(inner, seen)
    return seen


# -- reading lineage from a lock ------------------------------------------------------------------


def iter_upstream(lock: Mapping[str, Any]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """``(depth, config_key, entry)`` for every upstream entry, depth first (direct ones are
    depth 1). An entry whose lock is a ``{"ref": id}`` is yielded but not descended into: its
    upstream was yielded where it is embedded in full."""

    for depth, up in _walk(lock, 1):
        if isinstance(up.entry, dict):
            yield depth, up.key, up.entry


def _walk(lock: Mapping[str, Any], depth: int) -> Iterator[tuple[int, Upstream]]:
    """The typed form of :func:`iter_upstream`."""
    for up in Lock.from_dict(lock).upstream:
        yield depth, up
        if up.lock is not None:
            yield from _walk(up.lock, depth + 1)


def embedded_locks(lock: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every full upstream lock embedded in ``lock`` (at any depth), by run id: resolves refs."""
    out: dict[str, dict[str, Any]] = {}
    for _, up in _walk(lock, 1):
        if up.id is not None and isinstance(up.lock, dict):
            out.setdefault(up.id, up.lock)
    return out


def lineage_tree(lock: Mapping[str, Any]) -> dict[str, Any]:
    """The run and its upstream runs as nested nodes, for ``runlock lineage``::

        {"key": None, "id", "stage", "status", "path", "outputs_match": None, "ref": False,
         "warning": None, "children": [ {"key": "prev", ... same fields ..., "children": [...]} ]}

    A run met again (diamond) is a node with ``"ref": True`` and no children: its subtree is
    where it first appears.
    """

    def children(inner: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        return [] if inner is None else [node(up) for up in Lock.from_dict(inner).upstream]

    def node(up: Upstream) -> dict[str, Any]:
        return {
            "key": up.key,
            "id": up.id,
            "stage": up.stage,
            "status": up.status,
            "path": up.path,
            "outputs_match": up.outputs_match,
            "ref": up.ref,
            "warning": up.warning,
            "children": children(up.lock),
        }

    run = Lock.from_dict(lock)
    return {"key": None, "id": run.id, "stage": run.stage, "status": run.status,
            "path": run.run_dir, "outputs_match": None, "ref": False, "warning": None,
            "children": children(lock)}  # fmt: skip


def upstream_dirs(lock: Mapping[str, Any]) -> list[Path]:
    """Every upstream run directory of ``lock``, recursively, each once (depth-first order), as
    recorded by the consumer that embedded it (runs may have moved since: check they exist)."""
    out: list[Path] = []
    seen: set[str] = set()
    for _, up in _walk(lock, 1):
        if not up.path or (up.id or up.path) in seen:
            continue
        seen.add(up.id or up.path)
        out.append(Path(up.path))
    return out
