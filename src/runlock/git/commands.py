"""Running git: the environment every call gets, results and errors, and reading commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from .. import _subprocess
from ..errors import GitError

SNAPSHOT_TRAILER = "Runlock-Snapshot: 1"
HEAD_TRAILER = "Runlock-Head"
DEFAULT_BRANCH = "runlock/snapshots"
#: Each run's own ref to its snapshot commit, as on the code remote (``runlock push``): the commit
#: stays reachable while the run exists, whatever happens to the shared shadow branch.
RUN_REF_PREFIX = "refs/runlock/runs/"
# The empty tree, by hash length (SHA-1, SHA-256): the base of a diff in a repo with no commits.
EMPTY_TREE = {
    40: "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
    64: "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321",
}
POLL_S = 0.02  # how often to look again at a lock held by another git process
# Read-only commands must not take the index lock for an opportunistic refresh (that would make
# the user's own git commands fail while a run starts).
BASE_ENV = {"GIT_OPTIONAL_LOCKS": "0", "GIT_LITERAL_PATHSPECS": "0"}


def try_git(cwd: Path, *args: str) -> _subprocess.Completed:
    """Run git in ``cwd``; the caller judges the result (no exception on failure)."""
    return _subprocess.run(["git", *args], cwd=cwd, extra_env=BASE_ENV)


def run_git(
    root: Path,
    args: Sequence[str],
    *,
    extra_env: Mapping[str, str] | None = None,
    input: str | None = None,
    text: bool = True,
    hint: str = "check the repository with 'git status' and 'git fsck'.",
) -> _subprocess.Completed:
    """Run git in ``root``; a failure becomes a GitError carrying git's own explanation."""
    out = _subprocess.run(["git", *args], cwd=root, extra_env={**BASE_ENV, **(extra_env or {})},
                          input=input, text=text)
    if not out.ok:
        err = out.stderr if isinstance(out.stderr, str) else cast(bytes, out.stderr).decode(
            "utf-8", "replace")
        raise GitError(f"git {args[0]} failed in {root}: {err.strip()}", hint=hint)
    return out


def start_git(root: Path, args: Sequence[str]) -> _subprocess.Started:
    """Start a git command that waits for its stdin (see :func:`finish_git`)."""
    return _subprocess.start(["git", *args], cwd=root, extra_env=BASE_ENV)


def finish_git(started: _subprocess.Started, input: str, root: Path,
               hint: str = "check the repository with 'git status' and 'git fsck'.",
               strip: bool = True) -> str:
    """Feed and wait for a started git command; its output, or a GitError with git's words."""
    out = started.finish(input)
    if not out.ok:
        raise GitError(f"git {started.argv[1]} failed in {root}: {out.stderr.strip()}", hint=hint)
    return out.stdout.strip() if strip else out.stdout


@dataclass(frozen=True)
class Repo:
    root: Path
    git_dir: Path  # this worktree's git dir (linked worktrees have their own index and HEAD)
    index: Path


@dataclass(frozen=True)
class Commit:
    sha: str
    tree: str
    message: str

    @property
    def is_snapshot(self) -> bool:
        return SNAPSHOT_TRAILER in self.message.splitlines()

    @property
    def recorded_head(self) -> str | None:
        prefix = f"{HEAD_TRAILER}: "
        for line in reversed(self.message.splitlines()):
            if line.startswith(prefix):
                value = line[len(prefix):].strip()
                return None if value == "none" else value
        return None


def read_commits(root: Path, revs: Sequence[str]) -> list[Commit | None]:
    """Resolve several revisions in one ``cat-file --batch`` call; None for a missing one."""
    request = "".join(f"{rev}^{{commit}}\n" for rev in revs).encode()
    # text=False: object sizes are in bytes; run() returns bytes then despite its annotation.
    out = run_git(root, ["cat-file", "--batch"], input=cast(str, request), text=False)
    data = cast(bytes, out.stdout)
    commits: list[Commit | None] = []
    pos = 0
    for _ in revs:
        end = data.index(b"\n", pos)
        header = data[pos:end].decode().split()
        pos = end + 1
        if len(header) != 3 or header[1] != "commit":
            commits.append(None)  # "<rev> missing"
            continue
        size = int(header[2])
        body = data[pos:pos + size].decode("utf-8", "replace")
        pos += size + 1
        headers, _, msg = body.partition("\n\n")
        tree = headers.split("\n", 1)[0].removeprefix("tree ")
        commits.append(Commit(header[0], tree, msg))
    return commits


def run_ref(run_id: str) -> str:
    """``refs/runlock/runs/<run_id>``; refuses anything that is not a run id (a lock's id may come
    from a store: it must not name another ref)."""
    from ..record.runid import is_run_id

    if not is_run_id(run_id) or run_id != run_id.strip():
        raise GitError(f"not a run id: {run_id!r}", hint="run ids look like 20261125T163012-3f9a2c.")
    return f"{RUN_REF_PREFIX}{run_id}"


def branch_ref(branch: str) -> str:
    """``runlock/snapshots`` -> ``refs/heads/runlock/snapshots``; full ref names unchanged."""
    return branch if branch.startswith("refs/") else f"refs/heads/{branch}"
