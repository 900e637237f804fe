"""The collectors every stage run uses: input data, source (git), upstream runs, outputs.

Slow work (the git snapshot, data hashing, checking upstream outputs) starts in a background
thread when the run starts, so the stage function is not kept waiting, and is joined when the
run ends (also when it failed). Lock sections:

* ``data`` (:class:`DataCollector`): ``{label: hash_path(...) entry}`` for the stage's inputs;
* ``git`` (:class:`GitCollector`): repository basics and the source snapshot;
* ``upstream`` (:class:`LineageCollector`): earlier runs named by config values
  (see :mod:`runlock.capture.lineage`);
* ``outputs`` (:class:`OutputsCollector`): ``hash_outputs(run_dir)`` at the end.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..record.runid import is_run_id
from .collectors import CaptureOptions, Collector, RunContext

log = logging.getLogger("runlock")
_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="runlock")
    return _POOL


def snapshot_settings(options: CaptureOptions, results_root: Path, run_dir: Path
                      ) -> dict[str, Any]:
    """The stage's snapshot options as ``git.SnapshotOptions`` keywords (a plain dict: building
    them must not import the git package on the run's start path). The run's own snapshot and a
    resume's "has the source changed?" check use the same ones."""
    return {
        "branch": options.snapshot_branch,
        "include": tuple(options.snapshot_include),
        "exclude": tuple(options.snapshot_exclude),
        "max_file_bytes": int(options.snapshot_max_file_mb * 2**20),
        "files_of_interest": tuple(options.files_of_interest),
        "exclude_dirs": (results_root, run_dir),
        "lock_timeout_s": options.snapshot_lock_timeout_s,
    }


def snapshot_options(git: Any, settings: dict[str, Any]) -> Any:
    return git.SnapshotOptions(**{k: v for k, v in settings.items() if v is not None})


def _take_snapshot(where: Path, settings: dict[str, Any], message: str, run_id: str | None
                   ) -> dict[str, Any]:
    from .. import git

    result: dict[str, Any] = git.snapshot(
        where, snapshot_options(git, settings), message=message, check_memo=False,
        run_id=run_id,
    )
    return result


def _publish_when_done(ctx: RunContext, key: str, future: concurrent.futures.Future[Any]) -> None:
    """Write the section into the running lock as soon as the future has it (not only at the
    end): a run killed by SIGKILL or the OOM killer still says which code it ran."""

    def publish(done: concurrent.futures.Future[Any]) -> None:
        if not done.cancelled() and done.exception() is None:
            ctx.publish_section(key, done.result())

    future.add_done_callback(publish)


class GitCollector:
    """Repository basics and a snapshot of the source on the shadow branch."""

    key = "git"

    def __init__(self, options: CaptureOptions) -> None:
        self.options = options
        self._future: concurrent.futures.Future[Any] | None = None

    def _where(self, ctx: RunContext) -> Path:
        return ctx.source_file.parent if ctx.source_file is not None else Path.cwd()

    def start(self, ctx: RunContext) -> Any:
        where = self._where(ctx)
        if not self.options.snapshot:
            from .. import git

            return git.repo_info(where)
        settings = snapshot_settings(self.options, ctx.results_root, ctx.run_dir)
        # The run keeps its snapshot with its own ref (refs/runlock/runs/<id>), which `runlock rm`
        # deletes; an id that cannot name a ref (a resumed map's odd lock) keeps the branch only.
        run_id = ctx.run_id if is_run_id(ctx.run_id) else None
        message = f"runlock snapshot of run {ctx.run_id} ({ctx.stage})"
        loaded = sys.modules.get("runlock.git")  # imported by an earlier run of this process
        if loaded is not None:
            # Unchanged tree since this process's last run: the section now, no thread, no git.
            # (Checked here in the main thread: a background stat loop would contend for the GIL.)
            cached = loaded.cached_snapshot(where, snapshot_options(loaded, settings), run_id)
            if cached is not None:
                loaded.keep_snapshot(cached)  # the run's ref: queued, written in batches
                self._future = concurrent.futures.Future()
                self._future.set_result(cached)
                return cached  # in the first running lock: nothing more to publish
        # Not imported yet (a fresh process, so nothing memoised either): the import (~15 ms)
        # happens on the snapshot thread too, while this thread writes the run's first files.
        self._future = _pool().submit(_take_snapshot, where, settings, message, run_id)
        _publish_when_done(ctx, self.key, self._future)
        return None

    def finish(self, ctx: RunContext) -> Any:
        if self._future is None:
            return None
        section = self._future.result()
        left_out = section.get("secrets_left_out") if isinstance(section, dict) else None
        if left_out:
            warning = (f"git: secret file(s) left out of the source snapshot: {', '.join(left_out)} "
                       "(name one in snapshot_include to snapshot it on purpose)")
            ctx.warnings.append(warning)
            log.warning("runlock: %s", warning)
        return section



