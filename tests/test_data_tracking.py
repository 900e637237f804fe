"""Data inputs hashed in the background (lock ``data``) and run outputs (lock ``outputs``)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import xxhash

import runlock
from runlock.capture.builtin import DataCollector, InputNotFoundError
from runlock.capture.collectors import RunContext
from runlock.errors import DataError
from runlock.hashing import hash_path
from runlock.record.lockfile import load_lock
from runlock.stages.run import StageOptions


@dataclass
class DataCfg:
    data: str = runlock.Input("")
    extra: str = ""
    fail: bool = False
    out: str = ""
    seed: int | None = None


#: perf_counter() at the first line of the stage function, per call.
STARTED: list[float] = []


# track_data names both fields explicitly: these tests do not depend on the decorator turning
# Input fields into track_data entries (test_input_fields_are_tracked_by_the_decorator does).
@runlock.stage(snapshot=False, track_data=["data", "extra"], inject_dir="out")
def consume(cfg: DataCfg) -> int:
    STARTED.append(time.perf_counter())
    if cfg.fail:
        (Path(cfg.out) / "partial.txt").write_text("half")
        raise RuntimeError("stage failed on purpose")
    (Path(cfg.out) / "model.txt").write_text("weights")
    (Path(cfg.out) / "plots").mkdir()
    (Path(cfg.out) / "plots" / "loss.txt").write_text("0.1")
    return 1


@runlock.stage(snapshot=False)
def declared(cfg: DataCfg) -> int:
    return 2


def only_run(root: Path, stage: str) -> Path:
    runs = sorted((root / stage).iterdir())
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A small directory input with a nested folder and an awkward file name."""
    d = tmp_path / "data set"
    (d / "sub").mkdir(parents=True)
    (d / "a.csv").write_text("x,y\n1,2\n")
    (d / "sub" / "b 'quoted'.bin").write_bytes(bytes(range(256)) * 10)
    return d


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_inputs_and_track_data_are_hashed_like_hash_path(results: Path, dataset: Path, tmp_path: Path) -> None:
    extra = tmp_path / "labels.txt"
    extra.write_text("cat\ndog\n")
    consume(data=str(dataset), extra=str(extra))
    lock = load_lock(only_run(results, "consume"))
    data = lock["data"]
    assert list(data) == ["data", "extra"]
    for label, path in (("data", dataset), ("extra", extra)):
        expected = hash_path(path)
        assert data[label]["hash"] == expected["hash"]
        assert data[label] == {k: expected[k] for k in data[label]}
    assert data["data"]["kind"] == "dir" and data["data"]["files"] == 2
    assert data["extra"]["kind"] == "file" and data["extra"]["path"] == str(extra)
    # the stat cache lives in the results root, not in the run
    assert (results / ".runlock" / "hashcache.sqlite").is_file()


def test_directory_hash_is_dirhash_compatible(results: Path, dataset: Path) -> None:
    dirhash = pytest.importorskip("dirhash")
    consume(data=str(dataset))
    lock = load_lock(only_run(results, "consume"))
    assert lock["data"]["data"]["hash"] == dirhash.dirhash(dataset, xxhash.xxh3_64)
    assert "extra" not in lock["data"]  # an empty field is no input


def test_literal_paths_and_relative_values(results: Path, dataset: Path, tmp_path: Path) -> None:
    literal = tmp_path / "vocab.txt"
    literal.write_text("a b c")

    @runlock.stage(snapshot=False, track_data=[str(literal), "data"])
    def literal_stage(cfg: DataCfg) -> None:
        return None

    literal_stage(data="data set")  # relative to the current directory (tmp_path)
    data = load_lock(only_run(results, "literal_stage"))["data"]
    assert data[str(literal)]["hash"] == hash_path(literal)["hash"]
    assert data["data"]["path"] == str(dataset)
    assert data["data"]["hash"] == hash_path(dataset)["hash"]


def test_input_fields_are_tracked_by_the_decorator(results: Path, dataset: Path) -> None:
    """Fields declared with runlock.Input need no track_data entry (stages.stage adds them)."""
    assert "data" in declared.options.track_data
    declared(data=str(dataset))
    lock = load_lock(only_run(results, "declared"))
    assert lock["data"]["data"]["hash"] == hash_path(dataset)["hash"]


def _start_delay_s(**kw: object) -> float:
    """Seconds from calling the stage to the first line of its function."""
    STARTED.clear()
    t0 = time.perf_counter()
    consume(**kw)  # type: ignore[arg-type]
    return STARTED[0] - t0


def _touch_all(d: Path) -> None:
    """New mtimes: the stat cache misses, so the next run hashes every byte again."""
    for f in d.iterdir():
        os.utime(f)


def test_large_input_is_hashed_into_the_final_lock(results: Path, tmp_path: Path) -> None:
    """200 MB in 4 files, re-touched between calls (the stat cache cannot answer): the final lock
    has the directory's hash. That the stage does not wait for it is bench/stage_start.py's
    figure (a timed assert here would fail on a slow machine, not on a slow stage start)."""
    big = tmp_path / "big"
    big.mkdir()
    block = os.urandom(1 << 20)
    for i in range(4):
        with open(big / f"part{i}.bin", "wb") as f:
            f.writelines(block for _ in range(50))  # 4 x 50 MiB
    for _ in range(2):
        _touch_all(big)
        _start_delay_s(data=str(big))
    runs = sorted((results / "consume").iterdir(), key=lambda d: load_lock(d)["timing"]["start"])
    entry = load_lock(runs[-1])["data"]["data"]
    assert entry["size"] == 200 << 20 and entry["files"] == 4
    assert entry["hash"] == hash_path(big)["hash"]


