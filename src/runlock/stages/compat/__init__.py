"""Drop-in replacements for earlier tools, so that switching is a change of import.

- :mod:`.pycrumbs`: pycrumbs' ``tracked`` (all its keywords, its record file) and its helpers;
- :mod:`.footsteps`: footsteps' zero-config output directory, :func:`start`.
"""

from __future__ import annotations

from .footsteps import ScriptRun, start
from .pycrumbs import (
           get_environment_info,
           get_git_info,
           get_installed_packages,
           seed_tasks,
           tracked,
           write_record,
)

__all__ = ["ScriptRun", "get_environment_info", "get_git_info", "get_installed_packages", "seed_tasks", "start",
           "tracked", "write_record"]
