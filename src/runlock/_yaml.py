"""The one owner of YAML in runlock (like omegaconf's ``_yaml.py``): loaders, dumpers, and the
coercion of values to what YAML can hold.

Two written dialects, one per file kind:

* :func:`dump_readable` (``run.lock``): safe YAML, multi-line strings (tracebacks, diff stats)
  as ``|`` blocks, key order kept;
* :func:`dump_config` (``config.yaml`` of a plain config): the text ``OmegaConf.to_yaml`` writes,
  so both config paths give byte-identical files.

libyaml's C classes are used when PyYAML has them: ~10x faster on large locks (outputs
manifests). This module imports yaml (~10 ms): modules on paths that must not load it (``import
runlock``, a warm ``runlock ls``, the plain-config run start) import this one inside functions.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

__all__ = [
    "AliasError",
    "YAMLError",
    "dump_config",
    "dump_readable",
    "load",
    "load_data",
    "to_plain",
]

#: What the loaders raise on bad YAML.
YAMLError = yaml.YAMLError

_SafeLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SafeDumper: type = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_Dumper: type = getattr(yaml, "CDumper", yaml.Dumper)


def load(text: str | bytes) -> Any:
    """Parse YAML with a safe loader (plain Python values only); raises :data:`YAMLError`."""
    return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a safe loader (C or Python)


class AliasError(yaml.constructor.ConstructorError):
    """An alias (``*name``) in a document read by :func:`load_data`."""


class _NoAliasLoader(_SafeLoader):  # type: ignore[misc]
    """The safe loader, refusing aliases: every node is built once, so a node reached a second
    time is an alias. (The parser and composer are libyaml's C code; construction is Python,
    even with the C loader, so this check works with both.)"""

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        if node in self.constructed_objects or node in self.recursive_objects:
            raise AliasError(
                None, None, "found an alias (*name), which runlock never writes", node.start_mark,
            )  # fmt: skip
        return super().construct_object(node, deep)


def load_data(text: str | bytes) -> Any:
    """:func:`load` for files runlock writes itself (run.lock): aliases are refused
    (:class:`AliasError`). runlock never writes one, and a few hundred bytes of nested aliases
    ("billion laughs") expand to billions of values for every reader that walks the result.
    Config files keep aliases: OmegaConf reads them with its own loader."""
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a safe loader (C or Python)


# --- run.lock ----------------------------------------------------------------------------------


class ReadableDumper(_SafeDumper):  # type: ignore[misc]
    """Safe YAML with readable multi-line strings (tracebacks, diff stats)."""


def _block_str(dumper: Any, data: str) -> Any:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


ReadableDumper.add_representer(str, _block_str)


def dump_readable(data: Any) -> str:
    """``data`` (plain values, see :func:`to_plain`) as readable YAML, keys in the given order."""
    return yaml.dump(data, Dumper=ReadableDumper, sort_keys=False, allow_unicode=True, width=100)


def to_plain(obj: Any) -> Any:
    """Coerce to YAML-safe builtins (paths, tuples, sets, numpy scalars become plain values)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(to_plain(v) for v in obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    item = getattr(obj, "item", None)  # numpy / torch scalars
    if callable(item):
        try:
            return to_plain(item())
        except Exception:  # noqa: BLE001 - fall back to repr below
            pass
    return repr(obj)


# --- config.yaml, as OmegaConf writes it --------------------------------------------------------

#: strings OmegaConf's YAML dumper quotes so that they read back as strings (its _utils list)
_YAML_BOOLS = frozenset(
    {"y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE",
     "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF"}
)  # fmt: skip


def _is_number(s: str) -> bool:
    for conv in (int, float):
        try:
            conv(s)
            return True
        except ValueError:
            pass
    return False


class OmegaStyleDumper(_Dumper):  # type: ignore[misc]
    """OmegaConf's dumper: strings that would read back as a bool or a number are quoted."""


def _quoted_if_ambiguous(dumper: Any, data: str) -> Any:
    quoted = data in _YAML_BOOLS or _is_number(data)
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="'" if quoted else None)


OmegaStyleDumper.add_representer(str, _quoted_if_ambiguous)


def dump_config(data: Any) -> str:
    """``data`` (a plain config) as the text ``OmegaConf.to_yaml(cfg, resolve=True)`` writes."""
    return yaml.dump(data, default_flow_style=False, allow_unicode=True, sort_keys=False, Dumper=OmegaStyleDumper)
