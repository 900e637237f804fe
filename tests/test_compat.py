"""pycrumbs' `tracked` keywords and footsteps' `start()` work after changing the import."""

from __future__ import annotations

from pathlib import Path

from conftest import run_py, write_script

import runlock
from runlock.record.lockfile import load_lock


def test_literal_directory_used_and_earlier_lock_kept(tmp_path: Path, results: Path) -> None:
    out = tmp_path / "proj"

    @runlock.tracked(literal_directory=out, snapshot=False)
    def fit(n: int = 1) -> int:
        return n

    fit()
    first = load_lock(out)["id"]
    fit(n=2)
    assert load_lock(out)["config"] == {"n": 2}  # pycrumbs' directory, as given
    assert load_lock(out / ".runlock" / "earlier" / f"{first}.lock")["config"] == {"n": 1}  # never destroyed
    assert not (tmp_path / "proj-1").exists()


def test_directory_parameter_receives_final_dir(tmp_path: Path, results: Path) -> None:
    seen: list[Path] = []

    @runlock.tracked(directory_parameter="model_output_dir", snapshot=False)
    def fit(model_output_dir: Path) -> None:
        seen.append(model_output_dir)
        (model_output_dir / "weights.txt").write_text("w")

    fit(model_output_dir=tmp_path / "my_model")
    assert seen == [tmp_path / "my_model"]
    assert isinstance(seen[0], Path)
    assert (tmp_path / "my_model" / "weights.txt").exists() and (tmp_path / "my_model" / "run.lock").exists()


def test_subdirectory_uuid_and_injection(tmp_path: Path, results: Path) -> None:
    got: dict[str, object] = {}

    @runlock.tracked(
        literal_directory=tmp_path / "proj",
        subdirectory_name_parameter="model_name",
        include_uuid=True,
        directory_injection_parameter="model_directory",
        snapshot=False,
    )
    def fit(model_name: str, model_directory: Path | None = None) -> None:
        got["dir"] = model_directory

    fit(model_name="my_model")
    d = got["dir"]
    assert isinstance(d, Path) and d.parent == tmp_path / "proj" and d.name.startswith("my_model_")
    assert len(d.name) == len("my_model_") + 36  # a UUID
    lock = load_lock(d)
    assert lock["function"]["altered_parameters"]["model_directory"] == str(d)


def test_seed_parameter_injected_and_recorded(tmp_path: Path, results: Path) -> None:
    seeds: list[int] = []

    @runlock.tracked(literal_directory=tmp_path / "s", seed_parameter="seed", snapshot=False)
    def fit(seed: int | None = None) -> None:
        assert seed is not None
        seeds.append(seed)

    fit()
    assert load_lock(tmp_path / "s")["seed"] == seeds[0]
    assert load_lock(tmp_path / "s")["function"]["parameters"] == {"seed": None}
    fit(seed=272428)
    assert seeds[1] == 272428
    assert load_lock(tmp_path / "s")["seed"] == 272428


FOOTSTEPS = """
import sys
import runlock
run = runlock.start({name})
with open(run.output_dir + "network_weights.csv", "w") as f:
    f.write("6, 9, 42")
print("DIR", run.dir)
if "fail" in sys.argv:
    raise SystemExit(3) if "exit" in sys.argv else ValueError("crashed")
"""


def test_footsteps_start_names_from_script_without_a_terminal(tmp_path: Path, results: Path) -> None:
    script = write_script(tmp_path / "sample_project.py", FOOTSTEPS.format(name=""))
    res = run_py(script, "--finnicky-command-line-argument")  # stdin is /dev/null: no EOFError
    assert res.returncode == 0, res.stderr
    lock = load_lock(results / "sample_project")
    assert lock["status"] == "completed"
    assert lock["environment"]["argv"][1:] == ["--finnicky-command-line-argument"]
    assert (results / "sample_project" / "network_weights.csv").read_text() == "6, 9, 42"
    res = run_py(script)
    assert (results / "sample_project-1" / "run.lock").exists()  # never overwritten


def test_footsteps_prompt_reads_a_name(tmp_path: Path, results: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    script = write_script(tmp_path / "prompted.py", FOOTSTEPS.format(name=""))
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(script)], stdin=follower, stdout=subprocess.PIPE, stderr=follower, cwd=tmp_path)
    os.close(follower)
    import select
    import time

    buf, deadline = b"", time.monotonic() + 30
    while b"Name of this run" not in buf and time.monotonic() < deadline:
        if select.select([leader], [], [], 0.5)[0]:
            buf += os.read(leader, 1024)
    assert b"Name of this run [prompted]" in buf
    os.write(leader, b"manual_name\n")
    assert proc.wait(timeout=60) == 0
    os.close(leader)
    assert load_lock(results / "manual_name")["status"] == "completed"


def test_footsteps_crash_is_recorded(tmp_path: Path, results: Path) -> None:
    script = write_script(tmp_path / "crashy.py", FOOTSTEPS.format(name="'fixed_experiment_name'"))
    res = run_py(script, "fail")
    assert res.returncode == 1 and "crashed" in res.stderr
    lock = load_lock(results / "fixed_experiment_name")
    assert lock["status"] == "failed" and "ValueError: crashed" in lock["error"]["traceback"]
