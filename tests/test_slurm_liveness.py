"""A run on another host (a compute node) whose heartbeat is stale is crashed only when SLURM no
longer holds its job: a suspended job is ``stopped``, a running one ``running`` (issue 11, item 7).

The SLURM tests use the real single-node cluster (fixtures in conftest_slurm). Its node is this
machine, where the pid check would judge the run by its process (state T when suspended) and
never ask SLURM; to exercise the compute-node path the tests rewrite the lock's ``hostname`` to a
node name that is not this host, as a lock written on a compute node and read on the login node
has. The job's heartbeat is set to an hour so the stage never rewrites that edit, and the
reader's ``RUNLOCK_HEARTBEAT_STALE_S=0`` makes every heartbeat stale.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import write_script
from locks import make_run

import runlock
from runlock.browse.slurm_state import job_key, status_for_state
from runlock.record.lockfile import dump_lock, load_lock

COMPUTE_NODE = "compute-node-17"  # not this host

HOLD = """
import time, runlock
from dataclasses import dataclass

@dataclass
class C:
    tag: str = "plain"
    s: float = 600

@runlock.stage(snapshot=False)
def hold(cfg: C):
    (runlock.current_run().dir / "started").touch()
    time.sleep(cfg.s)

if __name__ == "__main__":
    runlock.main(hold)
"""


def _wait_for(what: str, check: Callable[[], Any], timeout_s: float = 300) -> Any:
    end = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")
        time.sleep(0.2)


def _squeue_state(job: str) -> str:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%T", "-j", job], capture_output=True,
                         text=True, check=False)  # fmt: skip
    return out.stdout.strip()


def _statuses(results: Path) -> dict[str, str]:
    return {r.config["tag"]: r.status for r in runlock.runs("hold", root=results)}


def _ls_statuses(results: Path) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "runlock", "--root", str(results), "ls", "hold",
                          "--json"], capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return {row["config"]["tag"]: row["status"] for row in json.loads(out.stdout)}


def _move_to_compute_node(run_dir: Path) -> None:
    lock = load_lock(run_dir)
    lock["hostname"] = COMPUTE_NODE
    lock["environment"]["hostname"] = COMPUTE_NODE
    dump_lock(lock, run_dir / "run.lock")


@pytest.fixture
def jobs() -> Iterator[list[str]]:
    """SLURM job ids to cancel at the end, whatever happened."""
    submitted: list[str] = []
    yield submitted
    for job in submitted:
        subprocess.run(["scancel", job], capture_output=True, check=False)


@pytest.mark.slurm
def test_suspended_slurm_job_is_stopped_not_crashed(
    slurm_cluster: Any, tmp_path: Path, results: Path, jobs: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    script = write_script(tmp_path / "hold.py", HOLD)
    base = ["sbatch", "--parsable", "-o", str(tmp_path / "slurm-%j.out"),
            "--export=ALL,RUNLOCK_HEARTBEAT_S=3600"]  # fmt: skip
    if slurm_cluster.partition:
        base += ["-p", slurm_cluster.partition]
    for tag, extra in (("plain", []), ("array", ["--array=3"])):
        out = subprocess.run([*base, *extra, "--wrap", f"{sys.executable} {script} -q tag={tag}"],
                             cwd=tmp_path, capture_output=True, text=True, check=True)  # fmt: skip
        job = out.stdout.strip().split(";")[0]
        jobs.append(f"{job}_3" if tag == "array" else job)
    plain, array = jobs

    def started() -> dict[str, Path] | None:
        dirs = {r.config["tag"]: r.dir for r in runlock.runs("hold", root=results)
                if (r.dir / "started").exists()}  # fmt: skip
        return dirs if len(dirs) == 2 else None

    dirs = _wait_for("both runs to start in their SLURM jobs", started)
    recorded = {tag: load_lock(d)["environment"]["slurm"] for tag, d in dirs.items()}
    assert job_key(recorded["plain"]) == plain and job_key(recorded["array"]) == array

    for job in jobs:
        subprocess.run(["scontrol", "suspend", job], check=True, capture_output=True)
    for job in jobs:
        _wait_for(f"job {job} suspended", lambda job=job: _squeue_state(job) == "SUSPENDED")
    for d in dirs.values():  # the process is stopped: nothing rewrites the lock now
        _move_to_compute_node(d)
    monkeypatch.setenv("RUNLOCK_HEARTBEAT_STALE_S", "0")

    assert _statuses(results) == {"plain": "stopped", "array": "stopped"}
    assert _ls_statuses(results) == {"plain": "stopped", "array": "stopped"}
    assert runlock.runs("hold", status="crashed", root=results) == []
    rm = subprocess.run([sys.executable, "-m", "runlock", "rm", "--root", str(results), "--status",
                         "crashed", "--force"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert rm.returncode == 0, rm.stderr
    assert all((d / "run.lock").is_file() for d in dirs.values())  # the suspended runs stay

    subprocess.run(["scontrol", "resume", plain], check=True, capture_output=True)
    _wait_for(f"job {plain} running", lambda: _squeue_state(plain) == "RUNNING")
    assert _statuses(results) == {"plain": "running", "array": "stopped"}
    assert [r.status for r in runlock.runs("hold", status="running", root=results)] == ["running"]

    # killed outright (as by the OOM killer or a lost node): the lock stays "running", the job
    # leaves the queue; SIGTERM would let the stage record itself as interrupted instead
    subprocess.run(["scancel", "--full", "-s", "KILL", plain], check=True, capture_output=True)
    _wait_for("the killed run to read as crashed", lambda: _statuses(results)["plain"] == "crashed")
    assert load_lock(dirs["plain"])["status"] == "running"  # never finalised
    assert _statuses(results)["array"] == "stopped"
    assert _ls_statuses(results)["plain"] == "crashed"


# -- no SLURM cluster needed: what a listing spawns ------------------------------------------------

SPAWNS = """
import json, sys
spawned = []
def hook(event, args):
    if event in ("subprocess.Popen", "os.posix_spawn", "os.fork", "os.exec", "os.system"):
        spawned.append([event, repr(args)[:300]])
