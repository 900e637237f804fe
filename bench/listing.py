#!/usr/bin/env python3
"""Listing benchmark: ``runlock ls --where`` vs ``mlflow.search_runs`` over the same runs.

Creates N runs (default 10,000; ``BENCH_N``) as run directories with a realistic run.lock
(~120 packages, environment, config, result; 20% in nested experiment folders) and logs the
same runs to a local MLflow sqlite store (``MlflowClient.create_run`` + ``log_batch`` +
``set_terminated``; ~20 ms per run, so 10,000 runs take a few minutes: set ``BENCH_N`` lower for
a quick look). ``BENCH_DATA`` keeps the fixture between invocations (default: a new temporary
directory, deleted at the end).

Then, alternating contenders, one untimed warm-up round, median of ``BENCH_REPS`` (default 7):

* ``runlock ls --where lr=0.1 --where 'acc>0.8'`` as a fresh CLI process (warm index, output
  piped: plain text),
* the same query through ``runlock.runs()`` in-process,
* ``mlflow.search_runs(filter_string="params.lr = '0.1' and metrics.acc > 0.8")`` in-process
  (after a first call, so mlflow's import and store set-up are excluded), and once more as a
  fresh process for a like-for-like comparison with the CLI.

Lock-only mode (``BENCH_MLFLOW=0``, the default above 20,000 runs: MLflow would take hours):
the fixture is just run directories with a run.lock, written from the template by all cores
(up to ``BENCH_N=1000000``: ~12 GB, see ``df -h``), and the figures are runlock's alone: cold
index build (ms per run), refresh when nothing changed, refresh after one lock changed,
``runlock.runs(where=...)`` in-process and ``runlock ls --where`` as a fresh process.

Usage: ``.venv/bin/python bench/listing.py``;
``BENCH_N=100000 BENCH_DATA=/tmp/lst100k .venv/bin/python bench/listing.py`` (lock-only)
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

N = int(os.environ.get("BENCH_N", "10000"))
REPS = int(os.environ.get("BENCH_REPS", "9"))
LRS = (0.1, 0.01, 0.001, 0.0001)
WHERE = ["lr=0.1", "acc>0.8"]
MLFLOW_FILTER = "params.lr = '0.1' and metrics.acc > 0.8"
FIXTURE_VERSION = 1
WITH_MLFLOW = os.environ.get("BENCH_MLFLOW", "1" if N <= 20_000 else "0") != "0"


def _records(n: int) -> list[dict[str, object]]:
    rng = random.Random(42)
    t0 = 1_764_000_000  # 2025-11-24
    out = []
    for i in range(n):
        start = t0 + i * 7
        acc = round(rng.random(), 6)
        out.append({
            "i": i,
            "id": time.strftime("%Y%m%dT%H%M%S", time.gmtime(start)) + f"-{i:06x}",
            "start": start,
            "lr": LRS[i % 4],
            "batch_size": (32, 64, 128)[i % 3],
            "epochs": 10,
            "optim": ("adam", "sgd")[i % 2],
            "seed": i,
            "acc": acc,
            "loss": round(1 - acc, 6),
            "experiment": f"sweep-{i % 5}" if i % 5 == 0 else None,
        })  # fmt: skip
    return out


def _lock_template() -> str:
    """A realistic lock (as the stage decorator writes it) with placeholders for the values."""
    from runlock.record.lockfile import dumps_lock

    lock = {
        "schema": 1, "id": "@ID@", "stage": "train", "status": "completed", "run_dir": "@DIR@",
        "experiment": None, "pid": 4242, "hostname": "bench-host",
        "heartbeat": "@END@",
        "timing": {"start": "@START@", "end": "@END@", "duration_s": 61.5},
        "function": {"name": "train", "qualname": "train", "module": "project.train",
                     "source_file": "/home/u/project/train.py",
                     "parameters": {"lr": "@LR@"}, "altered_parameters": {}},
        "config": {"lr": "@LR@", "batch_size": "@BS@", "epochs": 10,
                   "optim": {"name": "@OPT@", "weight_decay": 0.0001}, "data": "/data/set"},
        "seed": "@SEED@",
        "environment": {
            "argv": ["train.py", "lr=@LR@"], "platform": "linux",
            "python_version": "3.11.7", "python_implementation": "cpython",
            "python_executable": "/home/u/.venv/bin/python", "cwd": "/home/u/project",
            "hostname": "bench-host", "user": "u", "cpu_count": 16,
            "memory_bytes": 68719476736, "gpus": ["NVIDIA H100"], "slurm": {}, "env": {},
        },
        "packages": {f"package-{k:03d}": f"{k % 7}.{k % 13}.{k % 5}" for k in range(120)},
        "editable": {},
        "git": {"root": "/home/u/project", "head": "0123456789abcdef0123456789abcdef01234567",
                "branch": "main", "dirty": False, "remotes": {}},
        "data": {"data": {"path": "/data/set", "kind": "dir", "algorithm": "xxh3_64",
                          "hash": "0123456789abcdef", "size": 1000000, "files": 100}},
        "upstream": {},
        "outputs": {"algorithm": "xxh3_64", "files": {"model.pt": "fedcba9876543210"}},
        "result": {"file": "result.json", "value": {"acc": "@ACC@", "loss": "@LOSS@"}},
        "warnings": [],
    }  # fmt: skip
    text = dumps_lock(lock)
    # the dumper quotes the placeholders; unquote those that stand for numbers
    for key in ("@LR@", "@BS@", "@SEED@", "@ACC@", "@LOSS@"):
        text = text.replace(f"'{key}'", key)
    return text


def _write_runs(args: tuple[Path, str, list[dict[str, object]], bool]) -> None:
    root, template, records, extras = args
    made: set[Path] = set()
    for rec in records:
        base = root / str(rec["experiment"]) / "train" if rec["experiment"] else root / "train"
        if base not in made:
            base.mkdir(parents=True, exist_ok=True)
            made.add(base)
        d = base / str(rec["id"])
        d.mkdir(exist_ok=True)
        start = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(int(rec["start"])))  # type: ignore[call-overload]
        end = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(int(rec["start"]) + 61))  # type: ignore[call-overload]
        text = (
            template.replace("@ID@", str(rec["id"])).replace("@DIR@", str(d))
            .replace("@START@", start).replace("@END@", end).replace("@LR@", repr(rec["lr"]))
            .replace("@BS@", str(rec["batch_size"])).replace("@OPT@", str(rec["optim"]))
            .replace("@SEED@", str(rec["seed"])).replace("@ACC@", f"{rec['acc']:.6f}")
            .replace("@LOSS@", f"{rec['loss']:.6f}")
        )  # fmt: skip
        (d / "run.lock").write_text(text)
        if extras:
            (d / "result.json").write_text(json.dumps({"acc": rec["acc"], "loss": rec["loss"]}))
            (d / "model.pt").write_bytes(b"\0" * 64)


def make_runs(root: Path, records: list[dict[str, object]], *, extras: bool = True) -> float:
    """Write the run directories, in chunks over every core (1,000,000 locks in minutes)."""
    from concurrent.futures import ProcessPoolExecutor

    template = _lock_template()
    t0 = time.perf_counter()
    step = 5000
    chunks = [(root, template, records[i : i + step], extras) for i in range(0, len(records), step)]
    if len(chunks) == 1:
        _write_runs(chunks[0])
    else:
        with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
            list(pool.map(_write_runs, chunks))
    return time.perf_counter() - t0


def make_mlflow(uri: str, records: list[dict[str, object]]) -> tuple[str, float]:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    # Fixture creation only (a child process): skip fsync per transaction, or 10,000 runs take
    # half an hour on a slow disk. The timed queries run in other processes, with defaults.
    @event.listens_for(Engine, "connect")
    def _fast_writes(dbapi_conn: object, _record: object) -> None:
        cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
        cur.execute("PRAGMA synchronous=OFF")
        cur.close()

    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment("bench")
    t0 = time.perf_counter()
    for k, rec in enumerate(records, 1):
        ms = int(rec["start"]) * 1000  # type: ignore[call-overload]
        run = client.create_run(exp_id, start_time=ms, run_name=str(rec["id"]),
                                tags={"stage": "train"})  # fmt: skip
        params = {"lr": rec["lr"], "batch_size": rec["batch_size"], "epochs": rec["epochs"],
                  "optim.name": rec["optim"], "optim.weight_decay": 0.0001,
                  "seed": rec["seed"]}  # fmt: skip
        client.log_batch(
            run.info.run_id,
            metrics=[
                Metric("acc", float(rec["acc"]), ms, 0),
                Metric("loss", float(rec["loss"]), ms, 0),
            ],  # type: ignore[arg-type]
            params=[Param(key, str(v)) for key, v in params.items()],
            tags=[RunTag("runlock.id", str(rec["id"]))],
        )
        client.set_terminated(run.info.run_id, "FINISHED", end_time=ms + 61_000)
        if k % 1000 == 0:
            el = time.perf_counter() - t0
            print(f"  mlflow: {k}/{len(records)} runs, {el / k * 1000:.1f} ms/run", flush=True)
    return exp_id, time.perf_counter() - t0


def fixture(data: Path) -> dict[str, object]:
    stamp = data / "fixture.json"
    want = {"n": N, "v": FIXTURE_VERSION, "mlflow": WITH_MLFLOW}
    if stamp.is_file():
        info = json.loads(stamp.read_text())
        if {k: info.get(k) for k in want} == want:
            print(f"reusing the fixture in {data} ({N} runs)")
            return info  # type: ignore[no-any-return]
    shutil.rmtree(data / "results", ignore_errors=True)
    for name in ("mlflow.db",):
        (data / name).unlink(missing_ok=True)
    records = _records(N)
    print(f"creating {N} run directories under {data / 'results'} ...", flush=True)
    t_runs = make_runs(data / "results", records, extras=WITH_MLFLOW)
    if not WITH_MLFLOW:
        info = {**want, "runs_create_s": t_runs}
        stamp.write_text(json.dumps(info))
        print(f"  {t_runs:.1f} s (lock-only fixture)", flush=True)
        return info
    print(f"  {t_runs:.1f} s; logging the same runs to mlflow (sqlite) ...", flush=True)
    uri = "sqlite:///" + str(data / "mlflow.db")
    subprocess.run([sys.executable, __file__, "--make-mlflow", str(data)], check=True)
    made = json.loads((data / "mlflow.json").read_text())
    exp_id, t_mlflow = made["experiment_id"], made["create_s"]
    info = {**want, "uri": uri, "experiment_id": exp_id, "runs_create_s": t_runs,
            "mlflow_create_s": t_mlflow}  # fmt: skip
    stamp.write_text(json.dumps(info))
    return info


def main() -> None:
    warnings.filterwarnings("ignore")
    own = "BENCH_DATA" not in os.environ
    data = (
        Path(os.environ["BENCH_DATA"])
        if not own
        else Path(tempfile.mkdtemp(prefix="runlock-bench-"))
    )
    data.mkdir(parents=True, exist_ok=True)
    try:
        run_bench(data)
    finally:
        if own:
            shutil.rmtree(data, ignore_errors=True)


def run_bench(data: Path) -> None:
    from common import alternate, fmt_ms, load_note, paired_ratio, run_wall, stats, table

    info = fixture(data)
    root = data / "results"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    cli = [sys.executable, "-m", "runlock", "--root", str(root), "ls"]
    for w in WHERE:
        cli += ["--where", w]

    from runlock.browse import query
    from runlock.browse.index import RunIndex, index_path

    # Cold index build, once (not part of the comparison: it happens once per results root).
    index_path(root).unlink(missing_ok=True)
    c0, t0 = time.process_time(), time.perf_counter()
    with RunIndex(root) as idx:
        built = idx.refresh()
    cold, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
    # One lock rewritten as runlock rewrites it: the next query re-reads just that one.
    from runlock.record.lockfile import dump_lock, load_lock

    some = root / "train" / str(_records(2)[1]["id"]) / "run.lock"  # record 0 is in sweep-0/
    dump_lock(load_lock(some), some, durable=False)
    t0 = time.perf_counter()
    with RunIndex(root) as idx:
        changed = idx.refresh()
    assert changed.updated == 1, changed
    one_s = time.perf_counter() - t0

    expected = len(query.runs(where=WHERE, root=root))
    out = subprocess.run(cli, env=env, capture_output=True, text=True, check=True).stdout
    assert len(out.splitlines()) == expected + 1, (len(out.splitlines()), expected)
    if not WITH_MLFLOW:
        locks_only(root, cli, env, expected, built.total, cold, cold_cpu, one_s, info)
        return

    import mlflow

    mlflow.set_tracking_uri(str(info["uri"]))
    exp = [str(info["experiment_id"])]
    t0 = time.perf_counter()
    found = mlflow.search_runs(experiment_ids=exp, filter_string=MLFLOW_FILTER, max_results=100_000)
    first = time.perf_counter() - t0
    assert len(found) == expected, (len(found), expected)
    mlflow_cli = [sys.executable, "-c", (
        "import mlflow, sys; mlflow.set_tracking_uri(sys.argv[1]); "
        "print(len(mlflow.search_runs(experiment_ids=[sys.argv[2]], filter_string=sys.argv[3], "
        "max_results=100000)))"), str(info["uri"]), exp[0], MLFLOW_FILTER]  # fmt: skip

    cpu: dict[str, list[float]] = {}

    def child(name: str, cmd: list[str]) -> Callable[[], float]:
        def call() -> float:
            wall, cp = run_wall(cmd, env=env)
            cpu.setdefault(name, []).append(cp.cpu)  # type: ignore[attr-defined]
            return wall

        return call

    def here(name: str, fn: Callable[[], object]) -> Callable[[], float]:
        def call() -> float:
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall = time.perf_counter() - t0
            cpu.setdefault(name, []).append(time.process_time() - c0)
            return wall

        return call

    names = {
        "cli": "`runlock ls --where` (fresh process, warm index)",
        "api": "`runlock.runs(where=...)` in-process",
        "mlflow": "`mlflow.search_runs(filter)` in-process",
        "mlflow_cli": "`mlflow.search_runs(filter)` fresh process",
    }
    contenders = {
        names["cli"]: child(names["cli"], cli),
        names["api"]: here(names["api"], lambda: query.runs(where=WHERE, root=root)),
        names["mlflow"]: here(
            names["mlflow"],
            lambda: mlflow.search_runs(
                experiment_ids=exp, filter_string=MLFLOW_FILTER, max_results=100_000
            ),
        ),
        names["mlflow_cli"]: child(names["mlflow_cli"], mlflow_cli),
    }
    samples = alternate(contenders, REPS, warmup=1)
    cpu = {k: v[1:] for k, v in cpu.items()}  # drop the warm-up call
    rows = []
    for name in names.values():
        st = stats(samples[name])
        rows.append([
            name, fmt_ms(st["median"]), f"{st['iqr_pct']:.0f}%",
            fmt_ms(statistics.median(cpu[name])),
            f"{paired_ratio(samples[names['mlflow']], samples[name]):.1f}x",
            f"{paired_ratio(samples[names['mlflow_cli']], samples[name]):.1f}x",
        ])  # fmt: skip
    table(
        ["contender", "wall ms (median)", "IQR", "CPU ms", "mlflow in-proc / this",
         "mlflow process / this"],
        rows,
        title=f"{N} runs; lr=0.1 and acc>0.8 -> {expected} runs; median of {REPS}, alternating",
        note=load_note(),
    )  # fmt: skip
    print(f"\nfirst mlflow.search_runs in its process (import + store set-up): {fmt_ms(first)}")
    print(f"index build from {built.total} locks (first query only): {cold:.1f} s wall, "
          f"{cold_cpu:.1f} s CPU; refresh after one lock changed: {fmt_ms(one_s)}")  # fmt: skip
    print(
        f"fixture: {info['runs_create_s']:.1f} s to write {N} run dirs; "
        f"{info['mlflow_create_s']:.0f} s to log them to mlflow "
        f"({float(info['mlflow_create_s']) / N * 1000:.1f} ms/run)"  # type: ignore[arg-type]
    )
    print(f"python {sys.version.split()[0]}, sqlite {__import__('sqlite3').sqlite_version}")


def locks_only(
    root: Path,
    cli: list[str],
    env: dict[str, str],
    expected: int,
    total: int,
    cold: float,
    cold_cpu: float,
    one_s: float,
    info: dict[str, object],
) -> None:
    """runlock's own figures (no MLflow): warm refresh, in-process query, fresh CLI process."""
    from common import alternate, fmt_ms, load_note, run_wall, stats, table

    from runlock.browse import query
    from runlock.browse.index import RunIndex

    def refresh() -> None:
        with RunIndex(root) as idx:
            idx.refresh()

    def timed(fn: Callable[[], object]) -> Callable[[], float]:
        def call() -> float:
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0

        return call

    contenders = {
        "warm refresh, nothing changed (in-process)": timed(refresh),
        "`runlock.runs(where=...)` in-process": timed(lambda: query.runs(where=WHERE, root=root)),
        "`runlock ls --where` (fresh process)": lambda: run_wall(cli, env=env)[0],
    }
    if N <= 100_000:
        plain = [sys.executable, "-m", "runlock", "--root", str(root), "ls"]
        contenders["`runlock ls` (fresh process, every run)"] = lambda: run_wall(plain, env=env)[0]
    samples = alternate(contenders, REPS, warmup=1)
    rows = [[name, fmt_ms(stats(xs)["median"]), f"{stats(xs)['iqr_pct']:.0f}%"]
            for name, xs in samples.items()]  # fmt: skip
    table(
        ["warm (index up to date)", "wall ms (median)", "IQR"],
        rows,
        title=f"{N} runs (lock-only fixture); lr=0.1 and acc>0.8 -> {expected} runs; "
        f"median of {REPS}, alternating",
        note=load_note(),
    )
    print(f"\ncold index build from {total} locks: {cold:.1f} s wall "
          f"({cold / max(total, 1) * 1000:.3f} ms/run), {cold_cpu:.1f} s CPU of this process; "
          f"refresh after one lock rewritten: {fmt_ms(one_s)}")  # fmt: skip
    print(f"fixture: {float(info['runs_create_s']):.1f} s to write {N} run dirs")  # type: ignore[arg-type]
    print(f"python {sys.version.split()[0]}, sqlite {__import__('sqlite3').sqlite_version}, "
          f"{os.cpu_count()} cpus")  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == ["--make-mlflow"]:
        target = Path(sys.argv[2])
        exp_id, seconds = make_mlflow("sqlite:///" + str(target / "mlflow.db"), _records(N))
        (target / "mlflow.json").write_text(
            json.dumps({"experiment_id": exp_id, "create_s": seconds})
        )
    else:
        main()
