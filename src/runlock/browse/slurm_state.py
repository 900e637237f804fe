"""Whether SLURM still holds a run that beats no heart: one ``squeue`` call per listing.

A ``running`` lock of another host whose heartbeat is stale is crashed unless SLURM says its job
is alive: a suspended job (``scontrol suspend``: its process is stopped, its heart too) or one on a
busy node must not read as crashed, nor be removed by ``rm --status crashed``. Only such runs,
with a job id in their lock's ``environment.slurm``, pay for this; a listing without them never
spawns a program.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from typing import Any

#: SLURM job state (``squeue %T``) -> the run's status; a state not listed (or a job squeue no
#: longer shows: finished, cancelled, failed, purged) means the run's process is gone.
STATUS_BY_STATE = {
    "RUNNING": "running", "COMPLETING": "running", "CONFIGURING": "running",
    "SUSPENDED": "stopped", "STOPPED": "stopped",
    "PENDING": "running", "REQUEUED": "running", "REQUEUE_HOLD": "running",  # requeued: comes back
    "REQUEUE_FED": "running", "RESIZING": "running", "SIGNALING": "running",
    "STAGE_OUT": "running",
}  # fmt: skip
#: Seconds ``squeue`` may take before the listing gives up asking (and keeps ``crashed``).
SQUEUE_TIMEOUT_S = 15.0


def status_for_state(state: str | None) -> str:
    """The status of a run whose job SLURM shows in ``state`` (None: not shown, so crashed)."""
    return STATUS_BY_STATE.get((state or "").upper(), "crashed")


def job_key(slurm_env: Mapping[str, Any]) -> str | None:
    """The id squeue shows for the job of these ``SLURM_*`` variables: ``<array job>_<task>``
    for an array element, ``SLURM_JOB_ID`` otherwise; None outside SLURM."""
    array, task = slurm_env.get("SLURM_ARRAY_JOB_ID"), slurm_env.get("SLURM_ARRAY_TASK_ID")
    if array and task is not None and str(task) != "":
        key = f"{array}_{task}"
    else:
        job = slurm_env.get("SLURM_JOB_ID") or slurm_env.get("SLURM_JOBID")
        key = str(job) if job else ""
    return key if key and all(c.isdigit() or c == "_" for c in key) else None


def recorded_job(lock_file: str | os.PathLike[str]) -> str | None:
    """The SLURM job (:func:`job_key`) a lock file's run ran in; None outside SLURM or unreadable."""
    from ..errors import LockFileError
    from ..record.lockfile import load_lock_sections

    try:
        with open(lock_file, "rb") as f:
            data = load_lock_sections(f.read(), ("environment",), source=str(lock_file))
    except (OSError, LockFileError):
        return None
    env = data.get("environment")
    slurm = env.get("slurm") if isinstance(env, dict) else None
    return job_key(slurm) if isinstance(slurm, dict) else None


def job_states(jobs: Iterable[str]) -> dict[str, str] | None:
    """``{job: state}`` of these jobs as squeue shows them, in one call; a job absent from the
    answer has ended (or was never known). None when SLURM cannot be asked (no squeue, no
    controller, too slow): the caller then keeps what the heartbeat says."""
    from .._subprocess import CommandNotFound, run

    wanted = sorted(set(jobs))
    if not wanted:
        return {}
    # -r: one line per array element (pending ones are otherwise folded into "123_[4-7]")
    argv = ["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(wanted)]
    try:
        out = run(argv, timeout=SQUEUE_TIMEOUT_S)
    except (CommandNotFound, subprocess.TimeoutExpired, OSError):
        return None
    if not out.ok:
        # a single id the controller has forgotten is an error; several are just not shown
        return {} if "Invalid job id" in out.stderr else None
    states: dict[str, str] = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states
