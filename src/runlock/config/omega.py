"""Configuration: a dataclass schema, composed with OmegaConf from files, experiments and
command-line overrides, validated, and resolved once per run.

OmegaConf errors are translated into :class:`ConfigKeyError` / :class:`ConfigTypeError` whose
messages name the key and list what would have been valid.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import fnmatch
import typing
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf import errors as oc_errors

from ..errors import ConfigError, ConfigKeyError, ConfigTypeError
from . import plain as plainconfig
from .plain import PlainConfig
from .schema import Schema, _type_name

#: The instant ``${now:...}`` resolves to; one per run so every field sees the same time.
_NOW: contextvars.ContextVar[datetime | None] = contextvars.ContextVar("runlock_now", default=None)


def _now_resolver(fmt: str = "%Y-%m-%d_%H-%M-%S") -> str:
    return (_NOW.get() or datetime.now()).strftime(fmt)


if hasattr(OmegaConf, "register_resolver"):  # OmegaConf >= 2.4
    OmegaConf.register_resolver("now", _now_resolver, replace=True, use_cache=False)
else:  # pragma: no cover - OmegaConf 2.3
    OmegaConf.register_new_resolver("now", _now_resolver, replace=True, use_cache=False)


# --------------------------------------------------------------------------------------------
# composition


def base_config(schema: Schema, base: Any = None) -> DictConfig:
    """The schema's defaults, optionally updated by ``base`` (a dataclass instance or mapping)."""
    if isinstance(base, PlainConfig):  # composed without OmegaConf; now something is merged
        base = plainconfig.to_argument(base)
    try:
        if schema.cls is not None:
            if base is not None and dataclasses.is_dataclass(base) and not isinstance(base, type):
                cfg = OmegaConf.structured(base)  # not also the class: one structured() per call
            else:
                cfg = OmegaConf.structured(schema.cls)
                if base is not None:
                    cfg = OmegaConf.merge(cfg, _as_mapping(base))
        else:
            cfg = OmegaConf.create(_plain_defaults(schema.defaults))
            if base is not None:
                _check_keys(cfg, _as_mapping(base), schema)
                cfg = OmegaConf.merge(cfg, _as_mapping(base))
    except oc_errors.OmegaConfBaseException as exc:
        raise translate(exc, cfg=None, schema=schema) from None
    assert isinstance(cfg, DictConfig)
    return cfg


def _plain_defaults(defaults: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in defaults.items():
        out[k] = str(v) if isinstance(v, Path) else v
    return out


def _as_mapping(obj: Any) -> Any:
    if isinstance(obj, (DictConfig, Mapping)):
        return obj
    raise ConfigTypeError(f"A config must be a dataclass instance or a mapping, not {type(obj).__name__}.")


def _check_keys(cfg: DictConfig, update: Any, schema: Schema) -> None:
    for key in update:
        if key not in cfg:
            raise unknown_key(str(key), list(cfg.keys()))


def unknown_key(key: str, valid: Sequence[Any], *, source: str | None = None) -> ConfigKeyError:
    names = [str(v) for v in valid]
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], names, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return ConfigKeyError(
        f"Unknown config key '{key}'{f' (from {source})' if source else ''}. Valid keys: {', '.join(names) or '(none)'}.",
        hint=f"{hint}Run with --help to list every field.",
    )


