"""The run index (SQLite over the lock files), discovery, filters and the runs() API."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from locks import make_run

import runlock
from runlock.browse.filters import Condition, parse_since, parse_statuses, parse_where
from runlock.browse.index import INDEX_VERSION, RunIndex, discover, index_path
from runlock.browse.query import runs
from runlock.errors import MissingDependencyError, UsageError

SRC = Path(runlock.__file__).resolve().parents[1]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("RUNLOCK_RESULTS", None)
    return subprocess.run(
        [sys.executable, "-m", "runlock", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


# -- discovery ----------------------------------------------------------------------------


def test_discover_finds_nested_runs_but_not_inside_runs_or_hidden_dirs(tmp_path: Path) -> None:
    a = make_run(tmp_path, "train")
    b = make_run(tmp_path, "train", sub="sweeps/lr search")  # nested experiment dir, a space
    # a copied run inside another run's outputs is that run's data, not a run of its own
    make_run(a / "outputs", "train")
    make_run(tmp_path / ".runlock", "train")
    make_run(tmp_path / ".trash", "train")
    found = discover(tmp_path)
    assert sorted(found) == sorted([str(a / "run.lock"), str(b / "run.lock")])


def test_discover_missing_root_is_empty(tmp_path: Path) -> None:
    assert discover(tmp_path / "nope") == {}
    assert len(runs(root=tmp_path / "nope")) == 0
    assert not (tmp_path / "nope").exists()  # listing never creates the results root


# -- incremental refresh -------------------------------------------------------------------


def test_refresh_is_incremental(tmp_path: Path) -> None:
    dirs = [make_run(tmp_path, config={"lr": 0.1 * i}) for i in range(5)]
    with RunIndex(tmp_path) as idx:
        stats = idx.refresh()
    assert (stats.total, stats.added, stats.updated, stats.removed) == (5, 5, 0, 0)
    with RunIndex(tmp_path) as idx:
        stats = idx.refresh()
    assert (stats.total, stats.added, stats.updated, stats.removed) == (5, 0, 0, 0)
    assert index_path(tmp_path).is_file()

    # modify one lock: only it is re-read, and the listing reflects the change
    lock_path = dirs[0] / "run.lock"
    text = lock_path.read_text().replace("lr: 0.0", "lr: 7.5")
    lock_path.write_text(text)
    with RunIndex(tmp_path) as idx:
        stats = idx.refresh()
    assert (stats.added, stats.updated, stats.removed) == (0, 1, 0)
    assert [r.config["lr"] for r in runs(root=tmp_path, where=["lr=7.5"])] == [7.5]

    # delete a run: it disappears
    import shutil

    shutil.rmtree(dirs[1])
    listed = runs(root=tmp_path)
    assert len(listed) == 4 and dirs[1] not in [r.dir for r in listed]


def test_same_size_rewrite_is_seen(tmp_path: Path) -> None:
    """mtime_ns is part of the key: a same-size edit is not missed."""
    d = make_run(tmp_path, result={"acc": 0.5})
    assert runs(root=tmp_path)[0].result == {"acc": 0.5}
    p = d / "run.lock"
    st = p.stat()
    p.write_text(p.read_text().replace("acc: 0.5", "acc: 0.7"))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert runs(root=tmp_path)[0].result == {"acc": 0.7}


def test_corrupt_index_is_rebuilt_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_run(tmp_path)
    make_run(tmp_path)
    assert len(runs(root=tmp_path)) == 2
    index_path(tmp_path).write_bytes(b"this is not a sqlite database" * 100)
    for suffix in ("-wal", "-shm"):
        Path(f"{index_path(tmp_path)}{suffix}").unlink(missing_ok=True)
    with caplog.at_level(logging.WARNING, logger="runlock.browse.index"):
        assert len(runs(root=tmp_path)) == 2
    assert "corrupt" in caplog.text and "rebuilding" in caplog.text
    assert len(runs(root=tmp_path)) == 2


def test_index_of_another_version_is_rebuilt(tmp_path: Path) -> None:
    make_run(tmp_path)
    runs(root=tmp_path)
    conn = sqlite3.connect(index_path(tmp_path))
    conn.execute("UPDATE meta SET value = ? WHERE key = 'version'", (str(INDEX_VERSION + 99),))
    conn.execute("DELETE FROM runs")  # an index that would list nothing if it were trusted
    conn.commit()
    conn.close()
    assert len(runs(root=tmp_path)) == 1


def test_unreadable_lock_is_skipped_and_reported(tmp_path: Path) -> None:
    make_run(tmp_path)
    bad = tmp_path / "train" / "broken"
    bad.mkdir(parents=True)
    (bad / "run.lock").write_text("{{{ not yaml")
    assert len(runs(root=tmp_path)) == 1
    out = cli("--root", str(tmp_path), "ls", cwd=tmp_path)
    assert out.returncode == 0
    assert "unreadable run.lock" in out.stderr and "broken" in out.stderr


def test_concurrent_refreshers(tmp_path: Path) -> None:
    """Several `runlock ls` building the same index at once all succeed and agree."""
    for i in range(60):
        make_run(tmp_path, config={"lr": i / 100})
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "runlock", "--root", str(tmp_path), "ls", "--json"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(4)
    ]  # fmt: skip
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    assert len({o for o, _ in outs}) == 1
    assert len(runs(root=tmp_path)) == 60


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_root_uses_an_in_memory_index(tmp_path: Path) -> None:
    make_run(tmp_path)
    tmp_path.chmod(0o555)
    try:
        assert len(runs(root=tmp_path)) == 1
        assert not index_path(tmp_path).exists()
    finally:
        tmp_path.chmod(0o755)


# -- filters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("lr=0.1", Condition(None, "lr", "=", 0.1)),
        ("lr==0.1", Condition(None, "lr", "=", 0.1)),
        ("acc>0.8", Condition(None, "acc", ">", 0.8)),
        ("result.acc >= 0.8", Condition("result", "acc", ">=", 0.8)),
        ("config.optim.name!=adam", Condition("config", "optim.name", "!=", "adam")),
        ("epochs<10", Condition(None, "epochs", "<", 10)),
        ("flag=true", Condition(None, "flag", "=", True)),
        ("name='1e3'", Condition(None, "name", "=", "1e3")),
        ("tag=null", Condition(None, "tag", "=", None)),
    ],
)
def test_parse_where(expr: str, expected: Condition) -> None:
    assert parse_where(expr) == expected


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: parse_where("lr"), "Cannot parse the filter 'lr'"),
        (lambda: parse_where(">3"), "Cannot parse the filter '>3'"),
        (lambda: parse_since("yesterday-ish"), "Cannot read --since 'yesterday-ish'"),
        (lambda: parse_statuses("done"), "Unknown status 'done'"),
    ],
)
def test_filter_errors(call: Any, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        call()
    assert info.value.exit_code == 2 and info.value.hint


def test_parse_since() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert parse_since("3h", now) == now - timedelta(hours=3)
    assert parse_since("2d", now) == now - timedelta(days=2)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("2026-11-20T00:00+00:00", now) == datetime(2026, 11, 20, tzinfo=UTC)
    assert parse_since("2026-11-20", now) is not None


# Each case is checked in SQL (through the index) and in Python (Condition.matches): they agree.
VALUES: list[Any] = [0.1, 0.01, 1, True, False, None, "adam", "0.1", [1, 2], float("nan"), "nan"]


@pytest.mark.parametrize(
    "expr",
    ["v=0.1", "v=1", "v>0.05", "v<=1", "v=true", "v=false", "v=null", "v=adam", "v!=adam",
     "v!=0.1", "v>a", "v=[1, 2]", "v=nan", "v!=nan"],
)  # fmt: skip
def test_where_sql_agrees_with_python(tmp_path: Path, expr: str) -> None:
    for i, value in enumerate(VALUES):
        make_run(tmp_path, run_id=f"20261125T120000-{i:06x}", config={"v": value})
    cond = parse_where(expr)
    from_sql = {r.config["v"].__repr__() for r in runs(root=tmp_path, where=[expr])}
    from_py = {repr(v) for v in VALUES if cond.matches(v)}
    assert from_sql == from_py


def test_bare_key_looks_in_config_then_result(tmp_path: Path) -> None:
    make_run(tmp_path, config={"acc": 1.0}, result={"acc": 0.1})  # config wins
    make_run(tmp_path, config={}, result={"acc": 0.9})
    make_run(tmp_path, config={}, result=0.95)  # a scalar result is result.value
    assert len(runs(root=tmp_path, where=["acc>0.5"])) == 2
    assert len(runs(root=tmp_path, where=["result.acc>0.5"])) == 1
    assert len(runs(root=tmp_path, where=["config.acc>0.5"])) == 1
    assert len(runs(root=tmp_path, where=["result.value>0.9"])) == 1


# -- runs() API ---------------------------------------------------------------------------


def test_runs_api(tmp_path: Path) -> None:
    old = datetime.now(UTC) - timedelta(days=3)
    make_run(tmp_path, "prep", config={"n": 1}, start=old)
    make_run(tmp_path, "train", config={"lr": 0.1, "optim": {"name": "adam"}}, result={"acc": 0.9})
    make_run(tmp_path, "train", config={"lr": 0.01, "optim": {"name": "sgd"}}, result={"acc": 0.7},
             status="failed")  # fmt: skip
    assert len(runlock.runs(root=tmp_path)) == 3
    assert {r.stage for r in runs(root=tmp_path, stage="tr*")} == {"train"}
    assert len(runs(root=tmp_path, status="failed")) == 1
    assert len(runs(root=tmp_path, since="1d")) == 2
    assert len(runs(root=tmp_path, since=timedelta(days=1))) == 2
    assert len(runs(root=tmp_path, where={"optim.name": "adam"})) == 1
    listed = runs(root=tmp_path, stage="train", sort="-acc")
    assert [r.result["acc"] for r in listed] == [0.9, 0.7]
    best = listed[0]
    assert best.get("optim.name") == "adam" and best.get("result.acc") == 0.9
    assert best.lock["stage"] == "train"  # full lock, loaded lazily
    assert listed.varying_config_keys() == ["config.lr", "config.optim.name"]
    assert len(runs(root=tmp_path, limit=1)) == 1


def test_to_pandas(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    make_run(tmp_path, config={"lr": 0.1}, result={"acc": 0.9})
    make_run(tmp_path, config={"lr": 0.2}, result={"acc": 0.8})
    df = runs(root=tmp_path).to_pandas()
    assert list(df.columns[:3]) == ["id", "stage", "status"]
    assert sorted(df["config.lr"]) == [0.1, 0.2] and sorted(df["result.acc"]) == [0.8, 0.9]


def test_to_pandas_without_pandas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_run(tmp_path)
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    with pytest.raises(MissingDependencyError, match="pandas") as info:
        runs(root=tmp_path).to_pandas()
    assert "runlock[pandas]" in str(info.value)


def test_cli_modules_import_no_heavy_dependency() -> None:
    code = (
        "import sys, runlock.cli.ls, runlock.cli.show, runlock.cli.diff, runlock.cli.compare, "
        "runlock.cli.rm, runlock.cli.lineage; "
        "print(sorted(m for m in ('rich', 'pandas', 'yaml', 'sqlite3') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "[]"


def test_section_parse_matches_full_parse(tmp_path: Path) -> None:
    """The index reads only the sections it needs; the columns equal those of a full parse."""
    from runlock.browse.index import _Parsed, _read_lock, _row
    from runlock.record.lockfile import load_lock

    nested = {"schema": 1, "id": "up", "stage": "prep", "config": {"lr": 9}, "status": "failed"}
    d = make_run(
        tmp_path,
        config={"lr": 0.1, "text": "line1\nline2:\nid: x", "lst": [1, 2], "when": "2026-01-01"},
        result={"acc": 0.5},
        packages={f"p{i}": "1.0" for i in range(50)},
        upstream={"data": {"id": "up", "lock": nested}},
        error={"type": "E", "message": "m", "traceback": "Traceback:\nstatus: fake\n"},
        hostname="h1",
    )
    parsed = _read_lock(str(d / "run.lock"))
    assert parsed is not None and parsed.lock is not None
    assert "packages" not in parsed.lock and "upstream" not in parsed.lock
    full = _Parsed(parsed.path, parsed.mtime_ns, parsed.size, load_lock(d), None)
    assert _row(parsed) == _row(full)


def test_hand_written_lock_with_aliases(tmp_path: Path) -> None:
    # runlock never writes YAML aliases, and nested ones ("billion laughs") made `ls` run for
    # minutes: a lock holding one is reported unreadable (issue 11, item 10)
    d = tmp_path / "train" / "manual"
    d.mkdir(parents=True)
    (d / "run.lock").write_text(
        "# written by hand\n"
        "schema: 1\nid: manual\nstage: train\nstatus: completed\n"
        "defaults: &defaults {lr: 0.5, bs: 8}\n"
        "config: *defaults\n"
        "result: {value: {acc: 0.25}}\n"
    )
    with RunIndex(tmp_path) as idx:
        idx.refresh()
        [(path, reason)] = idx.broken()
    assert path == str(d / "run.lock") and "alias" in reason
    assert runs(root=tmp_path) == []
