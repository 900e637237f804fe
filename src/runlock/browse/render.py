"""Output helpers shared by the browsing commands: rich on a terminal, plain text when piped,
JSON for machines.

rich is imported only when a terminal will actually see it (piped ``runlock ls`` stays fast and
its output stable for ``grep``/``awk``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import IO, Any

from ..record.safe import printable

STATUS_STYLES = {
    "completed": "green",
    "failed": "red",
    "crashed": "bold red",
    "interrupted": "yellow",
    "running": "cyan",
    "stopped": "magenta",
}


def use_rich(stream: IO[str] | None = None) -> bool:
    """Rich output only on an interactive terminal (and not with ``TERM=dumb``)."""
    stream = stream or sys.stdout
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and os.environ.get("TERM") != "dumb"


def _console(stream: IO[str] | None = None) -> Any:
    from rich.console import Console

    return Console(file=stream or sys.stdout, highlight=False)


def json_default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def print_json(data: Any, stream: IO[str] | None = None) -> None:
    """Deterministic JSON (sorted keys) so scripts and diffs of the output are stable."""
    out = stream or sys.stdout
    out.write(json.dumps(data, indent=2, sort_keys=True, default=json_default, ensure_ascii=False))
    out.write("\n")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    s = float(seconds)
    if s < 10:
        return f"{s:.2f}s"
    if s < 60:
        return f"{s:.1f}s"
    m, s = divmod(round(s), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def fmt_time(dt: datetime | None) -> str:
    """Local time, to the second (what the user's clock showed when the run started)."""
    return "-" if dt is None else dt.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def fmt_timestamp(ts: float | None) -> str:
    """:func:`fmt_time` of a POSIX timestamp, without building a datetime (a listing's every
    row): ``astimezone()`` also takes the local time of the timestamp's whole second."""
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def fmt_value(value: Any) -> str:
    """Compact cell text: 6 significant digits for floats, JSON for containers."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=json_default, separators=(",", ":"))
    return str(value)


def print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    stream: IO[str] | None = None,
    status_column: int | None = None,
) -> None:
    """A table: rich on a terminal, else aligned plain columns (one line per row)."""
    out = stream or sys.stdout
    # a forged stage name or id with a line break must not fake or hide rows
    rows = [[printable(c) for c in row] for row in rows]
    if use_rich(out):
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, header_style="bold", show_edge=False, pad_edge=False)
        for h in headers:
            table.add_column(h, overflow="fold")
        for row in rows:
            # Text, not markup: config values like "[1, 2]" must print as they are
            cells = [Text(c) for c in row]
            if status_column is not None:
                cells[status_column].stylize(STATUS_STYLES.get(row[status_column], ""))
            table.add_row(*cells)
        _console(out).print(table)
        return
    widths = [max(map(len, column)) for column in zip(headers, *rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths).format  # one format call per row
    lines = [] if title is None else [title]
    lines += [line(*row).rstrip() for row in (headers, *rows)]
    out.write("\n".join(lines) + "\n")


class Section:
    """A titled block of ``(label, text)`` lines for show/diff."""

    def __init__(
        self, title: str, lines: list[tuple[str, str]] | None = None, text: str | None = None
    ) -> None:
        self.title = title
        self.lines: list[tuple[str, str]] = [] if lines is None else lines
        self.text = text  # verbatim block (traceback, patch)

    def add(self, label: str, value: Any) -> None:
        self.lines.append((label, value if isinstance(value, str) else fmt_value(value)))


def print_sections(
    sections: Sequence[Section], *, header: str | None = None, stream: IO[str] | None = None
) -> None:
    out = stream or sys.stdout
    rich = use_rich(out)
    console = _console(out) if rich else None
    if header:
        header = printable(header)
        if console is not None:
            console.print(header, style="bold")
        else:
            out.write(header + "\n")
    for sec in sections:
        width = max((len(label) for label, _ in sec.lines), default=0)
        body = [f"  {printable(label).ljust(width)}  {printable(text)}".rstrip()
                for label, text in sec.lines]
        if console is not None:
            from rich.markup import escape
            from rich.syntax import Syntax

            console.print()
            console.print(escape(sec.title), style="bold underline")
            for line in body:
                console.print(escape(line))
            if sec.text:
                lexer = "diff" if sec.text.startswith("diff ") else "pytb"
                console.print(Syntax(sec.text.rstrip("\n"), lexer, word_wrap=True))
        else:
            out.write(f"\n{sec.title}\n")
            for line in body:
                out.write(line + "\n")
            if sec.text:
                out.write(sec.text.rstrip("\n") + "\n")


class TreeNode:
    """A node of a lineage tree (label plus children), rendered by :func:`print_tree`."""

    def __init__(
        self, label: str, children: list[TreeNode] | None = None, style: str | None = None
    ) -> None:
        self.label = label
        self.children: list[TreeNode] = [] if children is None else children
        self.style = style


def print_tree(root: TreeNode, stream: IO[str] | None = None) -> None:
    """rich Tree on a terminal, else ``├──`` text lines."""
    out = stream or sys.stdout
    if use_rich(out):
        from rich.markup import escape
        from rich.tree import Tree

        def build(node: TreeNode, tree: Any) -> None:
            for child in node.children:
                label = escape(printable(child.label))
                build(child, tree.add(f"[{child.style}]{label}[/]" if child.style else label))

        top = Tree(escape(printable(root.label)))
        build(root, top)
        _console(out).print(top)
        return
    lines = [printable(root.label)]

    def walk(node: TreeNode, prefix: str) -> None:
        for i, child in enumerate(node.children):
            last = i == len(node.children) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{printable(child.label)}")
            walk(child, prefix + ("    " if last else "│   "))

    walk(root, "")
    out.write("\n".join(lines) + "\n")
