"""``runlock reproduce RUN``: re-run a stage from its recorded source, config and seed, and say
whether it produced the same outputs, file by file.

Steps: check the environment against the lock (optional) -> make sure the upstream runs are here
(pulling them from the store if needed) and the data inputs still match their recorded hashes
-> check the source snapshot out into a temporary ``git worktree add --detach`` (the user's
working tree is never touched) -> in a fresh interpreter with that worktree first on
``sys.path``, import the recorded module, get the stage by its qualified name and call
``stage.invoke(config, extra_lock={"reproduces": RUN}, ...)`` -> compare output hashes and
result -> remove the worktree.

A subprocess, not an import here, so that the snapshot's modules never mix with the versions
already imported in this process.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import _subprocess, git
from ..errors import (
    DataError,
    GitError,
    LineageError,
    RemoteError,
    RunlockError,
    UnsafeNameError,
    UnsafePathError,
    UsageError,
)
from ..record.lock import Lock
from ..record.lockfile import load_lock
from ..record.rundir import CONFIG_NAME, LOCK_NAME, LOG_NAME, RESULT_JSON, RESULT_PKL, STATE_DIR
from ..record.safe import confined
from ..settings import results_root
from .remote import (
    LocalRun,
    _repo_root,
    fetch_snapshots,
    find_local_run,
    has_commit,
    local_lineage,
    resolve_code_remote,
    verify_run_data,
)

logger = logging.getLogger("runlock")

#: files whose content legitimately differs between two runs of the same code (paths, times)
NOT_COMPARED = frozenset({LOCK_NAME, CONFIG_NAME, LOG_NAME})
_RESULT_FILES = frozenset({RESULT_JSON, RESULT_PKL})


# --------------------------------------------------------------------------- environment


@dataclass(frozen=True)
class PackageDiff:
    name: str
    recorded: str | None
    current: str | None


def package_differences(
    lock: Mapping[str, Any], path: list[str] | None = None
) -> list[PackageDiff]:
    """Packages whose installed version differs from the lock's ``packages`` (missing/extra too)."""
    from ..capture.packages import inventory, normalize_name

    recorded = {normalize_name(k): v for k, v in Lock.from_dict(lock).packages.items()}
    current = {normalize_name(k): str(v) for k, v in inventory(path)[0].items()}
    out = []
    for name in sorted(set(recorded) | set(current)):
        a, b = recorded.get(name), current.get(name)
        if a != b:
            out.append(PackageDiff(name, a, b))
    return out


# --------------------------------------------------------------------------- inputs


def verify_inputs(run: LocalRun, *, root: Path, remote: str | None = None,
                  pull_missing: bool = True) -> list[str]:
    """Check that the run's inputs are here and unchanged; returns what was pulled.

    Upstream runs missing locally are pulled from the store (when one is configured); each
    upstream must still match its recorded outputs, and each ``data`` input its recorded hash.
    """
    pulled: list[str] = []
    try:
        lineage = local_lineage(run, root)
    except LineageError:
        if not pull_missing:
            raise
        from .remote import pull

        try:
            report = pull(run.id, remote=remote, root=root)
        except (RemoteError, UsageError) as exc:
            raise LineageError(
                f"Upstream runs of {run.id} are missing here and could not be pulled: {exc}"
            ) from exc
        pulled = [m.id for m in report.runs if m.action != "present"]
        lineage = local_lineage(run, root)
    for up in lineage[1:]:
        bad = verify_run_data(up.path, up.view)
        if bad:
            raise DataError(
                f"Upstream run {up.id} ({up.path}) no longer matches its recorded outputs: "
                f"{', '.join(bad[:10])}.",
                hint="restore it (runlock pull --force ID) before reproducing",
            )
    from ..hashing import hash_path

    for entry in sorted(run.view.inputs, key=lambda d: d.label):
        label, path = entry.label, entry.path
        if not entry.hash or not path:
            continue
        try:
            now = hash_path(path, match=entry.match, ignore=entry.ignore)
        except DataError as exc:
            raise DataError(f"Data input {label!r} ({path}) of run {run.id}: {exc.message}") from exc
        if now["hash"] != entry.hash:
            raise DataError(
                f"Data input {label!r} ({path}) of run {run.id} no longer matches its recorded "
                f"hash ({entry.hash} recorded, {now['hash']} now).",
                hint="restore the data the run used; reproducing on other data proves nothing",
            )
    return pulled


