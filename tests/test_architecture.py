"""The module map holds: import-linter checks the contracts in pyproject.toml.

Layers (cli > stages > store > browse | tracking | scale > capture > git | hashing | config >
record > kernel), backends and collectors that never import stages, and no import cycles.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from _ci import unavailable

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    exe = Path(sys.executable).with_name("lint-imports")
    program = str(exe) if exe.is_file() else shutil.which("lint-imports")
    if program is None:
        unavailable("import-linter is not installed (pip install -e '.[lint]')")
    # cwd: import-linter reads pyproject.toml from the current directory (its only way)
    out = subprocess.run(
        [program, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "BROKEN" not in out.stdout and "KEPT" in out.stdout
