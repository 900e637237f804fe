"""Commits on the shadow branch: identity, compare-and-swap on the ref, browsing and deleting."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import cast

from .. import _subprocess
from ..errors import GitError
from ..redact import redact_url
from .commands import (
    DEFAULT_BRANCH,
    HEAD_TRAILER,
    POLL_S,
    SNAPSHOT_TRAILER,
    Commit,
    branch_ref,
    finish_git,
    read_commits,
    run_git,
    run_ref,
    start_git,
    try_git,
)
from .locate import repo_root
from .options import SnapshotOptions
from .tree import drop_private_indexes

# update-ref messages that mean "someone else moved or is moving the ref": re-read and retry.
_RACE_MARKERS = ("but expected", "reference already exists", "unable to resolve reference")
_MAX_RACES = 500  # a safety net only: each lost race is another snapshot's success


# The identity of snapshot commits when the user has not configured one (user.name/email).
_FALLBACK_NAME, _FALLBACK_EMAIL = "runlock", "runlock@localhost"


def check_owned(tip: Commit | None, branch: str) -> None:
    """Refuse to append snapshots to a branch that holds the user's own commits."""
    if tip is not None and not tip.is_snapshot:
        raise GitError(
            f"branch {branch!r} exists and is not a runlock snapshot branch "
            f"(its tip {tip.sha[:12]} has no '{SNAPSHOT_TRAILER}' trailer).",
            hint="configure another snapshot branch (SnapshotOptions.branch), "
            "e.g. 'runlock/snapshots-<you>'.",
        )


def read_config(root: Path) -> dict[str, list[str]]:
    """The configuration and git's author and committer idents (``GIT_AUTHOR_IDENT``...), in one
    git call (``git var -l``).

    ``EMAIL`` (git's last resort for an address) is set for this call when unset: without an
    address git would guess one from the host name, which may mean a slow DNS lookup.
    """
    env = {} if "EMAIL" in os.environ else {"EMAIL": _FALLBACK_EMAIL}
    out = run_git(root, ["var", "-l"], extra_env=env)
    config: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config.setdefault(key, []).append(value)
    return config


def _idents(config: Mapping[str, list[str]]) -> tuple[str, str]:
    """Author and committer of a snapshot commit (``Name <email> <epoch> <zone>``): the user's
    identity when user.name and user.email are configured, else a neutral runlock one (a name
    or address set in ``GIT_AUTHOR_NAME``... still wins); the date as git would put it."""
    configured = "user.name" in config and "user.email" in config
    idents = []
    for role in ("AUTHOR", "COMMITTER"):
        ident = config.get(f"GIT_{role}_IDENT", [""])[-1]
        who, _, when = ident.rpartition("> ")
        if not configured or not who:
            name = os.environ.get(f"GIT_{role}_NAME", _FALLBACK_NAME)
            email = os.environ.get(f"GIT_{role}_EMAIL", _FALLBACK_EMAIL)
            who = f"{_ident_part(name)} <{_ident_part(email)}"
        if not when:
            when = f"{int(time.time())} +0000"
        idents.append(f"{who}> {when}")
    return idents[0], idents[1]


def _ident_part(value: str) -> str:
    """What git keeps of a name or address: no angle brackets or line breaks."""
    return " ".join(value.translate({ord("<"): None, ord(">"): None}).split()) or _FALLBACK_NAME


def remote_urls(config: Mapping[str, list[str]]) -> dict[str, str]:
    urls = {k[len("remote."):-len(".url")]: v[0] for k, v in config.items()
            if k.startswith("remote.") and k.endswith(".url") and v}
    return {name: redact_url(urls[name]) for name in sorted(urls)}


