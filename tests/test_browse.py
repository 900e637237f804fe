"""Browsing commands: ls, show, diff, compare, rm, lineage, and RUN resolution.

The main paths go through a real ``python -m runlock`` subprocess; the rest call
``runlock.cli.main`` in-process for speed. No test depends on the current directory.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from locks import make_run

import runlock
from runlock.browse.resolve import resolve_run
from runlock.cli import main
from runlock.errors import AmbiguousRunError, RunNotFoundError
from runlock.record.lockfile import dump_lock, load_lock

SRC = Path(runlock.__file__).resolve().parents[1]
SNAP_REF = "refs/heads/runlock/snapshots"


def lock_of(d: Path) -> dict[str, Any]:
    return load_lock(d)


def rewrite(d: Path, **updates: Any) -> None:
    lock = load_lock(d)
    lock.update(updates)
    dump_lock(lock, d / "run.lock")


def cli(*args: str, cwd: Path, stdin: Any = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("RUNLOCK_RESULTS", None)
    return subprocess.run(
        [sys.executable, "-m", "runlock", *args],
        cwd=cwd, env=env, stdin=stdin, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A results root with awkward characters, and a separate working directory."""
    r = tmp_path / "results 'q'"
    r.mkdir()
    (tmp_path / "elsewhere").mkdir()
    return r


def ids(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines()[1:] if line.strip()]


# -- ls ----------------------------------------------------------------------------------


def test_ls_subprocess_plain_output_and_filters(root: Path, tmp_path: Path) -> None:
    a = make_run(root, config={"lr": 0.1, "bs": 32}, result={"acc": 0.9})
    b = make_run(root, config={"lr": 0.1, "bs": 64}, result={"acc": 0.7})
    make_run(root, config={"lr": 0.01, "bs": 32}, result={"acc": 0.95})
    e = make_run(root, "eval", config={"lr": 0.1}, result={"acc": 0.99}, status="failed")
    cwd = tmp_path / "elsewhere"

    out = cli("--root", str(root), "ls", "--where", "lr=0.1", "--where", "acc>0.8", cwd=cwd)
    assert out.returncode == 0, out.stderr
    header = out.stdout.splitlines()[0].split()
    assert header[:6] == ["id", "stage", "status", "start", "duration", "commit"]
    assert "lr" in header and "acc" in header
    assert ids(out.stdout) == [e.name, a.name]

    # --root after the sub-command, stage positional, status filter
    out = cli("ls", "train", "--root", str(root), "--where", "lr=0.1", cwd=cwd)
    assert ids(out.stdout) == [b.name, a.name]  # newest first
    out = cli("ls", "--root", str(root), "--status", "failed", cwd=cwd)
    assert [line.split()[1] for line in out.stdout.splitlines()[1:]] == ["eval"]


def test_ls_filters_in_process(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)
    old = make_run(root, config={"lr": 0.1}, result={"acc": 0.5}, start=now - timedelta(days=3))
    new = make_run(root, config={"lr": 0.2}, result={"acc": 0.9}, start=now - timedelta(hours=1))
    r = str(root)
    assert ids(run_main(capsys, "--root", r, "ls", "--since", "2d")[1]) == [new.name]
    assert ids(run_main(capsys, "--root", r, "ls", "--since", "4d")[1]) == [new.name, old.name]
    since = (now - timedelta(days=2)).strftime("%Y-%m-%d")
    assert ids(run_main(capsys, "--root", r, "ls", "--since", since)[1]) == [new.name]
    assert ids(run_main(capsys, "--root", r, "ls", "-w", "acc>=0.9")[1]) == [new.name]
    assert ids(run_main(capsys, "--root", r, "ls", "-w", "config.lr!=0.2")[1]) == [old.name]
    assert ids(run_main(capsys, "--root", r, "ls", "--sort", "acc")[1]) == [old.name, new.name]
    assert ids(run_main(capsys, "--root", r, "ls", "-n", "1")[1]) == [new.name]
    code, out, err = run_main(capsys, "--root", r, "ls", "-w", "lr=5")
    assert code == 0 and out == "" and "no runs" in err
    code, _, err = run_main(capsys, "--root", r, "ls", "-w", "lr")
    assert code == 2 and "Cannot parse the filter 'lr'" in err
    code, _, err = run_main(capsys, "--root", r, "ls", "--status", "finished")
    assert code == 2 and "Unknown status 'finished'" in err


