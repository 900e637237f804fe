"""No secret is published (issue 11, items 15-17): rclone connection strings, secret files in
the worktree and secret config values stay out of run.lock, config.yaml, the index, the source
snapshot, the pushed store and MLflow params. Real git repositories, real rclone (local path)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import run_py, write_script

from runlock.git.options import SnapshotOptions, split_secret_files
from runlock.record.lockfile import load_lock
from runlock.redact import redact_argv, redact_env, redact_remote

PASSWORD = "Pa55-SECRET-xyz"
API_KEY = "sk-live-0123456789abcdef"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def files_holding(root: Path, needle: str) -> list[Path]:
    """Every file under ``root`` whose bytes contain ``needle`` (sqlite files included)."""
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


STAGE = """
from dataclasses import dataclass
import json
import runlock

@dataclass
class Config:
    lr: float = 0.1
    api_key: str = runlock.Secret("RL_TEST_API_KEY")
    seed: int | None = 1

@runlock.stage(snapshot_include=__import__("os").environ.get("RL_INCLUDE", "").split(",")
               if __import__("os").environ.get("RL_INCLUDE") else ())
def train(cfg: Config):
    # what the stage received, without writing the secret itself anywhere
    (runlock.current_run().dir / "got.json").write_text(json.dumps(
        {"key_ok": cfg.api_key == __import__("os").environ["RL_TEST_API_KEY"],
         "key_len": len(cfg.api_key)}))
    return {"ok": True}