from runlock.cli import main
main(["--root", sys.argv[1], "ls", "--json"])  # cold: builds the index
sys.addaudithook(hook)
for status in ("all", "crashed"):  # warm
    args = ["--root", sys.argv[1], "ls", "--json"] + ([] if status == "all" else ["--status", status])
    main(args)
print(json.dumps(spawned), file=sys.stderr)
"""


def _listing_spawns(tmp_path: Path, results: Path, env: dict[str, str]) -> tuple[list[Any], list[Any]]:
    script = write_script(tmp_path / "spawns.py", SPAWNS)
    out = subprocess.run([sys.executable, str(script), str(results)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, **env})  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = json.JSONDecoder().raw_decode(out.stdout)[0]  # the first listing's
    return rows, json.loads(out.stderr.strip().splitlines()[-1])


def _slurm_env(job: str, **more: str) -> dict[str, Any]:
    return {"hostname": "build-host", "python_version": "3.11.7", "platform": "linux",
            "slurm": {"SLURM_JOB_ID": job, **more}}  # fmt: skip


def test_listing_without_stale_slurm_runs_spawns_nothing(tmp_path: Path, results: Path) -> None:
    make_run(results, "done")
    # running on a compute node with a fresh heartbeat: running, no question to SLURM
    fresh = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    make_run(results, "live", status="running", heartbeat=fresh, environment=_slurm_env("4242"))
    # stale, but not a SLURM run: crashed by its heartbeat alone
    make_run(results, "lost", status="running", heartbeat="2000-01-01T00:00:00+00:00")
    rows, spawned = _listing_spawns(tmp_path, results, {})
    assert spawned == []
    assert {r["stage"]: r["status"] for r in rows} == {"done": "completed", "live": "running",
                                                     "lost": "crashed"}  # fmt: skip


def test_stale_slurm_runs_ask_squeue_once_per_listing(tmp_path: Path, results: Path) -> None:
    """Jobs SLURM does not know (long gone): crashed, asked in one squeue call for all of them."""
    stale = "2000-01-01T00:00:00+00:00"
    for i, env in enumerate([_slurm_env("999990"),
                             _slurm_env("999991", SLURM_ARRAY_JOB_ID="999980", SLURM_ARRAY_TASK_ID="2")]):  # fmt: skip
        make_run(results, f"gone{i}", status="running", heartbeat=stale, environment=env)
    rows, spawned = _listing_spawns(tmp_path, results, {})
    assert {r["status"] for r in rows} == {"crashed"}
    popens = [argv for event, argv in spawned if event == "subprocess.Popen"]
    assert len(popens) == 2  # one per listing (ls, ls --status crashed)
    assert all("'squeue'" in a and "'999980_2,999990'" in a for a in popens)


def test_squeue_missing_keeps_the_heartbeat_verdict(tmp_path: Path, results: Path) -> None:
    make_run(results, "gone", status="running", heartbeat="2000-01-01T00:00:00+00:00",
             environment=_slurm_env("999990"))  # fmt: skip
    rows, _ = _listing_spawns(tmp_path, results, {"PATH": str(tmp_path / "empty")})
    assert [r["status"] for r in rows] == ["crashed"]


def test_job_keys_and_states() -> None:
    assert job_key({"SLURM_JOB_ID": "12"}) == "12"
    assert job_key({"SLURM_JOB_ID": "15", "SLURM_ARRAY_JOB_ID": "12", "SLURM_ARRAY_TASK_ID": "3"}) == "12_3"
    assert job_key({}) is None and job_key({"SLURM_JOB_ID": "12; rm -rf /"}) is None
    assert [status_for_state(s) for s in ("RUNNING", "COMPLETING", "CONFIGURING")] == ["running"] * 3
    assert [status_for_state(s) for s in ("SUSPENDED", "STOPPED")] == ["stopped"] * 2
    assert [status_for_state(s) for s in ("PENDING", "REQUEUED")] == ["running"] * 2
    assert [status_for_state(s) for s in (None, "CANCELLED", "FAILED", "TIMEOUT")] == ["crashed"] * 4
