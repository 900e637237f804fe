"""Benchmark: per-task overhead of execute_map over plain joblib, and resume start-up time.

    PYTHONPATH=src .venv/bin/python bench/taskmap.py [--tasks 10000] [--n-jobs 2] [--dir /tmp]

The task state lives under ``--dir``: most of the overhead is file creation there, so the table
also shows that filesystem's own cost (create + link + 2 unlinks per task, one process).

Targets: overhead <= 2 ms per task (task state on disk included); resume of a 10,000-task state
with 9,990 done starts its first task in <= 1 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path

from joblib import Parallel, delayed  # type: ignore[import-untyped,unused-ignore]

from runlock.scale.taskmap import execute_map


def trivial(x: int) -> int:
    return x + 1


def stamped(path: str, x: int) -> int:
    """Records when the first task starts (O_EXCL: only the first writer wins)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        os.write(fd, repr(time.time()).encode())
        os.close(fd)
    except FileExistsError:
        pass
    return x + 1


def _fs_floor_ms(folder: Path, n: int) -> float:
    """The bare filesystem cost of one task's state changes, without any Python logic."""
    folder.mkdir()
    d = str(folder) + os.sep
    t0 = time.perf_counter()
    for i in range(n):
        os.close(os.open(f"{d}c{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        os.close(os.open(f"{d}.t{i}", os.O_WRONLY | os.O_CREAT))
        os.link(f"{d}.t{i}", f"{d}r{i}")
        os.unlink(f"{d}.t{i}")
        os.unlink(f"{d}c{i}")
    return (time.perf_counter() - t0) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the task state goes (default: $TMPDIR)")
    args = ap.parse_args()
    n, n_jobs = args.tasks, args.n_jobs
    tasks = list(range(n))
    root = Path(tempfile.mkdtemp(prefix="runlock-bench-", dir=args.dir))
    try:
        # Warm the loky executor once so both sides pay the same process start-up.
        Parallel(n_jobs=n_jobs)(delayed(trivial)(x) for x in range(10))

        plain, mapped = [], []
        for r in range(args.repeat):
            t0 = time.perf_counter()
            Parallel(n_jobs=n_jobs)(delayed(trivial)(x) for x in tasks)
            plain.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            s = execute_map(
                trivial, tasks, state_dir=root / f"map{r}", n_jobs=n_jobs, progress=False
            )
            mapped.append(time.perf_counter() - t0)
            assert s.ok, s
        t_plain, t_map = min(plain), min(mapped)
        fs_ms = _fs_floor_ms(root / "floor", 2000)
        overhead_ms = (t_map - t_plain) / n * 1e3

        # Resume: a state with all but 10 done; time from the call to the first task start.
        state = root / "resume"
        execute_map(trivial, tasks, state_dir=state, n_jobs=n_jobs, progress=False)
        results = state / "results"
        for k in range(n - 10, n):
            (results / f"{k:06d}.pkl").unlink()
        stamp = root / "stamp"
        # The state digest is of the tasks, not the function: a different fn may resume it.
        t0 = time.time()
        s = execute_map(
            partial(stamped, str(stamp)), tasks, state_dir=state, n_jobs=n_jobs, progress=False
        )
        t_total = time.time() - t0
        t_first = float(stamp.read_text()) - t0
        assert s.ok and s.done == n, s

        rows = [
            ("tasks", f"{n:,}", f"{n:,}"),
            ("workers (loky)", str(n_jobs), str(n_jobs)),
            (f"wall time, best of {args.repeat} (s)", f"{t_plain:.3f}", f"{t_map:.3f}"),
            ("per task (ms)", f"{t_plain / n * 1e3:.4f}", f"{t_map / n * 1e3:.4f}"),
            ("overhead per task (ms)", "-", f"{overhead_ms:.4f}  (target <= 2)"),
            ("  fs floor: 2 creates+link+2 unlinks (ms)", "-", f"{fs_ms:.4f}  (1 process)"),
            ("resume 10 of 10,000: first task (s)", "-", f"{t_first:.3f}  (target <= 1)"),
            ("resume 10 of 10,000: total (s)", "-", f"{t_total:.3f}"),
        ]
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows + [("", "plain joblib", "")])
        print(f"{'':<{w0}}  {'plain joblib':>{w1}}  execute_map")
        for a, b, c in rows:
            print(f"{a:<{w0}}  {b:>{w1}}  {c}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
