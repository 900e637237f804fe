"""The run directory: unique atomic creation, well-known file names, atomic writes.

This module knows nothing of git, MLflow or OmegaConf: it maps names to paths and writes files
so that a reader never sees half of one.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import NamedTuple

from ..errors import RunDirError

LOCK_NAME = "run.lock"
CONFIG_NAME = "config.yaml"
LOG_NAME = "run.log"
RESULT_JSON = "result.json"
RESULT_PKL = "result.pkl"
METRICS_NAME = "metrics.jsonl"
#: Files runlock itself writes into a run directory (not outputs of the stage).
BOOKKEEPING = frozenset({LOCK_NAME, CONFIG_NAME, LOG_NAME, RESULT_JSON, RESULT_PKL, METRICS_NAME})
#: Sub-directory for runlock's own state inside a run (task state, etc.).
STATE_DIR = ".runlock"


def atomic_write(path: Path, data: bytes | str, *, durable: bool = True, create_parents: bool = True) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename.

    A reader sees the old content or the new, never a mix; a killed process leaves at most a
    stray ``.tmp`` file, never a truncated target. ``durable=False`` skips the fsync (still
    atomic for readers; only a power loss could lose it): for files rewritten soon anyway.
    ``create_parents=False``: a missing directory is an error (FileNotFoundError), not created
    again (a live run's lock must not resurrect a run directory someone deleted).
    """
    import tempfile  # here, not at the top: ``runlock ls`` (which imports this module) never writes

    raw = data.encode() if isinstance(data, str) else data
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except FileNotFoundError:  # create the directory only when missing (one syscall per write saved)
        if not create_parents:
            raise
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600: give the file the mode open() would (others on a shared
        # results directory can read run.lock, config.yaml, result.json)
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


_FILE_MODE: list[int] = []


def _file_mode() -> int:
    """``0o666 & ~umask``: the mode ``open()`` gives a new file. The umask is read once per
    process (reading it means setting it; the brief window is at the first write only)."""
    if not _FILE_MODE:
        umask = os.umask(0o022)
        os.umask(umask)
        _FILE_MODE.append(0o666 & ~umask)
    return _FILE_MODE[0]


_NEXT_SUFFIX: dict[Path, int] = {}


def create_unique_dir(base: Path, *, max_tries: int = 10_000) -> Path:
    """Create ``base`` or, if it exists, ``base-1``, ``base-2``, ... and return the one created.

    ``mkdir`` is atomic, so concurrent processes asking for the same name each get their own
    directory (footsteps' numbering, without its race).
    """
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(
            f"Cannot create the results directory {base.parent}: {exc.strerror}.",
            hint="Choose a writable location (save_dir= / --root) or fix its permissions.",
        ) from exc
    first = _NEXT_SUFFIX.get(base, 0)  # runs started in the same second: skip known-taken names
    for i in range(first, first + max_tries):
        candidate = base if i == 0 else base.with_name(f"{base.name}-{i}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                continue
            raise RunDirError(
                f"Cannot create the run directory {candidate}: {exc.strerror}.",
                hint="Choose a writable location (save_dir= / --root) or fix its permissions.",
            ) from exc
        if len(_NEXT_SUFFIX) > 256:
            _NEXT_SUFFIX.clear()
        _NEXT_SUFFIX[base] = i + 1
        return candidate
    raise RunDirError(f"Could not find a free run directory name next to {base}.")


class RunDir(NamedTuple):
    """Paths of one run directory."""

    path: Path

    @property
    def lock(self) -> Path:
        return self.path / LOCK_NAME

    @property
    def config(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def log(self) -> Path:
        return self.path / LOG_NAME

    @property
    def result_json(self) -> Path:
        return self.path / RESULT_JSON

    @property
    def result_pkl(self) -> Path:
        return self.path / RESULT_PKL

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_NAME

    @property
    def state(self) -> Path:
        return self.path / STATE_DIR

    def write(self, name: str, data: bytes | str, *, durable: bool = True) -> Path:
        target = self.path / name
        atomic_write(target, data, durable=durable)
        return target

    @classmethod
    def create(cls, base: Path) -> RunDir:
        return cls(create_unique_dir(base))