class CommitWriters:
    """``hash-object`` (writes the commit) and ``update-ref --stdin`` (moves the branch),
    started while the tree is still being written: each then costs a pipe write instead of a
    process start (~4 ms each) on the snapshot's critical path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.commit: _subprocess.Started | None = start_git(
            root, ["hash-object", "-t", "commit", "-w", "--stdin"])
        self.ref: _subprocess.Started | None = start_git(
            root, ["update-ref", "-m", "runlock snapshot", "--stdin"])

    def take(self) -> tuple[_subprocess.Started, _subprocess.Started]:
        """The started pair for the first attempt; fresh processes for a retry."""
        commit, ref = self.commit, self.ref
        if commit is None or ref is None:
            commit = start_git(self.root, ["hash-object", "-t", "commit", "-w", "--stdin"])
            ref = start_git(self.root, ["update-ref", "-m", "runlock snapshot", "--stdin"])
        self.commit = self.ref = None
        return commit, ref

    def close(self) -> None:
        for proc in (self.commit, self.ref):
            if proc is not None:
                proc.cancel()
        self.commit = self.ref = None


def advance(
    writers: CommitWriters,
    ref: str,
    tree: str,
    head: str | None,
    tip: Commit | None,
    message: str,
    config: Mapping[str, list[str]],
    options: SnapshotOptions,
    keep_ref: str | None = None,
) -> tuple[str, bool]:
    """Commit ``tree`` on top of the shadow tip and move the ref by compare-and-swap.

    Returns (commit, reused). Concurrent runs race on the ref: a lost race re-reads the tip and
    retries, so every snapshot lands in the chain. An unchanged tree on the same HEAD reuses the
    tip instead of piling up identical commits. ``keep_ref`` (the run's own ref) is set to the
    commit in the same ``update-ref`` transaction as the branch: no extra git process, and no
    moment when the commit is on the branch but not yet kept by the run.
    """
    root = writers.root
    author, committer = _idents(config)
    trailers = f"{SNAPSHOT_TRAILER}\n{HEAD_TRAILER}: {head or 'none'}\n"
    body = f"{message.strip() or 'runlock snapshot'}\n\n{trailers}"
    locked_until: float | None = None
    for _ in range(_MAX_RACES):
        if tip is not None and tip.tree == tree and tip.recorded_head == head:
            if keep_ref is not None:
                make_commit, move_ref = writers.take()
                make_commit.cancel()
                finish_git(move_ref, f"update {keep_ref} {tip.sha}\n", root)
            return tip.sha, True
        parents = "".join(f"parent {p}\n" for p in (tip.sha if tip else None, head) if p)
        make_commit, move_ref = writers.take()
        try:
            commit = finish_git(make_commit, f"tree {tree}\n{parents}author {author}\n"
                             f"committer {committer}\n\n{body}", root)
        except BaseException:
            move_ref.cancel()
            raise
        old = tip.sha if tip else "0" * len(commit)  # zeros: the ref must not exist yet
        keep = f"update {keep_ref} {commit}\n" if keep_ref is not None else ""
        out = move_ref.finish(f"update {ref} {commit} {old}\n{keep}")
        if out.ok:
            return commit, False
        if "File exists" in out.stderr:  # another process holds <ref>.lock: wait, bounded
            locked_until = locked_until or time.monotonic() + options.lock_timeout_s
            if time.monotonic() >= locked_until:
                raise GitError(
                    f"the snapshot branch {ref} stayed locked for {options.lock_timeout_s:g} s: "
                    f"{out.stderr.strip().splitlines()[0]}",
                    hint="if no git command is running, the lock is stale: remove the "
                    "'.lock' file named above.",
                )
        elif not any(marker in out.stderr for marker in _RACE_MARKERS):
            raise GitError(
                f"cannot update the snapshot branch {ref}: {out.stderr.strip()}",
                hint="configure another snapshot branch (SnapshotOptions.branch).",
            )
        # A lost race means another snapshot landed: re-read the tip and stack on top of it.
        import random  # (only here: ~1.5 ms to import in a fresh process)

        time.sleep(random.uniform(0, POLL_S))  # jitter: racing processes spread out
        (tip,) = read_commits(root, [ref])
        check_owned(tip, ref.removeprefix("refs/heads/"))
    raise GitError(f"gave up updating the snapshot branch {ref} after {_MAX_RACES} lost races.",
                   hint="too many concurrent runs: retry, or give groups of runs their own branch.")


def snapshot_diff(
    repo: Path, commit_a: str, commit_b: str, patch: bool = False
) -> dict[str, list[str]] | str:
    """Files changed from ``commit_a`` to ``commit_b``, or the patch text when ``patch``.

    Typical use: ``snapshot_diff(root, git.snapshot.parent_head, git.snapshot.commit)`` shows a
    run's uncommitted changes; two runs' snapshot commits show how their code differs.
    """
    if patch:
        # Bytes, decoded leniently: a patch may contain non-UTF-8 file content.
        out = run_git(repo, ["diff", "--no-color", commit_a, commit_b], text=False)
        return cast(bytes, out.stdout).decode("utf-8", "replace")
    out = run_git(repo, ["diff", "--name-status", "-z", "--no-renames", commit_a, commit_b])
    changes: dict[str, list[str]] = {"added": [], "modified": [], "deleted": []}
    fields = out.stdout.split("\0")
    for status_letter, name in zip(fields[0::2], fields[1::2]):
        key = {"A": "added", "D": "deleted"}.get(status_letter[:1], "modified")
        changes[key].append(name)
    return {k: sorted(v) for k, v in changes.items()}


def delete_run_ref(repo: Path, run_id: str, commit: str | None = None) -> bool:
    """Delete the run's own ref ``refs/runlock/runs/<run_id>`` (what ``runlock rm`` does); False
    when absent, or when it points elsewhere than ``commit`` (another copy of the run, e.g.
    pulled again, now owns it). The shared shadow branch is never touched: other runs, in other
    results roots or still starting, rely on it."""
    ref = run_ref(run_id)
    root = repo_root(repo)
    if root is None:
        return False
    current = try_git(root, "rev-parse", "--verify", "-q", ref)
    if not current.ok or (commit is not None and current.stdout.strip() != commit):
        return False
    return try_git(root, "update-ref", "-d", ref, current.stdout.strip()).ok


def delete_snapshot_ref(repo: Path, branch: str = DEFAULT_BRANCH) -> bool:
    """Delete the shadow branch (its commits become garbage for ``git gc`` unless a run's own ref
    keeps them); False if absent. For a user clearing out snapshots on purpose: ``runlock rm``
    never calls it.

    Refuses a branch that is not a runlock snapshot branch, so a misconfigured name cannot
    delete user work.
    """
    root = repo_root(repo)
    if root is None:
        raise GitError(f"{repo} is not inside a git repository.", hint="pass a repository path.")
    ref = branch_ref(branch)
    (tip,) = read_commits(root, [ref])
    if tip is None:
        return False
    check_owned(tip, branch)
    run_git(root, ["update-ref", "-d", ref, tip.sha])
    drop_private_indexes(root)
    return True
