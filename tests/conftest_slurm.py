"""Pytest plugin for tests that need a real (single-node) SLURM cluster.

Register it from ``tests/conftest.py`` with ``pytest_plugins = ["conftest_slurm"]`` and mark the
tests ``@pytest.mark.slurm``. Without a cluster they skip, except under ``CI=true`` where a
missing cluster is a setup bug and fails loudly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _ci import unavailable

TESTS_DIR = Path(__file__).resolve().parent
SRC_DIR = TESTS_DIR.parent / "src"


@dataclass(frozen=True)
class SlurmCluster:
    """A SLURM cluster that answers; ``shared_dir`` is readable by slurmd (root here)."""

    shared_dir: Path
    partition: str | None

    def backend_options(self, name: str) -> dict[str, object]:
        """Options for ``execute_map(..., backend="slurm", **options)``, with a fresh folder."""
        folder = self.shared_dir / f"submitit {name}"
        return {"folder": folder, "timeout_min": 5, "partition": self.partition}


def _unavailable_reason() -> str | None:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no sinfo/sbatch on PATH"
    try:
        sinfo = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15, check=False
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 15 s"
    states = sinfo.stdout.split()
    if sinfo.returncode != 0 or not any(
        s.rstrip("*") in ("idle", "mixed", "allocated") for s in states
    ):
        return f"sinfo: no usable node ({sinfo.stderr.strip() or ' '.join(states) or 'no output'})"
    # submitit reads job states from sacct: without accounting every state reads UNKNOWN.
    sacct = subprocess.run(
        ["sacct", "-n", "-X", "-S", "now"], capture_output=True, text=True, check=False
    )
    if sacct.returncode != 0:
        return f"sacct does not work (start with SLURM_DBD=1): {sacct.stderr.strip()}"
    return None


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running SLURM cluster; skip (or fail under CI=true) when there is none.

    Jobs inherit the submitting environment (sbatch --export=ALL): PYTHONPATH gains ``src`` and
    ``tests`` for the session so workers import runlock and the test modules' task functions by
    reference, as a user's installed package would be.
    """
    reason = _unavailable_reason()
    if reason is not None:
        unavailable(f"SLURM not usable: run sudo scripts/slurm-up.sh ({reason})")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC_DIR), str(TESTS_DIR), old) if p)
    partitions = subprocess.run(
        ["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, check=False
    ).stdout.split()
    default = next((p.rstrip("*") for p in partitions if p.endswith("*")), None)
    try:
        yield SlurmCluster(shared_dir=tmp_path_factory.mktemp("slurm shared"), partition=default)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
