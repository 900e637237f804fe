"""The one owner of "may this become a path?": run ids, stage and experiment names, and paths
built from them.

Every id, name and relative path that comes from a lock, a store index entry, an index row or
the user goes through here before a path is built from it, so nothing a shared store or a
hand-edited lock says can reach outside the results root, the store prefix or a snapshot
worktree (a store entry with ``stage: ".."`` and ``id: "src"`` once made ``pull --force``
replace the project's ``src/``). A refusal is an :class:`~runlock.errors.UnsafeNameError` or
:class:`~runlock.errors.UnsafePathError` (exit code 2) naming the value and where it came from,
raised before anything is touched.

The checks are string tests of a few microseconds: a run pays for them once, at decoration.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import UnsafeNameError, UnsafePathError
from .runid import is_run_id

#: Longest stage/experiment name part: a directory name (255 bytes on most file systems) with
#: room for the suffixes runlock adds (``-1``, ``.runlock-pull-<id>``).
MAX_NAME_LEN = 200

# Control characters (C0, DEL, C1) and the Unicode line/paragraph separators: a name holding
# one would break a directory listing, a table row or a log line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {i: f"\\x{i:02x}" for i in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def _where(source: str | None) -> str:
    return f" (from {source})" if source else ""


def name_problem(value: object) -> str | None:
    """Why ``value`` is not a safe stage/experiment name part, or ``None`` when it is."""
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a string"
    if not value:
        return "is empty"
    if value.isidentifier():  # the common case (a function name): nothing below can match
        return None
    if value in (".", ".."):
        return "is a relative directory reference"
    if "/" in value or "\\" in value:
        return "contains a path separator"
    if _CONTROL.search(value):
        return "contains a control character or line break"
    if "${" in value:
        return "contains an interpolation ('${')"
    if len(value) > MAX_NAME_LEN:
        return f"is longer than {MAX_NAME_LEN} characters"
    return None


def check_name(value: object, *, what: str = "stage name", source: str | None = None) -> str:
    """``value`` if it is a safe single path component (stage name, experiment name part):
    no path separator, not ``.``/``..``, no control character or line break, no ``${``
    interpolation; else :class:`UnsafeNameError` naming it and ``source``."""
    problem = name_problem(value)
    if problem is not None:
        raise UnsafeNameError(
            f"The {what} {value!r}{_where(source)} {problem}; refused.",
            hint="names become directory names: use letters, digits, '_', '-', '.', "
            "e.g. 'train' or 'prep-v2'",
        )
    return str(value)


def check_experiment(value: object, *, source: str | None = None) -> str:
    """An experiment name (``ablation/no_aug``): ``/``-separated safe names."""
    if not isinstance(value, str) or not value:
        return check_name(value, what="experiment name", source=source)
    for part in value.split("/"):
        if name_problem(part) is not None:
            raise UnsafeNameError(
                f"The experiment name {value!r}{_where(source)} is not a relative path of plain "
                f"names (part {part!r} {name_problem(part)}); refused.",
                hint="use names like 'ablation/no_aug' (no '..', no leading or trailing '/', "
                "no '${', no control characters)",
            )
    return value


def check_run_id(value: object, *, source: str | None = None) -> str:
    """``value`` if it is a run id (``runid.is_run_id``), else :class:`UnsafeNameError`."""
    if not isinstance(value, str) or not is_run_id(value):
        raise UnsafeNameError(
            f"{value!r}{_where(source)} is not a run id (YYYYmmddTHHMMSS-xxxxxx); refused.",
            hint="the lock or store entry was edited or forged; nothing was changed",
        )
    return value


def confined(
    root: str | os.PathLike[str], *parts: str | os.PathLike[str], what: str = "path",
    source: str | None = None,
) -> Path:
    """``root / parts...``, checked to stay inside ``root``: no absolute part, no ``..``, no
    control character, and its parent, symlinks resolved, inside ``root`` resolved; else
    :class:`UnsafePathError` naming the value and ``source``.

    The last component itself is not resolved: it may be a pulled run's symlink into the store,
    which is replaced or removed as a link, never followed.
    """
    base = Path(root)
    shown = "/".join(os.fspath(p) for p in parts)

    def refuse(problem: str) -> UnsafePathError:
        return UnsafePathError(
            f"The {what} {shown!r}{_where(source)} {problem}; refused.",
            hint=f"nothing outside {os.fspath(base)} is ever written or removed; the lock or "
            "store entry was edited or forged",
        )

    for p in parts:
        text = os.fspath(p)
        if not text or _CONTROL.search(text):
            raise refuse("is empty or contains a control character")
        if os.path.isabs(text) or text.startswith("~"):
            raise refuse("is absolute")
        if ".." in re.split(r"[/\\]", text):
            raise refuse("goes up a directory ('..')")
    path = base.joinpath(*parts)
    if parts and path == base:  # "." or "a/..": the root itself is never a run to replace
        raise refuse("is the root itself")
    real_root = os.path.realpath(base)
    real = os.path.join(os.path.realpath(path.parent), path.name) if path != base else real_root
    if os.path.commonpath([real_root, real]) != real_root:
        raise refuse(f"resolves to {real}, outside {real_root}")
    return path


def printable(text: object) -> str:
    """``text`` for one line of CLI output: control characters and line breaks escaped
    (``\\n``), so a forged name or id cannot fake or hide rows."""
    s = str(text)
    if s.isprintable():
        return s
    return s.translate(_ESCAPES)
