"""Plain configs: dataclass configs that OmegaConf would hand back unchanged, handled without it.

Most runs take the config's defaults, or an instance built in Python, with nothing to merge,
parse or interpolate. For those, OmegaConf's validation and resolution are identities, and
importing it (~75 ms) was a third of a fresh tracked run. A config qualifies when every field,
nested dataclasses included, is an ``int``, ``float``, ``bool`` or ``str`` (or ``None`` where
``Optional``) holding a value of exactly that type, and no string is an interpolation
(``${``) or OmegaConf's missing marker (``???``). Anything else (command-line overrides, config
files, lists, enums, paths) goes through OmegaConf in :mod:`runlock.config.omega`. Tests check that
both paths give the same config.yaml, lock section and function argument.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import types
import typing
from datetime import datetime
from typing import Any

_SCALARS: tuple[type, ...] = (int, float, bool, str)


class PlainConfig(dict[str, Any]):
    """A config as nested dicts, each level knowing the dataclass it came from."""

    __slots__ = ("cls",)

    def __init__(self, cls: type, values: dict[str, Any]) -> None:
        super().__init__(values)
        self.cls = cls


_FIELDS: dict[type, list[tuple[dataclasses.Field[Any], Any]] | None] = {}


def _fields(cls: type) -> list[tuple[dataclasses.Field[Any], Any]] | None:
    """``(field, type)`` of a dataclass whose every field qualifies; None if one does not."""
    if cls in _FIELDS:
        return _FIELDS[cls]
    _FIELDS[cls] = None  # a self-referencing dataclass does not qualify
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations: OmegaConf decides
        return None
    out = []
    for f in dataclasses.fields(cls):
        t = hints.get(f.name)
        if not f.init or not (_scalar_type(t) or _is_dataclass_type(t)):
            return None
        if _is_dataclass_type(t) and _fields(typing.cast(type, t)) is None:
            return None
        out.append((f, t))
    _FIELDS[cls] = out
    return out


def _is_dataclass_type(t: Any) -> bool:
    return isinstance(t, type) and dataclasses.is_dataclass(t)


def _optional_of(t: Any) -> Any:
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        args = typing.get_args(t)
        if len(args) == 2 and type(None) in args:
            return args[0] if args[1] is type(None) else args[1]
    return None


def _scalar_type(t: Any) -> bool:
    return t in _SCALARS or _optional_of(t) in _SCALARS


def _value_ok(t: Any, v: Any) -> bool:
    if v is None:
        return _optional_of(t) is not None
    t = _optional_of(t) or t
    if type(v) is not t:  # exactly: OmegaConf would convert 1 in a float field to 1.0
        return False
    return not isinstance(v, str) or ("${" not in v and v != "???")


def plain_config(cls: type, instance: Any = None) -> PlainConfig | None:
    """The config of ``cls`` (its defaults, or ``instance``'s values) if it qualifies."""
    fields = _fields(cls)
    if fields is None:
        return None
    if instance is not None and type(instance) is not cls:
        return None
    values: dict[str, Any] = {}
    for f, t in fields:
        if instance is not None:
            v = getattr(instance, f.name)
        elif f.default is not dataclasses.MISSING:
            v = f.default
        elif f.default_factory is not dataclasses.MISSING:
            v = f.default_factory()
        else:
            return None  # a required field: OmegaConf reports it as missing
        if _is_dataclass_type(t):
            sub = plain_config(t, v) if type(v) is t else None
            if sub is None:
                return None
            values[f.name] = sub
        elif _value_ok(t, v):
            values[f.name] = v
        else:
            return None
    return PlainConfig(cls, values)


def resolve(cfg: PlainConfig, **_: Any) -> PlainConfig:
    """Nothing to interpolate (that is what made it plain): a copy the run may write into."""
    return copy(cfg)


def writable(cfg: PlainConfig) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def copy(cfg: PlainConfig) -> PlainConfig:
    """A deep copy (a run's resolved config gets its seed and directory written into it)."""
    return PlainConfig(cfg.cls, {k: copy(v) if isinstance(v, PlainConfig) else v for k, v in cfg.items()})


def to_plain(cfg: PlainConfig) -> dict[str, Any]:
    return {k: to_plain(v) if isinstance(v, PlainConfig) else v for k, v in cfg.items()}


def unresolved(cfg: PlainConfig) -> dict[str, Any]:
    """The parameters as given: the same as :func:`to_plain` (a plain config has no interpolation)."""
    return to_plain(cfg)


def to_argument(cfg: PlainConfig, schema: Any = None) -> Any:
    """The dataclass instance handed to the stage (what ``OmegaConf.to_object`` builds)."""
    return cfg.cls(**{k: to_argument(v) if isinstance(v, PlainConfig) else v for k, v in cfg.items()})


def to_yaml(cfg: PlainConfig) -> str:
    """config.yaml text, as ``OmegaConf.to_yaml(cfg, resolve=True)`` writes it."""
    from .._yaml import dump_config  # imports yaml

    return dump_config(to_plain(cfg))


_SIMPLE_INTERP = re.compile(r"\$\{(stage|run\.id|now:([^}]*))\}")


def quick_template(template: str, *, now: datetime, run_id: str, stage: str) -> str:
    """``${stage}``, ``${run.id}`` and ``${now:FMT}`` of a directory template substituted; any
    other ``${...}`` (config keys) is left for OmegaConf."""

    def simple(m: re.Match[str]) -> str:
        if m.group(1) == "stage":
            return stage
        if m.group(1) == "run.id":
            return run_id
        return now.strftime(m.group(2))

    return _SIMPLE_INTERP.sub(simple, template)
