"""Interactive sessions: IPython / Jupyter / VS Code detection and the stage's local variables.

The user's old skeleton wrapped the body in try/finally and returned ``locals()`` so that after
a failure the variables could be inspected and cells re-run. Here the wrapper grabs the frame's
locals itself when the function returns or raises, without changing the user's code.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable
from typing import Any


def ipython_shell() -> Any | None:
    """The running IPython shell (terminal, Jupyter kernel, VS Code interactive), or None."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    get = getattr(ipython, "get_ipython", None)
    return get() if get is not None else None


def in_interactive_session() -> bool:
    return ipython_shell() is not None


def run_magic_args() -> list[str]:
    """The arguments of the ``%run script.py key=value ...`` in progress; [] outside one.

    ``%run`` sets ``sys.argv = [script] + args`` and makes the script's module ``__main__``
    for the duration of the run, so ``sys.argv[0]`` is ``__main__.__file__`` exactly then. A
    kernel's own argv (``ipykernel_launcher.py -f kernel.json``), a cell or VS Code's run-cell
    never match: those arguments are the kernel's, not the user's.
    """
    argv = sys.argv
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if not argv or not isinstance(main_file, str) or not argv[0]:
        return []
    if argv[0] == main_file or os.path.abspath(argv[0]) == os.path.abspath(main_file):
        return list(argv[1:])
    return []


def call_capturing_locals(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, BaseException | None, dict[str, Any]]:
    """Call ``fn`` and return ``(value, exception, locals of fn's frame at its exit)``.

    Uses a profile hook that only looks at the frame of ``fn``'s code object; the exception is
    returned, not raised, so the caller decides how to report it.
    """
    code = _code_of(fn)
    captured: dict[str, Any] = {}
    previous = sys.getprofile()

    def profiler(frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "return" and frame.f_code is code:
            captured.clear()
            captured.update(frame.f_locals)

    sys.setprofile(profiler)
    try:
        value = fn(*args, **kwargs)
        error: BaseException | None = None
    except BaseException as exc:  # noqa: BLE001 - handed back to the caller
        value, error = None, exc
    finally:
        sys.setprofile(previous)
    if error is not None and not captured:
        captured.update(_locals_from_traceback(error, code))
    return value, error, dict(captured)


def _code_of(fn: Callable[..., Any]) -> types.CodeType | None:
    inner = fn
    while hasattr(inner, "__wrapped__"):
        inner = inner.__wrapped__
    return getattr(inner, "__code__", None)


def _locals_from_traceback(error: BaseException, code: types.CodeType | None) -> dict[str, Any]:
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is code:
            return dict(tb.tb_frame.f_locals)
        tb = tb.tb_next
    return {}


def push_to_namespace(values: dict[str, Any]) -> bool:
    """Put ``values`` into the interactive namespace; False when not interactive."""
    shell = ipython_shell()
    if shell is None:
        return False
    shell.user_ns.update(values)
    return True


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def user_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` without runlock's own leading frames, so it starts in the user's code; a
    traceback that never leaves runlock is kept whole (the problem is runlock's)."""
    start = tb
    while start is not None and start.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        start = start.tb_next
    return start if start is not None else tb


def show_traceback(error: BaseException) -> None:
    """Print a traceback the way the session would, starting at the user's frames, without
    killing the kernel."""
    tb = user_frames(error.__traceback__)
    shell = ipython_shell()
    if shell is not None:
        try:
            shell.showtraceback((type(error), error, tb))
            return
        except Exception:  # noqa: BLE001 - fall back to plain printing
            pass
    import traceback

    traceback.print_exception(type(error), error, tb)
