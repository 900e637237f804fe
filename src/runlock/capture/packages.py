"""Inventory of the installed distributions of the *running* interpreter.

Reads the ``*.dist-info`` / ``*.egg-info`` folder names on ``sys.path`` directly: ~1 ms for 150
distributions, where ``importlib.metadata`` parses every METADATA file (~90 ms) and ``pip list``
spawns a process (~200 ms) that may not even be the running interpreter's pip (savethat's flaw).
"""

from __future__ import annotations

import json
import os
import re
import sys
from urllib.parse import unquote, urlparse

TYPE_CHECKING = False  # not `from typing import ...`: typing costs ~5 ms to import

if TYPE_CHECKING:
    from typing import Any

    _Inventory = tuple[dict[str, str], dict[str, str], dict[str, dict[str, Any]]]

_NORMALIZE = re.compile(r"[-_.]+")


def normalize_name(name: str) -> str:
    """PEP 503 normalised project name."""
    return _NORMALIZE.sub("-", name).lower()


def _egg_info_version(path: str) -> str | None:
    pkg_info = os.path.join(path, "PKG-INFO") if os.path.isdir(path) else path
    try:
        with open(pkg_info, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
                if not line.strip():
                    break
    except OSError:
        return None
    return None


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _url_path(url: str) -> str:
    return unquote(urlparse(url).path) if url.startswith("file:") else url


def direct_source(dist_info: str) -> dict[str, Any] | None:
    """How a distribution was installed when not from an index: its PEP 610
    ``direct_url.json`` as a lock entry, or None (no file: installed from an index).

    ``{kind: vcs, vcs, url, commit, requested_revision?}``, ``{kind: archive, url, hashes?}`` or
    ``{kind: directory, path, editable}``; each with ``subdirectory`` when set and ``installer``
    (the ``INSTALLER`` file: pip, uv...). URLs have their credentials redacted.
    """
    text = _read_text(os.path.join(dist_info, "direct_url.json"))
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    url = data.get("url") if isinstance(data, dict) else None
    if not isinstance(url, str) or not url:
        return None
    from ..redact import redact_url  # here: only environments with direct installs pay for it

    out: dict[str, Any]
    vcs, archive, dir_info = data.get("vcs_info"), data.get("archive_info"), data.get("dir_info")
    if isinstance(vcs, dict):
        out = {"kind": "vcs", "vcs": str(vcs.get("vcs") or "git"), "url": redact_url(url),
               "commit": vcs.get("commit_id")}
        if vcs.get("requested_revision"):
            out["requested_revision"] = str(vcs["requested_revision"])
    elif isinstance(dir_info, dict):
        out = {"kind": "directory", "path": _url_path(url), "editable": bool(dir_info.get("editable"))}
    else:
        out = {"kind": "archive", "url": redact_url(url)}
        hashes = dict(archive.get("hashes") or {}) if isinstance(archive, dict) else {}
        legacy = archive.get("hash") if isinstance(archive, dict) else None
        if not hashes and isinstance(legacy, str) and "=" in legacy:  # PEP 610's older field
            algo, _, value = legacy.partition("=")
            hashes = {algo: value}
        if hashes:
            out["hashes"] = {str(k): str(v) for k, v in sorted(hashes.items())}
    if data.get("subdirectory"):
        out["subdirectory"] = str(data["subdirectory"])
    installer = _read_text(os.path.join(dist_info, "INSTALLER"))
    if installer:
        out["installer"] = installer
    return out


_MEMO: dict[tuple[str, ...], tuple[list[int], _Inventory]] = {}


def _dir_mtimes(entries: tuple[str, ...]) -> list[int]:
    out = []
    for entry in entries:
        try:
            out.append(os.stat(entry).st_mtime_ns)
        except OSError:
            out.append(-1)
    return out


def inventory(path: list[str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """Return ``({name: version}, {name: editable_source_path})``, sorted by name.

    Follows ``sys.path`` order: the first distribution of a name wins, as for imports.
    Memoised per process: (un)installing a distribution adds or removes a ``*.dist-info``
    entry, which changes its directory's mtime, so the answer is reused while no ``sys.path``
    directory changed (one ``stat`` each instead of listing them).
    """
    result = _memo_inventory(path)
    return dict(result[0]), dict(result[1])


def package_sources(path: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """``{name: source}`` of the distributions *not* installed from an index (see
    :func:`direct_source`), sorted by name; shares :func:`inventory`'s memo (no second scan)."""
    return {k: dict(v) for k, v in _memo_inventory(path)[2].items()}


def _memo_inventory(path: list[str] | None) -> _Inventory:
    entries = tuple(path if path is not None else sys.path)
    mtimes = _dir_mtimes(entries)
    memo = _MEMO.get(entries)
    if memo is not None and memo[0] == mtimes:
        return memo[1]
    result = _inventory(list(entries))
    _MEMO[entries] = (mtimes, result)
    return result


def _inventory(path: list[str]) -> _Inventory:
    versions: dict[str, str] = {}
    editable: dict[str, str] = {}
    sources: dict[str, dict[str, Any]] = {}
    version: str | None
    for entry in path:
        if not entry or not os.path.isdir(entry):
            continue
        try:
            names = os.listdir(entry)
        except OSError:
            continue
        for fname in names:
            if fname.endswith(".dist-info"):
                stem = fname[: -len(".dist-info")]
                name, sep, version = stem.partition("-")
                if not sep:
                    continue
                key = normalize_name(name)
                if key in versions:
                    continue
                versions[key] = version
                if os.path.exists(os.path.join(entry, fname, "direct_url.json")):
                    source = direct_source(os.path.join(entry, fname))
                    if source is not None:
                        sources[key] = source
                        if source.get("editable"):
                            editable[key] = source["path"]
            elif fname.endswith(".egg-info"):
                stem = fname[: -len(".egg-info")]
                name, _, rest = stem.partition("-")
                key = normalize_name(name)
                if key in versions:
                    continue
                version = rest.split("-py", 1)[0] if rest else None
                version = version or _egg_info_version(os.path.join(entry, fname))
                if version:
                    versions[key] = version
            elif fname.endswith(".egg-link"):  # legacy `setup.py develop`
                key = normalize_name(fname[: -len(".egg-link")])
                try:
                    with open(os.path.join(entry, fname), encoding="utf-8") as f:
                        editable.setdefault(key, f.readline().strip())
                except OSError:
                    pass
    return dict(sorted(versions.items())), dict(sorted(editable.items())), dict(sorted(sources.items()))