# --------------------------------------------------------------------------- source checkout


def snapshot_worktree(repo: Path, commit: str) -> Any:
    """A detached temporary worktree at ``commit``, removed afterwards (even on errors)."""
    return git.detached_worktree(repo, commit)


def _import_spec(lock: Lock, worktree: Path) -> dict[str, Any]:
    """Where the stage lives inside the worktree: module, file, sys.path entries, qualname."""
    fn = lock.function
    module, qualname, source = (fn.module, fn.qualname, fn.source_file) if fn else (None,) * 3
    if not module or not qualname or not source:
        raise UsageError(f"The lock of run {lock.id} does not record its function "
                         "(function.module / qualname / source_file).")
    if module.startswith("__runlock_main_"):  # a script's sweep point (locks before 0.1.0)
        module = "__main__"
    where = f"the lock of run {lock.id}"
    # Only code of the run's snapshot may run: the names are checked here, before the child
    # imports anything, and the child checks each module's origin before importing it.
    for what, dotted in (("function.module", module), ("function.qualname", qualname)):
        if not all(p.isidentifier() for p in str(dotted).split(".")):
            raise UnsafeNameError(f"{what} {dotted!r} (from {where}) is not a dotted Python name; "
                                  "refused.", hint="the lock was edited or forged; nothing was run")
    src = Path(source)
    if src.is_absolute():
        try:
            src = src.relative_to(str(lock.git.root if lock.git else None))
        except ValueError:
            raise UsageError(
                f"The stage of run {lock.id} lives outside its git repository "
                f"({source}); its source is not in the snapshot.",
            ) from None
    file = confined(worktree, src, what="function.source_file", source=where)
    if not file.resolve().is_relative_to(worktree.resolve()):  # a symlink in the snapshot
        raise UnsafePathError(f"function.source_file {source!r} (from {where}) resolves to "
                              f"{file.resolve()}, outside the source snapshot; refused.")
    if not file.is_file():
        raise GitError(f"{src} is not in the source snapshot of run {lock.id}.")
    paths = [str(worktree)]
    if module != "__main__":
        parts = str(module).split(".")
        named = file.parent.parts if file.name == "__init__.py" else file.with_suffix("").parts
        if file.suffix != ".py" or tuple(named[-len(parts):]) != tuple(parts):
            raise UnsafeNameError(
                f"function.module {module!r} (from {where}) does not name its source file "
                f"{src}; refused.", hint="the lock was edited or forged; nothing was run")
        depth = len(parts) if file.name == "__init__.py" else len(parts) - 1
        paths.insert(0, str(file.parents[depth]))
    return {"module": module, "qualname": qualname, "file": str(file), "sys_path": paths,
            "worktree": str(worktree)}


