"""pycrumbs' ``tracked`` decorator and helpers, backed by a runlock run (``run.lock`` + the record).

A pycrumbs user changes ``from pycrumbs import tracked`` to ``from runlock import tracked`` (or
``from runlock.pycrumbs import ...``) and keeps every call: the 19 keywords with pycrumbs'
meaning and checks, the same directory (an existing one is used), the arguments as passed
(``*args``, ``**kwargs``, the caller's objects, ``Path`` kept), and the same record file
(``<function>_record.json``, pycrumbs' keys; ``chain_records`` appends). What differs on purpose
(README, "Coming from pycrumbs or footsteps"): git is read when the function is called, not
when it is decorated, and outside a repository the record says so instead of failing;
``run.lock`` is never destroyed (a second call into the same directory keeps the earlier lock
under ``.runlock/earlier/``); secrets are redacted; the record is written once, at the end.
"""

from __future__ import annotations

import datetime
import functools
import importlib
import inspect
import json
import os
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from ...errors import GitError, RunDirError, UsageError
from .. import run as runmod

RECORD_SUFFIX = "_record"
_TIMESTAMP_FMT = "%Y_%m_%d_%H_%M_%S"  # pycrumbs' directory suffix format
#: pycrumbs' fixed list of environment variables (SLURM_* added inside a SLURM job)
_ENV_VARS = ("CUDA_VISIBLE_DEVICES", "VIRTUAL_ENV", "PYENV_VIRTUAL_ENV", "PYTHONPATH")
#: where a second run in the same directory keeps the earlier run.lock (never destroyed)
EARLIER_LOCKS = Path(".runlock") / "earlier"


class TrackedTypeError(UsageError, TypeError):
    """pycrumbs raises TypeError for these option mistakes; so does runlock (exit code 2)."""


class DirectoryNotEmptyError(RunDirError, FileExistsError):
    """``require_empty_directory=True`` and the directory has files (pycrumbs' FileExistsError)."""


class DirtyRepositoryError(GitError):
    """``allow_dirty_repo=False`` and the repository has uncommitted changes."""

    exit_code = 2


# ---------------------------------------------------------------------------------------------
# pycrumbs' helper functions, same signatures


def _format_json(obj: Any, char_limit: int | None = None) -> Any:
    """pycrumbs' value format: JSON-able values as they are, others as ``repr``, long ones elided."""
    try:
        text = json.dumps(obj)
        serializable = True
    except (TypeError, ValueError, OverflowError):
        text = repr(obj)
        serializable = False
    if char_limit is not None and len(text) > char_limit:
        return "<suppressed due to excessive length>"
    return obj if serializable else text


def get_environment_info() -> dict[str, Any]:
    """pycrumbs' ``environment`` section: argv, platform, python, cwd, hostname, cpu_count, user."""
    from ...capture.environment import capture_environment

    return _environment_of(capture_environment())


def _environment_of(env: dict[str, Any]) -> dict[str, Any]:
    keys = ("argv", "orig_argv", "platform", "platform_info", "python_version", "python_implementation",
            "python_executable", "cwd", "hostname", "python_path", "cpu_count", "user")
    info = {k: env.get(k) for k in keys}
    docker = Path("/etc/docker-build-git-hash")  # pycrumbs' cookiecutter-qtim container marker
    if docker.exists():
        info["git_hash_at_docker_build"] = docker.read_text().splitlines()[0]
    return info


def _environment_vars(extra: Sequence[str] | None) -> dict[str, str | None]:
    from ...redact import is_secret_name

    names = list(_ENV_VARS)
    if "SLURM_JOB_ID" in os.environ:
        names += [v for v in os.environ if v.startswith("SLURM")]
    names += list(extra or ())
    # a secret's value is not written (pycrumbs wrote it in clear); its presence is
    return {n: ("<redacted>" if n in os.environ and is_secret_name(n) else os.environ.get(n)) for n in names}


