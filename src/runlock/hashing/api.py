"""hash_path, hash_outputs and verify_outputs: the data and outputs entries of a run.lock."""

from __future__ import annotations

import logging
import os
import stat as stat_mod
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ..errors import DataError
from .cache import HashCache
from .digests import digest_files, gc_paused
from .progress import needs_stat
from .walk import VanishedError, Where, dir_digest, file_filter, rel_path, scan

logger = logging.getLogger("runlock")
ALGORITHM = "xxh3_64"


def _stat_input(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except FileNotFoundError as exc:
        if os.path.islink(path):
            raise DataError(
                f"data path is a broken symlink: {path} -> {os.readlink(path)}"
            ) from exc
        raise DataError(
            f"data path not found: {path}", hint="check the path given for this input"
        ) from exc
    except OSError as exc:
        raise DataError(f"cannot access data path {path}: {exc.strerror}") from exc


def _warn_changed(path: str, rels: list[str]) -> None:
    shown = ", ".join(rels[:5]) + (f" (+{len(rels) - 5} more)" if len(rels) > 5 else "")
    logger.warning("%s: %d file(s) changed while being hashed: %s", path, len(rels), shown)


def hash_path(
    path: str | os.PathLike[str],
    *,
    match: Sequence[str] | None = None,
    ignore: Sequence[str] | None = None,
    cache: HashCache | None = None,
    jobs: int | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Hash a data file or directory: the ``data`` entry of a run.lock.

    Returns ``{path, kind: "file"|"dir", algorithm: "xxh3_64", hash, size, files}``, plus
    ``match`` / ``ignore`` when given (they change the hash) and ``changed_during_hash``
    (relative paths) when files changed while being read. A directory hash equals
    ``dirhash.dirhash(path, xxhash.xxh3_64, match=match, ignore=ignore)``. ``jobs``: reader
    threads (default: CPUs, at most 8); ``progress``: None = a bar on a terminal for large
    inputs. Raises DataError for missing, unreadable or dangling paths.
    """
    p = os.path.abspath(os.fspath(path))
    st = _stat_input(p)
    if stat_mod.S_ISDIR(st.st_mode):
        kind = "dir"
        under: str | None = os.path.realpath(p)
        matcher = file_filter(match, ignore)
        with gc_paused():
            tree, files = scan(p, matcher, stat=needs_stat(cache, progress))
    elif stat_mod.S_ISREG(st.st_mode):
        kind = "file"
        under = None
        real = os.path.realpath(p)
        files = [(Where(os.path.dirname(real), ""), os.path.basename(p), st, real)]
        tree = None
    else:
        raise DataError(f"data path is neither a file nor a directory: {p}")
    digests, changed, size = digest_files(
        files, label=os.path.basename(p), under=under, cache=cache, jobs=jobs, progress=progress
    )
    digest = digests[0] if tree is None else dir_digest(tree, files, digests)
    out: dict[str, Any] = {
        "path": p,
        "kind": kind,
        "algorithm": ALGORITHM,
        "hash": digest,
        "size": size,
        "files": len(files),
    }
    if match is not None:
        out["match"] = list(match)
    if ignore:
        out["ignore"] = list(ignore)
    if changed:
        out["changed_during_hash"] = sorted(rel_path(files[i]) for i in changed)
        _warn_changed(p, out["changed_during_hash"])
    return out


def _outputs(
    run_dir: str | os.PathLike[str],
    exclude: Collection[str],
    cache: HashCache | None,
    jobs: int | None,
    only: Collection[str] | None = None,
) -> tuple[str, dict[str, str], list[str], list[str]]:
    root = os.path.abspath(os.fspath(run_dir))
    st = _stat_input(root)
    if not stat_mod.S_ISDIR(st.st_mode):
        raise DataError(f"run directory is not a directory: {root}")
    excl = {e.strip("/") for e in exclude}
    for attempt in range(3):
        with gc_paused():
            _, files = scan(
                root,
                None,
                broken="skip",
                prune=(lambda rel: rel in excl) if excl else None,
                stat=cache is not None,
            )
        present = sorted(rel_path(f) for f in files)
        if only is not None:
            files = [f for f in files if rel_path(f) in only]
        try:
            digests, changed, _ = digest_files(
                files,
                label=os.path.basename(root),
                under=os.path.realpath(root),
                cache=cache,
                jobs=jobs,
                progress=False,
            )
            break
        except VanishedError:
            # A temporary file (an atomic write in progress) deleted between listing and
            # reading: list again; outputs are recorded, not validated.
            if attempt == 2:
                raise
    rels = [rel_path(f) for f in files]
    manifest = {rels[i]: digests[i] for i in sorted(range(len(files)), key=rels.__getitem__)}
    return root, manifest, present, sorted(rels[i] for i in changed)


def hash_outputs(
    run_dir: str | os.PathLike[str],
    *,
    exclude: Collection[str] = frozenset(),
    cache: HashCache | None = None,
    jobs: int | None = None,
) -> dict[str, Any]:
    """Manifest of a run's outputs: ``{"algorithm", "files": {relpath: digest}}``, sorted.

    ``exclude`` holds relative paths (files or whole directories, e.g. ``run.lock``) left out;
    it is recorded in the manifest (``"exclude"``) so that :func:`verify_outputs` applies the
    same rule later. Broken symlinks are skipped: outputs are recorded, not validated.
    """
    root, files, _, changed = _outputs(run_dir, exclude, cache, jobs)
    out: dict[str, Any] = {"algorithm": ALGORITHM}
    excl = sorted({e.strip("/") for e in exclude})
    if excl:
        out["exclude"] = excl
    out["files"] = files
    if changed:
        out["changed_during_hash"] = changed
        _warn_changed(root, changed)
    return out


def verify_outputs(
    run_dir: str | os.PathLike[str],
    recorded: Mapping[str, Any],
    *,
    cache: HashCache | None = None,
    jobs: int | None = None,
) -> dict[str, Any]:
    """Compare a run directory with its recorded outputs manifest (from :func:`hash_outputs`).

    Returns ``{"match": bool, "changed": [...], "missing": [...], "added": [...]}`` (sorted
    relative paths). Only recorded files are read; added ones are only listed.
    """
    algorithm = recorded.get("algorithm", ALGORITHM)
    if algorithm != ALGORITHM:
        raise DataError(f"outputs were recorded with {algorithm!r}; runlock verifies {ALGORITHM!r}")
    want: Mapping[str, str] = recorded.get("files") or {}
    _, now, present, _ = _outputs(
        run_dir, recorded.get("exclude") or (), cache, jobs, only=set(want)
    )
    changed = sorted(rel for rel, d in now.items() if want.get(rel) != d)
    missing = sorted(rel for rel in want if rel not in now)
    added = sorted(set(present) - set(want))
    return {
        "match": not (changed or missing or added),
        "changed": changed,
        "missing": missing,
        "added": added,
    }
