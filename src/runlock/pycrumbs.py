"""pycrumbs' API on runlock: ``from runlock.pycrumbs import tracked`` replaces ``from pycrumbs import tracked``."""

from __future__ import annotations

from .stages.compat.pycrumbs import (
    get_environment_info,
    get_git_info,
    get_installed_packages,
    seed_tasks,
    tracked,
    write_record,
)

__all__ = ["get_environment_info", "get_git_info", "get_installed_packages", "seed_tasks", "tracked", "write_record"]
