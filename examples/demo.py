"""The runlock demo: a real (small) scikit-learn stage, run like a user would from a shell.

It copies examples/train.py into a scratch git repository, then runs, printing each command:
one run, a sweep over C run as parallel tasks, a task map, a map interrupted (Ctrl-C) and
resumed, an interactive `%run train.py key=value` in IPython, `runlock ls`, `diff` and `show`.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent


def sh(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    print(f"\n$ {shlex.join(args)}", flush=True)
    res = subprocess.run(args, cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    print(res.stdout.rstrip(), flush=True)
    if check and res.returncode != 0:
        raise SystemExit(f"demo step failed ({res.returncode}): {shlex.join(args)}")
    return res


def interrupt_map(py: str, work: Path) -> list[str]:
    """Start a map of four tasks, press Ctrl-C once a task is done; return the resume command."""
    (work / "sizes.yaml").write_text("".join(f"- {0.2 + i / 20:.2f}\n" for i in range(4)))
    args = [py, "train.py", "--map", "sizes.yaml", "--map-key", "test_size", "-q"]
    print(f"\n$ {shlex.join(args)}   # then Ctrl-C", flush=True)
    before = set((work / "results" / "train").iterdir())
    # its own session: SIGINT to the group, as a terminal's Ctrl-C does
    proc = subprocess.Popen(args, cwd=work, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    while proc.poll() is None:
        new = set((work / "results" / "train").iterdir()) - before
        if any(any((d / ".runlock" / "tasks" / "results").glob("*.pkl")) for d in new):
            os.killpg(proc.pid, signal.SIGINT)
            break
        time.sleep(0.05)
    out, _ = proc.communicate()
    print(out.rstrip(), flush=True)
    hint = [line for line in out.splitlines() if "resume with: " in line]
    if hint:
        return shlex.split(hint[-1].split("resume with: ", 1)[1])
    # it finished before the Ctrl-C landed: resuming a completed map is a no-op
    (run_dir,) = set((work / "results" / "train").iterdir()) - before
    return [*args, "--resume", str(run_dir)]


def main() -> None:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="runlock-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "train.py", work / "train.py")
    (work / ".gitignore").write_text("results/\n")
    (work / "pyproject.toml").write_text('[tool.runlock]\nresults = "results"\n')
    env_git = ["-c", "user.name=runlock demo", "-c", "user.email=demo@runlock.invalid"]
    if not (work / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=work, check=True)
        subprocess.run(["git", "add", "-A"], cwd=work, check=True)
        subprocess.run(["git", *env_git, "commit", "-q", "-m", "demo project"], cwd=work, check=True)
    py = sys.executable
    runlock_cli = [py, "-m", "runlock"]
    os.environ.pop("RUNLOCK_RESULTS", None)

    print(f"runlock demo in {work}")
    sh(py, "train.py", "--help", cwd=work)
    sh(py, "train.py", "C=0.05", "seed=0", cwd=work)
    # an uncommitted edit: the next run's source snapshot records it (HEAD is untouched)
    text = (work / "train.py").read_text().replace("max_iter: int = 200", "max_iter: int = 300")
    (work / "train.py").write_text(text)
    # a sweep: one run per point, two at a time
    sh(py, "train.py", "C=0.01,0.1,1,10", "seed=0", "--sweep", "--jobs", "2", "-q", cwd=work)
    # the same sweep again: every point is already done with this config and source
    sh(py, "train.py", "C=0.01,0.1,1,10", "seed=0", "--sweep", "--jobs", "2", "-q", cwd=work)
    # parallel tasks inside ONE run: each task sets the test split size
    (work / "tasks.yaml").write_text("- 0.2\n- 0.3\n- 0.4\n- 0.5\n")
    sh(py, "train.py", "--map", "tasks.yaml", "--map-key", "test_size", "--jobs", "2", "-q", cwd=work)
    # Ctrl-C on a map, then the one-line --resume command it prints: only what is not done runs
    resume = interrupt_map(py, work)
    sh(*resume, cwd=work)
    # interactive: IPython's %run with arguments; the stage's locals land in the namespace
    ipython = Path(py).with_name("ipython")
    if ipython.exists():
        sh(str(ipython), "--no-banner", "--colors=NoColor", "-c",
           "%run train.py C=0.5 seed=1 -q\nprint(f'{acc=} (a local of the stage, now in the namespace)')", cwd=work)
    sh(*runlock_cli, "ls", "train", "--columns", "C,accuracy", cwd=work)
    runs = json.loads(sh(*runlock_cli, "ls", "train", "--json", "--status", "completed", cwd=work).stdout)
    runs.sort(key=lambda r: r["id"])
    first, last = runs[0]["id"], runs[-1]["id"]
    sh(*runlock_cli, "diff", first, runs[1]["id"], cwd=work)
    sh(*runlock_cli, "show", last, cwd=work)
    sh("git", "log", "--oneline", "-3", "runlock/snapshots", cwd=work, check=False)
    sh("git", "status", "--short", cwd=work)
    print(f"\nDone. The runs are in {work / 'results'}; try: cd {work} && {py} -m runlock ls")


if __name__ == "__main__":
    main()