# The child: import the stage from the worktree and invoke it with the recorded config.
_DRIVER = r"""
import importlib, importlib.util, json, os, sys, traceback
from runlock.stages.decorator import Stage
spec = json.load(open(sys.argv[1]))
sys.path[:0] = spec["sys_path"]
out = {}
wt = os.path.realpath(spec["worktree"]) + os.sep

class Refused(Exception):
    pass

def origin(name):
    # where `name` would be imported from, without running it (its parents are, from the
    # snapshot: they were checked first)
    m = sys.modules.get(name)
    if m is not None:
        return [getattr(m, "__file__", None) or ""]
    s = importlib.util.find_spec(name)
    if s is None:
        return [""]
    return [s.origin] if s.origin and s.has_location else list(s.submodule_search_locations or [""])

try:
    if spec["module"] != "__main__":
        parts = spec["module"].split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            where = origin(name)
            if not any(os.path.realpath(w).startswith(wt) for w in where if w):
                raise Refused(f"{name} would be imported from {where[0] or 'nowhere'}, not from "
                              "the run's source snapshot; refused")
            importlib.import_module(name)
    if spec["module"] == "__main__":
        s = importlib.util.spec_from_file_location("__runlock_reproduce__", spec["file"])
        mod = importlib.util.module_from_spec(s)
        sys.modules[s.name] = mod
        s.loader.exec_module(mod)
    else:
        mod = importlib.import_module(spec["module"])
    out["module_file"] = getattr(mod, "__file__", None)
    obj = mod
    for part in spec["qualname"].split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, Stage):
        raise Refused(f"{spec['module']}.{spec['qualname']} is not a runlock stage; refused")
    kw = {"extra_lock": spec["extra_lock"]}
    if spec.get("save_dir"):
        kw["save_dir"] = spec["save_dir"]
    outcome = obj.invoke(spec["config"], **kw)
    out["run_dir"] = str(outcome.run_dir)
    err = getattr(outcome, "error", None)
    out["error"] = None if err is None else f"{type(err).__name__}: {err}"
except Refused as exc:
    out["refused"] = str(exc)
except BaseException as exc:
    out["failed"] = "".join(traceback.format_exception(exc))
json.dump(out, open(spec["out"], "w"))
"""


def _run_stage(spec: dict[str, Any], *, cwd: Path, root: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="runlock-reproduce-") as d:
        spec_file, out_file = Path(d, "spec.json"), Path(d, "out.json")
        spec = {**spec, "out": str(out_file)}
        spec_file.write_text(json.dumps(spec, default=str))
        proc = _subprocess.run(
            [sys.executable, "-c", _DRIVER, str(spec_file)],
            cwd=cwd,
            extra_env={"RUNLOCK_RESULTS": str(root), "PYTHONNOUSERSITE": "1"},
        )
        try:
            out: dict[str, Any] = json.loads(out_file.read_text())
        except (OSError, ValueError):
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
            raise RunlockError(f"The reproduction process died (exit {proc.returncode}):\n{tail}") from None
    if "refused" in out:
        raise UnsafeNameError(f"Reproduce runs only code of the run's snapshot: {out['refused']}.",
                              hint="the lock was edited or forged")
    if "failed" in out:
        raise RunlockError(f"Could not start the stage from the snapshot:\n{out['failed'].strip()}")
    return out


# --------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class FileCheck:
    path: str
    status: str  # same | differs | missing (not produced again) | added (new only) | ignored
    recorded: str | None = None
    reproduced: str | None = None


@dataclass
class Reproduction:
    """What ``reproduce`` found. ``ok``: every compared output and the result are identical."""

    run_id: str
    run_dir: Path
    new_run_dir: Path | None = None
    commit: str | None = None
    packages: list[PackageDiff] = field(default_factory=list)
    pulled: list[str] = field(default_factory=list)
    files: list[FileCheck] = field(default_factory=list)
    result_match: bool | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def outputs_match(self) -> bool | None:
        compared = [f for f in self.files if f.status != "ignored"]
        if not compared:
            return None
        return all(f.status == "same" for f in compared)

    @property
    def ok(self) -> bool:
        return self.error is None and self.outputs_match is not False and self.result_match is not False


def compare_outputs(recorded: dict[str, Any], reproduced: dict[str, Any]) -> list[FileCheck]:
    """File-by-file comparison of two ``outputs`` manifests ({relpath: hash}), sorted."""
    a: dict[str, str] = dict(recorded.get("files") or {})
    b: dict[str, str] = dict(reproduced.get("files") or {})
    out = []
    for rel in sorted(set(a) | set(b)):
        first = rel.split("/", 1)[0]
        if rel in NOT_COMPARED or first == STATE_DIR:
            out.append(FileCheck(rel, "ignored", a.get(rel), b.get(rel)))
        elif rel not in b:
            out.append(FileCheck(rel, "missing", a[rel], None))
        elif rel not in a:
            out.append(FileCheck(rel, "added", None, b[rel]))
        else:
            out.append(FileCheck(rel, "same" if a[rel] == b[rel] else "differs", a[rel], b[rel]))
    return out


