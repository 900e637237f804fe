"""The typed view of a run.lock (``runlock.record.lock.Lock``): what every reader asks of a lock.

One table of rows (lock -> the answers the view must give), as omegaconf's tests/test_errors.py
does for errors; then every golden lock, and a sweep of odd values through every section: locks
come from other machines, older versions and hand edits, and reading one must never raise.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from locks import make_run

from runlock.record.lock import Lock
from runlock.record.lockfile import load_lock

GOLDEN = sorted((Path(__file__).parent / "golden").rglob("*.lock"))
HEAD, SNAP = "1" * 40, "2" * 40
FULL_UPSTREAM = {"schema": 1, "id": "U1", "stage": "prep", "status": "completed"}


def answer(view: Lock, question: str) -> Any:
    """``"git.source_commit"`` -> ``view.git.source_commit``; ``"upstream.1.ref"`` indexes."""
    value: Any = view
    for part in question.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part)
    return value


# (row id, lock, {question: expected answer})
ROWS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("empty lock", {}, {
        "id": None, "stage": None, "status": "running", "git": None, "source_commit": None,
        "upstream": (), "upstream_ids": [], "outputs": {}, "outputs_manifest": None,
        "error": None, "start_ts": None, "inputs": (), "function": None, "warnings": (),
    }),
    ("wrong types read as missing", {
        "id": 5, "stage": ["train"], "status": 3, "pid": True, "seed": "1", "timing": "soon",
        "config": [1], "git": "abc", "upstream": ["x"], "outputs": {"files": ["a"]},
        "error": "boom", "warnings": "w", "packages": ["numpy"], "function": "train",
        "data": "x", "environment": None, "result": 0.9,
    }, {
        "id": None, "stage": None, "status": "running", "pid": None, "seed": None,
        "start": None, "config": {}, "git": None, "upstream": (), "outputs": {},
        "outputs_manifest": None, "error": None, "warnings": (), "packages": {},
        "function": None, "inputs": (), "environment": {}, "result": None,
    }),
    ("git outside a repository", {"git": {"repo": None, "skipped": "not a git repository"}}, {
        "git": None, "git_skipped": "not a git repository", "source_commit": None,
    }),
    ("git: null", {"git": None}, {"git": None, "git_skipped": None, "source_commit": None}),
    ("clean HEAD is the source", {"git": {"head": HEAD, "dirty": False}}, {
        "source_commit": HEAD, "git.short_head": HEAD[:8], "git.dirty": False,
    }),
    ("dirty HEAD without snapshot: no source commit", {"git": {"head": HEAD, "dirty": True}}, {
        "source_commit": None, "git.short_head": HEAD[:8] + "*", "git.head": HEAD,
    }),
    ("snapshot is the source", {"git": {
        "root": "/p", "head": HEAD, "dirty": True,
        "snapshot": {"commit": SNAP, "tree": "t", "branch": "runlock/snapshots", "ref": "r"},
    }}, {
        "source_commit": SNAP, "git.snapshot_tree": "t", "git.snapshot_branch": "runlock/snapshots",
        "git.snapshot_ref": "r", "git.root": "/p",
    }),
    ("snapshot not a mapping", {"git": {"head": HEAD, "dirty": True, "snapshot": SNAP}}, {
        "source_commit": None, "git.snapshot": None,
    }),
    ("remotes as text", {"git": {"head": HEAD, "remotes": {"origin": "u", "bad": None}}}, {
        "git.remotes": {"origin": "u"},
    }),
    ("upstream: full, {ref: id}, odd values", {"upstream": {
        "a": {"id": "U1", "stage": "prep", "path": "/r/prep", "lock": FULL_UPSTREAM,
              "outputs_match": True, "file": "x.csv"},
        "b": {"id": "U1", "stage": "prep", "lock": {"ref": "U1"}, "outputs_match": "yes"},
        "c": {"id": "U2", "lock": "not a lock", "warning": "upstream: run U2 failed"},
        "d": "U3",
        "e": None,
    }}, {
        "upstream_ids": ["U1", "U2"],
        "upstream.0.key": "a", "upstream.0.lock": FULL_UPSTREAM, "upstream.0.ref": False,
        "upstream.0.outputs_match": True, "upstream.0.file": "x.csv",
        "upstream.0.path": "/r/prep",
        "upstream.1.ref": True, "upstream.1.lock": None, "upstream.1.outputs_match": None,
        "upstream.2.lock": None, "upstream.2.ref": False,
        "upstream.2.warning": "upstream: run U2 failed",
    }),
    ("timing: ISO, naive = UTC, datetimes", {"timing": {
        "start": "1970-01-01T00:00:10+00:00", "end": datetime(1970, 1, 1, 0, 0, 52),
        "duration_s": 42,
    }, "heartbeat": "1970-01-01T00:00:30"}, {
        "start_ts": 10.0, "end_ts": 52.0, "duration_s": 42.0, "heartbeat_ts": 30.0,
        "end": "1970-01-01T00:00:52",
    }),
    ("timing: unreadable times", {"timing": {"start": "an hour ago", "duration_s": "42"}}, {
        "start": "an hour ago", "start_ts": None, "duration_s": None,
    }),
    ("outputs recorded, even empty", {"outputs": {"algorithm": "xxh3_64", "files": {}}}, {
        "outputs_recorded": True,
        "outputs_manifest": {"files": {}, "algorithm": "xxh3_64"},
    }),
    ("outputs manifest", {"outputs": {
        "algorithm": "xxh3_64", "exclude": ["run.lock"], "files": {"m.pt": "ab"},
    }}, {
        "outputs": {"m.pt": "ab"},
        "outputs_manifest": {"algorithm": "xxh3_64", "exclude": ["run.lock"],
                             "files": {"m.pt": "ab"}},
    }),
    ("error: empty reads as none", {"error": {}}, {"error": None}),
    ("error", {"error": {"type": "builtins.ValueError", "message": 3, "traceback": "T"}}, {
        "error.type": "builtins.ValueError", "error.message": None, "error.traceback": "T",
    }),
    ("data inputs", {"data": {
        "csv": {"path": "/d", "kind": "dir", "hash": "h", "size": "big",
                "match": ["*.csv", 3], "ignore": "tmp"},
        "gone": {"path": "/g", "error": "not found"},
    }}, {
        "inputs.0.label": "csv", "inputs.0.hash": "h", "inputs.0.size": None,
        "inputs.0.match": ("*.csv",), "inputs.0.ignore": None,
        "inputs.1.hash": None, "inputs.1.error": "not found",
    }),
    ("hostname from the environment", {"environment": {"hostname": "node1"}}, {
        "hostname": "node1",
    }),
    ("function", {"function": {"module": "m", "qualname": "f", "parameters": [1]}}, {
        "function.module": "m", "function.qualname": "f", "function.name": None,
        "function.parameters": None,
    }),
    ("inline result and packages as text", {
        "result": {"file": "result.json", "value": {"acc": 0.9}}, "packages": {"numpy": 2.0},
        "warnings": ["w", None], "seed": 7, "reproduces": "R",
    }, {
        "result": {"acc": 0.9}, "result_file": "result.json", "packages": {"numpy": "2.0"},
        "warnings": ("w",), "seed": 7, "reproduces": "R",
    }),
]


@pytest.mark.parametrize(("lock", "expected"), [pytest.param(lk, ex, id=i) for i, lk, ex in ROWS])
def test_view_answers(lock: dict[str, Any], expected: dict[str, Any]) -> None:
    view = Lock.from_dict(lock)
    assert view.data is lock  # the whole lock stays at hand for show/diff
    assert {q: answer(view, q) for q in expected} == expected


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_view_of_every_golden_lock(path: Path) -> None:
    data = load_lock(path)
    view = Lock.from_dict(data)
    assert (view.schema, view.id, view.stage, view.status) == (
        data["schema"], data["id"], data["stage"], data["status"]
    )
    assert view.start_ts is not None and view.config == data["config"]
    assert view.function is not None and view.function.source_file
    assert view.packages == {k: str(v) for k, v in (data.get("packages") or {}).items()}
    assert view.environment == data["environment"] and view.hostname


def test_golden_dirty_run_without_snapshot_has_no_source_commit() -> None:
    view = Lock.from_dict(load_lock(Path(__file__).parent / "golden/schema1/completed.lock"))
    assert view.git is not None and view.git.dirty and view.git.snapshot is None
    assert view.source_commit is None and view.git.short_head == f"{view.git.head}"[:8] + "*"
    assert view.result == {"acc": 0.9} and view.error is None


def test_golden_failed_run_reports_its_error() -> None:
    view = Lock.from_dict(load_lock(Path(__file__).parent / "golden/schema1/failed.lock"))
    assert view.status == "failed" and view.git is None and view.source_commit is None
    assert view.error is not None and view.error.type == "builtins.ValueError"
    assert view.error.message == "bad lr" and "Traceback" in (view.error.traceback or "")


ODD = [None, 0, 1.5, True, "x", [], ["x", None], {}, {"x": None}]


@pytest.mark.parametrize("odd", ODD, ids=repr)
def test_view_never_raises_on_odd_sections(tmp_path: Path, odd: Any) -> None:
    """Every section of a full lock, then every field of every section, replaced by ``odd``."""
    lock = load_lock(make_run(tmp_path, upstream={"a": {"id": "U", "lock": FULL_UPSTREAM}},
                              outputs={"algorithm": "xxh3_64", "files": {"f": "h"}}))  # fmt: skip
    for key, section in lock.items():
        Lock.from_dict({**lock, key: odd})
        if isinstance(section, dict):
            for sub in section:
                view = Lock.from_dict({**lock, key: {**section, sub: odd}})
                _ = (view.source_commit, view.upstream_ids, view.start_ts, view.outputs_manifest)


def test_factory_lock_reads_as_a_completed_run(tmp_path: Path) -> None:
    """The tests' synthetic runs have the shape readers meet in the field."""
    d = make_run(tmp_path, "prep", config={"n": 3}, result={"rows": 3})
    view = Lock.from_dict(load_lock(d))
    assert (view.stage, view.status, view.run_dir, view.config) == ("prep", "completed", str(d), {"n": 3})
    assert view.id == d.name and view.start_ts is not None and view.duration_s is not None
    assert view.git is not None and view.source_commit == view.git.head  # a clean HEAD
    assert view.outputs_manifest == {"algorithm": "xxh3_64", "exclude": ["run.lock"], "files": {}}


def test_cli_lineage_reads_a_ref_entry_from_the_lock_embedded_elsewhere(tmp_path: Path) -> None:
    """A run used twice is embedded once; the second use, ``{ref: id}``, shows the same run
    (not a nameless node) even when that run is not on this machine."""
    from runlock.cli.lineage import lineage_tree

    prep = {**FULL_UPSTREAM, "git": {"head": HEAD, "dirty": False}}
    d = make_run(tmp_path / "results", "train", upstream={
        "a": {"id": "U1", "stage": "prep", "status": "completed", "lock": prep},
        "b": {"id": "U1", "stage": "prep", "status": "completed", "lock": {"ref": "U1"}},
    })  # fmt: skip
    tree = lineage_tree(load_lock(d), tmp_path / "results")
    a, b = tree["upstream"]["a"], tree["upstream"]["b"]
    assert (a["id"], a["stage"], a["commit"]) == (b["id"], b["stage"], b["commit"]) == (
        "U1", "prep", HEAD[:8]
    )
    assert not b.get("missing")
