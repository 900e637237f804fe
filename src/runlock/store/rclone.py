"""The rclone owner: every rclone call runlock makes goes through this module.

rclone gives runlock one interface to every storage (a local directory, SFTP, S3, B2, ...).
Credentials stay in rclone's own config or environment (``RCLONE_CONFIG_<NAME>_*``); this module
never writes them anywhere and scrubs them out of every message it raises.

All programs run through :func:`runlock._subprocess.run`. A live progress bar needs the output
while rclone runs, so on a terminal the call runs in a worker thread while this thread tails
rclone's JSON log file (``--use-json-log --stats``) and draws the bar.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _subprocess
from ..errors import RemoteError
from ..redact import is_secret_name, redact_remote, redact_text

INSTALL_HINT = "install rclone: `apt-get install rclone` or see https://rclone.org/install/"
#: rclone exit codes (https://rclone.org/docs/#exit-code)
EXIT_DIR_NOT_FOUND = 3
EXIT_FILE_NOT_FOUND = 4
# A remote that does not answer fails within seconds instead of rclone's long default retries.
_NET_FLAGS = ("--contimeout", "10s", "--timeout", "60s", "--low-level-retries", "3")
# key=value credentials inside on-the-fly remotes (":sftp,host=h,pass=xyz:") or flags.
_INLINE_SECRET = re.compile(
    r"(?P<k>\b[\w-]*(?:pass|password|secret|token|key|auth)[\w-]*)(?P<sep>\s*[=:]\s*|\s+)"
    r"(?P<v>'[^']*'|\"[^\"]*\"|[^,:\s'\"]+)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class TransferStats:
    """What one rclone copy did (from its final ``--stats`` record)."""

    bytes: int = 0
    transfers: int = 0
    checks: int = 0
    errors: int = 0
    elapsed_s: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransferStats:
        return cls(
            bytes=int(d.get("bytes") or 0),
            transfers=int(d.get("transfers") or 0),
            checks=int(d.get("checks") or 0),
            errors=int(d.get("errors") or 0),
            elapsed_s=float(d.get("elapsedTime") or 0.0),
        )


def binary() -> str:
    """Path of the rclone program (``$RUNLOCK_RCLONE`` or PATH), or a RemoteError saying how to
    install it."""
    override = os.environ.get("RUNLOCK_RCLONE")
    found = shutil.which(override or "rclone")
    if found is None:
        raise RemoteError(
            f"rclone is not installed (looked for {override or 'rclone'!r} on PATH); runlock "
            "uses it to push and pull runs.",
            hint=INSTALL_HINT,
        )
    return found


def available() -> bool:
    try:
        binary()
    except RemoteError:
        return False
    return True


def _secrets() -> list[str]:
    """Literal credential values in rclone's environment, to scrub from messages."""
    return [
        v for k, v in os.environ.items() if k.startswith("RCLONE_") and is_secret_name(k) and v
    ]


def redact(text: str) -> str:
    """Scrub credentials (URL users, inline ``pass=...``, rclone env secrets) out of ``text``."""
    text = _INLINE_SECRET.sub(lambda m: f"{m.group('k')}{m.group('sep')}***", redact_remote(text))
    return redact_text(text, _secrets())


def local_path(remote: str) -> Path | None:
    """The directory a remote string names when it is a plain local path, else None.

    rclone reads ``name:path`` as a configured remote and anything without a colon before the
    first slash as a local path (``/srv/store``, ``./store``, ``store``).
    """
    if remote.startswith(":"):
        return None
    head = remote.split("/", 1)[0]
    if ":" in head and not (len(head) == 2 and head[1] == ":"):  # keep Windows drives local
        return None
    return Path(remote).expanduser().absolute()


def join(remote: str, *parts: str) -> str:
    """``remote`` + ``/part/...`` without doubling slashes (``b2:bucket`` + ``runs`` works)."""
    out = remote
    for p in parts:
        p = p.strip("/")
        if not p:
            continue
        out = out + p if out.endswith((":", "/")) else f"{out}/{p}"
    return out


def _fail(what: str, proc: _subprocess.Completed) -> RemoteError:
    tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
    try:  # JSON log lines: keep only the messages
        msgs = [json.loads(line).get("msg", line) for line in tail.splitlines()]
        tail = "\n".join(str(m).strip() for m in msgs)
    except (ValueError, AttributeError):
        pass
    return RemoteError(
        redact(f"{what} failed (rclone exit {proc.returncode}): {tail or 'no output'}"),
        hint="check the remote name and that it answers: `rclone lsf REMOTE` "
        "(credentials belong in rclone's config or RCLONE_CONFIG_* variables)",
    )


def run(
    args: Sequence[str], *, what: str, timeout: float | None = None, input: str | None = None,
    allow: Sequence[int] = (),
) -> _subprocess.Completed:
    """Run ``rclone ARGS``; a non-zero exit not in ``allow`` becomes a redacted RemoteError."""
    try:
        proc = _subprocess.run([binary(), *args], timeout=timeout, input=input)
    except _subprocess.CommandNotFound as exc:  # pragma: no cover - binary() checked
        raise RemoteError("rclone is not installed.", hint=INSTALL_HINT) from exc
    except OSError as exc:
        raise RemoteError(redact(f"{what}: cannot run rclone: {exc}")) from exc
    if not proc.ok and proc.returncode not in allow:
        raise _fail(what, proc)
    return proc


def _last_stats(lines: Sequence[str]) -> TransferStats:
    for line in reversed(lines):
        if '"stats"' not in line:
            continue
        try:
            return TransferStats.from_dict(json.loads(line)["stats"])
        except (ValueError, KeyError, TypeError):
            continue
    return TransferStats()


