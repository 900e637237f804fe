"""Which repository a path belongs to (remembered for the process), and its basics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import _subprocess
from ..redact import redact_url
from .commands import BASE_ENV, Repo, try_git


def repo_root(path: Path) -> Path | None:
    """Top-level directory of the work tree containing ``path``, or None outside git."""
    start = path if path.is_dir() else path.parent
    try:
        out = try_git(start, "rev-parse", "--show-toplevel")
    except (_subprocess.CommandNotFound, FileNotFoundError):
        return None
    return Path(out.stdout.strip()) if out.ok else None


def repo_info(path: Path) -> dict[str, Any] | None:
    """Basic facts about the repository containing ``path`` (root, HEAD, branch, dirty, remotes)."""
    root = repo_root(path)
    if root is None:
        return None
    head = try_git(root, "rev-parse", "--verify", "-q", "HEAD")
    branch = try_git(root, "symbolic-ref", "-q", "--short", "HEAD")
    status = try_git(root, "status", "--porcelain", "--untracked-files=normal")
    remotes: dict[str, str] = {}
    for line in try_git(root, "remote", "-v").stdout.splitlines():
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


#: start dir + discovery environment -> its repository, found earlier in this process
_LOCATED: dict[tuple[str, ...], Repo] = {}
_DISCOVERY_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_CEILING_DIRECTORIES",
                  "GIT_DISCOVERY_ACROSS_FILESYSTEM", "GIT_COMMON_DIR", "GIT_INDEX_FILE")


def locate(start: Path) -> Repo | None:
    """The work tree, git dir and index of ``start``'s repository (None outside).

    One git call, remembered for the process: a later run from the same directory checks with
    a few stats that the repository is still there and that no nested one appeared on the way
    up, instead of paying a process (~3 ms) on every snapshot.
    """
    key = (os.path.abspath(start), *(os.environ.get(k, "") for k in _DISCOVERY_ENV))
    known = _LOCATED.get(key)
    if known is not None and _still_located(Path(key[0]), known):
        return known
    repo = _locate_uncached(start)
    if repo is not None:
        _LOCATED[key] = repo
    else:
        _LOCATED.pop(key, None)
    return repo


def _still_located(start: Path, repo: Repo) -> bool:
    if not os.path.isfile(repo.git_dir / "HEAD"):
        return False
    try:
        below = start.relative_to(repo.root)
    except ValueError:
        return False
    d = start
    for _ in below.parts:  # a .git created between start and the root would now win
        if os.path.lexists(d / ".git"):
            return False
        d = d.parent
    return True


def _locate_uncached(start: Path) -> Repo | None:
    out = _subprocess.run(
        ["git", "rev-parse", "--show-toplevel", "--absolute-git-dir", "--git-path", "index"],
        cwd=start,
        extra_env=BASE_ENV,
    )
    lines = out.stdout.splitlines()
    if not out.ok or len(lines) < 3:
        return None  # not a repository, or a bare one (no work tree to snapshot)
    return Repo(Path(lines[0]), Path(lines[1]), start / lines[2])


def symbolic_head(repo: Repo) -> str | None:
    """The ref HEAD points to (``refs/heads/main``), None when detached.

    Reads the HEAD file (saves one git process per run); falls back to git for ref backends
    that do not store HEAD as a file.
    """
    try:
        content = (repo.git_dir / "HEAD").read_text().strip()
    except OSError:
        content = ""
    if content.startswith("ref: ") and not content.endswith("/.invalid"):
        return content[5:]
    if content and not content.startswith("ref:"):
        return None  # detached: the file holds a commit id
    out = try_git(repo.root, "symbolic-ref", "-q", "HEAD")
    return out.stdout.strip() if out.ok else None
