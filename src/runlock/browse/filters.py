"""Parsing of run filters: ``--where key<op>value``, ``--since 3h|2d|DATE``, ``--status``.

Pure parsing into small frozen values; the index turns them into SQL and the query API applies
them, so the CLI and ``runlock.runs()`` accept exactly the same filter language.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from ..errors import UsageError

#: Effective statuses a run can be listed with ("crashed" = "running" whose process is gone,
#: "stopped" = "running" whose process is stopped on this host: SIGSTOP, Ctrl-Z).
STATUSES = ("running", "completed", "failed", "interrupted", "crashed", "stopped")
#: Sections a filter key may address explicitly; a bare key searches them in this order.
SECTIONS = ("config", "result")

# Longest operators first so ">=" is not read as ">" followed by "=value".
_OPS = ("==", "!=", ">=", "<=", "=", ">", "<")
#: Characters of an operator: a value starting with one is a typo (``lr>>1``).
_OP_CHARS = frozenset("=!<>")
_WHERE_RE = re.compile(r"^\s*([^=!<>\s][^=!<>]*?)\s*(==|!=|>=|<=|=|>|<)\s*(.*?)\s*$")
_AGE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_AGE_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}

Scalar = str | int | float | bool | None


def parse_value(text: str) -> Scalar:
    """A command-line value as YAML would read the common cases: numbers, booleans, null, text.

    Quotes force text (``name='1e3'``).
    """
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    low = t.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("null", "none", "~"):
        return None
    try:
        return int(t)
    except ValueError:
        pass
    try:
        value = float(t)
    except ValueError:
        return t
    return t if math.isnan(value) else value


class Condition(NamedTuple):
    """One ``--where`` condition: ``section`` is None for a bare key (config first, then result)."""

    section: str | None
    key: str
    op: str
    value: Scalar

    @property
    def label(self) -> str:
        """The key as the user addresses it (used as a column name)."""
        return self.key if self.section is None else f"{self.section}.{self.key}"

    def matches(self, value: Any, present: bool = True) -> bool:
        """Evaluate against a Python value (the in-memory twin of the SQL the index runs)."""
        if self.op == "!=":
            return not (present and _equal(value, self.value))
        if not present:
            return False
        if self.op == "=":
            return _equal(value, self.value)
        left, right = _orderable(value), _orderable(self.value)
        if left is None or right is None or type(left) is not type(right):
            return False
        if self.op == ">":
            return left > right  # type: ignore[operator]
        if self.op == ">=":
            return left >= right  # type: ignore[operator]
        if self.op == "<":
            return left < right  # type: ignore[operator]
        return left <= right  # type: ignore[operator]


def _equal(value: Any, wanted: Scalar) -> bool:
    # booleans are not numbers here: flag=1 must not match flag: true
    if isinstance(value, bool) or isinstance(wanted, bool):
        return as_text(value) == as_text(wanted)
    if isinstance(wanted, (int, float)) and not isinstance(value, str):
        try:
            return value is not None and float(value) == float(wanted)
        except (TypeError, ValueError):
            return False
    return as_text(value) == as_text(wanted)


def _orderable(value: Any) -> float | str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return value
    return None


def as_text(value: Any) -> str:
    """Canonical text of a value, as stored in the index (``true``, ``null``, ``0.1``, JSON)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


def split_key(key: str) -> tuple[str | None, str]:
    """``config.lr`` -> ("config", "lr"); ``lr`` -> (None, "lr")."""
    head, dot, rest = key.partition(".")
    if dot and head in SECTIONS and rest:
        return head, rest
    return None, key


def parse_where(expr: str) -> Condition:
    """Parse ``lr=0.1``, ``acc>0.8``, ``config.optim.name!=adam``, ``result.loss<=0.3``."""
    m = _WHERE_RE.match(expr)
    if not m or (not m.group(3) and m.group(2) not in ("=", "==", "!=")):
        raise UsageError(
            f"Cannot parse the filter {expr!r}.",
            hint="Write KEY OP VALUE with OP one of = != > >= < <=, e.g. --where lr=0.1 "
            "--where 'acc>0.8' (quote > and < for the shell).",
        )
    key, op, raw = m.group(1).strip(), m.group(2), m.group(3)
    if raw[:1] in _OP_CHARS:
        # ``lr>>1``, ``lr=>1``, ``acc<=>0.8``: a typo, not a comparison with the text ">1"
        # (which would silently match nothing, or every run for !=); quotes keep such a text
        raise UsageError(
            f"Cannot parse the filter {expr!r}: its value {raw!r} starts with an operator.",
            hint="Write KEY OP VALUE with one OP of = != > >= < <=, e.g. --where 'lr>1'; "
            "quote a text value that starts with one of = ! < > (name='<none>').",
        )
    section, name = split_key(key)
    return Condition(section, name, "=" if op == "==" else op, parse_value(raw))


def parse_where_all(where: Iterable[str] | Mapping[str, Any] | str | None) -> list[Condition]:
    """Conditions from CLI strings, one string, or a ``{key: value}`` mapping (equality)."""
    if where is None:
        return []
    if isinstance(where, str):
        return [parse_where(where)]
    if isinstance(where, Mapping):
        out = []
        for key, value in where.items():
            section, name = split_key(str(key))
            out.append(Condition(section, name, "=", value))
        return out
    return [parse_where(w) for w in where]


def parse_since(
    value: str | datetime | timedelta | None, now: datetime | None = None
) -> datetime | None:
    """``3h``, ``2d``, ``30m``, ``1w``, an ISO date/datetime, a datetime or a timedelta -> a
    timezone-aware time (a naive date is local time)."""
    if value is None:
        return None
    now = now or datetime.now(UTC)
    if isinstance(value, timedelta):
        return now - value
    if isinstance(value, datetime):
        return value if value.tzinfo else value.astimezone()
    m = _AGE_RE.match(value)
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _AGE_UNITS[m.group(2).lower()])
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(
            f"Cannot read --since {value!r}.",
            hint="Use an age like 30m, 3h, 2d, 1w or a date like 2026-11-25 or 2026-11-25T14:00.",
        ) from None
    # A naive date is the user's local time (what they see on their clock).
    return dt if dt.tzinfo else dt.astimezone()


def parse_statuses(status: str | Iterable[str] | None) -> frozenset[str] | None:
    """Validated set of statuses (``completed,failed`` or several options)."""
    if status is None:
        return None
    items = [status] if isinstance(status, str) else list(status)
    out: set[str] = set()
    for item in items:
        for s in item.split(","):
            s = s.strip().lower()
            if not s:
                continue
            if s not in STATUSES:
                raise UsageError(
                    f"Unknown status {s!r}.", hint=f"Use one of: {', '.join(STATUSES)}."
                )
            out.add(s)
    return frozenset(out) or None
