"""One suite over every registered execution backend (like joblib's test_parallel.py).

The protocol (:class:`runlock.Backend`): ``run(fn, chunks)`` calls ``fn`` once per chunk and
returns one item per chunk, in order; a failure inside ``fn`` is never lost (raised, or an
exception object in its slot); ``fn`` and the chunks travel by reference (workers re-import
module-level functions and stages); ``n_jobs`` bounds how many chunks run at once; unknown
options are accepted; no chunks, no work.

A new backend joins by being registered: :class:`ThreadBackend` below is the whole of one (copy
it) and passes the suite. SLURM runs on the real cluster (tests/conftest_slurm.py): skipped
without one, failed under CI=true.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

import runlock
import runlock.scale.backends
from runlock.scale.backends import Backend, available_backends, get_backend

C = TypeVar("C")


# --- the example: a complete backend in a few lines -------------------------------------------


class ThreadBackend:
    """Chunks on ``n_jobs`` threads of this process (an example, registered as "threads")."""

    name = "threads"

    def __init__(self, n_jobs: int = -1, **_ignored: Any) -> None:
        self.n_jobs = n_jobs if n_jobs > 0 else (os.cpu_count() or 1)

    def run(self, fn: Callable[[C], Any], chunks: Sequence[C]) -> list[Any]:
        with concurrent.futures.ThreadPoolExecutor(self.n_jobs) as pool:
            return list(pool.map(fn, chunks))  # in order; fn's exception is raised here


runlock.register_backend("threads", ThreadBackend)

BACKENDS = available_backends()


# --- chunk functions: module level, so workers import them by reference ------------------------


@runlock.stage(snapshot=False)
def echo_stage(x: int = 1) -> int:
    return x


def double_after(chunk: tuple[int, float]) -> int:
    """Finishes in reverse order of submission when the delays decrease."""
    value, delay_s = chunk
    time.sleep(delay_s)
    return 2 * value


def fail_on_two(chunk: int) -> int:
    if chunk == 2:
        raise ValueError(f"bad chunk {chunk}")
    return chunk


def by_reference(chunk: Any) -> tuple[bool, bool]:
    """Whether this function and the stage in the chunk are the module's own objects (true
    when they travelled by reference and the worker re-imported this module)."""
    module = importlib.import_module(__name__)
    return by_reference is module.by_reference, chunk is module.echo_stage


def count_running(chunk: tuple[str, float]) -> int:
    """How many chunks were running (marker files in a shared directory) when this one ran."""
    running, hold_s = Path(chunk[0]), chunk[1]
    marker = running / uuid.uuid4().hex
    marker.touch()
    try:
        deadline = time.monotonic() + hold_s
        seen = 0
        while time.monotonic() < deadline:  # look several times: others may start meanwhile
            seen = max(seen, len(os.listdir(running)))
            time.sleep(0.02)
        return seen
    finally:
        marker.unlink()


# --- the suite ------------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def make_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Backend]:
    """``make_backend(n_jobs=...)`` for the backend under test, with what it needs to run."""
    name: str = request.param
    extra: dict[str, Any] = {}
    if name == "slurm":
        request.applymarker(pytest.mark.slurm)
        cluster = request.getfixturevalue("slurm_cluster")
        extra = cluster.backend_options(f"conformance {uuid.uuid4().hex[:8]}")

    def make(**options: Any) -> Backend:
        return get_backend(name, **{**extra, **options})

    return make


@pytest.fixture
def shared_dir(make_backend: Callable[..., Backend], request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A directory every worker of the backend sees (the cluster's shared one for SLURM)."""
    if request.node.callspec.params["make_backend"] == "slurm":
        base: Path = request.getfixturevalue("slurm_cluster").shared_dir
        path = base / f"shared {uuid.uuid4().hex[:8]}"
    else:
        path = tmp_path / "shared 'dir'"
    path.mkdir()
    return path


def test_is_a_backend_with_its_registered_name(make_backend: Callable[..., Backend]) -> None:
    backend = make_backend(n_jobs=2, an_option_for_another_backend=True)  # unknown: accepted
    assert isinstance(backend, Backend)
    assert backend.name in available_backends()


