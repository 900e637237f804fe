"""SLURM through submitit: one job-array element per chunk; jobs requeue themselves on timeout.

This is the one module that imports submitit. Options carry their unit in their name, like
submitit's own (``timeout_min``, ``mem_gb``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from runlock.errors import BackendError, MissingDependencyError
from runlock.scale.backends.base import DEADLINE_ENV, RequeueRequest

C = TypeVar("C")

__all__ = ["Requeueable", "SlurmBackend"]


class Requeueable:
    """Wraps a chunk function so submitit requeues it when the job times out or is preempted.

    submitit calls ``checkpoint`` (found by duck typing) from its SIGUSR2 handler; returning the
    same call again is enough because workers skip what the shared task store marks done. Before
    that, the wrapped function's ``on_checkpoint`` (if any) runs, e.g. to release task claims so
    the requeued job does not wait for their leases to expire.

    ``time_budget_s`` (seconds from the start of the call) becomes the worker deadline
    (``RUNLOCK_WORKER_DEADLINE``): a worker that would not finish its next task before it raises
    RequeueRequest, and this wrapper requeues at once instead of being interrupted mid-task.
    """

    def __init__(self, fn: Callable[[Any], Any], time_budget_s: float | None = None) -> None:
        self.fn = fn
        self.time_budget_s = time_budget_s

    def __call__(self, chunk: Any) -> Any:
        if self.time_budget_s is not None:
            os.environ[DEADLINE_ENV] = repr(time.time() + self.time_budget_s)
        try:
            return self.fn(chunk)
        except RequeueRequest:
            # Take submitit's own path (checkpoint, `scontrol requeue`, exit) by sending the
            # signal it listens to; its handler runs in this (main) thread during the sleep.
            from submitit import JobEnvironment

            usr_sig = getattr(JobEnvironment, "_usr_sig", lambda: signal.SIGUSR2)()
            if not callable(signal.getsignal(usr_sig)):
                raise  # not under submitit: the default action would just kill the process
            os.kill(os.getpid(), usr_sig)
            time.sleep(120)
            raise BackendError("the requeue signal was not handled: is this a submitit job?") from None

    def checkpoint(self, chunk: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        hook = getattr(self.fn, "on_checkpoint", None)
        if hook is not None:
            hook()
        return DelayedSubmission(self, chunk)


class SlurmBackend:
    """Submits chunks as a SLURM job array and waits for them.

    ``folder`` receives submitit's pickles and logs and must be on a filesystem the compute
    nodes see. ``max_num_timeout`` bounds how often a job may requeue after hitting its time
    limit; SLURM signals a job ``signal_delay_s`` before its limit and workers stop starting new
    tasks ``stop_margin_s`` before that. ``on_submit`` receives the submitit jobs (e.g. to print their ids or cancel them).
    """

    name = "slurm"

    def __init__(
        self,
        *,
        folder: str | Path,
        timeout_min: int = 60,
        partition: str | None = None,
        cpus_per_task: int = 1,
        gpus_per_node: int | None = None,
        mem_gb: float | None = None,
        array_parallelism: int = 256,
        max_num_timeout: int = 3,
        signal_delay_s: int = 90,
        stop_margin_s: float = 10.0,
        job_name: str = "runlock",
        additional_parameters: dict[str, Any] | None = None,
        on_submit: Callable[[list[Any]], None] | None = None,
        **_ignored: Any,
    ) -> None:
        try:
            import submitit
        except ImportError as exc:
            raise MissingDependencyError("submitit", "slurm") from exc
        if shutil.which("sbatch") is None:
            raise BackendError(
                "SLURM is not available on this machine: no `sbatch` on PATH",
                hint="run on a SLURM login node, or use backend='joblib' locally",
            )
        self.folder = Path(folder)
        # max_num_timeout is an executor constructor argument, not an update_parameters one;
        # the workers run the submitting interpreter so they see the same packages.
        self.executor = submitit.AutoExecutor(
            folder=self.folder,
            cluster="slurm",
            slurm_max_num_timeout=max_num_timeout,
            slurm_python=shlex.quote(sys.executable),
        )
        params: dict[str, Any] = {
            "timeout_min": timeout_min,
            "cpus_per_task": cpus_per_task,
            "name": job_name,
            "slurm_array_parallelism": array_parallelism,
            "slurm_signal_delay_s": signal_delay_s,
        }
        if partition is not None:
            params["slurm_partition"] = partition
        if gpus_per_node is not None:
            params["gpus_per_node"] = gpus_per_node
        if mem_gb is not None:
            params["mem_gb"] = mem_gb
        if additional_parameters:
            params["slurm_additional_parameters"] = additional_parameters
        self.executor.update_parameters(**params)
        self.on_submit = on_submit
        self.time_budget_s = max(0.0, timeout_min * 60 - signal_delay_s - stop_margin_s)
        self.jobs: list[Any] = []

    def run(self, fn: Callable[[C], Any], chunks: Sequence[C]) -> list[Any]:
        from submitit.core.utils import FailedJobError, UncompletedJobError

        if not chunks:
            return []
        self.jobs = list(self.executor.map_array(Requeueable(fn, self.time_budget_s), list(chunks)))
        if self.on_submit is not None:
            self.on_submit(self.jobs)
        out: list[Any] = []
        for job in self.jobs:
            try:
                out.append(job.result())
            except (FailedJobError, UncompletedJobError) as exc:
                # The store tells which tasks got done; a dead job is reported, not raised.
                out.append(BackendError(f"SLURM job {job.job_id} did not complete: {exc}"))
        return out
