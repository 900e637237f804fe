"""Side by side: the same calls under the real pycrumbs / footsteps and under runlock.

A user migrating changes one import line; every call, option and file their scripts read must
behave the same (timestamps, uuids, hashes and machine facts aside).
"""

from __future__ import annotations

import inspect
import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pycrumbs
import pytest
from conftest import git, run_py, write_script

import runlock
import runlock.pycrumbs
from runlock.record.lockfile import load_lock

pytest.importorskip("footsteps")


def _runlock_tracked(**kw: Any) -> Any:
    return runlock.tracked(snapshot=False, **kw)  # (the test module lives in runlock's own repo)


IMPLS: dict[str, Callable[..., Any]] = {"pycrumbs": pycrumbs.tracked, "runlock": _runlock_tracked}


def both(scenario: Callable[[Callable[..., Any], Path], Any], tmp_path: Path) -> tuple[Any, Any]:
    """Run ``scenario(tracked, workdir)`` under pycrumbs and under runlock."""
    out = []
    for name, impl in IMPLS.items():
        work = tmp_path / name
        work.mkdir()
        out.append(scenario(impl, work))
    return out[0], out[1]


def record(path: Path) -> Any:
    return json.loads(path.read_text())


def keys(obj: Any) -> Any:
    """The shape of a record: nested keys (values aside), runlock's added ``run_id`` left out."""
    if isinstance(obj, dict):
        return {k: keys(v) for k, v in obj.items()
                if k != "run_id" and not (isinstance(v, dict) and k in ("package_inventory", "git_remotes"))}
    if isinstance(obj, list):
        return [keys(v) for v in obj]
    return type(obj).__name__ if obj is not None else None


# -- decoration: the 19 keywords and pycrumbs' checks ------------------------------------------


def test_all_nineteen_keywords_are_accepted(tmp_path: Path) -> None:
    params = [p for p in inspect.signature(pycrumbs.tracked).parameters]
    assert len(params) == 19
    assert set(params) <= set(inspect.signature(runlock.tracked).parameters)

    def scenario(tracked: Any, work: Path) -> Any:
        @tracked(
            literal_directory=work / "a", directory_parameter=None, subdirectory_name_parameter="name",
            directory_injection_parameter="out", include_timestamp=False, include_uuid=True,
            record_filename="rec", extra_modules=["runlock"], extra_environment_variables=["HOME"],
            seed_parameter="seed", seed_numpy=False, seed_tensorflow=False, seed_torch=False,
            disable_git_tracking=False, allow_dirty_repo=True, include_package_inventory=False,
            create_parents=True, require_empty_directory=True, chain_records=True,
        )
        def f(name: str, out: Path | None = None, seed: int | None = None) -> tuple[Any, ...]:
            return name, out, seed

        _name, out, seed = f("x")
        rec = record(out / "rec.json")
        return out.relative_to(work).parent, out.name[:2], isinstance(seed, int), keys(rec)

    p, r = both(scenario, tmp_path)
    assert p == r


@pytest.mark.parametrize(
    ("kw", "exc"),
    [
        ({}, TypeError),  # neither literal_directory nor directory_parameter
        ({"literal_directory": "a", "directory_parameter": "d"}, TypeError),  # both
        ({"literal_directory": "a", "include_timestamp": True, "include_uuid": True,
          "directory_injection_parameter": "d"}, ValueError),
        ({"literal_directory": "a", "include_uuid": True}, TypeError),  # no way to reach the dir
        ({"directory_parameter": "nope"}, ValueError),  # not a parameter of the function
        ({"literal_directory": "a", "seed_parameter": "nope"}, ValueError),
        ({"literal_directory": "a", "no_such_keyword": 1}, TypeError),
    ],
)
def test_invalid_options_fail_at_decoration_with_pycrumbs_exception_types(kw: dict[str, Any], exc: type) -> None:
    def f(d: str = "x") -> None:
        pass

    for impl in (pycrumbs.tracked, runlock.tracked):
        with pytest.raises(exc):
            impl(**kw)(f)
    with pytest.raises(runlock.RunlockError) as info:
        runlock.tracked(**kw)(f)
    assert info.value.exit_code == 2