def copy(
    src: str | Path,
    dst: str | Path,
    *,
    checksum: bool = True,
    progress: bool = False,
    label: str = "",
    extra: Sequence[str] = (),
) -> TransferStats:
    """``rclone copy SRC DST``: sends only what is missing or different, so an interrupted copy
    re-run completes without re-sending what already arrived.

    ``checksum`` compares by hash (not size + mtime) and with rclone's per-file hash check after
    each transfer this verifies the whole tree in the same pass.
    """
    args = ["copy", os.fspath(src), os.fspath(dst), *_NET_FLAGS, "--use-json-log"]
    if checksum:
        args.append("--checksum")
    args += list(extra)
    what = redact(f"rclone copy {src} -> {dst}")
    if not progress:
        proc = run([*args, "--stats", "1h", "--stats-log-level", "NOTICE"], what=what)
        return _last_stats(proc.stderr.splitlines())
    return _copy_with_progress(args, what=what, label=label or os.path.basename(str(src)))


def _copy_with_progress(args: list[str], *, what: str, label: str) -> TransferStats:
    """Run the copy in a worker thread and draw rclone's JSON stats as a rich progress bar."""
    from ..logs import transfer_bar

    fd, log_name = tempfile.mkstemp(prefix="runlock-rclone-", suffix=".log")
    os.close(fd)
    log = Path(log_name)
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["proc"] = _subprocess.run(
                [binary(), *args, "--stats", "250ms", "--stats-log-level", "NOTICE",
                 "--log-file", log_name]
            )
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["exc"] = exc

    thread = threading.Thread(target=work, name="runlock-rclone", daemon=True)
    lines: list[str] = []
    try:
        with transfer_bar() as bar, open(log, encoding="utf-8", errors="replace") as f:
            task = bar.add_task(label, total=None)
            thread.start()
            while True:
                alive = thread.is_alive()
                new = f.read().splitlines()
                lines += new
                st = [ln for ln in new if '"stats"' in ln]
                if st:
                    try:
                        s = json.loads(st[-1])["stats"]
                        bar.update(task, completed=s.get("bytes", 0),
                                   total=s.get("totalBytes") or None)
                    except (ValueError, KeyError):
                        pass
                if not alive:
                    break
                thread.join(0.1)
    finally:
        thread.join()
        log.unlink(missing_ok=True)
    if "exc" in box:
        raise box["exc"]
    proc: _subprocess.Completed = box["proc"]
    if not proc.ok:
        raise _fail(what, _subprocess.Completed(proc.args, proc.returncode, "", "\n".join(lines)))
    return _last_stats(lines)


def check(src: str | Path, dst: str | Path, *, one_way: bool = True) -> list[str]:
    """Files that differ or are missing between SRC and DST (``rclone check``), by hash when
    both sides have one, else by size. Empty list: identical."""
    args = ["check", os.fspath(src), os.fspath(dst), *_NET_FLAGS, "--combined", "-"]
    if one_way:
        args.append("--one-way")
    proc = run(args, what=redact(f"rclone check {src} {dst}"), allow=(1,))
    return [ln[2:] for ln in proc.stdout.splitlines() if ln[:1] in "*+-!" and ln[1:2] == " "]


def lsjson(path: str, *, recursive: bool = False, files_only: bool = False,
           missing_ok: bool = True) -> list[dict[str, Any]]:
    """Entries under ``path`` (``rclone lsjson``); [] when it does not exist and ``missing_ok``."""
    args = ["lsjson", path, *_NET_FLAGS, "--no-mimetype", "--no-modtime"]
    if recursive:
        args.append("-R")
    if files_only:
        args.append("--files-only")
    proc = run(args, what=redact(f"rclone lsjson {path}"),
               allow=(EXIT_DIR_NOT_FOUND,) if missing_ok else ())
    if not proc.ok:
        return []
    out: list[dict[str, Any]] = json.loads(proc.stdout or "[]")
    return out


def cat(path: str, *, include: str | None = None) -> str:
    """Contents of a file, or of every file under a directory matching ``include``, in one call."""
    args = ["cat", path, *_NET_FLAGS]
    if include:
        args += ["--include", include]
    proc = run(args, what=redact(f"rclone cat {path}"), allow=(EXIT_DIR_NOT_FOUND,))
    return proc.stdout if proc.ok else ""


def rcat(path: str, data: str) -> None:
    """Write ``data`` to the file ``path`` on the remote."""
    run(["rcat", path, *_NET_FLAGS], what=redact(f"rclone rcat {path}"), input=data)


def purge(path: str) -> None:
    """Delete a directory and everything in it (no error when already gone)."""
    run(["purge", path, *_NET_FLAGS], what=redact(f"rclone purge {path}"),
        allow=(EXIT_DIR_NOT_FOUND,))


def delete_file(path: str) -> None:
    """Delete one file (no error when already gone)."""
    run(["deletefile", path, *_NET_FLAGS], what=redact(f"rclone deletefile {path}"),
        allow=(EXIT_DIR_NOT_FOUND, EXIT_FILE_NOT_FOUND))


def ping(remote: str) -> None:
    """Fail fast with a RemoteError naming ``remote`` when it does not answer."""
    proc = run(["lsf", "--max-depth", "1", remote, *_NET_FLAGS, "--retries", "1"],
               what=redact(f"listing the remote {remote}"), allow=(EXIT_DIR_NOT_FOUND,),
               timeout=120)
    del proc


def progress_wanted(quiet: bool = False) -> bool:
    """Progress bars only on a terminal, never in logs or CI."""
    from ..logs import use_rich

    return not quiet and use_rich()
