"""The ``runlock`` command: parses, calls the library, renders. One module per sub-command.

Each sub-command module exposes ``add_parser(subparsers) -> argparse.ArgumentParser`` (which sets
``func=run`` as default) and ``run(args) -> int``. Modules are imported only to build the parser,
and they import heavy things (rich, OmegaConf, MLflow) inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import RunlockError

#: sub-command modules, in the order ``runlock --help`` lists them
COMMANDS: tuple[str, ...] = (
    "ls",
    "show",
    "diff",
    "compare",
    "rm",
    "lineage",
    "mlflow_cmd",
    "push",
    "pull",
    "remote",
    "reproduce",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runlock",
        description="Reproducible, browsable ML experiment runs.",
    )
    parser.add_argument("--root", help="results root (default: from pyproject.toml or ./results)")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_argument("-q", "--quiet", action="count", default=0)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # sub-command not built in this version
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RunlockError as exc:
        print(f"runlock: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("runlock: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
