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

from .. import __version__
from ..errors import RunlockError

#: sub-command -> (module, one-line help), in the order ``runlock --help`` lists them. Only the
#: module of the sub-command being run is imported (each costs a few ms to import and build).
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init", "set up a project: [tool.runlock] in pyproject.toml, results/ in .gitignore"),
    "ls": ("ls", "list runs"),
    "show": ("show", "show one run"),
    "diff": ("diff", "what differs between two runs"),
    "compare": ("compare", "config keys that vary across runs, next to their results"),
    "rm": ("rm", "delete runs"),
    "lineage": ("lineage", "tree of upstream runs"),
    "mlflow": ("mlflow_cmd", "log runs to MLflow"),
    "push": ("push", "send a run and its upstream runs to the shared store (rclone) and their code to git"),
    "pull": ("pull", "bring a run and its upstream runs back from the shared store"),
    "remote": ("remote", "list or delete runs on the shared store"),
    "reproduce": ("reproduce", "re-run a run from its source snapshot, config and seed; compare the outputs"),
    "env": ("env", "export a run's environment (requirements.txt or PEP 751 pylock.toml)"),
}
_GLOBAL_WITH_VALUE = {"--root"}


def _selected_command(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (skipping global options), if any."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _GLOBAL_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runlock",
        description="Reproducible, browsable ML experiment runs.",
    )
    parser.add_argument("--root", help="results root (default: from pyproject.toml or ./results)")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_argument("-q", "--quiet", action="count", default=0)
    parser.add_argument("--version", action="version", version=f"runlock {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    selected = _selected_command(argv) if argv is not None else None
    if selected in COMMANDS and not _asks_top_level_help(argv or (), selected):
        # Running one sub-command: the others' parsers are only needed for --help and for
        # "invalid choice" messages (building ten more costs ~10 ms of every ``runlock ls``).
        importlib.import_module(f"{__name__}.{COMMANDS[selected][0]}").add_parser(sub)
        return parser
    for name, (module_name, help_) in COMMANDS.items():
        if argv is None or name == selected:
            importlib.import_module(f"{__name__}.{module_name}").add_parser(sub)
        else:
            sub.add_parser(name, help=help_, add_help=False)
    return parser


def _asks_top_level_help(argv: Sequence[str], command: str) -> bool:
    """``runlock -h ls``: the help flag comes before the sub-command."""
    head = list(argv)[: list(argv).index(command)] if command in argv else list(argv)
    return any(a in ("-h", "--help") for a in head)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RunlockError as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        print("runlock: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
