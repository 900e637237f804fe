"""A run's environment, from its lock, in formats other tools install from (``runlock env``).

``requirements``: ``name==version`` lines (pip, uv); ``name @ git+url@commit`` for VCS installs and
``name @ url`` for direct archive URLs (PEP 508); a local directory (an editable install, usually
the project itself) is a comment naming the path and the run's source snapshot, since its code is
in that commit, not on an index. ``pylock``: a PEP 751 ``pylock.toml`` written by hand (the
format is small, and writing TOML needs no dependency); index packages carry name and version
only, as the lock records no file hashes for them.

Reads the lock only, so it works on runs pulled from another machine. Old locks without a
``package_sources`` section still export: their ``editable`` section gives the directories.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..record.lock import Lock

__all__ = ["FORMATS", "export_env", "package_sources", "pylock", "requirements"]

FORMATS = ("requirements", "pylock")


def package_sources(lock: Lock) -> dict[str, Mapping[str, Any]]:
    """``{name: source}`` for the packages not installed from an index (old locks: editables)."""
    out: dict[str, Mapping[str, Any]] = {
        name: {"kind": "directory", "path": path, "editable": True} for name, path in lock.editable.items()
    }
    out.update(lock.package_sources)
    return out


def _python(lock: Lock) -> tuple[str | None, str]:
    """(``X.Y.Z`` or None, a one-line description) of the run's interpreter."""
    env = lock.environment
    full = env.get("python_version")
    version = full.split()[0] if isinstance(full, str) and full.split() else None
    impl = env.get("python_implementation")
    text = " ".join(str(p) for p in (full, f"({impl})" if impl else None) if p) or "unknown"
    return version, text.replace("\n", " ")


def _names(lock: Lock, sources: Mapping[str, Any]) -> list[str]:
    return sorted({*lock.packages, *sources})


def _header(lock: Lock) -> list[str]:
    return [
        f"# exported by `runlock env` from run {lock.id} (stage {lock.stage})",
        f"# Python {_python(lock)[1]}",
    ]


def _snapshot_note(lock: Lock, path: Any) -> str:
    """Where a local directory's code is: in the run's source snapshot only when the directory is
    inside the run's git repository (an editable dependency elsewhere was not recorded)."""
    commit, root = lock.source_commit, lock.git.root if lock.git else None
    if not commit:
        return "the run recorded no source snapshot"
    path = str(path or "")
    if root and (path == root or path.startswith(root.rstrip("/") + "/")):
        return f"its code is in the run's source snapshot {commit}"
    return f"outside the run's repository: its code is not in the run's source snapshot {commit}"


def _vcs_url(source: Mapping[str, Any]) -> str:
    url, vcs = str(source.get("url") or ""), str(source.get("vcs") or "git")
    prefix = f"{vcs}+"
    url = url if url.startswith(prefix) else prefix + url
    commit = source.get("commit") or source.get("requested_revision")
    if commit:
        url += f"@{commit}"
    if source.get("subdirectory"):
        url += f"#subdirectory={source['subdirectory']}"
    return url


def _archive_url(source: Mapping[str, Any]) -> str:
    url = str(source.get("url") or "")
    hashes = source.get("hashes")
    if "#" not in url and isinstance(hashes, Mapping) and hashes:
        algo = "sha256" if "sha256" in hashes else sorted(hashes)[0]
        url += f"#{algo}={hashes[algo]}"
    if source.get("subdirectory"):
        url += ("&" if "#" in url else "#") + f"subdirectory={source['subdirectory']}"
    return url


def requirements(lock: Lock) -> str:
    """The run's packages as a ``requirements.txt`` (sorted by name)."""
    sources = package_sources(lock)
    lines = [*_header(lock)]
    for name in _names(lock, sources):
        version = lock.packages.get(name)
        source = sources.get(name)
        kind = source.get("kind") if source else None
        if kind == "directory" and source is not None:
            how = "editable install" if source.get("editable") else "install"
            label = f"{name} {version}" if version else name
            lines.append(f"# {label}: {how} from the local directory {source.get('path')}; {_snapshot_note(lock, source.get('path'))}")
        elif kind in ("vcs", "archive") and source is not None:
            url = _vcs_url(source) if kind == "vcs" else _archive_url(source)
            if "***" in url:
                lines.append(f"# {name}: credentials were removed from this URL when the run recorded it")
            lines.append(f"{name} @ {url}")
        elif version:
            lines.append(f"{name}=={version}")
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    """A TOML value: JSON's string escapes are valid TOML basic-string escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value), ensure_ascii=False)


def _key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else json.dumps(key, ensure_ascii=False)


def _table(header: str, items: Mapping[str, Any]) -> list[str]:
    return [f"[{header}]", *(f"{_key(k)} = {_toml(v)}" for k, v in items.items() if v is not None)]


def pylock(lock: Lock) -> str:
    """The run's packages as a PEP 751 ``pylock.toml``."""
    sources = package_sources(lock)
    version, _ = _python(lock)
    lines = [
        *_header(lock),
        "# Packages installed from an index are listed by name and version only: the run's lock",
        "# records no file hashes for them (an installer resolves them from its configured index).",
        'lock-version = "1.0"',
        'created-by = "runlock"',
    ]
    if version:
        major_minor = ".".join(version.split(".")[:2])
        lines.append(f"requires-python = {_toml(f'=={major_minor}.*')}")
    for name in _names(lock, sources):
        source = sources.get(name) or {}
        kind = source.get("kind")
        lines += ["", "[[packages]]", f"name = {_toml(name)}"]
        pinned = lock.packages.get(name)
        if pinned and kind != "directory":  # a directory's code may have moved on (PEP 751)
            lines.append(f"version = {_toml(pinned)}")
        if kind == "vcs":
            lines += _table("packages.vcs", {
                "type": source.get("vcs") or "git", "url": source.get("url"),
                "requested-revision": source.get("requested_revision"),
                "commit-id": source.get("commit"), "subdirectory": source.get("subdirectory"),
            })  # fmt: skip
        elif kind == "archive":
            hashes = source.get("hashes")
            if not (isinstance(hashes, Mapping) and hashes):
                lines.append("# no hash was recorded for this archive")
            lines += _table("packages.archive", {
                "url": source.get("url"),
                "hashes": dict(hashes) if isinstance(hashes, Mapping) and hashes else None,
                "subdirectory": source.get("subdirectory"),
            })  # fmt: skip
        elif kind == "directory":
            lines.append(f"# {'editable ' if source.get('editable') else ''}install; {_snapshot_note(lock, source.get('path'))}")
            lines += _table("packages.directory", {
                "path": source.get("path"), "editable": bool(source.get("editable")),
                "subdirectory": source.get("subdirectory"),
            })  # fmt: skip
    lines += ["", *_table("tool.runlock", {
        "run": lock.id, "stage": lock.stage, "source-commit": lock.source_commit, "python": version,
    })]  # fmt: skip
    return "\n".join(lines) + "\n"


def export_env(lock: Lock, fmt: str) -> str:
    """The run's environment in format ``fmt`` (one of :data:`FORMATS`)."""
    return requirements(lock) if fmt == "requirements" else pylock(lock)
