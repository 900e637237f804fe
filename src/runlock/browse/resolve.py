"""RUN arguments: a run id, a unique id prefix, or a path (run directory or a file inside one).

One resolver for show, diff, compare, rm, lineage and the Python API so that they all accept the
same references and fail with the same messages.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from ..errors import AmbiguousRunError, RunNotFoundError
from .query import RunList, RunRecord, select_runs

#: How many candidates an ambiguity error lists.
MAX_CANDIDATES = 10


def looks_like_path(ref: str) -> bool:
    return os.sep in ref or (os.altsep or os.sep) in ref or ref.startswith(".") or ref == "~"


def record_for_dir(run_dir: Path) -> RunRecord:
    """A record read straight from a run directory's lock (runs outside the results root too)."""
    from ..capture.environment import hostname
    from ..record.rundir import LOCK_NAME
    from .index import lock_columns

    cols = lock_columns(run_dir / LOCK_NAME)
    return RunRecord.from_row(cols, now_ts=time.time(), this_host=hostname())


def _select(root: Path, text: str, *, refresh: bool) -> RunList:
    matches = select_runs(root, id_prefix=text, sort="id", refresh=refresh)
    if not matches:  # the run directory's name (it differs from the id: dated, -1 suffixes)
        matches = select_runs(root, dir_name=text, sort="id", refresh=refresh)
    return matches


def resolve_run(ref: str | os.PathLike[str], root: Path) -> RunRecord:
    """The run ``ref`` (id, unique id prefix, run directory name or path) designates under
    ``root`` (or anywhere, for a path).

    Raises RunNotFoundError when nothing matches and AmbiguousRunError (listing candidates) when
    a prefix matches several runs.
    """
    text = os.fspath(ref)
    path = Path(text).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, root / path]
    if looks_like_path(text) or path.exists():
        from ..record.lockfile import find_run_dir

        for candidate in candidates:
            if candidate.exists():
                run_dir = find_run_dir(candidate)
                if run_dir is not None:
                    return record_for_dir(run_dir)
                raise RunNotFoundError(
                    f"{candidate} is not inside a run directory (no run.lock in it or above it)."
                )
        if looks_like_path(text):
            raise RunNotFoundError(f"No such run directory: {text}.")
    matches = _select(root, text, refresh=False)
    if any(not os.path.exists(r.lock_path) for r in matches):
        # a lock removed or replaced in place, unseen by the quick refresh: check every lock
        matches = _select(root, text, refresh=True)
    exact = [r for r in matches if r.id == text or r.dir.name == text]
    if exact:
        matches = RunList(exact)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunNotFoundError(
            f"No run {text!r} under {root}.",
            hint="Give a run id, a unique id prefix or a run directory; `runlock ls` lists them "
            "(use --root for another results root).",
        )
    shown = "\n".join(
        f"    {r.id}  {r.stage:<12} {r.status:<11} {r.dir}" for r in matches[:MAX_CANDIDATES]
    )
    more = (
        f"\n    ... and {len(matches) - MAX_CANDIDATES} more"
        if len(matches) > MAX_CANDIDATES
        else ""
    )
    what = "run id" if exact else "run id prefix"
    raise AmbiguousRunError(
        f"The {what} {text!r} matches {len(matches)} runs:\n{shown}{more}",
        hint="Give more characters of the id, or the run directory.",
    )


def resolve_runs(refs: Iterable[str], root: Path) -> RunList:
    """Resolve several references, keeping order and dropping duplicates."""
    out: dict[Path, RunRecord] = {}
    for ref in refs:
        record = resolve_run(ref, root)
        out.setdefault(record.dir.resolve(), record)
    return RunList(out.values())
