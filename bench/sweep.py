"""Benchmark: per-point overhead of a 100-point sweep, runlock's CLI vs Hydra's joblib launcher.

    .venv/bin/python bench/sweep.py [--points 100] [--jobs 2] [--reps 5] [--profile]
    .venv/bin/python bench/sweep.py --hydra-python /path/to/venv/bin/python   # Hydra elsewhere

Target (issue): a sweep of 100 points through the local backend has >= 5x less overhead per point
than Hydra's joblib launcher on the same function.

Fixture (a temp dir): a git repository (one commit; ``results/`` and ``multirun/`` git-ignored,
as a user would have it) holding the same trivial function ``work(x, lr) = x * lr`` three ways:

* ``stage.py``: ``@runlock.stage`` over a dataclass config (``x: int``, ``lr: float``) and
  ``runlock.main(stage)``;
* ``app.py``: ``@hydra.main(config_path=None, config_name="config")`` with the same dataclass in
  the ConfigStore;
* ``baseline.py``: ``joblib.Parallel(n_jobs=JOBS)`` over the 100 points, nothing else.

Contenders, each a fresh CLI process (what a user types), run alternately (``common.alternate``)
after a warm-up round; every repetition gets fresh output directories (runlock skips points
already completed with the same config + source, so a reused results dir would skip them all):

=================  ==============================================================================
``pass``           ``python -c pass`` (interpreter start-up floor)
``joblib``         ``python baseline.py`` (the baseline: plain joblib.Parallel, same workers)
``runlock``        ``python stage.py x=0,1,...,99 --sweep --jobs 2 --backend joblib -q``
                   (``RUNLOCK_RESULTS`` = a fresh dir)
``runlock-inproc`` ``python stage.py x=0,...,99 --sweep --jobs 1 --backend inprocess -q``
``hydra``          ``python app.py -m x=range(0,100) hydra/launcher=joblib
                   hydra.launcher.n_jobs=2 hydra.sweep.dir=<fresh dir>``
=================  ==============================================================================

Overhead per point = (contender wall - ``joblib`` wall of the same repetition) / points; the
ratio is paired: median over repetitions of hydra overhead / runlock overhead.

Hydra pins ``omegaconf<2.4``; runlock's venv may hold omegaconf 2.4. ``--hydra-python`` runs the
Hydra contender with another interpreter (e.g. a side venv with hydra-core, hydra-joblib-launcher
and omegaconf 2.3), several ``--hydra-python NAME=PATH`` add several Hydra contenders (the first
is the reference of the ratio). Hydra and its launcher are benchmark-only: not runlock deps.

Also printed: where runlock's time goes, from the run locks (``timing`` start/end of every run):
start-up of the sweep process until the first run starts, the span of the runs, the tail after
the last run ends, and the per-run duration (inside the worker). ``--profile`` adds
``-X importtime`` (heaviest imports) and a cProfile of the whole process of the in-process sweep
(cumulative top functions; per point = / points).

Figures (2026-11-25, 2-core VM shared with other engineers' tests, load avg 0.8-3.9; hydra-core
1.3.8 + hydra-joblib-launcher 1.2.0 + omegaconf 2.3.1 in a side venv, joblib 1.6.0 on both sides):
three runs (5, 9, 7 repetitions) gave runlock (joblib, 2 workers) 19.6 / 22.3 / 24.0 ms per point
vs Hydra 145 / 187 / 197 ms per point: 7.3x / 8.4x / 8.1x (every one of the 21 paired
repetitions >= 5.7x; CPU-time ratio 7.1-7.6x). The ratio needs the 100 points: runlock has
~0.3 s of fixed cost (plan, worker imports, one git snapshot per worker), so a 10-point sweep
shows ~3x.
"""

from __future__ import annotations

import argparse
import atexit
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    alternate,
    environment_info,
    fmt_ms,
    fmt_x,
    git,
    load_note,
    median,
    paired_diff,
    reps,
    run_wall,
    save_json,
    stats,
    table,
)

STAGE_PY = '''\
from dataclasses import dataclass

import runlock


@dataclass
class Config:
    x: int = 0
    lr: float = 0.1


def work(x, lr):
    return x * lr


@runlock.stage
def stage(cfg: Config):
    return work(cfg.x, cfg.lr)


if __name__ == "__main__":
    runlock.main(stage)
'''

APP_PY = '''\
from dataclasses import dataclass

import hydra
from hydra.core.config_store import ConfigStore


@dataclass
class Config:
    x: int = 0
    lr: float = 0.1


ConfigStore.instance().store(name="config", node=Config)


def work(x, lr):
    return x * lr


@hydra.main(version_base=None, config_path=None, config_name="config")
def app(cfg: Config) -> float:
    return work(cfg.x, cfg.lr)


if __name__ == "__main__":
    app()
'''

