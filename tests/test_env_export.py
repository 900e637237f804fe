"""The lock records how each package was installed, and `runlock env` exports the run's
environment (requirements.txt, PEP 751 pylock.toml): real stage runs in subprocesses of the
project venv (runlock itself is an editable install there), a hand-made VCS/URL dist-info."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from conftest import git, run_py, write_script
from packaging.requirements import Requirement

from runlock.capture.packages import inventory
from runlock.cli import main as cli_main
from runlock.record.lock import Lock
from runlock.record.lockfile import load_lock
from runlock.store.env_export import export_env

GOLDEN = sorted((Path(__file__).parent / "golden").rglob("*.lock"))
COMMIT = "0123456789abcdef0123456789abcdef01234567"
STAGE = """
import dataclasses
import runlock

@dataclasses.dataclass
class Cfg:
    n: int = 1

@runlock.stage
def train(cfg: Cfg) -> dict:
    return {"n": cfg.n}

if __name__ == "__main__":
    train(Cfg())
"""


def _dist_info(site: Path, name: str, version: str, direct_url: dict[str, object]) -> None:
    d = site / f"{name}-{version}.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (d / "INSTALLER").write_text("uv\n")
    (d / "direct_url.json").write_text(json.dumps(direct_url))


def _run(git_repo: Path, results: Path, pythonpath: str | None = None) -> Path:
    script = write_script(git_repo / "train.py", STAGE)
    git(git_repo, "add", "train.py")
    git(git_repo, "commit", "-q", "-m", "stage")
    proc = run_py(script, env={"PYTHONPATH": pythonpath} if pythonpath else None)
    assert proc.returncode == 0, proc.stderr
    (lock,) = results.rglob("run.lock")
    return lock.parent


def _export(run_dir: Path, fmt: str, out: Path) -> str:
    assert cli_main(["env", str(run_dir), "--format", fmt, "-o", str(out)]) == 0
    return out.read_text()


def test_real_run_exports_pinned_requirements_and_names_the_editable_source(
    git_repo: Path, results: Path, tmp_path: Path
) -> None:
    run_dir = _run(git_repo, results)
    lock = load_lock(run_dir / "run.lock")
    editable_path = inventory()[1]["runlock"]
    # only the packages not from an index get a source entry: the editable runlock, not pyyaml
    assert lock["package_sources"]["runlock"] == {
        "kind": "directory", "path": editable_path, "editable": True, "installer": "pip",
    }  # fmt: skip
    assert "pyyaml" in lock["packages"] and "pyyaml" not in lock["package_sources"]
    assert lock["packages"] == inventory()[0]  # the compatible section is unchanged

    text = _export(run_dir, "requirements", tmp_path / "req.txt")
    lines = text.splitlines()
    pins = [ln for ln in lines if ln and not ln.startswith("#")]
    names = [Requirement(p).name for p in pins]
    assert names == sorted(names)
    for line in pins:  # every line is a valid PEP 508 requirement, pinned exactly
        req = Requirement(line)
        assert str(req.specifier) == f"=={lock['packages'][req.name]}"
    assert f"pyyaml=={lock['packages']['pyyaml']}" in pins
    assert not any(Requirement(p).name == "runlock" for p in pins)
    snapshot = Lock.from_dict(lock).source_commit
    assert snapshot
    (note,) = [ln for ln in lines if ln.startswith("# runlock ")]
    assert editable_path in note and snapshot in note and "editable" in note
    assert "not in the run's source snapshot" in note  # /work/main is not the run's repository


def test_real_run_exports_a_pylock_toml_with_runlock_as_a_directory(
    git_repo: Path, results: Path, tmp_path: Path
) -> None:
    run_dir = _run(git_repo, results)
    lock = load_lock(run_dir / "run.lock")
    doc = tomllib.loads(_export(run_dir, "pylock", tmp_path / "pylock.toml"))
    assert doc["lock-version"] == "1.0" and doc["created-by"] == "runlock"
    major, minor = lock["environment"]["python_version"].split(".")[:2]
    assert doc["requires-python"] == f"=={major}.{minor}.*"
    by_name = {p["name"]: p for p in doc["packages"]}
    assert list(by_name) == sorted(by_name) and set(by_name) == set(lock["packages"])
    assert by_name["runlock"]["directory"] == {"path": inventory()[1]["runlock"], "editable": True}
    assert by_name["pyyaml"] == {"name": "pyyaml", "version": lock["packages"]["pyyaml"]}
    assert doc["tool"]["runlock"]["run"] == lock["id"]


def test_vcs_and_url_installs_are_recorded_and_exported_as_direct_references(
    git_repo: Path, results: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site dir"
    _dist_info(site, "fakevcs", "1.2.3", {
        "url": "https://example.invalid/org/fakevcs.git",
        "vcs_info": {"vcs": "git", "commit_id": COMMIT, "requested_revision": "v1.2.3"},
    })  # fmt: skip
    _dist_info(site, "fake_arc", "0.1", {
        "url": "https://user:s3cret@example.invalid/fake_arc-0.1.tar.gz",
        "archive_info": {"hashes": {"sha256": "ab" * 32}},
    })  # fmt: skip
    _dist_info(site, "localproj", "0.0.1", {"url": git_repo.as_uri(), "dir_info": {"editable": True}})
    run_dir = _run(git_repo, results, pythonpath=str(site))
    raw = (run_dir / "run.lock").read_text()
    assert "s3cret" not in raw
    sources = load_lock(run_dir / "run.lock")["package_sources"]
    assert sources["fakevcs"] == {
        "kind": "vcs", "vcs": "git", "url": "https://example.invalid/org/fakevcs.git",
        "commit": COMMIT, "requested_revision": "v1.2.3", "installer": "uv",
    }  # fmt: skip
    assert sources["fake-arc"] == {
        "kind": "archive", "url": "https://user:***@example.invalid/fake_arc-0.1.tar.gz",
        "hashes": {"sha256": "ab" * 32}, "installer": "uv",
    }  # fmt: skip

    lines = _export(run_dir, "requirements", tmp_path / "req.txt").splitlines()
    assert f"fakevcs @ git+https://example.invalid/org/fakevcs.git@{COMMIT}" in lines
    snapshot = Lock.from_dict(load_lock(run_dir / "run.lock")).source_commit
    (note,) = [ln for ln in lines if ln.startswith("# localproj ")]  # the run's own project
    assert str(git_repo) in note and f"its code is in the run's source snapshot {snapshot}" in note
    req = Requirement(next(ln for ln in lines if ln.startswith("fake-arc @")))
    assert req.url and req.url.endswith("#sha256=" + "ab" * 32)

    by_name = {p["name"]: p for p in tomllib.loads(_export(run_dir, "pylock", tmp_path / "p.toml"))["packages"]}
    assert by_name["fakevcs"]["version"] == "1.2.3"
    assert by_name["fakevcs"]["vcs"] == {
        "type": "git", "url": "https://example.invalid/org/fakevcs.git",
        "requested-revision": "v1.2.3", "commit-id": COMMIT,
    }  # fmt: skip
    assert by_name["fake-arc"]["archive"]["hashes"] == {"sha256": "ab" * 32}


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_old_locks_without_package_sources_load_and_export(path: Path) -> None:
    data = load_lock(path)
    assert "package_sources" not in data
    view = Lock.from_dict(data)
    assert view.package_sources == {}
    pins = [ln for ln in export_env(view, "requirements").splitlines() if ln and not ln.startswith("#")]
    assert {Requirement(p).name for p in pins} == set(data.get("packages") or {}) - set(data.get("editable") or {})
    doc = tomllib.loads(export_env(view, "pylock"))
    for name, path_ in (data.get("editable") or {}).items():  # old locks: editables are directories
        (pkg,) = [p for p in doc["packages"] if p["name"] == name]
        assert pkg["directory"] == {"path": path_, "editable": True}


def test_env_of_an_unknown_run_exits_2(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results.mkdir()
    assert cli_main(["env", "20990101T000000-abcdef", "--format", "pylock"]) == 2
    assert "20990101T000000-abcdef" in capsys.readouterr().err


def test_lock_view_keeps_only_mapping_sources() -> None:
    view = Lock.from_dict({"package_sources": {"a": "odd", "b": {"kind": "vcs", "commit": COMMIT}}})
    assert view.package_sources == {"b": {"kind": "vcs", "commit": COMMIT}}
    assert Lock.from_dict({"package_sources": ["odd"]}).package_sources == {}
