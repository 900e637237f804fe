"""The fast paths of a listing give what the plain ones give: column keys from the index's key
set (stopping early), records built lazily from index tuples, times formatted from timestamps."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from locks import make_run

from runlock.browse.index import RunIndex
from runlock.browse.query import RunList, RunRecord, runs
from runlock.browse.render import fmt_time, fmt_timestamp


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Result keys that first appear in an old run, and a stage with keys of its own."""
    r = tmp_path / "results 'q'"
    now = datetime.now(UTC)
    make_run(r, "train", result={"f1": 0.5}, config={"lr": 0.1, "old": 1},
             start=now - timedelta(hours=3))  # fmt: skip
    make_run(r, "train", result={"acc": 0.7, "loss": 0.3}, config={"lr": 0.2},
             start=now - timedelta(hours=2))  # fmt: skip
    make_run(r, "train", result={"acc": 0.9, "nested": {"a": 1}}, config={"optim": {"lr": 1}},
             start=now - timedelta(hours=1))  # fmt: skip
    make_run(r, "eval", result={"zzz": 1}, config={"other": 2})
    return r


def test_column_keys_are_those_of_every_run_in_first_seen_order(root: Path) -> None:
    listed = runs(root=root, stage="train")
    assert listed.index_keys is not None  # the early stop is in play
    plain = RunList(listed)  # no index keys: every run parsed
    assert plain.index_keys is None
    expected = ["result.acc", "result.nested.a", "result.loss", "result.f1"]
    assert listed.keys("result") == plain.keys("result") == expected
    expected_config = ["config.optim.lr", "config.lr", "config.old"]
    assert listed.keys("config") == plain.keys("config") == expected_config
    everything = runs(root=root)
    assert everything.keys("result") == RunList(everything).keys("result")
    assert set(everything.keys("result")) == {*expected, "result.zzz"}


def test_param_keys_and_their_cap(root: Path) -> None:
    with RunIndex(root) as idx:
        idx.refresh()
        keys = idx.param_keys()
        assert keys == {
            "config": frozenset({"lr", "old", "optim.lr", "other"}),
            "result": frozenset({"acc", "f1", "loss", "nested.a", "zzz"}),
        }
        assert idx.param_keys(max_keys=3) is None  # too many to seek one by one


def test_record_from_an_index_row_matches_one_built_by_hand(root: Path) -> None:
    listed = runs(root=root, stage="train", sort="start")
    first = listed[0]
    by_hand = RunRecord(
        id=first.id, stage=first.stage, status=first.status, dir=first.dir, start=first.start,
        duration=first.duration,
    )  # fmt: skip
    assert first.start_ts == by_hand.start_ts and first.start == by_hand.start
    assert first.lock_path == by_hand.lock_path == root / "train" / first.id / "run.lock"
    assert [r.start for r in listed] == sorted(r.start for r in listed)  # type: ignore[type-var]
    assert runs(root=root, sort="-start").ids == list(reversed(runs(root=root, sort="start").ids))


@pytest.fixture(params=["UTC", "America/New_York", "Asia/Kolkata"])
def local_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is POSIX only")
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    "ts",
    [0.0, 1_764_000_000.0, 1_764_000_000.999, -1.5, 1_762_066_800.5, 1_741_503_600.0],
)
def test_fmt_timestamp_is_fmt_time(local_zone: str, ts: float) -> None:
    """Around New York's DST changes too (2025-11-02, 2025-03-09)."""
    assert fmt_timestamp(ts) == fmt_time(datetime.fromtimestamp(ts, UTC))
    assert fmt_timestamp(None) == fmt_time(None) == "-"
