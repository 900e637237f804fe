"""Errors at the command-line edge, as one table: input -> exception type -> message -> exit code.

Each row runs twice: below the edge (the library raises the exception, whose type and message
are checked) and through the edge (``runlock ...`` or a stage's own command line), which must
print exactly ``<prog>: error: <message>`` (hint included) once and exit with the error's code:
2 for bad input, 1 for a failure.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import runlock
from runlock import cli
from runlock.cli import script
from runlock.errors import (
    ConfigError,
    ConfigKeyError,
    ConfigTypeError,
    RunlockError,
    RunNotFoundError,
    TaskError,
    UsageError,
)


@dataclass
class Config:
    lr: float = 0.001
    epochs: int = 3


@runlock.stage(snapshot=False, console=False)
def train(cfg: Config) -> float:
    return cfg.lr


NO_HINT = "Give a run id, a unique id prefix or a run directory"

ROWS = [
    # (entry point, arguments ({tmp}: a fresh directory), exception type, message, exit code)
    # an unknown run id or prefix is the user's input: exit 2 for every command that takes RUN
    ("runlock", ["show", "nope"], RunNotFoundError, "No run 'nope' under {tmp}/results.", 2),
    ("runlock", ["diff", "nope", "nope2"], RunNotFoundError, "No run 'nope' under", 2),
    ("runlock", ["compare", "nope"], RunNotFoundError, "No run 'nope' under", 2),
    ("runlock", ["rm", "nope"], RunNotFoundError, "No run 'nope' under", 2),
    ("runlock", ["lineage", "nope"], RunNotFoundError, NO_HINT, 2),
    ("runlock", ["ls", "--where", "lr>>1"], UsageError, "Cannot parse the filter 'lr>>1'", 2),
    ("runlock", ["ls", "--since", "soon"], UsageError, "Cannot read --since 'soon'.", 2),
    ("runlock", ["ls", "--status", "bogus"], UsageError, "hint: Use one of: running, completed", 2),
    ("stage", ["lrr=0.1"], ConfigKeyError, "Unknown config key 'lrr'", 2),
    ("stage", ["lr=fast"], ConfigTypeError, "Invalid value for config key 'lr'", 2),
    ("stage", ["lr"], ConfigError, "'lr' is not of the form key=value", 2),
    ("stage", ["--config", "{tmp}/missing.yaml"], ConfigError, "Config file not found", 2),
    ("stage", ["--map", "{tmp}/missing.yaml"], TaskError, "Task file not found: {tmp}/missing.yaml.", 2),
    ("stage", ["--map", "{tmp}/tasks.txt", "--map-key", "lr", "--resume", "{tmp}"], UsageError, "--resume {tmp}: is not a run directory (no run.lock).", 2),
]


def _fill(items: list[str], tmp: Path) -> list[str]:
    return [item.replace("{tmp}", str(tmp)) for item in items]


def _raise_below_the_edge(entry: str, argv: list[str]) -> None:
    """What the entry point does before it renders an error."""
    if entry == "runlock":
        args = cli.build_parser(argv).parse_args(argv)
        args.func(args)
    else:
        args = script.build_parser(train).parse_args(argv)
        script._main_parsed(train, args, interactive=False)  # noqa: SLF001 - the code under the edge


@pytest.mark.parametrize(("entry", "argv", "exc_type", "message", "exit_code"), ROWS)
def test_error_table(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    entry: str,
    argv: list[str],
    exc_type: type[RunlockError],
    message: str,
    exit_code: int,
) -> None:
    monkeypatch.setenv("RUNLOCK_RESULTS", str(tmp_path / "results"))
    (tmp_path / "tasks.txt").write_text("0.1\n0.2\n")
    argv = _fill(argv, tmp_path)
    if entry == "runlock":
        argv = ["--root", str(tmp_path / "results"), *argv]
    message = message.replace("{tmp}", str(tmp_path))

    with pytest.raises(RunlockError) as info:
        _raise_below_the_edge(entry, argv)
    exc = info.value
    assert type(exc) is exc_type
    assert message in str(exc)
    assert exc.exit_code == exit_code
    capsys.readouterr()

    if entry == "runlock":
        code = cli.main(argv)
        prog = "runlock"
    else:
        with pytest.raises(SystemExit) as stop:
            runlock.main(train, argv)
        code = int(stop.value.code or 0)
        prog = Path(sys.argv[0]).name
    err = capsys.readouterr().err
    assert code == exit_code
    assert err == f"{prog}: error: {exc}\n"  # rendered once, hint on its own line
    assert not (tmp_path / "results").exists()  # bad input or a failed lookup creates nothing


def test_show_renders_message_and_hint() -> None:
    out = io.StringIO()
    RunNotFoundError("No run 'x'.", hint="see `runlock ls`").show(out)
    assert out.getvalue() == "runlock: error: No run 'x'.\n  hint: see `runlock ls`\n"
    out = io.StringIO()
    ConfigKeyError("Unknown config key 'a.b'.").show(out, prog="train.py")
    assert out.getvalue() == "train.py: error: Unknown config key 'a.b'.\n"  # no KeyError quotes
