"""Data hashing: dirhash compatibility, the stat cache, change detection, errors, background
hashing and output manifests. Real files in tmp_path; nothing depends on the current directory.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import xxhash

from runlock.errors import DataError
from runlock.hashing import BackgroundHasher, hash_outputs, hash_path, verify_outputs
from runlock.hashing.cache import HashCache

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
OLD = 1_600_000_000  # an mtime far from "now": such files are cacheable (not racy)


def _dirhash(path: Path, match: list[str] | None = None, ignore: list[str] | None = None) -> str:
    dirhash = pytest.importorskip("dirhash")
    with warnings.catch_warnings():  # pathspec >= 1 deprecates the pattern class dirhash uses
        warnings.simplefilter("ignore", DeprecationWarning)
        return str(dirhash.dirhash(path, xxhash.xxh3_64, match=match or ["*"], ignore=ignore))


def _write(path: Path, data: bytes | str, mtime: int | None = OLD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def _tree(root: Path) -> Path:
    """Nested dirs, empty files and dirs, unicode and awkward names, symlinks, one 5 MiB file."""
    _write(root / "a" / "x.txt", "hello\n")
    _write(root / "a" / "b" / "empty.bin", b"")
    _write(root / "a" / "b" / "c" / "deep.py", "print(1)\n")
    _write(root / "ünïcödé" / "日本語.py", "x = 'é'\n")
    _write(root / "with space" / 'quote\'s "q".txt', "q")
    _write(root / "new\nline.txt", "nl")
    _write(root / ".hidden", "h")
    _write(root / "big.bin", os.urandom(5 << 20))  # >= the thread threshold: read by the pool
    (root / "empty_dir" / "sub").mkdir(parents=True)
    (root / "a" / "link_to_big").symlink_to("../big.bin")
    (root / "ünïcödé" / "dir_link").symlink_to("../a/b")
    return root


PATTERNS = [
    (None, None),
    (["*.py"], None),
    (None, ["*.py", "a/"]),
    (["*", "!.*"], ["b/"]),
    (["ünïcödé/*"], None),
    (["**/*.txt", "big*"], ["a/link_to_big"]),
]


# -- dirhash compatibility -------------------------------------------------------------------


@pytest.mark.parametrize(("match", "ignore"), PATTERNS)
@pytest.mark.parametrize("jobs", [1, 4])
def test_dir_hash_equals_dirhash(
    tmp_path: Path, match: list[str] | None, ignore: list[str] | None, jobs: int
) -> None:
    root = _tree(tmp_path / "data")
    got = hash_path(root, match=match, ignore=ignore, jobs=jobs)
    assert got["hash"] == _dirhash(root, match, ignore)
    assert got["kind"] == "dir" and got["algorithm"] == "xxh3_64"
    assert got["path"] == str(root)
    if match is not None:
        assert got["match"] == match


def test_dir_hash_with_cache_equals_dirhash(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    cache = HashCache(tmp_path / "c.sqlite")
    first = hash_path(root, cache=cache)
    second = hash_path(root, cache=cache)  # all hits
    assert first["hash"] == second["hash"] == _dirhash(root)
    walked = [os.path.join(dp, f) for dp, _, fs in os.walk(root, followlinks=True) for f in fs]
    assert first["files"] == second["files"] == len(walked)
    assert first["size"] == second["size"] == sum(os.path.getsize(p) for p in walked)


def test_simple_dirs(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    for i in range(30):
        _write(flat / f"f{i:02d}.csv", f"{i}," * i)
    assert hash_path(flat)["hash"] == _dirhash(flat)
    assert hash_path(flat)["files"] == 30
    only_empty = _write(tmp_path / "one" / "e", b"").parent
    assert hash_path(only_empty)["hash"] == _dirhash(only_empty)


def test_empty_directory_is_hashed_not_refused(tmp_path: Path) -> None:
    (tmp_path / "e" / "sub").mkdir(parents=True)
    got = hash_path(tmp_path / "e")
    assert got["files"] == 0 and got["size"] == 0
    assert got["hash"] == xxhash.xxh3_64_hexdigest(b"")


def test_file_hash(tmp_path: Path) -> None:
    data = os.urandom(3 << 20) + b"tail"
    f = _write(tmp_path / "weights.bin", data)
    got = hash_path(f)
    assert got == {
        "path": str(f),
        "kind": "file",
        "algorithm": "xxh3_64",
        "hash": xxhash.xxh3_64_hexdigest(data),
        "size": len(data),
        "files": 1,
    }
    assert hash_path(_write(tmp_path / "empty", b""))["hash"] == xxhash.xxh3_64_hexdigest(b"")


# -- stat cache -------------------------------------------------------------------------------


def _rewrite_same_stat(path: Path, data: bytes) -> None:
    """Change content keeping size and mtime: only a re-read could notice."""
    st = path.stat()
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_cache_hit_does_not_reread(tmp_path: Path) -> None:
    cache = HashCache(tmp_path / "cache" / "hashcache.sqlite")
    f = _write(tmp_path / "d" / "f.bin", b"A" * 100)
    d = f.parent
    file_before, dir_before = hash_path(f, cache=cache), hash_path(d, cache=cache)
    _rewrite_same_stat(f, b"B" * 100)
    assert hash_path(f, cache=cache)["hash"] == file_before["hash"]  # served from the cache
    assert hash_path(d, cache=cache)["hash"] == dir_before["hash"]
    assert hash_path(f)["hash"] != file_before["hash"]  # without the cache: re-read
    os.utime(f, (OLD + 10, OLD + 10))  # a new mtime invalidates the entry
    assert hash_path(f, cache=cache)["hash"] == xxhash.xxh3_64_hexdigest(b"B" * 100)
    assert hash_path(d, cache=cache)["hash"] == _dirhash(d)


def test_cache_survives_reopen_and_moves(tmp_path: Path) -> None:
    path = tmp_path / "hashcache.sqlite"
    d = tmp_path / "d"
    f = _write(d / "sub" / "f.bin", b"A" * 64)
    with HashCache(path) as cache:
        before = hash_path(d, cache=cache)["hash"]
    _rewrite_same_stat(f, b"B" * 64)
    moved = tmp_path / "moved"
    d.rename(moved)  # same inodes under another path: found by key, not by path
    assert hash_path(moved, cache=HashCache(path))["hash"] == before


def test_fresh_files_are_not_cached(tmp_path: Path) -> None:
    """A file modified within the mtime granularity after hashing must not be trusted."""
    cache = HashCache(tmp_path / "c.sqlite")
    f = _write(tmp_path / "f.bin", b"A" * 10, mtime=None)  # mtime: now
    first = hash_path(f, cache=cache)["hash"]
    _rewrite_same_stat(f, b"B" * 10)
    assert hash_path(f, cache=cache)["hash"] != first


_WORKER = textwrap.dedent(
    """
    import sys, logging
    from runlock.hashing.cache import HashCache
    from runlock.hashing import hash_path
    logging.basicConfig(level=logging.WARNING)
    cache = HashCache(sys.argv[1])
    for _ in range(3):
        for d in sys.argv[2:]:
            print(hash_path(d, cache=cache)["hash"])
    """
)


def test_cache_shared_by_concurrent_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "hashcache.sqlite"
    dirs = []
    for k in range(4):
        d = tmp_path / f"data{k}"
        for i in range(150):
            _write(d / f"s{i % 5}" / f"f{i}.txt", f"{k}-{i}" * 50)
        dirs.append(d)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), *map(str, dirs[k:] + dirs[:k])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    expected = {_dirhash(d) for d in dirs}
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "WARNING" not in err, err  # no lock errors, no corruption
        assert set(out.split()) == expected
    # the cache was filled: content changed with the same stat is not seen
    f = dirs[0] / "s0" / "f0.txt"
    before = hash_path(dirs[0], cache=HashCache(path))["hash"]
    _rewrite_same_stat(f, b"Z" * f.stat().st_size)
    assert hash_path(dirs[0], cache=HashCache(path))["hash"] == before


def test_corrupt_cache_is_moved_aside_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / ".runlock" / "hashcache.sqlite"
    path.parent.mkdir()
    path.write_bytes(os.urandom(8192))
    d = _tree(tmp_path / "data")
    with caplog.at_level(logging.WARNING, logger="runlock"):
        got = hash_path(d, cache=HashCache(path))
        again = hash_path(d, cache=HashCache(path))
    assert got["hash"] == again["hash"] == _dirhash(d)
    warned = [r for r in caplog.records if r.name == "runlock"]
    assert len(warned) == 1 and "corrupt" in warned[0].getMessage()
    assert list(path.parent.glob("hashcache.sqlite.corrupt-*"))
    f = d / "a" / "x.txt"
    _rewrite_same_stat(f, b"HELLO\n")
    assert hash_path(d, cache=HashCache(path))["hash"] == got["hash"]  # rebuilt and used


def test_corrupt_cache_seen_by_concurrent_processes(tmp_path: Path) -> None:
    path = tmp_path / "hashcache.sqlite"
    path.write_bytes(b"garbage" * 2000)
    d = tmp_path / "data"
    for i in range(100):
        _write(d / f"f{i}.txt", str(i) * 40)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), str(d)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "Traceback" not in err and err.count("WARNING") <= 1, err
        assert set(out.split()) == {_dirhash(d)}
    with HashCache(path) as cache:  # the rebuilt file is a healthy cache
        assert cache.get_many(["0:0:0:0"]) == [None]
        assert not cache._disabled


def test_unusable_cache_degrades_to_no_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = _write(tmp_path / "not_a_dir", "x")
    d = _tree(tmp_path / "data")
    with caplog.at_level(logging.WARNING, logger="runlock"):
        got = hash_path(d, cache=HashCache(blocker / "hashcache.sqlite"))
    assert got["hash"] == _dirhash(d)
    assert any("unavailable" in r.getMessage() for r in caplog.records)


# -- change detection and errors --------------------------------------------------------------


@pytest.mark.parametrize("cached", [True, False], ids=["walk-stat", "no-walk-stat"])
def test_change_during_hash_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    cached: bool,
) -> None:
    d = tmp_path / "d"
    victim = _write(d / "sub" / "grows.log", b"x" * 1000)
    _write(d / "stable.txt", b"s")
    real_readv = os.readv
    appended = []

    def readv_while_writing(fd: int, buffers: Any) -> int:
        if len(appended) < 3 and os.readlink(f"/proc/self/fd/{fd}").endswith("grows.log"):
            appended.append(fd)
            with open(victim, "ab") as f:  # another process appending while we read
                f.write(b"more")
        return real_readv(fd, buffers)

    monkeypatch.setattr(os, "readv", readv_while_writing)
    cache = HashCache(tmp_path / "c.sqlite")
    with caplog.at_level(logging.WARNING, logger="runlock"):
        # without a cache (or a progress bar) the walk does not stat: one fstat per file
        got = hash_path(d, cache=cache) if cached else hash_path(d, progress=False)
    assert got["changed_during_hash"] == ["sub/grows.log"]
    assert any("changed while being hashed" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(os, "readv", real_readv)
    assert appended
    assert "changed_during_hash" not in hash_path(d, cache=cache)  # and it was not cached
    assert hash_path(d, cache=cache)["hash"] == _dirhash(d)


def _missing(tmp: Path) -> Path:
    return tmp / "nope"


def _broken_link(tmp: Path) -> Path:
    (tmp / "dangling").symlink_to(tmp / "gone")
    return tmp / "dangling"


def _broken_link_inside(tmp: Path) -> Path:
    _write(tmp / "d" / "ok.txt", "ok")
    (tmp / "d" / "dangling").symlink_to("gone")
    return tmp / "d"


def _symlink_cycle(tmp: Path) -> Path:
    _write(tmp / "d" / "sub" / "f", "f")
    (tmp / "d" / "sub" / "up").symlink_to("..")
    return tmp / "d"


def _unreadable_file(tmp: Path) -> Path:
    if IS_ROOT:
        pytest.skip("root reads chmod 000 files; see the /proc/self/mem row")
    f = _write(tmp / "d" / "secret", "s")
    f.chmod(0)
    return tmp / "d"


def _unreadable_dir(tmp: Path) -> Path:
    if IS_ROOT:
        pytest.skip("root lists chmod 000 directories")
    _write(tmp / "d" / "locked" / "f", "f")
    (tmp / "d" / "locked").chmod(0)
    return tmp / "d"


def _read_error(tmp: Path) -> Path:
    # Unreadable even for root: reading /proc/self/mem at offset 0 fails with EIO.
    if not os.path.exists("/proc/self/mem"):
        pytest.skip("needs Linux /proc")
    _write(tmp / "d" / "ok", "ok")
    (tmp / "d" / "mem").symlink_to("/proc/self/mem")
    return tmp / "d"


ERRORS: list[tuple[str, Callable[[Path], Path], str, str]] = [
    # (case, make input, message fragment, path fragment named in the message)
    ("missing", _missing, "not found", "nope"),
    ("broken symlink", _broken_link, "broken symlink", "dangling"),
    ("broken symlink inside", _broken_link_inside, "broken symlink", "d/dangling"),
    ("symlink cycle", _symlink_cycle, "symlink cycle", "sub/up"),
    ("unreadable file", _unreadable_file, "cannot read", "secret"),
    ("unreadable dir", _unreadable_dir, "cannot list", "locked"),
    ("read error", _read_error, "cannot read", "/proc/"),
]


@pytest.mark.parametrize(
    ("make", "message", "named"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_errors(tmp_path: Path, make: Callable[[Path], Path], message: str, named: str) -> None:
    target = make(tmp_path)
    try:
        with pytest.raises(DataError) as info:
            hash_path(target, cache=HashCache(tmp_path / "c.sqlite"))
    finally:
        for p in tmp_path.rglob("*"):
            if not p.is_symlink():
                p.chmod(0o755)
    assert isinstance(info.value, OSError)
    assert message in str(info.value) and named in str(info.value)


def test_patterns_must_be_lists(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="list of patterns"):
        hash_path(_tree(tmp_path / "d"), match="*.py")


# -- background hashing -----------------------------------------------------------------------


def test_background_hasher_returns_at_once(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(256 << 20)  # sparse: 256 MB to read, no disk used
    many = tmp_path / "many"
    for i in range(500):
        _write(many / f"d{i % 10}" / f"{i}.txt", str(i))
    inputs = {"big": big, "many": many, "missing": tmp_path / "missing"}
    cache_path = tmp_path / ".runlock" / "hashcache.sqlite"
    starts = []
    for _ in range(3):  # best of 3: a loaded CI machine may delay any one thread start
        hasher = BackgroundHasher(inputs, cache_path=cache_path, ignore={"many": ["d0/"]})
        t0 = time.perf_counter()
        hasher.start()
        starts.append(time.perf_counter() - t0)
        assert not hasher.done  # 256 MB cannot be hashed in the time start() took
        if len(starts) < 3:
            hasher.result()
    # (how fast start() returns is bench/hashing.py's to measure, not a test's)
    res = hasher.result(timeout=60)
    assert hasher.done
    assert list(res) == ["big", "many", "missing"]
    assert res["big"]["size"] == 256 << 20 and res["big"]["kind"] == "file"
    assert res["many"]["hash"] == _dirhash(many, ignore=["d0/"]) and res["many"]["files"] == 450
    assert "not found" in res["missing"]["error"]
    assert (tmp_path / ".runlock" / "hashcache.sqlite").exists()


def test_background_hasher_timeout_and_unknown_patterns(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(256 << 20)
    hasher = BackgroundHasher({"big": big}).start()
    with pytest.raises(TimeoutError):
        hasher.result(timeout=0.001)
    assert hasher.result()["big"]["hash"] == hash_path(big)["hash"]
    with pytest.raises(ValueError, match="unknown data inputs"):
        BackgroundHasher({"a": big}, match={"b": ["*"]})


def test_no_heavy_imports() -> None:
    code = (
        "import sys, runlock.hashing, runlock.hashing.cache; "
        "print(sorted(m for m in ('rich', 'pathspec', 'dirhash', 'concurrent.futures', "
        "'omegaconf', 'numpy', 'sqlite3') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- outputs manifest -------------------------------------------------------------------------


def test_outputs_manifest_and_verify(tmp_path: Path) -> None:
    run = tmp_path / "run dir"
    _write(run / "run.lock", "status: running")
    _write(run / "model.pt", os.urandom(1000))
    _write(run / "plots" / "loss ü.png", b"png")
    _write(run / "plots" / "empty.txt", b"")
    _write(run / ".runlock" / "tmp", "internal")
    (run / "dangling").symlink_to("nowhere")  # outputs are recorded, not validated
    cache = HashCache(tmp_path / "c.sqlite")
    manifest = hash_outputs(run, exclude={"run.lock", ".runlock/"}, cache=cache)
    assert manifest["algorithm"] == "xxh3_64"
    assert manifest["exclude"] == [".runlock", "run.lock"]
    assert list(manifest["files"]) == ["model.pt", "plots/empty.txt", "plots/loss ü.png"]
    assert manifest["files"]["plots/empty.txt"] == xxhash.xxh3_64_hexdigest(b"")
    assert hash_outputs(run, exclude={"run.lock", ".runlock"}) == manifest  # deterministic

    ok = {"match": True, "changed": [], "missing": [], "added": []}
    assert verify_outputs(run, manifest) == ok
    _write(run / "run.lock", "status: completed")  # excluded: rewritten at the end of a run
    assert verify_outputs(run, manifest, cache=cache) == ok

    _write(run / "model.pt", os.urandom(1000), mtime=OLD + 5)
    (run / "plots" / "empty.txt").unlink()
    _write(run / "extra.csv", "a,b")
    assert verify_outputs(run, manifest, cache=cache) == {
        "match": False,
        "changed": ["model.pt"],
        "missing": ["plots/empty.txt"],
        "added": ["extra.csv"],
    }


def test_verify_rejects_unknown_algorithm(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="md5"):
        verify_outputs(tmp_path, {"algorithm": "md5", "files": {}})


def test_outputs_tolerate_a_file_deleted_while_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    _write(run / "result.json", "{}")
    tmp = _write(run / ".run.lock.tmp123", "partial")  # an atomic write in progress
    from runlock.hashing import read as hashing_read

    real_start = hashing_read._start

    def open_after_delete(path: str, advance: Any) -> Any:
        if path.endswith(".tmp123") and tmp.exists():
            tmp.unlink()  # renamed / removed between the listing and the read
        return real_start(path, advance)

    monkeypatch.setattr(hashing_read, "_start", open_after_delete)
    assert list(hash_outputs(run)["files"]) == ["result.json"]
    with pytest.raises(DataError, match="not found"):
        hash_path(tmp)


def test_progress_bar_does_not_change_the_hash(tmp_path: Path) -> None:
    """The bar (forced on, as on a terminal) only watches the reads."""
    for i in range(3):
        _write(tmp_path / "d" / f"f{i}.bin", "x" * (i * 70_000))
    shown = hash_path(tmp_path / "d", progress=True)
    assert shown == hash_path(tmp_path / "d", progress=False)
    assert shown["files"] == 3
