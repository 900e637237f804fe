"""The one factory of synthetic runs for tests that need locks without running a stage.

``make_run`` writes a schema-1 ``run.lock`` with every section the stage decorator always
writes (docs/ARCHITECTURE.md, "run.lock"), through ``dump_lock`` as a real run does, so a
reader tested on it meets the shape it meets in the field. Starts are relative to now (an hour
ago, one second apart in call order): ``--since`` filters and "crashed" judgements must not
depend on the date the tests run.
"""

from __future__ import annotations

import itertools
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runlock.record.lockfile import SCHEMA_VERSION, dump_lock
from runlock.record.runid import new_run_id

#: Who "ran" a synthetic run: not this machine, and a pid that cannot exist (pid_max < 2**22),
#: so a "running" one is judged by its heartbeat, never by a process of the test machine.
HOSTNAME = "build-host"
PID = 999_999_999
HEAD = "a" * 40
DURATION_S = 42.0

_ANCHOR = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
_counter = itertools.count(1)


def next_start() -> datetime:
    """The default start of the next synthetic run (UTC, later than every earlier one)."""
    return _ANCHOR + timedelta(seconds=next(_counter))


def make_run(
    root: Path,
    stage: str = "train",
    run_id: str | None = None,
    *,
    sub: str = "",
    status: str = "completed",
    config: dict[str, Any] | None = None,
    result: Any = None,
    start: datetime | None = None,
    **sections: Any,
) -> Path:
    """A run directory ``root/sub/stage/run_id`` holding a schema-1 lock; returns it.

    ``sections`` replace whole top-level sections (``git=None``, ``upstream={...}``,
    ``pid=...``); ``start`` defaults to :func:`next_start` and ``run_id`` to a run id of that
    start. A finished run ended ``DURATION_S`` after its start; a running one has not ended.
    """
    start = start or next_start()
    run_id = run_id or new_run_id(start)
    d = root / sub / stage / run_id
    config = config if config is not None else {"lr": 0.1}
    finished = status != "running"
    lock: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "id": run_id,
        "stage": stage,
        "status": status,
        "run_dir": str(d),
        "experiment": None,
        "pid": PID,
        "hostname": HOSTNAME,
        "heartbeat": None,
        "timing": {
            "start": start.isoformat(),
            "end": (start + timedelta(seconds=DURATION_S)).isoformat() if finished else None,
            "duration_s": DURATION_S if finished else None,
        },
        "function": {
            "name": stage,
            "qualname": stage,
            "module": "pipeline",
            "source_file": "/nowhere/pipeline.py",
            "parameters": dict(config),
            "altered_parameters": {},
        },
        "config": config,
        "seed": 0,
        "seeded": ["random"],
        "environment": {"hostname": HOSTNAME, "python_version": "3.11.7", "platform": "linux"},
        "packages": {"numpy": "2.0.0", "torch": "2.4.0"},
        "editable": {},
        "git": {"root": "/nowhere", "head": HEAD, "branch": "main", "dirty": False},
        "data": {},
        "upstream": {},
        "outputs": {"algorithm": "xxh3_64", "exclude": ["run.lock"], "files": {}},
        "result": {"file": "result.json", "value": result},
    }
    lock.update(sections)
    dump_lock(lock, d / "run.lock")
    return d


def settle(*tops: Path) -> None:
    """Date every folder and lock an hour back, as if the runs were written long before the next
    query (the index never trusts a folder changed in the last seconds to mean "unchanged")."""
    old = time.time() - 3600
    for top in tops:
        (top / ".runlock").mkdir(exist_ok=True)  # the index's folder (created by a first query)
        for d in [top, *(p for p in top.rglob("*") if p.is_dir() and not p.is_symlink())]:
            os.utime(d, (old, old))
            if (d / "run.lock").is_file():
                os.utime(d / "run.lock", (old, old))

