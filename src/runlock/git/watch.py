"""Directory watches (Linux inotify): "has anything changed under these directories since?" in
one non-blocking read instead of a stat of every file.

Used by the git snapshot memo: a process running stages repeatedly on an unchanged worktree
checked ~2,300 paths per run (~9 ms). Elsewhere, or when watches cannot be had (the per-user
limit reached, no libc), :func:`watch_dirs` returns None and callers keep stat-ing.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterable

# <sys/inotify.h>
_IN_MODIFY = 0x002
_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_DONT_FOLLOW = 0x02000000
_IN_ONLYDIR = 0x01000000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
#: every change to a directory's entries or to the files in it (content, metadata, renames)
_MASK = (
    _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE
    | _IN_DELETE | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_DONT_FOLLOW | _IN_ONLYDIR
)  # fmt: skip

_libc: ctypes.CDLL | None = None


def _load_libc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None and sys.platform == "linux":
        try:
            import ctypes.util  # (imports shutil, tempfile, subprocess: only when watching)

            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            lib.inotify_init1.argtypes = [ctypes.c_int]
            lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
            _libc = lib
        except (OSError, AttributeError):
            return None
    return _libc


class DirWatch:
    """Watches on a set of directories; :meth:`changed` tells whether any event arrived."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._changed = False

    def changed(self) -> bool:
        """True once anything changed in a watched directory (or the event queue overflowed)."""
        if self._changed or self._fd < 0:
            return True
        try:
            self._changed = bool(os.read(self._fd, 1 << 16))
        except BlockingIOError:
            return False
        except OSError:
            self._changed = True
        return self._changed

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


#: Filesystems whose changes all happen on this machine, so inotify sees them. On NFS, Lustre,
#: GPFS, SMB or FUSE mounts a file edited from another host raises no event: no watch there.
_LOCAL_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "f2fs", "zfs", "overlay",
                       "jfs", "reiserfs", "bcachefs"})


def filesystem_type(path: str, mounts: str = "/proc/self/mounts") -> str | None:
    """The type of the filesystem holding ``path`` (the longest mount point above it)."""
    real = os.path.realpath(path)
    best, fstype = "", None
    try:
        with open(mounts, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, fstype = point, fields[2]
    except OSError:
        return None
    return fstype


def watch_dirs(dirs: Iterable[str], *, root: str | None = None) -> DirWatch | None:
    """Watch ``dirs`` from now on; None where inotify is unavailable, a watch fails, or ``root``
    is on a filesystem that other machines can change (see ``_LOCAL_FS``)."""
    libc = _load_libc()
    if libc is None:
        return None
    if root is not None and filesystem_type(root) not in _LOCAL_FS:
        return None
    fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    if fd < 0:
        return None
    for d in dirs:
        if libc.inotify_add_watch(fd, os.fsencode(d), _MASK) < 0:
            os.close(fd)  # e.g. ENOSPC: fs.inotify.max_user_watches reached
            return None
    return DirWatch(fd)
