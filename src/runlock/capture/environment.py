"""Capture of the machine and process a run executes on (the lock's ``environment`` section)."""

from __future__ import annotations

import os
import sys
from typing import Any

from ..redact import redact_argv, redact_env

#: Environment variables worth recording (values are still redacted if they hold URLs with
#: credentials). Secrets are never on this list; anything named like a credential is masked.
ENV_ALLOWLIST = (
    "CUDA_VISIBLE_DEVICES",
    "CUDA_HOME",
    "NVIDIA_VISIBLE_DEVICES",
    "VIRTUAL_ENV",
    "CONDA_DEFAULT_ENV",
    "CONDA_PREFIX",
    "PYENV_VIRTUAL_ENV",
    "PYTHONPATH",
    "PYTHONHASHSEED",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "CUBLAS_WORKSPACE_CONFIG",
    "TF_DETERMINISTIC_OPS",
    "MLFLOW_TRACKING_URI",
    "LANG",
    "TZ",
)
ENV_PREFIXES = ("RUNLOCK_",)


def _memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def hostname() -> str:
    """This machine's name, as ``socket.gethostname()`` gives it (on POSIX both read the kernel's
    node name; ``os.uname`` saves importing socket, ~4 ms of every fresh run)."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket  # pragma: no cover - Windows

    return socket.gethostname()


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/<pid>/stat`` (state first), or None (no such process, not Linux).
    The command name (field 2) may hold spaces and parentheses: split after its last ``)``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].decode("ascii", "replace").split()


_BOOT_ID: list[str] = []


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, as ``"<clock ticks since boot>@<boot id>"`` (Linux), or None.

    With the pid it names one process for good: a pid reused after a crash (or after a reboot)
    has another start, so a reader never takes a stranger for the run. Exact ticks and the boot
    id, not an epoch time: ``btime`` of /proc/stat moves by a second with clock adjustments.
    """
    fields = _proc_stat(pid)
    if fields is None or len(fields) < 20:
        return None
    if not _BOOT_ID:
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                _BOOT_ID.append(f.read().strip())
        except OSError:
            _BOOT_ID.append("")
    return f"{fields[19]}@{_BOOT_ID[0]}"


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (``R``, ``S``, ``T`` stopped, ``Z``...), or None."""
    fields = _proc_stat(pid)
    return fields[0] if fields else None


def _user() -> str | None:
    # what getpass.getuser() does, without importing it
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        if value := os.environ.get(name):
            return value
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except Exception:  # noqa: BLE001 - no passwd entry in some containers; not POSIX
        return None


def _which(program: str) -> str | None:
    """``shutil.which`` for a plain program name (shutil and subprocess are imported only when
    the program exists: every run looks for nvidia-smi, few machines have it)."""
    for d in os.get_exec_path():
        path = os.path.join(d, program)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def gpus() -> list[dict[str, str]]:
    """GPUs reported by ``nvidia-smi`` (empty when it is absent or fails)."""
    exe = _which("nvidia-smi")
    if exe is None:
        return []
    from .. import _subprocess

    fields = "index,name,uuid,memory.total,driver_version"
    try:
        out = _subprocess.run(
            [exe, f"--query-gpu={fields}", "--format=csv,noheader,nounits"], timeout=10
        )
    except Exception:  # noqa: BLE001 - a broken driver must not fail a run
        return []
    if not out.ok:
        return []
    keys = fields.split(",")
    rows = []
    for line in out.stdout.strip().splitlines():
        vals = [v.strip() for v in line.split(",")]
        if len(vals) == len(keys):
            rows.append(dict(zip(keys, vals, strict=True)))
    return rows


def slurm_job() -> dict[str, str]:
    """SLURM job variables when running inside a job."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("SLURM_")}


def recorded_env() -> dict[str, str]:
    chosen = {
        k: v
        for k, v in os.environ.items()
        if k in ENV_ALLOWLIST or k.startswith(ENV_PREFIXES)
    }
    return dict(sorted(redact_env(chosen).items()))


def capture_environment() -> dict[str, Any]:
    """Everything about the process and machine that can change a run's outcome."""
    if hasattr(os, "uname"):  # what platform.uname() reads, without importing platform
        u = os.uname()
        system, release, machine = u.sysname, u.release, u.machine
    else:  # pragma: no cover - Windows
        import platform

        system, release, machine = platform.system(), platform.release(), platform.machine()
    return {
        # secret-looking options, URL and rclone remote credentials hidden
        "argv": redact_argv(sys.argv),
        "orig_argv": redact_argv(getattr(sys, "orig_argv", sys.argv)),
        "platform": sys.platform,
        "platform_info": f"{system}-{release}-{machine}",
        "python_version": sys.version,
        "python_implementation": sys.implementation.name,
        "python_executable": sys.executable,
        "python_path": list(sys.path),
        "cwd": os.getcwd(),
        "hostname": hostname(),
        "user": _user(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "gpus": gpus(),
        "slurm": slurm_job(),
        "env": recorded_env(),
    }
