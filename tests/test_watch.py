"""Directory watches behind the snapshot memo (inotify; Linux only)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from runlock.git import watch

linux = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux-only")


@linux
def test_a_change_in_a_watched_directory_is_seen(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    w = watch.watch_dirs([str(tmp_path), str(tmp_path / "a")])
    assert w is not None and not w.changed()
    (tmp_path / "a" / "f.py").write_text("x = 1\n")
    assert w.changed() and w.changed()  # stays changed
    w.close()


@linux
def test_unwatched_directories_and_reads_are_not_changes(tmp_path: Path) -> None:
    (tmp_path / "watched").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "watched" / "f.py").write_text("x = 1\n")
    w = watch.watch_dirs([str(tmp_path / "watched")])
    assert w is not None
    (tmp_path / "other" / "g.py").write_text("y = 1\n")
    assert (tmp_path / "watched" / "f.py").read_text() == "x = 1\n"
    assert not w.changed()


def test_filesystem_type_of_the_longest_mount_point(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/vda / ext4 rw 0 0\n"
        "server:/home /home nfs4 rw 0 0\n"
        "/dev/vdb /home/local\\040disk xfs rw 0 0\n"
    )
    m = str(mounts)
    assert watch.filesystem_type("/home/alice/repo", m) == "nfs4"
    assert watch.filesystem_type("/home/local disk/repo", m) == "xfs"
    assert watch.filesystem_type("/homework", m) == "ext4"  # not under /home
    assert watch.filesystem_type("/tmp", str(tmp_path / "missing")) is None


def test_no_watch_on_a_network_filesystem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Edits made on another host raise no inotify event: keep stat-ing there."""
    monkeypatch.setattr(watch, "filesystem_type", lambda path: "nfs4")
    assert watch.watch_dirs([str(tmp_path)], root=str(tmp_path)) is None