def get_installed_packages() -> dict[str, str]:
    """``{name: version}`` of the installed distributions (PEP 503 names, from dist-info folders)."""
    from ...capture.packages import inventory

    return dict(inventory()[0])


def seed_tasks(seed: int | None = None, seed_numpy: bool = True, seed_tensorflow: bool = True,
               seed_torch: bool = True) -> int:
    """Seed ``random`` and (if installed) NumPy, TensorFlow, PyTorch; return the seed.

    Libraries imported later in the process are seeded right after their import.
    """
    from ...capture import seeding

    if seed is None:
        seed = seeding.draw_seed()
    seeding.apply_seed(seed, skip=_skipped(seed_numpy, seed_tensorflow, seed_torch))
    return seed


def _skipped(seed_numpy: bool, seed_tensorflow: bool, seed_torch: bool) -> tuple[str, ...]:
    return tuple(n for n, on in (("numpy", seed_numpy), ("tensorflow", seed_tensorflow), ("torch", seed_torch)) if not on)


def get_git_info(module: str | ModuleType, allow_dirty: bool = False) -> dict[str, Any]:
    """pycrumbs' ``tracked_module`` section for a module's repository (RuntimeError outside one)."""
    mod = importlib.import_module(module) if isinstance(module, str) else module
    path = getattr(mod, "__file__", None)
    if path is None:
        raise GitError(f"Module '{mod.__name__}' is not defined in a file: git cannot track it.")
    from ... import git

    info = git.repo_info(Path(path).parent)
    if info is None:
        raise GitError(f"Module '{mod.__name__}' at path '{path}' is not within a git repository.")
    info["dirty"] = _tracked_changes(Path(info["root"]))
    if info["dirty"] and not allow_dirty:
        raise DirtyRepositoryError(f"Repository for module '{mod.__name__}' is dirty (has uncommitted changes).",
                                   hint="Commit the changes, or pass allow_dirty_repo=True.")
    return _module_record(path, mod.__name__, info)


def _tracked_changes(root: Path) -> bool:
    """pycrumbs' "dirty" (GitPython's is_dirty()): changes to tracked files; untracked ones do not count."""
    from ...git.commands import try_git

    return bool(try_git(root, "status", "--porcelain", "--untracked-files=no").stdout.strip())


def _module_record(path: str | None, name: str | None, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "module_path": path,
        "name": name,
        "git_active_branch": info.get("branch") or "detached",
        "git_commit_hash": info.get("head"),
        "git_is_dirty": info.get("dirty"),
        "git_remotes": info.get("remotes") or {},
        "git_working_dir": info.get("root"),
    }


def write_record(record_path: Path, record: dict[str, Any] | list[dict[str, Any]]) -> None:
    """Write a record (or a chain of records) as JSON; ``.json`` is added when missing."""
    from ...record.rundir import atomic_write

    record_path = Path(record_path)
    if not record_path.name.endswith(".json"):
        record_path = record_path.with_name(record_path.stem + ".json")
    atomic_write(record_path, json.dumps(record, indent=4, default=str), durable=False)


# ---------------------------------------------------------------------------------------------
# tracked