def test_results_come_back_in_chunk_order(make_backend: Callable[..., Backend]) -> None:
    chunks = [(k, 0.05 * (4 - k)) for k in range(5)]  # later chunks finish first
    assert make_backend(n_jobs=3).run(double_after, chunks) == [0, 2, 4, 6, 8]


def test_no_chunks_no_work(make_backend: Callable[..., Backend]) -> None:
    assert make_backend(n_jobs=2).run(fail_on_two, []) == []


def test_a_failure_in_fn_is_surfaced_never_lost(make_backend: Callable[..., Backend]) -> None:
    """Raised (the in-process and process backends), or an exception in the chunk's slot (a
    backend whose workers are jobs: SLURM); the other slots hold the values."""
    try:
        out = make_backend(n_jobs=2).run(fail_on_two, [1, 2, 3])
    except ValueError as exc:
        assert "bad chunk 2" in str(exc)
        return
    assert len(out) == 3 and out[0] == 1 and out[2] == 3
    assert isinstance(out[1], BaseException) and "bad chunk 2" in str(out[1])


def test_functions_and_stages_travel_by_reference(make_backend: Callable[..., Backend]) -> None:
    out = make_backend(n_jobs=2).run(by_reference, [echo_stage, echo_stage])
    assert out == [(True, True), (True, True)]


def test_n_jobs_bounds_the_chunks_running_at_once(
    make_backend: Callable[..., Backend], shared_dir: Path, request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.params["make_backend"] == "slurm":
        pytest.skip("SlurmBackend ignores n_jobs: SLURM's array_parallelism bounds its jobs")
    # A slow machine only lowers the overlap seen; it can never raise it above n_jobs.
    out = make_backend(n_jobs=2).run(count_running, [(str(shared_dir), 0.3)] * 6)
    assert len(out) == 6 and all(1 <= n <= 2 for n in out), out


def test_unknown_name_lists_the_registered_ones() -> None:
    with pytest.raises(runlock.RunlockError, match="unknown backend 'nope'") as info:
        get_backend("nope")
    assert isinstance(info.value, ValueError)
    assert "threads" in str(info.value.hint)


# --- the registry ---------------------------------------------------------------------------


def test_the_built_in_backends_are_registered() -> None:
    assert {"inprocess", "joblib", "slurm", "threads"} <= set(available_backends())
    assert runlock.register_backend is runlock.scale.backends.register_backend


@pytest.mark.parametrize(
    ("name", "factory"), [("", ThreadBackend), ("x", 42), ("x", "no colon")], ids=["no-name", "not-callable", "not-a-path"]
)
def test_register_backend_refuses_what_cannot_work(name: str, factory: Any) -> None:
    with pytest.raises(runlock.RunlockError, match="backend"):
        runlock.register_backend(name, factory)


_PLUGIN = '''
class EchoBackend:
    name = "echo-plugin"
    def __init__(self, n_jobs=-1, **_ignored):
        pass
    def run(self, fn, chunks):
        return [fn(c) for c in chunks]
'''

_USE_PLUGIN = '''
import sys
from runlock.scale.backends import available_backends, get_backend
assert "echo-plugin" in available_backends(), available_backends()
assert "runlock_echo_plugin" not in sys.modules  # listed without being imported
print(get_backend("echo-plugin", n_jobs=2).run(abs, [-1, -2]))
'''


def test_installed_packages_add_backends_through_entry_points(tmp_path: Path) -> None:
    """A third party adds a backend without touching runlock (like submitit's plugins): an
    entry point in the ``runlock.backends`` group, imported only when the backend is used."""
    site = tmp_path / "site dir"
    dist = site / "runlock_echo_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (site / "runlock_echo_plugin.py").write_text(_PLUGIN)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: runlock-echo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[runlock.backends]\necho-plugin = runlock_echo_plugin:EchoBackend\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", _USE_PLUGIN], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1, 2]"
