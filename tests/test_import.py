"""`import runlock` is fast and pulls in no optional or heavy dependency."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("omegaconf", "yaml", "rich", "joblib", "mlflow", "submitit", "numpy", "pandas", "xxhash", "git", "IPython")


def test_import_runlock_loads_no_heavy_module() -> None:
    code = (
        "import sys, json; before = set(sys.modules); import runlock; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert not bad, f"import runlock imported {bad}"
    assert all(m == "runlock" or m.startswith("runlock.") or m in sys.stdlib_module_names or m.split(".")[0] in sys.stdlib_module_names or m.startswith("_") for m in loaded), loaded


def test_public_api_resolves_lazily() -> None:
    code = "import runlock; print(runlock.stage, runlock.main, runlock.tracked, runlock.start, runlock.Input, runlock.RunlockError)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([sys.executable, "-c", "import runlock; runlock.nope"], capture_output=True, text=True)
    assert "has no attribute 'nope'" in out.stderr


def test_cli_entry_points() -> None:
    out = subprocess.run([sys.executable, "-m", "runlock", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "runlock" in out.stdout


def test_extension_points_resolve_without_optional_dependencies() -> None:
    code = (
        "import sys, json, runlock; "
        "names = ['register_backend', 'Backend', 'register_tracker', 'Tracker', 'Collector', 'RunContext']; "
        "[getattr(runlock, n) for n in names]; "
        "print(json.dumps([n in runlock.__all__ for n in names] + sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'submitit', 'omegaconf'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [True] * 6  # listed in __all__, no optional module loaded
