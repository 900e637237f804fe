"""``runlock diff RUN_A RUN_B``: exactly what differs between two runs, and nothing else.

Sections compared: config (and seed), code (commits, and the files changed between the two
source snapshots), data hashes, upstream runs, packages, environment. Identical sections are
not printed. Volatile fields (pid, times, argv, cwd) are not compared: they always differ.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .ls import add_root_argument, root_of

if TYPE_CHECKING:
    from ..record.lock import Lock

#: Environment fields that can change a result (not argv/cwd/times, which always differ).
ENV_KEYS = (
    "python_version", "python_implementation", "python_executable", "platform", "hostname",
    "user", "cpu_count", "memory_bytes", "gpus", "env",
)  # fmt: skip

#: ``added`` / ``removed`` / ``changed`` (and, for code, ``files`` / ``patch`` / ``files_note``)
Changes = dict[str, Any]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "diff",
        help="what differs between two runs",
        description="Show what differs between two runs: config, code, data, upstream runs, "
        "packages and environment. Identical sections are not printed.",
    )
    p.add_argument("run_a", metavar="RUN_A")
    p.add_argument("run_b", metavar="RUN_B")
    p.add_argument(
        "--patch", action="store_true", help="print the source diff between the snapshots"
    )
    p.add_argument("--json", action="store_true", help="JSON output")
    add_root_argument(p)
    p.set_defaults(func=run)
    return p


def mapping_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> Changes:
    """``{"added": {k: b}, "removed": {k: a}, "changed": {k: [a, b]}}``, empty parts dropped."""
    out: Changes = {
        "added": {k: b[k] for k in b if k not in a},
        "removed": {k: a[k] for k in a if k not in b},
        "changed": {k: [a[k], b[k]] for k in a if k in b and a[k] != b[k]},
    }
    return {k: v for k, v in out.items() if v}


def _section(lock: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = lock.get(key)
    return dict(value) if isinstance(value, Mapping) else {}


def _code_facts(lock: Lock) -> dict[str, Any]:
    git, fn = lock.git, lock.function
    facts = {
        "commit": git.head if git else None,
        "dirty": git.dirty if git else None,
        "snapshot": git.snapshot if git else None,
        "function": (fn.qualname or fn.name) if fn else None,
        "module": fn.module if fn else None,
    }
    return {k: v for k, v in facts.items() if v is not None}


def _code_diff(la: Lock, lb: Lock, patch: bool) -> dict[str, Any]:
    """Commits that differ, plus the files (or patch) between the two source snapshots."""
    out: Changes = mapping_diff(_code_facts(la), _code_facts(lb))
    if not out:
        return out
    ga, gb = la.git, lb.git
    # The snapshot holds the exact source; HEAD is the best we have for a run without one.
    rev_a = (ga.snapshot or ga.head) if ga else None
    rev_b = (gb.snapshot or gb.head) if gb else None
    if not rev_a or not rev_b or rev_a == rev_b:
        return out
    roots = (gb.root if gb else None, ga.root if ga else None)
    repo = next((Path(r) for r in roots if r and Path(r).is_dir()), None)
    if repo is None:
        out["files_note"] = "source repository not found on this machine: file list unavailable"
        return out
    from .. import git as git_mod
    from ..errors import RunlockError

    snapshot_diff = getattr(git_mod, "snapshot_diff", None)
    if snapshot_diff is None:  # pragma: no cover - older git module
        return out
    try:
        files = snapshot_diff(repo, rev_a, rev_b)
        if isinstance(files, Mapping):
            files = {k: v for k, v in files.items() if v}
            if files:
                out["files"] = files
        if patch:
            out["patch"] = snapshot_diff(repo, rev_a, rev_b, patch=True)
    except (RunlockError, OSError) as exc:
        out["files_note"] = f"cannot diff the snapshots in {repo}: {exc}"
    return out


def diff_locks(
    la: Mapping[str, Any], lb: Mapping[str, Any], *, patch: bool = False
) -> dict[str, Changes]:
    """Every section that differs between two locks (a pure function of the two locks, plus the
    git repository for the code file list)."""
    from ..browse.index import flatten
    from ..record.lock import Lock

    va, vb = Lock.from_dict(la), Lock.from_dict(lb)

    def data(lock: Lock) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for d in lock.inputs:
            out[d.label] = d.hash
            out[f"{d.label}.path"] = d.path
        return out

    def upstream(lock: Lock) -> dict[str, Any]:
        return {up.key: up.id for up in lock.upstream}

    def env(lock: Mapping[str, Any]) -> dict[str, Any]:
        e = _section(lock, "environment")
        flat = {k: e[k] for k in ENV_KEYS if k in e and k != "env"}
        flat.update({f"env.{k}": v for k, v in (e.get("env") or {}).items()})
        return flat

    sections: dict[str, Changes] = {
        "config": mapping_diff(flatten(va.config), flatten(vb.config)),
        "seed": mapping_diff({"seed": va.seed}, {"seed": vb.seed}),
        "code": _code_diff(va, vb, patch),
        "data": mapping_diff(data(va), data(vb)),
        "upstream": mapping_diff(upstream(va), upstream(vb)),
        "packages": mapping_diff(_section(la, "packages"), _section(lb, "packages")),
        "environment": mapping_diff(env(la), env(lb)),
    }
    return {k: v for k, v in sections.items() if v}


def _render(sections: Mapping[str, Changes]) -> list[Any]:
    from ..browse.render import Section, fmt_value

    out = []
    for name, changes in sections.items():
        sec = Section(name, text=changes.get("patch") or None)
        for key, (old, new) in (changes.get("changed") or {}).items():
            sec.add(f"~ {key}", f"{fmt_value(old)} -> {fmt_value(new)}")
        for key, value in (changes.get("added") or {}).items():
            sec.add(f"+ {key}", fmt_value(value))
        for key, value in (changes.get("removed") or {}).items():
            sec.add(f"- {key}", fmt_value(value))
        for kind, mark in (("modified", "M"), ("added", "A"), ("deleted", "D")):
            for path in (changes.get("files") or {}).get(kind, []):
                sec.add(f"{mark} {path}", "")
        if changes.get("files_note"):
            sec.add("note", changes["files_note"])
        out.append(sec)
    return out


def run(args: argparse.Namespace) -> int:
    from ..browse.render import print_json, print_sections
    from ..browse.resolve import resolve_run

    root = root_of(args)
    a, b = resolve_run(args.run_a, root), resolve_run(args.run_b, root)
    sections = diff_locks(a.lock, b.lock, patch=args.patch)
    if args.json:
        print_json({
            "a": {"id": a.id, "stage": a.stage, "dir": str(a.dir)},
            "b": {"id": b.id, "stage": b.stage, "dir": str(b.dir)},
            "differences": sections,
        })  # fmt: skip
        return 0
    header = f"{a.stage} {a.id}  ->  {b.stage} {b.id}"
    if not sections:
        print(f"{header}\nno differences in config, code, data, upstream, packages or environment")
        return 0
    print_sections(_render(sections), header=header)
    return 0
