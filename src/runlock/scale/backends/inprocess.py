"""Sequential execution in the calling process: no pickling, real tracebacks, pdb works."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

C = TypeVar("C")


class InProcessBackend:
    """Calls ``fn(chunk)`` one chunk after the other; exceptions propagate unchanged."""

    name = "inprocess"

    def __init__(self, **_ignored: Any) -> None:
        # Accepts (and ignores) n_jobs & co. so one call site can switch backends by name.
        pass

    def run(self, fn: Callable[[C], Any], chunks: Sequence[C]) -> list[Any]:
        return [fn(chunk) for chunk in chunks]
