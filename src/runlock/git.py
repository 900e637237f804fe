"""The git owner: everything runlock asks of git goes through this module (and the git CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import _subprocess
from .redact import redact_url


def _git(cwd: Path, *args: str) -> _subprocess.Completed:
    return _subprocess.run(["git", *args], cwd=cwd)


def repo_root(path: Path) -> Path | None:
    """Top-level directory of the work tree containing ``path``, or None outside git."""
    start = path if path.is_dir() else path.parent
    try:
        out = _git(start, "rev-parse", "--show-toplevel")
    except (_subprocess.CommandNotFound, FileNotFoundError):
        return None
    return Path(out.stdout.strip()) if out.ok else None


def repo_info(path: Path) -> dict[str, Any] | None:
    """Basic facts about the repository containing ``path`` (root, HEAD, branch, dirty, remotes)."""
    root = repo_root(path)
    if root is None:
        return None
    head = _git(root, "rev-parse", "--verify", "-q", "HEAD")
    branch = _git(root, "symbolic-ref", "-q", "--short", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=normal")
    remotes: dict[str, str] = {}
    for line in _git(root, "remote", "-v").stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-1] == "(fetch)":
            remotes[parts[0]] = redact_url(parts[1])
    return {
        "root": str(root),
        "head": head.stdout.strip() if head.ok else None,
        "branch": branch.stdout.strip() if branch.ok else None,
        "dirty": bool(status.stdout.strip()),
        "remotes": remotes,
    }
