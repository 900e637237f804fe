"""The walk of a data directory as dirhash (scantree) does it, and directory digests."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import xxhash

from ..errors import DataError, UsageError


class VanishedError(DataError):
    """A file listed by the walk and deleted before it was opened."""


@dataclass(slots=True, frozen=True)
class Where:
    """A walked directory: how the files found in it are named."""

    real: str  # resolved path ("" for "/")
    rel: str  # relative to the hashed root, "/"-separated ("" for the root)


# A file found by the walk: (directory, name, stat before reading, resolved path if a symlink).
# A plain tuple, not an object: building one per file is a measurable part of re-checking
# 20,000 cached files, so paths are derived only when needed (rel_path, real_path).
# The stat is None when the walk did not stat (no cache): files are then fstat-ed when opened.
File = tuple[Where, str, "os.stat_result | None", "str | None"]


def rel_path(f: File) -> str:
    """Path relative to the hashed root ("/"-separated); the name for a single-file input."""
    return f"{f[0].rel}/{f[1]}" if f[0].rel else f[1]


def real_path(f: File) -> str:
    """Resolved path: what is opened and what the cache stores."""
    return f[3] if f[3] is not None else f"{f[0].real}/{f[1]}"


_SCANDIR_FD = os.scandir in os.supports_fd
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(slots=True)
class Dir:
    name: str
    files: list[int] = field(default_factory=list)  # indices in the file list
    dirs: list[Dir] = field(default_factory=list)


def file_filter(
    match: Sequence[str] | None, ignore: Sequence[str] | None
) -> Callable[[str], bool] | None:
    """dirhash's file filter (``get_match_patterns`` + scantree's ``RecursionFilter``)."""
    if isinstance(match, str) or isinstance(ignore, str):
        raise UsageError("match and ignore take a list of patterns, not a string")
    patterns = ["*"] if match is None else list(match)
    patterns += ["!" + p for p in (ignore or [])]
    patterns = list(dict.fromkeys(patterns))  # dirhash deduplicates, keeping the order
    if patterns == ["*"]:
        return None
    try:
        from pathspec import PathSpec
        from pathspec.patterns.gitwildmatch import GitWildMatchPattern
    except ImportError as exc:  # pragma: no cover - pathspec ships with dirhash
        raise UsageError(
            "match/ignore patterns need the 'pathspec' package", hint="pip install pathspec"
        ) from exc
    import warnings

    with warnings.catch_warnings():
        # pathspec >= 1 deprecates GitWildMatchPattern, but it is what dirhash matches with.
        warnings.simplefilter("ignore", DeprecationWarning)
        spec = PathSpec.from_lines(GitWildMatchPattern, patterns)
    # pathspec.util.match_file: the last pattern that matches decides. Walking the regexes
    # backwards and stopping at the first hit is the same and 3x cheaper per file. Our relative
    # paths are already normalized ("/"-separated, no leading "/" or "./").
    rules = [
        (p.regex.search, bool(p.include))
        for p in reversed(spec.patterns)
        if p.include is not None and p.regex is not None
    ]

    def matches(rel: str) -> bool:
        for search, include in rules:
            if search(rel) is not None:
                return include
        return False

    return matches


def scan(
    root: str,
    matcher: Callable[[str], bool] | None,
    *,
    broken: Literal["raise", "skip"] = "raise",
    prune: Callable[[str], bool] | None = None,
    stat: bool = True,
) -> tuple[Dir, list[File]]:
    """Walk ``root`` like scantree does for dirhash; stat every included file once."""
    files: list[File] = []
    root_real = os.path.realpath(root)
    ancestors = {root_real}

    def walk(abs_dir: str, real_dir: str, rel_dir: str, name: str) -> Dir:
        node = Dir(name)
        where = Where(real_dir, rel_dir)
        node_files = node.files
        fd = -1
        try:
            if _SCANDIR_FD:
                # Listing through a directory fd makes DirEntry.stat() an fstatat(fd, name):
                # no path lookup per file, which is most of the cost of re-checking a dataset.
                fd = os.open(abs_dir, _DIR_FLAGS)
                entries = list(os.scandir(fd))
            else:  # pragma: no cover - Windows
                entries = list(os.scandir(abs_dir))
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            raise DataError(f"cannot list data directory {abs_dir}: {exc.strerror}") from exc
        try:
            for e in entries:
                ename = e.name
                try:
                    is_link = e.is_symlink()
                    if e.is_dir():
                        rel = f"{rel_dir}/{ename}" if rel_dir else ename
                        if prune is not None and prune(rel):
                            continue
                        epath = f"{abs_dir}/{ename}"
                        real = os.path.realpath(epath) if is_link else f"{real_dir}/{ename}"
                        if is_link and real in ancestors:
                            raise DataError(f"symlink cycle in data: {epath} -> {real}")
                        ancestors.add(real)
                        child = walk(epath, real, rel, ename)
                        ancestors.discard(real)
                        if child.files or child.dirs:
                            node.dirs.append(child)
                        continue
                    if matcher is not None or prune is not None:
                        rel = f"{rel_dir}/{ename}" if rel_dir else ename
                        if prune is not None and prune(rel):
                            continue
                        if matcher is not None and not matcher(rel):
                            continue
                    if e.is_file():
                        node_files.append(len(files))
                        if is_link:
                            files.append(
                                (
                                    where,
                                    ename,
                                    e.stat() if stat else None,
                                    os.path.realpath(f"{abs_dir}/{ename}"),
                                )
                            )
                        else:
                            files.append((where, ename, e.stat() if stat else None, None))
                    elif is_link and broken == "raise":
                        epath = f"{abs_dir}/{ename}"
                        if not os.path.exists(epath):
                            raise DataError(
                                f"broken symlink in data: {epath} -> {os.readlink(epath)}",
                                hint="fix or remove the link, or exclude it with an ignore pattern",
                            )
                    # sockets, fifos, devices: skipped, as dirhash does
                except DataError:
                    raise
                except FileNotFoundError as exc:  # deleted between listing and stat
                    raise VanishedError(
                        f"data file vanished while hashing: {abs_dir}/{ename}"
                    ) from exc
                except OSError as exc:
                    raise DataError(
                        f"cannot access data file {abs_dir}/{ename}: {exc.strerror}"
                    ) from exc
        finally:
            if fd >= 0:
                os.close(fd)
        return node

    return walk(root, root_real.rstrip("/"), "", os.path.basename(root)), files


def dir_digest(node: Dir, files: Sequence[File], digests: Sequence[str]) -> str:
    entries = [f"dirhash:{dir_digest(d, files, digests)}\0name:{d.name}" for d in node.dirs]
    entries += [f"data:{digests[i]}\0name:{files[i][1]}" for i in node.files]
    entries.sort()
    return xxhash.xxh3_64_hexdigest("\0\0".join(entries).encode("utf-8", "surrogateescape"))
