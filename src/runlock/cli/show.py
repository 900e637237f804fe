"""``runlock show RUN``: one run's lock, readable (or as JSON)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .ls import add_root_argument, root_of

if TYPE_CHECKING:
    from ..browse.query import RunRecord
    from ..browse.render import Section

#: Environment fields worth a line in ``show`` (the rest is in --json).
ENV_SUMMARY = (
    "hostname", "user", "platform", "python_version", "python_implementation",
    "python_executable", "cpu_count", "memory_bytes", "gpus", "cwd",
)  # fmt: skip


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "show",
        help="show one run",
        description="Show a run's lock: config, code, data, "
        "lineage, environment, result and error. RUN is an id, a unique id prefix or a path.",
    )
    p.add_argument("run_ref", metavar="RUN")
    p.add_argument("--json", action="store_true", help="the whole lock as JSON")
    add_root_argument(p)
    p.set_defaults(func=run)
    return p


def _fmt_bytes(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)  # pragma: no cover


def sections_for(record: RunRecord) -> list[Section]:
    """The readable view of a lock, section by section (empty sections left out)."""
    from ..browse.index import flatten, to_timestamp
    from ..browse.render import Section, fmt_duration, fmt_time

    lock = record.lock
    out: list[Section] = []

    run = Section("run")
    run.add("id", record.id)
    run.add("stage", record.stage)
    status = record.status
    if status != record.recorded_status and record.recorded_status:
        status += f" (lock says {record.recorded_status}; its process is gone)"
    run.add("status", status)
    run.add("dir", str(record.dir))
    timing = lock.get("timing") or {}
    run.add("start", fmt_time(record.start))
    end_ts = to_timestamp(timing.get("end"))
    if end_ts is not None:
        run.add("end", fmt_time(datetime.fromtimestamp(end_ts, UTC)))
    run.add("duration", fmt_duration(record.duration))
    if lock.get("pid"):
        run.add("pid", f"{lock['pid']} on {record.hostname or '?'}")
    fn = lock.get("function") or {}
    if fn:
        run.add("function", f"{fn.get('module', '?')}.{fn.get('qualname') or fn.get('name', '?')}")
    if lock.get("seed") is not None:
        run.add("seed", lock["seed"])
    out.append(run)

    config = Section("config")
    for key, value in flatten(lock.get("config") or {}).items():
        config.add(key, value)
    out.append(config)

    git = lock.get("git") or {}
    code = Section("code")
    if git.get("head") or git.get("snapshot"):
        code.add("repo", git.get("root") or "-")
        code.add("commit", f"{git.get('head') or '-'}" + (" (dirty)" if git.get("dirty") else ""))
        code.add("branch", git.get("branch") or "-")
        snap = git.get("snapshot") or {}
        if snap.get("commit"):
            code.add(
                "snapshot", f"{snap['commit']} on {snap.get('branch') or snap.get('ref') or '?'}"
            )
        if git.get("diffstat"):
            code.add("changes", str(git["diffstat"]).strip())
        for name, url in (git.get("remotes") or {}).items():
            code.add(f"remote {name}", url)
    elif git.get("skipped"):
        code.add("not snapshotted", git["skipped"])
    if fn.get("source_file"):
        code.add("source", fn["source_file"])
    out.append(code)

    data = Section("data")
    for label, info in (lock.get("data") or {}).items():
        if isinstance(info, dict):
            h = str(info.get("hash") or "-")
            data.add(
                label,
                f"{info.get('path', '?')}  {info.get('kind', '')} {info.get('algorithm', '')}:{h}"
                f"  {_fmt_bytes(info.get('size'))}",
            )
        else:
            data.add(label, info)
    out.append(data)

    lineage = Section("upstream")
    for key, up in (lock.get("upstream") or {}).items():
        if isinstance(up, dict):
            match = {True: "outputs unchanged", False: "OUTPUTS CHANGED", None: ""}.get(
                up.get("outputs_match"), ""
            )
            lineage.add(
                key,
                f"{up.get('stage', '?')} {up.get('id', '?')} {up.get('status', '')} "
                f"{match}".strip(),
            )
    out.append(lineage)

    env = lock.get("environment") or {}
    envsec = Section("environment")
    for key in ENV_SUMMARY:
        if env.get(key) not in (None, "", [], {}):
            envsec.add(key, _fmt_bytes(env[key]) if key == "memory_bytes" else env[key])
    slurm = env.get("slurm") or {}
    if slurm.get("SLURM_JOB_ID"):
        envsec.add("slurm job", slurm["SLURM_JOB_ID"])
    packages = lock.get("packages") or {}
    if packages:
        editable = lock.get("editable") or {}
        envsec.add(
            "packages",
            f"{len(packages)} installed"
            + (f", editable: {', '.join(editable)}" if editable else ""),
        )
    out.append(envsec)

    outputs = (lock.get("outputs") or {}).get("files") or {}
    if outputs:
        sec = Section("outputs")
        for name in list(outputs)[:20]:
            sec.add(name, outputs[name])
        if len(outputs) > 20:
            sec.add("...", f"{len(outputs) - 20} more")
        out.append(sec)

    result = lock.get("result")
    res = Section("result")
    if isinstance(result, dict):
        value = result.get("value")
        if isinstance(value, dict):
            for key, v in flatten(value).items():
                res.add(key, v)
        elif value is not None:
            res.add("value", value)
        if result.get("file"):
            res.add("file", result["file"])
    out.append(res)

    warnings = lock.get("warnings") or []
    if warnings:
        w = Section("warnings")
        for i, text in enumerate(warnings, 1):
            w.add(str(i), str(text))
        out.append(w)

    error = lock.get("error")
    if isinstance(error, dict) and error:
        err = Section("error", text=error.get("traceback") or None)
        err.add("type", error.get("type") or "?")
        err.add("message", str(error.get("message") or ""))
        out.append(err)
    return [s for s in out if s.lines or s.text]


def run(args: argparse.Namespace) -> int:
    from ..browse.render import print_json, print_sections
    from ..browse.resolve import resolve_run

    record = resolve_run(args.run_ref, root_of(args))
    if args.json:
        print_json({**record.lock, "dir": str(record.dir), "effective_status": record.status})
        return 0
    print_sections(sections_for(record), header=f"{record.stage} {record.id} [{record.status}]")
    return 0
