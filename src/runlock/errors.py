"""One exception hierarchy for runlock.

Every error says what happened and what to do. Each subclass also inherits the builtin it
replaces (like OmegaConf's ``ConfigKeyError(..., KeyError)``) so callers catching builtins keep
working, and carries the exit code the CLI maps it to.
"""

from __future__ import annotations

import sys
from typing import IO


class RunlockError(Exception):
    """Base class of every error runlock raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")

    def show(self, file: IO[str] | None = None, *, prog: str = "runlock") -> None:
        """Print the error the way every command line reports it (like click's
        ``ClickException.show``): ``<prog>: error: <message>``, then ``  hint: ...`` if any.

        The one renderer of errors at the CLI edge; the caller then exits with
        :attr:`exit_code` (2 bad input, 1 failure).
        """
        print(f"{prog}: error: {self}", file=sys.stderr if file is None else file)


class UsageError(RunlockError, ValueError):
    """Bad command-line or call arguments (exit code 2, like argparse)."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration value, key, file or experiment is invalid."""


class ConfigKeyError(ConfigError, KeyError):
    """A key that the config schema does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return Exception.__str__(self)


class ConfigTypeError(ConfigError, TypeError):
    """A value whose type does not match the config schema."""


class RunDirError(RunlockError, OSError):
    """The run directory cannot be created or written (bad input: exit code 2)."""

    exit_code = 2


class RunDirLostError(RunlockError, OSError):
    """A run's directory or lock vanished (deleted while it ran) or could not be written (a full
    disk): the run is recorded ``failed`` where its lock can still be written (exit code 1)."""


class UnsafeNameError(UsageError):
    """A run id, stage or experiment name (from a lock, a store, an index or the user) that
    could leave its directory, be interpolated or break a line: refused before anything is
    touched (exit code 2)."""


class UnsafePathError(UsageError):
    """A path built from a lock, a store, an index entry or the user that would resolve outside
    its root (the results root, the store prefix, the snapshot worktree): refused (exit code 2)."""


class LockFileError(RunlockError, ValueError):
    """A run.lock that cannot be read (corrupt, truncated, too large, YAML aliases, unknown
    schema version): bad input, exit code 2."""

    exit_code = 2


class RunNotFoundError(RunlockError, LookupError):
    """No run matches the given id, prefix or path: the user's input (exit code 2, for show,
    diff, compare, rm, lineage, pull... alike)."""

    exit_code = 2


class AmbiguousRunError(RunlockError, LookupError):
    """A run id prefix that matches several runs: the user's input (exit code 2)."""

    exit_code = 2


class GitError(RunlockError, RuntimeError):
    """A git command failed or the repository is in a state runlock cannot snapshot."""


class DataError(RunlockError, OSError):
    """A data input that is missing, unreadable or changed while hashed."""


class LineageError(RunlockError, LookupError):
    """An upstream run that is missing or broken."""


class BackendError(RunlockError, RuntimeError):
    """An execution backend that is unavailable or failed."""


class TaskError(UsageError):
    """A task file or task spec that cannot be used (bad input: exit code 2)."""


class RemoteError(RunlockError, RuntimeError):
    """Remote storage (rclone) or a code remote that failed."""


class MissingDependencyError(RunlockError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed.",
            hint=f"pip install 'runlock[{extra}]'",
        )


def require(module: str, extra: str) -> object:
    """Import an optional dependency or raise a MissingDependencyError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised via subprocess tests
        raise MissingDependencyError(module, extra) from exc
