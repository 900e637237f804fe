#!/usr/bin/env python3
"""How long after the call the stage function starts, with a tiny and a large data input.

Hashing the inputs is non-blocking (it runs in the background while the stage runs), so the
start latency must not depend on the data size. Issue target: <= 20 ms.

    .venv/bin/python bench/stage_start.py [--mb 400] [--reps 9]

A temp git repository holds the stage script; the data lives outside it (so the snapshot does
not see it). Each figure is measured in a warm process (after one warm-up run), alternating the
two inputs, median of --reps.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from dataclasses import dataclass
    import runlock

    @dataclass
    class C:
        data: str = runlock.Input("")

    T = {}

    @runlock.stage
    def s(cfg: C):
        T["in"] = time.perf_counter()

    def one(path):
        t = time.perf_counter()
        s(data=path)
        return (T["in"] - t) * 1000

    small, large, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    one(small); one(large)  # warm-up
    out = {"small": [], "large": []}
    for i in range(reps):
        for name, path in ((("small", small), ("large", large)) if i % 2 else (("large", large), ("small", small))):
            out[name].append(one(path))
    print(json.dumps(out))
    """
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=400, help="size of the large input (4 files)")
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="runlock-bench-start-"))
    try:
        repo, data = work / "repo", work / "data"
        repo.mkdir()
        (data / "large").mkdir(parents=True)
        (data / "small").mkdir()
        (data / "small" / "x.txt").write_text("tiny\n")
        chunk = os.urandom(2**20)
        for i in range(4):
            with open(data / "large" / f"f{i}.bin", "wb") as f:
                for _ in range(args.mb // 4):
                    f.write(chunk)
        (repo / "stage.py").write_text(SCRIPT)
        (repo / ".gitignore").write_text("results/\n")
        git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@runlock.invalid"]
        subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
        subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
        subprocess.run([*git, "commit", "-q", "-m", "bench"], cwd=repo, check=True)
        env = dict(os.environ, RUNLOCK_RESULTS=str(work / "results"))
        out = subprocess.run(
            [sys.executable, "stage.py", str(data / "small"), str(data / "large"), str(args.reps)],
            cwd=repo, env=env, capture_output=True, text=True, check=True,
        )
        import json

        res = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"call -> first line of the stage function (warm process, median of {args.reps}, alternated)")
        print("| input | median ms | min ms | max ms |")
        print("|---|---|---|---|")
        for name, label in (("small", "1 tiny file"), ("large", f"4 files, {args.mb} MB")):
            xs = res[name]
            print(f"| {label} | {statistics.median(xs):.1f} | {min(xs):.1f} | {max(xs):.1f} |")
        med = statistics.median(res["large"])
        print(f"target <= 20 ms with the large input: {'MET' if med <= 20 else 'MISSED'} ({med:.1f} ms); load avg {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
