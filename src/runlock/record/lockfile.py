"""run.lock: the versioned, YAML record of one run. Pure data: load, dump, migrate.

Readers (ls, show, diff, push) only ever use this module and the lock files, never the live
environment, so they work on runs pulled to another machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import yaml

from ..errors import LockFileError
from .rundir import LOCK_NAME, atomic_write

SCHEMA_VERSION = 1
STATUSES = ("running", "completed", "failed", "interrupted")

# Migrations from schema N to N+1, applied in order when loading an old lock.
_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


# libyaml's C implementation when available: ~10x faster on large locks (outputs manifests).
_BaseDumper: type = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Dumper(_BaseDumper):  # type: ignore[misc]
    """Safe YAML with readable multi-line strings (tracebacks, diff stats)."""


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


def _to_plain(obj: Any) -> Any:
    """Coerce to YAML-safe builtins (paths, tuples, sets, numpy scalars become plain values)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, dict):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(_to_plain(v) for v in obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    item = getattr(obj, "item", None)  # numpy / torch scalars
    if callable(item):
        try:
            return _to_plain(item())
        except Exception:  # noqa: BLE001 - fall back to repr below
            pass
    return repr(obj)


#: Sections that are large and the same in every run of a process: their YAML is kept.
_STABLE_SECTIONS = frozenset({"packages", "environment"})
_SECTION_YAML: dict[tuple[str, str], str] = {}
_SECTION_YAML_MAX = 64


def _dump(body: Any) -> str:
    return yaml.dump(body, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


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


def dump_lock(data: dict[str, Any], path: Path, *, durable: bool = True) -> None:
    """Write a lock atomically (temp file + rename): never a half-written run.lock.
    ``durable=False``: no fsync (the 'running' lock and heartbeats, rewritten later anyway)."""
    atomic_write(path, dumps_lock(data), durable=durable)


def loads_lock(text: str, *, source: str = "<string>") -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader (C or Python)
    except yaml.YAMLError as exc:
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


def load_lock(path: Path) -> dict[str, Any]:
    """Load ``path`` (a run.lock or a run directory), migrating old schema versions."""
    path = Path(path)
    if path.is_dir():
        path = path / LOCK_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise LockFileError(f"No run.lock at {path}.") from exc
    except OSError as exc:
        raise LockFileError(f"Cannot read {path}: {exc.strerror}.") from exc
    return loads_lock(text, source=str(path))


def find_run_dir(path: Path) -> Path | None:
    """The run directory containing ``path`` (itself or a parent holding a run.lock), or None."""
    p = Path(path).absolute()
    for candidate in (p, *p.parents):
        if (candidate / LOCK_NAME).is_file():
            return candidate
    return None
