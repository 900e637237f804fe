"""``runlock init``: set a project up: ``[tool.runlock] results`` in pyproject.toml, the results
folder in .gitignore.

Edits are appends (or one line inserted under an existing ``[tool.runlock]`` header) checked
with tomllib before anything is written: a user's pyproject.toml keeps every byte it had, its
comments and its layout; an unreadable one is refused, untouched.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

#: ``[tool.runlock]`` as a header line (a trailing comment allowed).
_HEADER_RE = re.compile(r"^[ \t]*\[[ \t]*tool[ \t]*\.[ \t]*runlock[ \t]*\][ \t]*(#.*)?$", re.M)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "init",
        help="set up a project: [tool.runlock] in pyproject.toml, results/ in .gitignore",
        description="Write [tool.runlock] results = \"results\" into DIR/pyproject.toml "
        "(created if missing; other content is kept as it is) and the results folder into "
        "DIR/.gitignore (once). Running it again changes nothing.",
    )
    p.add_argument("dir", nargs="?", default=".", metavar="DIR", help="project folder (default: .)")
    p.add_argument(
        "--results", default="results", metavar="PATH",
        help="results root, relative to DIR (default: results)",
    )  # fmt: skip
    p.set_defaults(func=run)
    return p


def _toml_string(text: str) -> str:
    import json

    return json.dumps(text)  # a JSON string is a valid TOML basic string


def _parse(path: Path, text: str) -> dict[str, Any]:
    import tomllib

    from ..errors import ConfigError

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"Cannot read {path}: {exc}.",
            hint="fix the file (runlock init changes nothing in a file it cannot read).",
        ) from None


def configure_pyproject(project: Path, results: str) -> tuple[str, str]:
    """Make sure ``project/pyproject.toml`` sets ``[tool.runlock] results``: ``(what was done,
    the results setting in force)``."""
    from ..errors import ConfigError

    path = project / "pyproject.toml"
    line = f"results = {_toml_string(results)}\n"
    if not path.exists():
        path.write_text(f"[tool.runlock]\n{line}", encoding="utf-8")
        return f"created {path} with [tool.runlock] {line.strip()}", results
    text = path.read_text(encoding="utf-8")
    data = _parse(path, text)
    tool = data.get("tool")
    table = tool.get("runlock") if isinstance(tool, dict) else None
    if isinstance(table, dict) and "results" in table:
        current = table["results"]
        if not isinstance(current, str):
            raise ConfigError(
                f"{path}: [tool.runlock] results must be a string (a path), not {current!r}."
            )
        return f"{path} already sets [tool.runlock] results = {_toml_string(current)}", current
    if table is None:
        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        new = f"{text}{sep}[tool.runlock]\n{line}"
    else:
        headers = list(_HEADER_RE.finditer(text))
        if len(headers) != 1:  # dotted keys or an inline table: no header to add a line under
            raise ConfigError(
                f"{path} defines [tool.runlock] without a [tool.runlock] header line: add "
                f"{line.strip()!r} to it yourself.",
            )
        end = headers[0].end()
        new = f"{text[:end]}\n{line.rstrip()}{text[end:]}"
    check = _parse(path, new).get("tool", {}).get("runlock", {})
    if check.get("results") != results:  # never write a file that would not say it
        raise ConfigError(f"Cannot add [tool.runlock] results to {path} safely: add it yourself.")
    if table is None:
        with path.open("a", encoding="utf-8") as f:  # an append: the rest stays byte for byte
            f.write(new[len(text) :])
    else:
        path.write_text(new, encoding="utf-8")
    return f"added [tool.runlock] {line.strip()} to {path}", results


def configure_gitignore(project: Path, results: str) -> str | None:
    """Add the results folder to ``project/.gitignore`` unless a line already ignores it."""
    rel = Path(results)
    if rel.is_absolute() or ".." in rel.parts:
        return None  # outside the project: nothing for its .gitignore to say
    name = rel.as_posix().strip("/")
    if not name or name == ".":
        return None
    path = project / ".gitignore"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    existing = {ln.strip() for ln in text.splitlines()}
    if existing & {name, f"{name}/", f"/{name}", f"/{name}/"}:
        return None
    entry = f"{name}/\n"
    with path.open("a", encoding="utf-8") as f:
        f.write(("\n" if text and not text.endswith("\n") else "") + entry)
    return f"added {entry.strip()} to {path}"


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError

    project = Path(args.dir).expanduser()
    if not project.is_dir():
        raise UsageError(f"No such project folder: {args.dir}.")
    if not args.results.strip():
        raise UsageError("--results must not be empty.")
    done, results = configure_pyproject(project, args.results)
    print(done)
    ignored = configure_gitignore(project, results)
    if ignored:
        print(ignored)
    return 0
