"""What a source snapshot captures and where it goes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .commands import DEFAULT_BRANCH

#: Files that hold credentials by convention: a snapshot leaves them out even when they are
#: untracked and not gitignored (the snapshot branch is pushed to the code remote). gitignore-
#: style names matched against every path component, case-insensitively; ``dir/`` names a
#: directory. The lock's ``git.secrets_left_out`` and a warning name the files left out. To
#: snapshot one on purpose, name it without wildcards in ``snapshot_include`` (its path, its
#: file name or a directory holding it, e.g. ``snapshot_include=("*", ".env.example")``), or
#: pass another list as ``SnapshotOptions.secret_files``.
SECRET_FILES: tuple[str, ...] = (
    ".env", ".env.*", "*.env", ".envrc",
    "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "*.ppk", "*.kdbx",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*",
    ".netrc", "_netrc", ".npmrc", ".pypirc", ".pgpass", ".htpasswd", ".git-credentials",
    ".dockercfg", "rclone.conf", "*.tfvars", "kubeconfig",
    ".aws/", ".ssh/", ".gnupg/", ".kube/", ".docker/", ".azure/", ".gcloud/",
    # Named secret stores, never a broad "*secret*": that would drop source files such as
    # secrets_manager.py or test_secrets.py from the snapshot, which is worse than useless.
    "credentials", "credentials.json", "credentials.yaml", "credentials.yml", "credentials.toml",
    "credentials.ini", "*-credentials.json", "*_credentials.json", "client_secret*.json",
    "service-account*.json", "secrets.json", "secrets.yaml", "secrets.yml", "secrets.toml",
    "secrets.ini", "secrets.env", "*.secret", "*.secrets",
)
_MAGIC = frozenset("*?[")
_MATCHERS: dict[tuple[str, ...], tuple[re.Pattern[str] | None, re.Pattern[str] | None]] = {}


@dataclass(frozen=True)
class SnapshotOptions:
    """What a source snapshot captures and where it goes.

    ``include`` / ``exclude``: gitignore-style globs filtering the worktree changes captured;
    ``exclude_dirs``: absolute paths never read (e.g. the results root, even when not
    gitignored); ``files_of_interest``: paths (repo-relative or absolute) whose blob ids are
    recorded; ``lock_timeout_s``: how long to wait for another git process holding a lock;
    ``secret_files``: files never captured unless ``include`` names them (:data:`SECRET_FILES`).
    """

    branch: str = DEFAULT_BRANCH
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_file_bytes: int = 10 * 2**20
    files_of_interest: tuple[str, ...] = ()
    exclude_dirs: tuple[Path, ...] = ()
    lock_timeout_s: float = 10.0
    secret_files: tuple[str, ...] = SECRET_FILES


def _matchers(patterns: tuple[str, ...]) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    """(file-name matcher, directory-name matcher) of ``patterns``, compiled once."""
    found = _MATCHERS.get(patterns)
    if found is None:
        import fnmatch  # (on the snapshot thread, once)

        names = [fnmatch.translate(p.lower()) for p in patterns if p and not p.endswith("/")]
        dirs = [fnmatch.translate(p.rstrip("/").lower()) for p in patterns if p.endswith("/")]
        found = (re.compile("|".join(names)) if names else None,
                 re.compile("|".join(dirs + names)) if dirs or names else None)
        _MATCHERS[patterns] = found
    return found


def split_secret_files(paths: Iterable[str], options: SnapshotOptions) -> tuple[list[str], list[str]]:
    """``paths`` (repo-relative, posix) split into those a snapshot may capture and the secret
    files (:data:`SECRET_FILES`) it leaves out, unless ``options.include`` names them."""
    name_re, dir_re = _matchers(options.secret_files)
    if name_re is None or dir_re is None:
        return list(paths), []
    wanted = {p.strip().strip("/") for p in options.include if p and not _MAGIC & set(p)}
    keep: list[str] = []
    secret: list[str] = []
    for rel in paths:
        parts = rel.rstrip("/").lower().split("/")
        if not (name_re.match(parts[-1]) or any(dir_re.match(d) for d in parts[:-1])):
            keep.append(rel)
            continue
        parts = rel.rstrip("/").split("/")
        named = rel.rstrip("/") in wanted or parts[-1] in wanted or any(
            "/".join(parts[: i + 1]) in wanted or parts[i] in wanted for i in range(len(parts) - 1))
        (keep if named else secret).append(rel)
    return keep, secret