# -- data inputs --------------------------------------------------------------------------------

#: How long an interrupted run (Ctrl-C, SIGTERM) waits for its data hashes before giving up.
INTERRUPTED_WAIT_S = 10.0
# Background hashing is CPU-bound (xxhash holds the GIL while it digests a chunk); at the lowest
# priority it takes what the stage leaves, so a 200 MB input does not slow the stage's start.
_BACKGROUND_NICE = 19


class InputNotFoundError(DataError):
    """A declared data input that does not exist (or is a broken symlink): the run stops at its
    start, before the stage function is called (``fatal``: run.py re-raises it). Bad input
    (exit code 2): run.py checks the inputs before it creates the run directory."""

    fatal = True
    exit_code = 2


def _lower_priority() -> None:
    """Make the calling thread (and the threads it starts: they inherit it) yield the CPU to the
    stage function. Linux only, where ``nice`` is per thread; best effort elsewhere."""
    if sys.platform != "linux":
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _BACKGROUND_NICE)
    except (OSError, AttributeError):  # a sandbox refusing it: hash at normal priority
        pass


def _start_low_priority(start: Callable[[], Any], name: str) -> threading.Thread:
    """Call ``start`` (which starts background threads) from a short-lived low-priority thread,
    so that every thread it starts inherits the low priority. Join the result before using what
    it started."""
    def launch() -> None:
        _lower_priority()
        start()

    launcher = threading.Thread(target=launch, name=name, daemon=True)
    launcher.start()
    return launcher


def _cache_path(ctx: RunContext) -> Path:
    from ..hashing.cache import default_cache_path

    return default_cache_path(ctx.results_root)


