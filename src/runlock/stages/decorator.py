"""``@runlock.stage``: a plain function with a dataclass config becomes a tracked stage.

The decorator returns a :class:`Stage`, a callable object with methods (like joblib's
``Memory.cache``): calling it runs tracked and returns the function's value, ``.debug`` keeps
the locals, ``.invoke`` takes a config mapping (reproduce, workers), ``.__wrapped__`` is the
plain function. It pickles by reference, so workers re-import it.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import sys
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, cast, overload

from ..config import plain as plainconfig
from ..config.schema import input_fields, input_patterns, schema_of
from ..errors import ConfigKeyError, UsageError
from .run import Outcome, StageOptions, execute

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from ..config.plain import PlainConfig

P = ParamSpec("P")
R = TypeVar("R")
_SIMPLE = (str, int, float, bool, type(None), Path, enum.Enum)


def _is_simple(value: Any) -> bool:
    if isinstance(value, _SIMPLE):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_simple(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_simple(v) for k, v in value.items())
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


class Stage(Generic[P, R]):
    """A tracked stage. Call it like the function; see :func:`stage` for the options."""

    # Copied from the function by functools.update_wrapper in __init__.
    __name__: str
    __qualname__: str

    def __init__(self, fn: Callable[P, R], options: StageOptions, *, localns: Mapping[str, Any] | None = None) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.schema = schema_of(fn, localns)
        # Fields declared with runlock.Input are data inputs, hashed like track_data entries.
        inputs = [f for f in input_fields(self.schema) if f not in options.track_data]
        if inputs:
            match, ignore = input_patterns(self.schema)
            options = dataclasses.replace(options, track_data=(*options.track_data, *inputs),
                                          data_match={**match, **options.data_match},
                                          data_ignore={**ignore, **options.data_ignore})
        self.options = options

    # -- calling ---------------------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        cfg, called, objects = self._config_from_call(args, kwargs)
        outcome = self._execute(cfg, called=called, objects=objects, reraise=True)
        return outcome.value  # type: ignore[no-any-return]

    def debug(self, *args: Any, **kwargs: Any) -> Outcome:
        """Run tracked and keep the function's local variables (also when it raises).

        Returns an :class:`~runlock.stages.run.Outcome` with ``.locals``, ``.error``, ``.run_dir``,
        ``.value``; the exception is not raised.
        """
        cfg, called, objects = self._config_from_call(args, kwargs)
        return self._execute(cfg, called=called, objects=objects, reraise=False, capture_locals=True)

    def invoke(
        self,
        config: Mapping[str, Any] | DictConfig | None = None,
        *,
        overrides: Sequence[str] = (),
        extra_lock: dict[str, Any] | None = None,
        save_dir: str | None = None,
        experiment: str | None = None,
        capture_locals: bool = False,
        reraise: bool = False,
        called_params: dict[str, Any] | None = None,
    ) -> Outcome:
        """Run with a config mapping (e.g. a recorded one) plus dotlist ``overrides``."""
        cfg = self.compose(base=config, overrides=overrides)
        options = self.options if save_dir is None else dataclasses.replace(self.options, save_dir=save_dir, dir_field=None)
        return self._execute(
            cfg,
            called=called_params,
            options=options,
            extra_lock=extra_lock,
            experiment=experiment,
            capture_locals=capture_locals,
            reraise=reraise,
        )

    def _execute(
        self,
        cfg: DictConfig | PlainConfig,
        *,
        called: dict[str, Any] | None = None,
        objects: dict[str, Any] | None = None,
        options: StageOptions | None = None,
        **kw: Any,
    ) -> Outcome:
        fn = self.fn
        if objects:
            fn = functools.partial(self.fn, **objects)
            functools.update_wrapper(fn, self.fn)
        return execute(fn, self.schema, cfg, options or self.options, called_params=called, **kw)

    # -- configuration ---------------------------------------------------------------------

    def compose(
        self,
        *,
        base: Any = None,
        config_files: Sequence[str | Path] = (),
        overrides_files: Sequence[str | Path] = (),
        overrides: Sequence[str] = (),
        experiment: DictConfig | None = None,
        experiment_name: str | None = None,
    ) -> DictConfig:
        """Defaults <- base <- config files <- experiment <- override files <- dotlist."""
        from omegaconf import DictConfig

        from ..config import omega as cfgmod

        cfg = cfgmod.base_config(self.schema, base)
        for f in config_files:
            data = cfgmod.load_yaml(f)
            if isinstance(data, DictConfig) and "experiments" in data:
                data = data.copy()
                del data["experiments"]
            cfg = cfgmod.merge(cfg, data, schema=self.schema, source=str(f))
        if experiment is not None:
            cfg = cfgmod.merge(cfg, experiment, schema=self.schema, source=f"experiment '{experiment_name}'")
        for f in overrides_files:
            cfg = cfgmod.merge(cfg, cfgmod.load_yaml(f), schema=self.schema, source=str(f))
        if overrides:
            cfg = cfgmod.merge(cfg, cfgmod.parse_dotlist(overrides), schema=self.schema, source="command line")
        return cfg

    def _config_from_call(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[DictConfig | PlainConfig, dict[str, Any], dict[str, Any]]:
        """Config from a library call: ``f(Config(...))``, ``f(cfg, lr=0.1)`` or ``f(lr=0.1)``."""
        schema = self.schema
        if schema.mode == "dataclass" and not kwargs and len(args) <= 1 and schema.cls is not None:
            # f() or f(Config(...)): nothing to merge, often nothing OmegaConf would change
            plain = plainconfig.plain_config(schema.cls, args[0] if args else None)
            if plain is not None:
                return plain, plainconfig.to_plain(plain), {}
        from omegaconf import OmegaConf

        from ..config import omega as cfgmod

        if schema.mode == "dataclass":
            base: Any = None
            if len(args) > 1:
                raise UsageError(f"{self.__name__}() takes one config argument, got {len(args)}.")
            if args:
                base = args[0]
            elif schema.param in kwargs:
                base = kwargs.pop(schema.param)
            cfg = cfgmod.base_config(schema, base)
            if kwargs:
                cfg = cfgmod.merge(cfg, kwargs, schema=schema, source=f"{self.__name__}() arguments")
            called = (
                cast("dict[str, Any]", OmegaConf.to_container(cfg, resolve=False)) if base is None else _describe(base, kwargs)
            )
            return cfg, called, {}
        try:
            bound = inspect.signature(self.fn).bind_partial(*args, **kwargs)
        except TypeError as exc:
            valid = list(schema.defaults)
            raise ConfigKeyError(f"{self.__name__}(): {exc}. Valid parameters: {', '.join(valid)}.") from None
        values = dict(bound.arguments)
        objects = {k: v for k, v in values.items() if not _is_simple(v)}
        simple = {k: v for k, v in values.items() if k not in objects}
        defaults = {k: v for k, v in schema.defaults.items() if k not in objects and _is_simple(v)}
        cfg = OmegaConf.create({k: str(v) if isinstance(v, Path) else v for k, v in defaults.items()})
        if simple:
            cfg = OmegaConf.merge(cfg, {k: str(v) if isinstance(v, Path) else v for k, v in simple.items()})  # type: ignore[assignment]
        called = {k: (repr(v) if k in objects or not _is_simple(v) else v) for k, v in {**schema.defaults, **values}.items()}
        return cfg, called, objects

    # -- misc --------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.options.name

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle by reference: workers re-import the module (or, for a script run as
        # ``__main__``, its file: their own ``__main__`` is loky's or submitit's) and take the
        # object by qualified name. Options travel along (a sweep may change the log level).
        src = getattr(self.fn, "__code__", None)
        path = src.co_filename if src is not None and not src.co_filename.startswith("<") else None
        return (_load_stage, (self.__module__, self.__qualname__, path, self.options))

    def __repr__(self) -> str:
        return f"<runlock.Stage {self.options.name!r} of {self.__module__}.{self.__qualname__}>"

    def map(self, tasks: Sequence[Any], **kwargs: Any) -> Any:
        """Apply the stage to every task inside ONE run (one directory, one run.lock).

        A task is a mapping merged into the config, or a value set at ``key=``. Options:
        ``config``, ``overrides``, ``n_jobs``, ``backend`` (``inprocess`` | ``joblib`` |
        ``slurm``), ``resume`` (an earlier map's run directory: runs only what is not done),
        ``chunk_size``, ``worker_pool``, and SLURM resources (``timeout_min``, ...).
        Returns a :class:`~runlock.stages.stage_map.MapResult` (``.results()``, ``.summary``).
        """
        from .stage_map import map_stage

        return map_stage(self, tasks, **kwargs)


#: True while a worker imports a stage script by path (runlock.main() then does nothing).
_WORKER_IMPORT = False


def _load_stage(module: str, qualname: str, path: str | None, options: StageOptions) -> Stage[Any, Any]:
    """Unpickle a stage: import it by module (or script file) and qualified name."""
    import copy
    import importlib

    if module == "__main__" and path is not None:
        stage = _stage_from_file(path, qualname)
    else:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        stage = obj
    if stage.options != options:
        stage = copy.copy(stage)
        stage.options = options
    return stage


def _stage_from_file(path: str, qualname: str) -> Stage[Any, Any]:
    """Import a script by path under a private module name and return its stage object."""
    import importlib.util

    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__file__", None) and Path(cast(str, main.__file__)).resolve() == Path(path).resolve():
        obj: Any = main  # unpickled in the very process that runs the script
    else:
        name = "__runlock_main_" + format(zlib.crc32(str(Path(path).resolve()).encode()), "08x")
        obj = sys.modules.get(name)
        if obj is None:
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot import the stage script {path}")
            obj = importlib.util.module_from_spec(spec)
            sys.modules[name] = obj
            sys.path.insert(0, str(Path(path).parent))
            global _WORKER_IMPORT
            _WORKER_IMPORT = True  # a module-level runlock.main() must not run again here
            try:
                spec.loader.exec_module(obj)
            finally:
                _WORKER_IMPORT = False
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


def _describe(base: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    if dataclasses.is_dataclass(base) and not isinstance(base, type):
        out = dataclasses.asdict(base)
    elif type(base).__name__ == "DictConfig":  # (OmegaConf is imported: it made one)
        from omegaconf import OmegaConf

        out = OmegaConf.to_container(base, resolve=False)  # type: ignore[assignment]
    else:
        out = dict(base)
    out.update(kwargs)
    return out


#: Lock sections runlock writes itself: a user collector cannot take one over.
_RUNLOCK_SECTIONS = frozenset({
    "schema", "id", "stage", "status", "run_dir", "experiment", "pid", "hostname", "heartbeat",
    "timing", "function", "config", "seed", "seeded", "environment", "packages", "editable",
    "resumed", "result", "error", "warnings", "data", "git", "upstream", "outputs", "map",
    "sweep", "reproduces", "package_sources",
})


def _check_collectors(collectors: Sequence[Any]) -> None:
    """Fail at decoration, not in the middle of a run, for a collector that cannot work."""
    keys: set[str] = set()
    for c in collectors:
        key = getattr(c, "key", None)
        if not isinstance(key, str) or not key or not callable(getattr(c, "start", None)) or not callable(getattr(c, "finish", None)):
            raise UsageError(
                f"{c!r} is not a collector.",
                hint="A collector has a `key` (its lock section) and `start(ctx)` / `finish(ctx)` methods (runlock.Collector).",
            )
        if key in _RUNLOCK_SECTIONS or key in keys:
            taken = "runlock's own" if key in _RUNLOCK_SECTIONS else "another collector's"
            raise UsageError(
                f"Collector key {key!r} is {taken} lock section.",
                hint="Give the collector a key of its own (e.g. prefixed with your project's name).",
            )
        keys.add(key)


@overload
def stage(fn: Callable[P, R], /) -> Stage[P, R]: ...


@overload
def stage(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    save_dir: str | None = None,
    **options: Any,
) -> Callable[[Callable[P, R]], Stage[P, R]]: ...


def stage(fn: Callable[P, R] | None = None, /, *, name: str | None = None, save_dir: str | None = None, **options: Any) -> Any:
    """Make ``fn`` a tracked stage. Usable as ``@stage`` or ``@stage(name=..., save_dir=...)``.

    Options (all optional): ``save_dir`` run directory template (``${stage}``, ``${now:FMT}``,
    ``${run.id}`` and config keys interpolate; default ``<results>/<stage>/<timestamp>``),
    ``dir_field`` / ``subdir_field`` / ``inject_dir`` / ``include_timestamp`` /
    ``include_uuid`` (placement, as in pycrumbs), ``seed_field`` (default ``"seed"``),
    ``track_data`` (config fields or paths to hash), ``snapshot`` and ``snapshot_*`` (source
    snapshot settings), ``files_of_interest``, ``root`` (results root), ``collectors``
    (:class:`runlock.Collector` objects adding their own lock sections, after the built-in ones).
    """
    known = {f.name for f in dataclasses.fields(StageOptions)}
    unknown = set(options) - known
    if unknown:
        raise UsageError(
            f"Unknown stage option(s): {', '.join(sorted(unknown))}.",
            hint=f"Valid options: {', '.join(sorted(known - {'name'}))}.",
        )
    for key in ("track_data", "snapshot_include", "snapshot_exclude", "files_of_interest", "collectors"):
        if key in options and isinstance(options[key], str):
            options[key] = (options[key],)
        elif key in options:
            options[key] = tuple(options[key])

    if "collectors" in options:
        _check_collectors(options["collectors"])

    caller = sys._getframe(1)  # noqa: SLF001 - resolves annotations naming local classes
    localns = dict(caller.f_locals) if caller.f_code.co_name != "<module>" else None
    del caller

    def wrap(f: Callable[P, R]) -> Stage[P, R]:
        return Stage(f, StageOptions(name=name or f.__name__, save_dir=save_dir, **options), localns=localns)

    return wrap(fn) if fn is not None else wrap
