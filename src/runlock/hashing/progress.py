"""A progress bar for hashing large inputs on a terminal; nothing in logs and CI."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .cache import HashCache
from .read import Advance

_PROGRESS_MIN_BYTES = 1 << 30
_PROGRESS_MIN_FILES = 10_000


@contextlib.contextmanager
def progress_bar(label: str, nbytes: int, nfiles: int, show: bool | None) -> Iterator[Advance | None]:
    """A rich progress bar on a terminal for large inputs; nothing otherwise."""
    if show is None:
        show = (nbytes >= _PROGRESS_MIN_BYTES or nfiles >= _PROGRESS_MIN_FILES) and _stderr_tty()
    if not show:
        yield None
        return
    from ..logs import transfer_bar

    with transfer_bar("hashing {task.description}") as bar:
        task = bar.add_task(label, total=nbytes)
        yield lambda n: bar.advance(task, n)


def _stderr_tty() -> bool:
    from ..logs import use_rich

    return use_rich()


def needs_stat(cache: HashCache | None, progress: bool | None) -> bool:
    """Whether the walk must stat every file: for cache keys, or to size a progress bar.

    Otherwise files are only fstat-ed once opened, which keeps a cold (uncached) hash of many
    small files as cheap as a plain read loop.
    """
    return cache is not None or progress is True or (progress is None and _stderr_tty())
