"""The one function through which runlock runs external programs (git, rclone, nvidia-smi...).

Keeping every subprocess call in one place gives one spot for timeouts, environment scrubbing
and error messages.
"""

from __future__ import annotations

import os
import subprocess
import threading
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


def _full_env(env: Mapping[str, str] | None, extra_env: Mapping[str, str] | None
              ) -> dict[str, str] | None:
    if env is None and not extra_env:
        return None  # inherit
    full_env = dict(os.environ if env is None else env)
    if extra_env:
        full_env.update(extra_env)
    return full_env


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
    try:
        proc = subprocess.run(
            argv,
            cwd=Path(cwd) if cwd is not None else None,
            env=_full_env(env, extra_env),
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


class Started:
    """A command started ahead of its input: its start-up (exec, reading its own state) overlaps
    with the work that produces that input. :meth:`finish` feeds stdin and waits;
    :meth:`send` feeds it without waiting, so the caller can start other work meanwhile."""

    def __init__(self, argv: tuple[str, ...], proc: subprocess.Popen[bytes]) -> None:
        self.argv, self._proc = argv, proc
        self._io: threading.Thread | None = None
        self._outcome: tuple[bytes, bytes] | BaseException = (b"", b"")
        self._done = False

    def send(self, input: str | bytes = b"") -> None:
        """Feed stdin (then closed) and return; :meth:`finish` collects the result. A thread
        does the I/O: writing a large input while the command fills its output pipe would
        otherwise block both sides."""
        data = input.encode() if isinstance(input, str) else input
        self._io = threading.Thread(target=self._communicate, args=(data,), daemon=True)
        self._io.start()

    def _communicate(self, data: bytes) -> None:
        try:
            self._outcome = self._proc.communicate(data)
        except BaseException as exc:  # handed to the thread that calls finish()
            self._outcome = exc

    def finish(self, input: str | bytes = b"", timeout: float | None = None) -> Completed:
        """Feed ``input`` (unless :meth:`send` did) and wait for the command to exit."""
        if self._io is None:
            data = input.encode() if isinstance(input, str) else input
            try:
                self._outcome = self._proc.communicate(data, timeout=timeout)
            except subprocess.TimeoutExpired:
                self.cancel()
                raise
        else:
            self._io.join()
        self._done = True
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        out, err = self._outcome
        return Completed(self.argv, self._proc.returncode, out.decode("utf-8", "replace"),
                         err.decode("utf-8", "replace"))

    def cancel(self) -> None:
        """Stop the command unfed (nothing to do once finished). SIGTERM, not SIGKILL: git
        removes its lock files on it."""
        if self._done:
            return
        self._done = True
        if self._proc.poll() is None:
            self._proc.terminate()
        if self._io is None:
            self._proc.communicate()
        else:
            self._io.join()


def start(
    args: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Started:
    """Start a command that waits for its stdin (see :class:`Started`).

    Raises :class:`CommandNotFound` when the program does not exist.
    """
    argv = tuple(os.fspath(a) for a in args)
    try:
        proc = subprocess.Popen(argv, cwd=Path(cwd) if cwd is not None else None,
                                env=_full_env(env, extra_env), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError as exc:
        if cwd is not None and not Path(cwd).is_dir():
            raise
        raise CommandNotFound(f"{argv[0]}: command not found") from exc
    return Started(argv, proc)
