#!/usr/bin/env python3
"""What tracking a run costs: runlock vs a plain call, pycrumbs ``tracked`` and MLflow, side by side.

Fixture (built fresh under a temp dir, like anchor-bench's repo2k): a git repository of 2,000
.py files (~3 KB each), one commit, then 5 files modified and 2 untracked; the generated scripts
live in ``repo/_bench/`` (git-excluded), every output (run dirs, pycrumbs records, MLflow's
sqlite store) outside the repository. The index is settled (``git update-index --refresh`` a
second after the commit) as in a repository someone works in; ``--racy-index`` keeps it racy.

Contenders (all call the same ``noop(cfg)``; ``cfg`` a 5-field dataclass):

  baseline   plain call, nothing tracked
  runlock    ``@runlock.stage`` (fresh: ``runlock.main(stage)`` parses argv); config, run dir,
             run.lock with environment + packages, source snapshot on the shadow branch
  pycrumbs   ``@pycrumbs.tracked(literal_directory=...)`` no-op
  mlflow     ``mlflow.start_run()`` + ``log_params`` (20 params), local sqlite store
  runlock:NAME  ``--variant NAME=SRC_DIR``: runlock imported from another source tree (a patched
             copy: ``cp -r src /tmp/x``), alternated with the original for paired comparisons

Parts (``--parts``, default all):

  import     fresh-process ``python -c "import X"`` wall time (runlock, runlock + stage deps,
             omegaconf, joblib, yaml, pycrumbs, mlflow; ``python -c pass`` as the floor) and the
             heaviest modules under ``-X importtime``                     target: runlock <= 60 ms
  fresh      ``python script.py`` wall time, tracked minus untracked (paired per repetition)
                                          target: runlock <= 150 ms and <= 0.6x pycrumbs' added time
  warm       per call in a warm process (1 warm-up call, then --calls timed calls, one process
             per contender per round, --rounds rounds alternated)          target: <= 10 ms
  inventory  ``runlock.packages.inventory()`` vs ``importlib.metadata.distributions()`` vs
             ``pip list`` (fresh process, first call; and warm in-process)  target: <= 15 ms
  breakdown  where a warm runlock call spends its time: perf_counter probes around each step
             (background snapshot thread and its git commands included), optional cProfile
  micro      what-if measurements: yaml.SafeDumper vs CSafeDumper for the lock, platform.uname,
             find_spec of the seeders, OmegaConf steps, fsync'd writes, git snapshot steps

Usage::

    .venv/bin/python bench/overhead.py                       # everything (~4-6 min on 2 busy cores)
    .venv/bin/python bench/overhead.py --parts warm,breakdown --calls 10 --rounds 5
    .venv/bin/python bench/overhead.py --parts fresh,warm --variant fast=/tmp/perf_src

Timing rules: bench/common.py (alternation, medians, paired ratios / differences). The machine
is shared (2 cores): read the paired columns, and the load line under each table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_SRC = HERE.parent / "src"
sys.path.insert(0, str(HERE))
from common import (
    alternate,
    diffs,
    environment_info,
    fmt_ms,
    fmt_x,
    git,
    load_note,
    make_git_repo,
    median,
    paired_diff,
    paired_ratio,
    reps,
    run_child_json,
    run_wall,
    save_json,
    stats,
    table,
)

PY = sys.executable
TARGETS = {"import_ms": 60, "fresh_ms": 150, "fresh_vs_pycrumbs": 0.6, "warm_ms": 10,
           "inventory_ms": 15}


# --------------------------------------------------------------------------------------------
# contenders: code snippets (tokens @OUT@, @MLFLOW_URI@ become string literals)


@dataclass
class Contender:
    imports: str = ""
    setup: str = ""
    call: str = "noop(Cfg())"          # warm calls (and fresh, unless fresh_call is set)
    fresh_call: str | None = None
    note: str = ""


PRELUDE = """\
import time as _time
_T0 = _time.perf_counter()
import os, sys, json
from dataclasses import dataclass


@dataclass
class Cfg:
    lr: float = 0.1
    batch_size: int = 32
    epochs: int = 10
    name: str = "bench"
    seed: int = 0


def noop(cfg=None):
    return None
