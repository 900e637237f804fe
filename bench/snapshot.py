#!/usr/bin/env python3
"""Benchmark runlock.git.snapshot against what other trackers do, on a 5,000-file repository.

Fixture (built under a temp dir, same approach as anchor-bench/make_fixtures.py): 5,000 Python
files of ~10 KB (~50 MB), one commit; before every timed call (untimed) 20 tracked files are
re-modified and 5 untracked files rewritten with new content, so each call has new blobs to
write, as a new run would.

Contenders, run alternately (so drift hits all equally), median of --reps:
  (a) runlock snapshot        runlock.git.snapshot (temp index + plumbing, shadow branch)
  (b) status + diff HEAD      `git status --porcelain` + `git diff HEAD` (what footsteps-style
                              trackers record, no commit)
  (c) GitPython commit_cwd    the design of seed 002 (IndexFile), when GitPython is importable

Usage: .venv/bin/python bench/snapshot.py [--reps 9] [--files 5000] [--keep DIR]
Targets: (a) <= 1.5x (b) and >= 5x faster than (c).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from runlock.git import SnapshotOptions, snapshot

WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "lambda", "loss",
         "grad", "batch", "layer", "tensor", "model", "data", "config", "seed", "epoch", "step")
N_MOD, N_UNTR, FILE_BYTES = 20, 5, 10_000


def _git(args: list[str], cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def _layout(i: int) -> str:
    return f"pkg_{i // 100:03d}/sub_{(i // 10) % 10}/mod_{i:05d}.py"


def _py_source(rng: random.Random, target: int, tag: str) -> str:
    """Python-looking text of about ``target`` bytes (compresses like real code)."""
    out = [f'"""Module {tag} generated for benchmarks."""\nimport math\n\n']
    size, i = len(out[0]), 0
    while size < target:
        a, b = rng.choice(WORDS), rng.choice(WORDS)
        block = (f"def {a}_{b}_{i}({a}, {b}=None):\n    value = {rng.randint(0, 10**6)} * "
                 f"math.sqrt(abs({a} or 1))\n    return value + {rng.random():.6f}\n\n\n")
        out.append(block)
        size += len(block)
        i += 1
    return "".join(out)


def make_repo(root: Path, n_files: int) -> None:
    rng = random.Random(5)
    for i in range(n_files):
        p = root / _layout(i)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(_py_source(rng, FILE_BYTES, str(i)))
    (root / "README.md").write_text("synthetic repository for benchmarks\n")
    _git(["init", "-q", "-b", "main"], root)
    for key, value in (("user.name", "bench"), ("user.email", "bench@example.invalid"),
                       ("gc.auto", "0")):  # no auto-gc in the middle of a timing
        _git(["config", key, value], root)
    (root / ".git" / "info" / "exclude").write_text("results/\n")
    _git(["add", "-A"], root)
    _git(["commit", "-q", "-m", "initial"], root)
    time.sleep(1.1)  # keep the edits out of the racy-git window of the index just written


def perturb(root: Path, n_files: int, nonce: int) -> None:
    """Re-modify 20 tracked files and rewrite 5 untracked ones with new content."""
    step = max(1, n_files // N_MOD)
    for k in range(N_MOD):
        p = root / _layout((k * step + 7) % n_files)
        text = p.read_text()
        cut = text.find("\n# bench-nonce")
        p.write_text((text[:cut + 1] if cut >= 0 else text) + f"# bench-nonce {nonce} {k}\n")
    for k in range(N_UNTR):
        (root / f"pkg_{k:03d}" / f"untracked_{k}.py").write_text(f"X = {nonce}  # untracked {k}\n")


def runlock_snapshot(root: Path) -> None:
    snapshot(root, SnapshotOptions(exclude_dirs=(root / "results",)), message="bench")


def status_diff(root: Path) -> None:
    for args in (["status", "--porcelain"], ["diff", "HEAD"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def commit_cwd(branch: str, message: str, repo: Any = None) -> Any:
    """The GitPython design under review (seed 002), verbatim."""
    from git import IndexFile
    from git.repo import Repo as GitRepo

    repo = repo or GitRepo(".")
    index = IndexFile(repo)
    log_branch: Any = getattr(repo.heads, branch, False) or repo.create_head(branch)
    to_add = (set(repo.untracked_files)
              | {d.a_path or d.b_path for d in index.diff(None) if d.change_type != "D"}
              | {d.a_path or d.b_path for d in index.diff(repo.head.commit) if d.change_type != "A"}
              ) - {d.a_path or d.b_path for d in index.diff(None) if d.change_type == "D"}
    index.add(to_add, force=False, write=False, write_extension_data=True)
    log_commit = index.commit(message, parent_commits=[log_branch.commit], head=False)
    log_branch.commit = log_commit
    return log_commit


def gitpython_snapshot(root: Path) -> None:
    cwd = os.getcwd()
    os.chdir(root)  # the design uses Repo('.')
    try:
        commit_cwd("shadow-gitpython", "snapshot")
    finally:
        os.chdir(cwd)


def user_state(root: Path) -> tuple[str, bytes, str]:
    status = _git(["status", "--porcelain=v2", "--branch"], root)  # may refresh the index first
    return status, (root / ".git" / "index").read_bytes(), _git(["rev-parse", "HEAD"], root)


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and its finished children: insensitive to load."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def count_git_calls(root: Path) -> int:
    """How many git processes one snapshot spawns (each costs a few ms)."""
    from runlock import _subprocess

    calls = 0
    real_run, real_start = _subprocess.run, _subprocess.start

    def counting(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return real(*args, **kwargs)
        return call

    _subprocess.run, _subprocess.start = counting(real_run), counting(real_start)  # type: ignore[assignment]
    try:
        snapshot(root, SnapshotOptions(exclude_dirs=(root / "results",)), message="bench",
                 check_memo=False)
    finally:
        _subprocess.run, _subprocess.start = real_run, real_start  # type: ignore[assignment]
    return calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--keep", type=Path, help="build the repo here and keep it")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="runlock-bench-")) if a.keep is None else a.keep
    root = tmp / "repo"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    t0 = time.perf_counter()
    make_repo(root, a.files)
    # Flush the ~100 MB the fixture just wrote: otherwise the kernel writes it back during the
    # timed calls (within ~30 s), and that disk and flusher-thread load lands on whichever
    # contender runs at the time.
    os.sync()
    size_mb = sum(f.stat().st_size for f in root.rglob("*.py")) / 1e6
    print(f"repo: {a.files} files, {size_mb:.0f} MB, built in {time.perf_counter() - t0:.1f} s "
          f"({root})")

    cands: dict[str, Callable[[Path], None]] = {
        "(a) runlock snapshot": runlock_snapshot,
        "(b) status + diff HEAD": status_diff,
    }
    try:
        import git  # noqa: F401

        cands["(c) GitPython commit_cwd"] = gitpython_snapshot
    except ImportError:
        print("GitPython not importable: (c) skipped (.venv/bin/pip install gitpython)")
    nonce = 0
    times: dict[str, list[float]] = {k: [] for k in cands}
    cpu: dict[str, list[float]] = {k: [] for k in cands}
    for rep in range(a.reps + 1):  # rep 0 warms caches and is dropped
        order = list(cands) if rep % 2 else list(reversed(cands))  # alternate the order
        for name in order:
            nonce += 1
            perturb(root, a.files, nonce)
            # Garbage one contender leaves (GitPython leaves plenty) is collected here, not on
            # the next contender's clock (timeit turns the collector off for the same reason).
            gc.collect()
            t, c = time.perf_counter(), cpu_seconds()
            cands[name](root)
            if rep:
                times[name].append(time.perf_counter() - t)
                cpu[name].append(cpu_seconds() - c)
    perturb(root, a.files, nonce + 1)
    before = user_state(root)
    print(f"git processes per runlock snapshot: {count_git_calls(root)}")
    print(f"user index, HEAD and status untouched by a snapshot: {user_state(root) == before}")
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    names = list(cands)
    ref_b, ref_c = names[1], names[2] if len(names) > 2 else None

    def paired(name: str, ref: str | None, data: dict[str, list[float]] = times) -> float | None:
        """Median of per-rep ratios: robust to load drift on a shared machine."""
        if ref is None:
            return None
        return statistics.median(x / y for x, y in zip(data[name], data[ref], strict=True))

    print(f"\nmedian of {a.reps} reps, 20 modified + 5 untracked files re-written before each "
          "call; ratios are medians of paired per-rep ratios")
    print(f"| {'method':<26} | {'ms':>7} | {'min':>7} | {'max':>7} | {'x (b)':>6} | {'x (c)':>6} "
          f"| {'CPU ms':>7} | {'CPU x (b)':>9} | {'CPU x (c)':>9} |")
    print(f"|{'-' * 28}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 8}|{'-' * 8}|{'-' * 9}|{'-' * 11}"
          f"|{'-' * 11}|")
    for name, ms in med.items():
        rc, cpu_c = paired(name, ref_c), paired(name, ref_c, cpu)
        print(f"| {name:<26} | {ms:7.1f} | {min(times[name]) * 1000:7.1f} | "
              f"{max(times[name]) * 1000:7.1f} | {paired(name, ref_b):6.2f} | "
              f"{'-' if rc is None else f'{rc:.3f}':>6} | "
              f"{statistics.median(cpu[name]) * 1000:7.1f} | {paired(name, ref_b, cpu):9.2f} | "
              f"{'-' if cpu_c is None else f'{cpu_c:.3f}':>9} |")
    vs_b = paired(names[0], ref_b) or 0.0
    print(f"\ntarget (a) <= 1.5x (b): {vs_b:.2f}x -> {'OK' if vs_b <= 1.5 else 'MISSED'}")
    vs_c = paired(names[0], ref_c)
    if vs_c is not None:
        print(f"target (a) >= 5x faster than (c): {1 / vs_c:.1f}x -> "
              f"{'OK' if vs_c <= 0.2 else 'MISSED'}")
    if a.keep is None:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
