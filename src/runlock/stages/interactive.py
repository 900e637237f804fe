"""Interactive sessions: IPython / Jupyter / VS Code detection and the stage's local variables.

The user's old skeleton wrapped the body in try/finally and returned ``locals()`` so that after
a failure the variables could be inspected and cells re-run. Here the wrapper grabs the frame's
locals itself when the function returns or raises, without changing the user's code.
"""

from __future__ import annotations

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


def show_traceback(error: BaseException) -> None:
    """Print a traceback the way the session would, without killing the kernel."""
    shell = ipython_shell()
    if shell is not None:
        try:
            shell.showtraceback((type(error), error, error.__traceback__))
            return
        except Exception:  # noqa: BLE001 - fall back to plain printing
            pass
    import traceback

    traceback.print_exception(type(error), error, error.__traceback__)