"""

RUNLOCK = Contender(
    imports="import runlock\n_stage, _main = runlock.stage, runlock.main  # the lazy imports",
    setup=("@runlock.stage(root=@OUT@)\n"
           "def runlock_noop(cfg: Cfg):\n"
           "    return noop(cfg)\n"),
    call="runlock_noop(Cfg())",
    fresh_call="runlock.main(runlock_noop)",
    note="@runlock.stage(root=OUT); fresh: runlock.main(stage) (argv parsing, config, dir, lock, snapshot)",
)

CONTENDERS: dict[str, Contender] = {
    "baseline": Contender(note="plain call"),
    "runlock": RUNLOCK,
    "pycrumbs": Contender(
        imports="from pycrumbs import tracked",
        setup=("@tracked(literal_directory=@OUT@)\n"
               "def pycrumbs_noop():\n"
               "    return noop(Cfg())\n"),
        call="pycrumbs_noop()",
        note="@tracked(literal_directory=OUT): git info + package list taken when decorating",
    ),
    "runlock-tracked": Contender(
        imports="from runlock import tracked",
        setup=("@tracked(literal_directory=@OUT@)\n"
               "def tracked_noop():\n"
               "    return noop(Cfg())\n"),
        call="tracked_noop()",
        note="pycrumbs' call under `from runlock import tracked`: run.lock + pycrumbs' record file",
    ),
    "mlflow": Contender(
        imports="import mlflow",
        setup=("mlflow.set_tracking_uri(@MLFLOW_URI@)\n"
               "mlflow.set_experiment('overhead')\n"
               "MLFLOW_PARAMS = {f'param_{i:02d}': i * 0.5 for i in range(20)}\n"),
        call=("with mlflow.start_run():\n"
              "    mlflow.log_params(MLFLOW_PARAMS)\n"
              "    noop(Cfg())"),
        note="start_run + log_params(20), sqlite store under the temp dir",
    ),
}


class Bench:
    """Fixture paths and child-process plumbing."""

    def __init__(self, work: Path, variants: dict[str, Path], racy: bool) -> None:
        self.work = work
        self.repo = work / "repo"
        self.out = work / "out"
        self.variants = variants
        self.racy = racy
        self.srcs = {"runlock": REPO_SRC, **{f"runlock:{k}": v for k, v in variants.items()}}
        self.contenders = dict(CONTENDERS)
        for k in variants:
            self.contenders[f"runlock:{k}"] = RUNLOCK

    # -- fixture ----------------------------------------------------------------------------

    def prepare(self) -> None:
        t0 = time.perf_counter()
        make_git_repo(self.repo, n_files=2000, file_bytes=3000, modified=5, untracked=2)
        if not self.racy:
            time.sleep(1.1)  # entries written in the index's own second are "racy": settle them
            git(["update-index", "-q", "--refresh"], cwd=self.repo, check=False)
        (self.repo / "_bench").mkdir()
        self.out.mkdir(parents=True, exist_ok=True)
        # MLflow: create the store + experiment up front (schema migration is a one-off)
        code = ("import warnings; warnings.filterwarnings('ignore')\nimport mlflow\n"
                f"mlflow.set_tracking_uri({self.mlflow_uri!r}); mlflow.set_experiment('overhead')\n")
        run_wall([PY, "-c", code], cwd=self.repo, env=self.env("baseline"))
        print(f"fixture: {self.repo} (2,000 files, 5 modified, 2 untracked; "
              f"{'racy' if self.racy else 'settled'} index) in {time.perf_counter() - t0:.1f}s; "
              f"outputs in {self.out}")

    @property
    def mlflow_uri(self) -> str:
        return "sqlite:///" + str(self.out / "mlflow.db")

    def env(self, name: str) -> dict[str, str]:
        e = dict(os.environ)
        src = self.srcs.get(name, REPO_SRC)
        e["PYTHONPATH"] = os.pathsep.join([str(src), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        e["MLFLOW_DISABLE_TELEMETRY"] = "true"
        e["DO_NOT_TRACK"] = "true"
        e["RUNLOCK_RESULTS"] = str(self.out / "results")
        e.pop("CI", None)
        return e

    def subst(self, code: str, name: str) -> str:
        key = name.replace(":", "_").replace("-", "_")
        return (code.replace("@OUT@", repr(str(self.out / key)))
                    .replace("@MLFLOW_URI@", repr(self.mlflow_uri)))

    # -- generated scripts ------------------------------------------------------------------

    def fresh_script(self, name: str) -> Path:
        c = self.contenders[name]
        call = c.fresh_call or c.call
        src = PRELUDE + "_t1 = _time.perf_counter()\n" + c.imports + "\n_t2 = _time.perf_counter()\n"
        src += c.setup + "\n_t3 = _time.perf_counter()\n" + call + "\n_t4 = _time.perf_counter()\n"
        src += textwrap.dedent("""\
            if os.environ.get("BENCH_RESULT"):
                with open(os.environ["BENCH_RESULT"], "w") as _f:
                    json.dump({"start": _t1 - _T0, "import": _t2 - _t1, "setup": _t3 - _t2,
                               "call": _t4 - _t3}, _f)
            """)
        p = self.repo / "_bench" / f"fresh_{name.replace(':', '_')}.py"
        p.write_text(self.subst(src, name))
        return p

    def warm_script(self, name: str) -> Path:
        c = self.contenders[name]
        src = PRELUDE + c.imports + "\n" + c.setup + "\n\ndef _call():\n"
        src += textwrap.indent(c.call.strip(), "    ") + "\n\n"
        src += textwrap.dedent("""\
            def _cpu():  # this process (all threads) + reaped children (git): load-robust
                _t = os.times()
                return _time.process_time() + _t.children_user + _t.children_system

            _n = int(os.environ["BENCH_CALLS"])
            _calls, _cpus = [], []
            for _i in range(_n + 1):  # the first call is a warm-up
                _c = _cpu()
                _a = _time.perf_counter()
                _call()
                _b = _time.perf_counter()
                _d = _cpu()
                if _i:
                    _calls.append(_b - _a)
                    _cpus.append(_d - _c)
            with open(os.environ["BENCH_RESULT"], "w") as _f:
                json.dump({"calls": _calls, "cpu": _cpus}, _f)
            """)
        p = self.repo / "_bench" / f"warm_{name.replace(':', '_')}.py"
        p.write_text(self.subst(src, name))
        return p


# --------------------------------------------------------------------------------------------
# part: import


IMPORTS = {
    "python -c pass": "pass",
    "import runlock": "import runlock",
    "import runlock; runlock.stage, runlock.main": "import runlock; runlock.stage, runlock.main",
    "import omegaconf": "import omegaconf",
    "import joblib": "import joblib",
    "import yaml": "import yaml",
    "import pycrumbs": "import pycrumbs",
    "import mlflow": "import mlflow",
}


def part_import(b: Bench, n: int) -> dict[str, Any]:
    stmts = dict(IMPORTS)
    for k in b.variants:
        stmts[f"import runlock [{k}]"] = "import runlock"
        stmts[f"import runlock; runlock.stage, runlock.main [{k}]"] = stmts[
            "import runlock; runlock.stage, runlock.main"]

    def env_for(label: str) -> dict[str, str]:
        for k in b.variants:
            if label.endswith(f"[{k}]"):
                return b.env(f"runlock:{k}")
        return b.env("runlock")

    def one(label: str) -> Any:
        code = ("import time as _t, sys as _s\n_a = _t.perf_counter()\n" + stmts[label] +
                "\n_s.stdout.write(repr(_t.perf_counter() - _a))")

        def f() -> float:
            dt, cp = run_wall([PY, "-c", code], cwd=b.repo, env=env_for(label))
            inproc[label].append(float(cp.stdout.decode() or "nan"))
            cpu[label].append(cp.cpu)  # type: ignore[attr-defined]
            return dt
        return f

    inproc: dict[str, list[float]] = {k: [] for k in stmts}
    cpu: dict[str, list[float]] = {k: [] for k in stmts}
    wall = alternate({k: one(k) for k in stmts}, n)
    for k in inproc:  # drop the warm-up round's figures
        inproc[k], cpu[k] = inproc[k][-n:], cpu[k][-n:]
    base = wall["python -c pass"]
    rows = []
    for k in stmts:
        rows.append([k, fmt_ms(median(wall[k])), fmt_ms(paired_diff(wall[k], base)) if k != "python -c pass"
                     else "-", fmt_ms(median(inproc[k])) if k != "python -c pass" else "-",
                     fmt_ms(median(cpu[k])),
                     fmt_ms(paired_diff(cpu[k], cpu["python -c pass"])) if k != "python -c pass" else "-",
                     f"{stats(wall[k])['iqr_pct']:.0f}%"])
    table(["fresh process", "wall ms", "wall - `python -c pass` (paired)", "in-process import ms",
           "CPU ms", "CPU - pass's (paired)", "IQR (wall)"], rows, title=f"== import time, fresh process, median of {n} (alternated) ==",
          note=load_note())
    # what `import runlock` pulls in (-X importtime; modules already there at startup left out)
    def importtime(stmt: str) -> list[tuple[int, int, int, str]]:
        cp = subprocess.run([PY, "-X", "importtime", "-c", stmt], cwd=b.repo, env=b.env("runlock"),
                            capture_output=True, text=True, check=False)
        entries = []
        for line in cp.stderr.splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            self_us, cum_us, mod = line.split(":", 1)[1].split("|", 2)
            name = mod[1:]
            level = (len(name) - len(name.lstrip(" "))) // 2
            entries.append((int(cum_us), int(self_us), level, name.strip()))
        return entries

    startup = {m for _, _, _, m in importtime("pass")}
    tops: dict[str, Any] = {}
    for stmt in ("import runlock", "import runlock; runlock.stage, runlock.main"):
        entries = [e for e in importtime(stmt) if e[3] not in startup]
        heavy = sorted((e for e in entries if e[2] <= 1), reverse=True)[:10]
        tops[stmt] = {"modules": len(entries), "heaviest": heavy}
        print(f"\n-X importtime `{stmt}`: {len(entries)} modules beyond startup; heaviest (level<=1, "
              "cumulative ms): " + ", ".join(f"{'  ' * lvl}{m} {c / 1000:.1f}" for c, _, lvl, m in heavy))
    return {"wall": wall, "inprocess": inproc, "cpu": cpu, "importtime_top": tops}


# --------------------------------------------------------------------------------------------
# part: fresh


def part_fresh(b: Bench, names: list[str], n: int, ref: str = "runlock") -> dict[str, Any]:
    names = ["baseline"] + [x for x in names if x != "baseline"]
    scripts = {x: b.fresh_script(x) for x in names}
    parts: dict[str, list[dict[str, float]]] = {x: [] for x in names}

    def one(x: str) -> Any:
        def f() -> float:
            dt, d = run_child_json([PY, str(scripts[x])], cwd=b.repo, env=b.env(x))
            parts[x].append(d)
            return dt
        return f

    wall = alternate({x: one(x) for x in names}, n)
    for x in names:
        parts[x] = parts[x][-n:]
    base = wall["baseline"]
    added = {x: diffs(wall[x], base) for x in names}
    cpu = {x: [p["_cpu"] for p in parts[x]] for x in names}
    added_cpu = {x: diffs(cpu[x], cpu["baseline"]) for x in names}
    rows = []
    for x in names:
        pm = {k: median([p[k] for p in parts[x]]) for k in ("import", "setup", "call")}
        resid = [a - p["import"] - p["setup"] - p["call"] for a, p in zip(added[x], parts[x])]
        vs_pc = (fmt_x(paired_ratio(added[x], added["pycrumbs"]))
                 if "pycrumbs" in names and x.startswith("runlock") else "")
        vs_pc_cpu = (fmt_x(paired_ratio(added_cpu[x], added_cpu["pycrumbs"]))
                     if "pycrumbs" in names and x.startswith("runlock") else "")
        rows.append([x, fmt_ms(median(wall[x])), "-" if x == "baseline" else fmt_ms(median(added[x])),
                     fmt_x(paired_ratio(wall[x], base)), vs_pc, fmt_ms(pm["import"]),
                     fmt_ms(pm["setup"]), fmt_ms(pm["call"]),
                     "-" if x == "baseline" else fmt_ms(median(resid)),
                     "-" if x == "baseline" else fmt_ms(median(added_cpu[x])), vs_pc_cpu,
                     f"{stats(wall[x])['iqr_pct']:.0f}%",
                     fmt_ms(paired_diff(wall[x], wall[ref])) if ref in names and x.startswith("runlock") and x != ref
                     else ""])
    table(["contender", "wall ms", "added ms (paired)", "x baseline", "added x pycrumbs' (paired)",
           "import ms", "setup ms", "call ms", "exit/other ms", "added CPU ms", "added CPU x pycrumbs'",
           "IQR (wall)", f"wall vs {ref} ms (paired)"], rows,
          title=f"== fresh process: `python script.py`, one call, median of {n} (alternated) ==",
          note=load_note())
    return {"wall": wall, "parts": parts, "added": added, "cpu": cpu, "added_cpu": added_cpu}


# --------------------------------------------------------------------------------------------
# part: warm


def part_warm(b: Bench, names: list[str], rounds: int, calls: int, ref: str = "runlock") -> dict[str, Any]:
    scripts = {x: b.warm_script(x) for x in names}
    per_call: dict[str, list[float]] = {x: [] for x in names}
    per_round: dict[str, list[float]] = {x: [] for x in names}
    cpu_call: dict[str, list[float]] = {x: [] for x in names}
    cpu_round: dict[str, list[float]] = {x: [] for x in names}

    def one(x: str) -> Any:
        def f() -> float:
            e = b.env(x)
            e["BENCH_CALLS"] = str(calls)
            _, d = run_child_json([PY, str(scripts[x])], cwd=b.repo, env=e)
            per_call[x].extend(d["calls"])
            per_round[x].append(median(d["calls"]))
            cpu_call[x].extend(d["cpu"])
            cpu_round[x].append(median(d["cpu"]))
            return median(d["calls"])
        return f

    alternate({x: one(x) for x in names}, rounds, warmup=0)
    base = per_round.get("baseline", [0.0] * rounds)
    rows = []
    for x in names:
        st = stats(per_call[x])
        vs = ""
        if x != "pycrumbs" and "pycrumbs" in names and x != "baseline":
            vs = fmt_x(paired_ratio(per_round[x], per_round["pycrumbs"]))
        vs_ref = ""
        if ref in names and x.startswith("runlock") and x != ref:
            vs_ref = (f"{fmt_ms(paired_diff(per_round[x], per_round[ref]))} ms / "
                      f"{fmt_ms(paired_diff(cpu_round[x], cpu_round[ref]))} CPU ms")
        rows.append([x, fmt_ms(st["median"]), "-" if x == "baseline" else fmt_ms(paired_diff(per_round[x], base)),
                     fmt_ms(st["min"]), fmt_ms(st["max"]), f"{st['iqr_pct']:.0f}%", vs,
                     fmt_ms(median(cpu_call[x])), f"{stats(cpu_call[x])['iqr_pct']:.0f}%", vs_ref])
    table(["contender", "per call ms (median of all)", "added ms (paired by round)", "min", "max", "IQR",
           "x pycrumbs (paired)", "CPU ms per call (incl. git children)", "IQR (CPU)",
           f"vs {ref} (paired by round)"], rows,
          title=f"== warm process: per call, {rounds} rounds x (1 warm-up + {calls} calls), one process "
                f"per contender per round, alternated ==", note=load_note())
    return {"calls": per_call, "rounds": per_round, "cpu": cpu_call, "cpu_rounds": cpu_round}


# --------------------------------------------------------------------------------------------
# part: inventory

INV_CHILD = """
import time as _t, json, os, sys
_i = _t.perf_counter()
{imports}
_a = _t.perf_counter()
{code}
_b = _t.perf_counter()
{code}
_c = _t.perf_counter()
with open(os.environ["BENCH_RESULT"], "w") as f:
    json.dump({{"import": _a - _i, "first": _b - _a, "second": _c - _b, "n": len(inv)}}, f)
