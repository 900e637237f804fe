"""Skip outside CI, fail in CI: the one place the tests read ``$CI``.

A real component (SLURM, rclone, an MLflow server, import-linter) that is missing on a laptop
skips its tests with the reason; under ``CI=true`` the same absence is a setup bug and fails,
so a broken CI image cannot pass by skipping.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str) -> NoReturn:
    """Skip the test with ``reason`` (fail it under CI=true)."""
    if IN_CI:
        pytest.fail(f"required component missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def need_component(available: bool, reason: str) -> None:
    """Nothing when ``available``; otherwise :func:`unavailable` with ``reason``."""
    if not available:
        unavailable(reason)
