"""Code remotes and worktrees: refs pushed and fetched by push/pull, detached worktrees
for reproduce. Network commands never prompt for credentials."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .. import _subprocess
from ..errors import GitError
from .commands import BASE_ENV, run_git, try_git

_REMOTE_ENV = {"GIT_TERMINAL_PROMPT": "0"}


def has_commit(repo: Path, commit: str) -> bool:
    """True when ``commit`` exists in ``repo``'s object store."""
    return try_git(repo, "cat-file", "-e", f"{commit}^{{commit}}").ok


def update_ref(repo: Path, ref: str, commit: str) -> None:
    run_git(repo, ["update-ref", ref, commit])


def push_refs(repo: Path, remote: str, refspecs: Sequence[str]) -> _subprocess.Completed:
    """``git push REMOTE REFSPEC...`` without hooks or prompts; the caller judges the result."""
    return _subprocess.run(
        ["git", "push", "--quiet", "--no-verify", remote, *refspecs],
        cwd=repo,
        extra_env={**BASE_ENV, **_REMOTE_ENV},
    )


def fetch_refs(repo: Path, remote: str, refspecs: Sequence[str]) -> _subprocess.Completed:
    """``git fetch REMOTE REFSPEC...`` without tags or prompts; the caller judges the result."""
    return _subprocess.run(
        ["git", "fetch", "--quiet", "--no-tags", remote, *refspecs],
        cwd=repo,
        extra_env={**BASE_ENV, **_REMOTE_ENV},
    )


@contextmanager
def detached_worktree(repo: Path, commit: str) -> Iterator[Path]:
    """A temporary detached worktree at ``commit`` (the user's work tree untouched), removed
    afterwards, also on errors."""
    import shutil

    tmp = Path(tempfile.mkdtemp(prefix="runlock-worktree-"))
    wt = tmp / "src"
    out = try_git(repo, "worktree", "add", "--detach", "--quiet", str(wt), commit)
    if not out.ok:
        shutil.rmtree(tmp, ignore_errors=True)
        raise GitError(f"Cannot check out snapshot {commit} of {repo}: {out.stderr.strip()}")
    try:
        yield wt
    finally:
        try_git(repo, "worktree", "remove", "--force", str(wt))
        shutil.rmtree(tmp, ignore_errors=True)
        try_git(repo, "worktree", "prune")