def translate(
    exc: oc_errors.OmegaConfBaseException,
    *,
    cfg: DictConfig | None,
    schema: Schema | None,
    source: str | None = None,
) -> ConfigError:
    """An OmegaConf error as a runlock ConfigError that names the key and what was expected."""
    full_key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
    if isinstance(exc, (oc_errors.ConfigKeyError, oc_errors.ConfigAttributeError)):
        parent = full_key.rsplit(".", 1)[0] if "." in str(full_key) else ""
        valid: list[Any] = []
        if cfg is not None:
            node = OmegaConf.select(cfg, parent) if parent else cfg
            if isinstance(node, DictConfig):
                valid = list(node.keys())
        elif schema is not None:
            valid = schema.field_names
        return unknown_key(str(full_key), valid, source=source)
    origin = f" (from {source})" if source else ""
    if isinstance(exc, oc_errors.ValidationError):
        expected = ""
        if cfg is not None:
            try:
                node = cfg._get_node(str(full_key))  # noqa: SLF001 - only way to read the type
                expected = _type_name(node._metadata.ref_type)  # type: ignore[union-attr]  # noqa: SLF001
            except Exception:  # noqa: BLE001
                expected = ""
        value = getattr(exc, "value", None)
        want = f"expected {expected}, " if expected and expected != "Any" else ""
        return ConfigTypeError(
            f"Invalid value for config key '{full_key}'{origin}: {want}got {value!r}.",
            hint=str(exc.msg).splitlines()[0] if getattr(exc, "msg", None) else None,
        )
    if isinstance(exc, oc_errors.MissingMandatoryValue):
        return ConfigError(
            f"Missing value for config key '{full_key}'.",
            hint=f"Set it on the command line: {full_key}=...",
        )
    if isinstance(exc, oc_errors.InterpolationResolutionError):
        return ConfigError(f"Cannot resolve config key '{full_key}': {exc.msg}")
    return ConfigError(f"Invalid config at '{full_key}': {getattr(exc, 'msg', exc)}")