def test_ls_columns_and_wide(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_run(root, config={"lr": 0.1, "bs": 32, "seed": 1}, result={"acc": 0.9, "loss": 0.1})
    make_run(root, config={"lr": 0.2, "bs": 32, "seed": 1}, result={"acc": 0.8, "loss": 0.2})
    _, out, _ = run_main(capsys, "--root", str(root), "ls", "--wide")
    header = out.splitlines()[0].split()
    assert header[6:] == ["lr", "acc", "loss"]  # bs and seed do not vary
    _, out, _ = run_main(capsys, "--root", str(root), "ls", "-c", "bs,result.loss")
    assert out.splitlines()[0].split()[6:] == ["bs", "loss"]


def test_ls_json_shape(root: Path, tmp_path: Path) -> None:
    d = make_run(root, config={"lr": 0.1, "optim": {"name": "adam"}}, result={"acc": 0.9},
                 git={"head": "b" * 40, "dirty": True})  # fmt: skip
    out = cli("--root", str(root), "ls", "--json", cwd=tmp_path / "elsewhere")
    data = json.loads(out.stdout)
    assert isinstance(data, list) and len(data) == 1
    run = data[0]
    assert set(run) == {"id", "stage", "status", "start", "duration_s", "commit", "dirty", "dir",
                        "config", "result"}  # fmt: skip
    assert run["id"] == d.name and run["dir"] == str(d) and run["dirty"] is True
    assert run["config"] == {"lr": 0.1, "optim": {"name": "adam"}}
    assert run["result"] == {"acc": 0.9} and run["duration_s"] == 42.0
    assert datetime.fromisoformat(run["start"]).tzinfo is not None


def test_crashed_detection(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = datetime.now(UTC)
    crashed = make_run(root, status="running", pid=dead.pid, hostname=host,
                       heartbeat=now.isoformat(), start=now)  # fmt: skip
    alive = make_run(root, status="running", pid=os.getpid(), hostname=host,
                     heartbeat=now.isoformat(), start=now)  # fmt: skip
    stale = make_run(root, status="running", pid=os.getpid(), hostname="other-host",
                     heartbeat=(now - timedelta(minutes=10)).isoformat(), start=now)  # fmt: skip
    other = make_run(root, status="running", pid=dead.pid, hostname="other-host",
                     heartbeat=now.isoformat(), start=now)  # fmt: skip
    _, out, _ = run_main(capsys, "--root", str(root), "ls", "--json")
    status = {r["id"]: r["status"] for r in json.loads(out)}
    assert status == {crashed.name: "crashed", alive.name: "running", stale.name: "crashed",
                      other.name: "running"}  # fmt: skip
    _, out, _ = run_main(capsys, "--root", str(root), "ls", "--status", "crashed")
    assert sorted(ids(out)) == sorted([crashed.name, stale.name])
    _, out, _ = run_main(capsys, "--root", str(root), "ls", "--status", "running")
    assert sorted(ids(out)) == sorted([alive.name, other.name])


# -- RUN resolution ------------------------------------------------------------------------


def test_resolve_id_prefix_path_and_errors(root: Path, tmp_path: Path) -> None:
    a = make_run(root, run_id="20261125T120000-aaaaaa")
    b = make_run(root, run_id="20261125T120000-aabbbb")
    c = make_run(root, run_id="20261125T130000-cccccc")
    assert resolve_run("20261125T120000-aaaaaa", root).dir == a
    assert resolve_run("20261125T13", root).dir == c  # unique prefix
    assert resolve_run(str(b), root).dir == b  # run directory
    (b / "outputs").mkdir()
    (b / "outputs" / "model.pt").write_bytes(b"x")
    assert resolve_run(str(b / "outputs" / "model.pt"), root).id == b.name  # file inside a run
    assert resolve_run("train/20261125T130000-cccccc", root).dir == c  # relative to the root
    dated = root / "train" / "20261125-140000-1"  # the decorator's dated directory names
    shutil.copytree(c, dated)
    rewrite(dated, id="20261125T140000-dddddd")
    assert resolve_run("20261125-140000-1", root).id == "20261125T140000-dddddd"
    with pytest.raises(AmbiguousRunError) as amb:
        resolve_run("20261125T1200", root)
    assert a.name in str(amb.value) and b.name in str(amb.value)
    with pytest.raises(RunNotFoundError, match="No run 'zzz'"):
        resolve_run("zzz", root)
    with pytest.raises(RunNotFoundError, match="not inside a run directory"):
        resolve_run(str(tmp_path / "elsewhere"), root)
    with pytest.raises(RunNotFoundError):
        resolve_run(str(tmp_path / "missing" / "dir"), root)

    out = cli("--root", str(root), "show", "20261125T1200", cwd=tmp_path / "elsewhere")
    assert out.returncode == 2  # an ambiguous prefix is bad input
    assert "matches 2 runs" in out.stderr and a.name in out.stderr and b.name in out.stderr
    out = cli("--root", str(root), "show", "nope", cwd=tmp_path / "elsewhere")
    assert out.returncode == 2 and "No run 'nope'" in out.stderr


# -- show --------------------------------------------------------------------------------


def test_show(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = make_run(root, status="failed", config={"lr": 0.1, "optim": {"name": "adam"}},
                 error={"type": "ValueError", "message": "boom",
                        "traceback": "Traceback (most recent call last):\nValueError: boom\n"},
                 upstream={"data": {"id": "20261125T000000-111111", "stage": "prep",
                                    "status": "completed", "outputs_match": False}})  # fmt: skip
    out = cli("--root", str(root), "show", d.name[:18], cwd=tmp_path / "elsewhere")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for expected in ("config", "optim.name", "adam", "environment", "3.11.7", "error",
                     "ValueError: boom", "upstream", "OUTPUTS CHANGED", "2 installed"):  # fmt: skip
        assert expected in text, expected
    code, out_json, _ = run_main(capsys, "--root", str(root), "show", str(d), "--json")
    data = json.loads(out_json)
    assert code == 0 and data["id"] == d.name and data["effective_status"] == "failed"
    assert data["config"]["optim"] == {"name": "adam"}


# -- diff ----------------------------------------------------------------------------------


def test_diff_only_differing_sections(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run(root, config={"lr": 0.1, "bs": 32, "old": 1})
    b = make_run(root, config={"lr": 0.01, "bs": 32, "new": 2},
                 packages={"numpy": "2.1.0", "torch": "2.4.0", "scipy": "1.14"})  # fmt: skip
    code, out, _ = run_main(capsys, "--root", str(root), "diff", a.name, b.name, "--json")
    assert code == 0
    diff = json.loads(out)["differences"]
    assert set(diff) == {"config", "packages"}
    assert diff["config"] == {
        "changed": {"lr": [0.1, 0.01]},
        "added": {"new": 2},
        "removed": {"old": 1},
    }
    assert diff["packages"] == {
        "changed": {"numpy": ["2.0.0", "2.1.0"]},
        "added": {"scipy": "1.14"},
    }

    out = cli("--root", str(root), "diff", a.name, b.name, cwd=tmp_path / "elsewhere").stdout
    assert "config" in out and "packages" in out and "~ lr" in out and "0.1 -> 0.01" in out
    for absent in ("environment", "data", "upstream", "code", "bs"):
        assert absent not in out.split("\n", 1)[1], absent

    same = make_run(root, config={"lr": 0.1, "bs": 32, "old": 1})
    code, out, _ = run_main(capsys, "--root", str(root), "diff", a.name, same.name)
    assert code == 0 and "no differences" in out


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
           "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x", "GIT_CONFIG_NOSYSTEM": "1"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_diff_code_files_and_patch(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "train.py").write_text("lr = 0.1\n")
    (repo / "util.py").write_text("x = 1\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "one")
    one = _git(repo, "rev-parse", "HEAD")
    (repo / "train.py").write_text("lr = 0.01\n")
    (repo / "new.py").write_text("y = 2\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "two")
    two = _git(repo, "rev-parse", "HEAD")
    a = make_run(root, git={"root": str(repo), "head": one, "dirty": False,
                            "snapshot": {"commit": one, "ref": SNAP_REF}})  # fmt: skip
    b = make_run(root, git={"root": str(repo), "head": one, "dirty": True,
                            "snapshot": {"commit": two, "ref": SNAP_REF}})  # fmt: skip
    _, out, _ = run_main(capsys, "--root", str(root), "diff", a.name, b.name, "--json")
    code_diff = json.loads(out)["differences"]["code"]
    assert code_diff["files"] == {"added": ["new.py"], "modified": ["train.py"]}
    assert code_diff["changed"]["snapshot"] == [one, two]
    code, out, _ = run_main(capsys, "--root", str(root), "diff", a.name, b.name, "--patch")
    assert code == 0
    assert "M train.py" in out and "A new.py" in out and "+lr = 0.01" in out


# -- compare -----------------------------------------------------------------------------


def test_compare(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(root, config={"lr": 0.1, "bs": 32}, result={"acc": 0.9})
    b = make_run(root, config={"lr": 0.2, "bs": 32}, result={"acc": 0.8})
    code, out, _ = run_main(capsys, "--root", str(root), "compare", a.name, b.name)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["id", "stage", "status", "lr", "acc"]
    assert lines[1].split()[3:] == ["0.1", "0.9"] and lines[2].split()[3:] == ["0.2", "0.8"]
    _, out, _ = run_main(capsys, "--root", str(root), "compare", a.name, b.name, "--json")
    data = json.loads(out)
    assert data["varying_config"] == ["config.lr"] and data["results"] == ["result.acc"]


# -- rm ------------------------------------------------------------------------------------


def test_rm_refuses_without_tty_then_force_deletes(root: Path, tmp_path: Path) -> None:
    keep = make_run(root, status="completed")
    gone = make_run(root, status="failed")
    cwd = tmp_path / "elsewhere"
    out = cli("--root", str(root), "rm", "--status", "failed", cwd=cwd)
    assert out.returncode == 1
    assert "without confirmation" in out.stderr and "--force" in out.stderr
    assert gone.name in out.stdout  # lists what would go
    assert gone.exists() and keep.exists()

    out = cli("--root", str(root), "rm", "--status", "failed", "--force", cwd=cwd)
    assert out.returncode == 0, out.stderr
    assert not gone.exists() and keep.exists()
    assert ids(cli("--root", str(root), "ls", cwd=cwd).stdout) == [keep.name]


def test_rm_confirmation_on_a_terminal(root: Path, tmp_path: Path) -> None:
    d = make_run(root)
    for answer, survives in (("n\n", True), ("y\n", False)):
        master, slave = os.openpty()
        try:
            os.write(master, answer.encode())
            out = cli("--root", str(root), "rm", d.name, cwd=tmp_path / "elsewhere", stdin=slave)
        finally:
            os.close(slave)
            os.close(master)
        assert d.exists() == survives, out.stderr
        assert out.returncode == (1 if survives else 0)


def test_rm_refuses_outside_root(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = make_run(tmp_path / "other results")
    code, _, err = run_main(capsys, "--root", str(root), "rm", str(outside), "--force")
    assert code == 2 and "outside the results root" in err and outside.exists()
    # a real run directory reached through a linked folder is still outside: refused by id too
    (root / "team").symlink_to(tmp_path / "other results", target_is_directory=True)
    for ref in (outside.name, str(root / "team" / "train" / outside.name)):
        code, _, err = run_main(capsys, "--root", str(root), "rm", ref, "--force")
        assert code == 2 and "outside the results root" in err and outside.exists()
    # a link outside the root is not the root's to remove, wherever it points
    inside = make_run(root)
    stray = tmp_path / "stray link"
    stray.symlink_to(inside, target_is_directory=True)
    code, _, err = run_main(capsys, "--root", str(root), "rm", str(stray), "--force")
    assert code == 2 and "outside the results root" in err
    assert stray.is_symlink() and (inside / "run.lock").is_file()


def test_rm_of_a_symlinked_run_removes_only_the_link(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = make_run(tmp_path / "store 'q'")
    (root / "train").mkdir(parents=True)
    link = root / "train" / "pulled run"
    link.symlink_to(outside, target_is_directory=True)
    code, out, _ = run_main(capsys, "--root", str(root), "rm", str(link), "--dry-run")
    assert code == 0 and "only the link would go" in out and link.is_symlink()
    code, out, err = run_main(capsys, "--root", str(root), "rm", outside.name[:11], "--force")
    assert code == 0, err
    assert f"removed link {link} -> {outside} (the store copy is kept)" in out
    assert not link.is_symlink() and not link.exists()
    assert sorted(p.name for p in outside.iterdir()) == ["run.lock"]  # the target untouched
    assert runlock.runs(root=root).ids == []
    code, _, err = run_main(capsys, "--root", str(root), "show", outside.name)
    assert code != 0 and "No run" in err


def test_rm_selection_rules(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)
    live = make_run(root, status="running", pid=os.getpid(), hostname=socket.gethostname(),
                    heartbeat=now.isoformat())  # fmt: skip
    done = make_run(root)
    code, _, err = run_main(capsys, "--root", str(root), "rm", "--force")
    assert code == 2 and "refusing to delete every run" in err
    code, _, err = run_main(capsys, "--root", str(root), "rm", done.name, "--status", "failed")
    assert code == 2 and "not both" in err
    code, out, _ = run_main(capsys, "--root", str(root), "rm", "--stage", "train", "--dry-run")
    assert code == 0 and "dry run" in out and done.exists()
    code, _, err = run_main(capsys, "--root", str(root), "rm", "--stage", "train", "--force")
    assert code == 0 and "still running" in err
    assert live.exists() and not done.exists()


# -- lineage -------------------------------------------------------------------------------


def test_lineage_tree(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prep = make_run(root, "prep", git={"head": "c" * 40, "dirty": True})
    prep_lock = lock_of(prep)
    feats = make_run(root, "features", upstream={"raw": {
        "id": prep.name, "stage": "prep", "path": str(prep), "status": "completed",
        "outputs_match": True, "lock": prep_lock}})  # fmt: skip
    feats_lock = lock_of(feats)
    train = make_run(root, "train", upstream={
        "features": {"id": feats.name, "stage": "features", "path": str(feats),
                     "status": "completed", "outputs_match": False, "lock": feats_lock},
        "vocab": {"id": prep.name, "stage": "prep", "path": str(prep), "status": "completed",
                  "outputs_match": None},  # not embedded: looked up under the root
    })  # fmt: skip
    out = cli("--root", str(root), "lineage", train.name, cwd=tmp_path / "elsewhere")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"train {train.name} completed")
    features = [line for line in lines if line.startswith("├── features: features")]
    assert len(features) == 1 and "outputs changed" in features[0]
    assert any("raw: prep" in line and "cccccccc*" in line for line in lines)
    assert any(line.startswith("└── vocab: prep") for line in lines)
    _, out_json, _ = run_main(capsys, "--root", str(root), "lineage", train.name, "--json")
    tree = json.loads(out_json)
    assert tree["upstream"]["features"]["upstream"]["raw"]["id"] == prep.name
    assert tree["upstream"]["vocab"]["commit"] == "cccccccc*"


# -- with the real stage decorator -----------------------------------------------------------


STAGE_SCRIPT = textwrap.dedent(
    """
    import sys
    from dataclasses import dataclass
    import runlock

    @dataclass
    class Cfg:
        lr: float = 0.1
        epochs: int = 2

    @runlock.stage
    def train(cfg: Cfg) -> dict:
        if cfg.lr > 1:
            raise ValueError("lr too large")
        return {"acc": round(0.5 + cfg.lr, 3)}

    if __name__ == "__main__":
        for lr in map(float, sys.argv[1:]):
            try:
                train(Cfg(lr=lr))
            except ValueError:
                pass
    """
)


@pytest.fixture
def stage_runs(tmp_path: Path) -> Path:
    """Runs made by the real ``@runlock.stage`` in a subprocess: lr 0.1, 0.3 and a failing 5."""
    work = tmp_path / "project"
    work.mkdir()
    (work / "pipeline.py").write_text(STAGE_SCRIPT)
    results = tmp_path / "real results"
    env = {**os.environ, "PYTHONPATH": str(SRC), "RUNLOCK_RESULTS": str(results)}
    proc = subprocess.run([sys.executable, "pipeline.py", "0.1", "0.3", "5"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return results


def test_real_stage_runs_ls_show_diff(
    stage_runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = runlock.runs(root=stage_runs)
    assert len(listed) == 3 and {r.stage for r in listed} == {"train"}
    assert sorted(r.status for r in listed) == ["completed", "completed", "failed"]
    good = runlock.runs(root=stage_runs, status="completed", where=["acc>0.7"])
    assert [r.config["lr"] for r in good] == [0.3] and good[0].result == {"acc": 0.8}

    out = cli("--root", str(stage_runs), "ls", "--where", "lr=0.3", cwd=tmp_path)
    assert out.returncode == 0 and ids(out.stdout) == [good[0].id]

    failed = runlock.runs(root=stage_runs, status="failed")[0]
    _, text, _ = run_main(capsys, "--root", str(stage_runs), "show", failed.id)
    assert "lr too large" in text and "ValueError" in text

    a, b = sorted((r for r in listed if r.status == "completed"), key=lambda r: r.config["lr"])
    _, out_json, _ = run_main(capsys, "--root", str(stage_runs), "diff", a.id, b.id, "--json")
    diff = json.loads(out_json)["differences"]
    assert diff["config"] == {"changed": {"lr": [0.1, 0.3]}}
    assert "packages" not in diff and "environment" not in diff


def test_real_stage_runs_rm(stage_runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    failed = runlock.runs(root=stage_runs, status="failed")[0]
    code, _, _ = run_main(capsys, "--root", str(stage_runs), "rm", "--status", "failed", "--force")
    assert code == 0 and not failed.dir.exists()
    assert len(runlock.runs(root=stage_runs)) == 2


def test_ls_warm_filters_from_the_index(root: Path, tmp_path: Path) -> None:
    """The warm path gives the same answer (its speed: bench/listing.py, not a test)."""
    for i in range(300):
        make_run(root, config={"lr": (0.1, 0.01)[i % 2]}, result={"acc": i / 300})
    cli("--root", str(root), "ls", cwd=tmp_path)  # builds the index
    out = cli("--root", str(root), "ls", "-w", "lr=0.1", "-w", "acc>0.5", cwd=tmp_path)
    expected = sum(1 for i in range(300) if i % 2 == 0 and i / 300 > 0.5)
    assert out.returncode == 0 and len(ids(out.stdout)) == expected


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_rm_keeps_the_shared_snapshot_branch(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from runlock import git as git_mod

    for k, v in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
                 "GIT_COMMITTER_EMAIL": "t@x"}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "train.py").write_text("lr = 0.1\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "one")
    (repo / "train.py").write_text("lr = 0.2\n")
    section = git_mod.snapshot(repo, git_mod.SnapshotOptions(), message="run")
    ref = section["snapshot"]["ref"]
    a = make_run(root, git=section)
    b = make_run(root, git=section)
    assert _git(repo, "rev-parse", "--verify", "-q", ref)

    code, out, _ = run_main(capsys, "--root", str(root), "rm", a.name, "--force")
    assert code == 0 and "snapshot branch" not in out
    assert _git(repo, "rev-parse", "--verify", "-q", ref)  # b still uses it
    code, out, _ = run_main(capsys, "--root", str(root), "rm", b.name, "--force")
    # the branch stays with its last run here: runs of other results roots may need it
    # (their own refs: tests/test_snapshot_refs.py)
    assert code == 0 and "snapshot branch" not in out
    assert _git(repo, "rev-parse", "--verify", "-q", ref)
