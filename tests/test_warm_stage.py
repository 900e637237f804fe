"""A process running a stage again on an unchanged tree takes the snapshot from its memo: no git
process but the one that writes the run's own ref (what keeps a warm call at a few ms). Checked end to end through the stage, with a
real git behind a logging shim on PATH, because the memo is reached through the collector: a
renamed module once made every warm call run git again and no lower-level test noticed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

SCRIPT = textwrap.dedent(
    """
    import os, sys
    from dataclasses import dataclass
    import runlock

    @dataclass
    class Config:
        n: int = 1

    @runlock.stage(root=sys.argv[1])
    def noop(cfg: Config) -> None:
        return None

    log = os.environ["GIT_SHIM_LOG"]
    calls = []
    for _ in range(3):
        noop(Config())
        with open(log) as f:
            calls.append(sum(1 for _ in f))
    print(calls)
    """
)


def test_second_run_in_a_process_runs_no_git(tmp_path: Path) -> None:
    real_git = shutil.which("git")
    assert real_git is not None
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text(SCRIPT)
    (repo / "lib.py").write_text("x = 1\n")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig"), "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CEILING_DIRECTORIES": str(tmp_path),
    }  # fmt: skip
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "init"]):
        subprocess.run([real_git, *args], cwd=repo, env=env, check=True)
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    log = tmp_path / "git-calls.log"
    log.write_text("")
    shim = shim_dir / "git"
    shim.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{real_git}" "$@"\n')
    shim.chmod(0o755)
    # The memo trusts a file only when its ctime is over a second older than the snapshot
    # (coarse timestamps): let the fixture's files age past that margin.
    time.sleep(1.2)
    env.update(
        PATH=f"{shim_dir}{os.pathsep}{env['PATH']}",
        GIT_SHIM_LOG=str(log),
        PYTHONPATH=str(SRC),
        RUNLOCK_TRACKER="none",
    )
    out = subprocess.run(
        [sys.executable, "train.py", str(tmp_path / "results")],
        cwd=repo, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    first, _, third = eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our own list
    assert first > 0, "the first run snapshots with git"
    later = log.read_text().splitlines()[first:third]
    # The memo's first full check lists the tree once (ls-tree) and each run writes its own ref
    # (one update-ref, off the critical path); nothing scans, hashes or writes a tree again.
    snapshotting = ("ls-files", "update-index", "write-tree", "hash-object", "diff", "commit-tree")
    assert not [c for c in later if c.startswith(snapshotting)], later
