"""Logging for a run: everything logged through ``logging`` goes to ``run.log`` and the console.

The console handler uses rich on a terminal and plain lines otherwise (logs, CI). Handlers are
added for the run and removed after it, so repeated runs in one kernel do not stack handlers.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOGGER_NAME = "runlock"
logger = logging.getLogger(LOGGER_NAME)
FILE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def verbosity_level(verbose: int = 0, quiet: int = 0) -> int:
    """-v / -q counts as a logging level (default INFO)."""
    return max(logging.DEBUG, min(logging.CRITICAL, logging.INFO + 10 * (quiet - verbose)))


def use_rich(stream: object = None) -> bool:
    """Rich output (log lines, progress bars) only on an interactive terminal, never in CI or
    when piped. The one place that decides it, so every bar behaves the same."""
    stream = stream or sys.stderr
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())  # type: ignore[union-attr]
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def transfer_bar(description: str = "{task.description}") -> Any:
    """A rich progress bar for bytes moving (hashing, push/pull) on stderr, gone when done.

    The caller decides whether to show one (:func:`use_rich`); rich is imported only then.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(TextColumn(description), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=True)


def _console_handler(level: int) -> logging.Handler:
    # the real stream, not the tee: run.log has the record already (from the file handler)
    stderr = _real(sys.stderr)
    if use_rich(stderr):
        from rich.console import Console
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, rich_tracebacks=False,
                                               console=Console(file=stderr))
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    return handler


def _has_console_handler(root: logging.Logger) -> bool:
    return any(
        isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
        for h in root.handlers
    )


@contextmanager
def run_logging(log_file: Path, *, level: int = logging.INFO, console: bool = True) -> Iterator[None]:
    """Send log records to ``log_file`` (always, from DEBUG up to ``level``) and the console."""
    root = logging.getLogger()
    file_handler = logging.FileHandler(log_file, encoding="utf-8", delay=False)
    file_handler.setFormatter(logging.Formatter(FILE_FORMAT))
    file_handler.setLevel(min(level, logging.INFO))
    added: list[logging.Handler] = [file_handler]
    if console and not _has_console_handler(root):
        added.append(_console_handler(level))
    old_level = root.level
    for h in added:
        root.addHandler(h)
    if root.level == logging.NOTSET or root.level > min(level, logging.INFO):
        root.setLevel(min(level, logging.INFO))
    sink = _LogSink(file_handler)
    _tee_add(sink)
    try:
        yield
    finally:
        _tee_remove(sink)
        for h in added:
            root.removeHandler(h)
            h.close()
        root.setLevel(old_level)


# -- stdout/stderr into run.log ------------------------------------------------------------------
#
# While a run is active, sys.stdout and sys.stderr are wrapped (never replaced by a stream of
# another kind): every write goes unchanged to the stream that was there (a terminal, a pipe,
# ipykernel's OutStream) and is also appended to the run.log of every active run. The tee is
# process-wide, like the logging handlers on the root logger: prints of any thread while a run is
# active land in its run.log (a nested or concurrent run: in each active run's log, once). It is
# installed by the first active run and the original streams are put back, as they were, when the
# last one ends (also on failure). sys.stdin is never touched (pdb), isatty()/fileno()/encoding
# are the wrapped stream's (tqdm, rich, input() with readline). Carriage-return progress lines
# (tqdm) reach the console as written; run.log keeps each line's last state. Output written to
# the file descriptors directly (a subprocess, C code) is not captured.


class _LogSink:
    """One run's run.log, written through its logging FileHandler (one file, one order)."""

    __slots__ = ("handler", "pending")

    def __init__(self, handler: logging.FileHandler) -> None:
        self.handler = handler
        self.pending = ""  # a line not ended yet

    def write(self, text: str) -> None:
        text = self.pending + text
        if "\n" not in text:
            self.pending = text[text.rfind("\r", 0, len(text) - 1) + 1:] if "\r" in text else text
            return
        *lines, self.pending = text.split("\n")
        self._emit("".join(_last_state(line) + "\n" for line in lines))

    def close(self) -> None:
        if self.pending:
            self._emit(_last_state(self.pending) + "\n")
            self.pending = ""

    def _emit(self, text: str) -> None:
        h = self.handler
        h.acquire()
        try:
            if h.stream is not None:
                h.stream.write(text)
                h.stream.flush()
        except (OSError, ValueError):  # a full disk or a closed file never breaks a print
            pass
        finally:
            h.release()


def _last_state(line: str) -> str:
    """What a terminal shows of a line redrawn with carriage returns (a progress bar)."""
    if "\r" not in line:
        return line
    line = line.rstrip("\r")
    return line[line.rfind("\r") + 1:]


class _Tee:
    """``sys.stdout``/``sys.stderr`` during a run: the wrapped stream, plus a copy to run.log."""

    def __init__(self, stream: Any) -> None:
        self._runlock_stream = stream

    def write(self, text: str) -> int:
        n: int = self._runlock_stream.write(text)
        if _SINKS and isinstance(text, str):
            with _TEE_LOCK:
                for sink in _SINKS:
                    sink.write(text)
        return n

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._runlock_stream.flush()

    def isatty(self) -> bool:
        return bool(self._runlock_stream.isatty())

    def fileno(self) -> int:
        return int(self._runlock_stream.fileno())

    def __getattr__(self, name: str) -> Any:  # encoding, buffer, OutStream's own methods ...
        return getattr(self._runlock_stream, name)


def _real(stream: Any) -> Any:
    """The stream under the tee (the stream itself when not teed)."""
    return stream._runlock_stream if isinstance(stream, _Tee) else stream


_TEE_LOCK = threading.RLock()
_SINKS: list[_LogSink] = []
_SAVED: list[tuple[Any, Any, _Tee, _Tee]] = []  # (stdout, stderr, their tees) while installed


def _tee_add(sink: _LogSink) -> None:
    with _TEE_LOCK:
        if not _SAVED:
            out, err = sys.stdout, sys.stderr
            tees = (_Tee(out), _Tee(err))
            _SAVED.append((out, err, *tees))
            sys.stdout, sys.stderr = tees
        _SINKS.append(sink)


def _tee_remove(sink: _LogSink) -> None:
    with _TEE_LOCK:
        if sink in _SINKS:
            _SINKS.remove(sink)
        sink.close()
        if _SINKS or not _SAVED:
            return
        out, err, tee_out, tee_err = _SAVED.pop()
        # put back what was there, unless someone replaced the tee meanwhile (then the tee,
        # with no run active, only passes writes through)
        if sys.stdout is tee_out:
            sys.stdout = out
        if sys.stderr is tee_err:
            sys.stderr = err
