"""Time-sortable run ids: ``YYYYmmddTHHMMSS-xxxxxx`` (UTC, then 6 random hex digits).

Lexicographic order is chronological order (to the second), and the random part keeps ids
unique when many runs start in the same second (pycrumbs and savethat collide there).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

RUN_ID_RE = re.compile(r"^\d{8}T\d{6}-[0-9a-f]{6}$")


def new_run_id(now: datetime | None = None) -> str:
    """A new run id for a run started at ``now`` (UTC)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    # os.urandom, as secrets.token_hex does (importing secrets costs ~4 ms of a fresh run)
    return f"{now:%Y%m%dT%H%M%S}-{os.urandom(3).hex()}"


def is_run_id(text: str) -> bool:
    return bool(RUN_ID_RE.match(text))
