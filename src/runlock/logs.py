"""Logging for a run: everything logged through ``logging`` goes to ``run.log`` and the console.

The console handler uses rich on a terminal and plain lines otherwise (logs, CI). Handlers are
added for the run and removed after it, so repeated runs in one kernel do not stack handlers.
"""

from __future__ import annotations

import logging
import os
import sys
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
    if use_rich():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
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
    try:
        yield
    finally:
        for h in added:
            root.removeHandler(h)
            h.close()
        root.setLevel(old_level)
