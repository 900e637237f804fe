"""Content hashes of data inputs and run outputs.

Modules: ``walk`` (the tree, as dirhash/scantree walk it, and directory digests), ``read``
(file contents: small files on the calling thread, large ones on reader threads),
``digests`` (the stat cache first, then reads; files that changed while read), ``progress``
(a bar on a terminal), ``api`` (hash_path, hash_outputs, verify_outputs), ``background``
(BackgroundHasher).

Files hash to the xxh3_64 hex digest of their content. Directories hash to exactly what
``dirhash.dirhash(path, algorithm=xxhash.xxh3_64, match=..., ignore=...)`` (dirhash 0.5) returns,
so a hash in a run.lock can be checked with that package alone. We reimplement its protocol
rather than call it because dirhash reads every file on every call, in one process (or a
process pool for ``jobs>1``); here files are read by threads (xxhash and file reads release the
GIL) and unchanged files come from a stat cache (:mod:`runlock.hashing.cache`).

dirhash protocol, as implemented by dirhash 0.5 / scantree 0.0.4, reproduced below:

* walk the tree following symlinks (to files and directories); a symlink to a directory on the
  current branch is a cycle (dirhash raises, so do we);
* directories are always walked; only *files* are matched, by their path relative to the root
  (``a/b.txt``), against gitwildmatch patterns ``match + ["!" + p for p in ignore]``
  (default ``["*"]``); sockets, fifos and broken symlinks are skipped by dirhash (we raise for a
  broken symlink that the patterns would include: a dangling input is almost always a bug);
* a directory without included files (recursively) is left out (``empty_dirs=False``);
* entry descriptor: ``"data:<file hash>\\0name:<name>"`` or ``"dirhash:<dir hash>\\0name:<name>"``;
  directory descriptor: the sorted entry descriptors joined by ``"\\0\\0"``; directory hash:
  ``xxh3_64(descriptor.encode("utf-8")).hexdigest()``.

dirhash refuses a directory with nothing to hash; we hash its empty descriptor so that an empty
input is recorded instead of failing the run.
"""

from __future__ import annotations

from .api import ALGORITHM, hash_outputs, hash_path, verify_outputs
from .background import BackgroundHasher
from .cache import HashCache

__all__ = [
    "ALGORITHM",
    "BackgroundHasher",
    "HashCache",
    "hash_outputs",
    "hash_path",
    "verify_outputs",
]
