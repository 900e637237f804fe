"""Benchmark: ``runlock push`` of a 2,000-file run vs a plain ``rclone copy`` of the same folder.

Both go to a local-path remote, a fresh destination each repetition, alternating which runs
first so cache warmth favours neither. push does more than the copy: it checks the run's
recorded output hashes before sending, compares by checksum, and writes the index entry.
Target: push <= 1.5x plain rclone copy (median).

Usage: python bench/push.py [--files 2000] [--reps 9]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def make_run(root: Path, n_files: int) -> Path:
    from runlock.hashing import hash_outputs
    from runlock.record.lockfile import dump_lock

    run = root / "results" / "train" / "20261125-120000"
    for i in range(n_files):
        d = run / "preds" / f"shard{i // 200:02}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"item{i:05}.json").write_text(f'{{"item": {i}, "score": {i * 0.37 % 1:.6f}}}\n')
    lock = {
        "schema": 1, "id": "20261125T120000-abcdef", "stage": "train", "status": "completed",
        "run_dir": str(run), "timing": {"start": "2026-11-25T12:00:00+00:00"}, "git": None,
        "outputs": hash_outputs(run, exclude={"run.lock"}),
    }
    dump_lock(lock, run / "run.lock")
    return run


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=9)
    a = ap.parse_args()
    os.environ["RCLONE_CONFIG"] = "/dev/null"
    from runlock.store.remote import push

    load0 = f"{os.getloadavg()[0]:.2f}"
    rclone = shutil.which("rclone")
    assert rclone, "rclone is not installed"
    with tempfile.TemporaryDirectory(prefix="runlock-bench-") as tmp:
        base = Path(tmp)
        run = make_run(base, a.files)
        root = base / "results"
        times: dict[str, list[float]] = {"rclone copy": [], "runlock push": []}
        # CPU seconds (this process + rclone children): far less sensitive than wall time to
        # other work on a shared machine
        cpu: dict[str, list[float]] = {"rclone copy": [], "runlock push": []}

        def plain(dest: Path) -> None:
            subprocess.run([rclone, "copy", str(run), str(dest)], check=True)

        def ours(dest: Path) -> None:
            push(run, remote=str(dest), root=root, code=False, progress=False)

        plain(base / "warmup-a")
        ours(base / "warmup-b")
        for rep in range(a.reps):
            order = [("rclone copy", plain), ("runlock push", ours)]
            if rep % 2:
                order.reverse()
            for name, fn in order:
                dest = base / f"dest-{rep}-{name.replace(' ', '-')}"
                c0, t0 = _cpu(), time.perf_counter()
                fn(dest)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(_cpu() - c0)
                shutil.rmtree(dest)
        med = {k: statistics.median(v) for k, v in times.items()}
        cmed = {k: statistics.median(v) for k, v in cpu.items()}
        ratio = med["runlock push"] / med["rclone copy"]
        cratio = cmed["runlock push"] / cmed["rclone copy"]
        print(f"{a.files} files, {a.reps} reps, local-path remote, "
              f"{subprocess.run([rclone, 'version'], capture_output=True, text=True, check=True).stdout.split()[1]}")
        print(f"load average before/after: {load0} / {os.getloadavg()[0]:.2f}")
        print(f"{'':14}{'wall median':>12}{'min':>8}{'max':>8}{'cpu median':>12}")
        for k, v in times.items():
            print(f"{k:14}{med[k]:>12.3f}{min(v):>8.3f}{max(v):>8.3f}{cmed[k]:>12.3f}")
        best = min(times["runlock push"]) / min(times["rclone copy"])
        print(f"ratio push / copy: wall {ratio:.2f}x (best-of {best:.2f}x), cpu {cratio:.2f}x "
              "(target <= 1.5x)")


if __name__ == "__main__":
    main()