# -- the directory --------------------------------------------------------------------------------


def test_literal_directory_existing_one_is_used_and_record_has_pycrumbs_keys(tmp_path: Path) -> None:
    def scenario(tracked: Any, work: Path) -> Any:
        (work / "proj").mkdir()
        (work / "proj" / "data.csv").write_text("1")

        @tracked(literal_directory=work / "proj")
        def my_train_fun(n: int = 1) -> int:
            return n

        assert my_train_fun(3) == 3
        rec = record(work / "proj" / "my_train_fun_record.json")
        return sorted(p.name for p in (work / "proj").iterdir() if p.name.endswith("_record.json")), keys(rec), rec

    (names_p, shape_p, rec_p), (names_r, shape_r, rec_r) = both(scenario, tmp_path)
    assert names_p == names_r == ["my_train_fun_record.json"]
    assert shape_p == shape_r
    assert rec_p["called_function"] == {**rec_r["called_function"], "source_file": rec_p["called_function"]["source_file"]}
    assert rec_p["called_function"]["parameters"] == {"n": 3}
    for k in ("argv", "python_executable", "cwd", "hostname", "cpu_count", "user", "python_version", "environment_variables"):
        assert rec_p["environment"][k] == rec_r["environment"][k], k
    assert rec_p["tracked_module"]["git_commit_hash"] == rec_r["tracked_module"]["git_commit_hash"]
    assert rec_p["tracked_module"]["git_working_dir"] == rec_r["tracked_module"]["git_working_dir"]
    assert re.fullmatch(r"\d+:\d\d:\d\d\.\d+", rec_r["timing"]["run_time"])
    assert (tmp_path / "runlock" / "proj" / "data.csv").read_text() == "1"
    assert load_lock(tmp_path / "runlock" / "proj")["id"] == rec_r["run_id"]
    assert not (tmp_path / "runlock" / "proj-1").exists()


def test_directory_parameter_and_record_filename(tmp_path: Path) -> None:
    def scenario(tracked: Any, work: Path) -> Any:
        seen: list[Any] = []

        @tracked(directory_parameter="model_output_dir", record_filename="job")
        def fit(model_output_dir):  # type: ignore[no-untyped-def]  # unannotated: a Path stays a Path
            seen.append(model_output_dir)

        fit(model_output_dir=work / "m")
        return type(seen[0]), seen[0].relative_to(work), (work / "m" / "job.json").exists()

    p, r = both(scenario, tmp_path)
    assert p == r == (type(Path()), Path("m"), True)


def test_subdirectory_name_receives_suffixed_name(tmp_path: Path) -> None:
    def scenario(tracked: Any, work: Path) -> Any:
        got: dict[str, Any] = {}

        @tracked(literal_directory=work / "proj", subdirectory_name_parameter="model_name", include_timestamp=True)
        def fit(model_name: str) -> None:
            got["name"] = model_name

        fit(model_name="my_model")
        made = [p.name for p in (work / "proj").iterdir()]
        return re.sub(r"\d", "9", got["name"]), made == [got["name"]]

    p, r = both(scenario, tmp_path)
    assert p == r == ("my_model_9999_99_99_99_99_99", True)


def test_injected_directory_with_uuid_is_a_path(tmp_path: Path) -> None:
    def scenario(tracked: Any, work: Path) -> Any:
        got: dict[str, Any] = {}

        @tracked(literal_directory=work / "proj", include_uuid=True, directory_injection_parameter="model_directory")
        def fit(model_directory: Path | None) -> None:
            got["dir"] = model_directory

        fit()
        d = got["dir"]
        rec = record(d / "fit_record.json")
        return type(d), d.parent == work, d.name[:5], d.name == f"proj_{rec['uuid']}"

    p, r = both(scenario, tmp_path)
    assert p == r == (type(Path()), True, "proj_", True)


