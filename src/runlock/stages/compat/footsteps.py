"""footsteps' zero-config output directory: ``runlock.start()`` (or ``runlock.footsteps``).

The run name comes, in footsteps' order, from the argument, ``$FOOTSTEPS_NAME``, then standard
input (a terminal prompt, or the first line of a pipe: ``echo name | python script.py``), and
the script's name when stdin is closed or empty (footsteps raised EOFError there). Next to
``run.lock`` the run directory holds footsteps' files for the scripts that read them:
``info.txt``, ``package_versions.txt`` and a copy of the script.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Any, cast

from ...settings import results_root
from ..run import ActiveRun, Outcome, StageOptions

#: At interpreter exit, how long the run waits for its background capture (the git snapshot)
#: before the thread pools shut down. Only a script that ends right after start() waits at all.
EXIT_WAIT_S = 60.0


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
        first = not self._active.closed
        outcome = self._active.close(None, error)
        if first:
            try:
                write_info(self.dir, outcome.lock)
            except OSError as exc:  # footsteps' extra file must not lose the run
                sys.stderr.write(f"runlock: info.txt not written: {exc}\n")
        return outcome

    def settle(self, timeout_s: float = EXIT_WAIT_S) -> None:
        """Wait (at most ``timeout_s``) for the background capture started with the run."""
        import concurrent.futures

        pending = [f for c in self._active.collectors
                   if isinstance(f := getattr(c, "_future", None), concurrent.futures.Future)]
        if pending:
            concurrent.futures.wait(pending, timeout=timeout_s)

    def __repr__(self) -> str:
        return f"<runlock.ScriptRun {self.id} in {self.dir}>"


_current: ScriptRun | None = None


def _earlier_names(root: Path) -> list[str]:
    try:
        return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _ask_name(default: str, root: Path) -> str:
    """footsteps' order: $FOOTSTEPS_NAME, a terminal prompt (tab completes earlier names), the
    first line of piped stdin; ``default`` when stdin is closed or empty."""
    env = os.environ.get("FOOTSTEPS_NAME", "").strip()
    if env:
        return env
    stdin = sys.stdin
    if stdin is None or stdin.closed:
        return default
    try:
        interactive = stdin.isatty() and sys.stderr.isatty()
    except (ValueError, OSError):
        return default
    if not interactive:
        try:
            import stat

            if not stat.S_ISFIFO(os.fstat(stdin.fileno()).st_mode):
                return default  # /dev/null, a data file: not a name typed for this run
            return stdin.readline().strip() or default  # `echo name | python script.py`
        except (OSError, ValueError):
            return default
    names = _earlier_names(root)
    try:
        import readline

        def complete(text: str, state: int) -> str | None:
            matches = [n for n in names if n.startswith(text)]
            return matches[state] if state < len(matches) else None

        readline.set_completer_delims(" \t\n;")
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

    ``name`` defaults to ``$FOOTSTEPS_NAME``, then a prompt on a terminal or the first line of
    piped stdin, then the script's name. The run directory is ``<results>/<name>`` (``-1``,
    ``-2`` ... when it exists).
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
    from ...config.plain import PlainConfig

    cfg = PlainConfig(dict, {"seed": seed} if seed is not None else {})
    info = {"name": script, "qualname": None, "module": "__main__", "source_file": str(source) if source else None}
    active = ActiveRun.open(info, cfg, options, source_file=source, handle_sigterm=False)
    run = ScriptRun(active)
    _current = run
    _write_start_files(run.dir, active.lock, source)

    previous_hook = sys.excepthook

    def excepthook(tp: type[BaseException], value: BaseException, tb: Any) -> None:
        run.finish(value)
        previous_hook(tp, value, tb)

    sys.excepthook = excepthook
    # The snapshot runs on a thread pool; the interpreter shuts its pools down *before* atexit
    # handlers run, so a script ending right after start() recorded `git: null` ("cannot
    # schedule new futures after interpreter shutdown"). threading's exit hooks run before
    # that, last registered first: wait there for the capture (a long script's has finished).
    try:
        threading._register_atexit(run.settle)  # type: ignore[attr-defined]  # noqa: SLF001
    except (AttributeError, RuntimeError):  # pragma: no cover - another Python, or exiting now
        pass
    atexit.register(lambda: run.finish(None))
    return run


# ---------------------------------------------------------------------------------------------
# footsteps' files


def _write_start_files(run_dir: Path, lock: dict[str, Any], source: Path | None) -> None:
    """package_versions.txt (pip list's layout, from the lock: no pip process) and the script."""
    packages = {str(n): str(v) for n, v in (lock.get("packages") or {}).items()}
    editable = lock.get("editable") or {}
    width = max([len("Package"), *map(len, packages)])
    vwidth = max([len("Version"), *map(len, packages.values())])
    head, rule = f"{'Package':<{width}} {'Version':<{vwidth}}", f"{'-' * width} {'-' * vwidth}"
    if editable:  # pip list's third column when something is installed editable
        ewidth = max([len("Editable project location"), *(len(str(v)) for v in editable.values())])
        head, rule = f"{head} Editable project location", f"{rule} {'-' * ewidth}"
    lines = [head.rstrip(), rule]
    lines += [f"{n:<{width}} {v:<{vwidth}} {editable.get(n, '')}".rstrip() for n, v in packages.items()]
    try:
        (run_dir / "package_versions.txt").write_text("\n".join(lines) + "\n")
        if source is not None and source.is_file():
            shutil.copy(source, run_dir / source.name)  # footsteps' copy of the script
    except OSError as exc:
        sys.stderr.write(f"runlock: footsteps' files not written: {exc}\n")


def write_info(run_dir: Path, lock: dict[str, Any]) -> None:
    """footsteps' ``info.txt``; written when the run ends, once its source snapshot is known."""
    env = lock.get("environment") or {}
    git = lock.get("git") or {}
    out = ["Command:", " ".join(env.get("argv") or sys.argv), "System:", str(lock.get("hostname") or ""),
           "Python:", str(env.get("python_executable") or sys.executable)]
    head = git.get("head")
    if head:
        out += ["Git Hash:", head[:7]]
        origin = (git.get("remotes") or {}).get("origin")
        if origin and "github" in origin:
            out.append(f"{origin}/tree/{head[:7]}")
        out += ["Uncommitted changes:", _uncommitted(git).rstrip("\n")]
    out += ["Current working dir:", str(env.get("cwd") or os.getcwd())]
    (run_dir / "info.txt").write_text("\n".join(out) + "\n")


def _uncommitted(git: dict[str, Any]) -> str:
    """The run's uncommitted changes: ``git diff HEAD <snapshot>`` (what the run really ran)."""
    snap = git.get("snapshot") or {}
    root = git.get("root")
    if not root or not snap.get("commit"):
        return ""
    from ... import git as gitmod

    try:
        return cast(str, gitmod.snapshot_diff(Path(root), str(git["head"]), str(snap["commit"]), patch=True))
    except Exception:  # noqa: BLE001 - an optional file: the lock has the commits
        return ""

