"""Configs handled without OmegaConf give what OmegaConf gives (config.yaml, lock, argument)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from runlock.config import plain as plainconfig

TRICKY = ["", " ", "1", "1.0", "-1", "1e3", "0x10", "nan", "inf", ".inf", "yes", "on", "Off", "y",
          "null", "~", "true", "a: b", "#x", "- x", "a\nb", "ü ☃", "'q'", '"dq"', "x" * 200, "$x",
          "%", "@a", "`b`", "!tag", "&a", "*b", "{a}", "[1]", "0", "00", "0o7", "1_000", "+1"]


@dataclass
class Inner:
    depth: int = 2
    name: str | None = None  # noqa: UP007 - the spelling users write too


@dataclass
class Flat:
    lr: float = 0.001
    epochs: int = 3
    seed: int | None = None
    flag: bool = False
    big: int = 2**70
    tiny: float = 1e-12
    huge: float = 1e300
    neg: float = -0.0
    name: str = "adam"
    inner: Inner = field(default_factory=Inner)


def _omegaconf(obj: object) -> tuple[str, dict[str, object], object]:
    cfg = OmegaConf.structured(obj)
    return (
        OmegaConf.to_yaml(cfg, resolve=True),
        OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),  # type: ignore[return-value]
        OmegaConf.to_object(cfg),
    )


def _plain(cls: type, instance: object = None) -> tuple[str, dict[str, object], object]:
    pc = plainconfig.plain_config(cls, instance)
    assert pc is not None
    return plainconfig.to_yaml(pc), plainconfig.to_plain(pc), plainconfig.to_argument(pc)


def test_defaults_match_omegaconf() -> None:
    assert _plain(Flat) == _omegaconf(Flat)


@pytest.mark.parametrize("text", TRICKY)
def test_strings_quoted_as_omegaconf_quotes_them(text: str) -> None:
    inst = Flat(name=text, inner=Inner(name=text))
    assert _plain(Flat, inst) == _omegaconf(inst)


@pytest.mark.parametrize("value", [0.1, 1e-9, 123456789.123, math.inf, -math.inf, 2.0**60])
def test_floats_match(value: float) -> None:
    inst = Flat(lr=value)
    assert _plain(Flat, inst) == _omegaconf(inst)


def test_nan_matches() -> None:
    inst = Flat(lr=math.nan)
    yaml_p, plain_p, _ = _plain(Flat, inst)
    yaml_o, plain_o, _ = _omegaconf(inst)
    assert yaml_p == yaml_o and math.isnan(plain_p["lr"]) and math.isnan(plain_o["lr"])  # type: ignore[arg-type]


class Color(Enum):
    RED = 1


@dataclass
class WithList:
    xs: list[int] = field(default_factory=lambda: [1, 2])


@dataclass
class WithEnum:
    c: Color = Color.RED


@dataclass
class WithPath:
    p: Path = Path("data")


@dataclass
class Required:
    x: int


@dataclass
class IntInFloat:
    lr: float = 1  # OmegaConf makes it 1.0


@dataclass
class Interpolated:
    name: str = "${now:%Y}"


@pytest.mark.parametrize("cls", [WithList, WithEnum, WithPath, Required, IntInFloat, Interpolated])
def test_what_needs_omegaconf_is_left_to_it(cls: type) -> None:
    assert plainconfig.plain_config(cls) is None


def test_an_instance_with_a_value_of_another_type_is_left_to_omegaconf() -> None:
    assert plainconfig.plain_config(Flat, Flat(epochs=True)) is None  # type: ignore[arg-type]
    assert plainconfig.plain_config(Flat, Flat(name="???")) is None
    assert plainconfig.plain_config(Flat, Inner()) is None


def test_copy_is_deep() -> None:
    pc = plainconfig.plain_config(Flat)
    assert pc is not None
    cp = plainconfig.copy(pc)
    cp["inner"]["depth"] = 9
    assert pc["inner"]["depth"] == 2


def test_a_plain_run_does_not_import_omegaconf(tmp_path: Path) -> None:
    """`python train.py` with no overrides: config, run dir and lock without importing OmegaConf;
    the same script with an override validates it through OmegaConf."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""\
        import sys
        from dataclasses import dataclass
        import runlock

        @dataclass
        class Config:
            lr: float = 0.1
            seed: int | None = None

        @runlock.stage(root=sys.argv[1], snapshot=False)
        def train(cfg: Config):
            return {"lr": cfg.lr, "omegaconf": "omegaconf" in sys.modules}

        if __name__ == "__main__":
            sys.argv.pop(1)
            print(runlock.main(train))
        """))
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "r")], capture_output=True,
                         text=True, check=True, cwd=tmp_path).stdout
    assert "'omegaconf': False" in out and "'lr': 0.1" in out
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "r"), "lr=0.5"],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert "'omegaconf': True" in out and "'lr': 0.5" in out
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "r"), "lr=abc"],
                         capture_output=True, text=True, check=False, cwd=tmp_path)
    assert bad.returncode == 2 and "lr" in bad.stderr
    configs = sorted((tmp_path / "r").rglob("config.yaml"))
    assert len(configs) == 2
    texts = {p.read_text().split("seed:")[0] for p in configs}
    assert texts == {"lr: 0.1\n", "lr: 0.5\n"}