BASELINE_PY = '''\
import sys

from joblib import Parallel, delayed


def work(x, lr):
    return x * lr


if __name__ == "__main__":
    n, jobs = int(sys.argv[1]), int(sys.argv[2])
    Parallel(n_jobs=jobs)(delayed(work)(x, 0.1) for x in range(n))
'''


def make_fixture(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    (repo / "stage.py").write_text(STAGE_PY)
    (repo / "app.py").write_text(APP_PY)
    (repo / "baseline.py").write_text(BASELINE_PY)
    (repo / ".gitignore").write_text("results/\nmultirun/\noutputs/\n__pycache__/\n")
    git(["init", "-q", "-b", "main"], cwd=repo)
    git(["config", "gc.auto", "0"], cwd=repo)
    git(["add", "-A"], cwd=repo)
    git(["commit", "-q", "-m", "initial"], cwd=repo)
    time.sleep(1.1)
    git(["update-index", "--refresh"], cwd=repo, check=False)  # settled index, as in real life
    return repo


def _ts(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def check_runlock(results: Path, n: int) -> dict[str, Any]:
    """Every point ran (status completed); per-run timings from the locks."""
    import yaml

    locks = list((results / "stage").glob("*/run.lock"))
    starts, ends, durs = [], [], []
    for p in locks:
        lock = yaml.load(p.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        if lock.get("status") != "completed":
            raise RuntimeError(f"runlock run not completed: {p}")
        t = lock["timing"]
        starts.append(_ts(t["start"]))
        ends.append(_ts(t["end"]))
        durs.append(float(t["duration_s"]))
    if len(locks) != n:
        raise RuntimeError(f"runlock sweep made {len(locks)} runs, expected {n} ({results})")
    log_s = []
    for p in (results / "stage").glob("*/run.log"):
        for line in p.read_text().splitlines():
            if " completed in " in line:
                log_s.append(float(line.rsplit(" completed in ", 1)[1].rstrip("s")))
    return {"first_start": min(starts), "last_end": max(ends), "run_s": median(durs),
            "run_log_s": median(log_s) if log_s else float("nan")}


def check_hydra(sweep_dir: Path, n: int) -> dict[str, Any]:
    jobs = [d for d in sweep_dir.iterdir() if d.is_dir() and d.name.isdigit()]
    cfgs = [d / ".hydra" / "config.yaml" for d in jobs]
    if len(jobs) != n or not all(c.is_file() for c in cfgs):
        raise RuntimeError(f"hydra sweep made {len(jobs)} job dirs, expected {n} ({sweep_dir})")
    m = [c.stat().st_mtime for c in cfgs]
    return {"first_start": min(m), "last_end": max(m)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 5; BENCH_REPS)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--hydra-python", action="append", default=[], metavar="[NAME=]PYTHON",
                    help="interpreter(s) with hydra-core + hydra-joblib-launcher (default: this one)")
    ap.add_argument("--src", default=None, help="run runlock from this source tree (PYTHONPATH)")
    ap.add_argument("--no-inproc", action="store_true", help="skip the inprocess runlock contender")
    ap.add_argument("--profile", action="store_true", help="-X importtime + cProfile of runlock")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", default=None, help="write raw samples here")
    args = ap.parse_args()
    n_reps = args.reps or reps(5)
    n, jobs = args.points, args.jobs
    py = sys.executable

    hydras: dict[str, str] = {}
    for item in args.hydra_python or [py]:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = "hydra" if not hydras else f"hydra{len(hydras) + 1}", item
        hydras[name] = os.path.abspath(path) if os.sep in path else (shutil.which(path) or path)
    for name, hp in list(hydras.items()):
        cp = subprocess.run([hp, "-c", "import hydra, hydra_plugins.hydra_joblib_launcher, omegaconf;"
                             "print(hydra.__version__, omegaconf.__version__)"],
                            capture_output=True, text=True, check=False)
        if cp.returncode != 0:
            print(f"[{name}: {hp} cannot import hydra + hydra_joblib_launcher: skipped; "
                  "pip install hydra-core hydra-joblib-launcher]", file=sys.stderr)
            del hydras[name]
        else:
            print(f"[{name}: {hp}: hydra-core {cp.stdout.split()[0]}, omegaconf {cp.stdout.split()[1]}]")

    root = Path(tempfile.mkdtemp(prefix="runlock-bench-sweep-", dir=args.workdir))
    if not args.keep:  # also when a contender fails half-way
        atexit.register(shutil.rmtree, root, ignore_errors=True)
    repo = make_fixture(root)
    env = dict(os.environ)
    env.pop("RUNLOCK_RESULTS", None)
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(args.src).resolve()), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    grid = "x=" + ",".join(str(i) for i in range(n))
    counter = {"k": 0}
    phases: dict[str, list[dict[str, Any]]] = {}
    cpu: dict[str, list[float]] = {}

    def fresh(tag: str) -> Path:
        counter["k"] += 1
        return repo / ("multirun" if tag.startswith("hydra") else "results") / f"{tag}-{counter['k']}"

    def runlock_cmd(backend: str, n_jobs: int, name: str):
        def go() -> float:
            out = fresh(name)
            e = dict(env, RUNLOCK_RESULTS=str(out))
            t_launch = time.time()
            dt, cp = run_wall([py, "stage.py", grid, "--sweep", "--jobs", str(n_jobs), "--backend", backend, "-q"],
                              cwd=repo, env=e)
            t_exit = time.time()
            info = check_runlock(out, n)
            info.update(launch=t_launch, exit=t_exit)
            phases.setdefault(name, []).append(info)
            cpu.setdefault(name, []).append(cp.cpu)  # type: ignore[attr-defined]
            shutil.rmtree(out)
            return dt
        return go

    def hydra_cmd(name: str, hp: str):
        def go() -> float:
            out = fresh(name)
            t_launch = time.time()
            dt, cp = run_wall([hp, "app.py", "-m", f"x=range(0,{n})", "hydra/launcher=joblib",
                               f"hydra.launcher.n_jobs={jobs}", f"hydra.sweep.dir={out}"], cwd=repo, env=env)
            t_exit = time.time()
            info = check_hydra(out, n)
            info.update(launch=t_launch, exit=t_exit)
            phases.setdefault(name, []).append(info)
            cpu.setdefault(name, []).append(cp.cpu)  # type: ignore[attr-defined]
            shutil.rmtree(out)
            return dt
        return go

    def plain(cmd: list[str], name: str):
        def go() -> float:
            dt, cp = run_wall(cmd, cwd=repo, env=env)
            cpu.setdefault(name, []).append(cp.cpu)  # type: ignore[attr-defined]
            return dt
        return go

    contenders = {
        "pass": plain([py, "-c", "pass"], "pass"),
        "joblib": plain([py, "baseline.py", str(n), str(jobs)], "joblib"),
        "runlock": runlock_cmd("joblib", jobs, "runlock"),
    }
    if not args.no_inproc:
        contenders["runlock-inproc"] = runlock_cmd("inprocess", 1, "runlock-inproc")
    for name, hp in hydras.items():
        contenders[name] = hydra_cmd(name, hp)

    print(f"fixture: {repo}\n{n} points, {jobs} workers, {n_reps} repetitions (+{args.warmup} warm-up), "
          f"alternated; {load_note()}", flush=True)
    load_before = load_note()
    t0 = time.perf_counter()
    walls = alternate(contenders, n_reps, warmup=args.warmup)
    elapsed = time.perf_counter() - t0
    load_after = load_note()
    # drop the warm-up samples of the side records (alternate runs warm-up rounds first)
    for d in (phases, cpu):
        for k in d:
            d[k] = d[k][args.warmup:]

    base = walls["joblib"]
    ref = next(iter(hydras), None)
    over = {k: [(a - b) / n for a, b in zip(v, base)] for k, v in walls.items()}
    cbase = cpu.get("joblib", [])
    cover = {k: [(a - b) / n for a, b in zip(v, cbase)] for k, v in cpu.items()}

    def ratio(d: dict[str, list[float]], name: str) -> str:
        if not ref or name == ref or not (name.startswith("runlock") or name.startswith("hydra")):
            return "-"
        return fmt_x(median([h / r for h, r in zip(d[ref], d[name]) if r > 0]))

    rows = []
    for name, xs in walls.items():
        s = stats(xs)
        skip = name in ("pass", "joblib")
        rows.append((name, f"{s['median']:.3f}", f"{s['min']:.3f}", f"{s['iqr_pct']:.0f}%",
                     "-" if skip else fmt_ms(median(over[name])), "-" if skip else ratio(over, name),
                     f"{median(cpu.get(name, [])):.2f}", "-" if skip else fmt_ms(median(cover[name])),
                     "-" if skip else ratio(cover, name)))
    table(["contender", "wall s (median)", "min s", "IQR", "overhead ms/point", f"{ref or 'hydra'} / it",
           "CPU s", "CPU overhead ms/point", f"CPU: {ref or 'hydra'} / it"],
          rows, title=f"## {n}-point sweep, fresh CLI process each (overhead = wall - joblib wall, paired, / {n})",
          note=f"before: {load_before}; after: {load_after}; {elapsed:.0f} s in all. Ratios: median of paired "
               f"per-repetition ratios of overhead ({ref} / contender); target runlock >= 5x. CPU: user+sys "
               "of the process tree (os.times of reaped children; less inflated by other people's load).")
    if ref:
        for name in walls:
            if name.startswith("runlock"):
                rs = sorted(h / r for h, r in zip(over[ref], over[name]) if r > 0)
                print(f"{ref} / {name}, per repetition: " + " ".join(f"{x:.1f}x" for x in rs))
    if "pass" in walls:
        print(f"plain joblib over `python -c pass`: {fmt_ms(paired_diff(base, walls['pass']))} ms "
              f"(interpreter + joblib import + {jobs} loky workers + {n} tasks)")

    # where the time goes (timestamps from the runs' own records)
    prow = []
    for name, infos in phases.items():
        if not infos:
            continue
        startup = median([i["first_start"] - i["launch"] for i in infos])
        span = median([i["last_end"] - i["first_start"] for i in infos])
        tail = median([i["exit"] - i["last_end"] for i in infos])
        run_s = median([i.get("run_s", float("nan")) for i in infos])
        run_log = median([i.get("run_log_s", float("nan")) for i in infos])
        eff_jobs = jobs if name != "runlock-inproc" else 1
        prow.append((name, fmt_ms(startup), fmt_ms(span), fmt_ms(span / n * eff_jobs), fmt_ms(tail),
                     fmt_ms(run_s), fmt_ms(run_log)))
    table(["contender", "launch -> 1st run start ms", "1st start -> last end ms", "span x workers / point ms",
           "last end -> exit ms", "per-run lock duration ms", "run.log 'completed in' ms"], prow,
          title="## Phases (medians; runlock: run.lock timing; hydra: mtime of each job's .hydra/config.yaml)",
          note="runlock's per-run durations are measured inside the worker (start of the run record to the "
               "lock's final write); hydra's span is between the first and the last job's start.")

    results: dict[str, Any] = {"walls": walls, "cpu": cpu, "phases": phases, "overhead_per_point": over,
                               "points": n, "jobs": jobs, "reps": n_reps, "hydra": hydras,
                               "env": environment_info(["runlock", "joblib", "omegaconf", "hydra-core"])}

    if args.profile:
        profile(py, repo, env, grid, n, root)

    if args.json:
        save_json(args.json, results)
    if args.keep:
        print(f"[kept {root}]")


def profile(py: str, repo: Path, env: dict[str, str], grid: str, n: int, root: Path) -> None:
    """-X importtime of the sweep process; cProfile of an in-process sweep (all points in it)."""
    out = repo / "results" / "prof-imp"
    cp = subprocess.run([py, "-X", "importtime", "stage.py", grid, "--sweep", "--jobs", "2", "--backend",
                         "joblib", "-q"], cwd=repo, env=dict(env, RUNLOCK_RESULTS=str(out)),
                        capture_output=True, text=True, check=True)
    rows = []
    for line in cp.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "self [us]" not in line:
            parts = line[len("import time:"):].split("|")
            rows.append((int(parts[1]), int(parts[0]), parts[2].rstrip()))
    top_level = [r for r in rows if not r[2][1:].startswith(" ")]
    table(["top-level import (sweep process, -X importtime)", "cumulative ms"],
          [(m.strip(), fmt_ms(c / 1e6)) for c, _s, m in sorted(top_level, reverse=True)[:12]],
          title="## Imports of the sweep parent process")
    shutil.rmtree(out, ignore_errors=True)

    prof = root / "inproc.prof"
    out = repo / "results" / "prof-cprofile"
    t0 = time.perf_counter()
    subprocess.run([py, "-m", "cProfile", "-o", str(prof), "stage.py", grid, "--sweep", "--jobs", "1",
                    "--backend", "inprocess", "-q"], cwd=repo, env=dict(env, RUNLOCK_RESULTS=str(out)),
                   capture_output=True, check=True)
    print(f"\n## cProfile of `stage.py {grid[:20]}... --sweep --backend inprocess` "
          f"({time.perf_counter() - t0:.2f} s under the profiler), cumulative, top 45; per point = / {n}")
    st = pstats.Stats(str(prof))
    st.sort_stats("cumulative").print_stats(45)
    st.sort_stats("tottime").print_stats(20)
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
