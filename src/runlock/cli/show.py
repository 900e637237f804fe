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
    from ..browse.index import flatten
    from ..browse.render import Section, fmt_duration, fmt_time

    lock = record.view
    out: list[Section] = []

    run = Section("run")
    run.add("id", record.id)
    run.add("stage", record.stage)
    status = record.status
    if status != record.recorded_status and record.recorded_status:
        status += f" (lock says {record.recorded_status}; its process is gone)"
    run.add("status", status)
    run.add("dir", str(record.dir))
    run.add("start", fmt_time(record.start))
    end_ts = lock.end_ts
    if end_ts is not None:
        run.add("end", fmt_time(datetime.fromtimestamp(end_ts, UTC)))
    run.add("duration", fmt_duration(record.duration))
    if lock.pid:
        run.add("pid", f"{lock.pid} on {record.hostname or '?'}")
    fn = lock.function
    if fn:
        run.add("function", f"{fn.module or '?'}.{fn.qualname or fn.name or '?'}")
    if lock.seed is not None:
        run.add("seed", lock.seed)
    out.append(run)

    out += _map_sections(record.lock)

    config = Section("config")
    for key, value in flatten(lock.config).items():
        config.add(key, value)
    out.append(config)

    git = lock.git
    code = Section("code")
    if git and (git.head or git.snapshot):
        code.add("repo", git.root or "-")
        code.add("commit", f"{git.head or '-'}" + (" (dirty)" if git.dirty else ""))
        code.add("branch", git.branch or "-")
        if git.snapshot:
            code.add("snapshot", f"{git.snapshot} on {git.snapshot_branch or git.snapshot_ref or '?'}")
        elif lock.git_skipped:  # e.g. the index was locked: HEAD only
            code.add("not snapshotted", lock.git_skipped)
        if git.diffstat:
            code.add("changes", git.diffstat.strip())
        for name, url in git.remotes.items():
            code.add(f"remote {name}", url)
    elif lock.git_skipped:
        code.add("not snapshotted", lock.git_skipped)
    if fn and fn.source_file:
        code.add("source", fn.source_file)
    out.append(code)

    data = Section("data")
    for d in lock.inputs:
        data.add(
            d.label,
            f"{d.path or '?'}  {d.kind or ''} {d.algorithm or ''}:{d.hash or '-'}"
            f"  {_fmt_bytes(d.size)}",
        )
    out.append(data)

    lineage = Section("upstream")
    for up in lock.upstream:
        match = {True: "outputs unchanged", False: "OUTPUTS CHANGED", None: ""}[up.outputs_match]
        lineage.add(up.key, f"{up.stage or '?'} {up.id or '?'} {up.status or ''} {match}".strip())
    out.append(lineage)

    env = lock.environment
    envsec = Section("environment")
    for key in ENV_SUMMARY:
        if env.get(key) not in (None, "", [], {}):
            envsec.add(key, _fmt_bytes(env[key]) if key == "memory_bytes" else env[key])
    slurm = env.get("slurm") or {}
    if slurm.get("SLURM_JOB_ID"):
        envsec.add("slurm job", slurm["SLURM_JOB_ID"])
    packages = lock.packages
    if packages:
        editable = lock.editable
        envsec.add(
            "packages",
            f"{len(packages)} installed"
            + (f", editable: {', '.join(editable)}" if editable else ""),
        )
    out.append(envsec)

    outputs = lock.outputs
    if outputs:
        sec = Section("outputs")
        for name in list(outputs)[:20]:
            sec.add(name, outputs[name])
        if len(outputs) > 20:
            sec.add("...", f"{len(outputs) - 20} more")
        out.append(sec)

    res = Section("result")
    value = lock.result
    if isinstance(value, dict):
        for key, v in flatten(value).items():
            res.add(key, v)
    elif value is not None:
        res.add("value", value)
    if lock.result_file:
        res.add("file", lock.result_file)
    out.append(res)

    if lock.warnings:
        w = Section("warnings")
        for i, text in enumerate(lock.warnings, 1):
            w.add(str(i), text)
        out.append(w)

    error = lock.error
    if error:
        err = Section("error", text=error.traceback)
        err.add("type", error.type or "?")
        err.add("message", error.message or "")
        out.append(err)
    out += _collector_sections(record.lock)
    return [s for s in out if s.lines or s.text]


def _map_sections(data: dict[str, Any]) -> list[Section]:
    """A task map's key, backend, launches and task progress (done/failed/todo)."""
    from ..browse.render import Section, fmt_value

    spec, tasks = data.get("map"), data.get("tasks")
    if not isinstance(spec, dict):
        return []
    sec = Section("map")
    sec.add("key", spec.get("key") or "(tasks are config mappings)")
    how = str(spec.get("backend") or "?")
    if spec.get("worker_pool"):
        how += ", worker pool"
    if spec.get("chunk_size"):
        how += f", chunks of {spec['chunk_size']}"
    sec.add("backend", how)
    timing: dict[str, Any] = data["timing"] if isinstance(data.get("timing"), dict) else {}
    resumed: list[Any] = data["resumed"] if isinstance(data.get("resumed"), list) else []
    launches = [timing.get("start"), *resumed]
    sec.add("launches", f"{len(launches)}: " + ", ".join(fmt_value(t) for t in launches))
    if isinstance(tasks, dict):
        sec.add(
            "tasks",
            f"{tasks.get('done', '?')} done, {tasks.get('failed', '?')} failed, "
            f"{tasks.get('todo', '?')} todo, {tasks.get('running', 0)} running "
            f"(of {tasks.get('total', spec.get('tasks', '?'))})",
        )
        failures: dict[str, Any] = tasks["failures"] if isinstance(tasks.get("failures"), dict) else {}
        for task_id, f in list(failures.items())[:10]:
            f = f if isinstance(f, dict) else {}
            sec.add(f"failed {task_id}", f"{f.get('type')}: {f.get('message')}")
    else:
        sec.add("tasks", f"{spec.get('tasks', '?')} (no progress recorded)")
    return [sec]


#: Lines and characters a user collector's section gets in ``show`` (all of it is in --json).
EXTRA_LINES = 12
EXTRA_CHARS = 160


def _collector_sections(data: dict[str, Any]) -> list[Section]:
    """Sections written by user collectors (top-level keys runlock does not write), compactly:
    flattened, at most :data:`EXTRA_LINES` lines of :data:`EXTRA_CHARS` characters each."""
    from ..browse.index import flatten
    from ..browse.render import Section, fmt_value
    from ..record.lock import RUNLOCK_SECTIONS

    out = []
    for key in sorted((k for k in data if k not in RUNLOCK_SECTIONS), key=str):
        value = data[key]
        items = list(flatten(value).items()) if isinstance(value, dict) and value else [("", value)]
        sec = Section(str(key))
        for label, v in items[:EXTRA_LINES]:
            text = fmt_value(v)
            if len(text) > EXTRA_CHARS:
                text = text[: EXTRA_CHARS - 3] + "..."
            sec.add(label or "value", text)
        if len(items) > EXTRA_LINES:
            sec.add("...", f"{len(items) - EXTRA_LINES} more (runlock show --json)")
        out.append(sec)
    return out


def run(args: argparse.Namespace) -> int:
    from ..browse.render import print_json, print_sections
    from ..browse.resolve import resolve_run

    record = resolve_run(args.run_ref, root_of(args))
    if args.json:
        print_json({**record.lock, "dir": str(record.dir), "effective_status": record.status})
        return 0
    print_sections(sections_for(record), header=f"{record.stage} {record.id} [{record.status}]")
    return 0
