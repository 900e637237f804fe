"""Shared timing helpers for the bench/ scripts (stdlib only; importable without runlock).

Use from a bench script::

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import alternate, paired_ratio, paired_diff, stats, table, fmt_ms

Timing rules (the same as /work/shared/anchor-bench, so figures compare):

* contenders run **alternately** (round robin, order rotated each repetition) after untimed
  warm-up rounds, so drift of a shared machine (2 cores, other people's tests) hits all alike;
* the figure is the **median**; min / max / IQR are kept so the noise is visible;
* comparisons are **paired**: per-repetition ratio (or difference) against a reference
  contender, then the median of those; prefer them to absolute milliseconds.

Helpers:

=====================  ==========================================================================
``reps(default)``       repetition count, overridable by ``BENCH_REPS`` / ``BENCH_QUICK=1``
``alternate(...)``      round-robin runner -> ``{name: [seconds, ...]}``
``time_calls(f, n)``    n timed calls of f (after warm-up) -> list of seconds
``stats(xs)``           median, min, max, q1, q3, iqr_pct, n
``paired_ratio(a, b)``  median of a[i] / b[i]
``paired_diff(a, b)``   median of a[i] - b[i] (added time over a baseline)
``fmt_ms(s)``           seconds as a short millisecond string
``table(h, rows)``      markdown table, printed and returned
``run_wall(cmd)``       (wall seconds, CompletedProcess) of a subprocess; ``cp.cpu`` its CPU seconds
``cpu_now()``           process + reaped-children CPU seconds: a clock that other people's load
                        inflates far less than wall time (report it next to wall on a busy machine)
``run_child_json(...)`` run a python child that writes JSON to $BENCH_RESULT; (wall, dict)
``make_git_repo(...)``  anchor-bench style repository fixture (N .py files, M modified, K untracked)
``load_note()``         one line on machine load (put it under every table: noise context)
``environment_info()``  python / platform / cpus / git / package versions, for the JSON output
``save_json(p, obj)``   write results
=====================  ==========================================================================
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

QUICK = os.environ.get("BENCH_QUICK", "") == "1"

#: deterministic identity for every git command of a fixture (no global git config needed)
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def reps(default: int) -> int:
    """Repetitions: ``BENCH_REPS`` forces a count, ``BENCH_QUICK=1`` caps it at 2."""
    if os.environ.get("BENCH_REPS"):
        return max(1, int(os.environ["BENCH_REPS"]))
    return max(1, min(default, 2)) if QUICK else default


# --------------------------------------------------------------------------------------------
# statistics


def _nan(x: float) -> bool:
    return isinstance(x, float) and math.isnan(x)


def median(xs: Sequence[float]) -> float:
    xs = [x for x in xs if not _nan(x)]
    return statistics.median(xs) if xs else float("nan")


def stats(xs: Sequence[float]) -> dict[str, float]:
    """median, min, max, quartiles and the IQR as % of the median (a noise figure)."""
    xs = sorted(x for x in xs if not _nan(x))
    if not xs:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "q1": float("nan"),
                "q3": float("nan"), "iqr_pct": float("nan"), "n": 0}
    if len(xs) >= 4:
        q1, _, q3 = statistics.quantiles(xs, n=4)
    else:
        q1, q3 = xs[0], xs[-1]
    med = statistics.median(xs)
    return {"median": med, "min": xs[0], "max": xs[-1], "q1": q1, "q3": q3,
            "iqr_pct": 100.0 * (q3 - q1) / med if med else float("nan"), "n": len(xs)}


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """Median of the per-repetition ratios a[i] / b[i] (pairs with b[i] <= 0 are dropped)."""
    return median([x / y for x, y in zip(a, b) if y > 0])


def paired_diff(a: Sequence[float], b: Sequence[float]) -> float:
    """Median of the per-repetition differences a[i] - b[i]: time added over a baseline."""
    return median([x - y for x, y in zip(a, b)])


def diffs(a: Sequence[float], b: Sequence[float]) -> list[float]:
    return [x - y for x, y in zip(a, b)]


# --------------------------------------------------------------------------------------------
# running contenders


def alternate(
    contenders: Mapping[str, Callable[[], Any]],
    n: int,
    *,
    warmup: int = 1,
    before_each: Callable[[str, int], None] | None = None,
    after_each: Callable[[str, int], None] | None = None,
    shuffle: bool = False,
) -> dict[str, list[float]]:
    """Run every contender ``n`` times, round robin, rotating the order each repetition.

    The time of a call is ``perf_counter`` around it, unless the contender returns a number:
    that number (seconds) is taken as its own measured duration (a subprocess reporting its own
    clock, or a call with an untimed part). ``before_each`` / ``after_each`` run untimed.
    Repetitions ``-warmup .. -1`` are not recorded. ``shuffle``: random order instead of rotation.
    """
    names = list(contenders)
    out: dict[str, list[float]] = {k: [] for k in names}
    rng = random.Random(12345)
    for r in range(-warmup, n):
        if shuffle:
            order = names[:]
            rng.shuffle(order)
        else:
            k = r % len(names) if names else 0
            order = names[k:] + names[:k]
        for name in order:
            if before_each:
                before_each(name, r)
            t0 = time.perf_counter()
            res = contenders[name]()
            dt = time.perf_counter() - t0
            if after_each:
                after_each(name, r)
            if isinstance(res, (int, float)) and not isinstance(res, bool):
                dt = float(res)
            if r >= 0:
                out[name].append(dt)
    return out


def time_calls(fn: Callable[[], Any], n: int, *, warmup: int = 1) -> list[float]:
    """``warmup`` untimed calls then ``n`` timed calls of ``fn``."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def children_cpu() -> float:
    """CPU seconds (user + system) of all reaped child processes so far (and their children)."""
    t = os.times()
    return t.children_user + t.children_system