def tracked(
    *,
    literal_directory: Path | str | None = None,
    directory_parameter: str | None = None,
    subdirectory_name_parameter: str | None = None,
    directory_injection_parameter: str | None = None,
    include_timestamp: bool = False,
    include_uuid: bool = False,
    record_filename: str | None = None,
    extra_modules: Sequence[str | ModuleType] | None = None,
    extra_environment_variables: Sequence[str] | None = None,
    seed_parameter: str | None = None,
    seed_numpy: bool = True,
    seed_tensorflow: bool = True,
    seed_torch: bool = True,
    disable_git_tracking: bool = False,
    allow_dirty_repo: bool = True,
    include_package_inventory: bool = True,
    create_parents: bool = False,
    require_empty_directory: bool = False,
    chain_records: bool = False,
    name: str | None = None,
    **options: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """pycrumbs' ``tracked``: the same keywords, checks, directory, arguments and record file.

    Each call is also a runlock run: ``run.lock`` in the same directory. ``name`` (the stage
    name) and runlock's stage options (``snapshot=False``, ``track_data=...``, ``root=...``)
    may be added.
    """
    if (literal_directory is None) == (directory_parameter is None):
        raise TrackedTypeError('Exactly one of "literal_directory" or "directory_parameter" must be provided.')
    if include_timestamp and include_uuid:
        raise UsageError('Options "include_timestamp" and "include_uuid" are incompatible.')
    if (include_timestamp or include_uuid) and directory_injection_parameter is None \
            and directory_parameter is None and subdirectory_name_parameter is None:
        used = "include_timestamp" if include_timestamp else "include_uuid"
        raise TrackedTypeError(
            f"If {used} is True and neither directory_parameter nor subdirectory_name_parameter "
            'are specified, a parameter of the decorated function must be specified via '
            '"directory_injection_parameter" so that the function can reach the created directory.')
    known = {f for f in runmod.StageOptions.__dataclass_fields__} - {"name"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TrackedTypeError(f"tracked() got unexpected keyword argument(s): {', '.join(unknown)}.",
                               hint=f"pycrumbs' keywords, or runlock's stage options: {', '.join(sorted(known))}.")
    for key in ("track_data", "snapshot_include", "snapshot_exclude", "files_of_interest", "collectors"):
        if key in options:
            options[key] = (options[key],) if isinstance(options[key], str) else tuple(options[key])
    settings = _Settings(
        literal_directory=literal_directory, directory_parameter=directory_parameter,
        subdirectory_name_parameter=subdirectory_name_parameter,
        directory_injection_parameter=directory_injection_parameter, include_timestamp=include_timestamp,
        include_uuid=include_uuid, record_filename=record_filename, extra_modules=tuple(extra_modules or ()),
        extra_environment_variables=tuple(extra_environment_variables or ()), seed_parameter=seed_parameter,
        skip_seeding=_skipped(seed_numpy, seed_tensorflow, seed_torch), disable_git_tracking=disable_git_tracking,
        allow_dirty_repo=allow_dirty_repo, include_package_inventory=include_package_inventory,
        create_parents=create_parents, require_empty_directory=require_empty_directory, chain_records=chain_records,
    )

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(fn)
        for option in ("directory_parameter", "subdirectory_name_parameter", "directory_injection_parameter",
                       "seed_parameter"):
            param = getattr(settings, option)
            if param is not None and param not in signature.parameters:
                raise UsageError(f"No such parameter '{param}' for function '{fn.__name__}' ({option}).",
                                 hint=f"Parameters: {', '.join(signature.parameters) or 'none'}.")
        stage_options = runmod.StageOptions(name=name or fn.__name__, seed_field=None, **options)
        return functools.wraps(fn)(_Tracked(fn, signature, settings, stage_options))

    return decorator


class _Settings:
    """pycrumbs' options of one decorator (a plain record)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)
        self.literal_directory: Path | str | None
        self.directory_parameter: str | None
        self.subdirectory_name_parameter: str | None
        self.directory_injection_parameter: str | None
        self.include_timestamp: bool
        self.include_uuid: bool
        self.record_filename: str | None
        self.extra_modules: tuple[str | ModuleType, ...]
        self.extra_environment_variables: tuple[str, ...]
        self.seed_parameter: str | None
        self.skip_seeding: tuple[str, ...]
        self.disable_git_tracking: bool
        self.allow_dirty_repo: bool
        self.include_package_inventory: bool
        self.create_parents: bool
        self.require_empty_directory: bool
        self.chain_records: bool


class _Tracked:
    """The decorated function: ``__call__`` places, seeds, records and calls as pycrumbs does."""

    def __init__(self, fn: Callable[..., Any], signature: inspect.Signature, settings: _Settings,
                 options: runmod.StageOptions) -> None:
        self.fn = fn
        self.signature = signature
        self.settings = settings
        self.options = options

    def __reduce__(self) -> Any:  # pickle by reference, like a Stage: workers re-import it
        return (_load, (self.fn.__module__, self.fn.__qualname__))

    def __repr__(self) -> str:
        return f"<runlock.tracked {self.fn.__module__}.{self.fn.__qualname__}>"

    def __get__(self, obj: Any, objtype: Any = None) -> Any:  # methods: bind like a function
        return self if obj is None else functools.partial(self, obj)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        s, fn = self.settings, self.fn
        import uuid  # pycrumbs' record id (and include_uuid's suffix)

        job_uuid = str(uuid.uuid4())
        start = datetime.datetime.now()
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError:
            if s.directory_injection_parameter is None:
                raise
            kwargs[s.directory_injection_parameter] = None  # not passed: it is injected below
            bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        given_args = dict(bound.arguments)
        parameters = {k: _format_json(v, 200) for k, v in given_args.items()}

        if s.literal_directory is not None:
            record_dir = Path(s.literal_directory)
        else:
            record_dir = Path(bound.arguments[str(s.directory_parameter)])
        if s.subdirectory_name_parameter is not None:
            record_dir.mkdir(exist_ok=True, parents=s.create_parents)
            record_dir /= bound.arguments[s.subdirectory_name_parameter]
        if s.include_timestamp:
            record_dir = record_dir.resolve().with_name(f"{record_dir.name}_{start.strftime(_TIMESTAMP_FMT)}")
        elif s.include_uuid:
            record_dir = record_dir.resolve().with_name(f"{record_dir.name}_{job_uuid}")

        seed: int | None = None
        if s.seed_parameter is not None:
            given = bound.arguments[s.seed_parameter]
            if given is not None and (not isinstance(given, int) or isinstance(given, bool)):
                raise TrackedTypeError(
                    f"Value of the seed parameter '{s.seed_parameter}' of function '{fn.__name__}' must be "
                    f"'int' or 'None', got {given!r}.")
            seed = given
        if seed is None:
            from ...capture.seeding import draw_seed

            seed = draw_seed()
        if s.seed_parameter is not None:
            bound.arguments[s.seed_parameter] = seed
        if s.directory_injection_parameter is not None:
            bound.arguments[s.directory_injection_parameter] = record_dir
        elif s.include_uuid or s.include_timestamp:
            if s.subdirectory_name_parameter is not None:
                bound.arguments[s.subdirectory_name_parameter] = record_dir.name
            elif s.directory_parameter is not None:
                bound.arguments[s.directory_parameter] = record_dir
        altered = {k: _format_json(v, 200) for k, v in bound.arguments.items()}

        if not s.allow_dirty_repo and not s.disable_git_tracking:
            self._refuse_dirty()
        record_dir.mkdir(exist_ok=True, parents=s.create_parents)
        record_dir = record_dir.absolute()
        if s.require_empty_directory and next(record_dir.iterdir(), None) is not None:
            raise DirectoryNotEmptyError(f"Directory {record_dir} is not empty.",
                                         hint="Pass an empty directory, or require_empty_directory=False.")
        _keep_earlier_lock(record_dir)

        info = runmod._function_info(fn)  # noqa: SLF001 - the stages package's own helper
        info["parameters"] = {k: _lock_value(v) for k, v in given_args.items()}
        info["altered_parameters"] = {k: _lock_value(v) for k, v in bound.arguments.items()
                                      if k not in given_args or given_args[k] is not v}
        from ...config.plain import PlainConfig

        cfg = PlainConfig(dict, {k: _lock_value(v) for k, v in bound.arguments.items()})
        collectors = None
        if s.disable_git_tracking:
            collectors = [c for c in runmod.default_collectors(self.options) if c.key != "git"]
        run = runmod.ActiveRun.open(
            info, cfg, self.options, source_file=runmod.source_file_of(fn), called_params=info["parameters"],
            extra_lock={"function": info, "seed": seed}, collectors=collectors, run_dir=record_dir,
        )
        from ...capture import seeding

        run.seeded = seeding.apply_seed(seed, skip=s.skip_seeding)
        value: Any = None
        error: BaseException | None = None
        try:
            value = fn(*bound.args, **bound.kwargs)
        except BaseException as exc:  # noqa: BLE001 - recorded, then re-raised below
            error = exc
        outcome = run.close(value, error)
        self._write_record(record_dir, job_uuid, start, parameters, altered, seed, outcome.lock)
        if outcome.error is not None:
            if isinstance(outcome.error, runmod.RunInterrupted):
                runmod._resend_sigterm()  # noqa: SLF001
            raise outcome.error
        return value

    def _refuse_dirty(self) -> None:
        from ... import git

        src = runmod.source_file_of(self.fn)
        info = git.repo_info(src.parent if src is not None else Path.cwd())
        if info is not None and _tracked_changes(Path(info["root"])):
            raise DirtyRepositoryError(
                f"Repository {info['root']} of function '{self.fn.__name__}' is dirty (has uncommitted changes).",
                hint="Commit the changes, or pass allow_dirty_repo=True.")

    def _write_record(self, record_dir: Path, job_uuid: str, start: datetime.datetime, parameters: dict[str, Any],
                      altered: dict[str, Any], seed: int, lock: dict[str, Any]) -> None:
        s, fn = self.settings, self.fn
        end = datetime.datetime.now()
        environment = _environment_of(lock.get("environment") or {})
        environment["environment_variables"] = _environment_vars(s.extra_environment_variables)
        record: dict[str, Any] = {
            "uuid": job_uuid,
            "timing": {"start_time": str(start), "end_time": str(end), "run_time": str(end - start)},
            "environment": environment,
        }
        if s.include_package_inventory:
            record["package_inventory"] = lock.get("packages") or {}
        info = lock["function"]
        record["called_function"] = {
            "name": fn.__name__,
            "module": fn.__module__,
            "source_file": info.get("source_file"),
            "parameters": parameters,
            "altered_parameters": altered,
        }
        if not s.disable_git_tracking:
            module = sys.modules.get(fn.__module__)
            record["tracked_module"] = _module_record(getattr(module, "__file__", None), fn.__module__,
                                                      lock.get("git") or {})
        if s.extra_modules:
            record["extra_tracked_modules"] = {
                m if isinstance(m, str) else m.__name__: get_git_info(m, allow_dirty=s.allow_dirty_repo)
                for m in s.extra_modules
            }
        record["seed"] = seed
        record["run_id"] = lock.get("id")  # runlock's addition: the run.lock next to it
        path = record_dir / (s.record_filename or f"{fn.__name__}{RECORD_SUFFIX}")
        if not path.name.endswith(".json"):
            path = path.with_name(path.stem + ".json")
        out: Any = record
        if s.chain_records and path.exists():
            try:
                previous = json.loads(path.read_text())
            except (OSError, ValueError):
                previous = None
            if previous is not None:
                out = [*previous, record] if isinstance(previous, list) else [previous, record]
        write_record(path, out)


def _lock_value(value: Any) -> Any:
    """A parameter as run.lock records it: a path as its text, other values as pycrumbs formats them."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    formatted = _format_json(value, 200)
    return formatted if isinstance(formatted, str) else json.loads(json.dumps(formatted))  # tuples as lists


def _keep_earlier_lock(record_dir: Path) -> None:
    """A second run in the same directory: the earlier ``run.lock`` moves to ``.runlock/earlier/``."""
    from ...record import lockfile
    from ...record.rundir import LOCK_NAME

    lock = record_dir / LOCK_NAME
    if not lock.exists():
        return
    try:
        earlier_id = str(lockfile.load_lock(lock).get("id") or "")
    except Exception:  # noqa: BLE001 - an unreadable lock is kept all the same
        earlier_id = ""
    target = record_dir / EARLIER_LOCKS
    target.mkdir(parents=True, exist_ok=True)
    name = f"{earlier_id or 'unknown'}.lock"
    while (target / name).exists():
        name = f"{earlier_id or 'unknown'}-{random.randrange(16**6):06x}.lock"
    os.replace(lock, target / name)


def _load(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj
