"""run.lock: the versioned, YAML record of one run. Pure data: load, dump, migrate.

Readers (ls, show, diff, push) only ever use this module and the lock files, never the live
environment, so they work on runs pulled to another machine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, cast

from .. import _yaml
from .._yaml import to_plain as _to_plain
from ..errors import LockFileError
from .rundir import LOCK_NAME, atomic_write

SCHEMA_VERSION = 1
#: The largest run.lock read (bytes). A real lock is kilobytes to a few MiB (an outputs manifest
#: of 100,000 files is ~10 MiB); past this it is not a lock, and parsing it would take minutes.
MAX_LOCK_BYTES = 64 * 2**20
STATUSES = ("running", "completed", "failed", "interrupted")

# Migrations from schema N to N+1, applied in order when loading an old lock.
_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


#: Sections that are large and the same in every run of a process: their YAML is kept.
_STABLE_SECTIONS = frozenset({"packages", "environment"})
_SECTION_YAML: dict[tuple[str, str], str] = {}
_SECTION_YAML_MAX = 64


def _dump(body: Any) -> str:
    return _yaml.dump_readable(body)


def dumps_lock(data: dict[str, Any]) -> str:
    """The lock as YAML text. A block mapping's top-level entries are dumped independently (the
    concatenated parts are the same text), so the package list and environment, most of a lock
    and the same in every run of a process, are dumped once, not at each start and end of a run."""
    body = _to_plain(data)
    parts: list[str] = []
    chunk: dict[str, Any] = {}
    for key, value in body.items():
        if key not in _STABLE_SECTIONS:
            chunk[key] = value
            continue
        if chunk:
            parts.append(_dump(chunk))
            chunk = {}
        memo_key = (key, repr(value))  # repr is ~10x cheaper than the YAML dump it saves
        text = _SECTION_YAML.get(memo_key)
        if text is None:
            if len(_SECTION_YAML) >= _SECTION_YAML_MAX:
                _SECTION_YAML.clear()
            text = _SECTION_YAML[memo_key] = _dump({key: value})
        parts.append(text)
    if chunk or not parts:
        parts.append(_dump(chunk))
    return "".join(parts)


#: Bytes of trailing comment a ``running`` lock keeps (``dump_lock(reserve=True)``): on a full
#: disk :func:`rewrite_lock_in_place` writes the final status into them (error, end time).
RESERVE_BYTES = 2048
_RESERVE = "# runlock: room kept for the final status on a full disk".ljust(RESERVE_BYTES - 1) + "\n"


def dump_lock(
    data: dict[str, Any],
    path: Path,
    *,
    durable: bool = True,
    create_parents: bool = True,
    reserve: bool = False,
    touch: bool = True,
) -> None:
    """Write a lock atomically (temp file + rename): never a half-written run.lock.
    ``durable=False``: no fsync (the 'running' lock and heartbeats, rewritten later anyway).
    ``create_parents=False``: raise FileNotFoundError when the run directory is gone.
    ``reserve``: end with :data:`RESERVE_BYTES` of comment (a running lock's room for its end).
    ``touch=False``: leave the folder holding the run alone (see :func:`touch_container`): for
    a heartbeat of a lock already written ``running``, which the run index stats anyway."""
    text = dumps_lock(data)
    atomic_write(path, text + _RESERVE if reserve else text, durable=durable, create_parents=create_parents)
    if touch:
        touch_container(Path(path).parent)


def rewrite_lock_in_place(data: dict[str, Any], path: Path) -> None:
    """Overwrite an existing lock in place, the last resort when :func:`dump_lock` fails for a
    full disk: a temporary file needs new blocks, overwriting the lock's own does not. Not
    atomic (a reader racing it may see a torn file), hence only when nothing else can record
    how the run ended. Raises OSError when the new text is longer than the file (it would
    need blocks) or the file cannot be opened."""
    raw = dumps_lock(data).encode()
    with open(path, "r+b") as f:
        st = os.fstat(f.fileno())
        if len(raw) > max(st.st_size, getattr(st, "st_blocks", 0) * 512):
            raise OSError(f"the final lock ({len(raw)} bytes) is larger than {path}")
        f.write(raw)
        f.truncate()
        f.flush()
        os.fsync(f.fileno())


def touch_container(run_dir: Path) -> None:
    """Bump the mtime of the directory holding ``run_dir``.

    The run index answers "nothing changed" from the mtimes of the folders holding runs alone
    (no stat per lock: 1,000,000 runs in well under a second). Adding, removing or renaming a
    run changes its folder's mtime by itself; a lock rewritten in place (a run finishing) only
    changes the run directory's, so the writer bumps the folder's. Best effort: an unwritable
    folder only costs a later refresh of that run.
    """
    try:
        os.utime(run_dir.parent)
    except OSError:
        pass


def _check_whole(text: str | bytes, source: str) -> None:
    """Refuse what no writer of locks produces: more than :data:`MAX_LOCK_BYTES`, or text cut
    short. ``dump_lock`` replaces a lock atomically and its YAML always ends with a newline, so
    a lock that does not is truncated (a full disk, an interrupted copy) and may still parse,
    as a ``completed`` run missing its last sections: it is reported unreadable instead."""
    if len(text) > MAX_LOCK_BYTES:
        raise LockFileError(
            f"{source} is larger than {MAX_LOCK_BYTES // 2**20} MiB (MAX_LOCK_BYTES): not a "
            "run.lock runlock wrote; not read."
        )
    if text and not (text.endswith("\n") if isinstance(text, str) else text.endswith(b"\n")):
        raise LockFileError(f"{source} is truncated (it does not end with a newline, as every lock does).")


def loads_lock(text: str, *, source: str = "<string>") -> dict[str, Any]:
    _check_whole(text, source)
    try:
        data = _yaml.load_data(text)
    except _yaml.AliasError as exc:
        raise LockFileError(
            f"{source} holds a YAML alias (*name), which runlock never writes: not read (a few "
            "hundred bytes of nested aliases expand to billions of values)."
        ) from exc
    except _yaml.YAMLError as exc:
        raise LockFileError(f"{source} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or "schema" not in data:
        raise LockFileError(f"{source} is not a runlock lock file (no 'schema' key).")
    version = data["schema"]
    if not isinstance(version, int) or version < 1:
        raise LockFileError(f"{source} has an invalid schema version {version!r}.")
    if version > SCHEMA_VERSION:
        raise LockFileError(
            f"{source} was written by a newer runlock (schema {version}, this one reads "
            f"up to {SCHEMA_VERSION}).",
            hint="pip install -U runlock",
        )
    while data["schema"] < SCHEMA_VERSION:
        data = _MIGRATIONS[data["schema"]](data)
    return cast("dict[str, Any]", data)


# A top-level key of a block-style YAML mapping: at column 0 (values, block scalars, wrapped flow
# collections and list items under a key are indented or start with "- ").
_TOP_KEY = re.compile(rb"^([A-Za-z_][A-Za-z0-9_.-]*):(?= |\r?\n|$)", re.M)


def _split_sections(raw: bytes, sections: Collection[str], instead: Mapping[str, str]) -> Any:
    """YAML of the wanted top-level sections only, parsed; None when the text is not plainly
    block-style (anything but comments before the first key, ...): then the caller parses all."""
    starts = [(m.start(), m.group(1).decode("ascii")) for m in _TOP_KEY.finditer(raw)]
    if not starts or (raw[: starts[0][0]].strip(b" \t\r\n") and not raw.lstrip().startswith(b"#")):
        return None
    present = {key for _, key in starts}
    wanted = {"schema", *sections}
    wanted.update(alt for key, alt in instead.items() if key in sections and key not in present)
    ends = [pos for pos, _ in starts[1:]] + [len(raw)]
    parts = [raw[pos:end] for (pos, key), end in zip(starts, ends, strict=True) if key in wanted]
    try:
        return _yaml.load_data(b"".join(p if p.endswith(b"\n") else p + b"\n" for p in parts))
    except _yaml.YAMLError:
        return None  # e.g. an alias to an anchor in a skipped section: the full load says so


def load_lock_sections(
    raw: bytes,
    sections: Collection[str],
    *,
    instead: Mapping[str, str] | None = None,
    source: str = "<bytes>",
) -> dict[str, Any]:
    """The top-level ``sections`` of a lock's text (and ``schema``), parsing only those.

    For readers of many locks (the run index): most of a lock's bytes are package versions,
    environment, output hashes and embedded upstream locks, and skipping them makes reading
    10,000 locks several times faster. ``instead``: ``{section: fallback}`` also reads
    ``fallback`` when ``section`` is absent (older locks keep the hostname in ``environment``).

    Checks and migrations are those of :func:`loads_lock`: a lock of another schema version, or
    text that is not plainly block-style YAML, is loaded in full (the result then holds every
    section). Raises LockFileError like ``loads_lock``.
    """
    _check_whole(raw, source)
    data = _split_sections(raw, sections, instead or {})
    if isinstance(data, dict) and data.get("schema") == SCHEMA_VERSION:
        return data
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LockFileError(f"{source} is not UTF-8 text: {exc}") from exc
    return loads_lock(text, source=source)


def load_lock(path: Path) -> dict[str, Any]:
    """Load ``path`` (a run.lock or a run directory), migrating old schema versions."""
    path = Path(path)
    if path.is_dir():
        path = path / LOCK_NAME
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_LOCK_BYTES + 1)  # a bigger one is refused: never read it all
    except FileNotFoundError as exc:
        raise LockFileError(f"No run.lock at {path}.") from exc
    except OSError as exc:
        raise LockFileError(f"Cannot read {path}: {exc.strerror}.") from exc
    _check_whole(raw, str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LockFileError(f"{path} is not UTF-8 text: {exc}") from exc
    return loads_lock(text, source=str(path))


def find_run_dir(path: Path) -> Path | None:
    """The run directory containing ``path`` (itself or a parent holding a run.lock), or None."""
    p = Path(path).absolute()
    for candidate in (p, *p.parents):
        if (candidate / LOCK_NAME).is_file():
            return candidate
    return None