def _result_match(old: Mapping[str, Any], new: Mapping[str, Any], old_dir: Path,
                  new_dir: Path) -> bool | None:
    """Same result: the values in the locks when both hold one, else the result files' bytes."""
    ra, rb = old.get("result") or {}, new.get("result") or {}
    if "value" in ra and "value" in rb:
        return bool(ra["value"] == rb["value"])
    from ..hashing import hash_path

    for name in sorted(_RESULT_FILES):
        a, b = old_dir / name, new_dir / name
        if a.is_file() or b.is_file():
            if not (a.is_file() and b.is_file()):
                return False
            return bool(hash_path(a)["hash"] == hash_path(b)["hash"])
    return None if not (ra or rb) else ra == rb


def _new_dir_template(run: LocalRun) -> str:
    """Next to the original: ``<name>-repro-<UTC time>`` (the run dir makes it unique)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    parent = run.path.parent if run.path.parent.exists() else results_root() / run.stage
    return str(parent / f"{run.path.name}-repro-{stamp}")


def reproduce(
    run: str | os.PathLike[str],
    *,
    root: Path | None = None,
    remote: str | None = None,
    code_remote: str | None = None,
    check_env: bool = False,
    pull_missing: bool = True,
    save_dir: str | None = None,
) -> Reproduction:
    """Re-run RUN from its source snapshot with its recorded config (seed included) into a new
    run directory whose lock says ``reproduces: RUN``, and compare the outputs file by file."""
    root = results_root(root)
    target = find_local_run(run, root)
    lock = target.view
    rep = Reproduction(target.id, target.path)
    if check_env:
        rep.packages = package_differences(lock.data)
    rep.pulled = verify_inputs(target, root=root, remote=remote, pull_missing=pull_missing)

    commit = lock.source_commit
    if commit is None:
        raise GitError(f"Run {target.id} records no source snapshot (git.snapshot.commit); "
                       "it cannot be re-run from its code.")
    rep.commit = commit
    repo = _repo_root(Path.cwd()) or _repo_root(Path((lock.git.root if lock.git else None) or ""))
    if repo is None:
        raise GitError("Not in a git repository: run reproduce from a clone of the project.")
    if not has_commit(repo, commit):
        fetch_snapshots(repo, resolve_code_remote(code_remote, start=repo), {target.id: commit})

    config = dict(lock.config)
    dir_keys = [k for k, v in config.items() if isinstance(v, str) and lock.run_dir
                and v.rstrip("/") == lock.run_dir.rstrip("/")]
    new_dir = save_dir or _new_dir_template(target)
    spec_save_dir: str | None = new_dir
    for k in dir_keys:  # the stage reads its dir from the config: point that key at the new dir
        config[k] = new_dir
        spec_save_dir = None
    with snapshot_worktree(repo, commit) as wt:
        spec = _import_spec(lock, wt)
        spec.update(config=config, extra_lock={"reproduces": target.id}, save_dir=spec_save_dir)
        out = _run_stage(spec, cwd=Path.cwd(), root=root)
        mf = out.get("module_file")
        if mf and not Path(mf).resolve().is_relative_to(wt.resolve()):
            rep.notes.append(f"the stage was imported from {mf}, not from the snapshot")
    rep.new_run_dir = Path(out["run_dir"])
    rep.error = out.get("error")
    new_lock = Lock.from_dict(load_lock(rep.new_run_dir))
    from ..hashing import hash_outputs

    recorded = lock.outputs_manifest
    if recorded is None:
        rep.notes.append("the original run recorded no output hashes: compared with its files "
                         "as they are now")
        recorded = hash_outputs(target.path, exclude=[LOCK_NAME])
    reproduced = new_lock.outputs_manifest
    if reproduced is None or reproduced.get("exclude") != recorded.get("exclude"):
        reproduced = hash_outputs(rep.new_run_dir, exclude=recorded.get("exclude") or [LOCK_NAME])
    rep.files = compare_outputs(recorded, reproduced)
    # The result sections are compared whole ("value" present, even as null, is meaningful).
    rep.result_match = _result_match(lock.data, new_lock.data, target.path, rep.new_run_dir)
    return rep