def cpu_now() -> float:
    """CPU seconds of this process (all threads) plus its reaped children: a load-robust clock for
    in-process work (wall time on a shared 2-core machine is inflated by other people's load)."""
    return time.process_time() + children_cpu()


def run_wall(cmd: Sequence[str], *, cwd: str | os.PathLike[str] | None = None,
             env: Mapping[str, str] | None = None, input: bytes | None = None,
             check: bool = True) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    """Run a command; return (wall seconds seen from here, CompletedProcess).

    ``cp.cpu`` (an extra attribute) is the CPU seconds the command and its descendants used.
    """
    c0 = children_cpu()
    t0 = time.perf_counter()
    cp = subprocess.run(list(cmd), cwd=cwd, env=dict(env) if env is not None else None, input=input,
                        capture_output=True, check=False)
    dt = time.perf_counter() - t0
    cp.cpu = children_cpu() - c0  # type: ignore[attr-defined]
    if check and cp.returncode != 0:
        raise RuntimeError(f"command failed ({cp.returncode}): {list(cmd)}\n"
                           f"{cp.stderr.decode(errors='replace')[-3000:]}")
    return dt, cp


def run_child_json(cmd: Sequence[str], *, cwd: str | os.PathLike[str] | None = None,
                   env: Mapping[str, str] | None = None) -> tuple[float, dict[str, Any]]:
    """Run a child that writes a JSON object to the file named by ``$BENCH_RESULT``.

    Returns (wall seconds of the whole process seen from here, the child's JSON); the JSON gets
    ``_cpu``: CPU seconds of the child and its descendants (git processes it spawned included).
    """
    fd, res = tempfile.mkstemp(prefix="bench-", suffix=".json")
    os.close(fd)
    e = dict(os.environ if env is None else env)
    e["BENCH_RESULT"] = res
    try:
        dt, cp = run_wall(cmd, cwd=cwd, env=e)
        text = Path(res).read_text()
        data = json.loads(text) if text.strip() else {}
        data["_cpu"] = cp.cpu  # type: ignore[attr-defined]
        return dt, data
    finally:
        os.unlink(res)


# --------------------------------------------------------------------------------------------
# output


def fmt_ms(s: float | None, digits: int | None = None) -> str:
    if s is None or _nan(s):
        return "-"
    ms = s * 1000
    if digits is not None:
        return f"{ms:.{digits}f}"
    if abs(ms) >= 100:
        return f"{ms:,.0f}"
    if abs(ms) >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def fmt_x(r: float | None) -> str:
    return "-" if r is None or _nan(r) else f"{r:.2f}x"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str = "",
          note: str = "") -> str:
    """A markdown table (first column left-aligned, the others right-aligned); printed."""
    body = [["" if c is None else str(c) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in body:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    lines = [f"\n{title}"] if title else []
    lines.append("| " + " | ".join(h.ljust(widths[i]) for i, h in enumerate(headers)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in body:
        lines.append("| " + " | ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
                                       for i, c in enumerate(r)) + " |")
    if note:
        lines.append(note)
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def load_note() -> str:
    """Load average and CPU count: the context every figure should be read in."""
    try:
        la = os.getloadavg()
        return f"load avg {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on {os.cpu_count()} cpus"
    except OSError:
        return f"{os.cpu_count()} cpus"


def tool_version(cmd: Sequence[str]) -> str | None:
    if not shutil.which(cmd[0]):
        return None
    try:
        cp = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10,
                            check=False)
        return cp.stdout.decode(errors="replace").strip().splitlines()[0]
    except Exception:  # noqa: BLE001
        return None


def dist_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001
        return None


def environment_info(packages: Sequence[str] = ()) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load": load_note(),
        "git": tool_version(["git", "--version"]),
        "packages": {p: dist_version(p) for p in packages},
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def save_json(path: str | os.PathLike[str], payload: Any) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(payload, indent=1, default=str))
    print(f"\n[raw samples written to {p}]")
    return p


# --------------------------------------------------------------------------------------------
# fixtures


def git(args: Sequence[str], cwd: str | os.PathLike[str], check: bool = True) -> str:
    env = dict(os.environ)
    env.update(GIT_ENV)
    cp = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=False)
    if check and cp.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {cp.stderr.decode(errors='replace')}")
    return cp.stdout.decode()


_WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega", "loss", "grad", "batch", "layer", "tensor", "model", "data", "config", "seed", "epoch", "step", "optimizer", "scheduler", "metric"]


def py_source(rng: random.Random, target: int, tag: str = "") -> str:
    """Python-looking text of about ``target`` bytes (as anchor-bench's make_fixtures)."""
    out = [f'"""Module {tag} generated for benchmarks."""\nimport os\nimport math\n\n']
    size = len(out[0])
    i = 0
    while size < target:
        name = "_".join(rng.choice(_WORDS) for _ in range(3)) + f"_{i}"
        a, b = rng.choice(_WORDS), rng.choice(_WORDS)
        block = (f"def {name}({a}, {b}=None):\n"
                 f"    \"\"\"Compute {a} from {b}.\"\"\"\n"
                 f"    value = {rng.randint(0, 10**6)} * math.sqrt(abs({a} or 1))\n"
                 f"    if {b} is not None:\n"
                 f"        value += {rng.random():.6f}\n"
                 f"    return value\n\n\n")
        out.append(block)
        size += len(block)
        i += 1
    return "".join(out)


def repo_layout(i: int) -> str:
    return f"pkg_{i // 100:03d}/sub_{(i // 10) % 10}/mod_{i:05d}.py"


def make_git_repo(root: Path, *, n_files: int = 2000, file_bytes: int = 3000, modified: int = 5,
                  untracked: int = 2, seed: int = 7, exclude: Sequence[str] = ("_bench/", "_out/"),
                  ) -> Path:
    """anchor-bench's ``repo2k``: ``n_files`` .py files committed, then ``modified`` of them
    changed and ``untracked`` new files; ``exclude`` goes to .git/info/exclude (bench scripts,
    outputs)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    rng = random.Random(seed)
    for i in range(n_files):
        p = root / repo_layout(i)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(py_source(rng, file_bytes, str(i)))
    for d in {(root / repo_layout(i)).parent.parent for i in range(n_files)}:
        (d / "__init__.py").touch()
    (root / "README.md").write_text("synthetic repository for benchmarks\n")
    git(["init", "-q", "-b", "main"], cwd=root)
    git(["config", "user.name", "bench"], cwd=root)
    git(["config", "user.email", "bench@example.invalid"], cwd=root)
    git(["config", "gc.auto", "0"], cwd=root)  # no auto-gc in the middle of a timing
    with open(root / ".git" / "info" / "exclude", "a") as f:
        f.write("".join(f"{e}\n" for e in exclude))
    git(["add", "-A"], cwd=root)
    git(["commit", "-q", "-m", "initial"], cwd=root)
    perturb_repo(root, n_files=n_files, modified=modified, untracked=untracked, nonce=0)
    return root


def perturb_repo(root: Path, *, n_files: int, modified: int, untracked: int, nonce: int) -> None:
    """Modify ``modified`` tracked files and (re)write ``untracked`` untracked ones, with content
    depending on ``nonce`` (so every call can have new blobs)."""
    step = max(1, n_files // max(1, modified))
    for k in range(modified):
        p = root / repo_layout((k * step + 7) % n_files)
        text = p.read_text()
        cut = text.find("\n# bench-nonce")
        if cut >= 0:
            text = text[:cut + 1]
        p.write_text(text + f"# bench-nonce {nonce} {k}\n")
    for k in range(untracked):
        p = root / f"pkg_{k:03d}" / f"untracked_{k}.py"
        p.write_text(f"# untracked file {k}, nonce {nonce}\nX = {nonce}\n")