def _select(config: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    """``(found, value)`` of a dotted key (``a.b``, ``a.list.0``) in a plain config."""
    node: Any = config
    for part in dotted.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def data_inputs(options: Any, config: Mapping[str, Any], *, cwd: Path | None = None) -> dict[str, Path]:
    """``{label: absolute path}`` of the run's inputs from ``options.track_data``.

    An entry naming a config key (dotted; the stage decorator adds the fields declared with
    ``runlock.Input``) is labelled by the key and takes its value: a path, a list of paths
    (labels ``key[0]``, ``key[1]``...) or nothing (None / "": no input, nothing hashed). Any other
    entry is a literal path, labelled as written. Relative paths are from ``cwd`` (default: the
    current directory), as the stage function would open them.
    """
    base = Path(cwd) if cwd is not None else Path.cwd()
    out: dict[str, Path] = {}

    def add(label: str, value: Any) -> None:
        if value is None or value == "":
            return
        if isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                add(f"{label}[{i}]", v)
            return
        if not isinstance(value, (str, os.PathLike)):
            raise InputNotFoundError(
                f"Data input '{label}' must be a path, not {type(value).__name__} ({value!r})."
            )
        p = Path(value).expanduser()
        out[label] = Path(os.path.abspath(p if p.is_absolute() else base / p))

    for entry in dict.fromkeys(getattr(options, "track_data", ()) or ()):
        found, value = _select(config, str(entry))
        if found:
            add(str(entry), value)
        else:
            add(str(entry), str(entry))
    return out


def check_inputs(inputs: Mapping[str, Path], config: Mapping[str, Any]) -> None:
    """Raise :class:`InputNotFoundError` naming the first missing input or broken symlink."""
    for label, path in inputs.items():
        if path.exists():
            continue
        is_key = _select(config, label.split("[", 1)[0])[0]
        what = f"config key '{label}'" if is_key else f"track_data entry '{label}'"
        if path.is_symlink():
            raise InputNotFoundError(
                f"Data input {what} is a broken symlink: {path} -> {os.readlink(path)}.",
                hint="fix the link or point the input at existing data",
            )
        hint = "set it to an existing file or directory"
        if not is_key:
            hint = "it is neither a config key of the stage nor an existing path; " + hint
        raise InputNotFoundError(f"Data input {what} not found: {path}.", hint=hint)


def _patterns(table: Mapping[str, Any] | None, inputs: Mapping[str, Path]) -> dict[str, list[str]] | None:
    """An input's patterns (by config key or track_data entry) for each of its labels
    (``key`` and, for a list of paths, ``key[0]``, ``key[1]``...)."""
    if not table:
        return None
    out = {label: list(table[base]) for label in inputs if (base := label.split("[", 1)[0]) in table}
    return out or None


class DataCollector:
    """Content hashes of the stage's data inputs (lock ``data``), computed while it runs.

    ``start`` checks that every input exists (a missing one fails the run before the stage
    function is called, naming the path) and starts :class:`runlock.hashing.BackgroundHasher`,
    which costs well under a millisecond whatever the data size. ``finish`` waits for the hashes,
    also for a failed run (an interrupted one waits at most :data:`INTERRUPTED_WAIT_S`). An input
    that could not be hashed is ``{path, error}`` in the lock plus a warning.
    """

    key = "data"

    def __init__(self, options: CaptureOptions) -> None:
        self.options = options
        self._hasher: Any = None
        self._launcher: threading.Thread | None = None
        self._started: threading.Event | None = None
        self._inputs: dict[str, Path] = {}

    def start(self, ctx: RunContext) -> Any:
        self._inputs = data_inputs(self.options, ctx.config)
        if not self._inputs:
            return None
        check_inputs(self._inputs, ctx.config)
        from ..hashing import BackgroundHasher

        hasher = self._hasher = BackgroundHasher(
            self._inputs, cache_path=_cache_path(ctx),
            match=_patterns(getattr(self.options, "data_match", None), self._inputs),
            ignore=_patterns(getattr(self.options, "data_ignore", None), self._inputs),
        )
        started = self._started = threading.Event()

        def start_then_publish() -> None:
            try:
                hasher.start()
            finally:
                started.set()
            # The hashes go into the running lock as soon as they are known (a SIGKILLed run
            # keeps its data provenance); this low-priority thread only waits meanwhile.
            ctx.publish_section(self.key, hasher.result())

        self._launcher = _start_low_priority(start_then_publish, "runlock-data-start")
        # The running lock lists the inputs; the hashes follow when known.
        return {label: {"path": str(p)} for label, p in self._inputs.items()}

    def finish(self, ctx: RunContext) -> Any:
        if self._hasher is None:
            return None
        timeout = INTERRUPTED_WAIT_S if ctx.status == "interrupted" else None
        if self._started is not None:
            self._started.wait()  # the hasher's thread exists (result() would start a second)
        try:
            result: dict[str, dict[str, Any]] = self._hasher.result(timeout=timeout)
        except TimeoutError:
            msg = f"hashing not finished {INTERRUPTED_WAIT_S:g} s after the run was interrupted"
            ctx.warnings.append(f"data: {msg}")
            return {label: {"path": str(p), "error": msg} for label, p in self._inputs.items()}
        for label, entry in result.items():
            if "error" in entry:
                msg = f"data: input '{label}' ({entry.get('path')}) not hashed: {entry['error']}"
                log.warning(msg)
                ctx.warnings.append(msg)
        return result


# -- upstream runs ------------------------------------------------------------------------------


class LineageCollector:
    """Earlier runs named by config values (lock ``upstream``, see :mod:`runlock.capture.lineage`).

    ``start`` only finds the candidate paths (a few ``stat`` calls) and records their run
    directories; reading the upstream locks and re-hashing their outputs (``outputs_match``)
    happen in a background thread joined at ``finish``.
    """

    key = "upstream"

    def __init__(self, options: CaptureOptions) -> None:
        self.options = options
        self._future: concurrent.futures.Future[tuple[dict[str, Any], list[str]]] | None = None

    def start(self, ctx: RunContext) -> Any:
        from . import lineage

        candidates = lineage.find_candidates(ctx.config, run_dir=ctx.run_dir, results_root=ctx.results_root)
        if not candidates:
            return None
        cache_path = _cache_path(ctx)

        def work() -> tuple[dict[str, Any], list[str]]:
            from ..hashing.cache import HashCache

            with HashCache(cache_path) as cache:
                section, warnings = lineage.collect_upstream(
                    ctx.config, run_dir=ctx.run_dir, results_root=ctx.results_root,
                    candidates=candidates, cache=cache,
                )
            for w in warnings:  # during the run: they reach run.log
                log.warning(w)
            return section, warnings

        future: concurrent.futures.Future[tuple[dict[str, Any], list[str]]] = concurrent.futures.Future()

        def run() -> None:
            _lower_priority()  # re-hashing upstream outputs can be as heavy as data hashing
            try:
                result = work()
            except BaseException as exc:  # noqa: BLE001 - re-raised by finish(): a warning
                future.set_exception(exc)
                return
            future.set_result(result)
            ctx.publish_section(self.key, result[0] or None)

        self._future = future
        threading.Thread(target=run, name="runlock-lineage", daemon=True).start()
        running = {c.key: {"path": str(c.run_dir)} for c in candidates if c.run_dir is not None}
        return running or None

    def finish(self, ctx: RunContext) -> Any:
        if self._future is None:
            return None
        timeout = INTERRUPTED_WAIT_S if ctx.status == "interrupted" else None
        try:
            section, warnings = self._future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            ctx.warnings.append(
                f"upstream: not checked within {INTERRUPTED_WAIT_S:g} s after the run was interrupted"
            )
            return None  # the running lock's {key: {path}} entries stay
        ctx.warnings.extend(warnings)
        return section or None


# -- outputs ------------------------------------------------------------------------------------


class OutputsCollector:
    """Hashes of the files the run wrote (lock ``outputs``), at its end.

    runlock's own files (run.lock, config.yaml, run.log, result.*, metrics.jsonl, ``.runlock/``)
    are left out. Skipped when ``hash_outputs=False`` and for an interrupted run (it should stop
    quickly); a failed run's partial outputs are recorded.
    """

    key = "outputs"

    def __init__(self, options: CaptureOptions) -> None:
        self.options = options

    def start(self, ctx: RunContext) -> Any:
        return None

    def finish(self, ctx: RunContext) -> Any:
        if not getattr(self.options, "hash_outputs", True) or ctx.status == "interrupted":
            return None
        from ..hashing import hash_outputs
        from ..hashing.cache import HashCache
        from .lineage import OUTPUTS_EXCLUDE

        with HashCache(_cache_path(ctx)) as cache:
            out = hash_outputs(ctx.run_dir, exclude=OUTPUTS_EXCLUDE, cache=cache)
        # The heartbeat still rewrites run.lock (atomically, via a temporary file beside it)
        # while we hash: such a file is runlock's, not an output.
        files = out.get("files")
        if isinstance(files, dict):
            out["files"] = {k: v for k, v in files.items() if not _is_lock_tmp(k)}
        return out


def _is_lock_tmp(rel: str) -> bool:
    """A temporary file of :func:`runlock.record.rundir.atomic_write` for one of runlock's own files."""
    from ..record.rundir import BOOKKEEPING

    return "/" not in rel and rel.endswith(".tmp") and any(rel.startswith(f".{n}.") for n in BOOKKEEPING)


def default_collectors(options: CaptureOptions) -> list[Collector]:
    """Data first: a missing input stops the run before any other background work starts."""
    collectors: list[Collector] = [
        DataCollector(options),
        GitCollector(options),
        LineageCollector(options),
        OutputsCollector(options),
    ]
    return collectors
