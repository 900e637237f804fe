"""``runlock lineage RUN``: the tree of upstream runs, from the locks embedded in each lock.

Embedded upstream locks make the tree readable on a machine that only has the final run; when an
upstream lock is not embedded, the run is looked up under the results root instead.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .ls import add_root_argument, root_of

#: Guard against cyclic or absurdly deep lineage (a hand-edited lock).
MAX_DEPTH = 50


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "lineage",
        help="tree of upstream runs",
        description="Show the runs a run was computed from (recursively): stage, id, status and "
        "code commit, and whether their outputs still match what the run used.",
    )
    p.add_argument("run_ref", metavar="RUN")
    p.add_argument("--json", action="store_true", help="JSON output (nested)")
    add_root_argument(p)
    p.set_defaults(func=run)
    return p


def _commit(lock: Mapping[str, Any]) -> str | None:
    git: Mapping[str, Any] = lock["git"] if isinstance(lock.get("git"), Mapping) else {}
    head = git.get("head")
    return None if not head else str(head)[:8] + ("*" if git.get("dirty") else "")


def _lookup(run_id: str | None, root: Path) -> Mapping[str, Any] | None:
    """The lock of an upstream run found under the results root, or None."""
    if not run_id:
        return None
    from ..browse.resolve import resolve_run
    from ..errors import RunlockError

    try:
        return resolve_run(run_id, root).lock
    except RunlockError:
        return None


def lineage_tree(lock: Mapping[str, Any], root: Path, depth: int = 0) -> dict[str, Any]:
    """``{id, stage, status, commit, upstream: {config_key: node + outputs_match}}``."""
    node: dict[str, Any] = {
        "id": lock.get("id"),
        "stage": lock.get("stage"),
        "status": lock.get("status"),
        "commit": _commit(lock),
        "upstream": {},
    }
    upstream: Mapping[str, Any] = (
        lock["upstream"] if isinstance(lock.get("upstream"), Mapping) else {}
    )
    for key, up in upstream.items():
        if not isinstance(up, Mapping):
            continue
        sub_lock = up.get("lock") if isinstance(up.get("lock"), Mapping) else None
        if sub_lock is None:
            sub_lock = _lookup(up.get("id"), root)
        if sub_lock is not None and depth < MAX_DEPTH:
            child = lineage_tree(sub_lock, root, depth + 1)
        else:
            child = {"id": up.get("id"), "stage": up.get("stage"), "status": up.get("status"),
                     "commit": None, "upstream": {}, "missing": sub_lock is None}  # fmt: skip
        child["path"] = up.get("path")
        child["outputs_match"] = up.get("outputs_match")
        node["upstream"][key] = child
    return node


def _label(node: Mapping[str, Any], key: str | None = None) -> tuple[str, str | None]:
    from ..browse.render import STATUS_STYLES

    parts = [f"{key}:" if key else "", str(node.get("stage") or "?"), str(node.get("id") or "?"),
             str(node.get("status") or "?"), node.get("commit") or ""]  # fmt: skip
    if node.get("outputs_match") is False:
        parts.append("(outputs changed since it was used)")
    if node.get("missing"):
        parts.append("(lock not found)")
    style = (
        "red" if node.get("outputs_match") is False else STATUS_STYLES.get(str(node.get("status")))
    )
    return " ".join(p for p in parts if p), style


def _to_tree(node: Mapping[str, Any], key: str | None = None) -> Any:
    from ..browse.render import TreeNode

    label, style = _label(node, key)
    return TreeNode(label, [_to_tree(c, k) for k, c in node["upstream"].items()], style)


def run(args: argparse.Namespace) -> int:
    from ..browse.render import print_json, print_tree
    from ..browse.resolve import resolve_run

    root = root_of(args)
    record = resolve_run(args.run_ref, root)
    tree = lineage_tree({**record.lock, "status": record.status}, root)
    if args.json:
        print_json(tree)
        return 0
    print_tree(_to_tree(tree))
    if not tree["upstream"]:
        print("(no upstream runs)")
    return 0
