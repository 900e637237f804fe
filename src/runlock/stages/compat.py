"""Drop-in replacements for earlier tools, so that switching is a change of import.

- :func:`tracked` takes pycrumbs' keyword names (``literal_directory``, ``directory_parameter``,
  ``subdirectory_name_parameter``, ``directory_injection_parameter``, ``include_timestamp``,
  ``include_uuid``, ``seed_parameter``) and returns a runlock stage.
- :func:`start` is footsteps' zero-config output directory for five-line scripts.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from omegaconf import OmegaConf

from ..settings import results_root
from .decorator import Stage
from .run import ActiveRun, Outcome, StageOptions


def tracked(
    *,
    literal_directory: str | os.PathLike[str] | None = None,
    directory_parameter: str | None = None,
    subdirectory_name_parameter: str | None = None,
    directory_injection_parameter: str | None = None,
    include_timestamp: bool = False,
    include_uuid: bool = False,
    seed_parameter: str | None = None,
    name: str | None = None,
    **options: Any,
) -> Callable[[Callable[..., Any]], Stage[Any, Any]]:
    """pycrumbs' ``tracked`` decorator, backed by a runlock stage (record: ``run.lock``).

    Unlike pycrumbs, git state is captured at call time, a directory is never overwritten (a
    ``-1`` suffix is added instead), a crash is recorded with its traceback, and generators are
    seeded only when ``seed_parameter`` is given.
    """

    def wrap(fn: Callable[..., Any]) -> Stage[Any, Any]:
        save_dir = None
        if literal_directory is not None:
            save_dir = os.fspath(literal_directory)
        elif directory_parameter is None:
            save_dir = str(results_root(options.get("root")) / (name or fn.__name__))
        opts = StageOptions(
            name=name or fn.__name__,
            save_dir=save_dir,
            dir_field=directory_parameter,
            subdir_field=subdirectory_name_parameter,
            inject_dir=directory_injection_parameter,
            include_timestamp=include_timestamp,
            include_uuid=include_uuid,
            seed_field=seed_parameter,
            **options,
        )
        return Stage(fn, opts)

    return wrap


# --------------------------------------------------------------------------------------------
# footsteps


class ScriptRun:
    """The run of a whole script: ``runlock.start()`` returns it; it ends at interpreter exit."""

    def __init__(self, active: ActiveRun) -> None:
        self._active = active
        self.id = active.id
        self.dir = active.dir
        #: footsteps' spelling: a string ending in "/" to concatenate file names to
        self.output_dir = str(active.dir) + os.sep

    def finish(self, error: BaseException | None = None) -> Outcome:
        """End the run now (otherwise it ends at exit, failed if an exception escaped)."""
        return self._active.close(None, error)

    def __repr__(self) -> str:
        return f"<runlock.ScriptRun {self.id} in {self.dir}>"


_current: ScriptRun | None = None


def _earlier_names(root: Path) -> list[str]:
    try:
        return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _ask_name(default: str, root: Path) -> str:
    """Prompt for a run name with tab completion of earlier names; non-interactive: ``default``."""
    if not (sys.stdin and sys.stdin.isatty() and sys.stderr.isatty()):
        return default  # batch jobs have no terminal: footsteps crashed with EOFError here
    names = _earlier_names(root)
    try:
        import readline

        def complete(text: str, state: int) -> str | None:
            matches = [n for n in names if n.startswith(text)]
            return matches[state] if state < len(matches) else None

        readline.set_completer(complete)
        readline.parse_and_bind("tab: complete")
    except ImportError:  # pragma: no cover - Windows without pyreadline
        pass
    try:
        sys.stderr.write(f"Name of this run [{default}]: ")  # stdout may be a pipe to a log
        sys.stderr.flush()
        answer = input().strip()
    except EOFError:
        return default
    return answer or default


def start(name: str | None = None, *, root: str | os.PathLike[str] | None = None, seed: int | None = None) -> ScriptRun:
    """Create the run directory and ``run.lock`` for this script; finalised at interpreter exit.

    ``name`` defaults to a prompt on a terminal and to the script's name otherwise. The run
    directory is ``<results>/<name>`` (``-1``, ``-2`` ... when it exists).
    """
    global _current
    if _current is not None and not _current._active.closed:
        return _current
    base = results_root(root)
    script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] not in ("", "-c") else "script"
    if name is None:
        name = _ask_name(script, base)
    main = sys.modules.get("__main__")
    source = Path(cast(str, main.__file__)).absolute() if main is not None and getattr(main, "__file__", None) else None
    options = StageOptions(name=name, save_dir=str(base / name), root=str(base), seed_field="seed" if seed is not None else None)
    cfg = OmegaConf.create({"seed": seed} if seed is not None else {})
    info = {"name": script, "qualname": None, "module": "__main__", "source_file": str(source) if source else None}
    active = ActiveRun.open(info, cfg, options, source_file=source, handle_sigterm=False)
    run = ScriptRun(active)
    _current = run

    previous_hook = sys.excepthook

    def excepthook(tp: type[BaseException], value: BaseException, tb: Any) -> None:
        run.finish(value)
        previous_hook(tp, value, tb)

    sys.excepthook = excepthook
    previous_thread_hook = threading.excepthook
    atexit.register(lambda: run.finish(None))
    del previous_thread_hook
    return run
