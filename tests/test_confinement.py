"""Issue 11, items 1-5: nothing escapes the results root, the store prefix or the snapshot.

Malicious stores, locks and names are built by hand, as an attacker sharing a store would; each
attack must exit 2 with a message naming the offending value, and leave every file outside (and
inside) the roots exactly as it was: the whole tmp tree is snapshotted before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import runlock
from runlock.cli import main as cli_main
from runlock.errors import UnsafeNameError, UnsafePathError
from runlock.hashing import hash_outputs
from runlock.record.lockfile import dump_lock, load_lock
from runlock.record.safe import check_name, check_run_id, confined, printable

pytestmark = [pytest.mark.rclone, pytest.mark.usefixtures("rclone_env")]

BAIT = "20261125T100000-baba00"
GOOD = "20261125T090000-900d00"
ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@x"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, **ENV}).stdout.strip()


def tree_state(top: Path) -> dict[str, str]:
    """Every path under ``top`` with its kind and content (links by target, never followed)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = p.relative_to(top).as_posix()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's project: src/, train.py, results/ (the results root) and a store next to it."""
    repo = tmp_path / "proj"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "model.py").write_text("WEIGHTS = 1\n")
    (repo / "train.py").write_text("print('the user's script')\n")
    (repo / "results").mkdir()
    (repo / "pyproject.toml").write_text('[tool.runlock]\nresults = "results"\n')
    monkeypatch.chdir(repo)
    for k in ("RUNLOCK_RESULTS", "RUNLOCK_REMOTE"):
        monkeypatch.delenv(k, raising=False)
    return repo


def store_run(store: Path, entry: dict[str, Any], *, lock_id: str | None = None) -> None:
    """A run on a local-directory store: runs/<dir>/run.lock + index/<name>.json, by hand."""
    rid = str(entry["id"])
    d = store / "runs" / (rid if "/" not in rid and rid not in ("", ".", "..") else "odd")
    d.mkdir(parents=True, exist_ok=True)
    (d / "weights.bin").write_text(f"evil payload of {rid!r}\n")
    lock = {"schema": 1, "id": lock_id or rid, "stage": entry.get("stage"),
            "status": "completed", "outputs": hash_outputs(d, exclude={"run.lock"})}
    dump_lock(lock, d / "run.lock")
    full = {"store": 1, "status": "completed", "start": "2026-11-25T10:00:00+00:00",
            "relpath": None, "commit": None, "upstream": [], "pushed_at": None, **entry}
    (store / "index").mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1(rid.encode()).hexdigest()
    (store / "index" / f"{name}.json").write_text(json.dumps(full) + "\n")


# One row per attack on pull: the forged upstream entry, and the value the message must name.
PULL_ATTACKS = [
    pytest.param({"id": "src", "stage": ".."}, "'src'", id="issue1-stage-dotdot-id-src"),
    pytest.param({"id": "train.py", "stage": ".."}, "'train.py'", id="issue2-id-train.py"),
    pytest.param({"id": GOOD, "stage": "../../x"}, "'../../x'", id="issue2-stage-up-up"),
    pytest.param({"id": GOOD, "stage": "/tmp"}, "'/tmp'", id="stage-absolute"),
    pytest.param({"id": GOOD, "stage": "${oc.env:HOME}"}, "${oc.env:HOME}", id="stage-interp"),
    pytest.param({"id": GOOD, "stage": "a\nb"}, "'a\\nb'", id="stage-newline"),
    pytest.param({"id": GOOD + "\n", "stage": "prep"}, "\\n", id="id-newline"),
    pytest.param({"id": GOOD, "stage": "prep", "relpath": "../src"}, "'../src'",
                 id="relpath-up"),
    pytest.param({"id": GOOD, "stage": "prep", "relpath": "/etc/x"}, "'/etc/x'",
                 id="relpath-absolute"),
    pytest.param({"id": GOOD, "stage": "prep", "relpath": "."}, "'.'", id="relpath-root-itself"),
    pytest.param({"id": GOOD, "stage": "prep", "commit": "--upload-pack=touch /tmp/x"},
                 "--upload-pack", id="commit-option"),
]


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("copy", [False, True], ids=["link", "copy"])
@pytest.mark.parametrize(("upstream", "named"), PULL_ATTACKS)
def test_forged_store_entry_never_touches_anything(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    upstream: dict[str, Any], named: str, copy: bool, force: bool,
) -> None:
    store = tmp_path / "store"
    store_run(store, upstream)
    store_run(store, {"id": BAIT, "stage": "train", "upstream": [upstream["id"]]})
    before = tree_state(tmp_path)
    argv = ["pull", BAIT, "--from", str(store), "--no-code"]
    code = cli_main(argv + (["--copy"] if copy else []) + (["--force"] if force else []))
    err = capsys.readouterr().err
    assert code == 2, err
    assert named in err
    assert "--force" not in err  # never advise replacing something outside the results root
    assert tree_state(tmp_path) == before


