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


def lineage_tree(
    lock: Mapping[str, Any],
    root: Path,
    depth: int = 0,
    embedded: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """``{id, stage, status, commit, upstream: {config_key: node + outputs_match}}``.

    ``embedded``: the full locks embedded anywhere in the top lock, by id, for the entries
    stored as ``{ref: id}`` (a run met twice is embedded once).
    """
    from ..capture.lineage import embedded_locks
    from ..record.lock import Lock

    view = Lock.from_dict(lock)
    if embedded is None:
        embedded = embedded_locks(lock)
    node: dict[str, Any] = {
        "id": view.id,
        "stage": view.stage,
        "status": view.status,
        "commit": view.git.short_head if view.git else None,
        "upstream": {},
    }
    for up in view.upstream:
        sub_lock = up.lock
        if sub_lock is None and up.ref and up.id:
            sub_lock = embedded.get(up.id)
        if sub_lock is None:
            sub_lock = _lookup(up.id, root)
        if sub_lock is not None and depth < MAX_DEPTH:
            child = lineage_tree(sub_lock, root, depth + 1, embedded)
        else:
            child = {"id": up.id, "stage": up.stage, "status": up.status,
                     "commit": None, "upstream": {}, "missing": sub_lock is None}  # fmt: skip
        child["path"] = up.path
        child["outputs_match"] = up.outputs_match
        node["upstream"][up.key] = child
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
