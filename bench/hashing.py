#!/usr/bin/env python3
"""Benchmark: runlock data hashing against a plain xxh3 loop, dirhash and (if installed) dvc-data.

Fixtures (made once under $BENCH_DATA, default a fresh temp dir removed at the end):
  large   $BENCH_LARGE_N files of $BENCH_LARGE_MB MB          (default 4 x 500 MB)
  small   $BENCH_SMALL_N files of 4-64 KiB in nested dirs     (default 20,000, ~690 MB)

Parts:
  warm    each contender on each dataset, page cache warm, alternating, one untimed round first
  rehash  re-checking the unchanged small dataset: runlock with its stat cache (all hits)
          against os.walk + os.stat of every file (the stat floor)

Targets (2 cores): large >= 1.3x the loop; small >= 0.9x the loop and >= 3x dirhash md5;
cache re-hash <= 1.5x the stat floor.

Usage: .venv/bin/python bench/hashing.py [--parts warm,rehash] [--datasets small,large]
Env: BENCH_DATA, BENCH_LARGE_MB, BENCH_LARGE_N, BENCH_SMALL_N, BENCH_REPS (default 5)
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import xxhash

from runlock.hashing import hash_path
from runlock.hashing.cache import HashCache

CHUNK = 1 << 20


def mark(root: Path) -> Path:
    """Marks a complete fixture; kept outside it so that no contender needs an ignore rule."""
    return root.with_name(root.name + ".ok")


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


# -- fixtures ---------------------------------------------------------------------------------


def make_small(root: Path, n: int) -> None:
    if mark(root).exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(42)
    pool = rng.randbytes(8 << 20)
    for k in range(n):
        d = root / f"d{k % 20:02d}" / f"s{(k // 20) % 50:02d}"
        d.mkdir(parents=True, exist_ok=True)
        size = rng.randint(4 << 10, 64 << 10)
        off = rng.randint(0, len(pool) - size)
        (d / f"f{k:05d}.bin").write_bytes(pool[off : off + size])
    backdate(root)
    mark(root).write_text("ok")


def make_large(root: Path, n: int, mb: int) -> None:
    if mark(root).exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = random.Random(7)
    block = rng.randbytes(64 << 20)
    for k in range(n):
        with open(root / f"large{k}.bin", "wb") as f:
            left = mb * 1_000_000
            salt = 0
            while left > 0:
                part = block[: min(left, len(block))]
                f.write(salt.to_bytes(8, "little") + part[8:])
                left -= len(part)
                salt += 1
    backdate(root)
    mark(root).write_text("ok")


def backdate(root: Path) -> None:
    # Files written seconds ago are too fresh to cache (racy-mtime rule): age them a minute.
    t = time.time() - 60
    for dp, _, fns in os.walk(root):
        for fn in fns:
            os.utime(os.path.join(dp, fn), (t, t))


def list_files(root: Path) -> list[str]:
    out = []
    for dp, dns, fns in os.walk(root):
        dns.sort()
        out += [os.path.join(dp, fn) for fn in sorted(fns)]
    return out


# -- contenders -------------------------------------------------------------------------------


def xxh3_loop(root: Path) -> str:
    """Single-threaded: walk, read(1 MiB), xxh3_64 per file, digest of the pairs."""
    h = xxhash.xxh3_64()
    for p in list_files(root):
        fh = xxhash.xxh3_64()
        with open(p, "rb", buffering=0) as f:
            while b := f.read(CHUNK):
                fh.update(b)
        h.update(f"{p}\0{fh.hexdigest()}\n".encode())
    return h.hexdigest()


def runlock_hash(root: Path) -> str:
    return str(hash_path(root, progress=False)["hash"])


def dirhash_md5(root: Path) -> str:
    import dirhash  # type: ignore[import-untyped]

    return str(dirhash.dirhash(str(root), "md5"))


def dvc_md5(root: Path) -> str:
    from dvc_data.hashfile.build import build  # type: ignore[import-not-found]
    from dvc_data.hashfile.db import HashFileDB  # type: ignore[import-not-found]
    from dvc_objects.fs import LocalFileSystem  # type: ignore[import-not-found]

    fs = LocalFileSystem()
    tmp = tempfile.mkdtemp(prefix="dvcodb")
    try:
        odb = HashFileDB(fs, tmp)
        _, _, obj = build(odb, str(root), fs, "md5", dry_run=True)
        return str(obj.hash_info.value)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def walk_stat(root: Path) -> None:
    for dp, _, fns in os.walk(root):
        for fn in fns:
            os.stat(os.path.join(dp, fn))


# -- timing -----------------------------------------------------------------------------------


def alternate(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, list[float]]:
    """Round robin, order rotated each repetition, after one untimed warm-up round."""
    names = list(fns)
    for name in names:
        fns[name]()
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            fns[name]()
            out[name].append(time.perf_counter() - t0)
    return out


def paired_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b))


def show(title: str, s: dict[str, list[float]], ref: str, nbytes: int | None) -> None:
    print(f"\n== {title} ==")
    w = max(len(k) for k in s)
    head = f"{'contender':<{w}}  {'ms':>9}  " + (f"{'GB/s':>6}  " if nbytes else "")
    print(head + f"{'speed vs ' + repr(ref):>22}")
    for name, v in sorted(s.items(), key=lambda kv: statistics.median(kv[1])):
        med = statistics.median(v)
        line = f"{name:<{w}}  {med * 1e3:9.1f}  "
        if nbytes:
            line += f"{nbytes / med / 1e9:6.2f}  "
        # > 1 means faster than the reference (time ratio ref / contender, paired by round)
        print(line + f"{paired_ratio(s[ref], v):22.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--parts", default="warm,rehash")
    ap.add_argument("--datasets", default="small,large")
    a = ap.parse_args()
    reps = env_int("BENCH_REPS", 5)
    data_env = os.environ.get("BENCH_DATA")
    base = Path(data_env) if data_env else Path(tempfile.mkdtemp(prefix="runlock-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    n_small = env_int("BENCH_SMALL_N", 20_000)
    large_mb, large_n = env_int("BENCH_LARGE_MB", 500), env_int("BENCH_LARGE_N", 4)
    roots = {"small": base / f"small-{n_small}", "large": base / f"large-{large_n}x{large_mb}"}
    try:
        t0 = time.perf_counter()
        datasets = a.datasets.split(",")
        if "small" in datasets or "rehash" in a.parts:
            make_small(roots["small"], n_small)
        if "large" in datasets:
            make_large(roots["large"], large_n, large_mb)
        print(
            f"fixtures under {base} ready in {time.perf_counter() - t0:.1f}s; "
            f"cpus={len(os.sched_getaffinity(0))}, python {sys.version.split()[0]}, "
            f"xxhash {xxhash.VERSION}, reps={reps}"
        )
        contenders: dict[str, Callable[[Path], object]] = {
            "runlock hash_path": runlock_hash,
            "xxh3 loop (1 thread)": xxh3_loop,
        }
        try:
            import dirhash  # noqa: F401

            contenders["dirhash md5"] = dirhash_md5
        except ImportError:
            print("dirhash not installed: skipped")
        try:
            import dvc_data  # type: ignore[import-not-found]  # noqa: F401

            contenders["dvc-data md5"] = dvc_md5
        except ImportError:
            print("dvc-data not installed: skipped")
        if "warm" in a.parts:
            for ds in datasets:
                root = roots[ds]
                files = list_files(root)
                nbytes = sum(os.path.getsize(p) for p in files)
                s = alternate({k: functools.partial(f, root) for k, f in contenders.items()}, reps)
                show(
                    f"{ds}: {len(files)} files, {nbytes / 1e6:.0f} MB, warm page cache, "
                    f"median of {reps}",
                    s,
                    "xxh3 loop (1 thread)",
                    nbytes,
                )
                if "dirhash md5" in s:
                    print(
                        f"runlock vs dirhash md5: "
                        f"{paired_ratio(s['dirhash md5'], s['runlock hash_path']):.2f}x faster"
                    )
        if "rehash" in a.parts:
            root = roots["small"]
            cache_file = base / "hashcache.sqlite"
            cache_file.unlink(missing_ok=True)
            cache = HashCache(cache_file)
            full = hash_path(root, cache=cache, progress=False)  # fills the cache
            assert hash_path(root, cache=cache)["hash"] == full["hash"]
            fns: dict[str, Callable[[], object]] = {
                "os.walk + os.stat (stat floor)": lambda: walk_stat(root),
                "runlock hash_path, cache hits": lambda: hash_path(root, cache=cache),
                "runlock hash_path, no cache": lambda: hash_path(root),
            }
            s = alternate(fns, max(reps, 7))
            floor = "os.walk + os.stat (stat floor)"
            print(
                f"\n== re-hash unchanged small dataset ({full['files']} files), median of "
                f"{max(reps, 7)} =="
            )
            for name, v in s.items():
                print(
                    f"{name:<34} {statistics.median(v) * 1e3:8.1f} ms  "
                    f"{paired_ratio(v, s[floor]):5.2f}x stat floor (time)"
                )
            cache.close()
    finally:
        if not data_env:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