def test_data_collector_start_returns_at_once(tmp_path: Path) -> None:
    """The data collector's part of the stage start: well under the 20 ms budget for 200 MB."""
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(200 << 20)  # sparse: 200 MiB of zeros to read
    options = StageOptions(name="t", track_data=(str(big),))
    ctx = RunContext(
        run_id="x", stage="t", run_dir=tmp_path / "run", results_root=tmp_path / "results",
        start=datetime.now(UTC), config={}, options=options, source_file=None,
    )
    collector = DataCollector(options)
    running = collector.start(ctx)  # returns at once: its speed is bench/stage_start.py's
    assert running == {str(big): {"path": str(big)}}  # the path now, the hash at finish
    ctx.status = "completed"
    final = collector.finish(ctx)
    assert final[str(big)]["hash"] == hash_path(big)["hash"] and final[str(big)]["size"] == 200 << 20


def test_hashes_recorded_when_the_stage_raises(results: Path, dataset: Path) -> None:
    with pytest.raises(RuntimeError, match="on purpose"):
        consume(data=str(dataset), fail=True)
    lock = load_lock(only_run(results, "consume"))
    assert lock["status"] == "failed"
    assert lock["data"]["data"]["hash"] == hash_path(dataset)["hash"]
    assert lock["outputs"]["files"] == {"partial.txt": xxhash.xxh3_64_hexdigest(b"half")}


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda d: d / "missing", id="missing"),
        pytest.param(lambda d: (d / "link").symlink_to(d / "gone") or d / "link", id="broken-symlink"),
    ],
)
def test_missing_input_is_a_clear_error_naming_the_path(results: Path, tmp_path: Path, make: object) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    STARTED.clear()
    with pytest.raises(InputNotFoundError) as info:
        consume(data=str(path))
    err = info.value
    assert isinstance(err, DataError) and isinstance(err, OSError)
    assert str(path) in str(err) and "'data'" in str(err)
    assert STARTED == []  # the stage function never ran


def test_missing_input_creates_no_run_directory(results: Path, tmp_path: Path) -> None:
    """A missing input is bad input (exit 2): checked before the run directory is created."""
    with pytest.raises(InputNotFoundError) as info:
        consume(data=str(tmp_path / "nope"))
    assert info.value.exit_code == 2
    assert not (results / "consume").exists()


def test_unknown_track_data_entry_names_key_and_path(results: Path) -> None:
    @runlock.stage(snapshot=False, track_data=["dtaa"])
    def typo(cfg: DataCfg) -> None:
        return None

    with pytest.raises(InputNotFoundError, match="(?s)track_data entry 'dtaa'.*neither a config key"):
        typo()


def test_input_changing_while_hashed_is_reported(results: Path, tmp_path: Path) -> None:
    f = tmp_path / "grows.log"
    f.write_text("a" * 1000)

    @runlock.stage(snapshot=False, track_data=["data"])
    def appender(cfg: DataCfg) -> None:
        time.sleep(0.05)

    appender(data=str(f))
    entry = load_lock(only_run(results, "appender"))["data"]["data"]
    assert entry["hash"] == hash_path(f)["hash"]


def test_outputs_recorded_without_bookkeeping(results: Path, dataset: Path) -> None:
    consume(data=str(dataset))
    run_dir = only_run(results, "consume")
    outputs = load_lock(run_dir)["outputs"]
    assert outputs["algorithm"] == "xxh3_64"
    assert outputs["files"] == {
        "model.txt": xxhash.xxh3_64_hexdigest(b"weights"),
        "plots/loss.txt": xxhash.xxh3_64_hexdigest(b"0.1"),
    }
    assert {"run.lock", "config.yaml", "run.log", "result.json", ".runlock"} <= set(outputs["exclude"])


def test_hash_outputs_can_be_disabled(results: Path) -> None:
    @runlock.stage(snapshot=False, hash_outputs=False, inject_dir="out")
    def quiet(cfg: DataCfg) -> None:
        (Path(cfg.out) / "x.txt").write_text("x")

    quiet()
    assert "outputs" not in load_lock(only_run(results, "quiet"))


def test_running_lock_lists_inputs_then_final_lock_has_hashes(results: Path, dataset: Path) -> None:
    seen: dict[str, object] = {}

    @runlock.stage(snapshot=False, track_data=["data"], inject_dir="out")
    def peek(cfg: DataCfg) -> None:
        seen.update(load_lock(Path(cfg.out)))

    peek(data=str(dataset))
    assert seen["status"] == "running"
    # the input is listed from the start; its hash joins the running lock as soon as it is
    # known (so a killed run keeps it), which may already be the case when the stage looks
    entry = seen["data"]["data"]  # type: ignore[index]
    assert entry["path"] == str(dataset)
    assert entry.get("hash") in (None, hash_path(dataset)["hash"])
    assert load_lock(only_run(results, "peek"))["data"]["data"]["hash"] == hash_path(dataset)["hash"]


def test_interrupted_run_keeps_hashes_and_skips_outputs(results: Path, dataset: Path) -> None:
    @runlock.stage(snapshot=False, track_data=["data"], inject_dir="out")
    def stopped(cfg: DataCfg) -> None:
        (Path(cfg.out) / "ckpt.bin").write_bytes(b"x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stopped(data=str(dataset))
    lock = load_lock(only_run(results, "stopped"))
    assert lock["status"] == "interrupted"
    assert lock["data"]["data"]["hash"] == hash_path(dataset)["hash"]
    assert "outputs" not in lock
