"""The ``runlock`` command as a new user types it (issue 13, "Command line"): --version, rm --json,
``remote ls --remote X``, exit 2 for an unknown run, a mistyped --where, --sweep/--experiment
selection in ls and compare, the "no runs match" message, and ``runlock init``."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from conftest import run_py, write_script

import runlock
from runlock.cli import main
from runlock.record.lockfile import load_lock
from runlock.settings import results_root

SCRIPT = """
from dataclasses import dataclass
import runlock

@dataclass
class Config:
    lr: float = 0.1
    aug: bool = True

@runlock.stage(snapshot=False, console=False)
def train(cfg: Config):
    return {"score": cfg.lr * (2 if cfg.aug else 1)}

if __name__ == "__main__":
    runlock.main(train)
"""

EXPERIMENTS = """
ablation:
  no_aug:
    aug: false
  small_lr:
    lr: 0.01
"""


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def ls_ids(out: str) -> set[str]:
    return {line.split()[0] for line in out.splitlines()[1:] if line.strip()}


@pytest.fixture
def project(tmp_path: Path, results: Path) -> Path:
    """A script folder (awkward name) with experiments, results going to ``results``."""
    folder = tmp_path / "my project's"
    folder.mkdir()
    write_script(folder / "train.py", SCRIPT)
    (folder / "experiments.yaml").write_text(EXPERIMENTS)
    return folder


@pytest.fixture
def two_runs(project: Path, results: Path) -> list[Path]:
    for lr in ("0.1", "0.2"):
        res = run_py(project / "train.py", f"lr={lr}", "-q")
        assert res.returncode == 0, res.stderr
    return sorted(p.parent for p in results.rglob("run.lock"))


@pytest.fixture
def sweeps(project: Path, results: Path) -> dict[str, list[dict]]:
    """Two sweeps: a grid over lr, and the experiments ``ablation/*``; {sweep id: locks}."""
    for args in (["lr=0.3,0.4", "--sweep"], ["--experiment", "ablation/*", "--sweep"]):
        res = run_py(project / "train.py", *args, "-q")
        assert res.returncode == 0, res.stderr
    out: dict[str, list[dict]] = {}
    for lock_path in results.rglob("run.lock"):
        lock = load_lock(lock_path.parent)
        out.setdefault(lock["sweep"]["id"], []).append(lock)
    assert sorted(len(v) for v in out.values()) == [2, 2]
    return out


# -- runlock --version -------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"runlock {runlock.__version__}"


# -- unknown runs are bad input: exit 2 --------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["show", "{ref}"], ["diff", "{ref}", "{other}"], ["compare", "{ref}"], ["rm", "{ref}"],
     ["lineage", "{ref}"]],
)  # fmt: skip
@pytest.mark.parametrize("ref", ["nonexistent", "ambiguous"])
def test_unknown_or_ambiguous_run_exits_2(
    two_runs: list[Path], results: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
    ref: str,
) -> None:  # fmt: skip
    ids = [load_lock(d)["id"] for d in two_runs]
    common = ids[0][:1]  # both ids start with the year's first digit
    assert all(i.startswith(common) for i in ids)
    text = "nonexistent" if ref == "nonexistent" else common
    args = [a.replace("{ref}", text).replace("{other}", ids[1]) for a in argv]
    code, _out, err = cli(capsys, "--root", str(results), *args)
    assert code == 2
    expected = "No run 'nonexistent'" if ref == "nonexistent" else "matches 2 runs"
    assert expected in err
    assert all(d.exists() for d in two_runs)  # rm deleted nothing


# -- --where typos -----------------------------------------------------------------------


def test_where_with_doubled_operator_is_an_error(
    two_runs: list[Path], results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "ls", "--where", "lr>>1")
    assert code == 2 and out == ""
    assert "Cannot parse the filter 'lr>>1'" in err and "'>1'" in err
    code, _, err = cli(capsys, "rm", "--where", "lr=>0", "--force")
    assert code == 2 and "'lr=>0'" in err
    assert all(d.exists() for d in two_runs)
    # a quoted text value may still start with an operator character
    code, _, err = cli(capsys, "ls", "--where", "lr='>1'")
    assert code == 0 and "no runs match --where lr='>1' (2 runs in" in err
    code, out, _ = cli(capsys, "ls", "--where", "lr>0.15")
    assert code == 0 and ls_ids(out) == {load_lock(two_runs[1])["id"]}


# -- "no runs match" ---------------------------------------------------------------------


def test_empty_listing_says_which_filters_matched_nothing(
    two_runs: list[Path], results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "ls", "--status", "failed", "--where", "lr>5")
    assert code == 0 and out == ""
    assert err == f"runlock: no runs match --status failed, --where lr>5 (2 runs in {results})\n"
    code, _, err = cli(capsys, "ls", "prepare")
    assert err == f"runlock: no runs match stage prepare (2 runs in {results})\n"
    empty = tmp_path / "empty"
    code, _, err = cli(capsys, "--root", str(empty), "ls")
    assert code == 0 and err == f"runlock: no runs found under {empty}\n"


# -- --sweep and --experiment ------------------------------------------------------------


def test_ls_and_compare_select_a_sweep_and_an_experiment(
    sweeps: dict[str, list[dict]], results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    by_kind = {("exp" if locks[0]["experiment"] else "grid"): (sid, locks)
               for sid, locks in sweeps.items()}  # fmt: skip
    grid_id, grid = by_kind["grid"]
    exp_id, exp = by_kind["exp"]

    code, out, _ = cli(capsys, "ls", "--sweep", grid_id)
    assert code == 0 and ls_ids(out) == {lk["id"] for lk in grid}
    code, out, _ = cli(capsys, "ls", "--sweep", exp_id[:-3])  # an id prefix
    assert ls_ids(out) == {lk["id"] for lk in exp}
    code, out, _ = cli(capsys, "ls", "--experiment", "ablation/*")
    assert ls_ids(out) == {lk["id"] for lk in exp}
    code, out, _ = cli(capsys, "ls", "--experiment", "ablation/no_aug")
    assert ls_ids(out) == {lk["id"] for lk in exp if lk["experiment"] == "ablation/no_aug"}
    code, out, err = cli(capsys, "ls", "--sweep", "20000101T000000-000000")
    assert code == 0 and out == ""
    assert err == (
        f"runlock: no runs match --sweep 20000101T000000-000000 (4 runs in {results})\n"
    )
    assert [r.id for r in runlock.runs(sweep=grid_id, sort="id")] == sorted(lk["id"] for lk in grid)

    code, out, _ = cli(capsys, "compare", "--sweep", grid_id, "--json")
    table = json.loads(out)
    assert code == 0 and {r["id"] for r in table["runs"]} == {lk["id"] for lk in grid}
    assert table["varying_config"] == ["config.lr"]
    code, out, _ = cli(capsys, "compare", "--experiment", "ablation/*", "--json")
    table = json.loads(out)
    assert {r["id"] for r in table["runs"]} == {lk["id"] for lk in exp}
    assert set(table["varying_config"]) == {"config.lr", "config.aug"}
    code, _, err = cli(capsys, "compare")
    assert code == 2 and "Nothing to compare" in err

    # rm takes the same selection
    code, out, _ = cli(capsys, "rm", "--sweep", grid_id, "--dry-run", "--json")
    assert code == 0 and {r["id"] for r in json.loads(out)["deleted"]} == {lk["id"] for lk in grid}
    assert len(list(results.rglob("run.lock"))) == 4


# -- rm --json ---------------------------------------------------------------------------


def test_rm_json(two_runs: list[Path], results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = (load_lock(d)["id"] for d in two_runs)
    code, out, err = cli(capsys, "rm", first, "--dry-run", "--json")
    report = json.loads(out)  # stdout is the JSON document only; the listing went to stderr
    assert code == 0 and report["dry_run"] is True and first in err
    assert [r["id"] for r in report["deleted"]] == [first] and two_runs[0].exists()

    code, out, _ = cli(capsys, "rm", first, "--force", "--json")
    report = json.loads(out)
    assert code == 0 and report["dry_run"] is False
    assert [(r["id"], r["dir"]) for r in report["deleted"]] == [(first, str(two_runs[0]))]
    assert report["failed"] == [] and report["skipped_running"] == []
    assert not two_runs[0].exists() and two_runs[1].exists()

    code, out, _ = cli(capsys, "rm", "--status", "failed", "--force", "--json")
    assert code == 0 and json.loads(out)["deleted"] == []
    code, out, _ = cli(capsys, "ls", "--json")
    assert [r["id"] for r in json.loads(out)] == [second]


# -- remote ls --remote X ----------------------------------------------------------------


def test_remote_option_after_the_action(
    two_runs: list[Path], results: Path, tmp_path: Path, rclone_env: str,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("RUNLOCK_REMOTE", raising=False)
    run_id = load_lock(two_runs[0])["id"]
    store = str(tmp_path / "store")
    code, _, err = cli(capsys, "push", run_id, "--to", store, "--no-code")
    assert code == 0, err
    for argv in (["remote", "ls", "--remote", store, "--ids"], ["remote", "--remote", store, "ls", "--ids"]):
        code, out, err = cli(capsys, *argv)
        assert code == 0, err
        assert out.split() == [run_id]
    code, _, err = cli(capsys, "remote", "ls")
    assert code == 2 and "No remote store configured" in err
    code, out, err = cli(capsys, "remote", "rm", run_id, "--force", "--keep-code", "--remote", store)
    assert code == 0, err
    assert f"deleted {run_id}" in out
    code, out, _ = cli(capsys, "remote", "ls", "--ids", "--remote", store)
    assert out.split() == []


# -- runlock init ------------------------------------------------------------------------


def test_init_creates_pyproject_and_gitignore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNLOCK_RESULTS", raising=False)
    project = tmp_path / "new project"
    project.mkdir()
    code, out, _ = cli(capsys, "init", str(project))
    assert code == 0 and "pyproject.toml" in out and ".gitignore" in out
    assert tomllib.loads((project / "pyproject.toml").read_text())["tool"]["runlock"] == {
        "results": "results"
    }
    assert (project / ".gitignore").read_text() == "results/\n"
    assert results_root(start=project) == project / "results"
    # twice: nothing changes
    before = [(project / n).read_bytes() for n in ("pyproject.toml", ".gitignore")]
    code, out, _ = cli(capsys, "init", str(project))
    assert code == 0 and "already sets" in out
    assert [(project / n).read_bytes() for n in ("pyproject.toml", ".gitignore")] == before


def test_init_keeps_existing_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNLOCK_RESULTS", raising=False)
    original = '[project]\nname = "demo"  # a comment\n\n[tool.ruff]\nline-length = 100'
    (tmp_path / "pyproject.toml").write_text(original)
    (tmp_path / ".gitignore").write_text("*.pyc\n/results")  # already ignored, no final newline
    assert cli(capsys, "init", str(tmp_path))[0] == 0
    text = (tmp_path / "pyproject.toml").read_text()
    assert text.startswith(original)  # appended, never rewritten
    data = tomllib.loads(text)
    assert data["tool"]["runlock"] == {"results": "results"}
    assert data["tool"]["ruff"] == {"line-length": 100} and data["project"]["name"] == "demo"
    assert (tmp_path / ".gitignore").read_text() == "*.pyc\n/results"

    # a [tool.runlock] table without results: the key goes under its header
    (tmp_path / "pyproject.toml").write_text('[tool.runlock]\nremote = "b2:bucket"\n[tool.x]\na = 1\n')
    (tmp_path / ".gitignore").write_text("*.pyc")
    assert cli(capsys, "init", str(tmp_path), "--results", "runs")[0] == 0
    data = tomllib.loads((tmp_path / "pyproject.toml").read_text())
    assert data["tool"] == {"runlock": {"results": "runs", "remote": "b2:bucket"}, "x": {"a": 1}}
    assert (tmp_path / ".gitignore").read_text() == "*.pyc\nruns/\n"
    assert results_root(start=tmp_path) == tmp_path / "runs"


def test_init_refuses_an_unreadable_pyproject(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pyproject.toml").write_text("[project\nname =")
    code, _, err = cli(capsys, "init", str(tmp_path))
    assert code == 2 and f"Cannot read {tmp_path / 'pyproject.toml'}" in err
    assert (tmp_path / "pyproject.toml").read_text() == "[project\nname ="
    assert not (tmp_path / ".gitignore").exists()
