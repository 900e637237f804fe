"""The one function through which runlock runs external programs (git, rclone, nvidia-smi...).

Keeping every subprocess call in one place gives one spot for timeouts, environment scrubbing
and error messages.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Completed:
    """Result of a finished command."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class CommandNotFound(FileNotFoundError):
    """The program is not installed (not on PATH)."""


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float | None = None,
    text: bool = True,
) -> Completed:
    """Run a command to completion and capture its output; never raises on a non-zero exit.

    ``extra_env`` is added on top of the current environment (or ``env`` when given).
    Raises :class:`CommandNotFound` when the program does not exist.
    """
    argv = tuple(os.fspath(a) for a in args)
    full_env: dict[str, str] | None = None
    if env is not None or extra_env:
        full_env = dict(os.environ if env is None else env)
        if extra_env:
            full_env.update(extra_env)
    try:
        proc = subprocess.run(
            argv,
            cwd=Path(cwd) if cwd is not None else None,
            env=full_env,
            input=input,
            capture_output=True,
            text=text,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        if cwd is not None and not Path(cwd).is_dir():
            raise
        raise CommandNotFound(f"{argv[0]}: command not found") from exc
    return Completed(argv, proc.returncode, proc.stdout or "", proc.stderr or "")
