"""Project settings: where results live and the per-project options in ``pyproject.toml``.

Resolution order for the results root: an explicit argument, ``$RUNLOCK_RESULTS``, the
``results`` key of ``[tool.runlock]`` in the nearest ``pyproject.toml`` (relative to that
file), else ``results/`` next to that ``pyproject.toml`` (the project's root), else
``./results``. Every part of runlock (stages, ls, push...) uses this one function so that they
agree on where runs are; a stage script looks from its own file (:func:`script_results_root`),
so ``cd src && python ../train.py`` writes where ``python train.py`` does.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

DEFAULT_RESULTS = "results"


class ProjectSettings(NamedTuple):
    """The ``[tool.runlock]`` table of the project (all keys optional)."""

    project_root: Path | None
    results_root: Path
    table: dict[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.table.get(key, default)


def find_pyproject(start: Path) -> Path | None:
    for d in (start, *start.parents):
        candidate = d / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    """The parsed file; ``{}`` when unreadable, broken, or not mentioning runlock at all (most
    projects' pyproject.toml: not parsed, which keeps tomllib out of every ``runlock ls``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    if "runlock" not in text:
        return {}
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return {}


@lru_cache(maxsize=32)
def _load(start: Path, env_results: str | None) -> ProjectSettings:
    pyproject = find_pyproject(start)
    table: dict[str, Any] = {}
    project_root: Path | None = None
    if pyproject is not None:
        data = _read_toml(pyproject)
        table = dict(data.get("tool", {}).get("runlock", {}) or {})
        project_root = pyproject.parent  # the project is the directory of its pyproject.toml
    if env_results:
        root = Path(env_results).expanduser()
    elif project_root is not None:
        root = project_root / str(table.get("results", DEFAULT_RESULTS))
    else:
        root = start / DEFAULT_RESULTS
    return ProjectSettings(project_root, root.absolute(), table)


def project_settings(start: Path | None = None) -> ProjectSettings:
    """Settings for the project containing ``start`` (default: the current directory)."""
    return _load(Path(start or os.getcwd()).absolute(), os.environ.get("RUNLOCK_RESULTS"))


def results_root(override: str | os.PathLike[str] | None = None, start: Path | None = None) -> Path:
    """The results root: ``override`` when given, else the project's (see module doc)."""
    if override is not None:
        return Path(override).expanduser().absolute()
    return project_settings(start).results_root


def script_results_root(script: str | os.PathLike[str]) -> Path | None:
    """The results root of the project holding ``script`` (the ``pyproject.toml`` above it); None when no project holds it (then the current directory decides)."""
    settings = project_settings(Path(script).absolute().parent)
    if settings.project_root is None or os.environ.get("RUNLOCK_RESULTS"):
        return None  # no project: the current directory's; $RUNLOCK_RESULTS: applies anyway
    return settings.results_root
