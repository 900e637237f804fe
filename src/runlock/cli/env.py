"""``runlock env RUN --format requirements|pylock [-o FILE]``: a run's environment, exported."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .ls import add_root_argument, root_of


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "env",
        help="export a run's environment (requirements.txt or PEP 751 pylock.toml)",
        description="Write the packages a run was recorded with, pinned to their versions: as "
        "requirements.txt lines, or as a PEP 751 pylock.toml. VCS and direct-URL installs keep "
        "their URL and commit; editable installs name their directory and the run's source "
        "snapshot. RUN is an id, a unique id prefix or a path.",
    )
    p.add_argument("run_ref", metavar="RUN")
    p.add_argument("--format", choices=("requirements", "pylock"), default="requirements",
                   help="output format (default: requirements)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    add_root_argument(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..browse.resolve import resolve_run
    from ..errors import UsageError
    from ..store.env_export import export_env

    record = resolve_run(args.run_ref, root_of(args))
    text = export_env(record.view, args.format)
    if not args.output:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"Cannot write {args.output}: {exc.strerror or exc}.") from exc
    return 0