"""
#: name -> (imports, inventory code leaving {name: version} in `inv`)
INVENTORIES = {
    "runlock.capture.packages.inventory()": ("from runlock.capture.packages import inventory", "inv = inventory()[0]"),
    "importlib.metadata.distributions() (name, version)":
        ("import importlib.metadata as md", "inv = {d.name: d.version for d in md.distributions()}"),
    "importlib.metadata.distributions() (metadata['Name'], version)":
        ("import importlib.metadata as md", "inv = {d.metadata['Name']: d.version for d in md.distributions()}"),
}


def part_inventory(b: Bench, n: int) -> dict[str, Any]:
    first: dict[str, list[float]] = {k: [] for k in INVENTORIES}
    second: dict[str, list[float]] = {k: [] for k in INVENTORIES}
    imp: dict[str, list[float]] = {k: [] for k in INVENTORIES}
    count: dict[str, int] = {}

    def inproc(k: str) -> Any:
        def f() -> float:
            code = INV_CHILD.format(imports=INVENTORIES[k][0], code=INVENTORIES[k][1])
            dt, d = run_child_json([PY, "-c", code], cwd=b.repo, env=b.env("runlock"))
            imp[k].append(d["import"])
            first[k].append(d["first"])
            second[k].append(d["second"])
            count[k] = d["n"]
            return dt
        return f

    def pip() -> float:
        dt, cp = run_wall([PY, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
                          cwd=b.repo, env=b.env("runlock"))
        count["pip list"] = len(json.loads(cp.stdout))
        return dt

    def bare() -> float:
        return run_wall([PY, "-c", "pass"], cwd=b.repo, env=b.env("runlock"))[0]

    wall = alternate({"python -c pass": bare, "pip list": pip,
                      **{k: inproc(k) for k in INVENTORIES}}, n)
    for k in INVENTORIES:
        first[k], second[k], imp[k] = first[k][-n:], second[k][-n:], imp[k][-n:]
    ref = first["runlock.capture.packages.inventory()"]
    rows = []
    for k in INVENTORIES:
        rows.append([k, fmt_ms(median(imp[k])), fmt_ms(median(first[k])), fmt_ms(median(second[k])),
                     fmt_x(paired_ratio(first[k], ref)), fmt_ms(paired_diff(wall[k], wall["python -c pass"])),
                     count.get(k, "-")])
    rows.append(["pip list --format=json (subprocess)", "-", "-", "-",
                 fmt_x(paired_ratio(wall["pip list"], ref)), fmt_ms(median(wall["pip list"])),
                 count.get("pip list", "-")])
    table(["inventory", "import ms", "1st call in a fresh process ms", "2nd call ms", "x runlock (1st, paired)",
           "process wall - python startup ms (pip: whole wall)", "distributions"], rows,
          title=f"== package inventory ({sys.prefix}), median of {n} (alternated) ==", note=load_note())
    # a warm in-process check of the same figures (no fresh-process noise)
    code = textwrap.dedent("""
        import json, os, sys, time
        sys.path.insert(0, %r)
        from common import alternate
        import importlib.metadata as md
        from runlock.capture.packages import inventory
        s = alternate({"runlock": inventory,
                       "importlib.metadata": lambda: {d.name: d.version for d in md.distributions()}}, 15)
        json.dump(s, open(os.environ["BENCH_RESULT"], "w"))
    """) % str(HERE)
    _, warm = run_child_json([PY, "-c", code], cwd=b.repo, env=b.env("runlock"))
    print(f"warm, in-process (15 alternated calls): runlock.capture.packages.inventory() "
          f"{fmt_ms(median(warm['runlock']))} ms, importlib.metadata.distributions() "
          f"{fmt_ms(median(warm['importlib.metadata']))} ms "
          f"({fmt_x(paired_ratio(warm['importlib.metadata'], warm['runlock']))} runlock's)")
    return {"wall": wall, "import": imp, "first": first, "second": second, "count": count, "warm": warm}


# --------------------------------------------------------------------------------------------
# part: breakdown (probes in a warm process)

BREAKDOWN_CHILD = r'''
import cProfile, io, json, os, pstats, sys, threading, time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
sys.path.insert(0, os.environ["BENCH_DIR"])
from common import median

import runlock
import runlock.stages.run as R, runlock.config.omega as C, runlock.record.lockfile as L, runlock.record.rundir as RD
import runlock.capture.builtin as BC, runlock.git as G, runlock._subprocess as SP
import runlock.capture.seeding as SEED, runlock.stages.decorator as ST

@dataclass
class Cfg:
    lr: float = 0.1
    batch_size: int = 32
    epochs: int = 10
    name: str = "bench"
    seed: int = 0

@runlock.stage(root=os.environ["BENCH_OUT"])
def noop_stage(cfg: Cfg):
    return None

T = defaultdict(float)        # label -> seconds in the current call
N = defaultdict(int)          # label -> count in the current call
_lock = threading.Lock()

def add(label, dt):
    with _lock:
        T[label] += dt
        N[label] += 1

def probe(owner, attr, label):
    orig = getattr(owner, attr)
    def wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
            return orig(*a, **k)
        finally:
            add(label, time.perf_counter() - t0)
    setattr(owner, attr, wrapper)

def probe_cm(owner, attr, label):
    orig = getattr(owner, attr)
    @contextmanager
    def wrapper(*a, **k):
        t0 = time.perf_counter()
        cm = orig(*a, **k)
        cm.__enter__()
        add(label + " (enter)", time.perf_counter() - t0)
        try:
            yield
        finally:
            t1 = time.perf_counter()
            cm.__exit__(None, None, None)
            add(label + " (exit)", time.perf_counter() - t1)
    setattr(owner, attr, wrapper)

# the call, and its two halves
probe(ST.Stage, "_config_from_call", "config from the call (OmegaConf.structured)")
probe(R.ActiveRun, "open", "ActiveRun.open (total)")
probe(R.ActiveRun, "close", "ActiveRun.close (total)")
# inside open
probe(C, "resolve", "  resolve config")
probe(R, "place_run_dir", "  place run dir (template)")
probe(RD, "create_unique_dir", "  mkdir run dir")
probe(C, "to_yaml", "  config.yaml: OmegaConf.to_yaml")
probe(RD, "atomic_write", "  write config.yaml (tmp + fsync + rename)")
probe(C, "to_plain", "  config to_plain")
probe(R, "inventory", "  packages.inventory")
probe(R, "capture_environment", "  capture_environment")
for _cls in list(vars(BC).values()):
    if isinstance(_cls, type) and _cls.__module__ == BC.__name__ and hasattr(_cls, "start") and hasattr(_cls, "finish"):
        _key = getattr(_cls, "key", _cls.__name__)
        _what = {"git": " (git: submit the snapshot)"}.get(_key, "")
        probe(_cls, "start", f"  collector '{_key}' start{_what}")
        _what = {"git": " (git: wait for the snapshot thread, exposed)"}.get(_key, "")
        probe(_cls, "finish", f"  collector '{_key}' finish{_what}")
probe(L, "dumps_lock", "  lock: yaml dump (x2: running + final)")
probe(L, "atomic_write", "  lock: write (tmp + fsync + rename) x2")
probe(R.LockWriter, "start_heartbeat", "  heartbeat thread start")
probe_cm(R, "run_logging", "  logging setup")
probe(SEED, "apply_seed", "  seeding.apply_seed")
probe(R, "_activate_metrics", "  metrics activate")
probe(C, "to_argument", "  to_argument (OmegaConf.to_object)")
probe(G, "snapshot", "[bg] git snapshot (whole, background thread)")
_orig_run = SP.run
def sp_run(args, **k):
    t0 = time.perf_counter()
    try:
        return _orig_run(args, **k)
    finally:
        add(f"[bg]   git {args[1] if len(args) > 1 else ''}", time.perf_counter() - t0)
SP.run = sp_run
G._subprocess.run = sp_run

calls = int(os.environ["BENCH_CALLS"])
per = defaultdict(list)
counts = {}
totals = []
cpus = []
def _cpu():
    t = os.times()
    return time.process_time() + t.children_user + t.children_system
for i in range(calls + 1):
    T.clear(); N.clear()
    c0 = _cpu()
    t0 = time.perf_counter()
    noop_stage(Cfg())
    dt = time.perf_counter() - t0
    if i or os.environ.get("BENCH_FIRST"):
        cpus.append(_cpu() - c0)
        totals.append(dt)
        for k in list(T):
            per[k].append(T[k])
            counts[k] = N[k]
prof = ""
if os.environ.get("BENCH_PROFILE"):
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(5):
        noop_stage(Cfg())
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats(30)
    prof = s.getvalue()
json.dump({"totals": totals, "cpus": cpus, "per": per, "counts": counts, "profile": prof},
          open(os.environ["BENCH_RESULT"], "w"))
'''


def part_breakdown(b: Bench, rounds: int, calls: int, profile: bool, src_name: str = "runlock",
                   cold: bool = False) -> dict[str, Any]:
    """Warm calls (after one warm-up call per process), or with ``cold`` the first call of each
    fresh process (what a `python script.py` run pays inside the call)."""
    totals: list[float] = []
    cpus: list[float] = []
    per: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    prof = ""
    for r in range(rounds):
        e = b.env(src_name)
        e.update(BENCH_CALLS=str(calls), BENCH_DIR=str(HERE), BENCH_OUT=str(b.out / "breakdown"))
        if cold:
            e.update(BENCH_CALLS="0", BENCH_FIRST="1")
        if profile and r == rounds - 1:
            e["BENCH_PROFILE"] = "1"
        _, d = run_child_json([PY, "-c", BREAKDOWN_CHILD], cwd=b.repo, env=e)
        totals += d["totals"]
        cpus += d["cpus"]
        for k, v in d["per"].items():
            per.setdefault(k, []).extend(v)
        counts.update(d["counts"])
        prof = d["profile"] or prof
    tot = median(totals)
    rows = [["whole call (Stage.__call__)", fmt_ms(tot), "1", "100%"],
            ["  CPU of the call (all threads + git children)", fmt_ms(median(cpus)), "", ""]]
    order = sorted(per, key=lambda k: (k.startswith("[bg]"), not k.startswith("ActiveRun") and
                                       not k.startswith("config from"), k.startswith("[bg]  ")))
    for k in order:
        m = median(per[k] + [0.0] * (len(totals) - len(per[k])))
        rows.append([k, fmt_ms(m), str(counts.get(k, "")), f"{100 * m / tot:.0f}%"])
    table(["step ([bg] = snapshot thread, overlaps the rest)", "ms per call (median)",
           "count per call", "share of call"], rows,
          title=(f"== breakdown of the FIRST runlock call of a fresh process ({src_name}), {rounds} processes =="
                 if cold else
                 f"== breakdown of a warm runlock call ({src_name}), {rounds} processes x {calls} calls =="),
          note=load_note())
    if prof:
        print("\ncProfile, 5 warm calls (main thread only), top by cumulative time:\n" +
              "\n".join(prof.splitlines()[:45]))
    return {"totals": totals, "cpus": cpus, "per": per, "counts": counts, "profile": prof}


# --------------------------------------------------------------------------------------------
# part: micro (what-if measurements)

MICRO_CHILD = r'''
import importlib.util, json, os, platform, sys, tempfile, time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
sys.path.insert(0, os.environ["BENCH_DIR"])
from common import alternate, median
res = {}

# platform.uname(): first call in this process, then cached
t0 = time.perf_counter(); platform.uname(); res["platform.uname() 1st call"] = [time.perf_counter() - t0]
t0 = time.perf_counter(); platform.uname(); res["platform.uname() cached"] = [time.perf_counter() - t0]

import yaml
import runlock.record.lockfile as L, runlock.config.omega as C, runlock.capture.seeding as SEED, runlock.capture.environment as E
import runlock.record.rundir as RD
import runlock._yaml as Y
from omegaconf import OmegaConf

lock = L.load_lock(Path(os.environ["BENCH_LOCK"]))
class CDumper(yaml.CSafeDumper):
    pass
class PDumper(yaml.SafeDumper):
    pass
for _d in (CDumper, PDumper):
    _d.add_representer(str, Y._block_str)
plain = L._to_plain(lock)
py_text = yaml.dump(plain, Dumper=PDumper, sort_keys=False, allow_unicode=True, width=100)
c_text = yaml.dump(plain, Dumper=CDumper, sort_keys=False, allow_unicode=True, width=100)
res["yaml: CSafeDumper output identical"] = py_text == c_text
res["runlock dumper"] = Y.ReadableDumper.__mro__[1].__name__
res["lock size bytes"] = len(py_text)

@dataclass
class Cfg:
    lr: float = 0.1
    batch_size: int = 32
    epochs: int = 10
    name: str = "bench"
    seed: int = 0

cfg = OmegaConf.structured(Cfg)
now = datetime.now().astimezone()
tmpd = Path(tempfile.mkdtemp(dir=os.environ["BENCH_OUT"]))
json_text = json.dumps(plain)

def find_specs():
    for name in ("numpy", "torch", "tensorflow"):
        importlib.util.find_spec(name)

def write_fsync():
    RD.atomic_write(tmpd / "run.lock", py_text)

def write_plain():
    p = tmpd / "plain.lock"
    tmp = tmpd / ".plain.tmp"
    tmp.write_text(py_text)
    os.replace(tmp, p)

import runlock.stages.run as R, runlock.capture.packages as P, runlock.stages.decorator as ST
schema = C.Schema("dataclass", Cfg, "cfg", {}, {})
sopts = R.StageOptions(name="s", root=str(tmpd))
CPU = {}

def timed(name, f):
    CPU[name] = []
    def g():
        c = time.thread_time()
        f()
        CPU[name].append(time.thread_time() - c)
    return name, g

s = alternate(dict(timed(k, f) for k, f in {
    "lockfile.dumps_lock(lock) (runlock as it is)": lambda: L.dumps_lock(lock),
    "yaml.dump lock, SafeDumper (pure Python)": lambda: yaml.dump(L._to_plain(lock), Dumper=PDumper, sort_keys=False, allow_unicode=True, width=100),
    "yaml.dump lock, CSafeDumper (libyaml)": lambda: yaml.dump(L._to_plain(lock), Dumper=CDumper, sort_keys=False, allow_unicode=True, width=100),
    "json.dumps lock (reference)": lambda: json.dumps(L._to_plain(lock)),
    "lockfile._to_plain(lock)": lambda: L._to_plain(lock),
    "yaml.safe_load lock (pure)": lambda: yaml.load(py_text, Loader=yaml.SafeLoader),
    "yaml.load lock, CSafeLoader": lambda: yaml.load(py_text, Loader=yaml.CSafeLoader),
    "find_spec numpy+torch+tensorflow (apply_seed)": find_specs,
    "seeding.apply_seed(0) + remove_hook": lambda: (SEED.apply_seed(0), SEED.remove_hook()),
    "OmegaConf.structured(Cfg)": lambda: OmegaConf.structured(Cfg),
    "config.resolve": lambda: C.resolve(cfg, now=now, run_id="x", stage="s"),
    "OmegaConf.to_yaml(cfg)": lambda: C.to_yaml(cfg),
    "OmegaConf.to_object(cfg)": lambda: OmegaConf.to_object(cfg),
    "capture_environment()": E.capture_environment,
    "environment.gpus() (shutil.which nvidia-smi)": E.gpus,
    "atomic_write lock (tmp + fsync + rename)": write_fsync,
    "write lock (tmp + rename, no fsync)": write_plain,
    "packages.inventory() (warm)": P.inventory,
    "config.base_config(schema, Cfg()) (2x OmegaConf.structured)": lambda: C.base_config(schema, Cfg()),
    "run.place_run_dir (default template: OmegaConf create+merge)": lambda: R.place_run_dir(sopts, cfg, now=now, run_id="x", experiment=None),
}.items()), int(os.environ["BENCH_N"]))
res.update(s)
res["_thread_cpu"] = {k: v[-len(s[k]):] for k, v in CPU.items()}
json.dump(res, open(os.environ["BENCH_RESULT"], "w"))
'''

SNAP_CHILD = r'''
import json, os, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, os.environ["BENCH_DIR"])
from common import alternate
import runlock.git as G
repo = Path(os.environ["BENCH_REPO"])
opts = G.SnapshotOptions(exclude_dirs=(Path(os.environ["BENCH_OUT"]),))
env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
def sh(*args):
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True)
s = alternate({
    "runlock.git.snapshot (current)": lambda: G.snapshot(repo, opts, message="bench"),
    "runlock.git.repo_info (no snapshot: rev-parse x3, status, remote)": lambda: G.repo_info(repo),
    "git status --porcelain (1 process)": lambda: sh("status", "--porcelain"),
    "git ls-files --modified --others (1 process)": lambda: sh("ls-files", "-z", "--modified", "--others", "--exclude-standard"),
    "git rev-parse HEAD (1 process: spawn floor)": lambda: sh("rev-parse", "HEAD"),
}, int(os.environ["BENCH_N"]))
json.dump(s, open(os.environ["BENCH_RESULT"], "w"))
'''


def part_micro(b: Bench, n: int, src_names: list[str]) -> dict[str, Any]:
    locks = sorted(b.out.rglob("run.lock"))
    if not locks:  # make one
        run_child_json([PY, str(b.fresh_script("runlock"))], cwd=b.repo, env=b.env("runlock"))
        locks = sorted(b.out.rglob("run.lock"))
    out: dict[str, Any] = {}
    e = b.env("runlock")
    e.update(BENCH_DIR=str(HERE), BENCH_OUT=str(b.out), BENCH_N=str(n), BENCH_LOCK=str(locks[-1]))
    _, d = run_child_json([PY, "-c", MICRO_CHILD], cwd=b.repo, env=e)
    out["micro"] = d
    rows = []
    cpu = d.get("_thread_cpu", {})
    for k, v in d.items():
        if isinstance(v, list):
            rows.append([k, fmt_ms(median(v), 3), fmt_ms(min(v), 3), f"{stats(v)['iqr_pct']:.0f}%",
                         fmt_ms(median(cpu[k]), 3) if cpu.get(k) else "-"])
    py, c = d["yaml.dump lock, SafeDumper (pure Python)"], d["yaml.dump lock, CSafeDumper (libyaml)"]
    table(["operation (warm, in-process; alternated)", "ms (median)", "min", "IQR", "thread CPU ms"], rows,
          title=f"== micro: candidate costs, median of {n} ==",
          note=(f"lock {d['lock size bytes']} bytes; runlock's dumper is based on {d['runlock dumper']}; "
                f"CSafeDumper output identical to the pure SafeDumper's: "
                f"{d['yaml: CSafeDumper output identical']}; CSafeDumper = {fmt_x(paired_ratio(c, py))} the "
                f"pure dumper's time (paired). {load_note()}"))
    snap: dict[str, Any] = {}
    for name in src_names:
        e = b.env(name)
        e.update(BENCH_DIR=str(HERE), BENCH_OUT=str(b.out), BENCH_N=str(n), BENCH_REPO=str(b.repo))
        _, s = run_child_json([PY, "-c", SNAP_CHILD], cwd=b.repo, env=e)
        snap[name] = s
        table(["git work (warm process, 2,000-file repo; alternated)", "ms (median)", "min", "IQR"],
              [[k, fmt_ms(median(v)), fmt_ms(min(v)), f"{stats(v)['iqr_pct']:.0f}%"] for k, v in s.items()
               if not k.startswith("_")],
              title=f"== micro: source snapshot vs git floors ({name}), median of {n} ==", note=load_note())
    out["snapshot"] = snap
    return out


# --------------------------------------------------------------------------------------------


def verdict(results: dict[str, Any]) -> None:
    lines = []
    if "import" in results:
        w = results["import"]["wall"]
        m = paired_diff(w["import runlock"], w["python -c pass"])
        full = paired_diff(w["import runlock; runlock.stage, runlock.main"], w["python -c pass"])
        lines.append(f"import runlock: {fmt_ms(m)} ms over python startup (target <= {TARGETS['import_ms']}): "
                     f"{'MET' if m * 1000 <= TARGETS['import_ms'] else 'MISSED'}; with runlock.stage + "
                     f"runlock.main resolved: {fmt_ms(full)} ms")
    if "fresh" in results:
        a = results["fresh"]["added"]
        for x in (k for k in a if k.startswith("runlock")):
            m = median(a[x])
            ok = m * 1000 <= TARGETS["fresh_ms"]
            line = f"fresh tracked no-op ({x}): +{fmt_ms(m)} ms (target <= {TARGETS['fresh_ms']}): {'MET' if ok else 'MISSED'}"
            if "pycrumbs" in a:
                r = paired_ratio(a[x], a["pycrumbs"])
                line += (f"; {r:.2f}x pycrumbs' added {fmt_ms(median(a['pycrumbs']))} ms (target <= "
                         f"{TARGETS['fresh_vs_pycrumbs']}): {'MET' if r <= TARGETS['fresh_vs_pycrumbs'] else 'MISSED'}")
            lines.append(line)
    if "warm" in results:
        rd = results["warm"]["rounds"]
        for x in (k for k in rd if k.startswith("runlock")):
            m = paired_diff(rd[x], rd["baseline"]) if "baseline" in rd else median(rd[x])
            lines.append(f"warm per call ({x}): +{fmt_ms(m)} ms (target <= {TARGETS['warm_ms']}): "
                         f"{'MET' if m * 1000 <= TARGETS['warm_ms'] else 'MISSED'}")
    if "inventory" in results:
        f = results["inventory"]["first"]["runlock.capture.packages.inventory()"]
        n = results["inventory"]["count"].get("runlock.capture.packages.inventory()")
        lines.append(f"inventory: {fmt_ms(median(f))} ms for {n} distributions, first call in a fresh "
                     f"process (target <= {TARGETS['inventory_ms']}): "
                     f"{'MET' if median(f) * 1000 <= TARGETS['inventory_ms'] else 'MISSED'}")
    if lines:
        print("\n== targets ==\n" + "\n".join("* " + x for x in lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="import,fresh,warm,inventory,breakdown,micro")
    ap.add_argument("--only", default="", help="contenders (comma-separated; baseline always runs)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions of import/fresh/inventory/micro")
    ap.add_argument("--rounds", type=int, default=None, help="warm: processes per contender (default 5)")
    ap.add_argument("--calls", type=int, default=10, help="warm: timed calls per process (default 10)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=SRC",
                    help="also run runlock imported from SRC (a patched copy of src/), as runlock:NAME")
    ap.add_argument("--profile", action="store_true", help="breakdown: add a cProfile listing")
    ap.add_argument("--reference", default="runlock",
                    help="contender the runlock variants are compared with, paired (default runlock; "
                         "e.g. runlock:base for a frozen copy of src/)")
    ap.add_argument("--cold", action="store_true",
                    help="breakdown: the first call of fresh processes instead of warm calls")
    ap.add_argument("--breakdown-of", default=None,
                    help="breakdown: comma-separated runlock contenders (default: runlock and all variants)")
    ap.add_argument("--racy-index", action="store_true",
                    help="leave the fixture's index racily clean (entries re-hashed on every snapshot)")
    ap.add_argument("--workdir", default=None, help="fixture + outputs here (default: a new temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--json", default=None, help="write raw samples here")
    a = ap.parse_args()
    variants = {}
    for v in a.variant:
        k, _, p = v.partition("=")
        variants[k] = Path(p).resolve()
    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="runlock-overhead-"))
    b = Bench(work, variants, a.racy_index)
    names = list(b.contenders)
    if a.only:
        names = ["baseline"] + [x for x in a.only.split(",") if x and x != "baseline"]
        names += [f"runlock:{k}" for k in variants if f"runlock:{k}" not in names]  # variants always run
        for x in names:
            if x not in b.contenders:
                sys.exit(f"unknown contender {x}; known: {', '.join(b.contenders)}")
    n = a.reps or reps(9)
    rounds = a.rounds or reps(5)
    parts = a.parts.split(",")
    print(f"runlock overhead bench: python {sys.version.split()[0]}, src {REPO_SRC}, "
          f"{load_note()}; {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    b.prepare()
    results: dict[str, Any] = {"env": environment_info(["pycrumbs", "mlflow", "omegaconf", "PyYAML", "joblib"]),
                               "contenders": {k: v.note for k, v in b.contenders.items()},
                               "variants": {k: str(v) for k, v in variants.items()}}
    t0 = time.perf_counter()
    try:
        if "import" in parts:
            results["import"] = part_import(b, n)
        if "fresh" in parts:
            results["fresh"] = part_fresh(b, names, n, a.reference)
        if "warm" in parts:
            results["warm"] = part_warm(b, names, rounds, a.calls, a.reference)
        if "inventory" in parts:
            results["inventory"] = part_inventory(b, n)
        if "breakdown" in parts:
            which = (a.breakdown_of.split(",") if a.breakdown_of
                     else ["runlock", *(f"runlock:{k}" for k in variants)])
            results["breakdown"] = {x: part_breakdown(b, rounds if a.cold else max(2, rounds // 2), a.calls,
                                                      a.profile, x, cold=a.cold)
                                    for x in which}
        if "micro" in parts:
            results["micro"] = part_micro(b, n * 2, ["runlock", *(f"runlock:{k}" for k in variants)])
    finally:
        verdict(results)
        print(f"\n(bench took {time.perf_counter() - t0:.0f}s; notes: " +
              "; ".join(f"{k}: {v.note}" for k, v in b.contenders.items() if v.note) + ")")
        if a.json:
            save_json(a.json, results)
        if not a.keep and not a.workdir:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"fixture kept in {work}")


if __name__ == "__main__":
    main()