if __name__ == "__main__":
    if __import__("os").environ.get("RL_DIRECT"):  # any argv: called from Python
        train()
    else:
        runlock.main(train)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed project with a stage script; results git-ignored; origin = a bare repo."""
    repo = tmp_path / "proj ect"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("results/\n")
    write_script(repo / "train.py", STAGE)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v1")
    bare = tmp_path / "code.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    monkeypatch.setenv("RUNLOCK_RESULTS", str(repo / "results"))
    monkeypatch.delenv("RUNLOCK_REMOTE", raising=False)
    return repo


def one_run(repo: Path) -> Path:
    runs = [p.parent for p in (repo / "results").rglob("run.lock")]
    assert len(runs) == 1, runs
    return runs[0]


# -- item 15: rclone connection strings ---------------------------------------------------------

REMOTES = [  # (recorded remote, what must be left of it)
    (f":sftp,host=h,user=u,pass={PASSWORD}:", ":sftp,host=h,user=u,pass=***:"),
    (f':sftp,host=h,pass="{PASSWORD},x:y":dir', ":sftp,host=h,pass=***:dir"),
    (f"store,pass={PASSWORD}:runs/a", "store,pass=***:runs/a"),
    (f":s3,access_key_id=AK,secret_access_key={PASSWORD}:bucket",
     ":s3,access_key_id=***,secret_access_key=***:bucket"),
    (f":webdav,url='https://u:{PASSWORD}@h/dav',bearer_token={PASSWORD}:x",
     ":webdav,url='https://u:***@h/dav',bearer_token=***:x"),
    ("b2:bucket/runs", "b2:bucket/runs"),
    ("/srv/store,v2", "/srv/store,v2"),
]


@pytest.mark.parametrize(("remote", "shown"), REMOTES)
def test_redact_remote(remote: str, shown: str) -> None:
    assert redact_remote(remote) == shown
    assert redact_env({"RUNLOCK_REMOTE": remote})["RUNLOCK_REMOTE"] == shown


def test_rclone_password_variables_are_secret_names() -> None:
    env = redact_env({"RCLONE_CONFIG_MY_PASS": PASSWORD, "RCLONE_SFTP_PASS": PASSWORD,
                      "PASSENGER_MODE": "x"})
    assert env == {"RCLONE_CONFIG_MY_PASS": "***", "RCLONE_SFTP_PASS": "***",
                   "PASSENGER_MODE": "x"}


def test_inline_remote_never_reaches_lock_store_or_mlflow_params(
        project: Path, tmp_path: Path, rclone_env: None) -> None:
    from runlock.store.remote import push
    from runlock.tracking.mlflow import lock_params

    secret_remote = f":sftp,host=h,user=u,pass={PASSWORD}:"
    proc = run_py(project / "train.py", f"--remote-flag={secret_remote}", "--sftp-pass", PASSWORD,
                  env={"RUNLOCK_REMOTE": secret_remote, "RL_TEST_API_KEY": API_KEY,
                       "RL_DIRECT": "1"})
    assert proc.returncode == 0, proc.stderr
    run_dir = one_run(project)
    lock = load_lock(run_dir)
    assert lock["environment"]["env"]["RUNLOCK_REMOTE"] == ":sftp,host=h,user=u,pass=***:"
    assert files_holding(run_dir, PASSWORD) == [], proc.stderr
    params = lock_params(lock).params
    assert params and not [k for k, v in params.items() if PASSWORD in v]
    store = tmp_path / "store"
    assert "--sftp-pass" in lock["environment"]["argv"]
    push(run_dir, remote=str(store), code=False)
    assert files_holding(store, PASSWORD) == []


def test_argv_redaction() -> None:
    argv = ["train.py", f"api_key={API_KEY}", "--token", API_KEY, "--lr", "0.1",
            f"db_url=postgres://u:{PASSWORD}@h/db", f"--password={PASSWORD}",
            f"model.hf_token={API_KEY}", f"--remote=:sftp,pass={PASSWORD}:d"]
    out = redact_argv(argv)
    assert not [a for a in out if API_KEY in a or PASSWORD in a], out
    assert out[:6] == ["train.py", "api_key=***", "--token", "***", "--lr", "0.1"]
    assert out[6] == "db_url=postgres://u:***@h/db"


# -- item 16: secret files out of snapshots -----------------------------------------------------


def test_split_secret_files_default_list_and_include_on_purpose() -> None:
    paths = [".env", "a/.env.local", ".aws/credentials", "certs/server.pem", "id_ed25519",
             ".netrc", "conf/rclone.conf", "src/train.py", "env.py", ".envelope", "README.md",
             "src/secrets_manager.py", "tests/test_credentials.py", "gcp/client_secret_1.json"]
    keep, secret = split_secret_files(paths, SnapshotOptions())
    # source files whose names merely mention secrets are source: the snapshot keeps them
    assert keep == ["src/train.py", "env.py", ".envelope", "README.md", "src/secrets_manager.py",
                    "tests/test_credentials.py"]
    assert secret == [".env", "a/.env.local", ".aws/credentials", "certs/server.pem",
                      "id_ed25519", ".netrc", "conf/rclone.conf", "gcp/client_secret_1.json"]
    keep, secret = split_secret_files(paths, SnapshotOptions(include=("*", ".env", ".aws")))
    assert ".env" in keep and ".aws/credentials" in keep and "a/.env.local" in secret


def test_secret_files_left_out_of_snapshot_with_a_warning(project: Path) -> None:
    (project / ".env").write_text(f"OPENAI_API_KEY={API_KEY}\n")
    (project / ".aws").mkdir()
    (project / ".aws" / "credentials").write_text(f"aws_secret_access_key={PASSWORD}\n")
    (project / "deploy.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    (project / "helper.py").write_text("X = 1\n")  # an untracked source file is captured
    proc = run_py(project / "train.py", env={"RL_TEST_API_KEY": API_KEY})
    assert proc.returncode == 0, proc.stderr
    lock = load_lock(one_run(project))
    commit = lock["git"]["snapshot"]["commit"]
    tree = git(project, "ls-tree", "-r", "--name-only", commit).split("\n")
    assert "helper.py" in tree and "train.py" in tree
    assert not {".env", ".aws/credentials", "deploy.pem"} & set(tree)
    assert lock["git"]["secrets_left_out"] == [".aws/credentials", ".env", "deploy.pem"]
    assert any(".env" in w and "snapshot_include" in w for w in lock["warnings"])
    assert ".aws/credentials" in proc.stderr  # the console warning
    # nothing of it in the objects the snapshot branch pushes
    git(project, "push", "-q", "origin", f"{commit}:refs/heads/probe")
    bare = project.parent / "code.git"
    blobs = git(bare, "rev-list", "--objects", "--all")
    assert git(project, "hash-object", ".env") not in blobs


def test_a_secret_file_named_in_snapshot_include_is_captured(project: Path) -> None:
    (project / ".env").write_text("DEBUG=1\n")
    proc = run_py(project / "train.py", env={"RL_TEST_API_KEY": API_KEY, "RL_INCLUDE": "*,.env"})
    assert proc.returncode == 0, proc.stderr
    lock = load_lock(one_run(project))
    tree = git(project, "ls-tree", "-r", "--name-only", lock["git"]["snapshot"]["commit"])
    assert ".env" in tree.split("\n")
    assert lock["git"]["secrets_left_out"] == []


# -- item 17: secret config values --------------------------------------------------------------


def test_secret_value_from_environment_is_never_written(project: Path, tmp_path: Path,
                                                        rclone_env: None) -> None:
    from runlock.browse.query import runs
    from runlock.store.remote import push

    proc = run_py(project / "train.py", env={"RL_TEST_API_KEY": API_KEY})
    assert proc.returncode == 0, proc.stderr
    run_dir = one_run(project)
    got = (run_dir / "got.json").read_text()
    assert '"key_ok": true' in got  # the stage received the value
    lock = load_lock(run_dir)
    assert lock["config"]["api_key"] == "<secret: RL_TEST_API_KEY>"
    assert "RL_TEST_API_KEY" in (run_dir / "config.yaml").read_text()
    assert list(runs(root=project / "results"))  # builds the index under results/.runlock
    assert files_holding(project / "results", API_KEY) == []  # lock, config, log, index
    store = tmp_path / "store"
    push(run_dir, remote=str(store), code=False)
    assert files_holding(store, API_KEY) == []
    assert API_KEY not in proc.stdout + proc.stderr


def test_missing_secret_variable_is_bad_input_and_touches_nothing(project: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RL_TEST_API_KEY"}
    proc = subprocess.run([os.environ.get("PYTHON", __import__("sys").executable),
                           str(project / "train.py")], cwd=project, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "RL_TEST_API_KEY" in proc.stderr and "api_key" in proc.stderr
    assert not list((project / "results").rglob("run.lock")) if (project / "results").exists() \
        else True
    assert not (project / "results").exists() or not any((project / "results").rglob("*.yaml"))


def test_secret_looking_field_in_clear_is_warned(tmp_path: Path, results: Path) -> None:
    script = write_script(tmp_path / "s.py", """
        from dataclasses import dataclass
        import runlock

        @dataclass
        class Config:
            db_password: str = "hunter2-long"
            db_url: str = "postgres://u:pw@h/db"
            lr: float = 0.1

        @runlock.stage(snapshot=False)
        def s(cfg: Config):
            return None

        if __name__ == "__main__":
            runlock.main(s)
        """)
    proc = run_py(script, "lr=0.3")
    assert proc.returncode == 0, proc.stderr
    lock = load_lock(one_run_in(results))
    warning = [w for w in lock["warnings"] if "runlock.Secret" in w]
    assert warning and "db_password" in warning[0] and "db_url" in warning[0]
    assert "lr" not in warning[0].replace("looks", "")
    assert "db_password" in proc.stderr  # also on the console


def one_run_in(results: Path) -> Path:
    runs = [p.parent for p in results.rglob("run.lock")]
    assert len(runs) == 1, runs
    return runs[0]


def test_secret_of_a_bad_name_is_a_config_error() -> None:
    import runlock
    from runlock.errors import ConfigError

    assert runlock.Secret("HF_TOKEN") == "<secret: HF_TOKEN>"
    with pytest.raises(ConfigError, match="not an environment variable name"):
        runlock.Secret("bad name; rm -rf")