def load_yaml(path: str | Path) -> DictConfig | ListConfig:
    """Load a YAML file; a missing or broken file is a ConfigError naming the file and line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Config file not found: {p}.")
    try:
        data = OmegaConf.load(p)
    except Exception as exc:  # yaml.YAMLError subclasses, OmegaConf errors
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"Cannot parse YAML file {p}{where}: {problem}.") from None
    if isinstance(data, DictConfig) and (p.parent / "run.lock").is_file():
        _unreplay_run_dir(data, p.parent)
    return data


def _unreplay_run_dir(data: DictConfig, run_dir: Path) -> None:
    """A run's config.yaml replayed (``--config results/train/<id>/config.yaml``) starts a fresh
    run: the keys the run set to its own directory (``save_dir``...) get back the value given
    to that run (a template, or nothing: the default placement), not the old directory."""
    from ..errors import RunlockError
    from ..record.lockfile import load_lock

    try:
        lock = load_lock(run_dir)
    except RunlockError:
        return
    function = lock.get("function") or {}
    altered = function.get("altered_parameters") or {}
    given = function.get("parameters") or {}
    own_dirs = {str(lock.get("run_dir")), str(run_dir.absolute())}
    with open_dict(data):
        for key, value in altered.items():
            if key in data and isinstance(value, str) and value in own_dirs and data[key] == value:
                if key in given:
                    data[key] = given[key]
                else:
                    del data[key]


def parse_dotlist(overrides: Sequence[str]) -> DictConfig:
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"Override '{item}' is not of the form key=value.",
                hint="e.g. lr=0.1 model.depth=4",
            )
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except oc_errors.OmegaConfBaseException as exc:
        raise ConfigError(f"Cannot parse overrides {list(overrides)}: {exc.msg}") from None


def merge(cfg: DictConfig, update: Any, *, schema: Schema, source: str) -> DictConfig:
    """Merge ``update`` into ``cfg`` validating keys and types against the schema."""
    if not isinstance(update, DictConfig) and not isinstance(update, Mapping):
        raise ConfigError(f"{source} must hold a mapping of config keys, not {type(update).__name__}.")
    try:
        if schema.cls is None:
            for key in update:
                if key not in cfg:
                    raise unknown_key(str(key), list(cfg.keys()), source=source)
        merged = OmegaConf.merge(cfg, update)
    except oc_errors.OmegaConfBaseException as exc:
        raise translate(exc, cfg=cfg, schema=schema, source=source) from None
    except (TypeError, ValueError) as exc:  # e.g. ``layers.0=5``: a mapping merged into a list
        raise _shape_error(cfg, update, source) or ConfigTypeError(
            f"Cannot merge {source} into the config: {exc}.") from None
    assert isinstance(merged, DictConfig)
    return merged


def _shape_error(cfg: Any, update: Any, source: str, prefix: str = "") -> ConfigTypeError | None:
    """The first key where ``update`` puts a mapping on a list or a list on a mapping."""
    if not isinstance(update, (DictConfig, Mapping)) or not isinstance(cfg, DictConfig):
        return None
    for key in update:
        if key not in cfg:
            continue
        full = f"{prefix}{key}"
        old, new = cfg._get_node(key), update[key]  # noqa: SLF001 - the node, not its value
        is_list = isinstance(old, ListConfig)
        if is_list and isinstance(new, (DictConfig, Mapping)):
            item = next(iter(new), "0")
            return ConfigTypeError(
                f"Cannot set config key '{full}.{item}' (from {source}): '{full}' is a list, "
                "and its items cannot be set one by one.",
                hint=f"set the whole list, e.g. {full}=[...]")
        if isinstance(old, DictConfig) and isinstance(new, (ListConfig, list)):
            return ConfigTypeError(
                f"Invalid value for config key '{full}' (from {source}): it is a mapping, not a list.",
                hint=f"set its keys, e.g. {full}.<key>=...")
        found = _shape_error(old, new, source, f"{full}.")
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------------------------
# experiments: named sub-configs in a YAML tree ("ablation/no_aug")


def _is_experiment(node: Any, fields: set[str]) -> bool:
    """An experiment: an empty mapping (``baseline: {}`` keeps the defaults), or a mapping with a
    config field or a value that is not a mapping (a misspelt key: reported when chosen). A
    mapping of mappings none of which is a field name is a group of experiments."""
    if node is None:
        return True
    if not isinstance(node, DictConfig):
        return False
    if not node:
        return True
    return any(str(k) in fields or not isinstance(node._get_node(k), DictConfig) for k in node)  # noqa: SLF001


def _check_experiment_keys(name: str, node: Any, fields: Sequence[str], source: str) -> None:
    if not isinstance(node, DictConfig):
        raise ConfigError(f"Experiment '{name}' in {source} is not a mapping of config keys.")
    for key in node:
        if str(key) not in fields:
            err = unknown_key(str(key), list(fields), source=f"experiment '{name}' in {source}")
            raise err


def validate_experiment_name(name: str) -> None:
    """Experiment names become sub-directories: they must stay inside the results root."""
    parts = name.split("/")
    if name.startswith("/") or name.endswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ConfigError(
            f"Experiment name '{name}' is not a relative path of plain names.",
            hint="Use names like 'ablation/no_aug' (no '..', no leading or trailing '/').",
        )
    from ..record.safe import check_experiment  # no '${', no control characters either

    check_experiment(name, source="the experiments file")


def select_experiments(
    tree: DictConfig, pattern: str, fields: Sequence[str], *, source: str = "the experiments file"
) -> list[tuple[str, DictConfig]]:
    """Experiments whose name matches ``pattern`` (exact name or shell wildcard); a chosen one
    with a key that is not a config field is a :class:`ConfigKeyError` naming both."""
    validate_experiment_name(pattern.replace("*", "x").replace("?", "x"))
    exps = iter_experiments(tree, fields)
    chosen = [(n, c) for n, c in exps if fnmatch.fnmatchcase(n, pattern) or n == pattern]
    if not chosen:
        names = [n for n, _ in exps]
        raise ConfigError(
            f"No experiment named '{pattern}'. Known experiments: {', '.join(names) or '(none)'}.",
        )
    for name, node in chosen:
        validate_experiment_name(name)
        _check_experiment_keys(name, node, fields, source)
    return chosen


def iter_experiments(tree: DictConfig, fields: Sequence[str]) -> list[tuple[str, Any]]:
    """``(name, overrides)`` of every experiment of ``tree``; a top-level scalar is no experiment (not reported),
    a scalar inside a group is (reported as not a mapping when chosen)."""
    out: list[tuple[str, Any]] = []
    fset = set(fields)

    def walk(node: DictConfig, prefix: str) -> None:
        for key in node:
            child = node._get_node(key)  # noqa: SLF001 - None-valued keys too (``baseline:``)
            name = f"{prefix}{key!s}"
            if isinstance(child, DictConfig) and not child._is_none():  # noqa: SLF001
                if _is_experiment(child, fset):
                    out.append((name, child))
                else:
                    walk(child, f"{name}/")
            elif child is None or child._is_none():  # noqa: SLF001 - ``baseline:`` keeps the defaults
                out.append((name, OmegaConf.create({})))
            elif prefix:
                out.append((name, child))

    walk(tree, "")
    return out


# --------------------------------------------------------------------------------------------
# resolution


def resolve(cfg: DictConfig, *, now: datetime, run_id: str, stage: str) -> DictConfig:
    """Resolve every interpolation once: ``${now:FMT}`` (one instant), ``${run.id}``, ``${stage}``."""
    cfg = cfg.copy()
    extra = {k: v for k, v in (("run", {"id": run_id}), ("stage", stage)) if k not in cfg}
    token = _NOW.set(now)
    try:
        with open_dict(cfg):
            for k, v in extra.items():
                cfg[k] = v
        OmegaConf.resolve(cfg)
        with open_dict(cfg):
            for k in extra:
                del cfg[k]
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            raise ConfigError(
                f"Missing value for config key{'s' if len(missing) > 1 else ''} {', '.join(missing)}.",
                hint=f"Set it on the command line: {missing[0]}=...",
            )
    except oc_errors.OmegaConfBaseException as exc:
        raise translate(exc, cfg=cfg, schema=None) from None
    finally:
        _NOW.reset(token)
    return cfg


def resolve_template(
    template: str, cfg: DictConfig | PlainConfig | None, *, now: datetime, run_id: str, stage: str
) -> str:
    """Resolve a directory template such as ``results/${stage}/${now:%y%m%d}`` (config keys too)."""
    quick = plainconfig.quick_template(template, now=now, run_id=run_id, stage=stage)
    if "${" not in quick:  # the common templates need no OmegaConf round trip (~2 ms)
        return quick
    base: dict[str, Any] = {"run": {"id": run_id}, "stage": stage}
    root = OmegaConf.create(base)
    if cfg is not None:
        values = (OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig)
                  else plainconfig.to_plain(cfg))
        root = typing.cast(DictConfig, OmegaConf.merge(values, root))
    with open_dict(root):
        root["__template__"] = template
    token = _NOW.set(now)
    try:
        return str(root["__template__"])
    except oc_errors.OmegaConfBaseException as exc:
        raise ConfigError(f"Cannot resolve the run directory template '{template}': {exc.msg}") from None
    finally:
        _NOW.reset(token)


def writable(cfg: DictConfig) -> contextlib.AbstractContextManager[Any]:
    """A context in which keys may be set on ``cfg`` (OmegaConf's open_dict)."""
    return open_dict(cfg)


def unresolved(cfg: DictConfig) -> dict[str, Any]:
    """The parameters as given, interpolations kept (``${now:...}`` stays a string)."""
    out = OmegaConf.to_container(cfg, resolve=False)
    return {str(k): v for k, v in out.items()} if isinstance(out, dict) else {}


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    out = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}


def to_argument(cfg: DictConfig, schema: Schema) -> Any:
    """The value handed to the stage function: the dataclass instance, or a dict of kwargs."""
    if schema.cls is not None:
        return OmegaConf.to_object(cfg)
    out = to_plain(cfg)
    for k, v in out.items():  # paths travel as strings in the config; give back Path objects
        ann, default = schema.annotations.get(k), schema.defaults.get(k)
        wants_path = isinstance(default, Path) or ann is Path or Path in typing.get_args(ann)
        if isinstance(v, str) and wants_path:
            out[k] = Path(v)
    return out


def to_yaml(cfg: DictConfig, *, resolve: bool = True) -> str:
    """config.yaml: plain YAML any tool reads (a ``Path`` field is a string, not a
    ``!!python/object`` tag that only Python's unsafe loader understands)."""
    text = OmegaConf.to_yaml(cfg, resolve=resolve)
    if "!!python/" not in text:
        return text
    from .._yaml import to_plain as yaml_plain

    values = OmegaConf.to_container(cfg, resolve=resolve, enum_to_str=True)
    return OmegaConf.to_yaml(OmegaConf.create(yaml_plain(values)))