def test_forged_upstream_id_of_a_plain_pull(project: Path, tmp_path: Path) -> None:
    """The issue's exact case through the library: ``pull BAIT --force`` left ``src/`` alone."""
    store = tmp_path / "store"
    store_run(store, {"id": "src", "stage": ".."})
    store_run(store, {"id": BAIT, "stage": "train", "upstream": ["src"]})
    from runlock.store.remote import pull

    with pytest.raises(UnsafeNameError, match="'src'"):
        pull(BAIT, remote=str(store), force=True, code=False)
    assert (project / "src" / "model.py").read_text() == "WEIGHTS = 1\n"
    assert not (project / "src").is_symlink()


def test_pull_through_a_pulled_symlink_is_refused(project: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A relpath nested inside an already pulled (symlinked) run would write into the store."""
    store = tmp_path / "store"
    store_run(store, {"id": GOOD, "stage": "prep", "relpath": "prep/a"})
    assert cli_main(["pull", GOOD, "--from", str(store), "--no-code"]) == 0
    assert (project / "results" / "prep" / "a").is_symlink()
    store_run(store, {"id": BAIT, "stage": "train", "relpath": "prep/a/nested"})
    before = tree_state(tmp_path)
    assert cli_main(["pull", BAIT, "--from", str(store), "--no-code", "--copy"]) == 2
    err = capsys.readouterr().err
    assert "'prep/a/nested'" in err and "outside" in err
    assert tree_state(tmp_path) == before


def test_force_never_replaces_a_non_run_inside_the_root(project: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    store_run(store, {"id": GOOD, "stage": "prep", "relpath": "notes"})
    (project / "results" / "notes").mkdir()
    (project / "results" / "notes" / "todo.txt").write_text("mine\n")
    before = tree_state(tmp_path)
    code = cli_main(["pull", GOOD, "--from", str(store), "--no-code", "--force"])
    err = capsys.readouterr().err
    assert code == 1 and "not a run directory" in err
    assert "pass --force" not in err
    assert tree_state(tmp_path) == before


def _local_run(root: Path, rid: str, stage: str = "train") -> Path:
    d = root / "train" / "r1"
    d.mkdir(parents=True)
    (d / "model.txt").write_text("m\n")
    dump_lock({"schema": 1, "id": rid, "stage": stage, "status": "completed",
               "outputs": hash_outputs(d, exclude={"run.lock"})}, d / "run.lock")
    return d


@pytest.mark.parametrize(("rid", "stage", "named"), [
    pytest.param("../../x", "train", "'../../x'", id="issue3-id-up-up"),
    pytest.param("a/b", "train", "'a/b'", id="id-slash"),
    pytest.param(GOOD, "../x", "'../x'", id="stage-up"),
])
def test_push_of_a_forged_lock_stays_inside_the_store(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], rid: str, stage: str,
    named: str,
) -> None:
    d = _local_run(project / "results", rid, stage)
    store = tmp_path / "outer" / "store"
    store.mkdir(parents=True)
    before = tree_state(tmp_path)
    assert cli_main(["push", str(d), "--to", str(store), "--no-code"]) == 2
    assert named in capsys.readouterr().err
    assert tree_state(tmp_path) == before


def test_push_to_an_sftp_store_refuses_a_forged_id(
    project: Path, tmp_path: Path, sftp_remote: Any, capsys: pytest.CaptureFixture[str],
) -> None:
    """A real rclone remote: the forged id is refused before rclone is ever asked to copy."""
    d = _local_run(project / "results", "../../x")
    before = tree_state(tmp_path)
    remote = f"{sftp_remote.remote}confine {tmp_path.name}"
    assert cli_main(["push", str(d), "--to", remote, "--no-code"]) == 2
    assert "'../../x'" in capsys.readouterr().err
    assert tree_state(tmp_path) == before
    assert not (sftp_remote.root / f"confine {tmp_path.name}").exists()
    assert not (sftp_remote.root.parent / "x").exists()


def test_remote_rm_of_a_forged_entry_keeps_the_store(project: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    store_run(store, {"id": GOOD, "stage": "prep"})
    store_run(store, {"id": "..", "stage": "prep"})  # `remote rm ..` would purge runs/..
    before = tree_state(tmp_path)
    assert cli_main(["remote", "--remote", str(store), "rm", "..", "--force"]) == 2
    assert "'..'" in capsys.readouterr().err
    assert tree_state(tmp_path) == before


# ----------------------------------------------------------------------------- stage names


@pytest.mark.parametrize("name", [
    "../../../x", "..", ".", "a/b", "a\\b", "${oc.env:HOME}", "x${stage}", "a\nb", "a\rb",
    "tab\there", "nul\x00",
])
def test_unsafe_stage_name_is_refused_at_decoration(results: Path, name: str) -> None:
    with pytest.raises(UnsafeNameError) as info:
        @runlock.stage(name=name)
        def f(x: int = 1) -> int:
            return x
    assert repr(name) in str(info.value)
    assert info.value.exit_code == 2
    assert not results.exists()


@pytest.mark.parametrize("name", ["train", "prep-v2", "eval.final", "<lambda>", "étape_1"])
def test_safe_stage_names_keep_working(results: Path, name: str) -> None:
    @runlock.stage(name=name)
    def f(x: int = 1) -> int:
        return x

    out = f.invoke()
    assert out.ok
    assert out.run_dir.parent == results / name


def test_stage_name_is_never_interpolated(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``$`` that is not an interpolation is kept as it is (no ${...} can reach OmegaConf)."""
    monkeypatch.setenv("HOME", "/nonexistent-home")

    @runlock.stage(name="cost$")
    def f(x: int = 1) -> int:
        return x

    out = f.invoke()
    assert out.run_dir.parent == results / "cost$"
    assert load_lock(out.run_dir)["stage"] == "cost$"


@pytest.mark.parametrize("name", ["a/${oc.env:HOME}", "ok/a\nb", "../x", "a//b"])
def test_unsafe_experiment_name_is_refused(name: str) -> None:
    from runlock.config.omega import validate_experiment_name

    with pytest.raises(UnsafeNameError if "$" in name or "\n" in name else ValueError):
        validate_experiment_name(name)


# ----------------------------------------------------------------------------- CLI output


def test_cli_output_escapes_line_breaks_of_forged_names(
    project: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    d = _local_run(project / "results", GOOD, stage="x\nFAKE-ROW completed")
    assert cli_main(["ls"]) == 0
    out = capsys.readouterr().out
    assert not any(line.startswith("FAKE-ROW") for line in out.splitlines())
    assert "x\\nFAKE-ROW" in out
    assert cli_main(["show", str(d)]) == 0
    assert not any(line.startswith("FAKE-ROW") for line in capsys.readouterr().out.splitlines())


def test_remote_ls_escapes_line_breaks(project: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    store_run(store, {"id": GOOD, "stage": "prep\nFAKE-ROW"})
    assert cli_main(["remote", "--remote", str(store), "ls"]) == 0
    out = capsys.readouterr().out
    assert "prep\\nFAKE-ROW" in out
    assert not any(line.startswith("FAKE-ROW") for line in out.splitlines())


# ----------------------------------------------------------------------------- the owner


def test_safe_owner_table(tmp_path: Path) -> None:
    """One table: input -> accepted or the error naming it."""
    assert check_run_id(GOOD) == GOOD
    assert check_name("train") == "train"
    assert confined(tmp_path, "a", "b") == tmp_path / "a" / "b"
    rows: list[tuple[Any, ...]] = [
        (check_run_id, ("src",), UnsafeNameError, "'src'"),
        (check_run_id, (None,), UnsafeNameError, "None"),
        (check_name, ("..",), UnsafeNameError, "'..'"),
        (confined, (tmp_path, "../x"), UnsafePathError, "'../x'"),
        (confined, (tmp_path, "/abs"), UnsafePathError, "'/abs'"),
        (confined, (tmp_path, "~root"), UnsafePathError, "'~root'"),
        (confined, (tmp_path, "."), UnsafePathError, "'.'"),
    ]
    for fn, args, exc, text in rows:
        with pytest.raises(exc) as info:
            fn(*args, source="test")
        assert text in str(info.value) and "(from test)" in str(info.value)
    (tmp_path / "out").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "out")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "esc").symlink_to(tmp_path / "out")
    with pytest.raises(UnsafePathError, match="outside"):
        confined(tmp_path / "root", "esc/x")
    assert confined(tmp_path / "root", "esc") == tmp_path / "root" / "esc"  # the link itself
    assert printable("a\nb\x1b[2J") == "a\\nb\\x1b[2J"


# ----------------------------------------------------------------------------- reproduce

STAGE = '''
import dataclasses
from pathlib import Path
import runlock

@dataclasses.dataclass
class Cfg:
    n: int = 1
    save_dir: str | None = None

def helper(cfg=None, **kw):
    Path(__file__).with_name("HELPER_RAN").write_text("x")

@runlock.stage
def train(cfg: Cfg) -> int:
    Path(cfg.save_dir, "out.txt").write_text(str(cfg.n))
    return cfg.n

if __name__ == "__main__":
    train(Cfg())
'''
EVIL = "from pathlib import Path\nPath(__file__).with_name('EVIL_RAN').write_text('x')\n"


@pytest.fixture
def made_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real run of a real stage in a git project (a snapshot to reproduce from)."""
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "__init__.py").write_text("")
    (repo / "pkg" / "train.py").write_text(STAGE)
    (repo / "pyproject.toml").write_text('[tool.runlock]\nresults = "results"\n')
    (repo / ".gitignore").write_text("results/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "init")
    monkeypatch.chdir(repo)
    for k in ("RUNLOCK_RESULTS", "RUNLOCK_REMOTE"):
        monkeypatch.delenv(k, raising=False)
    env = {**os.environ, **ENV, "PYTHONPATH": str(repo)}
    env.pop("RUNLOCK_RESULTS", None)
    subprocess.run([sys.executable, "-c", "from pkg.train import train, Cfg; train(Cfg())"],
                   cwd=repo, env=env, check=True, capture_output=True)
    (run,) = (repo / "results" / "train").iterdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "evil.py").write_text(EVIL)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "elsewhere"))
    return run


@pytest.mark.parametrize(("function", "named"), [
    pytest.param({"module": "evil"}, "'evil'", id="module-outside-snapshot"),
    pytest.param({"module": "os", "qualname": "system"}, "'os'", id="module-stdlib"),
    pytest.param({"module": "__main__", "source_file": "../../../elsewhere/evil.py"},
                 "evil.py", id="issue5-main-source-outside"),
    pytest.param({"module": "__main__", "source_file": "/etc/passwd"}, "/etc/passwd",
                 id="source-absolute-outside-repo"),
    pytest.param({"module": "pkg.train;import os"}, "import os", id="module-not-a-name"),
    pytest.param({"qualname": "helper"}, "pkg.train.helper", id="not-a-stage"),
])
def test_reproduce_runs_only_snapshot_code(made_run: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           function: dict[str, str], named: str) -> None:
    lock = load_lock(made_run)
    lock["function"] = {**lock["function"], **function}
    dump_lock(lock, made_run / "run.lock")
    assert cli_main(["reproduce", str(made_run), "--no-pull"]) == 2
    err = capsys.readouterr().err
    assert named in err, err
    assert not (tmp_path / "elsewhere" / "EVIL_RAN").exists()
    assert not list(tmp_path.rglob("HELPER_RAN"))
    assert [p.name for p in (made_run.parent).iterdir()] == [made_run.name]


def test_reproduce_of_an_honest_lock_still_works(made_run: Path) -> None:
    assert cli_main(["reproduce", str(made_run), "--no-pull"]) == 0
