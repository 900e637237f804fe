"""Config schemas: which dataclass (or keyword parameters) a stage function takes, and its
fields. No OmegaConf here: a stage is decorated, and its ``--help`` built, without importing it.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from pathlib import PurePath
from typing import Any

INPUT_MARK = "runlock_input"


INPUT_MATCH = "runlock_input_match"
INPUT_IGNORE = "runlock_input_ignore"


def Input(  # noqa: N802 - reads as a type
    default: Any = dataclasses.MISSING,
    *,
    match: str | typing.Sequence[str] | None = None,
    ignore: str | typing.Sequence[str] | None = None,
    **kwargs: Any,
) -> Any:
    """A dataclass field whose value is a data path to hash for the run's lock.

    ``data: str = runlock.Input("data/train", match=["*.csv"], ignore=[".cache/*"])``: of a
    directory, hash only the files matching ``match`` and none matching ``ignore`` (glob
    patterns on paths relative to the directory, as dirhash takes them); the lock records them.
    """
    metadata = dict(kwargs.pop("metadata", {}) or {})
    metadata[INPUT_MARK] = True
    for key, value in ((INPUT_MATCH, match), (INPUT_IGNORE, ignore)):
        if value is None:
            continue
        patterns = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, (list, tuple)) else None
        if patterns is None or not all(isinstance(p, str) and p for p in patterns):
            from ..errors import UsageError

            arg = "match" if key == INPUT_MATCH else "ignore"
            raise UsageError(f"runlock.Input({arg}={value!r}): patterns must be non-empty strings.",
                             hint=f'e.g. runlock.Input("data/", {arg}=["*.csv"])')
        metadata[key] = patterns
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


_SECRET_VALUE = re.compile(r"<secret: ([A-Za-z_][A-Za-z0-9_]*)>")


def Secret(env: str) -> str:  # noqa: N802 - reads as a type
    """A config value taken from the environment variable ``env`` when the stage is called, and
    never written anywhere: the lock, config.yaml, the index, the store and MLflow record it as
    ``"<secret: ENV>"``; ``runlock reproduce`` reads the variable again.

    ``api_key: str = runlock.Secret("OPENAI_API_KEY")`` (or ``api_key=<secret: OPENAI_API_KEY>``
    on the command line). A run whose variable is unset stops before it starts (ConfigError).
    """
    if not isinstance(env, str) or not _SECRET_VALUE.fullmatch(f"<secret: {env}>"):
        from ..errors import ConfigError

        raise ConfigError(f"runlock.Secret({env!r}): not an environment variable name.",
                          hint="name it like OPENAI_API_KEY (letters, digits, underscores).")
    return f"<secret: {env}>"


def secret_env(value: Any) -> str | None:
    """The environment variable a ``"<secret: ENV>"`` config value names, else None."""
    if isinstance(value, str) and value.startswith("<secret: "):
        m = _SECRET_VALUE.fullmatch(value)
        return m.group(1) if m else None
    return None


def scan_secrets(plain: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, str], list[str]]:
    """``({dotted key: ENV}, [dotted keys that look like secrets but hold a value in clear])``
    of a plain config (nested dicts and lists): one pass, microseconds for a usual config."""
    from ..redact import looks_secret_field

    secrets: dict[str, str] = {}
    clear: list[str] = []

    def walk(node: Any, path: str, name: str) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k), str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]", name)
        elif isinstance(node, str) and node:
            env = secret_env(node)
            if env is not None:
                secrets[path] = env
            elif looks_secret_field(name) or ("://" in node and "@" in node and ":" in
                                              node.split("://", 1)[1].split("@", 1)[0]):
                clear.append(path)

    walk(plain, prefix, "")
    return secrets, clear


def fill_secrets(value: Any) -> Any:
    """``value`` (the stage's argument: a dataclass instance, a dict, nested) with every
    ``"<secret: ENV>"`` replaced by ``os.environ[ENV]``; other values are left as they are."""
    import os

    env = secret_env(value)
    if env is not None:
        if env not in os.environ:
            from ..errors import ConfigError

            raise ConfigError(f"secret config value needs the environment variable ${env}.",
                              hint=f"export {env}=... before running the stage.")
        return os.environ[env]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            old = getattr(value, f.name)
            new = fill_secrets(old)
            if new is not old:
                object.__setattr__(value, f.name, new)  # (frozen dataclasses too)
        return value
    if isinstance(value, dict):
        for k, v in value.items():
            new = fill_secrets(v)
            if new is not v:
                value[k] = new
        return value
    if isinstance(value, list):
        for i, v in enumerate(value):
            new = fill_secrets(v)
            if new is not v:
                value[i] = new
        return value
    return value


# --------------------------------------------------------------------------------------------
# schema discovery


@dataclasses.dataclass(frozen=True)
class Schema:
    """How a stage function receives its configuration.

    ``dataclass`` mode: the function takes one dataclass parameter (``param``).
    ``kwargs`` mode: the function's own keyword parameters form the config.
    """

    mode: str  # "dataclass" | "kwargs"
    cls: type | None
    param: str | None
    defaults: dict[str, Any]
    annotations: dict[str, Any]

    @property
    def field_names(self) -> list[str]:
        if self.cls is not None:
            return [f.name for f in dataclasses.fields(self.cls)]
        return list(self.defaults)


def schema_of(fn: Callable[..., Any], localns: Mapping[str, Any] | None = None) -> Schema:
    """The config schema of a stage function. ``localns``: the decorating scope, so that
    string annotations (``from __future__ import annotations``) naming local classes resolve."""
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn, localns=dict(localns) if localns else None)
    except Exception:  # noqa: BLE001 - unresolvable forward refs: fall back to raw annotations
        hints = {k: p.annotation for k, p in sig.parameters.items()}
    params = [
        p
        for p in sig.parameters.values()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if params:
        first = params[0]
        ann = hints.get(first.name, first.annotation)
        if isinstance(ann, type) and dataclasses.is_dataclass(ann):
            return Schema("dataclass", ann, first.name, {}, {})
        if first.default is not inspect.Parameter.empty and dataclasses.is_dataclass(first.default):
            cls = type(first.default)
            return Schema("dataclass", cls, first.name, {}, {})
    defaults = {
        p.name: (None if p.default is inspect.Parameter.empty else p.default) for p in params
    }
    annotations = {p.name: hints.get(p.name, Any) for p in params}
    return Schema("kwargs", None, None, defaults, annotations)


def input_fields(schema: Schema) -> list[str]:
    """Dotted names of fields declared with :func:`Input` (nested dataclasses included)."""
    return list(_inputs(schema))


def input_patterns(schema: Schema) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """``(match, ignore)``: the patterns given to :func:`Input`, by dotted field name."""
    match: dict[str, tuple[str, ...]] = {}
    ignore: dict[str, tuple[str, ...]] = {}
    for name, meta in _inputs(schema).items():
        if INPUT_MATCH in meta:
            match[name] = meta[INPUT_MATCH]
        if INPUT_IGNORE in meta:
            ignore[name] = meta[INPUT_IGNORE]
    return match, ignore


def _inputs(schema: Schema) -> dict[str, Mapping[str, Any]]:
    """``{dotted name: field metadata}`` of the fields declared with :func:`Input`."""
    if schema.cls is None:
        return {}
    out: dict[str, Mapping[str, Any]] = {}

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            t = hints.get(f.name)
            if f.metadata.get(INPUT_MARK):
                out[prefix + f.name] = f.metadata
            elif isinstance(t, type) and dataclasses.is_dataclass(t):
                walk(t, f"{prefix}{f.name}.")

    walk(schema.cls, "")
    return out


def _type_name(t: Any) -> str:
    if isinstance(t, type):
        return t.__name__
    return str(t).replace("typing.", "")


REQUIRED = "(required)"


def describe_fields(schema: Schema) -> list[tuple[str, str, str, str]]:
    """(dotted name, type, default, help) for every leaf field: what ``--help`` prints. The
    default is :data:`REQUIRED` for a field without one (or OmegaConf's ``???``); the help is
    ``field(metadata={"help": ...})``, else the comment after the field in the source."""
    rows: list[tuple[str, str, str, str]] = []
    if schema.cls is None:
        for name, default in schema.defaults.items():
            rows.append((name, _type_name(schema.annotations.get(name, Any)), repr(default), ""))
        return rows

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        comments = _field_comments(cls)
        for f in dataclasses.fields(cls):
            t = hints.get(f.name, f.type)
            if isinstance(t, type) and dataclasses.is_dataclass(t):
                walk(t, f"{prefix}{f.name}.")
                continue
            if f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                value = dataclasses.MISSING
            if value is dataclasses.MISSING or value == "???":
                default = REQUIRED
            else:
                default = repr(str(value) if isinstance(value, PurePath) else value)
            help_ = str(f.metadata.get("help", "") or comments.get(f.name, ""))
            rows.append((prefix + f.name, _type_name(t), default, help_))

    walk(schema.cls, "")
    return rows


def _field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` of the ``# ...`` after each field in the class's source (only
    ``--help`` asks; {} when the source is not available)."""
    import io
    import tokenize

    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return {}
    line_name: dict[int, str] = {}
    for i, tok in enumerate(tokens[:-1]):
        nxt = tokens[i + 1]
        if tok.type == tokenize.NAME and nxt.type == tokenize.OP and nxt.string == ":" and tok.start[1] > 0:
            prev = tokens[i - 1] if i else None
            if prev is None or prev.type in (tokenize.INDENT, tokenize.NEWLINE, tokenize.DEDENT, tokenize.NL):
                line_name.setdefault(tok.start[0], tok.string)
        if tok.type == tokenize.COMMENT and tok.start[0] in line_name:
            out.setdefault(line_name[tok.start[0]], tok.string.lstrip("#").strip())
    return out