def test_require_empty_directory_and_create_parents(tmp_path: Path) -> None:
    def scenario(tracked: Any, work: Path) -> Any:
        (work / "full").mkdir()
        (work / "full" / "x").write_text("x")
        errors = []

        @tracked(literal_directory=work / "full", require_empty_directory=True)
        def a() -> None:
            pass

        @tracked(literal_directory=work / "no" / "parent")
        def b() -> None:
            pass

        @tracked(literal_directory=work / "made" / "parent", create_parents=True)
        def c() -> None:
            pass

        for fn in (a, b):
            try:
                fn()
            except FileExistsError:
                errors.append("FileExistsError")
            except FileNotFoundError:
                errors.append("FileNotFoundError")
        c()
        return errors, sorted(p.name for p in (work / "full").iterdir()), (work / "made" / "parent" / "c_record.json").exists()

    p, r = both(scenario, tmp_path)
    assert p == r == (["FileExistsError", "FileNotFoundError"], ["x"], True)


def test_require_empty_is_a_file_exists_error_naming_the_directory(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("x")

    @runlock.tracked(literal_directory=tmp_path, require_empty_directory=True, snapshot=False)
    def a() -> None:
        pass

    with pytest.raises(FileExistsError, match=re.escape(str(tmp_path))) as info:
        a()
    assert isinstance(info.value, runlock.RunlockError) and info.value.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # nothing touched


def test_second_call_chains_records_and_keeps_earlier_lock(tmp_path: Path) -> None:
    def scenario(tracked: Any, work: Path) -> Any:
        @tracked(literal_directory=work / "p", chain_records=True)
        def f(i: int) -> None:
            pass

        f(1)
        f(2)
        chain = record(work / "p" / "f_record.json")
        return [r["called_function"]["parameters"] for r in chain]

    p, r = both(scenario, tmp_path)
    assert p == r == [{"i": 1}, {"i": 2}]
    earlier = list((tmp_path / "runlock" / "p" / ".runlock" / "earlier").iterdir())
    assert len(earlier) == 1 and load_lock(earlier[0])["config"] == {"i": 1}
    assert load_lock(tmp_path / "runlock" / "p")["config"] == {"i": 2}


# -- arguments ------------------------------------------------------------------------------------


def test_arguments_arrive_as_passed(tmp_path: Path) -> None:
    def scenario(tracked: Any, work: Path) -> Any:
        got: list[Any] = []

        @tracked(literal_directory=work)
        def f(a, /, *args, b=Path("p"), **kwargs):  # type: ignore[no-untyped-def]
            got.append((a, args, b, kwargs))

        items, opts = [1, 2], {"k": [3]}
        f(items, 5, 6, b=Path("q"), opts=opts)
        a, args, b, kwargs = got[0]
        rec = record(work / "f_record.json")
        return a is items, args, b, type(b), kwargs["opts"] is opts, rec["called_function"]["parameters"]

    p, r = both(scenario, tmp_path)
    assert p == r
    assert p[:5] == (True, (5, 6), Path("q"), type(Path()), True)


# -- seeds ----------------------------------------------------------------------------------------


def test_seed_always_drawn_recorded_and_injected(tmp_path: Path) -> None:
    def scenario(tracked: Any, work: Path) -> Any:
        seeds: list[Any] = []

        @tracked(literal_directory=work / "a")
        def plain() -> None:
            seeds.append(random.random())

        @tracked(literal_directory=work / "b", seed_parameter="seed")
        def seeded(seed: int | None = None) -> None:
            seeds.append(seed)

        plain()
        seeded()
        seeded(seed=272428)
        rec_a, rec_b = record(work / "a" / "plain_record.json"), record(work / "b" / "seeded_record.json")
        random.seed(rec_a["seed"])
        return (type(rec_a["seed"]), seeds[0] == random.random(), type(seeds[1]), seeds[2], rec_b["seed"],
                rec_b["called_function"]["parameters"], rec_b["called_function"]["altered_parameters"])

    p, r = both(scenario, tmp_path)
    assert p == r == (int, True, int, 272428, 272428, {"seed": 272428}, {"seed": 272428})


def test_seed_numpy_false_leaves_numpy_alone(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")

    def scenario(tracked: Any, work: Path) -> Any:
        @tracked(literal_directory=work, seed_numpy=False)
        def f() -> None:
            pass

        np.random.seed(7)
        f()
        return float(np.random.random())

    p, r = both(scenario, tmp_path)
    np.random.seed(7)
    assert p == r == float(np.random.random())


# -- record options -------------------------------------------------------------------------------


def test_record_options_env_inventory_git_and_extra_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_EXTRA_VAR", "hello")

    def scenario(tracked: Any, work: Path) -> Any:
        @tracked(literal_directory=work, extra_environment_variables=["MY_EXTRA_VAR"], include_package_inventory=False,
                 disable_git_tracking=True, extra_modules=["runlock"])
        def f() -> None:
            pass

        f()
        rec = record(work / "f_record.json")
        extra = rec["extra_tracked_modules"]["runlock"]
        return (rec["environment"]["environment_variables"]["MY_EXTRA_VAR"], "package_inventory" in rec,
                "tracked_module" in rec, sorted(extra), extra["git_commit_hash"], extra["name"])

    p, r = both(scenario, tmp_path)
    assert p == r
    assert p[:3] == ("hello", False, False)


def test_helpers_have_pycrumbs_signatures() -> None:
    for name in pycrumbs.__all__:
        theirs = list(inspect.signature(getattr(pycrumbs, name)).parameters)
        assert list(inspect.signature(getattr(runlock.pycrumbs, name)).parameters)[:len(theirs)] == theirs, name
    assert sorted(pycrumbs.get_environment_info()) == sorted(runlock.pycrumbs.get_environment_info())
    assert runlock.pycrumbs.seed_tasks(5) == pycrumbs.seed_tasks(5) == 5
    theirs = {k.lower().replace("_", "-").replace(".", "-") for k in pycrumbs.get_installed_packages()}
    assert set(runlock.pycrumbs.get_installed_packages()) == theirs
    mine, real = runlock.pycrumbs.get_git_info("runlock", allow_dirty=True), pycrumbs.get_git_info("runlock", allow_dirty=True)
    assert sorted(mine) == sorted(real)
    assert {k: mine[k] for k in ("git_commit_hash", "git_working_dir", "git_is_dirty", "name")} == {
        k: real[k] for k in ("git_commit_hash", "git_working_dir", "git_is_dirty", "name")}


def test_allow_dirty_repo_false_refuses_a_dirty_repository(git_repo: Path) -> None:
    (git_repo / "README.md").write_text("uncommitted change\n")
    body = (
        "{imp}\n"
        "try:\n"
        "    @tracked(literal_directory='out', allow_dirty_repo=False)\n"
        "    def f():\n"
        "        pass\n"
        "    f()\n"
        "except RuntimeError as exc:\n"
        "    print('REFUSED', 'dirty' in str(exc))\n"
    )
    for imp in ("from pycrumbs import tracked", "from runlock.pycrumbs import tracked"):
        script = write_script(git_repo / "job.py", body.format(imp=imp))
        res = run_py(script)
        assert res.returncode == 0 and "REFUSED True" in res.stdout, (imp, res.stderr)
        assert not (git_repo / "out" / "run.lock").exists()


# -- footsteps ------------------------------------------------------------------------------------

FOOTSTEPS = """
{imp}
{init}
with open(footsteps.output_dir + "network_weights.csv", "w") as f:
    f.write("6, 9, 42")
"""
IMPORTS = {"footsteps": "import footsteps", "runlock": "import runlock.footsteps as footsteps"}


def _footsteps_project(tmp_path: Path, which: str, init: str) -> Path:
    proj = tmp_path / which
    proj.mkdir()
    git(proj, "init", "-q", "-b", "main")
    (proj / ".gitignore").write_text("results/\n")
    write_script(proj / "sample_project.py", FOOTSTEPS.format(imp=IMPORTS[which], init=""))
    git(proj, "add", "-A")
    git(proj, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "initial")
    write_script(proj / "sample_project.py", FOOTSTEPS.format(imp=IMPORTS[which], init=init))  # uncommitted
    return proj


def _first_line(path: Path) -> str:
    """footsteps writes package_versions.txt from a `pip list` still running after the script."""
    import time

    for _ in range(600):
        lines = path.read_text().splitlines()
        if lines:
            return lines[0]
        time.sleep(0.1)
    return ""


def _info_sections(text: str) -> dict[str, str]:
    heads = ("Command:", "System:", "Python:", "Git Hash:", "Uncommitted changes:", "Current working dir:")
    out, current = {}, None
    for line in text.splitlines():
        if line in heads:
            current = line
            out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return out


@pytest.mark.parametrize("how", ["initialize", "env", "pipe"])
def test_footsteps_directory_and_files(tmp_path: Path, how: str) -> None:
    outs = {}
    for which in IMPORTS:
        init = 'footsteps.initialize("fixed_experiment_name")' if how == "initialize" else ""
        proj = _footsteps_project(tmp_path, which, init)
        env = {"FOOTSTEPS_NAME": "fixed_experiment_name"} if how == "env" else {}
        env["RUNLOCK_RESULTS"] = str(proj / "results")
        runs = [run_py(proj / "sample_project.py", "--finnicky-command-line-argument", env=env,
                       input="fixed_experiment_name\n" if how == "pipe" else None) for _ in range(2)]
        assert all(r.returncode == 0 for r in runs), runs[-1].stderr
        d = proj / "results" / "fixed_experiment_name"
        info = _info_sections((d / "info.txt").read_text())
        outs[which] = (
            sorted(p.name for p in (proj / "results").iterdir() if not p.name.startswith(".")),
            (d / "network_weights.csv").read_text(),
            (d / "sample_project.py").read_text() == (proj / "sample_project.py").read_text(),
            _first_line(d / "package_versions.txt").split(),
            info["Command:"].replace(str(proj), "PROJ"), info["Git Hash:"].strip() == git(proj, "rev-parse", "--short=7", "HEAD").strip(),
            ("+" + init) in info["Uncommitted changes:"] if init else True,
            info["Current working dir:"].strip() == str(proj),
        )
    assert outs["footsteps"] == outs["runlock"]
    assert outs["runlock"][0] == ["fixed_experiment_name", "fixed_experiment_name-1"]
    lock = load_lock(tmp_path / "runlock" / "results" / "fixed_experiment_name")
    assert lock["status"] == "completed"


def test_footsteps_closed_stdin_falls_back_to_script_name(tmp_path: Path, results: Path) -> None:
    script = write_script(tmp_path / "batch_job.py", FOOTSTEPS.format(imp=IMPORTS["runlock"], init=""))
    res = run_py(script)  # stdin is /dev/null: footsteps itself dies with EOFError here
    assert res.returncode == 0, res.stderr
    assert load_lock(results / "batch_job")["status"] == "completed"


def test_short_script_records_its_git_snapshot(git_repo: Path) -> None:
    # footsteps bug: a script ending within ~0.1 s of start() recorded git: null ("cannot
    # schedule new futures after interpreter shutdown")
    script = write_script(git_repo / "quick.py", "import runlock\nrunlock.start('quick')\n")
    for i in range(3):
        res = run_py(script, env={"RUNLOCK_RESULTS": str(git_repo / "results")})
        assert res.returncode == 0, res.stderr
        assert "cannot schedule new futures" not in res.stderr
        lock = load_lock(git_repo / "results" / ("quick" if i == 0 else f"quick-{i}"))
        assert lock["git"] and lock["git"]["snapshot"]["commit"], lock.get("warnings")
